# shellcheck shell=bash
# bench/lib.sh — helpers shared by the benchmark scripts (source it, do not run it).
#
#   source "$ROOT/bench/lib.sh"
#   bench_track PID          kill PID (and wait for it) when the script exits
#   bench_wait_port PORT [S] wait until 127.0.0.1:PORT accepts connections (default 10 s)
#   bench_port_free PORT     fail with a message if something already listens there
#   bench_pin CPU            prints the "taskset -c CPU" prefix (nothing when pinning is off)
#   bench_cpu_ticks PID      user+system clock ticks the process has used so far
#   bench_rss_kb PID         VmRSS of the process in KiB
#   bench_raise_nofile N     raise this shell's open-file limit to at least N (if allowed)
#   bench_machine            machine and tool versions, one "key: value" per line
#
# Everything listens on loopback only.  PIN=0 turns CPU pinning off.

BENCH_PIDS=()

bench_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

bench_die() { echo "bench: $*" >&2; exit 1; }

bench_track() { BENCH_PIDS+=("$1"); }

# Stop tracked processes in reverse start order, each by its own pid.
bench_cleanup() {
    local i pid
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${BENCH_PIDS[$i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
}

bench_untrack_stop() { # pid: stop one tracked process now
    local pid=$1 keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
}

bench_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

bench_wait_port() {
    local port=$1 secs=${2:-10} i
    for ((i = 0; i < secs * 20; i++)); do
        bench_port_open "$port" && return 0
        sleep 0.05
    done
    return 1
}

bench_port_free() {
    if bench_port_open "$1"; then
        bench_die "port 127.0.0.1:$1 is already in use (set another port with the matching *_PORT variable)"
    fi
}

bench_pin() {
    [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -gt "$1" ] && printf 'taskset -c %s' "$1"
    return 0
}

bench_cpu_ticks() {
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    rest=${stat##*) } # fields from 3 on; comm may contain spaces
    # shellcheck disable=SC2086
    set -- $rest
    echo $(( ${12} + ${13} )) # utime (14) + stime (15)
}

bench_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

bench_raise_nofile() {
    local want=$1
    [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge "$want" ] || ulimit -Hn "$want" 2>/dev/null || true
    [ "$(ulimit -Sn)" = unlimited ] || [ "$(ulimit -Sn)" -ge "$want" ] || ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
    [ "$(ulimit -Sn)" = unlimited ] || [ "$(ulimit -Sn)" -ge "$want" ]
}

bench_machine() {
    echo "cpus: $(nproc)"
    echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo '?')"
    echo "os: $(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null)"
    command -v haproxy >/dev/null && echo "haproxy: $(haproxy -v 2>/dev/null | head -1 | awk '{ print $3 }')"
    command -v nginx >/dev/null && echo "nginx: $(nginx -v 2>&1 | sed 's|.*nginx/||')"
    command -v wrk >/dev/null && echo "wrk: $(dpkg-query -W -f='${Version}' wrk 2>/dev/null || echo '?')"
    echo "cc: $(${CC:-cc} --version 2>/dev/null | head -1)"
    return 0
}
