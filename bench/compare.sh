#!/usr/bin/env bash
# bench/compare.sh — hawkey against nginx as a reverse proxy, on loopback.
#
# What it measures, each against the SAME backend (an nginx serving a 19-byte body at
# "/", /1m and /100m files, and an upload sink at /upload that reads the whole body
# before answering 200 — the mirror module reads it, C speed, no proxy_pass):
#
#   columns   direct    wrk/curl straight to the backend (no proxy)
#             nginx     nginx as proxy: worker_processes 2, upstream keepalive 64,
#                       proxy_http_version 1.1, proxy_set_header Connection ""
#             nginx64k  the same plus proxy_buffer_size 64k; proxy_buffers 8 64k
#                       (large-body rows only)
#             hawkey    target/release/hawkey with the equivalent server-config.json
#   rows      small body keep-alive    wrk -t2 -c50 --latency: req/s, p50, p99, and
#                                      proxy CPU µs/request (utime+stime from
#                                      /proc/PID/stat; nginx: master + workers)
#             new connection/request   wrk -H "Connection: close": req/s, CPU µs/request
#             1 MiB responses          wrk -t2 -c16: MB/s
#             100 MiB down/upload      curl (upload: --data-binary @file), median MB/s
#             TLS keep-alive           wrk over https, req/s (both proxies terminate
#                                      TLS in front of the plain backend)
#             TLS handshakes           lib/tls_handshakes.py: new connection per request,
#                                      full handshakes only (wrk resumes sessions), per
#                                      second and proxy CPU µs per handshake
#             memory                   RSS at idle; RSS and threads with 1000 and 5000
#                                      idle keep-alive clients (lib/idle_clients.py),
#                                      and how long a new client waits meanwhile (curl)
#             binary size, start-up    start-up = process start to first 200, median
#                                      (lib/startup_time.py)
#   output    a Markdown table with hawkey/nginx (and hawkey/direct) ratios, targets
#             and PASS/MISS; JSON with --json FILE.
#
# Everything runs on 127.0.0.1, every run bounded in time; the proxies compared run
# side by side and are measured in turns, ROUNDS rounds per scenario with the order
# reversed every other round (see "scenarios" below); each process started here is
# stopped by its pid at exit. The work dir (config, certs,
# test files) is a mktemp -d, removed at exit (KEEP_WORK=1 keeps it).
# The machine has 2 cores shared by wrk, the backend and the proxy: absolute numbers
# are low and noisy, the ratios are what to read.
#
# Environment: HAWKEY_BENCH_PORT_BASE (default 28100; ports BASE..BASE+9 must be free),
# HAWKEY_BENCH_KEY=ec|rsa (certificate key: ECDSA P-256, the default, or RSA 2048),
# HAWKEY_BIN=PATH (benchmark that binary instead of building target/release/hawkey),
# KEEP_WORK=1.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB="$ROOT/bench/lib"

usage() {
    cat <<EOF
usage: bench/compare.sh [--quick] [--json FILE]
       bench/compare.sh --help

Benchmarks hawkey (release build) against nginx as a reverse proxy and against the
backend directly, on loopback, and prints a Markdown table with hawkey/nginx ratios
and PASS/MISS against the targets. Installs wrk, nginx, curl, openssl and h2load
(nghttp2-client) with apt-get if missing and runs 'cargo build --release' first.

  --quick      a ~2-minute subset for regression checks: small keep-alive,
               connection per request, 1 MiB responses, idle RSS, 1000 idle
               clients, binary size, start-up; shorter runs
  --runs N     run it all N times and print the medians (each ratio the median of
               the runs' ratios; bench/lib/median.py)
  --json FILE  also write the results as JSON to FILE
  --help       this text

Environment: HAWKEY_BENCH_PORT_BASE (default 28100), HAWKEY_BENCH_KEY=ec|rsa
(default ec), HAWKEY_BIN=PATH (use that binary, skip the build), KEEP_WORK=1
(keep the temp work dir).
EOF
}

QUICK=0
RUNS=1
JSON_OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --json)
            [ $# -ge 2 ] || { echo "compare.sh: --json needs a file name" >&2; exit 2; }
            JSON_OUT="$2"; shift ;;
        --json=*) JSON_OUT="${1#--json=}" ;;
        --runs)
            [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --runs needs a count" >&2; exit 2; }
            RUNS="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ -n "$JSON_OUT" ]; then
    case "$JSON_OUT" in /*) ;; *) JSON_OUT="$PWD/$JSON_OUT" ;; esac
fi
if [ "$RUNS" -gt 1 ]; then
    RUNS_DIR=$(mktemp -d)
    trap 'rm -rf "$RUNS_DIR"' EXIT
    for i in $(seq "$RUNS"); do
        echo "compare.sh: run $i of $RUNS" >&2
        if [ "$QUICK" = 1 ]; then set -- --quick; else set --; fi
        bash "$0" "$@" --json "$RUNS_DIR/run$i.json" >"$RUNS_DIR/run$i.md" \
            || { cat "$RUNS_DIR/run$i.md"; exit 1; }
    done
    (cd "$LIB" && python3 median.py "$JSON_OUT" "$RUNS_DIR"/run*.json)
    exit 0
fi

# ---- settings ---------------------------------------------------------------------

if [ "$QUICK" = 1 ]; then
    DUR=3          # seconds per measured wrk run (one round of one column)
    ROUNDS=2       # rounds per scenario, the columns in turns
    WARM=1         # seconds of warm-up of each column before them
    SAMPLES=5      # new-client latency samples
    STARTUPS=3     # start-up samples
else
    DUR=5
    ROUNDS=4
    WARM=2
    SAMPLES=10
    STARTUPS=7
    BIG_RUNS=5     # 100 MiB transfers per column
fi
PORT_BASE=${HAWKEY_BENCH_PORT_BASE:-28100}
P_BACKEND=$PORT_BASE
P_NGINX=$((PORT_BASE + 1))
P_NGINX64=$((PORT_BASE + 2))
P_HAWKEY=$((PORT_BASE + 3))
P_NGINX_TLS=$((PORT_BASE + 4))
P_HAWKEY_TLS=$((PORT_BASE + 5))
P_START_NGINX=$((PORT_BASE + 6))
P_START_HAWKEY=$((PORT_BASE + 7))
KEY_TYPE=${HAWKEY_BENCH_KEY:-ec}
NGINX=""
HAWKEY="$ROOT/target/release/hawkey"
HAWKEY_MUSL="$ROOT/target/x86_64-unknown-linux-musl/release/hawkey"
CLK_TCK=$(getconf CLK_TCK)
WORK=""
STARTED=()         # pids started by this script, stopped at exit

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- processes ----------------------------------------------------------------------

children_of() {     # direct children of a pid (nginx workers of a master)
    cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' || true
}

stop_pid() {        # TERM, wait up to 10 s, then KILL; nginx workers too
    local pid=$1 kids i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kids=$(children_of "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        # a zombie child of ours counts as gone
        [ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" = Z ] && break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" != Z ]; then
        log "pid $pid did not stop on SIGTERM, killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for i in $kids; do kill -KILL "$i" 2>/dev/null || true; done
}

cleanup() {
    local i
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_pid "${STARTED[$i]}"; done
    STARTED=()
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "${KEEP_WORK:-0}" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {      # drop a pid from STARTED once it has been stopped
    local keep=() p
    for p in "${STARTED[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    STARTED=("${keep[@]+"${keep[@]}"}")
}

stop_server() { stop_pid "$1"; forget_pid "$1"; }

pids_of() {         # a server pid and, for nginx, its workers
    echo "$1"
    children_of "$1"
}

cpu_ticks() {       # utime + stime of the given pids, in clock ticks
    local total=0 p t
    for p in "$@"; do
        t=$(awk '{sub(/.*\) /, ""); print $12 + $13}' /proc/"$p"/stat 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}

status_sum() {      # sum a /proc/PID/status field (VmRSS in kB, Threads) over pids
    local field=$1 total=0 p v; shift
    for p in "$@"; do
        v=$(awk -v f="$field:" '$1 == f {print $2}' /proc/"$p"/status 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

wait_http() {       # wait (10 s at most) until URL answers 200
    local url=$1 i
    for i in $(seq 200); do
        [ "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" = 200 ] && return 0
        sleep 0.05
    done
    die "no 200 from $url within 10 s"
}

start_nginx() {     # start_nginx NAME: runs $WORK/NAME.conf in the foreground; sets SERVER_PID
    "$NGINX" -e "$WORK/$1.err" -p "$WORK" -c "$WORK/$1.conf" -g 'daemon off;' \
        >>"$WORK/$1.out" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
}

start_hawkey() {    # start_hawkey NAME: runs hawkey -c $WORK/NAME.json; sets SERVER_PID
    "$HAWKEY" -c "$WORK/$1.json" >>"$WORK/$1.out" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
}

# ---- results -------------------------------------------------------------------------

record() {          # record KEY COLUMN VALUE
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$WORK/results.tsv"
    log "  $1 [$2] = $3"
}

meta() { printf '%s\t%s\n' "$1" "$2" >>"$WORK/meta.tsv"; }

calc() { python3 -c "import statistics as s; print($1)"; }

median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

warm_wrk() {         # warm_wrk URL CONNECTIONS [wrk args...]: an unmeasured run
    local url=$1 conns=$2; shift 2
    wrk -t2 -c"$conns" -d"${WARM}s" --timeout 5s "$@" "$url" >/dev/null 2>&1 || true
}

# run_wrk URL CONNECTIONS [wrk args...]: one measured run; sets W_* vars
run_wrk() {
    local url=$1 conns=$2 out; shift 2
    out=$(wrk -t2 -c"$conns" -d"${DUR}s" --timeout 5s --latency -s "$LIB/wrk_report.lua" "$@" "$url" 2>&1) \
        || die "wrk failed: $out"
    local line
    line=$(grep '^WRK_RESULT ' <<<"$out" | tail -1) || die "no result from wrk: $out"
    eval "$(sed 's/^WRK_RESULT //; s/\([a-z0-9_]*\)=/W_\1=/g' <<<"$line")"
    [ "$W_requests" -gt 0 ] || die "wrk made no request to $url: $out"
    if [ "$W_errors" -gt 0 ]; then
        log "  wrk reported $W_errors errors against $url"
        WRK_ERRORS="$WRK_ERRORS $url:$W_errors"
    fi
}
WRK_ERRORS=""

# ---- setup ---------------------------------------------------------------------------

ensure_tools() {
    local missing=() tool
    for tool in wrk nginx curl openssl h2load; do
        if [ "$tool" = nginx ]; then
            command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
        elif [ "$tool" = h2load ]; then
            command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
        else
            command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
        fi
    done
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing with apt-get: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
    fi
    NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
    [ -n "${HAWKEY_BIN:-}" ] || command -v cargo >/dev/null 2>&1 || die "cargo not found: hawkey cannot be built"
}

build_hawkey() {
    if [ -n "${HAWKEY_BIN:-}" ]; then
        HAWKEY=$HAWKEY_BIN
        [ -x "$HAWKEY" ] || die "HAWKEY_BIN=$HAWKEY is not an executable"
        log "using HAWKEY_BIN=$HAWKEY, no build"
        return
    fi
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release >&2) || die "cargo build --release failed"
    [ -x "$HAWKEY" ] || die "$HAWKEY missing after the build"
    log "bash .ci/build-static.sh (the static musl binary, for its size and idle RSS rows)"
    (cd "$ROOT" && bash .ci/build-static.sh >&2) || log "static build failed: its rows are skipped"
}

check_ports() {
    python3 - "$@" <<'EOF' || die "a port in $PORT_BASE..$((PORT_BASE + 9)) is busy: set HAWKEY_BENCH_PORT_BASE"
import socket, sys
busy = []
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    # as the servers do: TIME_WAIT leftovers of an earlier run are no obstacle
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        busy.append(port)
    finally:
        s.close()
if busy:
    print("busy ports: " + " ".join(map(str, busy)), file=sys.stderr)
    sys.exit(1)
EOF
}

make_workdir() {
    WORK=$(mktemp -d /tmp/hawkey-bench.XXXXXX)
    chmod 755 "$WORK"
    mkdir -p "$WORK/www" "$WORK/tmp"
    : >"$WORK/results.tsv"
    : >"$WORK/meta.tsv"
    printf 'hello from backend\n' >"$WORK/www/index.html"     # 19 bytes
    : >"$WORK/www/upload"     # the static handler answers POST to it with 405 → 200
    head -c 1048576 /dev/urandom >"$WORK/www/1m"
    if [ "$QUICK" = 0 ]; then
        head -c 104857600 /dev/urandom >"$WORK/www/100m"
    fi
    if [ "$KEY_TYPE" = rsa ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
            -days 2 -subj /CN=localhost 2>/dev/null
    else
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 2 -subj /CN=localhost 2>/dev/null
    fi
}

# ---- configs -------------------------------------------------------------------------

nginx_common() {    # nginx_common NAME WORKERS
    local hard
    hard=$(ulimit -Hn)
    [ "$(id -u)" = 0 ] && echo "user root;"
    cat <<EOF
worker_processes $2;
worker_rlimit_nofile $hard;
pid $WORK/$1.pid;
events { worker_connections 16384; }
EOF
}

nginx_temp_paths() {
    mkdir -p "$WORK/tmp/$1"
    local d
    for d in client_body proxy fastcgi uwsgi scgi; do
        echo "  ${d}_temp_path $WORK/tmp/$1/$d;"
    done
}

write_backend_conf() {
    {
        nginx_common backend 2
        cat <<EOF
http {
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_max_body_size 0;
$(nginx_temp_paths backend)
  server {
    listen 127.0.0.1:$P_BACKEND backlog=4096;
    root $WORK/www;
    location = / { index index.html; }
    # Upload sink: the mirror module reads the whole body (into one 128m buffer,
    # no disk) before the content phase; the static handler then answers the POST
    # with 405, turned into a 200. No proxy_pass anywhere.
    location = /upload {
      client_body_buffer_size 128m;
      mirror /sinkhole;
      mirror_request_body on;
      error_page 405 =200 @ok;
    }
    location = /sinkhole { internal; return 204; }
    location @ok { return 200 "ok\n"; }
  }
}
EOF
    } >"$WORK/backend.conf"
}

# write_nginx_proxy_conf NAME PORT [64k] [tls]
write_nginx_proxy_conf() {
    local name=$1 port=$2 big="" tls="" listen_extra=""
    [ "${3:-}" = 64k ] && big="    proxy_buffer_size 64k;
    proxy_buffers 8 64k;"
    if [ "${4:-}" = tls ]; then
        # HTTP/2 by ALPN, as hawkey offers it (the listen flag nginx 1.22 knows; newer
        # versions read it as `http2 on`)
        listen_extra=" ssl http2"
        # full handshakes every time, TLS 1.2 and 1.3 like hawkey
        tls="    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    # h2load does not open a new connection when nginx closes one after its default
    # 1000 requests: no limit, as hawkey has none
    keepalive_requests 1000000;"
    fi
    {
        nginx_common "$name" 2
        cat <<EOF
http {
  access_log off;
  client_max_body_size 0;
$(nginx_temp_paths "$name")
  upstream backend {
    server 127.0.0.1:$P_BACKEND;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$port$listen_extra backlog=4096;
$tls
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
$big
    }
  }
}
EOF
    } >"$WORK/$name.conf"
}

write_hawkey_conf() {   # write_hawkey_conf NAME PORT [tls]
    local pems=""
    [ "${3:-}" = tls ] && pems=',"pems":{"key":"key.pem","cert":"cert.pem"}'
    printf '{"port":%s,"host":"127.0.0.1"%s,"upstreamPool":{"maxIdlePerAuthority":64},"proxy":[{"pathRegExp":"^/","authority":["127.0.0.1:%s"]}]}\n' \
        "$2" "$pems" "$P_BACKEND" >"$WORK/$1.json"
}

# ---- scenarios -----------------------------------------------------------------------
#
# The proxies under comparison run side by side (each idle while another is measured)
# and are measured in turns: ROUNDS rounds per scenario, the order reversed every
# other round (nginx, hawkey, hawkey, nginx, ...), so that a change in the load of the
# shared machine during the run weighs on each column alike. A column's throughput
# is its requests over its measured time summed over the rounds; CPU per request its
# CPU over its requests; a latency the median of the rounds'.

declare -A PORT_OF PID_OF   # column -> port, server pid (for the CPU figures)
declare -A SUM_REQ SUM_US SUM_TICKS SUM_BYTES LAT_P50 LAT_P99

in_turns() {        # in_turns ROUND COLUMN...: the columns in this round's order
    local round=$1; shift
    if [ $((round % 2)) = 1 ]; then echo "$@"; else echo "$@" | tr ' ' '\n' | tac | tr '\n' ' '; fi
}

reset_sums() {
    local c
    for c in "$@"; do
        SUM_REQ[$c]=0; SUM_US[$c]=0; SUM_TICKS[$c]=0; SUM_BYTES[$c]=0
        LAT_P50[$c]=""; LAT_P99[$c]=""
    done
}

# wrk_turn COLUMN URL_PATH CONNECTIONS [wrk args...]: one measured round of COLUMN
wrk_turn() {
    local col=$1 path=$2 conns=$3 pids c0 c1 scheme=http; shift 3
    [ "${TLS_TURN:-0}" = 1 ] && scheme=https
    pids=$(pids_of "${PID_OF[$col]}")
    c0=$(cpu_ticks $pids)
    run_wrk "$scheme://127.0.0.1:${PORT_OF[$col]}$path" "$conns" "$@"
    c1=$(cpu_ticks $pids)
    SUM_REQ[$col]=$((SUM_REQ[$col] + W_requests))
    SUM_US[$col]=$((SUM_US[$col] + W_duration_us))
    SUM_BYTES[$col]=$((SUM_BYTES[$col] + W_bytes))
    SUM_TICKS[$col]=$((SUM_TICKS[$col] + c1 - c0))
    LAT_P50[$col]+=" $W_p50_us"
    LAT_P99[$col]+=" $W_p99_us"
}

# wrk_rounds URL_PATH CONNECTIONS "COLUMNS" [wrk args...]: a warm-up of each column,
# then ROUNDS measured rounds in turns
wrk_rounds() {
    local path=$1 conns=$2 cols=$3 col round scheme=http; shift 3
    [ "${TLS_TURN:-0}" = 1 ] && scheme=https
    reset_sums $cols
    for col in $cols; do warm_wrk "$scheme://127.0.0.1:${PORT_OF[$col]}$path" "$conns" "$@"; done
    for round in $(seq "$ROUNDS"); do
        for col in $(in_turns "$round" $cols); do wrk_turn "$col" "$path" "$conns" "$@"; done
    done
}

rps_of() { calc "${SUM_REQ[$1]} / (${SUM_US[$1]} / 1e6)"; }
cpu_of() { calc "${SUM_TICKS[$1]} / $CLK_TCK * 1e6 / ${SUM_REQ[$1]}"; }

bench_small_keepalive() {   # COLUMN...: req/s, p50, p99, CPU µs/request
    local col
    log "$*: small body, keep-alive (wrk -t2 -c50, $ROUNDS rounds of ${DUR}s in turns)"
    wrk_rounds / 50 "$*"
    for col in "$@"; do
        record small_ka_rps "$col" "$(rps_of "$col")"
        record small_ka_p50_ms "$col" "$(calc "$(median ${LAT_P50[$col]}) / 1000")"
        record small_ka_p99_ms "$col" "$(calc "$(median ${LAT_P99[$col]}) / 1000")"
        record small_ka_cpu_us "$col" "$(cpu_of "$col")"
    done
}

bench_conn_close() {        # COLUMN...
    local col
    log "$*: new connection per request (wrk -H 'Connection: close', $ROUNDS rounds in turns)"
    wrk_rounds / 50 "$*" -H 'Connection: close'
    for col in "$@"; do
        record conn_close_rps "$col" "$(rps_of "$col")"
        record conn_close_cpu_us "$col" "$(cpu_of "$col")"
    done
}

bench_1mib() {              # COLUMN...
    local col
    log "$*: 1 MiB responses (wrk -t2 -c16, $ROUNDS rounds in turns)"
    wrk_rounds /1m 16 "$*"
    for col in "$@"; do
        record mib1_MBps "$col" "$(calc "${SUM_BYTES[$col]} / (${SUM_US[$col]} / 1e6) / 1e6")"
    done
}

transfer_MBps() {           # transfer_MBps COLUMN down|up: one 100 MiB transfer, MB/s
    local col=$1 port=${PORT_OF[$1]} out code size t
    if [ "$2" = down ]; then
        out=$(curl -s -o /dev/null --max-time 60 -w '%{http_code} %{size_download} %{time_total}' \
            "http://127.0.0.1:$port/100m") || die "download through $col failed: $out"
    else
        out=$(curl -s -o /dev/null --max-time 60 -H 'Expect:' --data-binary @"$WORK/www/100m" \
            -w '%{http_code} %{size_upload} %{time_total}' "http://127.0.0.1:$port/upload") \
            || die "upload through $col failed: $out"
    fi
    read -r code size t <<<"$out"
    [ "$code" = 200 ] && [ "$size" = 104857600 ] || die "${2}load through $col: $out"
    calc "$size / $t / 1e6"
}

bench_100mib() {            # COLUMN...: median of BIG_RUNS downloads and uploads, in turns
    local dir key col i
    log "$*: 100 MiB download and upload (curl, $BIG_RUNS runs each, in turns)"
    for dir in down up; do
        key=mib100_dl_MBps; [ "$dir" = up ] && key=mib100_ul_MBps
        declare -A speeds=()
        for i in $(seq "$BIG_RUNS"); do
            for col in $(in_turns "$i" "$@"); do
                speeds[$col]+=" $(transfer_MBps "$col" "$dir")"
            done
        done
        for col in "$@"; do record "$key" "$col" "$(median ${speeds[$col]})"; done
        unset speeds
    done
}

bench_idle_rss() {      # COLUMN PID [KEY]: RSS shortly after start-up and one request
    sleep 0.5
    record "${3:-rss_idle_MiB}" "$1" "$(calc "$(status_sum VmRSS $(pids_of "$2")) / 1024")"
}

run_musl_idle() {       # the static build's idle RSS, with the hawkey column's config
    [ -x "$HAWKEY_MUSL" ] || return 0
    "$HAWKEY_MUSL" -c "$WORK/hawkey.json" >>"$WORK/hawkey-musl.out" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    local pid=$SERVER_PID
    wait_http "http://127.0.0.1:$P_HAWKEY/"
    bench_idle_rss hawkey "$pid" rss_idle_musl_MiB
    stop_server "$pid"
}

# bench_idle_clients COLUMN N [h2]: RSS and threads with N idle keep-alive clients
# held (HTTP/2 over TLS with h2), and how long a new client (curl) waits meanwhile
bench_idle_clients() {
    local col=$1 port=${PORT_OF[$1]} pid=${PID_OF[$1]} n=$2 h2=${3:-}
    local ready="$WORK/idle-$1-$2$h2.ready" key="${3:-}idle$2" scheme=http curl_h2=""
    local holder i held t samples=()
    [ "$h2" = h2 ] && scheme=https curl_h2="-k --http2"
    log "$col: $n idle keep-alive clients${h2:+ (HTTP/2 over TLS)}"
    rm -f "$ready"
    python3 "$LIB/idle_clients.py" 127.0.0.1 "$port" "$n" "$ready" 120 $h2 2>>"$WORK/idle_clients.err" &
    holder=$!
    STARTED+=("$holder")
    for i in $(seq 600); do
        [ -s "$ready" ] && break
        kill -0 "$holder" 2>/dev/null || break
        sleep 0.1
    done
    [ -s "$ready" ] || die "idle client holder did not get ready ($(cat "$WORK/idle_clients.err" 2>/dev/null))"
    read -r held t <"$ready"
    [ "$held" = "$n" ] || log "  only $held of $n idle clients connected"
    record "${key}_held" "$col" "$held"
    sleep 1
    local pids
    pids=$(pids_of "$pid")
    record "${key}_rss_MiB" "$col" "$(calc "$(status_sum VmRSS $pids) / 1024")"
    record "${key}_threads" "$col" "$(status_sum Threads $pids)"
    for i in $(seq "$SAMPLES"); do
        # shellcheck disable=SC2086 # curl_h2 is two flags or none
        t=$(curl -s $curl_h2 -o /dev/null --max-time 5 -w '%{time_total}' "$scheme://127.0.0.1:$port/" || echo 5)
        samples+=("$(calc "$t * 1000")")
        sleep 0.1
    done
    record "${key}_new_ms_median" "$col" "$(median "${samples[@]}")"
    record "${key}_new_ms_max" "$col" "$(python3 -c 'import sys; print(max(map(float, sys.argv[1:])))' "${samples[@]}")"
    stop_server "$holder"
    sleep 1     # let the server close the connections the holder left
}

# bench_tls COLUMN...: keep-alive req/s (wrk) and full handshakes (python clients),
# each in turns
bench_tls() {
    local col round out
    log "$*: TLS keep-alive (wrk -t2 -c50 over https, $ROUNDS rounds in turns)"
    TLS_TURN=1 wrk_rounds / 50 "$*"
    for col in "$@"; do record tls_ka_rps "$col" "$(rps_of "$col")"; done
    log "$*: TLS full handshakes, new connection per request (2 python clients, $ROUNDS rounds of ${DUR}s in turns)"
    reset_sums "$@"
    declare -A seconds=()
    for col in "$@"; do
        python3 "$LIB/tls_handshakes.py" 127.0.0.1 "${PORT_OF[$col]}" "$WARM" 2 >/dev/null
        seconds[$col]=0
    done
    for round in $(seq "$ROUNDS"); do
        for col in $(in_turns "$round" "$@"); do
            local pids c0 c1
            pids=$(pids_of "${PID_OF[$col]}")
            c0=$(cpu_ticks $pids)
            out=$(python3 "$LIB/tls_handshakes.py" 127.0.0.1 "${PORT_OF[$col]}" "$DUR" 2)
            c1=$(cpu_ticks $pids)
            eval "$(sed 's/\([a-z_]*\)=/H_\1=/g' <<<"$out")"
            log "  $col: $out"
            [ "$H_ok" -gt 0 ] || die "no TLS handshake succeeded against $col: $out"
            [ "$H_reused" = 0 ] || log "  $H_reused of $H_ok TLS sessions were resumed"
            [ "$H_errors" = 0 ] || log "  $H_errors TLS handshake errors against $col"
            SUM_REQ[$col]=$((SUM_REQ[$col] + H_ok))
            SUM_TICKS[$col]=$((SUM_TICKS[$col] + c1 - c0))
            seconds[$col]=$(calc "${seconds[$col]} + $H_seconds")
        done
    done
    for col in "$@"; do
        record tls_hs_rps "$col" "$(calc "${SUM_REQ[$col]} / ${seconds[$col]}")"
        record tls_hs_cpu_us "$col" "$(cpu_of "$col")"
    done
}

# h2load_turn COLUMN: one measured round of HTTP/2 over TLS, small body
h2load_turn() {
    local col=$1 pids c0 c1 out done secs
    pids=$(pids_of "${PID_OF[$col]}")
    c0=$(cpu_ticks $pids)
    out=$(h2load -c10 -m10 -D "$DUR" "https://127.0.0.1:${PORT_OF[$col]}/" 2>&1) \
        || die "h2load against $col failed: $out"
    c1=$(cpu_ticks $pids)
    done=$(awk '/^requests:/ {print $8}' <<<"$out")
    secs=$(awk '/^finished in/ {sub(/s,$/, "", $3); print $3}' <<<"$out")
    [ -n "$done" ] && [ "$done" -gt 0 ] || die "no HTTP/2 request succeeded against $col: $out"
    grep -q "^status codes: $done 2xx" <<<"$out" || log "  $col: not every answer was 2xx: $(grep '^status codes' <<<"$out")"
    SUM_REQ[$col]=$((SUM_REQ[$col] + done))
    SUM_US[$col]=$(calc "${SUM_US[$col]} + $secs * 1e6")
    SUM_TICKS[$col]=$((SUM_TICKS[$col] + c1 - c0))
}

# bench_h2 COLUMN...: h2load -c10 -m10 small responses over TLS, and a 100 MiB
# download over HTTP/2 (curl --http2), each in turns
bench_h2() {
    local col round i
    log "$*: HTTP/2 over TLS, small body (h2load -c10 -m10, $ROUNDS rounds of ${DUR}s in turns)"
    reset_sums "$@"
    for col in "$@"; do
        h2load -c10 -m10 -D "$WARM" "https://127.0.0.1:${PORT_OF[$col]}/" >/dev/null 2>&1 || true
    done
    for round in $(seq "$ROUNDS"); do
        for col in $(in_turns "$round" "$@"); do h2load_turn "$col"; done
    done
    for col in "$@"; do
        record h2_rps "$col" "$(rps_of "$col")"
        record h2_cpu_us "$col" "$(cpu_of "$col")"
    done
    log "$*: 100 MiB download over HTTP/2 (curl --http2, $BIG_RUNS runs, in turns)"
    declare -A speeds=()
    for i in $(seq "$BIG_RUNS"); do
        for col in $(in_turns "$i" "$@"); do
            local out code size t version
            out=$(curl -sk --http2 -o /dev/null --max-time 60 \
                -w '%{http_code} %{size_download} %{time_total} %{http_version}' \
                "https://127.0.0.1:${PORT_OF[$col]}/100m") || die "HTTP/2 download through $col failed: $out"
            read -r code size t version <<<"$out"
            [ "$code" = 200 ] && [ "$size" = 104857600 ] && [ "$version" = 2 ] \
                || die "HTTP/2 download through $col: $out"
            speeds[$col]+=" $(calc "$size / $t / 1e6")"
        done
    done
    for col in "$@"; do record h2_mib100_dl_MBps "$col" "$(median ${speeds[$col]})"; done
}

bench_startup() {
    log "start-up time to the first 200 ($STARTUPS samples each)"
    local out
    write_nginx_proxy_conf start-nginx "$P_START_NGINX"
    write_hawkey_conf start-hawkey "$P_START_HAWKEY"
    out=$(python3 "$LIB/startup_time.py" "$P_START_NGINX" "$STARTUPS" "$WORK/start-nginx.out" -- \
        "$NGINX" -e "$WORK/start-nginx.err" -p "$WORK" -c "$WORK/start-nginx.conf" -g 'daemon off;') \
        || die "nginx start-up measurement failed"
    log "  nginx samples (ms): $out"
    record startup_ms nginx "$(median $out)"
    out=$(python3 "$LIB/startup_time.py" "$P_START_HAWKEY" "$STARTUPS" "$WORK/start-hawkey.out" -- \
        "$HAWKEY" -c "$WORK/start-hawkey.json") || die "hawkey start-up measurement failed"
    log "  hawkey samples (ms): $out"
    record startup_ms hawkey "$(median $out)"
}

bench_binary_sizes() {
    record binary_MiB nginx "$(calc "$(stat -c %s "$NGINX") / 1048576")"
    record binary_MiB hawkey "$(calc "$(stat -c %s "$HAWKEY") / 1048576")"
    if [ -x "$HAWKEY_MUSL" ]; then
        record binary_musl_MiB hawkey "$(calc "$(stat -c %s "$HAWKEY_MUSL") / 1048576")"
    else
        log "no static musl binary at $HAWKEY_MUSL (bash .ci/build-static.sh builds it): row skipped"
    fi
}

# ---- columns -------------------------------------------------------------------------

# start_column COLUMN NAME PORT [64k] [tls]: writes config NAME for column COLUMN
# (nginx* or hawkey), starts it and waits for its first 200
start_column() {
    local col=$1 name=$2 port=$3 big=${4:-} tls=${5:-} scheme=http
    [ "$tls" = tls ] && scheme=https
    if [ "$col" = hawkey ]; then
        write_hawkey_conf "$name" "$port" "$tls"; start_hawkey "$name"
    else
        write_nginx_proxy_conf "$name" "$port" "$big" "$tls"; start_nginx "$name"
    fi
    PORT_OF[$1]=$port
    PID_OF[$1]=$SERVER_PID
    wait_http "$scheme://127.0.0.1:$port/"
}

run_direct() {          # the backend alone, for reference (not in turns)
    PORT_OF[direct]=$P_BACKEND
    PID_OF[direct]=$BACKEND_PID
    bench_small_keepalive direct
    bench_conn_close direct
    bench_1mib direct
    [ "$QUICK" = 1 ] || bench_100mib direct
}

run_plain_proxies() {   # nginx, nginx64k and hawkey side by side, measured in turns
    start_column nginx nginx "$P_NGINX"
    bench_idle_rss nginx "${PID_OF[nginx]}"
    start_column hawkey hawkey "$P_HAWKEY"
    bench_idle_rss hawkey "${PID_OF[hawkey]}"
    start_column nginx64k nginx64k "$P_NGINX64" 64k
    bench_small_keepalive nginx hawkey
    bench_conn_close nginx hawkey
    bench_1mib nginx nginx64k hawkey
    [ "$QUICK" = 1 ] || bench_100mib nginx nginx64k hawkey
    stop_server "${PID_OF[nginx64k]}"
    local n col
    for n in 1000 5000; do
        [ "$QUICK" = 1 ] && [ "$n" = 5000 ] && continue
        for col in nginx hawkey; do bench_idle_clients "$col" "$n"; done
    done
    stop_server "${PID_OF[nginx]}"
    stop_server "${PID_OF[hawkey]}"
}

run_tls() {
    start_column nginx nginx-tls "$P_NGINX_TLS" "" tls
    start_column hawkey hawkey-tls "$P_HAWKEY_TLS" "" tls
    bench_tls nginx hawkey
    bench_h2 nginx hawkey
    local col
    for col in nginx hawkey; do bench_idle_clients "$col" 1000 h2; done
    stop_server "${PID_OF[nginx]}"
    stop_server "${PID_OF[hawkey]}"
}

# ---- main ----------------------------------------------------------------------------

main() {
    local t0=$SECONDS
    ensure_tools
    build_hawkey
    ulimit -n "$(ulimit -Hn)" || log "could not raise ulimit -n"
    [ "$(ulimit -n)" -ge 12000 ] || log "ulimit -n is $(ulimit -n): the 5000-client row may fail"
    check_ports $(seq "$PORT_BASE" $((PORT_BASE + 9)))
    make_workdir
    log "work dir $WORK"

    meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    meta machine "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -r)); wrk, the backend and the proxy share them, so absolute numbers are low: read the ratios"
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
    meta versions "$("$HAWKEY" --version 2>&1 | head -1); $("$NGINX" -v 2>&1 | head -1 | sed 's/^nginx version: //'); wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'); $(curl --version | head -1 | awk '{print $1, $2}')"
    meta tls "self-signed $([ "$KEY_TYPE" = rsa ] && echo 'RSA 2048' || echo 'ECDSA P-256') cert; nginx: ssl_session_cache off, tickets off, listen ... ssl http2, keepalive_requests 1000000; handshake clients never resume"
    meta mode "$([ "$QUICK" = 1 ] && echo "quick (${DUR} s runs)" || echo "full (${DUR} s runs, ${WARM} s warm-up)")"
    meta notes "nginx proxies: access_log off, client_max_body_size 0, worker_connections 16384, worker_rlimit_nofile = hard limit; backend: nginx, 2 workers, sendfile; direct CPU column = the backend's CPU"

    write_backend_conf
    start_nginx backend
    BACKEND_PID=$SERVER_PID
    wait_http "http://127.0.0.1:$P_BACKEND/"
    [ "$(curl -s "http://127.0.0.1:$P_BACKEND/" | wc -c)" = 19 ] || die "backend body is not 19 bytes"

    run_direct
    run_plain_proxies
    run_musl_idle
    [ "$QUICK" = 1 ] || run_tls
    bench_startup       # proxies need the backend for their first 200
    stop_server "$BACKEND_PID"
    bench_binary_sizes

    [ -z "$WRK_ERRORS" ] || meta wrk_errors "$WRK_ERRORS"
    meta duration "$((SECONDS - t0)) s"
    meta load "load average at start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes the numbers noisy)"
    log "done in $((SECONDS - t0)) s"
    python3 "$LIB/report.py" "$WORK/results.tsv" "$WORK/meta.tsv" "$JSON_OUT"
    [ -z "$JSON_OUT" ] || log "JSON written to $JSON_OUT"
}

main
