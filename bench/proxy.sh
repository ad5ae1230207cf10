#!/usr/bin/env bash
# bench/proxy.sh — rampart against HAProxy and nginx as HTTP/1.1 reverse proxies.
#
# One run, on this machine, from a fresh clone:
#   1. installs what is missing (scripts/deps.sh bench: haproxy, nginx-light,
#      wrk, gnuplot-nox) and builds build/rampart (make);
#   2. starts nginx as the backend: one worker, keep-alive, a fixed 100-byte
#      "200 OK" for every request;
#   3. starts the three proxies in front of it, each on one CPU with one
#      thread, keep-alive on both sides, no access log:
#        rampart  build/rampart -c <generated yaml>
#        haproxy  HAProxy 2.6, nbthread 1, mode http, option http-keep-alive
#        nginx    nginx, 1 worker, upstream keepalive, proxy_http_version 1.1
#   4. drives each with wrk (closed loop, keep-alive: THREADS threads, CONNS
#      connections, DURATION seconds after WARMUP seconds that are thrown
#      away), ROUNDS rounds, alternating the proxies and rotating which goes
#      first; reports the median req/s and median p99 of each, and the
#      ratios rampart/HAProxy and rampart/nginx;
#   5. idle connections: for each proxy, freshly started, opens IDLE_CONNS
#      keep-alive connections that each make one request and stay idle, and
#      reads the proxy's VmRSS (bench/idle_conns.py).
#
# CPU placement (2 CPUs): every proxy runs on PROXY_CPU (0), alone; wrk
# and the backend share LOAD_CPU (1).  Each proxy gets the same CPU to
# itself and the load side never competes with it.  On two CPUs that load
# side is about as busy as the proxy, so the req/s of the three can end up
# close together; the proxy's own CPU time per request (the req/s/CPU
# column) is the cleaner measure of its cost.  BACKEND_CPU=0 puts the
# backend beside the proxy instead (wrk alone on CPU 1), which makes CPU 0
# the only bottleneck.
#
# The machine may be shared: before each run the script waits (up to
# QUIET_WAIT s) until other processes use less than NOISE_MAX % of a CPU,
# measures what they used during the run (the "other" column: CPU time of
# everything but the proxy, the backend and wrk), and repeats a run where
# that exceeded NOISE_MAX (NOISE_RETRIES times; NOISE_BUDGET s in all).
#
# Header work is the same for the three (HEADERS=parity, the default):
# rampart always adds X-Forwarded-For, X-Forwarded-Proto and a random
# X-Request-Id to the request and returns X-Request-Id to the client, so
# HAProxy and nginx are configured to do the same.  HEADERS=bare runs HAProxy
# and nginx without that work (rampart cannot turn it off).  rampart runs
# with a static concurrency limit (HAProxy and nginx have none);
# SETUPS="rampart-adaptive ..." adds rampart with its default adaptive
# limiter.
#
#   bash bench/proxy.sh                       defaults (about 4 minutes)
#   QUICK=1 bash bench/proxy.sh               2 rounds of 5 s (about 1.5 minutes)
#   ROUNDS=3 DURATION=5 bash bench/proxy.sh   shorter
#   CONNS=100 THREADS=1 WARMUP=2 ...          wrk settings
#   SETUPS="rampart haproxy" ...              a subset
#   IDLE_CONNS=0 ...                          skip the idle-connection test
#   ROUNDS=0 ...                              only the idle-connection test
#   HEADERS=bare ...                          see above
#   BACKEND_CPU=0 ...                         see above
#   PIN=0 ...                                 no CPU pinning
#   SKIP_BUILD=1 RAMPART=/path/to/rampart     benchmark another binary
#
# Output: OUT (build/bench/proxy/): raw/ (every wrk output), results.tsv (one
# line per run), idle.jsonl, summary.txt (the table), summary.md (the same
# as markdown, for docs/performance.md), summary.json, machine.txt, conf/
# (the generated configurations), logs/.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [ "${QUICK:-0}" = 1 ]; then # the shorter run (make bench QUICK=1): about 1.5 minutes
    ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-5} WARMUP=${WARMUP:-1} NOISE_BUDGET=${NOISE_BUDGET:-20}
fi
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-1}
CONNS=${CONNS:-50}
SETUPS=${SETUPS:-"rampart haproxy nginx"}
IDLE_CONNS=${IDLE_CONNS:-10000}
HEADERS=${HEADERS:-parity}
NOISE_MAX=${NOISE_MAX:-10}
NOISE_RETRIES=${NOISE_RETRIES:-2}
QUIET_WAIT=${QUIET_WAIT:-20}
NOISE_BUDGET=${NOISE_BUDGET:-60}
NOISE_USED=0
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BACKEND_CPU=${BACKEND_CPU:-$LOAD_CPU}
BACKEND_PORT=${BACKEND_PORT:-19380}
RAMPART_PORT=${RAMPART_PORT:-19381}
HAPROXY_PORT=${HAPROXY_PORT:-19382}
NGINX_PORT=${NGINX_PORT:-19383}
RAMPART_ADAPTIVE_PORT=${RAMPART_ADAPTIVE_PORT:-19384}
OUT=${OUT:-$ROOT/build/bench/proxy}
RAMPART=${RAMPART:-$ROOT/build/rampart}
PYTHON=/usr/bin/python3

case "$HEADERS" in parity | bare) ;; *) bench_die "HEADERS must be parity or bare" ;; esac

cd "$ROOT"
if [ "${SKIP_DEPS:-0}" != 1 ]; then
    bash scripts/deps.sh bench
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    make --no-print-directory -s BUILD=build build/rampart
fi
[ -x "$RAMPART" ] || bench_die "$RAMPART not built"
for t in haproxy nginx wrk taskset; do
    command -v "$t" >/dev/null || bench_die "$t not found (bash scripts/deps.sh bench)"
done

# Open files: the idle test needs IDLE_CONNS client sockets in the client
# and as many (plus upstream ones) in each proxy.  Raised in this shell, so
# the proxies inherit it; where the hard limit cannot be raised, what it
# allows is enough as long as it is above IDLE_CONNS plus some room.
bench_raise_nofile $((2 * IDLE_CONNS + 4096)) || true
NOFILE=$(ulimit -Sn)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
[ "$NOFILE" -ge $((IDLE_CONNS + 1024)) ] ||
    bench_die "open-file limit $NOFILE is too low for IDLE_CONNS=$IDLE_CONNS (ulimit -Hn is $(ulimit -Hn)); run as root or set IDLE_CONNS lower"

rm -rf "$OUT"
mkdir -p "$OUT/raw" "$OUT/conf" "$OUT/logs" "$OUT/tmp"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

for p in "$BACKEND_PORT" "$RAMPART_PORT" "$HAPROXY_PORT" "$NGINX_PORT" "$RAMPART_ADAPTIVE_PORT"; do bench_port_free "$p"; done

PIN_PROXY=$(bench_pin "$PROXY_CPU")
PIN_LOAD=$(bench_pin "$LOAD_CPU")
PIN_BACKEND=$(bench_pin "$BACKEND_CPU")
[ -n "$PIN_PROXY" ] || bench_log "CPU pinning off (PIN=0 or fewer than 2 CPUs)"

bench_machine >"$OUT/machine.txt"
echo "rampart: $("$RAMPART" --version 2>&1 | head -1) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ', modified'))" >>"$OUT/machine.txt"

# ---- configurations ------------------------------------------------------

BODY="ok $(printf '%.0s.' $(seq 96))" # 99 characters + "\n" = 100 bytes
USER_LINE=
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
NGINX_COMMON="daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $NOFILE;
$USER_LINE"
NGINX_TEMP="client_body_temp_path $OUT/tmp/body;
    proxy_temp_path $OUT/tmp/proxy;
    fastcgi_temp_path $OUT/tmp/fastcgi;
    uwsgi_temp_path $OUT/tmp/uwsgi;
    scgi_temp_path $OUT/tmp/scgi;"

cat >"$OUT/conf/backend.conf" <<EOF
# The backend: a fixed 100-byte answer, keep-alive.
$NGINX_COMMON
pid $OUT/tmp/backend.pid;
error_log $OUT/logs/backend.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    $NGINX_TEMP
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        location / {
            default_type text/plain;
            return 200 "$BODY\n";
        }
    }
}
EOF

# Admission control is rampart's own feature (docs/overload.md); HAProxy and
# nginx have no concurrency limit here, so the "rampart" set-up gets a static
# limit above any load wrk applies.  "rampart-adaptive" (not in the default
# SETUPS) keeps the default adaptive limiter.
rampart_conf() { # port overload-line
    cat <<EOF
listen: 127.0.0.1:$1
upstreams:
  backend:
    servers: [127.0.0.1:$BACKEND_PORT]
    pool: {max_idle: 64}
limits: {max_connections: $((IDLE_CONNS + 1000 > 20000 ? IDLE_CONNS + 1000 : 20000))}
timeouts: {client_idle: 5m}
log: {access: off}
$2
EOF
}
rampart_conf "$RAMPART_PORT" "overload: {limiter: {max_concurrency: 100000}}" >"$OUT/conf/rampart.yaml"
rampart_conf "$RAMPART_ADAPTIVE_PORT" "" >"$OUT/conf/rampart-adaptive.yaml"

HAP_PARITY=
NGX_PARITY=
if [ "$HEADERS" = parity ]; then
    HAP_PARITY="    option forwardfor
    http-request set-header X-Forwarded-Proto http
    unique-id-format %[uuid()]
    unique-id-header X-Request-Id
    http-response set-header X-Request-Id %[unique-id]"
    NGX_PARITY="            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Request-Id \$request_id;
            add_header X-Request-Id \$request_id always;"
fi

MAXCONN=$((IDLE_CONNS + CONNS + 1000))
NGX_CONNS=$((2 * MAXCONN < NOFILE - 64 ? 2 * MAXCONN : NOFILE - 64)) # clients + upstream connections
cat >"$OUT/conf/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $MAXCONN
    # HAProxy reserves two fds per connection; when the hard limit is lower
    # it warns instead of refusing to start (the test uses far fewer).
    no strict-limits

defaults
    mode http
    option http-keep-alive
    maxconn $MAXCONN
    timeout connect 2s
    timeout client 5m
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 5m

frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
$HAP_PARITY
    default_backend be

backend be
    server s1 127.0.0.1:$BACKEND_PORT
EOF

cat >"$OUT/conf/nginx.conf" <<EOF
# nginx as the reverse proxy under test.
$NGINX_COMMON
pid $OUT/tmp/nginx.pid;
error_log $OUT/logs/nginx.log warn;
events { worker_connections $NGX_CONNS; }
http {
    access_log off;
    $NGINX_TEMP
    keepalive_timeout 5m;
    keepalive_requests 1000000;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
$NGX_PARITY
        }
    }
}
EOF

for f in rampart rampart-adaptive; do
    "$RAMPART" -t -c "$OUT/conf/$f.yaml" >/dev/null || bench_die "rampart rejects $OUT/conf/$f.yaml"
done
haproxy -c -q -f "$OUT/conf/haproxy.cfg" || bench_die "haproxy rejects $OUT/conf/haproxy.cfg"
nginx -t -q -p "$OUT/tmp" -c "$OUT/conf/nginx.conf" 2>/dev/null || bench_die "nginx rejects $OUT/conf/nginx.conf"

# ---- processes -----------------------------------------------------------

declare -A PID PORT WORKPID
PORT=([rampart]=$RAMPART_PORT [rampart-adaptive]=$RAMPART_ADAPTIVE_PORT [haproxy]=$HAPROXY_PORT [nginx]=$NGINX_PORT)

start_backend() {
    # shellcheck disable=SC2086
    $PIN_BACKEND nginx -p "$OUT/tmp" -c "$OUT/conf/backend.conf" 2>>"$OUT/logs/backend.log" &
    PID[backend]=$!
    bench_track "${PID[backend]}"
    bench_wait_port "$BACKEND_PORT" || bench_die "backend did not start (see $OUT/logs/backend.log)"
    WORKPID[backend]=$(worker_of "${PID[backend]}" nginx)
}

# The process doing the work: nginx's worker, the process itself otherwise.
worker_of() {
    local pid=$1 kids
    if [ "$2" = nginx ]; then
        for _ in $(seq 40); do
            kids=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null || true)
            [ -n "$kids" ] && { echo "${kids%% *}"; return; }
            sleep 0.05
        done
    fi
    echo "$pid"
}

start_proxy() { # name
    local name=$1
    # shellcheck disable=SC2086 # $PIN_PROXY is empty or "taskset -c N"
    case "$name" in
    rampart | rampart-adaptive) $PIN_PROXY "$RAMPART" -c "$OUT/conf/$name.yaml" 2>>"$OUT/logs/$name.log" & ;;
    haproxy) $PIN_PROXY haproxy -db -f "$OUT/conf/haproxy.cfg" >>"$OUT/logs/haproxy.log" 2>&1 & ;;
    nginx) $PIN_PROXY nginx -p "$OUT/tmp" -c "$OUT/conf/nginx.conf" 2>>"$OUT/logs/nginx.log" & ;;
    *) bench_die "unknown set-up $name" ;;
    esac
    PID[$name]=$!
    bench_track "${PID[$name]}"
    bench_wait_port "${PORT[$name]}" || bench_die "$name did not start (see $OUT/logs/$name.log)"
    WORKPID[$name]=$(worker_of "${PID[$name]}" "$name")
    # The answer must come through intact.
    local got
    got=$(curl -s --max-time 5 "http://127.0.0.1:${PORT[$name]}/") || bench_die "$name: request failed"
    [ "$got" = "$BODY" ] || bench_die "$name: unexpected body: $got"
}

stop_proxy() { bench_untrack_stop "${PID[$1]}"; }

# Jiffies of every CPU, one line each: busy (all but idle and iowait), total,
# and time spent running tasks (user + nice + system: what processes are
# charged, without the interrupt and softirq time the loopback traffic costs).
cpu_snapshot() {
    awk '$1 ~ /^cpu[0-9]+$/ { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t, $2 + $3 + $4 }' /proc/stat
}

cpu_busy() { # snapshot0 snapshot1 -> "busy0%,busy1%,..." over the interval
    paste -d' ' <(echo "$1") <(echo "$2") |
        awk '{ printf "%s%.1f", (NR > 1 ? "," : ""), ($5 > $2 ? 100 * ($4 - $1) / ($5 - $2) : 0) }'
}

# ---- throughput ----------------------------------------------------------

start_backend
read -r -a setups <<<"$SETUPS"
for s in "${setups[@]}"; do start_proxy "$s"; done

HZ=$(getconf CLK_TCK)
printf 'round\tsetup\trps\tp50_ms\tp99_ms\terrors\tnon2xx\tproxy_cpu_pct\tcpus_busy_pct\tother_cpu_pct\n' >"$OUT/results.tsv"

# One measured wrk run; sets pcpu (the proxy's CPU use, % of one CPU), busy
# (each CPU's busy %) and other (CPU used by processes other than the proxy,
# the backend and wrk, % of one CPU: load from outside the benchmark).
run_once() { # setup url outfile
    local s=$1 url=$2 file=$3 c0 c1 k0 k1 snap0 snap1 wrk_s
    wait_quiet
    c0=$(bench_cpu_ticks "${WORKPID[$s]}")
    k0=$(bench_cpu_ticks "${WORKPID[backend]}")
    snap0=$(cpu_snapshot)
    # shellcheck disable=SC2086
    { time $PIN_LOAD wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$url" >"$file"; } 2>"$OUT/tmp/wrk.time"
    c1=$(bench_cpu_ticks "${WORKPID[$s]}")
    k1=$(bench_cpu_ticks "${WORKPID[backend]}")
    snap1=$(cpu_snapshot)
    wrk_s=$(awk '{ print $1 + $2 }' "$OUT/tmp/wrk.time")
    pcpu=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v d="$DURATION" 'BEGIN { printf "%.1f", 100 * (b - a) / hz / d }')
    busy=$(cpu_busy "$snap0" "$snap1")
    other=$(paste -d' ' <(echo "$snap0") <(echo "$snap1") |
        awk -v ours=$((c1 - c0 + k1 - k0)) -v w="$wrk_s" -v hz="$HZ" -v d="$DURATION" '
        { t += $6 - $3 }
        END { v = 100 * (t - ours - w * hz) / hz / d; printf "%.1f", (v < 0 ? 0 : v) }')
}

# Before a run, wait (at most QUIET_WAIT seconds) for the machine to be
# quiet: other work on the CPUs makes every number here meaningless.
wait_quiet() {
    local i a b u
    for ((i = 0; i < QUIET_WAIT * 2 && NOISE_USED < NOISE_BUDGET; i++)); do
        a=$(cpu_snapshot)
        sleep 0.5
        b=$(cpu_snapshot)
        u=$(paste -d' ' <(echo "$a") <(echo "$b") | awk '{ x += $4 - $1; y += $5 - $2 } END { print int(y ? 100 * x / y * NR : 0) }')
        [ "$u" -le "$NOISE_MAX" ] && return 0
        [ $((i % 2)) = 1 ] && NOISE_USED=$((NOISE_USED + 1))
        [ "$i" = 0 ] && bench_log "machine busy (${u}% of a CPU used by others); waiting up to ${QUIET_WAIT}s"
    done
    return 0
}

parse_wrk() { # file -> rps p50_ms p99_ms errors non2xx
    awk '
    function ms(v) {
        if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
        if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
        if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000
        if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
        return v + 0
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Socket errors:/ { gsub(",", ""); err = $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { non2xx = $5 }
    END { printf "%s %.3f %.3f %d %d\n", rps, p50, p99, err, non2xx }' "$1"
}

total=$((ROUNDS * ${#setups[@]}))
bench_log "throughput: $ROUNDS rounds x ${setups[*]}, wrk -t$THREADS -c$CONNS -d${DURATION}s (+${WARMUP}s warm-up), headers=$HEADERS"
n=0
for ((round = 1; round <= ROUNDS; round++)); do
    for ((k = 0; k < ${#setups[@]}; k++)); do
        s=${setups[$(((k + round - 1) % ${#setups[@]}))]}
        url="http://127.0.0.1:${PORT[$s]}/"
        if [ "$WARMUP" != 0 ]; then
            # shellcheck disable=SC2086
            $PIN_LOAD wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null
        fi
        run_once "$s" "$url" "$OUT/raw/r$round-$s.txt"
        for ((try = 1; try <= NOISE_RETRIES && ${other%.*} > NOISE_MAX && NOISE_USED < NOISE_BUDGET; try++)); do
            NOISE_USED=$((NOISE_USED + DURATION))
            bench_log "round $round $s: other processes used ${other}% of a CPU during the run; again ($try/$NOISE_RETRIES)"
            mv "$OUT/raw/r$round-$s.txt" "$OUT/raw/r$round-$s.noisy$try.txt"
            run_once "$s" "$url" "$OUT/raw/r$round-$s.txt"
        done
        read -r rps p50 p99 errs non2xx < <(parse_wrk "$OUT/raw/r$round-$s.txt")
        printf '%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$s" "$rps" "$p50" "$p99" "$errs" "$non2xx" \
            "$pcpu" "$busy" "$other" >>"$OUT/results.tsv"
        n=$((n + 1))
        bench_log "[$n/$total] round $round $s: $rps req/s, p99 ${p99} ms, proxy CPU ${pcpu}%, CPUs busy $busy%, other ${other}%, errors $errs, non-2xx $non2xx"
    done
done

for s in "${setups[@]}"; do stop_proxy "$s"; done

# ---- idle connections -----------------------------------------------------

: >"$OUT/idle.jsonl"
if [ "$IDLE_CONNS" -gt 0 ]; then
    for s in "${setups[@]}"; do
        start_proxy "$s"
        pids=(--pid "${WORKPID[$s]}")
        bench_log "idle: $IDLE_CONNS keep-alive connections to $s (pid ${WORKPID[$s]})"
        # shellcheck disable=SC2086
        if ! $PIN_LOAD "$PYTHON" "$ROOT/bench/idle_conns.py" --port "${PORT[$s]}" "${pids[@]}" -n "$IDLE_CONNS" \
            --label "$s" >>"$OUT/idle.jsonl" 2>>"$OUT/logs/idle.log"; then
            bench_log "idle: $s closed connections or failed (see $OUT/logs/idle.log)"
        fi
        tail -n 1 "$OUT/idle.jsonl" >&2
        stop_proxy "$s"
    done
fi

# ---- summary --------------------------------------------------------------

"$PYTHON" - "$OUT" "$HEADERS" "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency" "$ROUNDS" "$PROXY_CPU" "$LOAD_CPU" \
    "$NOISE_MAX" <<'PY' | tee "$OUT/summary.txt"
import csv, json, statistics, sys
out, headers, wrk, rounds, pcpu, lcpu, noise_max = sys.argv[1:]
rows = list(csv.DictReader(open(f"{out}/results.tsv"), delimiter="\t"))
setups = list(dict.fromkeys(r["setup"] for r in rows))
med = {}
for s in setups:
    every = [r for r in rows if r["setup"] == s]
    # Runs disturbed by other processes (kept only when the noise budget ran
    # out) are left out, as long as at least half of the runs are clean.
    clean = [r for r in every if float(r["other_cpu_pct"]) <= float(noise_max)]
    rs = clean if 2 * len(clean) >= len(every) else every
    f = lambda k: statistics.median(float(r[k]) for r in rs)
    busy = [[float(x) for x in r["cpus_busy_pct"].split(",")] for r in rs]
    med[s] = {"rps": f("rps"), "p50": f("p50_ms"), "p99": f("p99_ms"), "cpu": f("proxy_cpu_pct"),
              "busy": statistics.median(b[int(pcpu)] if int(pcpu) < len(b) else 0 for b in busy),
              "lbusy": statistics.median(b[int(lcpu)] if int(lcpu) < len(b) else 0 for b in busy),
              "errors": sum(int(r["errors"]) + int(r["non2xx"]) for r in rs),
              "min_rps": min(float(r["rps"]) for r in rs), "max_rps": max(float(r["rps"]) for r in rs),
              "runs": len(rs), "of": len(every),
              # req/s per CPU-second of the proxy, per run: its cost per request
              "eff": statistics.median(float(r["rps"]) / (float(r["proxy_cpu_pct"]) / 100) for r in rs
                                       if float(r["proxy_cpu_pct"]) > 0) if any(float(r["proxy_cpu_pct"]) > 0 for r in rs) else float("nan")}
if rows:
    print(f"proxy throughput: {wrk}, {rounds} rounds, medians; headers={headers}")
    print(f"{'set-up':<16} {'req/s':>9} {'(min..max)':>17} {'p50 ms':>7} {'p99 ms':>7} {'proxy CPU':>9} "
          f"{'req/s/CPU':>9} {'cpu'+pcpu+' busy':>9} {'cpu'+lcpu+' busy':>9} {'errors':>6} {'runs':>5}")
for s in setups:
    m = med[s]
    eff = m["eff"]
    print(f"{s:<16} {m['rps']:>9.0f} {'(%.0f..%.0f)' % (m['min_rps'], m['max_rps']):>17} {m['p50']:>7.3f} "
          f"{m['p99']:>7.3f} {m['cpu']:>8.1f}% {eff:>9.0f} {m['busy']:>8.1f}% {m['lbusy']:>8.1f}% {m['errors']:>6} "
          f"{'%d/%d' % (m['runs'], m['of']):>5}")
ratios = {}
if "rampart" in med:
    for other, label in (("haproxy", "HAProxy"), ("nginx", "nginx")):
        if other in med:
            r = med["rampart"]; o = med[other]
            ratios[other] = {"rps": r["rps"] / o["rps"], "p99": r["p99"] / o["p99"], "eff": r["eff"] / o["eff"]}
            print(f"rampart/{label}: req/s x{ratios[other]['rps']:.2f}, p99 x{ratios[other]['p99']:.2f}"
                  f" (below 1 = rampart faster), req/s per proxy CPU x{ratios[other]['eff']:.2f}")
    if "haproxy" in ratios:
        ok = ratios["haproxy"]["rps"] >= 1.1 and ratios["haproxy"]["p99"] <= 1.0
        print(f"target (req/s >= 1.1x HAProxy, p99 no worse): {'met' if ok else 'NOT met'}")
idle = [json.loads(l) for l in open(f"{out}/idle.jsonl") if l.strip()]
if idle:
    print(f"idle keep-alive connections (each made one request):")
    for d in idle:
        print(f"{d['label']:<16} {d['connections']} conns, {d['open_at_end']} still open: RSS "
              f"{d['rss_kb_before'] / 1024:.1f} MiB -> {d['rss_kb_idle'] / 1024:.1f} MiB, "
              f"{d['per_conn_bytes']} bytes per connection")
    by = {d["label"]: d for d in idle}
    if "rampart" in by and "haproxy" in by:
        r, h = by["rampart"], by["haproxy"]
        print(f"rampart/HAProxy: RSS x{r['rss_kb_idle'] / h['rss_kb_idle']:.2f}, "
              f"per connection x{r['per_conn_bytes'] / max(1, h['per_conn_bytes']):.2f}")
json.dump({"medians": med, "ratios": ratios, "idle": idle}, open(f"{out}/summary.json", "w"), indent=1)

md = []
if rows:
    md.append(f"`{wrk}`, {rounds} rounds, medians (headers={headers}):\n")
    md.append("| set-up | req/s | p50 ms | p99 ms | proxy CPU | req/s per proxy CPU | runs |")
    md.append("|---|---:|---:|---:|---:|---:|---:|")
    for s in setups:
        m = med[s]
        md.append(f"| {s} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['cpu']:.0f}% | {m['eff']:.0f} | "
                  f"{m['runs']}/{m['of']} |")
    for other, label in (("haproxy", "HAProxy"), ("nginx", "nginx")):
        if other in ratios:
            x = ratios[other]
            md.append(f"\nrampart/{label}: req/s **x{x['rps']:.2f}**, p99 **x{x['p99']:.2f}**, "
                      f"req/s per proxy CPU x{x['eff']:.2f}")
if idle:
    md.append("\n| proxy | idle connections | RSS before | RSS with them open | per connection |")
    md.append("|---|---:|---:|---:|---:|")
    for d in idle:
        md.append(f"| {d['label']} | {d['open_at_end']}/{d['connections']} | {d['rss_kb_before'] / 1024:.1f} MiB | "
                  f"{d['rss_kb_idle'] / 1024:.1f} MiB | {d['per_conn_bytes']} B |")
open(f"{out}/summary.md", "w").write("\n".join(md) + "\n")
PY
bench_log "raw results in $OUT"
