#!/usr/bin/env bash
# Builds hawkey as one static binary for x86_64 Linux (musl), checks that it is
# static and runs with an empty environment, and fails if it is over 3 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add x86_64-unknown-linux-musl
if ! command -v musl-gcc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq musl-tools >/dev/null
fi
cargo build --release --target x86_64-unknown-linux-musl

bin=target/x86_64-unknown-linux-musl/release/hawkey
size=$(stat -c %s "$bin")
echo "static binary: $bin, $size bytes"
file "$bin" 2>/dev/null || true
if readelf -d "$bin" | grep -q '(NEEDED)'; then
  echo "error: $bin needs shared libraries" >&2
  exit 1
fi
env -i "$PWD/$bin" --version
max=$((3 * 1024 * 1024))
if [ "$size" -gt "$max" ]; then
  echo "error: $bin is $size bytes, over 3 MiB" >&2
  exit 1
fi
