#!/usr/bin/env bash
# bench/soak.sh — hawkey under a mixed load for a long time (tests/soak.rs).
#
# Keep-alive and one-request connections, small and 1 MiB bodies (Content-Length and
# chunked), uploads, upgrades, static files, bad requests, and a backend that restarts
# at a third and two thirds of the run. Every body is checked by hash. RSS, open
# descriptors and threads of the hawkey process are sampled every 10 s into a CSV.
# It fails if any answer is wrong or if a series climbs after warm-up; the test suite
# runs the same test for 60 s.
#
# usage: bench/soak.sh [--duration SECONDS] [--csv FILE]
#        defaults: 1800 s, soak.csv in the current directory
set -euo pipefail

duration=1800
csv=$PWD/soak.csv
while [ $# -gt 0 ]; do
    case $1 in
        --duration) duration=$2; shift 2 ;;
        --csv) csv=$(realpath -m "$2"); shift 2 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $duration in ''|*[!0-9]*) echo "--duration wants whole seconds" >&2; exit 2 ;; esac

cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "soak: $duration s, samples to $csv" >&2
HAWKEY_SOAK_SECS=$duration HAWKEY_SOAK_CSV=$csv \
    cargo test --release --test soak -- --nocapture
