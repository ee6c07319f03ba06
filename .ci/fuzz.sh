#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (FUZZ_SECONDS, default 60) when a nightly
# toolchain is there; without one (or without cargo-fuzz and the means to install
# it) it says so and stops, since `cargo test` already replays the corpus on stable.
# A crash (or a build failure) fails the run; a crash's input is left under
# fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain here, skipped (the corpus is replayed by cargo test)"
  exit 0
fi
if ! command -v cargo-fuzz >/dev/null && ! cargo install cargo-fuzz --locked; then
  echo "fuzz: cargo-fuzz could not be installed, skipped"
  exit 0
fi
for target in request_head response_head chunked config static_path h2_frames hpack; do
  echo "fuzz: $target for $seconds s"
  # A scratch copy of the corpus: new inputs found here are not kept.
  scratch=$(mktemp -d)
  cp -r "fuzz/corpus/$target/." "$scratch/"
  log=$(mktemp)
  if cargo +nightly fuzz run -O "$target" "$scratch" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units)' "$log" || true
    rm -rf "$scratch" "$log"
  else
    tail -n 40 "$log" >&2
    echo "fuzz: $target failed; the input is under fuzz/artifacts/$target" >&2
    exit 1
  fi
done
