#!/usr/bin/env bash
# bench/release.sh — what a bad canary costs the users, with and without
# automatic rollback.
#
# Two stable llmsim servers and one canary server in "bad release" mode
# (bad_release.error_rate, BAD_RATES) behind rampart.  The canary starts at
# its first step, 5% of the tenants.  Every server fails NOISE of its
# requests anyway, so the analysis must tell a real regression from noise.
# LOADGENS loadgen processes offer RATE req/s in total for DURATION s:
# streaming, Poisson arrivals, 32 tenants each (loadgen's mix limit), so
# LOADGENS x 32 tenants spread over the sticky split.
#
# Each bad rate runs with canary auto_rollback on (the default) once per
# seed in SEEDS, then once with it off (a regression only pauses the
# rollout at 5%).  Per run it reports the share of all requests that failed
# because of the bad release (the canary's failures beyond the stable
# failure ratio) and the time from canary start to the verdict (rollback,
# or the logged regression).  Tenants are split by a salted hash that is
# random per rampart process, so every run puts a different set of tenants
# on the canary; the seeds also change arrivals and llmsim's fault draws.
#
#   bash bench/release.sh              about 5 minutes
#   QUICK=1 bash bench/release.sh      one bad rate, one seed, shorter runs (~1.5 minutes)
#   BAD_RATES="0.2" DURATION=60 RATE=100 bash bench/release.sh
#   REPORT_ONLY=1 bash bench/release.sh    redo the table from the last runs
#
# Canary parameters are the defaults (docs/releases.md) except the
# analysis interval (INTERVAL, 5s instead of 30s: the verdict then comes
# when the evidence exists rather than at the next 30 s tick).  The
# concurrency limit is static and generous so admission control does not
# shape the traffic.  Results: $OUT/table.md and one directory per run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
OUT=${OUT:-$BUILD/bench/release}
PORT=${PORT:-19640}          # rampart; admin PORT+1, llmsim PORT+2..PORT+4
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    DURATION=${DURATION:-30}
    BAD_RATES=${BAD_RATES:-"0.2"}
    SEEDS=${SEEDS:-"1"}
else
    DURATION=${DURATION:-45}
    BAD_RATES=${BAD_RATES:-"0.2 0.05"}
    SEEDS=${SEEDS:-"1 2"}
fi
RATE=${RATE:-160}
LOADGENS=${LOADGENS:-16}
NOISE=${NOISE:-0.005}
INTERVAL=${INTERVAL:-5s}
MAX_TOKENS=${MAX_TOKENS:-16-48}
REPORT_ONLY=${REPORT_ONLY:-0}

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap bench_cleanup EXIT

mkdir -p "$OUT"
if [ "$REPORT_ONLY" != 1 ]; then
    bench_log "building ($BUILD)"
    make -C "$ROOT" BUILD="$BUILD" all >/dev/null
    for p in $PORT $((PORT + 1)) $((PORT + 2)) $((PORT + 3)) $((PORT + 4)); do bench_port_free "$p"; done
    bench_raise_nofile 8192 || true
fi

http_get() { # port path: body on stdout (bash /dev/tcp, no curl needed)
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf 'GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' "$2" >&3
    sed '1,/^\r$/d' <&3
    exec 3<&-
}

run_one() { # bad_rate auto_rollback(true|false) seed
    local bad=$1 auto=$2 SEED=$3 dir="$OUT/bad${1}-rollback-$2-seed$3" i
    rm -rf "$dir"
    mkdir -p "$dir"
    local sims=() names=(stable1 stable2 canary)
    for i in 0 1 2; do
        local args=(--port $((PORT + 2 + i)) --seed $((SEED * 10 + i)) --slots 64 --token-ms 10
                    --error-rate "$NOISE")
        if [ "$i" = 2 ]; then args+=(--version v2 --bad-release "$bad:1"); else args+=(--version v1); fi
        "$BUILD/llmsim" "${args[@]}" >"$dir/llmsim-${names[$i]}.log" 2>&1 &
        bench_track $!
        sims+=($!)
    done
    for i in 0 1 2; do bench_wait_port $((PORT + 2 + i)) || bench_die "llmsim did not start"; done
    cat >"$dir/rampart.yaml" <<EOF
listen: 127.0.0.1:$PORT
upstreams:
  chat:
    servers:
      - 127.0.0.1:$((PORT + 2))
      - 127.0.0.1:$((PORT + 3))
      - {address: 127.0.0.1:$((PORT + 4)), group: canary}
    canary:
      interval: $INTERVAL
      auto_rollback: $auto
admin:
  listen: 127.0.0.1:$((PORT + 1))
log:
  access: off
overload:
  limiter: {max_concurrency: 256}
EOF
    "$BUILD/rampart" -c "$dir/rampart.yaml" >"$dir/rampart.out" 2>"$dir/rampart.err" &
    local rp=$!
    bench_track $rp
    bench_wait_port "$PORT" || bench_die "rampart did not start: $(cat "$dir/rampart.err")"
    bench_wait_port $((PORT + 1)) || bench_die "rampart admin did not start"

    bench_log "run: bad release ${bad} errors, auto_rollback $auto, seed $SEED, ${RATE} req/s for ${DURATION}s"
    local lgs=() per_rate
    per_rate=$(awk -v r="$RATE" -v n="$LOADGENS" 'BEGIN { printf "%.4f", r / n }')
    for ((i = 0; i < LOADGENS; i++)); do
        local mix="" k
        for k in $(seq 0 31); do mix+="${mix:+,}u${i}x${k}:1"; done
        "$BUILD/loadgen" --url "http://127.0.0.1:$PORT/v1/chat/completions" --rate "$per_rate" --poisson \
            --duration "${DURATION}s" --tenants "$mix" --max-tokens "$MAX_TOKENS" --give-up 30s \
            --seed $((SEED * 1000 + i)) --quiet --json "$dir/lg$i.json" >"$dir/lg$i.out" 2>&1 &
        lgs+=($!)
    done
    # The canary's weight and state once a second, for the record.
    local t0=$SECONDS
    while kill -0 "${lgs[0]}" 2>/dev/null; do
        printf '%s %s\n' $((SECONDS - t0)) "$(http_get $((PORT + 1)) /api/v1/canary/chat |
            sed -n 's/.*"state":"\([a-z_]*\)","weight":\([0-9.]*\).*/\1 \2/p')" >>"$dir/canary-trace.txt"
        sleep 1
    done
    for p in "${lgs[@]}"; do wait "$p" || bench_die "loadgen failed: $(cat "$dir"/lg*.out | tail -5)"; done

    http_get $((PORT + 1)) /api/v1/canary/chat >"$dir/canary.json"
    http_get $((PORT + 1)) /metrics >"$dir/metrics.txt"
    for i in 0 1 2; do
        local f="$dir/sim-${names[$i]}.json"
        [ "$i" = 2 ] && f="$dir/sim-canary.json"
        http_get $((PORT + 2 + i)) /sim/stats >"$f"
    done
    printf '{"bad_error_rate": %s, "auto_rollback": %s, "seed": %s, "duration": %s, "rate": %s, "noise": %s, "interval": "%s"}\n' \
        "$bad" "$auto" "$SEED" "$DURATION" "$RATE" "$NOISE" "$INTERVAL" >"$dir/meta.json"
    bench_untrack_stop "$rp"
    for p in "${sims[@]}"; do bench_untrack_stop "$p"; done
    python3 "$ROOT/bench/release_summary.py" "$dir" >"$dir/row.json"
}

RUNS=() # "bad auto seed"
for bad in $BAD_RATES; do
    for seed in $SEEDS; do RUNS+=("$bad true $seed"); done
    RUNS+=("$bad false ${SEEDS%% *}")
done

ROWS=()
for r in "${RUNS[@]}"; do
    read -r bad auto seed <<<"$r"
    dir="$OUT/bad${bad}-rollback-$auto-seed$seed"
    if [ "$REPORT_ONLY" = 1 ]; then
        python3 "$ROOT/bench/release_summary.py" "$dir" >"$dir/row.json"
    else
        run_one "$bad" "$auto" "$seed"
    fi
    ROWS+=("$dir/row.json")
done

{
    echo "rampart release benchmark: ${RATE} req/s (streaming, Poisson, $((LOADGENS * 32)) tenants) for ${DURATION}s per run;"
    echo "3 llmsim servers (2 stable, 1 canary), ${NOISE} background error ratio on every server; canary at 5%,"
    echo "default canary parameters except interval ${INTERVAL}."
    echo
    python3 "$ROOT/bench/release_summary.py" --table "${ROWS[@]}"
} | tee "$OUT/table.md"
