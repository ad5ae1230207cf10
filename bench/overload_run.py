#!/usr/bin/env python3
"""bench/overload_run.py — the overload benchmark's driver (run it through
bench/overload.sh, which installs and builds what it needs).

One llmsim capacity, three set-ups in front of it, open-loop Poisson load
from loadgen at multiples of that capacity:

  direct   loadgen -> llmsim
  haproxy  loadgen -> HAProxy (static maxconn + timeout queue, the best
           pair found by a calibration sweep on this machine) -> llmsim
  rampart  loadgen -> rampart (adaptive limiter, defaults: never told the
           capacity) -> llmsim

plus (a) the time rampart's limit takes to settle after llmsim's slots are
halved under load, and (b) four tenants at (or below) their fair share
beside one at ten times its share.  Order: measure the capacity (llmsim
alone, saturated), the unloaded TTFT, the HAProxy sweep, then the three
ramps, (a) and (b).  Results go to OUT/results.json (and the raw CSV/JSON,
100 ms samples, configs and logs beside it); bench/overload_report.py turns
them into the docs section and the plot's data.

Knobs (environment): QUICK=1 (shorter phases and sweep); SLOTS, TOKEN_MS,
SLOWDOWN, PREFILL_MS, PREFILL_US (llmsim); TOKENS (LO-HI output tokens),
PROMPT_CHARS; GIVE_UP, SLO_TTFT (s); LOADS, WARM, MEASURE (s); CAL_MAXCONN,
CAL_TQUEUE, CAL_LOADS, CAL_WARM, CAL_MEASURE (HAProxy sweep); HAPROXY_BEST
="MAXCONN TIMEOUT" (skip the sweep); CAPACITY (req/s, skip measuring it);
HALVE_LOAD, HALVE_BEFORE, HALVE_AFTER; TENANT_SHARES, TENANT_WARM,
TENANT_MEASURE; SETUPS; BASE_PORT (three ports from it); SEED;
RAMPART_EXTRA (YAML appended to rampart's config, for experiments).
--only main|halve|tenants|calibrate re-runs one part and merges it into
an existing results.json.

Every process listens on loopback, every run is bounded in time, and each
child is stopped by its own pid when the run ends.
"""
import argparse
import calendar
import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

# --------------------------------------------------------------------------
# parameters (environment, so the shell wrapper can pass them through)


def env_f(name, default):
    return float(os.environ.get(name, default))


QUICK = os.environ.get("QUICK", "0") == "1"
SLOTS = int(env_f("SLOTS", 16))
TOKEN_MS = env_f("TOKEN_MS", 20)
SLOWDOWN = env_f("SLOWDOWN", 1.0)
PREFILL_MS = env_f("PREFILL_MS", 20)
PREFILL_US = env_f("PREFILL_US", 100)
# Output length: uniform in TOKENS (LO-HI) so that requests started in the
# same engine step do not all finish in the same step (that would make
# departures, and so every queue, artificially bursty).
TOKENS = os.environ.get("TOKENS", "16-48")
TOK_LO, TOK_HI = (int(x) for x in (TOKENS.split("-") + [TOKENS])[:2])
PROMPT_CHARS = int(env_f("PROMPT_CHARS", 400))
GIVE_UP = env_f("GIVE_UP", 10)
SLO_TTFT = env_f("SLO_TTFT", 1.0)
LOADS = os.environ.get("LOADS", "0.5 1 2 5 10").split()
WARM = env_f("WARM", 3 if QUICK else 5)
MEASURE = env_f("MEASURE", 8 if QUICK else 20)
CAL_WARM = env_f("CAL_WARM", 2)
CAL_MEASURE = env_f("CAL_MEASURE", 6 if QUICK else 10)
CAL_MAXCONN = [int(x) for x in os.environ.get("CAL_MAXCONN", "14 16 20" if QUICK else "12 14 16 18 20 24").split()]
# The maxconn sweep uses the first timeout queue; the others are then tried
# at the best maxconn.
CAL_TQUEUE = os.environ.get("CAL_TQUEUE", "500ms 250ms" if QUICK else "500ms 250ms 900ms").split()
CAL_LOADS = os.environ.get("CAL_LOADS", "1 5").split()
HALVE_BEFORE = env_f("HALVE_BEFORE", 12 if QUICK else 20)
HALVE_AFTER = env_f("HALVE_AFTER", 10 if QUICK else 20)
HALVE_LOAD = env_f("HALVE_LOAD", 2)
TENANT_WARM = env_f("TENANT_WARM", 5 if QUICK else 8)
TENANT_MEASURE = env_f("TENANT_MEASURE", 12 if QUICK else 25)
# Normal tenants' demand, in fair shares: below it, and exactly at it (then
# each normal tenant is critically loaded in its own share of the server).
TENANT_SHARES = os.environ.get("TENANT_SHARES", "0.8 1").split()
SETUPS = os.environ.get("SETUPS", "direct haproxy rampart").split()
BASE_PORT = int(env_f("BASE_PORT", 19440))
SEED = int(env_f("SEED", 1))

SIM_PORT, GW_PORT, ADMIN_PORT = BASE_PORT, BASE_PORT + 1, BASE_PORT + 2

PROMPT_TOKENS = math.ceil(PROMPT_CHARS / 4)
PREFILL = PREFILL_MS + PREFILL_US * PROMPT_TOKENS / 1000
SERVICE_MS = PREFILL + ((TOK_LO + TOK_HI) / 2 - 1) * TOKEN_MS * (1 + SLOWDOWN)  # mean, at a full batch
FORMULA_CAPACITY = SLOTS * 1000 / SERVICE_MS  # req/s at a full batch (docs/llmsim.md)
# Measured by measure_capacity() before anything else (CAPACITY=R skips it).
CAPACITY = env_f("CAPACITY", 0) or FORMULA_CAPACITY
# The same in generated tokens per second: goodput is counted in tokens of
# good answers, which does not depend on whether the answers that happened
# to finish inside a window were short or long ones.
CAPACITY_TOK = CAPACITY * (TOK_LO + TOK_HI) / 2


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# processes


class Children:
    def __init__(self):
        self.procs = []

    def start(self, args, logpath, port=None):
        f = open(logpath, "ab")
        p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT)
        p.logf = f
        self.procs.append(p)
        if port is not None:
            wait_port(port, p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        p.logf.close()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            self.stop(p)


CHILDREN = Children()


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_port(port, p, secs=10):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"{p.args[0]} exited with {p.returncode}")
        if port_open(port):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port} after {secs}s")


def http_json(port, path, body=None, timeout=2):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def http_text(port, path, timeout=2):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def start_sim(build, out, name):
    return CHILDREN.start([f"{build}/llmsim", "--port", str(SIM_PORT), "--slots", str(SLOTS),
                           "--token-ms", str(TOKEN_MS), "--batch-slowdown", str(SLOWDOWN),
                           "--prefill-base-ms", str(PREFILL_MS), "--prefill-per-token-us", str(PREFILL_US),
                           "--seed", str(SEED)], f"{out}/logs/llmsim-{name}.log", SIM_PORT)


def start_rampart(build, out, name, extra=""):
    cfg = f"{out}/conf/rampart-{name}.yaml"
    with open(cfg, "w") as f:
        f.write(f"""# rampart, adaptive admission with every default: never told llmsim's capacity
listen: 127.0.0.1:{GW_PORT}
upstreams:
  chat:
    servers: [127.0.0.1:{SIM_PORT}]
admin:
  listen: 127.0.0.1:{ADMIN_PORT}
log:
  access: {out}/logs/access-{name}.jsonl
{extra}{os.environ.get("RAMPART_EXTRA", "")}""")
    p = CHILDREN.start([f"{build}/rampart", "-c", cfg], f"{out}/logs/rampart-{name}.log", GW_PORT)
    wait_port(ADMIN_PORT, p)
    return p


def haproxy_cfg(path, maxconn, tqueue):
    with open(path, "w") as f:
        f.write(f"""# HAProxy as a static admission controller in front of llmsim:
# maxconn = concurrent requests per server, timeout queue = longest wait in
# HAProxy's queue before a 503; abortonclose drops a queued request whose
# client left (the best HAProxy can do about wasted work); http-no-delay
# forwards each streamed chunk at once (without it HAProxy holds the first
# SSE event back for ~200 ms, which would be unfair to it here).
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout queue {tqueue}
    option abortonclose
    option http-keep-alive
    option http-no-delay
frontend fe
    bind 127.0.0.1:{GW_PORT}
    default_backend llm
backend llm
    server sim 127.0.0.1:{SIM_PORT} maxconn {maxconn}
""")


def start_haproxy(out, name, maxconn, tqueue):
    cfg = f"{out}/conf/haproxy-{name}.cfg"
    haproxy_cfg(cfg, maxconn, tqueue)
    return CHILDREN.start(["haproxy", "-db", "-f", cfg], f"{out}/logs/haproxy-{name}.log", GW_PORT)


# --------------------------------------------------------------------------
# sampling llmsim and rampart every 100 ms


class Sampler:
    def __init__(self, path, rampart):
        self.path = path
        self.rampart = rampart
        self.rows = []
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)

    def start(self, t0):
        self.t0 = t0
        self.t.start()
        return self

    def sample(self):
        row = {"t": time.monotonic() - self.t0}
        try:
            st = http_json(SIM_PORT, "/sim/stats", timeout=1)
            for k in ("slots", "slots_busy", "queue_len", "tokens_generated", "tokens_wasted",
                      "requests_served", "requests_aborted", "requests_received"):
                row[k] = st[k]
        except Exception:  # noqa: BLE001 - a missed sample is only a gap
            pass
        if self.rampart:
            try:
                for line in http_text(ADMIN_PORT, "/metrics", timeout=1).splitlines():
                    if line.startswith("rampart_admit_limit{"):
                        row["limit"] = float(line.rsplit(" ", 1)[1])
                    elif line.startswith("rampart_admit_inflight{"):
                        row["inflight"] = float(line.rsplit(" ", 1)[1])
                    elif line.startswith("rampart_admit_baseline_seconds{"):
                        row["baseline_s"] = float(line.rsplit(" ", 1)[1])
                    elif line.startswith("rampart_queue_length{"):
                        row["queue"] = row.get("queue", 0) + float(line.rsplit(" ", 1)[1])
            except Exception:  # noqa: BLE001
                pass
        return row

    def loop(self):
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            self.rows.append(self.sample())
            nxt += 0.1
            self.stop_ev.wait(max(0.0, nxt - time.monotonic()))

    def stop(self):
        self.stop_ev.set()
        self.t.join()
        with open(self.path, "w") as f:
            for r in self.rows:
                f.write(json.dumps(r) + "\n")
        return self.rows


def at(rows, t, key):
    """Value of key in the last sample taken at or before t (else the first after)."""
    best = None
    for r in rows:
        if key not in r:
            continue
        if r["t"] <= t or best is None:
            best = r
        if r["t"] > t:
            break
    return best[key] if best else 0


# --------------------------------------------------------------------------
# load


def loadgen(build, out, name, rate, schedule, port, extra=(), seed=SEED, give_up=None):
    args = [f"{build}/loadgen", "--url", f"http://127.0.0.1:{port}/v1/chat/completions", "--rate", f"{rate:.4f}", "--poisson", "--schedule", schedule,
            "--max-tokens", str(TOKENS), "--prompt-chars", str(PROMPT_CHARS), "--give-up", f"{give_up or GIVE_UP:g}s",
            "--slo-ttft", f"{SLO_TTFT}s", "--seed", str(seed), "--quiet",
            "--csv", f"{out}/{name}.csv", "--json", f"{out}/{name}.json", *extra]
    with open(f"{out}/logs/loadgen-{name}.log", "w") as f:
        rc = subprocess.call(args, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        raise RuntimeError(f"loadgen {name} exited {rc} (see {out}/logs/loadgen-{name}.log)")
    return json.load(open(f"{out}/{name}.json"))


def pct(v, q):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def phase_summary(rows, phase, t_start, t_end):
    """Per measured phase: from loadgen's CSV (arrivals of the phase) and
    the window [t_start, t_end) for completions."""
    mine = [r for r in rows if r["phase"] == str(phase)]
    offered = len(mine)
    ok = [r for r in mine if r["status"].startswith("2") and not r["error"] and r["ttft_ms"]]
    good = [r for r in ok if float(r["ttft_ms"]) <= SLO_TTFT * 1000]
    # goodput in the window: good answers (of any phase) that finished inside it
    good_in_window = good_tok_in_window = 0
    for r in rows:
        if r["status"].startswith("2") and not r["error"] and r["ttft_ms"] and \
                float(r["ttft_ms"]) <= SLO_TTFT * 1000:
            end = float(r["start_s"]) + float(r["total_ms"]) / 1000
            if t_start <= end < t_end:
                good_in_window += 1
                good_tok_in_window += int(r["tokens"] or 0)
    admitted_ttft = [float(r["ttft_ms"]) for r in mine if r["status"].startswith("2") and r["ttft_ms"]]
    refused = [float(r["headers_ms"]) for r in mine if r["status"] in ("429", "503") and r["headers_ms"]]
    status = {}
    for r in mine:
        k = r["status"] if r["status"] != "0" else (r["error"] or "none")
        status[k] = status.get(k, 0) + 1
    return {
        "offered": offered,
        "offered_rps": offered / (t_end - t_start),
        "ok": len(ok),
        "good": len(good),
        "good_rps": good_in_window / (t_end - t_start),
        "good_req_frac_capacity": good_in_window / (t_end - t_start) / CAPACITY,
        "good_tok_rps": good_tok_in_window / (t_end - t_start),
        "good_frac_capacity": good_tok_in_window / (t_end - t_start) / CAPACITY_TOK,
        "good_frac_offered": len(good) / max(1, offered),
        "ttft_p50": pct(admitted_ttft, 0.5),
        "ttft_p99": pct(admitted_ttft, 0.99),
        "admitted": len(admitted_ttft),
        "refused": len(refused),
        "refusal_p50": pct(refused, 0.5),
        "refusal_p99": pct(refused, 0.99),
        "gave_up": sum(1 for r in mine if r["gave_up"] == "1"),
        "status": status,
    }


def run_setup(build, out, setup, loads, gw_start):
    """Fresh llmsim (and gateway), one loadgen run with a warm-up and a
    measured phase per load level."""
    name = f"main-{setup}"
    sim = start_sim(build, out, name)
    gw = gw_start() if gw_start else None
    schedule = ",".join(f"{l}x:{WARM:g}s,{l}x:{MEASURE:g}s" for l in loads)
    log(f"{setup}: {schedule} of {CAPACITY:.2f} req/s")
    t0, wall0 = time.monotonic(), time.time()
    sampler = Sampler(f"{out}/{name}.samples.jsonl", rampart=(setup == "rampart")).start(t0)
    loadgen(build, out, name, CAPACITY, schedule, GW_PORT if gw else SIM_PORT)
    samples = sampler.stop()
    if gw:
        CHILDREN.stop(gw)
    CHILDREN.stop(sim)
    rows = read_rows(f"{out}/{name}.csv")
    bounds = [((i + 1) * WARM + i * MEASURE, (i + 1) * (WARM + MEASURE)) for i in range(len(loads))]
    acc = access_phases(f"{out}/logs/access-{name}.jsonl", wall0, bounds) if setup == "rampart" else None
    res = {}
    for i, l in enumerate(loads):
        ph = 2 * i + 2
        ts = (i + 1) * WARM + i * MEASURE
        te = ts + MEASURE
        s = phase_summary(rows, ph, ts, te)
        gen = at(samples, te, "tokens_generated") - at(samples, ts, "tokens_generated")
        wasted = at(samples, te, "tokens_wasted") - at(samples, ts, "tokens_wasted")
        s["tokens_generated"] = gen
        s["tokens_wasted"] = wasted
        s["wasted_frac"] = wasted / gen if gen else 0.0
        lim = [r["limit"] for r in samples if "limit" in r and ts <= r["t"] < te]
        if lim:
            s["limit_mean"] = sum(lim) / len(lim)
            s["limit_min"] = min(lim)
            s["limit_max"] = max(lim)
        busy = [r["slots_busy"] for r in samples if "slots_busy" in r and ts <= r["t"] < te]
        simq = [r["queue_len"] for r in samples if "queue_len" in r and ts <= r["t"] < te]
        s["sim_busy_mean"] = sum(busy) / len(busy) if busy else float("nan")
        s["sim_queue_mean"] = sum(simq) / len(simq) if simq else float("nan")
        s["sim_queue_time_frac"] = sum(1 for q in simq if q > 0) / len(simq) if simq else float("nan")
        if lim:
            s["limit_above_slots_frac"] = sum(1 for v in lim if v > SLOTS) / len(lim)
            s["limit_below_slots_frac"] = sum(1 for v in lim if v < SLOTS) / len(lim)
        if acc:
            s["access"] = acc[i]
        res[l] = s
        log(f"  {setup} {l}x: offered {s['offered_rps']:.1f}/s goodput {s['good_frac_capacity']:.3f} of capacity, "
            f"TTFT p50 {s['ttft_p50']:.0f} p99 {s['ttft_p99']:.0f} ms, refused {s['refused']} "
            f"(p99 {s['refusal_p99']:.1f} ms), wasted {wasted} tokens"
            + (f", limit {s['limit_mean']:.1f} [{s['limit_min']:.0f}..{s['limit_max']:.0f}]" if lim else ""))
    return res


def access_phases(path, wall0, bounds):
    """rampart's access log, per measured window [ts, te) (seconds from
    wall0, by request start): upstream first byte (dispatch -> first token)
    and queue wait of the 2xx answers, and the refusal reasons."""
    res = [{"fb": [], "queue": [], "outcomes": {}} for _ in bounds]
    try:
        f = open(path)
    except OSError:
        return None
    with f:
        for line in f:
            try:
                e = json.loads(line)
                t_end = calendar.timegm(time.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S")) \
                    + float("0." + e["time"][20:23])
            except (ValueError, KeyError):
                continue
            start = t_end - (e.get("total_ms") or 0) / 1000 - wall0
            for i, (ts, te) in enumerate(bounds):
                if ts <= start < te:
                    r = res[i]
                    r["outcomes"][e["outcome"]] = r["outcomes"].get(e["outcome"], 0) + 1
                    if e["status"] == 200 and e.get("first_byte_ms") is not None:
                        r["fb"].append(e["first_byte_ms"])
                        r["queue"].append(e.get("queue_ms") or 0.0)
    out = []
    for r in res:
        out.append({"upstream_ttft_p50": pct(r["fb"], 0.5), "upstream_ttft_p90": pct(r["fb"], 0.9),
                    "upstream_ttft_p99": pct(r["fb"], 0.99), "queue_p50": pct(r["queue"], 0.5),
                    "queue_p90": pct(r["queue"], 0.9), "queue_p99": pct(r["queue"], 0.99),
                    "outcomes": r["outcomes"]})
    return out


# --------------------------------------------------------------------------
# the experiments


def measure_capacity(build, out):
    """llmsim alone, kept saturated (1.5x the formula's rate, nobody gives
    up): completions per second once the batch is full."""
    global CAPACITY, CAPACITY_TOK
    name = "capacity"
    sim = start_sim(build, out, name)
    warm, dur = (3, 8) if QUICK else (4, 12)
    t0 = time.monotonic()
    sampler = Sampler(f"{out}/{name}.samples.jsonl", rampart=False).start(t0)
    loadgen(build, out, name, 1.5 * FORMULA_CAPACITY, f"1x:{warm}s,1x:{dur}s", SIM_PORT,
            give_up=60, extra=("--drain", "0.2s"))
    samples = sampler.stop()
    CHILDREN.stop(sim)
    served = at(samples, warm + dur, "requests_served") - at(samples, warm, "requests_served")
    tokens = at(samples, warm + dur, "tokens_generated") - at(samples, warm, "tokens_generated")
    CAPACITY_TOK = tokens / dur
    # Requests/s from tokens/s and the mean output length: the requests that
    # happen to finish in a short window are a noisy sample of the lengths.
    CAPACITY = CAPACITY_TOK / ((TOK_LO + TOK_HI) / 2)
    log(f"capacity: {tokens} tokens ({served} completions) in {dur:g} s at a full batch = "
        f"{CAPACITY_TOK:.0f} tokens/s = {CAPACITY:.2f} req/s of {(TOK_LO + TOK_HI) / 2:g} tokens "
        f"(formula {FORMULA_CAPACITY:.2f})")
    return {"measured": CAPACITY, "tokens_per_s": CAPACITY_TOK, "formula": FORMULA_CAPACITY, "served": served,
            "served_rps": served / dur, "window_s": dur}



def unloaded(build, out):
    name = "unloaded"
    sim = start_sim(build, out, name)
    dur = 10 if QUICK else 20
    rate = 0.25 * CAPACITY
    loadgen(build, out, name, rate, f"1x:{dur}s", SIM_PORT)
    CHILDREN.stop(sim)
    rows = read_rows(f"{out}/{name}.csv")
    v = [float(r["ttft_ms"]) for r in rows if r["ttft_ms"] and r["status"] == "200"]
    res = {"n": len(v), "p50": pct(v, 0.5), "p99": pct(v, 0.99), "rate": rate, "duration": dur}
    log(f"unloaded (0.25x direct, {len(v)} requests): TTFT p50 {res['p50']:.1f} ms, p99 {res['p99']:.1f} ms")
    return res


def calibrate_haproxy(build, out):
    """Sweep maxconn (and then timeout queue) at CAL_LOADS; score = mean
    goodput fraction of capacity over those loads, ties to the lower p99."""
    results = []

    def point(maxconn, tq):
        per = {}
        for l in CAL_LOADS:
            name = f"cal-haproxy-{maxconn}-{tq}-{l}"
            sim = start_sim(build, out, name)
            gw = start_haproxy(out, name, maxconn, tq)
            loadgen(build, out, name, CAPACITY, f"{l}x:{CAL_WARM:g}s,{l}x:{CAL_MEASURE:g}s", GW_PORT)
            CHILDREN.stop(gw)
            CHILDREN.stop(sim)
            per[l] = phase_summary(read_rows(f"{out}/{name}.csv"), 2, CAL_WARM, CAL_WARM + CAL_MEASURE)
        score = sum(per[l]["good_frac_capacity"] for l in CAL_LOADS) / len(CAL_LOADS)
        p99 = max(per[l]["ttft_p99"] for l in CAL_LOADS)
        r = {"maxconn": maxconn, "timeout_queue": tq, "score": score, "p99": p99,
             "per": {l: {"good_frac_capacity": per[l]["good_frac_capacity"], "ttft_p99": per[l]["ttft_p99"]}
                     for l in CAL_LOADS}}
        results.append(r)
        log(f"  haproxy maxconn {maxconn} timeout queue {tq}: goodput " +
            ", ".join(f"{l}x {per[l]['good_frac_capacity']:.3f}" for l in CAL_LOADS) +
            f"; admitted TTFT p99 {p99:.0f} ms")
        return r

    def better(a, b):  # is a better than b
        if b is None:
            return True
        if abs(a["score"] - b["score"]) > 0.01:
            return a["score"] > b["score"]
        return a["p99"] < b["p99"]

    log(f"haproxy calibration: maxconn {CAL_MAXCONN} with timeout queue {CAL_TQUEUE[0]}, loads {CAL_LOADS}")
    best = None
    for mc in CAL_MAXCONN:
        r = point(mc, CAL_TQUEUE[0])
        if better(r, best):
            best = r
    for tq in CAL_TQUEUE[1:]:
        r = point(best["maxconn"], tq)
        if better(r, best):
            best = r
    log(f"haproxy best: maxconn {best['maxconn']}, timeout queue {best['timeout_queue']}")
    return best, results


def halve(build, out):
    """(a) llmsim's slots halve under load; how long until rampart's limit
    is within +-10% of the new slot count and stays there."""
    name = "halve"
    sim = start_sim(build, out, name)
    gw = start_rampart(build, out, name)
    t0 = time.monotonic()
    sampler = Sampler(f"{out}/{name}.samples.jsonl", rampart=True).start(t0)
    th = threading.Thread(target=loadgen, args=(build, out, name, CAPACITY,
                                                 f"{HALVE_LOAD:g}x:{HALVE_BEFORE:g}s,{HALVE_LOAD:g}x:{HALVE_AFTER:g}s",
                                                 GW_PORT))
    th.start()
    # Halve at the phase boundary (loadgen starts within a few ms of t0).
    time.sleep(max(0.0, t0 + HALVE_BEFORE - time.monotonic()))
    t_change = time.monotonic() - t0
    http_json(SIM_PORT, "/sim/config", {"slots": SLOTS // 2})
    th.join()
    samples = sampler.stop()
    CHILDREN.stop(gw)
    CHILDREN.stop(sim)
    new = SLOTS // 2
    lims = [(r["t"], r["limit"]) for r in samples if "limit" in r]
    end = t_change + HALVE_AFTER

    def settle(lo, hi):
        """First t after the change from which every later sample (to the
        end of the phase) is within [lo, hi]."""
        last_out = None
        for t, v in lims:
            if t < t_change or t > end:
                continue
            if not lo <= v <= hi:
                last_out = t
        after = [t for t, v in lims if t_change <= t <= end and (last_out is None or t > last_out)]
        return (after[0] - t_change) if after else float("nan")

    def first_within(lo, hi):
        for t, v in lims:
            if t >= t_change and lo <= v <= hi:
                return t - t_change
        return float("nan")

    before = [v for t, v in lims if t_change - min(10, HALVE_BEFORE / 2) <= t < t_change]
    after = [v for t, v in lims if t_change + 5 <= t <= end]
    within10 = [v for t, v in lims if t_change + 2 <= t <= end]
    rows = read_rows(f"{out}/{name}.csv")
    s1 = phase_summary(rows, 1, HALVE_BEFORE / 2, HALVE_BEFORE)
    s2 = phase_summary(rows, 2, HALVE_BEFORE + 5, HALVE_BEFORE + HALVE_AFTER)
    res = {
        "t_change": t_change,
        "new_slots": new,
        "first_within_10pct": first_within(0.9 * new, 1.1 * new),
        "settle_10pct": settle(0.9 * new, 1.1 * new),
        "settle_pm1": settle(new - 1, new + 1),
        "limit_before_mean": sum(before) / len(before) if before else float("nan"),
        "limit_after_mean": sum(after) / len(after) if after else float("nan"),
        "share_within_10pct_after_2s": sum(1 for v in within10 if 0.9 * new <= v <= 1.1 * new) / max(1, len(within10)),
        "goodput_before": s1["good_frac_capacity"],
        "goodput_after": 2 * s2["good_frac_capacity"],
        "ttft_p99_after": s2["ttft_p99"],
        "series": [(round(t - t_change, 2), v) for t, v in lims],
    }
    log(f"halve: limit {res['limit_before_mean']:.1f} before, first within +-10% of {new} after "
        f"{res['first_within_10pct']:.2f} s, settled (+-10%) after {res['settle_10pct']:.2f} s, "
        f"(+-1) after {res['settle_pm1']:.2f} s; mean after {res['limit_after_mean']:.2f}")
    return res


def tenants(build, out, setup, tshare, gw_start):
    """(b) one tenant at 10x its share beside four at tshare of theirs."""
    name = f"tenants-{setup}-{tshare}"
    sim = start_sim(build, out, name)
    gw = gw_start(name)
    share = CAPACITY / 5
    ts = float(tshare)
    weights = {"heavy": 10.0, "n1": ts, "n2": ts, "n3": ts, "n4": ts}
    total = sum(weights.values())
    mix = ",".join(f"{k}:{v:g}" for k, v in weights.items())
    loadgen(build, out, name, share * total, f"1x:{TENANT_WARM:g}s,1x:{TENANT_MEASURE:g}s", GW_PORT,
            extra=("--tenants", mix))
    CHILDREN.stop(gw)
    CHILDREN.stop(sim)
    rows = [r for r in read_rows(f"{out}/{name}.csv") if r["phase"] == "2"]
    res = {}
    for t in weights:
        mine = [r for r in rows if r["tenant"] == t]
        good = [r for r in mine if r["status"].startswith("2") and not r["error"] and r["ttft_ms"]
                and float(r["ttft_ms"]) <= SLO_TTFT * 1000]
        res[t] = {"offered": len(mine), "good": len(good), "frac": len(good) / max(1, len(mine)),
                  "demand_rps": share * weights[t], "sent_shares": len(mine) / TENANT_MEASURE / share,
                  "good_shares": len(good) / TENANT_MEASURE / share}
    log(f"tenants ({setup}, normal at {tshare} share): " + ", ".join(f"{t} {v['good']}/{v['offered']} = {v['frac']:.2f}" for t, v in res.items()))
    return res


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="all", help="all | main | halve | tenants | calibrate")
    a = ap.parse_args()
    out = a.out
    for d in ("logs", "conf"):
        os.makedirs(f"{out}/{d}", exist_ok=True)
    for p in (SIM_PORT, GW_PORT, ADMIN_PORT):
        if port_open(p):
            sys.exit(f"overload: port 127.0.0.1:{p} is in use (set BASE_PORT)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    started = time.monotonic()
    res = {"params": {"slots": SLOTS, "token_ms": TOKEN_MS, "batch_slowdown": SLOWDOWN, "prefill_ms": PREFILL,
                      "tokens": TOKENS, "prompt_chars": PROMPT_CHARS, "service_ms": SERVICE_MS,
                      "formula_capacity": FORMULA_CAPACITY, "give_up": GIVE_UP, "slo_ttft": SLO_TTFT, "loads": LOADS,
                      "warm": WARM, "measure": MEASURE, "quick": QUICK, "cal_loads": CAL_LOADS,
                      "cal_measure": CAL_MEASURE, "halve_load": HALVE_LOAD, "tenant_shares": TENANT_SHARES,
                      "tenant_measure": TENANT_MEASURE}}
    try:
        log(f"llmsim: {SLOTS} slots, service {SERVICE_MS:.0f} ms at a full batch -> formula capacity "
            f"{FORMULA_CAPACITY:.2f} req/s")
        if not env_f("CAPACITY", 0):
            res["capacity"] = measure_capacity(a.build, out)
        else:
            res["capacity"] = {"measured": CAPACITY, "formula": FORMULA_CAPACITY, "given": True}
        if a.only in ("all", "main", "calibrate"):
            res["unloaded"] = unloaded(build=a.build, out=out)
        best = None
        if "haproxy" in SETUPS and os.environ.get("HAPROXY_BEST"):
            # "MAXCONN TIMEOUT": skip the sweep (partial re-runs)
            mc, tq = os.environ["HAPROXY_BEST"].split()
            best = {"maxconn": int(mc), "timeout_queue": tq}
        elif "haproxy" in SETUPS and a.only in ("all", "main", "calibrate", "tenants"):
            best, cal = calibrate_haproxy(a.build, out)
            res["haproxy_best"], res["haproxy_sweep"] = best, cal
        if a.only in ("all", "main"):
            res["main"] = {}
            for setup in SETUPS:
                if setup == "direct":
                    start = None
                elif setup == "haproxy":
                    start = lambda: start_haproxy(out, "main-haproxy", best["maxconn"], best["timeout_queue"])  # noqa: E731
                else:
                    start = lambda: start_rampart(a.build, out, "main-rampart")  # noqa: E731
                res["main"][setup] = run_setup(a.build, out, setup, LOADS, start)
        if a.only in ("all", "halve"):
            res["halve"] = halve(a.build, out)
        if a.only in ("all", "tenants"):
            res["tenants"] = {}
            for ts in TENANT_SHARES:
                res["tenants"][ts] = {"rampart": tenants(a.build, out, "rampart", ts,
                                                         lambda n: start_rampart(a.build, out, n))}
                if best:
                    res["tenants"][ts]["haproxy"] = tenants(
                        a.build, out, "haproxy", ts,
                        lambda n: start_haproxy(out, n, best["maxconn"], best["timeout_queue"]))
    finally:
        CHILDREN.stop_all()
    res["params"]["capacity"] = CAPACITY
    res["params"]["capacity_tok"] = CAPACITY_TOK
    res["elapsed_s"] = time.monotonic() - started
    if a.only != "all" and os.path.exists(f"{out}/results.json"):
        # A partial run updates the parts it measured.
        old = json.load(open(f"{out}/results.json"))
        old.update({k: v for k, v in res.items() if k not in ("params", "elapsed_s")})
        old["params"].update(res["params"])
        res = old
    with open(f"{out}/results.json", "w") as f:
        json.dump(res, f, indent=1, default=str)
    log(f"done in {res['elapsed_s']:.0f} s: {out}/results.json")


if __name__ == "__main__":
    main()
