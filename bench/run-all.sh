#!/usr/bin/env bash
# bench/run-all.sh — every benchmark in turn (`make bench`).  Each script
# installs what it needs, runs side by side with its peers on this machine,
# and writes its figures under build/bench/ and into docs/.  QUICK=1 asks
# each for its shorter run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for b in proxy capacity overload release status; do
    printf '\n==================== bench/%s.sh ====================\n' "$b"
    bash "bench/$b.sh"
done
