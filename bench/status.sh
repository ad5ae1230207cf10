#!/usr/bin/env bash
# bench/status.sh — the status page and summary.json under load, served
# while the proxy on the same process is saturated (issue: the status page
# must keep answering at least at the proxy's own req/s).
#
# Runs rampart in front of llmsim, then, at the same time for DURATION
# seconds: wrk through the proxy (GET /v1/models, keep-alive) and wrk on the
# status listener (summary.json, then /).  Prints req/s of each and the
# ratio status/proxy.  Loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/deps.sh bench
make -s all
DURATION="${DURATION:-10}"
CONNS="${CONNS:-100}"
out=build/bench/status
mkdir -p "$out"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SIM=$(port); GW=$(port); ADM=$(port); ST=$(port)
cat >"$out/rampart.yaml" <<YAML
listen: 127.0.0.1:$GW
upstreams:
  chat:
    servers: [127.0.0.1:$SIM]
admin:
  listen: 127.0.0.1:$ADM
status:
  listen: 127.0.0.1:$ST
  db: $out/status.db
log:
  access: off
YAML
rm -f "$out"/status.db* "$out/summary.txt"
build/llmsim --listen 127.0.0.1:$SIM --slots 4096 >"$out/llmsim.log" 2>&1 & pids+=($!)
build/rampart -c "$out/rampart.yaml" >"$out/rampart.log" 2>&1 & pids+=($!)
for i in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$ST/api/v2/status.json" && break; sleep 0.1; done
rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
for doc in api/v2/summary.json ""; do
    name=${doc:-index}; name=${name//\//_}
    wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$GW/v1/models" >"$out/proxy-$name.txt" &
    w1=$!
    wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$ST/$doc" >"$out/status-$name.txt" &
    w2=$!
    wait $w1 $w2
    p=$(rps "$out/proxy-$name.txt"); s=$(rps "$out/status-$name.txt")
    awk -v d="/${doc}" -v p="$p" -v s="$s" \
        'BEGIN { printf "%-22s proxy %10.0f req/s   status %10.0f req/s   status/proxy %.2f\n", d, p, s, s / p }' \
        | tee -a "$out/summary.txt"
done
