#!/usr/bin/env bash
# tools/demo.sh: the quick start's first command. Installs what is missing,
# builds chronos (Release) and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh cmake make g++ libboost-context-dev libgtest-dev libbenchmark-dev
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DCHRONOS_BUILD_TESTS=OFF \
  -DCHRONOS_BUILD_BENCH=OFF -DCHRONOS_BUILD_EXAMPLES=ON >/dev/null
cmake --build build-release -j"$(nproc)" --target chronos_demo
./build-release/examples/chronos_demo "$@"
