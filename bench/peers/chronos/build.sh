#!/usr/bin/env bash
# bench/peers/chronos/build.sh: builds chronos' peer programs for
# ../shared/peers/run.sh (see its README, "Adding a peer"):
#
#   PEER_PATH=$PWD/bench/peers/chronos ../shared/peers/run.sh yield spawn skynet
#
# Configures this checkout in Release into build/ (tests off, benchmarks on),
# builds the targets peer_yield, peer_spawn, peer_skynet, peer_idle and
# peer_pingpong (bench/CMakeLists.txt, sources in src/) and the example
# chronos_echo_server, copies them to bin/yield, bin/spawn, bin/skynet,
# bin/idle, bin/pingpong and bin/echo-server, and writes bin/version.txt.
# Installs the Debian packages it needs when missing. Works offline. JOBS
# (default 2) sets the build parallelism.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(cd ../../.. && pwd)

PACKAGES=(cmake g++ libboost-context-dev libbenchmark-dev)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "chronos/build.sh: missing Debian packages: ${missing[*]} (install them as root)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${missing[@]}" >&2 || { apt-get update >&2 && apt-get install -y "${missing[@]}" >&2; }
fi

cmake -S "$ROOT" -B build -DCMAKE_BUILD_TYPE=Release \
    -DCHRONOS_BUILD_TESTS=OFF -DCHRONOS_BUILD_EXAMPLES=OFF -DCHRONOS_BUILD_BENCH=ON
PROGRAMS=(yield spawn skynet idle pingpong)
cmake --build build --target "${PROGRAMS[@]/#/peer_}" -j "${JOBS:-2}"

mkdir -p bin
for prog in "${PROGRAMS[@]}"; do
    cp -f "build/bench/peer_$prog" "bin/$prog.tmp"
    mv -f "bin/$prog.tmp" "bin/$prog"
done
# echo-server is examples/echo_server.cpp (the examples are switched on for it).
cmake -S "$ROOT" -B build -DCHRONOS_BUILD_EXAMPLES=ON >/dev/null
cmake --build build --target chronos_echo_server -j "${JOBS:-2}"
cp -f build/examples/chronos_echo_server bin/echo-server.tmp
mv -f bin/echo-server.tmp bin/echo-server

sha=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$sha" != unknown ] && ! git -C "$ROOT" diff --quiet HEAD 2>/dev/null; then sha+="-dirty"; fi
cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' build/CMakeCache.txt)
echo "chronos $sha (Release), $("${cxx:-g++}" --version | head -n 1)" >bin/version.txt
cat bin/version.txt
