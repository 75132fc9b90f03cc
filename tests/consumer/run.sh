#!/usr/bin/env bash
# tests/consumer/run.sh: builds and runs the consumer project against chronos
# both through add_subdirectory and through an installed find_package config,
# static and shared.
#   CONSUMER_STATIC_BUILD, CONSUMER_SHARED_BUILD: an existing build directory
#   of chronos (BUILD_SHARED_LIBS OFF, ON) to install from instead of building
#   the library again; .ci/run passes the builds it has just tested.
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
  if [ "$shared" = ON ]; then lib=${CONSUMER_SHARED_BUILD:-}; else lib=${CONSUMER_STATIC_BUILD:-}; fi
  if [ -n "$lib" ]; then
    is_shared=OFF
    [ -e "$lib/libchronos.so" ] && is_shared=ON
    if [ "$is_shared" != "$shared" ]; then
      echo "consumer: $lib is not a build with BUILD_SHARED_LIBS=$shared" >&2
      exit 1
    fi
    echo "consumer: find_package after install of $lib (BUILD_SHARED_LIBS=$shared)"
  else
    echo "consumer: find_package after install (BUILD_SHARED_LIBS=$shared)"
    lib=$work/lib-$shared
    cmake -S "$root" -B "$lib" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=$shared \
      -DCHRONOS_BUILD_TESTS=OFF -DCHRONOS_BUILD_BENCH=OFF -DCHRONOS_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build "$lib" -j"$(nproc)" >/dev/null
  fi
  cmake --install "$lib" --prefix "$work/prefix-$shared" >/dev/null
  cmake -S "$here" -B "$work/pkg-$shared" -DCMAKE_PREFIX_PATH="$work/prefix-$shared" >/dev/null
  cmake --build "$work/pkg-$shared" -j"$(nproc)" >/dev/null
  LD_LIBRARY_PATH="$work/prefix-$shared/lib" "$work/pkg-$shared/consumer"
done
