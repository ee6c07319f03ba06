#!/usr/bin/env python3
"""Turn compare.sh's results.tsv into the Markdown table (stdout) and, optionally, JSON.

usage: report.py RESULTS_TSV META_TSV [JSON_OUT]

RESULTS_TSV lines: key <TAB> column <TAB> value   (column: direct, nginx, nginx64k, hawkey)
META_TSV lines:    name <TAB> value
"""
import json
import sys

COLUMNS = ["direct", "nginx", "nginx64k", "hawkey"]

# key, label, unit, target
#   target: None, ("ratio", op, x)  hawkey/nginx op x,
#           ("ratio64", x, y)       hawkey/nginx >= x and hawkey/nginx-64k >= y,
#           ("abs", op, x)          hawkey's own value op x
ROWS = [
    ("small_ka_rps", "Small body (19 B), keep-alive: throughput", "req/s", ("ratio", ">=", 1.05)),
    ("small_ka_p50_ms", "Small body, keep-alive: latency p50", "ms", None),
    ("small_ka_p99_ms", "Small body, keep-alive: latency p99", "ms", ("ratio", "<=", 1.0)),
    ("small_ka_cpu_us", "Small body, keep-alive: CPU per request", "µs", ("ratio", "<=", 0.9)),
    ("conn_close_rps", "New connection per request", "req/s", ("ratio", ">=", 1.0)),
    ("conn_close_cpu_us", "New connection per request: CPU per request", "µs", None),
    ("mib1_MBps", "1 MiB responses (wrk -c16)", "MB/s", ("ratio64", 1.0, 0.9)),
    ("mib100_dl_MBps", "100 MiB download (curl, median)", "MB/s", ("ratio64", 1.0, 0.9)),
    ("mib100_ul_MBps", "100 MiB upload (curl, median)", "MB/s", ("ratio64", 1.0, 0.9)),
    ("tls_ka_rps", "TLS keep-alive, small body", "req/s", ("ratio", ">=", 1.0)),
    ("tls_hs_rps", "TLS full handshakes (new connection per request)", "1/s", None),
    ("tls_hs_cpu_us", "CPU per full TLS handshake + request", "µs", ("ratio", "<=", 0.8)),
    ("h2_rps", "HTTP/2 over TLS, small body (h2load -c10 -m10)", "req/s", ("ratio", ">=", 1.0)),
    ("h2_cpu_us", "HTTP/2 over TLS: CPU per request", "µs", ("ratio", "<=", 1.0)),
    ("h2_mib100_dl_MBps", "100 MiB download over HTTP/2 (curl, median)", "MB/s", ("ratio", ">=", 0.9)),
    ("h2idle1000_rss_MiB", "1000 idle HTTP/2 connections over TLS: RSS", "MiB", ("abs", "<=", 32.0)),
    ("h2idle1000_new_ms_max", "1000 idle HTTP/2 connections: new client, max", "ms", None),
    ("rss_idle_MiB", "RSS at idle (after one request)", "MiB", ("abs", "<=", 4.0)),
    ("rss_idle_musl_MiB", "RSS at idle, static musl build", "MiB", ("abs", "<=", 4.0)),
    ("idle1000_rss_MiB", "1000 idle keep-alive clients: RSS", "MiB", None),
    ("idle1000_threads", "1000 idle clients: threads (nginx: processes)", "", None),
    ("idle1000_new_ms_median", "1000 idle clients: new client, median", "ms", None),
    ("idle1000_new_ms_max", "1000 idle clients: new client, max", "ms", None),
    ("idle5000_rss_MiB", "5000 idle keep-alive clients: RSS", "MiB", ("abs", "<=", 32.0)),
    ("idle5000_threads", "5000 idle clients: threads (nginx: processes)", "", None),
    ("idle5000_new_ms_median", "5000 idle clients: new client, median", "ms", None),
    ("idle5000_new_ms_max", "5000 idle clients: new client, max", "ms", ("abs", "<", 100.0)),
    ("binary_MiB", "Binary size (nginx: /usr/sbin/nginx, dynamic)", "MiB", None),
    ("binary_musl_MiB", "Binary size, static musl build", "MiB", None),
    ("startup_ms", "Start-up to first 200 (median)", "ms", ("abs", "<=", 10.0)),
]


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    a = abs(v)
    if v == int(v) and a < 1e6:
        return f"{int(v)}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


SYM = {">=": "≥", "<=": "≤", "<": "<", ">": ">"}


def compare(value, op, bound):
    return {">=": value >= bound, "<=": value <= bound, "<": value < bound, ">": value > bound}[op]


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def judge(target, unit, h, r_nginx, r_64k):
    """(target text, PASS/MISS/n/a) of one row."""
    if not target:
        return None, None
    if target[0] == "ratio":
        text = f"h/nginx {SYM[target[1]]} {target[2]}"
        return text, "n/a" if r_nginx is None else ("PASS" if compare(r_nginx, target[1], target[2]) else "MISS")
    if target[0] == "ratio64":
        text = f"h/nginx ≥ {target[1]}, h/64k ≥ {target[2]}"
        if r_nginx is None or r_64k is None:
            return text, "n/a"
        return text, "PASS" if r_nginx >= target[1] and r_64k >= target[2] else "MISS"
    text = f"hawkey {SYM[target[1]]} {target[2]:g} {unit}"
    return text, "n/a" if h is None else ("PASS" if compare(h, target[1], target[2]) else "MISS")


def build_rows(results, ratios=None):
    """Rows from {key: {column: value}}; `ratios` ({key: (h/nginx, h/64k, h/direct)})
    replaces the ratios of the values (compare.sh --runs: medians of each run's)."""
    rows = []
    for key, label, unit, target in ROWS:
        if key not in results:
            continue
        vals = {c: results[key].get(c) for c in COLUMNS}
        h = vals["hawkey"]
        r_nginx, r_64k, r_direct = ratio(h, vals["nginx"]), ratio(h, vals["nginx64k"]), ratio(h, vals["direct"])
        if ratios and key in ratios:
            r_nginx, r_64k, r_direct = ratios[key]
        target_text, status = judge(target, unit, h, r_nginx, r_64k)
        rows.append({
            "key": key, "label": label, "unit": unit, "values": vals,
            "ratio_hawkey_nginx": r_nginx, "ratio_hawkey_nginx64k": r_64k, "ratio_hawkey_direct": r_direct,
            "target": target_text, "status": status,
        })
    return rows


def render(rows, meta):
    out = []
    out.append("## hawkey vs nginx (reverse proxy), same nginx backend")
    out.append("")
    for name in ("date", "mode", "runs", "duration", "machine", "load", "versions", "tls", "notes", "wrk_errors"):
        if name in meta:
            out.append(f"- {name}: {meta[name]}")
    out.append("")
    out.append("| scenario | unit | direct | nginx | nginx 64k | hawkey | h/nginx | h/nginx-64k | h/direct | target | |")
    out.append("|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|")
    for r in rows:
        v = r["values"]
        out.append("| " + " | ".join([
            r["label"], r["unit"], fmt(v["direct"]), fmt(v["nginx"]), fmt(v["nginx64k"]), fmt(v["hawkey"]),
            fmt(r["ratio_hawkey_nginx"]), fmt(r["ratio_hawkey_nginx64k"]), fmt(r["ratio_hawkey_direct"]),
            r["target"] or "", r["status"] or "",
        ]) + " |")
    passed = sum(1 for r in rows if r["status"] == "PASS")
    missed = [r["key"] for r in rows if r["status"] == "MISS"]
    out.append("")
    out.append(f"Targets: {passed} PASS, {len(missed)} MISS" + (f" ({', '.join(missed)})" if missed else ""))
    return "\n".join(out)


def write_json(path, meta, rows, results):
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": rows, "results": results}, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main():
    results, meta = {}, {}
    with open(sys.argv[1]) as f:
        for line in f:
            key, col, value = line.rstrip("\n").split("\t")
            results.setdefault(key, {})[col] = float(value)
    with open(sys.argv[2]) as f:
        for line in f:
            name, _, value = line.rstrip("\n").partition("\t")
            meta[name] = value
    rows = build_rows(results)
    print(render(rows, meta))
    if len(sys.argv) > 3 and sys.argv[3]:
        write_json(sys.argv[3], meta, rows, results)


if __name__ == "__main__":
    main()
