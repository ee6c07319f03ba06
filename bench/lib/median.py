#!/usr/bin/env python3
"""Medians of several compare.sh runs (their --json files): the Markdown table (stdout)
and, optionally, JSON. Each value is the median of the runs' values; each ratio is
the median of the runs' ratios, so that a run that was slow for every proxy (the
machine is shared) moves no ratio.

usage: median.py OUT_JSON|'' RUN_JSON...
"""
import json
import statistics
import sys

from report import build_rows, render, write_json

RATIOS = ("ratio_hawkey_nginx", "ratio_hawkey_nginx64k", "ratio_hawkey_direct")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    runs = [json.load(open(path)) for path in sys.argv[2:]]
    results = {}
    for run in runs:
        for key, cols in run["results"].items():
            for col, value in cols.items():
                results.setdefault(key, {}).setdefault(col, []).append(value)
    results = {key: {col: median(vs) for col, vs in cols.items()} for key, cols in results.items()}
    ratios = {}
    for run in runs:
        for row in run["rows"]:
            ratios.setdefault(row["key"], []).append(tuple(row[r] for r in RATIOS))
    ratios = {key: tuple(median(r[i] for r in rs) for i in range(3)) for key, rs in ratios.items()}
    meta = dict(runs[0]["meta"])
    meta["runs"] = f"{len(runs)}, medians (ratios: the median of each run's); dates " + ", ".join(
        run["meta"].get("date", "?") for run in runs)
    meta["load"] = "; ".join(run["meta"].get("load", "?") for run in runs)
    meta.pop("duration", None)
    rows = build_rows(results, ratios)
    print(render(rows, meta))
    if sys.argv[1]:
        write_json(sys.argv[1], meta, rows, results)


if __name__ == "__main__":
    main()
