#!/usr/bin/env bash
# bench/sync/run.sh: builds the three sync-benchmark programs (chronos, Go,
# Boost.Fiber), runs every workload x threads for each of them, strictly one
# program at a time, and prints a Markdown table of the medians. See README.md.
#
#   bash bench/sync/run.sh                 # from anywhere; reference sizes
#   OUT_DIR=/tmp/x bash bench/sync/run.sh  # also writes /tmp/x/results.md
#
# Variables: REPS (runs per cell, default 3; the table shows the median),
# PINGPONG_N, BUFFERED_N, MUTEX_UNCONTENDED_N, MUTEX_CONTENDED_N (the sizes),
# JOBS (build parallelism, default 2), PROG_TIMEOUT_S (per program, default 60).
# Installs the Debian packages it needs when missing (tools/deps.sh, as root).
# Exits 1 if any program failed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD="$ROOT/build-syncbench"
BIN="$BUILD/sync-bin"
REPS=${REPS:-3}
JOBS=${JOBS:-2}
PROG_TIMEOUT_S=${PROG_TIMEOUT_S:-60}

# workload:threads:n, one table row each, in this order.
ROWS=(
  "pingpong:1:${PINGPONG_N:-1000000}"
  "pingpong:2:${PINGPONG_N:-1000000}"
  "buffered:1:${BUFFERED_N:-5000000}"
  "buffered:2:${BUFFERED_N:-5000000}"
  "mutex_uncontended:1:${MUTEX_UNCONTENDED_N:-20000000}"
  "mutex_contended:1:${MUTEX_CONTENDED_N:-4000000}"
  "mutex_contended:2:${MUTEX_CONTENDED_N:-4000000}"
)
PEERS=(chronos go boostfiber)

log() { echo "sync/run.sh: $*" >&2; }

# ---------------------------------------------------------------- build
bash "$ROOT/tools/deps.sh" cmake g++ golang-go libboost-fiber-dev libboost-context-dev \
  libbenchmark-dev
mkdir -p "$BIN"

log "building chronos (Release) in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCHRONOS_BUILD_TESTS=OFF \
  -DCHRONOS_BUILD_EXAMPLES=OFF -DCHRONOS_BUILD_BENCH=ON >&2
cmake --build "$BUILD" --target sync_compare -j "$JOBS" >&2
cp -f "$BUILD/bench/sync_compare" "$BIN/chronos"

log "building the Go program"
(
  cd "$HERE/go"
  export GOFLAGS=-mod=mod GOCACHE=${GOCACHE:-/tmp/gocache} GOPROXY=off GO111MODULE=on CGO_ENABLED=0
  go vet . >&2
  go build -trimpath -o "$BIN/go" .
)

log "building the Boost.Fiber program"
g++ -O2 -std=c++20 -Wall -Wextra -pthread -o "$BIN/boostfiber" "$HERE/boostfiber/main.cpp" \
  -lboost_fiber -lboost_context

sha=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$sha" != unknown ] && ! git -C "$ROOT" diff --quiet HEAD 2>/dev/null; then sha+="-dirty"; fi
cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
declare -A VERSION=(
  [chronos]="chronos $sha (Release, -O2), $("${cxx:-g++}" --version | head -n 1)"
  [go]="$(go version)"
  [boostfiber]="Boost.Fiber (Debian libboost-fiber-dev $(dpkg-query -W -f='${Version}' libboost-fiber-dev)), $(g++ --version | head -n 1), -O2"
)

# ---------------------------------------------------------------- run
LOGS=$(mktemp -d /tmp/syncbench.XXXXXX)
log "program logs go to $LOGS"

# run_one PEER WORKLOAD THREADS N [EXTRA...]: prints the RESULT line's
# ns_per_op (or allocs with --count-allocs), or FAIL. (It runs in a command
# substitution: the FAILs are counted after the loop.)
run_one() {
  local peer=$1 w=$2 t=$3 n=$4
  shift 4
  local out="$LOGS/$peer-$w-$t.$RANDOM"
  if ! timeout "$PROG_TIMEOUT_S" "$BIN/$peer" --workload "$w" --threads "$t" --n "$n" "$@" \
    >"$out" 2>&1; then
    log "FAILED: $peer --workload $w --threads $t --n $n $* (log: $out)"
    echo FAIL
    return
  fi
  local key=ns_per_op
  [ "${1:-}" = --count-allocs ] && key=allocs
  local v
  v=$(grep '^RESULT ' "$out" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$key=//p")
  if [ -z "$v" ]; then
    log "no $key in the RESULT line: $peer $w threads=$t (log: $out)"
    echo FAIL
    return
  fi
  echo "$v"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }

declare -A CELL RUNS ALLOCS
start=$(date +%s)
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
for row in "${ROWS[@]}"; do
  IFS=: read -r w t n <<<"$row"
  declare -A vals=()
  # Repetitions interleave the peers (chronos, go, boostfiber, chronos, ...),
  # so that a slow patch of the machine does not land on one peer only.
  for ((r = 1; r <= REPS; r++)); do
    for p in "${PEERS[@]}"; do
      log "$w threads=$t n=$n: $p (run $r/$REPS)"
      vals[$p]+="$(run_one "$p" "$w" "$t" "$n") "
    done
  done
  for p in "${PEERS[@]}"; do
    # shellcheck disable=SC2086
    if [[ " ${vals[$p]}" == *" FAIL "* ]]; then CELL[$row,$p]=FAIL; else CELL[$row,$p]=$(median ${vals[$p]}); fi
    RUNS[$row,$p]=${vals[$p]% }
  done
  log "$w threads=$t n=$n: chronos allocations (--count-allocs)"
  ALLOCS[$row]=$(run_one chronos "$w" "$t" "$n" --count-allocs)
  unset vals
done
elapsed=$(($(date +%s) - start))
failed=0
for v in "${CELL[@]}" "${ALLOCS[@]}"; do [ "$v" = FAIL ] && failed=1; done

# ---------------------------------------------------------------- report
report() {
  echo "# chronos sync primitives vs Go and Boost.Fiber"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- kernel: $(uname -r)"
  echo "- CPU: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) CPUs online"
  echo "- load average at the start: $loadavg; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: \`bash bench/sync/run.sh\` (REPS=$REPS; runs took ${elapsed} s)"
  for p in "${PEERS[@]}"; do echo "- $p: ${VERSION[$p]}"; done
  echo
  echo "ns per operation, median of $REPS runs (lower is better); ratios below 1 mean chronos is faster."
  echo
  echo "| workload | threads | chronos | go | boostfiber | chronos/go | chronos/boostfiber |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for row in "${ROWS[@]}"; do
    IFS=: read -r w t n <<<"$row"
    local c=${CELL[$row,chronos]} g=${CELL[$row,go]} b=${CELL[$row,boostfiber]}
    echo "| $w | $t | $c | $g | $b | $(ratio "$c" "$g") | $(ratio "$c" "$b") |"
  done
  echo
  echo "chronos allocations (global operator new calls, any thread) during the timed phase,"
  echo "one extra run with \`--count-allocs\`:"
  echo
  echo "| workload | threads | n | allocs | allocs per op |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for row in "${ROWS[@]}"; do
    IFS=: read -r w t n <<<"$row"
    local a=${ALLOCS[$row]}
    echo "| $w | $t | $n | $a | $(awk -v a="$a" -v n="$n" 'BEGIN { if (a ~ /^[0-9]+$/) printf "%.2g", a / n; else print "-" }') |"
  done
  echo
  echo "Every run (ns per operation):"
  echo
  echo "| workload | threads | n | chronos | go | boostfiber |"
  echo "| --- | ---: | ---: | --- | --- | --- |"
  for row in "${ROWS[@]}"; do
    IFS=: read -r w t n <<<"$row"
    echo "| $w | $t | $n | ${RUNS[$row,chronos]} | ${RUNS[$row,go]} | ${RUNS[$row,boostfiber]} |"
  done
  if [ "$failed" -ne 0 ]; then
    echo
    echo "**Some programs failed**; their logs are in $LOGS."
  fi
}

report_text=$(report)
echo "$report_text"
if [ -n "${OUT_DIR:-}" ]; then
  mkdir -p "$OUT_DIR"
  echo "$report_text" >"$OUT_DIR/results.md"
  log "wrote $OUT_DIR/results.md"
fi
exit "$failed"
