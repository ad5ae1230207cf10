"""Release verdicts survive a restart (docs/releases.md, "Verdicts across
restarts").

rampart in front of two llmsim servers, the second one in the canary group
and running a bad release (llmsim's bad_release: 30% errors, against 1%
noise on both).  The canary is rolled back by analysis; rampart is then
killed (SIGKILL: the verdict must already be in the status store) and
started again with the same config and the same store.  The canary must
come back rolled back at weight 0, with the original reason and time, and
receive no request.  A new release (the canary group changed) starts fresh,
and a promoted release stays promoted.

Intervals are short (500 ms looks over a 3 s window) so a rollback takes a
few seconds; every wait is bounded.
"""
import http.client
import json
import signal
import socket
import threading
import time

import pytest

from conftest import binary, metric_sum, parse_metrics, wait_port, distinct_ports

TOKEN = "persist-test-token-8d41c6"
FAST_SIM = ["--slots", "64", "--token-ms", "2", "--prefill-base-ms", "2", "--prefill-per-token-us", "0",
            "--batch-slowdown", "0"]
# Same plan as the canary tests in test_release.py: steps of 3 s, a look
# every 500 ms over a 3 s window, 50 samples per group to judge.
CANARY = ("    canary: {steps: [20, 50, 100], step_duration: 3s, interval: 500ms, window: 3s,\n"
          "             min_samples: 50, error_margin: 2%, latency_ratio: 1.2%s}\n")




def request(port, method, path, body=None, headers=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = dict(headers or {})
        if body is not None:
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class Sim:
    def __init__(self, procs, seed):
        self.port = distinct_ports(1)[0]
        self.proc = procs([binary("llmsim"), "--port", str(self.port), "--seed", str(seed), *FAST_SIM],
                          wait_for_port=self.port)

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def config(self, **fields):
        st, body = request(self.port, "POST", "/sim/config", fields)
        assert st == 200, body

    def received(self):
        return json.loads(request(self.port, "GET", "/sim/stats")[1])["requests_received"]


class Gateway:
    """rampart with upstream `chat` (stable + canary servers), an admin
    listener and a status store; start() may be called again after stop()
    with the same ports, config and store."""

    def __init__(self, procs, tmp_path, stable, canaries, label=None):
        self.procs, self.tmp = procs, tmp_path
        self.port, self.admin_port, self.status_port = distinct_ports(3)
        self.db = tmp_path / "status.db"
        self.token = tmp_path / "admin.token"
        self.token.write_text(TOKEN + "\n")
        self.token.chmod(0o600)
        self.conf = tmp_path / "rampart.yaml"
        self.write(stable, canaries, label)
        self.p = None

    def write(self, stable, canaries, label=None):
        servers = f"      - {stable.addr}\n" + "".join(
            f"      - {{address: {c.addr}, group: canary}}\n" for c in canaries)
        extra = f", release: \"{label}\"" if label else ""
        self.conf.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            "upstreams:\n  chat:\n    servers:\n" + servers +
            # Judged on exactly what the canary server does: no retries,
            # no outlier ejection.
            "    retry: {max_per_request: 0}\n    outlier: {enabled: false}\n" +
            CANARY.replace("%s", extra) +
            f"admin:\n  listen: 127.0.0.1:{self.admin_port}\n  token_file: {self.token}\n"
            "log:\n  access: off\n"
            "overload:\n  limiter: {max_concurrency: 256}\n  queue: {max_length: 4096, max_wait: 30s}\n"
            f"status:\n  listen: 127.0.0.1:{self.status_port}\n  db: {self.db}\n  refresh: 1s\n")

    def start(self):
        self.p = self.procs([binary("rampart"), "-c", str(self.conf)], wait_for_port=self.port)
        wait_port(self.admin_port)

    def stop(self, sig=None):
        self.p.stop(sig)

    def canary(self):
        st, body = request(self.admin_port, "GET", "/api/v1/canary/chat")
        assert st == 200, body
        return json.loads(body)

    def action(self, **a):
        st, body = request(self.admin_port, "POST", "/api/v1/canary/chat", a, {"Authorization": f"Bearer {TOKEN}"})
        assert st == 200, body
        return json.loads(body)

    def metrics(self):
        return parse_metrics(request(self.admin_port, "GET", "/metrics")[1].decode())


def chat(port, tenant):
    body = {"model": "llmsim-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    try:
        return request(port, "POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {tenant}"})[0]
    except OSError:
        return 0


class Load:
    """Closed-loop load from `workers` threads over 200 tenants."""

    def __init__(self, port, workers=8):
        self.port, self.stop_ev, self.n = port, threading.Event(), 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(workers)]
        for t in self.threads:
            t.start()

    def _run(self, w):
        i = 0
        while not self.stop_ev.is_set():
            chat(self.port, f"tenant-{(w * 7919 + i) % 200}")
            i += 1
            with self.lock:
                self.n += 1

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(15)


def wait_state(gw, states, timeout):
    deadline = time.monotonic() + timeout
    c = gw.canary()
    while c["state"] not in states and time.monotonic() < deadline:
        time.sleep(0.2)
        c = gw.canary()
    return c


def assert_no_canary_traffic(gw, canary, requests=300):
    before = canary.received()
    statuses = [chat(gw.port, f"after-restart-{i}") for i in range(requests)]
    assert statuses.count(200) >= requests * 0.9, statuses
    assert canary.received() == before, "the rolled-back canary received requests after the restart"


@pytest.fixture
def sims(procs):
    stable, bad = Sim(procs, 41), Sim(procs, 1041)
    stable.config(error_rate=0.01, version="v1")
    bad.config(error_rate=0.01, version="v2", bad_release={"error_rate": 0.3})
    return stable, bad


def test_rolled_back_release_stays_rolled_back_after_a_restart(procs, tmp_path, sims):
    stable, bad = sims
    gw = Gateway(procs, tmp_path, stable, [bad])
    gw.start()
    first = gw.canary()
    assert first["state"] == "running" and first["weight"] == 20
    assert first["release"].startswith("servers-"), first["release"]
    load = Load(gw.port)
    try:
        c = wait_state(gw, ("rolled_back", "promoted"), timeout=25)
    finally:
        load.stop()
    assert c["state"] == "rolled_back", (c["state"], c["weight"], c.get("analysis"))
    assert c["weight"] == 0 and "error ratio" in c["reason"], c
    reason, since = c["reason"], c["state_since"]
    assert since and not c["restored"]

    # Killed without a chance to flush anything: the verdict was stored
    # when it was taken.
    gw.stop(signal.SIGKILL)
    gw.start()
    c = gw.canary()
    assert c["state"] == "rolled_back", c
    assert c["weight"] == 0
    assert c["restored"] is True
    assert c["reason"] == reason
    assert c["state_since"] == since
    assert c["release"] == first["release"]
    assert [e["action"] for e in c["events"]] == ["start", "restore"], c["events"]
    ms = gw.metrics()
    assert metric_sum(ms, "rampart_canary_weight_ratio", upstream="chat") == 0
    assert metric_sum(ms, "rampart_canary_state", upstream="chat", state="rolled_back") == 1
    # Restoring is not a new rollback: no second incident, no new count.
    assert metric_sum(ms, "rampart_canary_rollbacks_total", upstream="chat") == 0
    assert_no_canary_traffic(gw, bad)
    time.sleep(2)  # several looks: analysis must not revive it
    assert gw.canary()["state"] == "rolled_back"
    st, body = request(gw.status_port, "GET", "/api/v2/incidents.json")
    names = [i["name"] for i in json.loads(body)["incidents"]]
    assert names.count("New release of chat rolled back") == 1, names

    # A graceful restart keeps it just the same.
    gw.stop()
    gw.start()
    c = gw.canary()
    assert (c["state"], c["weight"], c["reason"], c["state_since"]) == ("rolled_back", 0, reason, since)
    assert_no_canary_traffic(gw, bad, requests=100)


def test_new_release_starts_fresh_and_promoted_stays_promoted(procs, tmp_path, sims):
    stable, bad = sims
    gw = Gateway(procs, tmp_path, stable, [bad])
    gw.start()
    gw.action(action="rollback", reason="known bad build")
    old_release = gw.canary()["release"]
    gw.stop()

    # The fixed release is deployed on another server: a new canary group,
    # a new release, judged from the first step.
    fixed = Sim(procs, 2041)
    fixed.config(error_rate=0.01, version="v3")
    gw.write(stable, [fixed])
    gw.start()
    c = gw.canary()
    assert c["state"] == "running" and c["weight"] == 20, c
    assert c["release"] != old_release and not c["restored"]
    before = fixed.received()
    for i in range(200):
        chat(gw.port, f"fresh-{i}")
    assert fixed.received() > before, "the new release got no traffic"

    # Promoted by the operator: stays at 100% after a restart.
    gw.action(action="set_weight", weight=100)
    gw.stop()
    gw.start()
    c = gw.canary()
    assert (c["state"], c["weight"], c["restored"]) == ("promoted", 100, True), c
    stable_before = stable.received()
    for i in range(100):
        chat(gw.port, f"promoted-{i}")
    assert stable.received() == stable_before, "a promoted release sent traffic to the old version"

    # Going back to the known-bad group finds it rolled back still.
    gw.stop()
    gw.write(stable, [bad])
    gw.start()
    c = gw.canary()
    assert (c["state"], c["weight"], c["release"]) == ("rolled_back", 0, old_release), c
    assert "known bad build" in c["reason"]


def test_a_release_label_names_the_release(procs, tmp_path, sims):
    stable, bad = sims
    gw = Gateway(procs, tmp_path, stable, [bad], label="v2.0.0")
    gw.start()
    assert gw.canary()["release"] == "v2.0.0"
    gw.action(action="rollback", reason="v2.0.0 corrupts output")
    gw.stop()
    # Same servers, a new label (a new build deployed in place): fresh.
    gw.write(stable, [bad], label="v2.0.1")
    gw.start()
    c = gw.canary()
    assert (c["state"], c["release"]) == ("running", "v2.0.1"), c
    gw.stop()
    gw.write(stable, [bad], label="v2.0.0")
    gw.start()
    c = gw.canary()
    assert (c["state"], c["weight"], c["release"]) == ("rolled_back", 0, "v2.0.0"), c
