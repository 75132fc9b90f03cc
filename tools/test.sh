#!/usr/bin/env bash
# tools/test.sh: the quick start's second command. Installs what is missing,
# builds chronos with its tests, and runs the whole suite with CTest.
#   BUILD_DIR (default build-test), CMAKE_ARGS (extra cmake arguments),
#   CTEST_ARGS (extra ctest arguments) adjust it; .ci/run uses them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh cmake make g++ libboost-context-dev libgtest-dev libbenchmark-dev valgrind \
  libunwind-dev python3 gdb
dir=${BUILD_DIR:-build-test}
# shellcheck disable=SC2086
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} -DCHRONOS_BUILD_TESTS=ON \
  -DCHRONOS_BUILD_BENCH=${BUILD_BENCH:-ON} -DCHRONOS_BUILD_EXAMPLES=ON ${CMAKE_ARGS:-} >/dev/null
cmake --build "$dir" -j"$(nproc)"
# shellcheck disable=SC2086
ctest --test-dir "$dir" -j"$(nproc)" --output-on-failure ${CTEST_ARGS:-}
