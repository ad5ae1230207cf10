"""Truthful status: the public status listener, the admin incident and
maintenance API, and the status page in a real browser.

Each test starts build/llmsim and build/rampart with a status section whose
windows are shortened (seconds instead of minutes) so outages, recoveries,
automatic incidents and maintenance transitions happen within a test.

The status listener needs main.c to call status_create() and the proxy to
call status_observe(); until both are wired the tests that need them are
skipped.  Whether they are wired is measured, not assumed: at collection a
gateway is started with a status section and the status port is probed.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BUILD, Proc, binary, wait_port, distinct_ports

TOKEN = "status-test-token-0123456789"

ENUM_COMPONENT = {"operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance"}
ENUM_INCIDENT = {"investigating", "identified", "monitoring", "resolved", "postmortem"}
ENUM_MAINT = {"scheduled", "in_progress", "verifying", "completed"}
ENUM_IMPACT = {"none", "minor", "major", "critical"}
PAGE_KEYS = {"id", "name", "url", "time_zone", "updated_at"}
COMPONENT_KEYS = {"id", "name", "status", "created_at", "updated_at", "position", "description", "showcase",
                  "start_date", "group_id", "page_id", "group", "only_show_if_degraded"}
INCIDENT_KEYS = {"id", "name", "status", "impact", "created_at", "updated_at", "monitoring_at", "resolved_at",
                 "started_at", "shortlink", "page_id", "components", "incident_updates"}
UPDATE_KEYS = {"id", "incident_id", "status", "body", "created_at", "updated_at", "display_at",
               "affected_components"}
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")


def status_yaml(status_port, db, extra=""):
    return f"""status:
  listen: 127.0.0.1:{status_port}
  db: {db}
  page: {{name: Integration AI, url: "http://127.0.0.1:{status_port}"}}
  refresh: 1s
  live: {{window: 20s, min_requests: 3, recover_after: 10s, no_data_after: 5m}}
  objective: {{target: 99.5, latency: 2s}}
  incidents:
    resolve_after: 10s
    burn_rates: [{{factor: 2, long: 1m, short: 20s}}]
{extra}"""




class Gateway:
    """llmsim behind rampart with admin and status listeners."""

    def __init__(self, start, workdir, extra="", sim_port=None):
        self.start = start
        self.dir = workdir
        self.port, self.admin_port, self.status_port, port4 = distinct_ports(4)
        self.sim_port = sim_port or port4
        self.db = os.path.join(workdir, "status.db")
        token_file = os.path.join(workdir, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(token_file, 0o600)
        self.conf = os.path.join(workdir, "rampart.yaml")
        with open(self.conf, "w") as f:
            f.write(f"""listen: 127.0.0.1:{self.port}
upstreams:
  chat:
    servers: [127.0.0.1:{self.sim_port}]
admin:
  listen: 127.0.0.1:{self.admin_port}
  token_file: {token_file}
log: {{access: "off"}}
""" + status_yaml(self.status_port, self.db, extra))
        self.sim = None
        self.gw = None

    def start_sim(self):
        self.sim = self.start([binary("llmsim"), "--port", str(self.sim_port), "--seed", "3", "--token-ms", "2",
                               "--default-tokens", "4", "--slots", "64"], wait_for_port=self.sim_port)

    def start_gateway(self):
        self.gw = self.start([binary("rampart"), "-c", self.conf], wait_for_port=self.port)
        for port in (self.admin_port, self.status_port):
            try:
                wait_port(port, timeout=10)
            except TimeoutError:
                _, err = self.gw.output()
                raise RuntimeError(f"port {port} not listening; rampart said: {err.decode(errors='replace')[-800:]}")


def _probe_wired():
    """(True, "") when a gateway with a status section serves its status
    listener; otherwise (False, why)."""
    for name in ("rampart", "llmsim"):
        if not os.path.exists(os.path.join(BUILD, name)):
            return False, f"{BUILD}/{name} not built"
    d = tempfile.mkdtemp(prefix="rampart-status-probe-")
    gw = Gateway(lambda args, **kw: Proc(args, **kw), d)
    p = Proc([os.path.join(BUILD, "rampart"), "-c", gw.conf])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if p.p.poll() is not None:
                _, err = p.output()
                return False, "rampart refuses a status: section: " + err.decode(errors="replace").strip()[-300:]
            try:
                c = http.client.HTTPConnection("127.0.0.1", gw.status_port, timeout=1)
                c.request("GET", "/api/v2/status.json")
                if c.getresponse().status == 200:
                    return True, ""
            except OSError:
                time.sleep(0.1)
        return False, "status listener does not answer (status_create not called from main.c)"
    finally:
        p.stop()
        shutil.rmtree(d, ignore_errors=True)


WIRED, WHY = _probe_wired()
needs_wiring = pytest.mark.skipif(not WIRED, reason=f"status subsystem not wired into rampart yet: {WHY}")


def http_req(port, method, path, body=None, headers=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    h = {}
    if data is not None:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, out


def get_json(port, path):
    st, hdrs, body = http_req(port, "GET", path)
    assert st == 200, (path, st, body)
    assert hdrs["content-type"].startswith("application/json")
    return json.loads(body)


def admin(gw, method, path, body=None, token=TOKEN):
    h = {"Authorization": f"Bearer {token}"} if token else {}
    st, _, out = http_req(gw.admin_port, method, path, body, h)
    return st, json.loads(out) if out else None


def wait_for(pred, timeout, step=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class Traffic:
    """A few client threads sending small chat completions through rampart."""

    def __init__(self, port, threads=2):
        self.port = port
        self.stop = threading.Event()
        self.codes = {}
        self.lock = threading.Lock()
        self.ts = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.ts:
            t.start()

    def _run(self):
        body = json.dumps({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
        c = None
        while not self.stop.is_set():
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                c.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                with self.lock:
                    self.codes[r.status] = self.codes.get(r.status, 0) + 1
                if r.getheader("connection", "").lower() == "close":
                    c.close()
                    c = None
            except (OSError, http.client.HTTPException):
                c = None
                time.sleep(0.05)
            time.sleep(0.02)

    def close(self):
        self.stop.set()
        for t in self.ts:
            t.join(timeout=5)


def component(gw, name="chat"):
    for c in get_json(gw.status_port, "/api/v2/components.json")["components"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no component {name}")


def sim_config(gw, body):
    st, _, out = http_req(gw.sim_port, "POST", "/sim/config", body)
    assert st == 200, out


@pytest.fixture
def gateway(procs, tmp_path):
    gw = Gateway(procs, str(tmp_path))
    gw.start_sim()
    gw.start_gateway()
    return gw


# --------------------------------------------------------------------------


def check_time(v, nullable=False):
    if nullable and v is None:
        return
    assert isinstance(v, str) and TIME_RE.match(v), v


def check_incident(inc, maint=False):
    keys = INCIDENT_KEYS | ({"scheduled_for", "scheduled_until"} if maint else set())
    assert keys <= set(inc), keys - set(inc)
    assert {k for k in inc if not k.startswith("rampart_")} == keys
    assert inc["status"] in (ENUM_MAINT if maint else ENUM_INCIDENT)
    assert inc["impact"] in (ENUM_IMPACT | ({"maintenance"} if maint else set()))
    check_time(inc["created_at"])
    check_time(inc["monitoring_at"], True)
    check_time(inc["resolved_at"], True)
    for c in inc["components"]:
        assert {k for k in c if not k.startswith("rampart_")} == COMPONENT_KEYS
    for u in inc["incident_updates"]:
        assert set(u) == UPDATE_KEYS
        assert u["incident_id"] == inc["id"]
        check_time(u["display_at"])
        for a in u["affected_components"]:
            assert set(a) == {"code", "name", "old_status", "new_status"}
            assert a["old_status"] in ENUM_COMPONENT and a["new_status"] in ENUM_COMPONENT


@needs_wiring
def test_statuspage_api_shape(gateway):
    gw = gateway
    docs = {
        "/api/v2/summary.json": {"page", "components", "incidents", "scheduled_maintenances", "status"},
        "/api/v2/status.json": {"page", "status"},
        "/api/v2/components.json": {"page", "components"},
        "/api/v2/incidents.json": {"page", "incidents"},
        "/api/v2/incidents/unresolved.json": {"page", "incidents"},
        "/api/v2/scheduled-maintenances.json": {"page", "scheduled_maintenances"},
        "/api/v2/scheduled-maintenances/upcoming.json": {"page", "scheduled_maintenances"},
        "/api/v2/scheduled-maintenances/active.json": {"page", "scheduled_maintenances"},
    }
    for path, keys in docs.items():
        d = get_json(gw.status_port, path)
        assert set(d) == keys, path
        assert set(d["page"]) == PAGE_KEYS
        assert d["page"]["name"] == "Integration AI"
        check_time(d["page"]["updated_at"])
    s = get_json(gw.status_port, "/api/v2/summary.json")
    assert s["status"]["indicator"] in ENUM_IMPACT
    (c,) = s["components"]
    assert {k for k in c if not k.startswith("rampart_")} == COMPONENT_KEYS
    assert c["name"] == "chat" and c["status"] in ENUM_COMPONENT
    # Without traffic the component is "no data", not a claim of health.
    assert c["rampart_status"] == "no_data"
    st, _, html = http_req(gw.status_port, "GET", "/")
    assert st == 200 and b"No data" in html

    # Caching: ETag + max-age, 304 on a match, HEAD without a body.
    st, h, body = http_req(gw.status_port, "GET", "/api/v2/summary.json")
    assert h["etag"].startswith('"') and "max-age=1" in h["cache-control"]
    assert h.get("access-control-allow-origin") == "*"
    st, h2, body2 = http_req(gw.status_port, "GET", "/api/v2/summary.json", headers={"If-None-Match": h["etag"]})
    assert st == 304 and body2 == b""
    st, h3, body3 = http_req(gw.status_port, "HEAD", "/")
    assert st == 200 and body3 == b"" and h3["content-type"].startswith("text/html")
    # Read-only, and only the documented documents.
    assert http_req(gw.status_port, "POST", "/api/v2/summary.json", b"{}")[0] == 405
    assert http_req(gw.status_port, "GET", "/api/v2/secret.json")[0] == 404
    for path in ("/history.atom", "/history.rss"):
        st, h, body = http_req(gw.status_port, "GET", path)
        assert st == 200 and b"<?xml" in body


@needs_wiring
def test_outage_opens_and_recovery_resolves_incident(gateway):
    gw = gateway
    traffic = Traffic(gw.port)
    try:
        assert wait_for(lambda: component(gw)["status"] == "operational" and
                        component(gw)["rampart_status"] == "operational", 30)
        sim_config(gw, {"error_rate": 1.0})
        t0 = time.monotonic()
        assert wait_for(lambda: component(gw)["status"] in ("partial_outage", "major_outage"), 60), component(gw)
        shown = time.monotonic() - t0
        assert shown < 60, f"outage took {shown:.1f}s to show"
        assert wait_for(lambda: component(gw)["status"] == "major_outage", 60)
        s = get_json(gw.status_port, "/api/v2/status.json")
        assert s["status"]["indicator"] in ("major", "critical")

        # The burn-rate rule (2x over 1 min and 20 s) opens an incident.
        def open_incident():
            incs = get_json(gw.status_port, "/api/v2/incidents/unresolved.json")["incidents"]
            return incs[0] if incs else None
        inc = wait_for(open_incident, 60)
        assert inc, "no automatic incident"
        check_incident(inc)
        assert inc["status"] == "investigating"
        assert "chat" in inc["name"]
        assert [c["name"] for c in inc["components"]] == ["chat"]

        # Recovery: operational after the quiet period, incident resolved
        # after sustained recovery.
        sim_config(gw, {"error_rate": 0.0})
        t_fix = time.monotonic()
        assert wait_for(lambda: component(gw)["status"] == "operational", 90)
        t_operational = time.monotonic()
        # The incident follows the service: monitoring, with the figures,
        # once the component is operational again.
        def monitoring():
            incs = get_json(gw.status_port, "/api/v2/incidents/unresolved.json")["incidents"]
            return incs and incs[0]["status"] == "monitoring" and incs[0]
        mon = wait_for(monitoring, 30)
        assert mon, get_json(gw.status_port, "/api/v2/incidents/unresolved.json")
        assert mon["id"] == inc["id"] and mon["monitoring_at"]
        assert "answered well" in mon["incident_updates"][0]["body"]
        t_monitoring = time.monotonic()
        assert wait_for(lambda: not get_json(gw.status_port, "/api/v2/incidents/unresolved.json")["incidents"], 120)
        # Figures for docs/status.md (pytest -s shows them; not asserted).
        print(f"\nrecovery: operational {t_operational - t_fix:.1f} s after the fix, monitoring "
              f"{t_monitoring - t_operational:.1f} s later, resolved {time.monotonic() - t_monitoring:.1f} s after that")
        incs = get_json(gw.status_port, "/api/v2/incidents.json")["incidents"]
        done = [i for i in incs if i["id"] == inc["id"]][0]
        assert done["status"] == "resolved" and done["resolved_at"]
        assert done["incident_updates"][0]["status"] == "resolved"
        assert [u["status"] for u in done["incident_updates"]] == ["resolved", "monitoring", "investigating"]
    finally:
        traffic.close()


@needs_wiring
def test_admin_auth_and_validation(gateway):
    gw = gateway
    body = {"name": "Elevated latency", "body": "We are investigating.", "components": {"chat": "degraded_performance"}}
    assert admin(gw, "POST", "/api/v1/incidents", body, token=None)[0] == 401
    assert admin(gw, "POST", "/api/v1/incidents", body, token="wrong")[0] == 401
    st, out = admin(gw, "POST", "/api/v1/incidents", {"name": "x"})
    assert st == 400 and out["error"]["param"] == "body" and out["error"]["code"] == "missing_field"
    st, out = admin(gw, "POST", "/api/v1/incidents", {**body, "components": {"nope": "major_outage"}})
    assert st == 400 and out["error"]["param"] == "components.nope" and "chat" in out["error"]["message"]
    st, out = admin(gw, "POST", "/api/v1/incidents", {**body, "status": "sideways"})
    assert st == 400 and out["error"]["param"] == "status" and "investigating" in out["error"]["message"]
    st, _, raw = http_req(gw.admin_port, "POST", "/api/v1/incidents", b"{not json",
                          {"Authorization": f"Bearer {TOKEN}"})
    assert st == 400 and json.loads(raw)["error"]["code"] == "invalid_json"

    st, inc = admin(gw, "POST", "/api/v1/incidents", body)
    assert st == 201, inc
    check_incident(inc)
    # Visible at once on the public side, and the component is shown worse.
    unresolved = get_json(gw.status_port, "/api/v2/incidents/unresolved.json")["incidents"]
    assert [i["id"] for i in unresolved] == [inc["id"]]
    assert component(gw)["status"] == "degraded_performance"
    st, up = admin(gw, "POST", f"/api/v1/incidents/{inc['id']}/updates",
                   {"status": "monitoring", "body": "A fix is out."})
    assert st == 201 and up["status"] == "monitoring" and up["monitoring_at"]
    st, up = admin(gw, "PATCH", f"/api/v1/incidents/{inc['id']}", {"name": "Elevated latency on chat"})
    assert st == 200 and up["name"] == "Elevated latency on chat"
    st, up = admin(gw, "POST", f"/api/v1/incidents/{inc['id']}/updates", {"status": "resolved", "body": "Done."})
    assert st == 201 and up["resolved_at"]
    # Reads are open on the admin listener.
    st, lst = admin(gw, "GET", "/api/v1/incidents", token=None)
    assert st == 200 and lst["incidents"][0]["name"] == "Elevated latency on chat"
    st, _, html = http_req(gw.status_port, "GET", "/")
    assert b"Elevated latency on chat" in html


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"


@needs_wiring
def test_maintenance_runs_on_time(gateway):
    gw = gateway
    start = int(time.time()) + 4
    st, m = admin(gw, "POST", "/api/v1/maintenances",
                  {"name": "Model upgrade", "body": "Chat may be unavailable.", "scheduled_for": iso(start),
                   "scheduled_until": iso(start + 5), "components": ["chat"]})
    assert st == 201, m
    check_incident(m, maint=True)
    assert m["status"] == "scheduled" and m["impact"] == "maintenance"
    # Announced before it starts.
    up = get_json(gw.status_port, "/api/v2/scheduled-maintenances/upcoming.json")["scheduled_maintenances"]
    assert [x["id"] for x in up] == [m["id"]]
    assert b"Model upgrade" in http_req(gw.status_port, "GET", "/")[2]

    def status_of():
        for x in get_json(gw.status_port, "/api/v2/scheduled-maintenances.json")["scheduled_maintenances"]:
            if x["id"] == m["id"]:
                return x["status"]
    assert wait_for(lambda: status_of() == "in_progress", start + 3 - time.time())
    assert time.time() >= start - 0.5
    assert component(gw)["status"] == "under_maintenance"
    active = get_json(gw.status_port, "/api/v2/scheduled-maintenances/active.json")["scheduled_maintenances"]
    assert [x["id"] for x in active] == [m["id"]]
    assert wait_for(lambda: status_of() == "completed", start + 5 + 3 - time.time())
    assert time.time() >= start + 5 - 0.5
    assert component(gw)["status"] != "under_maintenance"


@needs_wiring
def test_restart_keeps_history_and_incidents(procs, tmp_path):
    gw = Gateway(procs, str(tmp_path))
    gw.start_sim()
    gw.start_gateway()
    traffic = Traffic(gw.port)
    time.sleep(3)
    traffic.close()
    st, inc = admin(gw, "POST", "/api/v1/incidents", {"name": "Survives kill -9", "body": "Acknowledged."})
    assert st == 201
    # kill -9 right after the acknowledgement: the incident must survive.
    gw.gw.p.send_signal(signal.SIGKILL)
    gw.gw.p.wait()
    gw.start_gateway()
    names = [i["name"] for i in get_json(gw.status_port, "/api/v2/incidents.json")["incidents"]]
    assert "Survives kill -9" in names
    # A graceful stop flushes the current minute: history survives too.
    traffic = Traffic(gw.port)
    time.sleep(3)
    traffic.close()
    gw.gw.stop()
    gw.start_gateway()
    c = component(gw)
    assert c["rampart_uptime_90d"] is not None and c["rampart_uptime_90d"] > 99
    assert "Survives kill -9" in [i["name"] for i in get_json(gw.status_port, "/api/v2/incidents.json")["incidents"]]


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def chromium(*args, timeout=60):
    profile = tempfile.mkdtemp(prefix="rampart-chromium-")
    try:
        return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", *args],
                              capture_output=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@needs_wiring
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (bash scripts/deps.sh browser)")
def test_status_page_in_chromium(gateway):
    gw = gateway
    traffic = Traffic(gw.port)
    try:
        assert wait_for(lambda: component(gw)["rampart_status"] == "operational", 30)
        st, inc = admin(gw, "POST", "/api/v1/incidents",
                        {"name": "Slow first tokens <investigating>", "body": "We see slower answers & are on it.",
                         "components": {"chat": "degraded_performance"}})
        assert st == 201
        start = int(time.time()) + 3600
        st, _ = admin(gw, "POST", "/api/v1/maintenances",
                      {"name": "Planned GPU maintenance", "scheduled_for": iso(start),
                       "scheduled_until": iso(start + 1800), "components": ["chat"]})
        assert st == 201
        time.sleep(1.5)  # let the snapshot pick up a minute of traffic
    finally:
        traffic.close()
    url = f"http://127.0.0.1:{gw.status_port}/"
    r = chromium("--dump-dom", url)
    assert r.returncode == 0, r.stderr[-500:]
    dom = r.stdout.decode()
    assert '<html lang="en">' in dom
    assert "Integration AI status" in dom
    assert "Minor Service Outage" in dom  # an open incident with minor impact
    assert "Slow first tokens &lt;investigating&gt;" in dom
    assert "Planned GPU maintenance" in dom
    assert dom.count('class="s-') >= 90  # the 90 daily bars
    assert "<script" not in dom
    shot = os.path.join(BUILD, "statuspage.png")
    r = chromium(f"--screenshot={shot}", "--window-size=1200,1600", url)
    assert r.returncode == 0, r.stderr[-500:]
    assert os.path.getsize(shot) > 10000
    phone = os.path.join(BUILD, "statuspage-phone.png")
    r = chromium(f"--screenshot={phone}", "--window-size=390,1400", url)
    assert r.returncode == 0 and os.path.getsize(phone) > 5000
