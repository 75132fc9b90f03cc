#!/usr/bin/env bash
# tests/consumer/run.sh: builds and runs the consumer project against chronos
# both through add_subdirectory and through an installed find_package config,
# static and shared.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "consumer: add_subdirectory"
cmake -S "$here" -B "$work/sub" -DCHRONOS_SOURCE_DIR="$root" >/dev/null
cmake --build "$work/sub" -j"$(nproc)" >/dev/null
"$work/sub/consumer"

for shared in OFF ON; do
  echo "consumer: find_package after install (BUILD_SHARED_LIBS=$shared)"
  cmake -S "$root" -B "$work/lib-$shared" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=$shared \
    -DCHRONOS_BUILD_TESTS=OFF -DCHRONOS_BUILD_BENCH=OFF -DCHRONOS_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build "$work/lib-$shared" -j"$(nproc)" >/dev/null
  cmake --install "$work/lib-$shared" --prefix "$work/prefix-$shared" >/dev/null
  cmake -S "$here" -B "$work/pkg-$shared" -DCMAKE_PREFIX_PATH="$work/prefix-$shared" >/dev/null
  cmake --build "$work/pkg-$shared" -j"$(nproc)" >/dev/null
  LD_LIBRARY_PATH="$work/prefix-$shared/lib" "$work/pkg-$shared/consumer"
done
