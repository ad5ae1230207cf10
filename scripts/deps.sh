#!/usr/bin/env bash
# scripts/deps.sh — make sure the Debian packages rampart needs are installed.
#
#   bash scripts/deps.sh                  build + test (make, make test, make SAN=1)
#   bash scripts/deps.sh fuzz             ... plus clang and libFuzzer (make fuzz)
#   bash scripts/deps.sh bench            ... plus HAProxy, nginx, wrk, gnuplot (make bench)
#   bash scripts/deps.sh browser          ... plus Chromium (headless status-page test)
#   bash scripts/deps.sh fuzz browser     groups combine
#
# Silent when everything is present.  As root it installs what is missing
# (apt-get update only when the package lists cannot provide it); otherwise it
# prints the exact command to run and exits 1.  Running it again is harmless.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# prometheus provides promtool, which the metrics integration test runs on /metrics;
# clang-format-14 is what make format-check (part of make test) compares the code with.
base=(build-essential pkg-config libyaml-dev libsqlite3-dev libjansson-dev libssl-dev
      libcmocka-dev python3 python3-pytest curl prometheus clang-format-14)
fuzz=(clang libclang-rt-14-dev)
bench=(haproxy nginx-light wrk gnuplot-nox)
browser=(chromium)

usage() {
    echo "usage: $0 [fuzz] [bench] [browser] [all]" >&2
}

want=("${base[@]}")
for group in "$@"; do
    case "$group" in
    fuzz) want+=("${fuzz[@]}") ;;
    bench) want+=("${bench[@]}") ;;
    browser) want+=("${browser[@]}") ;;
    all) want+=("${fuzz[@]}" "${bench[@]}" "${browser[@]}") ;;
    -h | --help) usage; exit 0 ;;
    *) echo "deps.sh: unknown group '$group'" >&2; usage; exit 2 ;;
    esac
done

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: dpkg-query not found; rampart is built on Debian 12 (bookworm)." >&2
    echo "deps.sh: install the equivalents of: ${want[*]}" >&2
    exit 1
fi

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing_pkgs() {
    local p seen=" "
    for p in "${want[@]}"; do
        case "$seen" in *" $p "*) continue ;; esac
        seen+="$p "
        installed "$p" || printf '%s\n' "$p"
    done
}

mapfile -t missing < <(missing_pkgs)
[ "${#missing[@]}" -eq 0 ] && exit 0

echo "deps.sh: missing Debian packages: ${missing[*]}"

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: run this as root, then try again:"
    echo
    echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
    echo
    exit 1
fi

apt_opts=(-y --no-install-recommends -o DPkg::Lock::Timeout=300)

# The package lists need refreshing if they are absent (fresh image) or do not
# know one of the packages we are about to install.
need_update() {
    local p
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || return 0
    for p in "${missing[@]}"; do
        apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]' || return 0
    done
    return 1
}

updated=0
if need_update; then
    echo "deps.sh: apt-get update"
    apt-get update -q -o DPkg::Lock::Timeout=300
    updated=1
fi

echo "deps.sh: apt-get install ${missing[*]}"
if ! apt-get install "${apt_opts[@]}" "${missing[@]}"; then
    # Stale lists can point at files the mirror no longer has: refresh once.
    [ "$updated" -eq 1 ] && exit 1
    echo "deps.sh: install failed; refreshing the package lists and retrying"
    apt-get update -q -o DPkg::Lock::Timeout=300
    apt-get install "${apt_opts[@]}" "${missing[@]}"
fi

mapfile -t still < <(missing_pkgs)
if [ "${#still[@]}" -ne 0 ]; then
    echo "deps.sh: still missing after install: ${still[*]}" >&2
    exit 1
fi
echo "deps.sh: all packages present"
