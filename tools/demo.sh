#!/usr/bin/env bash
# tools/demo.sh: the quick start's first command. Installs what is missing,
# builds chronos (Release), runs the fiber demo, then runs the echo server
# and the echo client against each other on loopback for a couple of seconds
# and prints what the client measured (every byte is verified).
#   PORT (default 7000), CONNS (default 200), SECONDS_ (default 2) adjust it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh cmake make g++ libboost-context-dev libgtest-dev libbenchmark-dev
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DCHRONOS_BUILD_TESTS=OFF \
  -DCHRONOS_BUILD_BENCH=OFF -DCHRONOS_BUILD_EXAMPLES=ON >/dev/null
cmake --build build-release -j"$(nproc)" --target chronos_demo chronos_echo_server chronos_echo_client
./build-release/examples/chronos_demo "$@"

port=${PORT:-7000}
echo
echo "== echo: chronos_echo_server on 127.0.0.1:$port, chronos_echo_client with ${CONNS:-200} connections for ${SECONDS_:-2} s"
./build-release/examples/chronos_echo_server --port "$port" --workers 1 >/tmp/chronos-echo-server.$$ 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f /tmp/chronos-echo-server.$$' EXIT
for _ in $(seq 50); do  # wait until it listens
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
./build-release/examples/chronos_echo_client --port "$port" --connections "${CONNS:-200}" \
  --duration "${SECONDS_:-2}" --workers 1
kill -TERM $server
wait $server
echo "server: $(tail -n 1 /tmp/chronos-echo-server.$$)"
