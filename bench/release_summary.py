#!/usr/bin/env python3
"""bench/release_summary.py — one row of bench/release.sh's table.

    release_summary.py RUN_DIR            print the row as JSON (release.sh collects them)
    release_summary.py --table ROW.json…  print the markdown table of several rows

RUN_DIR holds what release.sh saved after one run:
  lg*.json         loadgen summaries (one per loadgen process)
  sim-stable*.json, sim-canary.json   llmsim /sim/stats at the end
  canary.json      rampart's GET /api/v1/canary/chat at the end
  meta.json        the run's parameters

"Failed because of the bad release" is the canary server's injected
failures beyond what the stable servers' failure ratio predicts for the
same number of requests (every server has the same background noise), as a
share of every request the users sent.  Answers 500 are not retried
(docs/releases.md), so each of those failures reached a user.
"""
import datetime
import glob
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def row(run):
    meta = load(os.path.join(run, "meta.json"))
    lgs = [load(p)["total"] for p in sorted(glob.glob(os.path.join(run, "lg*.json")))]
    offered = sum(t["offered"] for t in lgs)
    ok = sum(t["ok"] for t in lgs)
    stable = [load(p) for p in sorted(glob.glob(os.path.join(run, "sim-stable*.json")))]
    can = load(os.path.join(run, "sim-canary.json"))
    st_recv = sum(s["requests_received"] for s in stable)
    st_fail = sum(s["requests_failed"] for s in stable)
    ca_recv, ca_fail = can["requests_received"], can["requests_failed"]
    base = st_fail / st_recv if st_recv else 0.0
    excess = max(0.0, ca_fail - ca_recv * base)
    state = load(os.path.join(run, "canary.json"))
    events = state.get("events", [])
    start = next((e for e in events if e["action"] == "start"), None)
    verdict = next((e for e in events if e["action"] in ("rollback", "regression")), None)
    t_verdict = ts(verdict["ts"]) - ts(start["ts"]) if start and verdict else None
    ttft = [t["ttft_ms"]["p50"] for t in lgs if t.get("ttft_ms", {}).get("n")]
    # The canary's share while it was exposed: its requests in the window of
    # the latest analysis (the rollback's own for a rolled-back canary).
    an = (state.get("analysis") or {}).get("errors") or {}
    a_c = (an.get("canary") or {}).get("requests", 0)
    a_s = (an.get("stable") or {}).get("requests", 0)
    return {
        "bad_error_rate": meta["bad_error_rate"],
        "auto_rollback": meta["auto_rollback"],
        "seed": meta.get("seed", 1),
        "duration_s": meta["duration"],
        "rate": meta["rate"],
        "requests": offered,
        "failed": offered - ok,
        "failed_fraction": (offered - ok) / offered if offered else 0.0,
        "canary_requests": ca_recv,
        "canary_share": ca_recv / (ca_recv + st_recv) if ca_recv + st_recv else 0.0,
        "canary_share_exposed": a_c / (a_c + a_s) if a_c + a_s else None,
        "canary_failed": ca_fail,
        "stable_failure_ratio": base,
        "excess_failures": excess,
        "bad_release_fraction": excess / offered if offered else 0.0,
        "verdict": verdict["action"] if verdict else None,
        "verdict_s": t_verdict,
        "final_state": state["state"],
        "final_weight": state["weight"],
        "reason": (verdict or {}).get("reason") or state.get("reason", ""),
        "ttft_p50_ms_median": sorted(ttft)[len(ttft) // 2] if ttft else None,
    }


def table(rows):
    out = ["| bad release errors | auto_rollback | seed | requests | canary requests (share at 5%) "
           "| canary failures (beyond noise) "
           "| failed because of the release | canary start → verdict | final state |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "—" if r["verdict_s"] is None else f"{r['verdict']} at {r['verdict_s']:.0f} s"
        out.append(
            f"| {r['bad_error_rate'] * 100:g}% | {'on' if r['auto_rollback'] else 'off'} | {r['seed']} | {r['requests']} "
            f"| {r['canary_requests']} ({(r['canary_share_exposed'] or 0) * 100:.1f}%) | {r['canary_failed']} "
            f"({r['excess_failures']:.0f}) | **{r['bad_release_fraction'] * 100:.2f}%** ({r['excess_failures']:.0f} "
            f"of {r['requests']}) | {verdict} "
            f"| {r['final_state']}, {r['final_weight']:g}% |")
    return "\n".join(out)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--table":
        rows = [load(p) for p in sys.argv[2:]]
        print(table(rows))
        print()
        for r in rows:
            print(f"- {r['bad_error_rate'] * 100:g}% errors, auto_rollback "
                  f"{'on' if r['auto_rollback'] else 'off'}, seed {r['seed']}: {r['reason'] or '(no verdict)'}")
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(json.dumps(row(sys.argv[1])))


if __name__ == "__main__":
    main()
