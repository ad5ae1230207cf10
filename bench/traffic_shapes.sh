#!/usr/bin/env bash
# bench/traffic_shapes.sh — two end-to-end reproductions of traffic shapes
# that once broke the gateway, as counts a person can compare between two
# builds (not timings):
#
#   1. Stalled uploads: 20 clients open a POST to a non-generation path
#      (/v1/files, Content-Length 1000) and send one body byte, then stop.
#      Then loadgen sends 300 streams (30/s for 10 s, 50 tokens each) to a
#      512-slot llmsim that is never the bottleneck.  Every stream should be
#      answered 200: a stalled upload must hold no upstream slot and must not
#      collapse the adaptive limiter.
#   2. A long stream: one stream of 30 tokens, one every 0.5 s (15 s, past
#      the default 10 s client_header timeout), with the default config.
#      Every event should arrive, [DONE] included.
#   3. Long streams at a steady rate: 300 streams of 20 s (200 tokens, one
#      every 100 ms) started over 10 s, in front of a 512-slot llmsim whose
#      time to first token never rises.  The adaptive limiter must not
#      shed any: every stream should be 200.
#
#   bash bench/traffic_shapes.sh [BUILD_DIR]     (default build/)
#
# Traffic stays on loopback; every phase is bounded in time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
B="${1:-build}"
[ -x "$B/rampart" ] && [ -x "$B/llmsim" ] && [ -x "$B/loadgen" ] || bench_die "build $B first (make)"
W="$(mktemp -d)"
trap 'bench_cleanup; rm -rf "$W"' EXIT

start_pair() { # sim_port gw_port llmsim-args...: llmsim and a default-config rampart in front
    local sp=$1 gp=$2
    shift 2
    "$B/llmsim" --listen "127.0.0.1:$sp" "$@" >"$W/sim-$sp.log" 2>&1 &
    bench_track $!
    printf 'listen: 127.0.0.1:%s\nupstreams:\n  app:\n    servers: [127.0.0.1:%s]\nlog: {access: off}\n' \
        "$gp" "$sp" >"$W/gw-$gp.yaml"
    "$B/rampart" -c "$W/gw-$gp.yaml" >"$W/gw-$gp.log" 2>&1 &
    bench_track $!
    bench_wait_port "$sp"
    bench_wait_port "$gp"
}

base=$((20000 + RANDOM % 20000))
start_pair $base $((base + 1)) --slots 512 --prefill-base-ms 20 --prefill-per-token-us 0 --token-ms 100 \
    --batch-slowdown 0
/usr/bin/python3 - $((base + 1)) <<'PY' &
import socket, sys, time
socks = []
for _ in range(20):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nA")
    socks.append(s)
time.sleep(40)
PY
bench_track $!
sleep 1
"$B/loadgen" --url "http://127.0.0.1:$((base + 1))/v1/chat/completions" --rate 30 --duration 10s \
    --max-tokens 50 --drain 40s --csv "$W/req.csv" >"$W/loadgen.out" 2>&1
printf 'stalled uploads, then 300 streams: '
/usr/bin/python3 - "$W/req.csv" <<'PY'
import collections, csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
counts = collections.Counter(r.get("status") for r in rows)
print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), f"(of {len(rows)})")
PY

start_pair $((base + 2)) $((base + 3)) --slots 4 --prefill-base-ms 20 --prefill-per-token-us 0 --token-ms 500 \
    --batch-slowdown 0
body='{"model":"m","max_tokens":30,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
out="$(curl -sN -m 40 "http://127.0.0.1:$((base + 3))/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "$body" || true)"
events=$(grep -c '^data: ' <<<"$out" || true)
done_seen=$(grep -c '^data: \[DONE\]' <<<"$out" || true)
echo "a 15 s stream with default timeouts: $events data events, [DONE] seen: $done_seen"

start_pair $((base + 4)) $((base + 5)) --slots 512 --prefill-base-ms 20 --prefill-per-token-us 0 --token-ms 100 \
    --batch-slowdown 0
"$B/loadgen" --url "http://127.0.0.1:$((base + 5))/v1/chat/completions" --rate 30 --duration 10s \
    --max-tokens 200 --drain 45s --csv "$W/long.csv" >"$W/loadgen-long.out" 2>&1
printf '300 streams of 20 s over 10 s: '
/usr/bin/python3 - "$W/long.csv" <<'PY'
import collections, csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
counts = collections.Counter(r.get("status") for r in rows)
print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), f"(of {len(rows)})")
PY
