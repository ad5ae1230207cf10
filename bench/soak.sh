#!/usr/bin/env bash
# bench/soak.sh — long mixed traffic against rampart in front of two llmsim
# (stable + canary), watching for slow leaks. Not part of `make test`.
#
#   SOAK_MINUTES=30 SOAK_SAN_MINUTES=10 bash bench/soak.sh
#
# The run has two phases on fresh gateways: SOAK_MINUTES - SOAK_SAN_MINUTES
# minutes with build/rampart, then SOAK_SAN_MINUTES minutes with an
# ASan+UBSan rampart (build-soak-san/). During each phase, at the same time:
#   - long streams (loadgen, Poisson, 200-800 tokens) with a give-up timeout,
#     so some users abort mid-stream; streams of 2-3 minutes nobody abandons
#     (stopped at the end of the phase); one tenant with a small token budget, so
#     quota refusals (429) are part of the load;
#   - short non-streaming requests over keep-alive connections;
#   - a canary release (the second llmsim, version v2, in group canary);
#   - status reads (/api/v2/summary.json and /) every second;
#   - admin writes: an incident opened, updated and resolved every 30 s, and
#     the canary paused and resumed.
# Every SOAK_SAMPLE_S (10) seconds rampart's VmRSS, open descriptors and
# rampart_client_connections go to $OUT/samples.csv.
#
# At the end: per phase, the median of the first 2 minutes against the last
# 2 minutes (RSS and descriptors), the error lines in rampart's stderr that
# the load does not explain, and any sanitizer report. Exit status 1 when the
# descriptors grew by more than SOAK_FD_GROWTH (16) in a phase, a sanitizer
# reported anything, rampart died, or more than SOAK_FD_GROWTH descriptors
# were still open once the load had stopped (idle, before against after);
# 0 otherwise.
#
# The plot (gnuplot, when installed) goes to docs/soak.png for runs of 30
# minutes or more, to $OUT/soak.png for shorter ones (SOAK_PLOT overrides).
# Loopback only; every process started here is stopped by its pid.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap bench_cleanup EXIT

SOAK_MINUTES=${SOAK_MINUTES:-30}
SOAK_SAN_MINUTES=${SOAK_SAN_MINUTES:-10}
SAMPLE_S=${SOAK_SAMPLE_S:-10}
FD_GROWTH=${SOAK_FD_GROWTH:-16}
OUT=${SOAK_OUT:-build/soak}
SAN_BUILD=${SOAK_SAN_BUILD:-build-soak-san}
STREAM_RATE=${SOAK_STREAM_RATE:-3}
SHORT_RATE=${SOAK_SHORT_RATE:-20}
LONG_RATE=${SOAK_LONG_RATE:-0.1}
if [ "$SOAK_MINUTES" -ge 30 ]; then PLOT=${SOAK_PLOT:-docs/soak.png}; else PLOT=${SOAK_PLOT:-$OUT/soak.png}; fi
[ "$SOAK_SAN_MINUTES" -le "$SOAK_MINUTES" ] || bench_die "SOAK_SAN_MINUTES ($SOAK_SAN_MINUTES) exceeds SOAK_MINUTES ($SOAK_MINUTES)"
PLAIN_MINUTES=$((SOAK_MINUTES - SOAK_SAN_MINUTES))

bash scripts/deps.sh bench >/dev/null 2>&1 || true
command -v curl >/dev/null || bench_die "curl is needed"
bench_log "building build/ and $SAN_BUILD/ (ASan+UBSan)"
make -s -j2 all
make -s SAN=1 BUILD="$SAN_BUILD" -j2 all
bench_raise_nofile 65536 || true

mkdir -p "$OUT"
rm -f "$OUT"/samples.csv "$OUT"/*.log "$OUT"/status.db* "$OUT"/*.json "$OUT"/incidents.txt "$OUT"/idle-* \
    "$OUT"/died-*
echo "t_s,phase,rss_kb,fds,client_connections" >"$OUT/samples.csv"

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SIM1=$(port); SIM2=$(port)
TOKEN=soak-admin-token-$RANDOM$RANDOM
printf '%s\n' "$TOKEN" >"$OUT/admin.token"
chmod 600 "$OUT/admin.token"
CAPPED_SHA=$(printf %s capped | sha256sum | cut -d' ' -f1)

# The model servers live through both phases.
build/llmsim --listen 127.0.0.1:$SIM1 --slots 256 --token-ms 15 --seed 11 --version v1 >"$OUT/llmsim1.log" 2>&1 &
bench_track $!
build/llmsim --listen 127.0.0.1:$SIM2 --slots 256 --token-ms 15 --seed 12 --version v2 >"$OUT/llmsim2.log" 2>&1 &
bench_track $!
bench_wait_port "$SIM1" || bench_die "llmsim on $SIM1 did not start"
bench_wait_port "$SIM2" || bench_die "llmsim on $SIM2 did not start"

write_config() { # $1 gw port, $2 admin port, $3 status port
    cat >"$OUT/rampart.yaml" <<YAML
listen: 127.0.0.1:$1
upstreams:
  chat:
    servers:
      - 127.0.0.1:$SIM1
      - {address: 127.0.0.1:$SIM2, group: canary}
    first_byte_timeout: 30s
    pool: {idle_timeout: 5s}
    idle_timeout: 10s
    health_check: {path: /health, interval: 1s, timeout: 500ms}
    canary: {steps: [5, 25, 50, 100], step_duration: 5m, interval: 10s, window: 2m, min_samples: 50}
admin:
  listen: 127.0.0.1:$2
  token_file: $ROOT/$OUT/admin.token
log: {access: $ROOT/$OUT/access.log}
timeouts: {client_header: 5s, client_body: 10s, client_idle: 30s, drain: 2s}
tenants:
  identify: api_key
  default: {class: interactive}
  list:
    - {name: capped, key_sha256: $CAPPED_SHA, tokens_per_minute: 3000}
status:
  listen: 127.0.0.1:$3
  db: $ROOT/$OUT/status.db
  refresh: 2s
YAML
}

metric() { # admin port, metric name: sum over its series
    { curl -s --max-time 2 "http://127.0.0.1:$1/metrics" || true; } |
        awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}

admin_post() { # admin port, path, body
    curl -s --max-time 3 -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        "http://127.0.0.1:$1$2" -d "$3"
}

# Admin writes every 30 s until $2 (epoch seconds): an incident is opened,
# updated, resolved; the canary is paused and resumed.
admin_loop() { # admin port, end time
    local n=0 id
    while [ "$(date +%s)" -lt "$2" ] && [ $n -lt 1000 ]; do
        n=$((n + 1))
        id=$(admin_post "$1" /api/v1/incidents \
            "{\"name\":\"Soak incident $n\",\"body\":\"Investigating (soak).\",\"components\":{\"chat\":\"degraded_performance\"}}" |
            /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get("id",""))' 2>/dev/null || true)
        echo "$(date +%s) incident ${id:-FAILED}" >>"$OUT/incidents.txt"
        sleep 5
        [ -n "$id" ] && admin_post "$1" "/api/v1/incidents/$id/updates" \
            '{"status":"identified","body":"Found it.","components":{"chat":"operational"}}' >/dev/null
        admin_post "$1" /api/v1/canary/chat '{"action":"pause"}' >/dev/null
        sleep 5
        [ -n "$id" ] && admin_post "$1" "/api/v1/incidents/$id/updates" '{"status":"resolved","body":"Fixed."}' >/dev/null
        admin_post "$1" /api/v1/canary/chat '{"action":"resume"}' >/dev/null
        sleep 20
    done
}

status_loop() { # status port, end time
    local n=0
    while [ "$(date +%s)" -lt "$2" ] && [ $n -lt 100000 ]; do
        n=$((n + 1))
        curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$1/api/v2/summary.json" || true
        curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$1/" || true
        sleep 1
    done
}

# run_phase NAME BINARY MINUTES T0: one gateway, the load, the sampler.
run_phase() {
    local name=$1 bin=$2 minutes=$3 t0=$4
    local secs=$((minutes * 60)) gw adm st pid end lg1 lg2 lg3 al sl
    [ "$secs" -gt 0 ] || return 0
    gw=$(port); adm=$(port); st=$(port)
    write_config "$gw" "$adm" "$st"
    "$bin" -t -c "$OUT/rampart.yaml" >/dev/null 2>"$OUT/config-check.log" ||
        bench_die "configuration refused: $(cat "$OUT/config-check.log")"
    bench_log "phase $name: $bin for $minutes min (gateway :$gw, admin :$adm, status :$st)"
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
        "$bin" -c "$OUT/rampart.yaml" >"$OUT/rampart-$name.out.log" 2>"$OUT/rampart-$name.err.log" &
    pid=$!
    bench_track $pid
    bench_wait_port "$gw" 20 || bench_die "rampart ($name) did not start: $(tail -5 "$OUT/rampart-$name.err.log")"
    bench_wait_port "$adm" 10 || true
    sleep 3
    local idle0 idle1
    idle0=$({ ls "/proc/$pid/fd" 2>/dev/null || true; } | wc -l)
    end=$(($(date +%s) + secs))

    build/loadgen --url "http://127.0.0.1:$gw/v1/chat/completions" --rate "$STREAM_RATE" --poisson \
        --duration "${secs}s" --stream --max-tokens 200-800 --prompt-chars 100-2000 --give-up 8s \
        --tenants alice:5,bob:3,capped:2 --seed 21 --quiet --json "$OUT/loadgen-streams-$name.json" \
        >"$OUT/loadgen-streams-$name.log" 2>&1 &
    lg1=$!; bench_track $lg1
    build/loadgen --url "http://127.0.0.1:$gw/v1/chat/completions" --rate "$SHORT_RATE" --poisson \
        --duration "${secs}s" --no-stream --max-tokens 4-16 --keepalive --give-up 5s \
        --tenants carol:1,dave:1 --seed 22 --quiet --json "$OUT/loadgen-short-$name.json" \
        >"$OUT/loadgen-short-$name.log" 2>&1 &
    lg2=$!; bench_track $lg2
    # streams of minutes: 8000-12000 tokens at 15 ms, nobody gives up
    build/loadgen --url "http://127.0.0.1:$gw/v1/chat/completions" --rate "$LONG_RATE" --poisson \
        --duration "${secs}s" --stream --max-tokens 8000-12000 --give-up 300s --drain 10s \
        --tenants erin:1 --seed 23 --quiet --json "$OUT/loadgen-long-$name.json" \
        >"$OUT/loadgen-long-$name.log" 2>&1 &
    lg3=$!; bench_track $lg3
    admin_loop "$adm" "$end" & al=$!; bench_track $al
    status_loop "$st" "$end" & sl=$!; bench_track $sl

    local now rss fds conns
    while :; do
        now=$(date +%s)
        [ "$now" -lt "$end" ] || break
        kill -0 "$pid" 2>/dev/null || { bench_log "rampart ($name) died"; echo "died" >"$OUT/died-$name"; break; }
        rss=$(bench_rss_kb "$pid")
        fds=$({ ls "/proc/$pid/fd" 2>/dev/null || true; } | wc -l)
        conns=$(metric "$adm" rampart_client_connections)
        echo "$((now - t0)),$name,$rss,$fds,$conns" >>"$OUT/samples.csv"
        sleep "$SAMPLE_S"
    done
    # loadgen drains by itself (give-up + 1 s); the loops end at $end
    for p in $lg1 $lg2 $lg3 $al $sl; do
        for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        bench_untrack_stop "$p"
    done
    # idle again: descriptors back to where they were before the load?
    # (pooled upstream connections expire after 5 s, clients have gone)
    for _ in $(seq 40); do
        idle1=$({ ls "/proc/$pid/fd" 2>/dev/null || true; } | wc -l)
        [ "$idle1" -le "$((idle0 + 2))" ] && break
        sleep 1
    done
    echo "$idle0 $idle1" >"$OUT/idle-$name"
    bench_untrack_stop "$pid"
}

T0=$(date +%s)
run_phase plain build/rampart "$PLAIN_MINUTES" "$T0"
run_phase asan "$SAN_BUILD/rampart" "$SOAK_SAN_MINUTES" "$T0"

# ---------------------------------------------------------------- report
rc=0
report="$OUT/report.txt"
: >"$report"
for name in plain asan; do
    [ -f "$OUT/rampart-$name.err.log" ] || continue
    /usr/bin/python3 - "$OUT/samples.csv" "$name" "$FD_GROWTH" "$SAMPLE_S" >>"$report" <<'PY' || rc=1
import csv, statistics, sys
path, phase, bound, step = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = [r for r in csv.DictReader(open(path)) if r["phase"] == phase]
if not rows:
    print(f"{phase}: no samples"); sys.exit(1)
t = [int(r["t_s"]) for r in rows]
first = [r for r in rows if int(r["t_s"]) < t[0] + 120]
last = [r for r in rows if int(r["t_s"]) > t[-1] - 120]
med = lambda rs, k: statistics.median(float(r[k]) for r in rs)
rss0, rss1 = med(first, "rss_kb"), med(last, "rss_kb")
fd0, fd1 = med(first, "fds"), med(last, "fds")
print(f"{phase}: {len(rows)} samples over {t[-1] - t[0] + step} s; "
      f"RSS median first 2 min {rss0 / 1024:.1f} MiB, last 2 min {rss1 / 1024:.1f} MiB "
      f"(growth {(rss1 - rss0) / 1024:+.1f} MiB); descriptors {fd0:.0f} -> {fd1:.0f} ({fd1 - fd0:+.0f}); "
      f"max client connections {max(float(r['client_connections']) for r in rows):.0f}")
if fd1 - fd0 > bound:
    print(f"{phase}: FAIL descriptors grew by {fd1 - fd0:.0f} (bound {bound})"); sys.exit(1)
PY
    err="$OUT/rampart-$name.err.log"
    if [ -f "$OUT/idle-$name" ]; then
        read -r i0 i1 <"$OUT/idle-$name"
        echo "$name: idle descriptors before the load $i0, after it $i1" >>"$report"
        if [ "$((i1 - i0))" -gt "$FD_GROWTH" ]; then
            echo "$name: FAIL $((i1 - i0)) descriptors still open after the load ended" >>"$report"; rc=1
        fi
    fi
    if [ -f "$OUT/died-$name" ]; then echo "$name: FAIL rampart died" >>"$report"; rc=1; fi
    if grep -q -E 'AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer' "$err"; then
        echo "$name: FAIL sanitizer report:" >>"$report"
        grep -E -A12 'AddressSanitizer|LeakSanitizer|runtime error:' "$err" | head -60 >>"$report"
        rc=1
    else
        echo "$name: no sanitizer report" >>"$report"
    fi
    # error lines, with numbers and addresses folded so kinds can be counted
    n_err=$(grep -c ' error: ' "$err" || true)
    echo "$name: $n_err error lines in stderr (none is injected by this load: aborts, 429s and canary" \
        "actions are answers, not errors)" >>"$report"
    grep ' error: ' "$err" | sed -E 's/^[^ ]+ [^ ]+ error: //; s/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -20 \
        >>"$report" || true
    for f in "$OUT"/loadgen-*-"$name".json; do
        [ -f "$f" ] || continue
        /usr/bin/python3 - "$f" >>"$report" <<'PY' || true
import json, sys
t = json.load(open(sys.argv[1]))["total"]
print(f"  {sys.argv[1].rsplit('/', 1)[-1]}: offered {t.get('offered')}, ok {t.get('ok')}, gave up {t.get('gave_up')}, "
      f"errors {t.get('errors')}, status {t.get('status')}, error kinds {t.get('error_counts')}")
PY
    done
done
echo "incidents written: $(grep -c incident "$OUT/incidents.txt" 2>/dev/null || echo 0)," \
    "failed: $(grep -c FAILED "$OUT/incidents.txt" 2>/dev/null || true)" >>"$report"

if command -v gnuplot >/dev/null; then
    gnuplot -e "csv='$OUT/samples.csv'; out='$PLOT'" bench/soak.gp 2>>"$report" && echo "plot: $PLOT" >>"$report"
fi
cat "$report"
[ $rc -eq 0 ] && bench_log "soak passed" || bench_log "soak FAILED"
exit $rc
