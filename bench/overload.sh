#!/usr/bin/env bash
# bench/overload.sh — overload protection: llmsim behind no gateway, behind
# HAProxy (best static maxconn + timeout queue found by a sweep) and behind
# rampart (adaptive, never told the capacity), at 0.5x..10x of llmsim's
# capacity; plus a capacity halving and an abusive tenant.  A benchmark, not
# a test: it reports, it does not pass or fail.
#
#   bash bench/overload.sh              full run, about 14 minutes
#   QUICK=1 bash bench/overload.sh      shorter phases and sweep, about 6 minutes
#   REPORT_ONLY=1 bash bench/overload.sh   redo table, plot and docs from the last run
#
# Writes $OUT (raw CSV/JSON, samples, configs, logs), docs/overload-results.png
# and the "## Overload" section of docs/performance.md.  The knobs (SLOTS,
# TOKENS, PROMPT_CHARS, GIVE_UP, SLO_TTFT, LOADS, WARM, MEASURE, CAL_*,
# SETUPS, BASE_PORT, ...) are read by bench/overload_run.py; see its header.
# Everything listens on 127.0.0.1 (ports BASE_PORT..BASE_PORT+2, default 19440).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
OUT=${OUT:-$BUILD/bench/overload}
DOCS=${DOCS:-$ROOT/docs}
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [ "${REPORT_ONLY:-0}" != 1 ]; then
    bash "$ROOT/scripts/deps.sh" bench
    make -C "$ROOT" --no-print-directory BUILD="$BUILD" -j"$(nproc)" all >/dev/null
    for b in rampart llmsim loadgen; do
        [ -x "$BUILD/$b" ] || bench_die "$BUILD/$b was not built"
    done
    for t in haproxy gnuplot; do
        command -v "$t" >/dev/null || bench_die "$t not installed (bash scripts/deps.sh bench)"
    done
    bench_raise_nofile 8192 || bench_log "open-file limit $(ulimit -Sn): direct 10x may run out of sockets"
    rm -rf "$OUT"
    mkdir -p "$OUT"
    bench_machine >"$OUT/machine.txt"
    echo "loadavg: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
    # Bounded: the driver's phases add up to ~14 min (QUICK ~6); 30 min is a hang.
    timeout --signal=TERM --kill-after=10 1800 /usr/bin/python3 "$ROOT/bench/overload_run.py" \
        --build "$BUILD" --out "$OUT"
fi

cmd="bash bench/overload.sh"
[ "${QUICK:-0}" = 1 ] && cmd="QUICK=1 $cmd"
/usr/bin/python3 "$ROOT/bench/overload_report.py" --out "$OUT" --docs "$DOCS" --command "$cmd"
gnuplot -e "outdir='$OUT'; outfile='$DOCS/overload-results.png'" "$ROOT/bench/overload.gp"
bench_log "wrote $DOCS/overload-results.png and the Overload section of $DOCS/performance.md"
