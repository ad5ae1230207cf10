#!/usr/bin/env bash
# bench/capacity.sh — llmsim's capacity curve with no gateway in front.
#
# Starts a fresh llmsim for every load point and drives it with loadgen at
# multiples of its modelled capacity (Poisson arrivals, users who give up),
# then writes docs/capacity.md (table) and docs/capacity.png (gnuplot).
# Each point runs WARMUP seconds first and reports only the DURATION
# seconds after it (loadgen phase 2): the first seconds of an overload,
# before the queue has built up, still serve users well and would otherwise
# flatter the averages.
# What it shows: past 1x, completions stay near capacity but time to first
# token grows until users give up, so goodput (answers that start within
# the SLO) collapses; the gateway's admission control exists to keep that
# curve flat.
#
#   bash bench/capacity.sh                 defaults below (about 5 minutes)
#   DURATION=10 LOADS="1 3" bash bench/capacity.sh
#   NO_ABORT=1 ...                         also run llmsim --no-abort (server
#                                          that keeps serving users who left)
#   REPORT_ONLY=1 ...                      redo table and plot from the last run
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
OUT=${OUT:-$BUILD/bench/capacity}
DOCS=${DOCS:-$ROOT/docs}
PORT=${PORT:-19301}

# Model (see docs/llmsim.md): service time at a full batch
#   = prefill_base + per_token_us * prompt_tokens / 1000 + (tokens - 1) * token_ms * (1 + batch_slowdown)
SLOTS=${SLOTS:-16}
TOKEN_MS=${TOKEN_MS:-20}
SLOWDOWN=${SLOWDOWN:-1.0}
PREFILL_MS=${PREFILL_MS:-20}
PREFILL_US=${PREFILL_US:-100}
TOKENS=${TOKENS:-32}
PROMPT_CHARS=${PROMPT_CHARS:-400}
WARMUP=${WARMUP:-15}
DURATION=${DURATION:-20}
GIVE_UP=${GIVE_UP:-10}
SLO_TTFT=${SLO_TTFT:-2}
LOADS=${LOADS:-"0.5 1 1.5 2 3 5"}
NO_ABORT=${NO_ABORT:-0}

for b in llmsim loadgen; do
    [ -x "$BUILD/$b" ] || { echo "capacity.sh: $BUILD/$b not built (run make)" >&2; exit 1; }
done
command -v gnuplot >/dev/null || { echo "capacity.sh: gnuplot not installed (bash scripts/deps.sh bench)" >&2; exit 1; }
mkdir -p "$OUT" "$DOCS"

read -r SERVICE_MS CAPACITY < <(awk -v p="$PREFILL_MS" -v u="$PREFILL_US" -v c="$PROMPT_CHARS" \
    -v t="$TOKENS" -v k="$TOKEN_MS" -v s="$SLOWDOWN" -v n="$SLOTS" 'BEGIN {
    pt = int((c + 3) / 4); svc = p + u * pt / 1000 + (t - 1) * k * (1 + s);
    printf "%.1f %.4f\n", svc, n * 1000 / svc }')
echo "capacity.sh: slots=$SLOTS service=${SERVICE_MS}ms capacity=${CAPACITY} req/s; loads: $LOADS x (${WARMUP}s + ${DURATION}s)"

SIM_PID=
cleanup() { [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

run_point() { # mode load
    local mode=$1 load=$2 extra=()
    [ "$mode" = noabort ] && extra=(--no-abort)
    "$BUILD/llmsim" --port "$PORT" --slots "$SLOTS" --token-ms "$TOKEN_MS" --batch-slowdown "$SLOWDOWN" \
        --prefill-base-ms "$PREFILL_MS" --prefill-per-token-us "$PREFILL_US" --seed 1 "${extra[@]}" \
        2>"$OUT/llmsim-$mode-$load.log" &
    SIM_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
        sleep 0.05
    done
    local rate
    rate=$(awk -v c="$CAPACITY" -v l="$load" 'BEGIN { printf "%.4f", c * l }')
    "$BUILD/loadgen" --url "http://127.0.0.1:$PORT/v1/chat/completions" --rate "$rate" --poisson \
        --schedule "1x:${WARMUP}s,1x:${DURATION}s" --max-tokens "$TOKENS" --prompt-chars "$PROMPT_CHARS" \
        --give-up "${GIVE_UP}s" --slo-ttft "${SLO_TTFT}s" --seed 42 --quiet \
        --csv "$OUT/$mode-$load.csv" --json "$OUT/$mode-$load.json"
    curl -sf "http://127.0.0.1:$PORT/sim/stats" >"$OUT/$mode-$load.stats.json"
    kill "$SIM_PID"
    wait "$SIM_PID" || true
    SIM_PID=
    echo "  $mode ${load}x done"
}

modes=(abort)
[ "$NO_ABORT" = 1 ] && modes+=(noabort)
if [ "${REPORT_ONLY:-0}" != 1 ]; then
    for mode in "${modes[@]}"; do
        for load in $LOADS; do
            run_point "$mode" "$load"
        done
    done
fi

# Table (markdown) and the data file gnuplot reads.
/usr/bin/python3 - "$OUT" "$DOCS" "$CAPACITY" "$SERVICE_MS" "$SLO_TTFT" "$GIVE_UP" "$DURATION" "$SLOTS" \
    "$TOKENS" "$LOADS" "${modes[*]}" "$WARMUP" <<'PY'
import csv, json, math, sys
out, docs, cap, svc, slo, give_up, dur, slots, tokens, loads, modes, warmup = sys.argv[1:]
cap = float(cap)
give_up_ms = float(give_up) * 1000
loads = loads.split()
rows = {}

def user_ttft(path):
    """p50/p99 TTFT as users saw it in the measured phase: a user who left
    first waited at least the give-up time (censored there)."""
    v = []
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["phase"] != "2":
                continue
            if r["ttft_ms"]:
                v.append(float(r["ttft_ms"]))
            elif r["gave_up"] == "1":
                v.append(give_up_ms)
    v.sort()
    pick = lambda q: v[max(0, math.ceil(q * len(v)) - 1)] if v else float("nan")
    return pick(0.5), pick(0.99)

with open(f"{out}/capacity.dat", "w") as dat:
    dat.write("# load offered ok_rps goodput_rps ttft_p50_s ttft_p99_s gaveup_frac noabort_ok_rps "
              "noabort_goodput_rps user_ttft_p50_s user_ttft_p99_s\n")
    for load in loads:
        vals = {}
        for mode in modes.split():
            s = json.load(open(f"{out}/{mode}-{load}.json"))["phases"][-1]  # after the warm-up
            st = json.load(open(f"{out}/{mode}-{load}.stats.json"))
            s["user_ttft"] = user_ttft(f"{out}/{mode}-{load}.csv")
            vals[mode] = (s, st)
        s, st = vals["abort"]
        na = vals.get("noabort")
        nan = s["ttft_ms"]["n"] == 0
        dat.write("%s %.3f %.3f %.3f %s %s %.4f %s %s %.3f %.3f\n" % (
            load, s["offered_rps"], s["ok_rps"], s["goodput_rps"],
            "NaN" if nan else "%.3f" % (s["ttft_ms"]["p50"] / 1000),
            "NaN" if nan else "%.3f" % (s["ttft_ms"]["p99"] / 1000), s["gave_up"] / max(1, s["offered"]),
            "%.3f" % na[0]["ok_rps"] if na else "NaN", "%.3f" % na[0]["goodput_rps"] if na else "NaN",
            s["user_ttft"][0] / 1000, s["user_ttft"][1] / 1000))
        rows[load] = vals

def fmt_ms(d, key):
    if d["n"] == 0:
        return "–"
    v = d[key]
    return "%.2f s" % (v / 1000) if v >= 1000 else "%.0f ms" % v

lines = []
lines.append("# llmsim capacity curve (no gateway)\n")
lines.append("Produced by `bench/capacity.sh`; plot: `docs/capacity.png`.\n")
lines.append(f"llmsim `--slots {slots}`, {tokens} output tokens per request, Poisson arrivals; each point runs "
             f"{warmup} s of warm-up and is measured over the next {dur} s (steady state); users give up after "
             f"{give_up} s; SLO: time to first token <= {slo} s.  "
             f"Modelled service time at a full batch {float(svc):.0f} ms, so capacity = "
             f"{slots} / {float(svc)/1000:.3f} s = **{cap:.1f} req/s**.\n")
for mode in modes.split():
    title = {"abort": "llmsim default: a client that leaves is aborted and frees its slot",
             "noabort": "llmsim --no-abort: the server keeps generating for clients that left"}[mode]
    lines.append(f"\n## {title}\n")
    lines.append("| load | offered req/s | completed 2xx req/s | goodput req/s | goodput / offered | "
                 "users' TTFT p50 | users' TTFT p99 | TTFT p50 (completed) | gave up | server queue max | "
                 "tokens wasted |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for load in loads:
        s, st = rows[load][mode]
        wasted = st["tokens_wasted"] / max(1, st["tokens_generated"])
        ut = lambda v: ">= %g s (gave up)" % float(give_up) if v >= give_up_ms else fmt_ms({"n": 1, "v": v}, "v")
        lines.append("| %sx | %.1f | %.1f | %.1f | %.0f%% | %s | %s | %s | %.0f%% | %d | %.0f%% |" % (
            load, s["offered_rps"], s["ok_rps"], s["goodput_rps"], 100 * s["goodput_fraction"],
            ut(s["user_ttft"][0]), ut(s["user_ttft"][1]), fmt_ms(s["ttft_ms"], "p50"),
            100 * s["gave_up"] / max(1, s["offered"]), st["max_queue_len"], 100 * wasted))
lines.append("\n## What it shows\n")
lines.append("Below capacity every answer starts within tens of milliseconds.  Past it, the server's "
             "unbounded FIFO grows until the oldest waiting user is about to give up; from then on each "
             "freed slot goes to a request whose user leaves before (or soon after) its first token, so "
             "completed answers fall toward zero while the server stays fully busy generating tokens "
             "nobody receives (the *tokens wasted* column).  Offering more load than capacity does not "
             "just add latency: it takes goodput from the capacity figure to zero.  Keeping the server "
             "at its capacity and refusing or queueing the excess in front of it is the gateway's job.\n")
lines.append("\nColumns: *offered* = arrivals per second in the measured window; *completed 2xx* and "
             "*goodput* = answers finishing inside the window per second (goodput: TTFT within the SLO); "
             "*goodput / offered* = share of the window's arrivals that were good; *users' TTFT*: over all "
             "the window's arrivals, a user who gave up counted as waiting the give-up time (so the "
             "percentile is a lower bound once it reaches it); *TTFT (completed)*: over the arrivals that "
             "completed (– when none did); *gave up* = share of arrivals "
             "whose user left; *server queue max* and *tokens wasted* (share of generated tokens whose answer "
             "never reached its client whole) from llmsim's `/sim/stats` over the whole run.\n")
open(f"{docs}/capacity.md", "w").write("\n".join(lines))
print("\n".join(lines))
PY

gnuplot -e "datafile='$OUT/capacity.dat'; outfile='$DOCS/capacity.png'; capacity=$CAPACITY; slo=$SLO_TTFT; giveup=$GIVE_UP; noabort=$NO_ABORT; slots=$SLOTS" \
    "$ROOT/bench/capacity.gp"
echo "capacity.sh: wrote $DOCS/capacity.md and $DOCS/capacity.png"
