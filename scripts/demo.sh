#!/usr/bin/env bash
# scripts/demo.sh — run rampart in front of two simulated model servers.
#
# Called by `make demo` after the build.  Starts two llmsim on
# 127.0.0.1:9001 and 127.0.0.1:9002, then rampart with examples/demo.yaml,
# prints the URLs and a streaming curl, and stops everything on Ctrl-C.
# Logs go to build/demo/.  BUILD=build-san bash scripts/demo.sh runs the
# sanitizer build instead.
#
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD="${BUILD:-build}"
RAMPART="$BUILD/rampart"
LLMSIM="$BUILD/llmsim"
CONFIG="examples/demo.yaml"
LOGDIR="$BUILD/demo"

echo "rampart demo: needs $RAMPART (the gateway) and $LLMSIM (the model-server simulator)."

missing=()
[ -x "$RAMPART" ] || missing+=("$RAMPART")
[ -x "$LLMSIM" ] || missing+=("$LLMSIM")
[ -f "$CONFIG" ] || missing+=("$CONFIG")
if [ "${#missing[@]}" -ne 0 ]; then
    echo "rampart demo: cannot start, missing: ${missing[*]}" >&2
    echo "rampart demo: run 'make' first; if it still fails, that part is not written yet." >&2
    exit 1
fi

pids=()
stopping=0
stop_all() {
    [ "$stopping" -eq 1 ] && return
    stopping=1
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap 'echo; echo "rampart demo: stopping"; stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

# wait_http NAME URL PID: poll URL until it answers, or fail if PID died.
wait_http() {
    local name="$1" url="$2" pid="$3" i
    for i in $(seq 1 100); do
        if curl -s -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "rampart demo: $name exited during start-up; see $LOGDIR/$name.log:" >&2
            tail -n 20 "$LOGDIR/$name.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    echo "rampart demo: $name did not answer at $url within 10 s; see $LOGDIR/$name.log" >&2
    exit 1
}

mkdir -p "$LOGDIR"
# The admin write token (incidents, maintenance, canary control).
if [ ! -s "$LOGDIR/admin.token" ]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$LOGDIR/admin.token")
fi

for port in 9001 9002; do
    # shellcheck disable=SC2086  # LLMSIM_ARGS is a word list on purpose
    "$LLMSIM" --listen "127.0.0.1:$port" ${LLMSIM_ARGS:-} >"$LOGDIR/llmsim-$port.log" 2>&1 &
    pids+=("$!")
    wait_http "llmsim-$port" "http://127.0.0.1:$port/health" "$!"
done

"$RAMPART" -c "$CONFIG" >"$LOGDIR/rampart.log" 2>&1 &
pids+=("$!")
wait_http rampart "http://127.0.0.1:9901/healthz" "$!"

cat <<EOF

rampart is running in front of two llmsim (127.0.0.1:9001, 127.0.0.1:9002).

  chat endpoint   http://127.0.0.1:8080/v1/chat/completions
  admin metrics   http://127.0.0.1:9901/metrics
  status page     http://127.0.0.1:8081/
  logs            $LOGDIR/  (rampart.log holds one JSON line per request)

Stream a reply (copy-paste into another terminal):

  curl -N http://127.0.0.1:8080/v1/chat/completions \\
    -H 'Content-Type: application/json' -H 'Authorization: Bearer demo-key' \\
    -d '{"model":"llmsim","stream":true,"max_tokens":40,"messages":[{"role":"user","content":"Hello"}]}'

Make a spike (open-loop load at about 5x what the two servers can serve)
and watch rampart refuse the excess fast while the admitted requests
keep their latency:

  $BUILD/loadgen --rate 60 --duration 20s --max-tokens 64 --give-up 10s --slo-ttft 1s

Post an incident on the status page:

  curl -X POST http://127.0.0.1:9901/api/v1/incidents \\
    -H "Authorization: Bearer \$(cat $LOGDIR/admin.token)" \\
    -d '{"name":"Slow answers","body":"We are looking into it.","components":{"chat":"degraded_performance"}}'

Press Ctrl-C to stop everything.
EOF

# Return when Ctrl-C arrives or when any of the three programs exits.
set +e
wait -n "${pids[@]}"
rc=$?
set -e
if [ "$stopping" -eq 0 ]; then
    echo "rampart demo: a process exited unexpectedly (status $rc); stopping the others. Logs: $LOGDIR/" >&2
    stop_all
    exit 1
fi
