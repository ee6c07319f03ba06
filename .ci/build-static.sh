#!/usr/bin/env bash
# Builds hawkey as one static binary per target [P] (all three, or the targets named
# as arguments), checks that each is static, runs with an empty environment (the
# aarch64 one under qemu-aarch64-static), and is at most 3 MiB; prints the sizes.
#
# rustup brings each target's standard library; ring's C code needs a C compiler for
# the target: musl-gcc (musl-tools) for x86_64, Debian's aarch64 cross gcc, and the
# host gcc with its 32-bit support libraries for i686 (gcc-multilib itself cannot
# be installed beside the aarch64 cross compiler on Debian, so its two parts are).
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl i686-unknown-linux-musl)
fi

packages=()
for target in "${targets[@]}"; do
  case "$target" in
    x86_64-unknown-linux-musl) command -v musl-gcc >/dev/null || packages+=(musl-tools) ;;
    aarch64-unknown-linux-musl)
      command -v aarch64-linux-gnu-gcc >/dev/null || packages+=(gcc-aarch64-linux-gnu)
      command -v qemu-aarch64-static >/dev/null || packages+=(qemu-user-static)
      ;;
    i686-unknown-linux-musl)
      gcc_major=$(gcc -dumpversion | cut -d. -f1)
      dpkg -s "lib32gcc-$gcc_major-dev" libc6-dev-i386 >/dev/null 2>&1 ||
        packages+=("lib32gcc-$gcc_major-dev" libc6-dev-i386)
      ;;
    *) echo "error: unknown target $target" >&2; exit 2 ;;
  esac
done
if [ ${#packages[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${packages[@]}" >/dev/null
fi
rustup target add "${targets[@]}"

export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
export CC_i686_unknown_linux_musl=gcc # cc adds -m32
max=$((3 * 1024 * 1024))
for target in "${targets[@]}"; do
  cargo build --release --target "$target"
  bin=target/$target/release/hawkey
  size=$(stat -c %s "$bin")
  file "$bin" 2>/dev/null || true
  if readelf -d "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
    echo "error: $bin needs shared libraries" >&2
    exit 1
  fi
  case "$target" in
    aarch64-*) env -i "$(command -v qemu-aarch64-static)" "$PWD/$bin" --version ;;
    *) env -i "$PWD/$bin" --version ;;
  esac
  if [ "$size" -gt "$max" ]; then
    echo "error: $bin is $size bytes, over 3 MiB" >&2
    exit 1
  fi
  echo "static binary: $bin, $size bytes ($(awk "BEGIN { printf \"%.2f\", $size / 1048576 }") MiB)"
done
