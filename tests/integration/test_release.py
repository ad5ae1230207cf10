"""Safe releases end to end: rampart in front of several llmsim servers.

Each test starts its own llmsim processes and rampart on free loopback
ports, injects a fault through llmsim's run-time configuration
(POST /sim/config: health_fail, error_rate, bad_release) and checks one
promise of docs/releases.md from the outside, through llmsim's own counters
(/sim/stats), rampart's metrics and the canary admin API:

- a server failing its health checks is out within interval x fall and
  comes back with slow start;
- an outlier is ejected, and never every server at once;
- retries recover connect failures, but stop at the budget in an overload;
- a bad canary is rolled back automatically, a healthy one with the same
  noise is promoted;
- a stream that broke mid-response is never retried;
- the admin API steers a canary, and refuses writes without the token.

Also covered: a streaming canary that only decodes slower (time per
output token), slow start at low concurrency, a retry with nowhere to go
(not counted), and round robin over an even number of servers.

Intervals in the configurations are short (100 ms - 1 s) so the whole file
runs in well under two minutes; bounds are generous so a loaded machine
does not make the tests flaky.
"""
import json
import random
import re
import signal
import socket
import threading
import time

import pytest

from conftest import binary, free_port, wait_port, parse_metrics, wait_for, metric_sum as metric

ADMIN_TOKEN = "release-test-token-3f9c2a"

# A fast model: a request of a few tokens takes ~10 ms.
FAST_SIM = ["--slots", "64", "--token-ms", "2", "--prefill-base-ms", "2", "--prefill-per-token-us", "0",
            "--batch-slowdown", "0"]


# --------------------------------------------------------------------------
# processes


class Sim:
    def __init__(self, proc, port):
        self.proc, self.port = proc, port

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def stats(self):
        return json.loads(http(self.port, "GET", "/sim/stats")[2])

    def served(self):
        return self.stats()["requests_served"]

    def received(self):
        return self.stats()["requests_received"]

    def config(self, **fields):
        status, _, body = http(self.port, "POST", "/sim/config", json.dumps(fields).encode())
        assert status == 200, body
        return json.loads(body)


def start_sim(procs, seed=3, args=FAST_SIM):
    port = free_port()
    p = procs([binary("llmsim"), "--port", str(port), "--seed", str(seed), *args], wait_for_port=port)
    return Sim(p, port)


def dead_port():
    """A loopback port nothing listens on (connect is refused)."""
    return free_port()


def start_gateway(procs, tmp_path, upstream_yaml, token=True):
    """rampart with one upstream `chat` (its body given as YAML, indented
    by 4 spaces) and an admin listener with a token file."""
    port, aport = free_port(), free_port()
    text = f"listen: 127.0.0.1:{port}\nupstreams:\n  chat:\n{upstream_yaml}"
    text += f"admin:\n  listen: 127.0.0.1:{aport}\n"
    if token:
        tf = tmp_path / "admin.token"
        tf.write_text(ADMIN_TOKEN + "\n")
        tf.chmod(0o600)
        text += f"  token_file: {tf}\n"
    # A static, generous concurrency limit: these tests are about release
    # safety, not about admission control shaping the traffic.
    text += ("log:\n  access: off\n"
             "overload:\n  limiter: {max_concurrency: 256}\n  queue: {max_length: 4096, max_wait: 30s}\n")
    cfg = tmp_path / "rampart.yaml"
    cfg.write_text(text)
    p = procs([binary("rampart"), "-c", str(cfg)], wait_for_port=port)
    wait_port(aport)
    p.port, p.admin_port = port, aport
    return p


def servers_yaml(*entries):
    """entries: "host:port" or (address, group)."""
    out = "    servers:\n"
    for e in entries:
        if isinstance(e, tuple):
            out += f"      - {{address: {e[0]}, group: {e[1]}}}\n"
        else:
            out += f"      - {e}\n"
    return out


# --------------------------------------------------------------------------
# HTTP over raw sockets


def read_response(sock):
    """(status, headers, body) of one response; a chunked body is decoded.
    Raises EOFError when the connection ends before the response does."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            raise EOFError(buf)
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()

    def more():
        d = sock.recv(65536)
        if not d:
            raise EOFError(rest)
        return d

    if "content-length" in hdrs:
        n = int(hdrs["content-length"])
        while len(rest) < n:
            rest += more()
        return status, hdrs, rest[:n]
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += more()
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += more()
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                return status, hdrs, body
    body = rest
    while True:
        d = sock.recv(65536)
        if not d:
            return status, hdrs, body
        body += d


def http(port, method, path, body=b"", headers=(), timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        h = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
        for k, v in headers:
            h += f"{k}: {v}\r\n"
        s.sendall(h.encode() + b"\r\n" + body)
        return read_response(s)
    finally:
        s.close()


def chat_body(max_tokens=2, stream=False):
    b = {"model": "llmsim-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens,
         "stream": stream}
    return json.dumps(b).encode()


def chat(port, tenant="t0", max_tokens=2, stream=False, timeout=10):
    """One chat completion through rampart: the status, or 0 when the
    connection failed or the response was cut."""
    try:
        status, _, _ = http(port, "POST", "/v1/chat/completions", chat_body(max_tokens, stream),
                            (("Authorization", f"Bearer {tenant}"), ("Content-Type", "application/json")),
                            timeout=timeout)
        return status
    except (OSError, EOFError):
        return 0


def metrics(admin_port):
    """{(name, frozenset(labels)): value} from /metrics."""
    return parse_metrics(http(admin_port, "GET", "/metrics")[2].decode())




def canary_state(gw):
    status, _, body = http(gw.admin_port, "GET", "/api/v1/canary/chat")
    assert status == 200, body
    return json.loads(body)


def canary_action(gw, token=ADMIN_TOKEN, **action):
    hdrs = [("Content-Type", "application/json")]
    if token is not None:
        hdrs.append(("Authorization", f"Bearer {token}"))
    status, _, body = http(gw.admin_port, "POST", "/api/v1/canary/chat", json.dumps(action).encode(), hdrs)
    return status, json.loads(body) if body.strip() else None




class Load:
    """Closed-loop background load: `workers` threads, each sending one
    chat completion after the other (optionally pausing `gap` seconds),
    for tenants drawn at random from `tenants`.  Counts statuses."""

    def __init__(self, port, workers=8, tenants=200, gap=0.0, max_tokens=2, stream=False, seed=1):
        self.port, self.gap, self.max_tokens, self.stream = port, gap, max_tokens, stream
        self.tenants = [f"tenant-{seed}-{i}" for i in range(tenants)]
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.statuses = {}
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.stop_ev.is_set():
            with self.lock:
                tenant = self.rng.choice(self.tenants)
            st = chat(self.port, tenant, self.max_tokens, self.stream)
            with self.lock:
                self.statuses[st] = self.statuses.get(st, 0) + 1
            if self.gap:
                time.sleep(self.gap)

    def counts(self):
        with self.lock:
            return dict(self.statuses)

    def total(self):
        return sum(self.counts().values())

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(15)
        return self.counts()


@pytest.fixture
def loads():
    started = []

    def start(*a, **kw):
        ld = Load(*a, **kw)
        started.append(ld)
        return ld

    yield start
    for ld in started:
        ld.stop()


# --------------------------------------------------------------------------
# health checks


def test_failing_health_checks_take_a_server_out_and_slow_start_brings_it_back(procs, tmp_path, loads):
    sims = [start_sim(procs, seed=s) for s in (1, 2, 3)]
    interval, fall, rise, slow_start = 0.2, 2, 2, 4.0
    gw = start_gateway(procs, tmp_path, servers_yaml(*(s.addr for s in sims)) +
                       f"    health_check: {{path: /health, interval: 200ms, timeout: 100ms, rise: {rise}, "
                       f"fall: {fall}, slow_start: {slow_start:g}s}}\n"
                       "    outlier: {enabled: false}\n")
    bad = sims[0]
    name = bad.addr
    # Enough concurrency that every server has requests in flight: the
    # balancer weighs in-flight counts by the slow-start factor, so the
    # ramp shows in the traffic share only under concurrent load.
    load = loads(gw.port, workers=12, max_tokens=8)
    assert wait_for(lambda: bad.served() > 20), "the server never got traffic"

    bad.config(health_fail=True)
    t_fail = time.monotonic()
    # Out within interval x fall (+ one interval for the probe phase, plus
    # slack for a loaded machine).
    assert wait_for(lambda: metric(metrics(gw.admin_port), "rampart_health_up", server=name) == 0,
                    timeout=interval * fall + 2.0), "server not marked down"
    took = time.monotonic() - t_fail
    assert took <= interval * (fall + 1) + 1.5, f"marked down after {took:.2f}s"
    time.sleep(0.3)  # requests dispatched just before the transition finish
    received_down = bad.received()
    others_before = sum(s.served() for s in sims[1:])
    time.sleep(1.5)
    assert bad.received() == received_down, "a down server still received requests"
    assert sum(s.served() for s in sims[1:]) > others_before + 50, "the other servers stopped serving"
    ms = metrics(gw.admin_port)
    assert metric(ms, "rampart_health_down_total", server=name) == 1
    assert metric(ms, "rampart_health_checks_total", server=name, result="status") >= fall
    assert metric(ms, "rampart_health_weight_ratio", server=name) == 0

    # Recovery: up after `rise` passes, then the weight ramps 10% -> 100%
    # over slow_start, and so does the server's share of the traffic.
    bad.config(health_fail=False)
    assert wait_for(lambda: metric(metrics(gw.admin_port), "rampart_health_up", server=name) == 1,
                    timeout=interval * rise + 2.0), "server never came back"
    weights, shares = [], []
    prev_bad, prev_all = bad.served(), sum(s.served() for s in sims)
    for _ in range(5):
        time.sleep(1.0)
        weights.append(metric(metrics(gw.admin_port), "rampart_health_weight_ratio", server=name))
        now_bad, now_all = bad.served(), sum(s.served() for s in sims)
        shares.append((now_bad - prev_bad) / max(1, now_all - prev_all))
        prev_bad, prev_all = now_bad, now_all
    load.stop()
    # The weight metric ramps monotonically from the floor and reaches 1.
    assert 0.1 <= weights[0] < 0.6, weights
    assert all(a <= b for a, b in zip(weights, weights[1:])), weights
    assert weights[-1] == 1.0, weights
    # The share of the first second is well below the fair third, the
    # last one close to it.
    assert shares[0] < 0.2, shares
    assert shares[-1] > 0.22, shares
    assert shares[0] < shares[-1] - 0.1, shares



def test_slow_start_ramps_the_share_at_low_concurrency(procs, tmp_path, loads):
    sims = [start_sim(procs, seed=s) for s in (1, 2, 3)]
    gw = start_gateway(procs, tmp_path, servers_yaml(*(s.addr for s in sims)) +
                       "    health_check: {path: /health, interval: 200ms, timeout: 100ms, rise: 2, fall: 2, "
                       "slow_start: 4s}\n    outlier: {enabled: false}\n")
    back = sims[0]
    back.config(health_fail=True)
    assert wait_for(lambda: metric(metrics(gw.admin_port), "rampart_health_up", server=back.addr) == 0, timeout=3)
    loads(gw.port, workers=1, max_tokens=8)  # one request at a time
    back.config(health_fail=False)
    assert wait_for(lambda: metric(metrics(gw.admin_port), "rampart_health_up", server=back.addr) == 1, timeout=3)
    b0, a0 = back.served(), sum(s.served() for s in sims)
    time.sleep(2.5)  # weight ~0.1 -> ~0.65: a fair share would be 5-25%
    assert metric(metrics(gw.admin_port), "rampart_health_weight_ratio", server=back.addr) < 1.0
    share = (back.served() - b0) / max(1, sum(s.served() for s in sims) - a0)
    assert share >= 0.03, f"share during the ramp {share:.3f}"


# --------------------------------------------------------------------------
# outlier ejection


def ejected_set(gw, sims):
    ms = metrics(gw.admin_port)
    return {i for i, s in enumerate(sims) if metric(ms, "rampart_outlier_ejected", server=s.addr) == 1}


def test_outlier_is_ejected_and_never_all_servers(procs, tmp_path, loads):
    sims = [start_sim(procs, seed=s) for s in (4, 5, 6)]
    gw = start_gateway(procs, tmp_path, servers_yaml(*(s.addr for s in sims)) +
                       "    outlier: {consecutive_failures: 5, interval: 500ms, window: 5s, min_requests: 20,\n"
                       "              base_ejection: 20s, max_ejection_percent: 50}\n"
                       "    retry: {max_per_request: 0}\n")
    load = loads(gw.port, workers=6)
    assert wait_for(lambda: all(s.served() > 10 for s in sims))

    # One server fails everything: it is ejected, the others are not.
    sims[0].config(error_rate=1.0)
    assert wait_for(lambda: ejected_set(gw, sims) == {0}, timeout=5), ejected_set(gw, sims)
    ms = metrics(gw.admin_port)
    assert metric(ms, "rampart_outlier_ejections_total", server=sims[0].addr) == 1
    time.sleep(0.2)
    received = sims[0].received()
    before = load.counts()
    time.sleep(1.5)
    after = load.counts()
    assert sims[0].received() == received, "an ejected server still received requests"
    new = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert new.get(200, 0) > 50 and sum(v for k, v in new.items() if k != 200) == 0, new

    # Every server fails everything: the cap (50% of 3 = 1 server) keeps
    # the other two in, and requests are still attempted on them.
    for s in sims:
        s.config(error_rate=1.0)
    rec = [s.received() for s in sims]
    seen = set()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        e = ejected_set(gw, sims)
        assert len(e) <= 1, f"{len(e)} servers ejected at once"
        seen |= e
        time.sleep(0.05)
    assert seen == {0}
    ms = metrics(gw.admin_port)
    assert metric(ms, "rampart_outlier_ejections_refused_total", upstream="chat") > 0
    assert sims[1].received() > rec[1] + 20 and sims[2].received() > rec[2] + 20
    counts = load.stop()
    assert counts.get(500, 0) > 40
    assert counts.get(503, 0) == 0, counts  # never "no server available"


def test_outlier_by_failure_ratio_against_peers(procs, tmp_path, loads):
    sims = [start_sim(procs, seed=s) for s in (7, 8, 9)]
    gw = start_gateway(procs, tmp_path, servers_yaml(*(s.addr for s in sims)) +
                       "    outlier: {consecutive_failures: 0, interval: 500ms, window: 3s, min_requests: 30,\n"
                       "              base_ejection: 20s}\n"
                       "    retry: {max_per_request: 0}\n")
    for s in sims:
        s.config(error_rate=0.02)  # background noise on every server
    sims[1].config(error_rate=0.4)
    loads(gw.port, workers=6)
    assert wait_for(lambda: ejected_set(gw, sims) == {1}, timeout=10), ejected_set(gw, sims)
    time.sleep(1.0)  # several more analyses: the noisy peers stay in
    assert ejected_set(gw, sims) == {1}
    _, err = gw.output()
    assert b"failure ratio above peers" in err


# --------------------------------------------------------------------------
# retries and the retry budget


class Answer503:
    """A threaded upstream that answers every request 503 with an empty
    body (a server declining work), counting requests."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.requests = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = conn.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                n = int(m.group(1)) if m else 0
                while len(buf) < n:
                    d = conn.recv(65536)
                    if not d:
                        return
                    buf += d
                buf = buf[n:]
                with self.lock:
                    self.requests += 1
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def test_retries_recover_connect_failures(procs, tmp_path):
    sim = start_sim(procs, seed=10)
    dead = f"127.0.0.1:{dead_port()}"
    # Outlier ejection off, so the dead server keeps being picked and
    # every one of its picks must be recovered by a retry.
    gw = start_gateway(procs, tmp_path, servers_yaml(sim.addr, dead) +
                       "    outlier: {enabled: false}\n"
                       "    retry: {budget: 100%, max_per_request: 2}\n")
    statuses = [chat(gw.port, f"t{i}") for i in range(80)]
    assert statuses == [200] * 80
    ms = metrics(gw.admin_port)
    retries = metric(ms, "rampart_retry_retries_total", upstream="chat")
    refused = metric(ms, "rampart_upstream_connect_errors_total", server=dead)
    assert metric(ms, "rampart_retry_requests_total", upstream="chat") == 80
    assert retries >= 15, retries  # about half the picks hit the dead port
    assert retries == refused, (retries, refused)
    assert sim.served() == 80


def test_retries_recover_connect_failures_with_default_budget(procs, tmp_path):
    """With the defaults (10% budget, floor 1/s, outlier ejection on) the
    dead server is ejected after a few failures, and the few retries
    needed before that fit in the floor."""
    sim = start_sim(procs, seed=11)
    dead = f"127.0.0.1:{dead_port()}"
    gw = start_gateway(procs, tmp_path, servers_yaml(sim.addr, dead))
    statuses = [chat(gw.port, f"t{i}") for i in range(60)]
    assert statuses == [200] * 60
    ms = metrics(gw.admin_port)
    assert 1 <= metric(ms, "rampart_retry_retries_total", upstream="chat") <= 10
    assert metric(ms, "rampart_outlier_ejected", server=dead) == 1



def test_a_retry_with_nowhere_to_go_is_not_counted(procs, tmp_path):
    dead = f"127.0.0.1:{dead_port()}"
    gw = start_gateway(procs, tmp_path, servers_yaml(dead) + "    outlier: {enabled: false}\n")
    assert [chat(gw.port, f"t{i}") for i in range(5)] == [502] * 5
    ms = metrics(gw.admin_port)
    assert metric(ms, "rampart_retry_requests_total", upstream="chat") == 5
    assert metric(ms, "rampart_retry_retries_total", upstream="chat") == 0


def test_retry_budget_caps_retries_in_an_overload(procs, tmp_path):
    ups = [Answer503() for _ in range(3)]
    try:
        budget, floor_per_s, window_s = 0.1, 1, 10
        gw = start_gateway(procs, tmp_path, servers_yaml(*(u.addr for u in ups)) +
                           "    outlier: {enabled: false}\n"
                           f"    retry: {{budget: {budget}, min_per_second: {floor_per_s}, max_per_request: 2, "
                           f"window: {window_s}s}}\n")
        n = 300
        results = []
        lock = threading.Lock()

        def worker(k):
            for i in range(k, n, 6):
                st = chat(gw.port, f"t{i}")
                with lock:
                    results.append(st)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - t0
        assert len(results) == n
        assert set(results) == {503}, set(results)
        ms = metrics(gw.admin_port)
        requests = metric(ms, "rampart_retry_requests_total", upstream="chat")
        retries = metric(ms, "rampart_retry_retries_total", upstream="chat")
        denied = metric(ms, "rampart_retry_budget_denied_total", upstream="chat")
        assert requests == n
        # Within the window (the run is shorter than it), the allowance is
        # budget x requests + floor x window.
        assert elapsed < window_s, elapsed
        allowance = budget * requests + floor_per_s * window_s
        assert 1 <= retries <= allowance + 1, (retries, allowance)
        # Without the budget every request would make 2 retries.
        assert denied >= n - retries - 1, (denied, retries)
        attempts = sum(u.requests for u in ups)
        assert attempts == n + retries, (attempts, n, retries)
    finally:
        for u in ups:
            u.close()


# --------------------------------------------------------------------------
# streams are never retried


def test_stream_cut_by_a_dying_server_is_not_retried(procs, tmp_path):
    slow = ["--slots", "4", "--token-ms", "50", "--prefill-base-ms", "5"]
    sims = [start_sim(procs, seed=s, args=slow) for s in (12, 13)]
    gw = start_gateway(procs, tmp_path, servers_yaml(*(s.addr for s in sims)) +
                       "    retry: {budget: 100%, max_per_request: 2}\n")
    body = chat_body(max_tokens=200, stream=True)  # ~10 s of tokens
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    sock.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Authorization: Bearer streamer\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    data = b""
    while data.count(b'"content":"') < 4:
        d = sock.recv(65536)
        assert d, data
        data += d
    assert data.startswith(b"HTTP/1.1 200")
    got = [s.received() for s in sims]
    assert sorted(got) == [0, 1], got
    victim, other = (sims[0], sims[1]) if got[0] == 1 else (sims[1], sims[0])
    victim.proc.stop(sig=signal.SIGKILL)

    # The client's stream is cut: the connection closes without the final
    # chunk and without data: [DONE].
    sock.settimeout(10)
    while True:
        try:
            d = sock.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        data += d
    sock.close()
    assert b"[DONE]" not in data
    assert not data.endswith(b"0\r\n\r\n")
    time.sleep(0.3)
    assert other.received() == 0, "the broken stream was retried on the other server"
    ms = metrics(gw.admin_port)
    assert metric(ms, "rampart_retry_retries_total", upstream="chat") == 0
    # A new request still works (on the surviving server).
    assert chat(gw.port, "after") == 200
    assert other.received() == 1


# --------------------------------------------------------------------------
# canary analysis: automatic rollback and promotion

# A rollout fast enough for a test: three steps of at least 3 s, a look
# every 500 ms over a 3 s window.  At ~400 req/s from the test's load
# threads the canary takes ~250 requests per window at the 20% step.
# The error margin is 2 percentage points: a 1% -> 5% regression is past it
# with room, and a healthy canary shows it is within it after a few
# hundred requests.
FAST_CANARY = ("    canary: {steps: [20, 50, 100], step_duration: 3s, interval: 500ms, window: 3s,\n"
               "             min_samples: 50, error_margin: 2%, latency_ratio: 1.2%s}\n")
NOISE = 0.01  # both versions fail 1% of requests


def canary_setup(procs, tmp_path, seed, noise=NOISE, bad=None, auto_rollback=True):
    stable, canary = start_sim(procs, seed=seed), start_sim(procs, seed=seed + 1000)
    stable.config(error_rate=noise, version="v1")
    canary.config(error_rate=noise, version="v2")
    if bad:
        canary.config(bad_release=bad)
    conf = FAST_CANARY.replace("%s", "" if auto_rollback else ", auto_rollback: false")
    # No retries and no outlier ejection: the canary must be judged on
    # exactly what its server does.
    gw = start_gateway(procs, tmp_path, servers_yaml(stable.addr, (canary.addr, "canary")) +
                       "    retry: {max_per_request: 0}\n    outlier: {enabled: false}\n" + conf)
    return gw, stable, canary


def wait_canary_final(gw, timeout):
    """Poll the canary state until it is rolled back or promoted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = canary_state(gw)
        if c["state"] in ("rolled_back", "promoted"):
            return c
        time.sleep(0.2)
    return canary_state(gw)


def check_rolled_back(gw, canary, c, reason_word):
    assert c["state"] == "rolled_back", (c["state"], c["weight"], c.get("analysis"))
    assert c["weight"] == 0
    assert reason_word in c["reason"], c["reason"]
    assert c["analysis"]["decision"] == "rollback"
    # Rolled back at the first step, never promoted on the way.
    actions = [(e["action"], e["source"]) for e in c["events"]]
    assert ("rollback", "auto") in actions, actions
    assert ("promote", "auto") not in actions, actions
    ms = metrics(gw.admin_port)
    assert metric(ms, "rampart_canary_rollbacks_total", upstream="chat", source="auto") == 1
    assert metric(ms, "rampart_canary_weight_ratio", upstream="chat") == 0
    # Weight 0: no new request reaches the canary.
    time.sleep(0.3)
    got = canary.received()
    time.sleep(1.0)
    assert canary.received() == got, "the rolled-back canary still receives requests"


def test_canary_with_5pct_errors_is_rolled_back(procs, tmp_path, loads):
    gw, stable, canary = canary_setup(procs, tmp_path, seed=31, bad={"error_rate": 0.05})
    load = loads(gw.port, workers=8, seed=31)
    c = wait_canary_final(gw, timeout=25)
    check_rolled_back(gw, canary, c, "error ratio")
    _, err = gw.output()
    assert b'"event":"canary"' in err and b'"action":"rollback"' in err
    load.stop()


def test_canary_with_2x_slower_tokens_is_rolled_back(procs, tmp_path, loads):
    """Non-streaming answers: the first body byte arrives with the whole
    answer, so slower tokens show as a slower TTFT."""
    gw, stable, canary = canary_setup(procs, tmp_path, seed=32, bad={"token_slowdown": 2})
    loads(gw.port, workers=8, max_tokens=8, seed=32)
    c = wait_canary_final(gw, timeout=25)
    check_rolled_back(gw, canary, c, "TTFT")


def test_streaming_canary_with_2x_slower_tokens_is_rolled_back(procs, tmp_path, loads):
    """Streaming answers: the first body byte comes at the end of the
    prefill, so TTFT does not see slower tokens; time per output token
    does."""
    gw, stable, canary = canary_setup(procs, tmp_path, seed=33, bad={"token_slowdown": 2})
    loads(gw.port, workers=8, max_tokens=16, stream=True, seed=33)
    c = wait_canary_final(gw, timeout=15)
    assert c["state"] == "rolled_back", (c["state"], c["weight"], c.get("analysis"))
    check_rolled_back(gw, canary, c, "TPOT")
    tpot = c["analysis"]["tpot"]
    assert tpot["judged"] and tpot["regression"], tpot
    assert tpot["median_ratio"] > 1.5, tpot


@pytest.mark.parametrize("seed,noise", [(41, 0.01), (42, 0.02), (43, 0.005)])
def test_healthy_canary_with_the_same_noise_is_promoted(procs, tmp_path, loads, seed, noise):
    gw, stable, canary = canary_setup(procs, tmp_path, seed=seed, noise=noise)
    load = loads(gw.port, workers=8, seed=seed)
    c = wait_canary_final(gw, timeout=30)
    counts = load.stop()
    assert c["state"] == "promoted", (c["state"], c["weight"], c.get("analysis"))
    assert c["weight"] == 100
    actions = [(e["action"], e["source"], e["to_weight"]) for e in c["events"]]
    assert [a for a in actions if a[0] == "promote"] == [("promote", "auto", 50), ("promote", "auto", 100)], actions
    assert not [a for a in actions if a[0] in ("rollback", "regression")], actions
    ms = metrics(gw.admin_port)
    assert metric(ms, "rampart_canary_rollbacks_total", upstream="chat") == 0
    assert metric(ms, "rampart_canary_promotions_total", upstream="chat") >= 1
    # The noise was there: both versions failed some requests.
    assert counts.get(500, 0) > 0 and canary.stats()["requests_failed"] > 0


def test_regression_without_auto_rollback_pauses(procs, tmp_path, loads):
    gw, stable, canary = canary_setup(procs, tmp_path, seed=34, bad={"error_rate": 0.05}, auto_rollback=False)
    loads(gw.port, workers=8, seed=34)
    c = wait_for(lambda: (lambda s: s if s["state"] != "running" else None)(canary_state(gw)), timeout=25)
    assert c and c["state"] == "paused", c
    assert c["weight"] == 20  # held at its weight: an operator decides
    assert [e["action"] for e in c["events"]].count("regression") == 1
    time.sleep(1.5)
    c = canary_state(gw)
    assert c["state"] == "paused" and c["weight"] == 20
    assert [e["action"] for e in c["events"]].count("regression") == 1  # logged once


# --------------------------------------------------------------------------
# manual control through the admin API


def versions_by_tenant(gw, tenants, rounds=2):
    """{tenant: set of x-llmsim-version values seen}."""
    seen = {}
    for _ in range(rounds):
        for t in tenants:
            status, hdrs, _ = http(gw.port, "POST", "/v1/chat/completions", chat_body(),
                                   (("Authorization", f"Bearer {t}"), ("Content-Type", "application/json")))
            assert status == 200
            seen.setdefault(t, set()).add(hdrs["x-llmsim-version"])
    return seen


def test_admin_api_controls_the_canary(procs, tmp_path):
    stable, canary = start_sim(procs, seed=51), start_sim(procs, seed=52)
    stable.config(version="v1")
    canary.config(version="v2")
    # Analysis never decides here: an hour per step, 100000 samples.
    gw = start_gateway(procs, tmp_path, servers_yaml(stable.addr, (canary.addr, "canary")) +
                       "    canary: {steps: [20, 50, 100], step_duration: 1h, interval: 1s, min_samples: 100000}\n")
    # Reads are open.
    status, _, body = http(gw.admin_port, "GET", "/api/v1/canary")
    assert status == 200
    doc = json.loads(body)
    assert [c["upstream"] for c in doc["canaries"]] == ["chat"]
    c = canary_state(gw)
    assert (c["state"], c["weight"], c["step"]) == ("running", 20, 1)

    # Writes need the token.
    st, body = canary_action(gw, token=None, action="rollback")
    assert st == 401 and body["error"]["code"] == "missing_token", body
    st, body = canary_action(gw, token="wrong-token", action="rollback")
    assert st == 401 and body["error"]["code"] == "invalid_token", body
    assert canary_state(gw)["state"] == "running"

    st, c = canary_action(gw, action="pause")
    assert st == 200 and c["state"] == "paused" and c["weight"] == 20

    # set_weight holds the rollout there; the split is sticky per tenant,
    # and raising the weight only moves tenants from stable to canary.
    st, c = canary_action(gw, action="set_weight", weight=30)
    assert st == 200 and (c["state"], c["weight"]) == ("paused", 30), c
    tenants = [f"user-{i}" for i in range(60)]
    at30 = versions_by_tenant(gw, tenants)
    assert all(len(v) == 1 for v in at30.values()), at30
    on_canary30 = {t for t, v in at30.items() if v == {"v2"}}
    assert 3 <= len(on_canary30) <= 33, len(on_canary30)
    st, c = canary_action(gw, action="set_weight", weight=60)
    assert st == 200 and c["weight"] == 60
    at60 = versions_by_tenant(gw, tenants, rounds=1)
    on_canary60 = {t for t, v in at60.items() if v == {"v2"}}
    assert on_canary30 <= on_canary60 and len(on_canary60) > len(on_canary30)

    # promote: the next step above the current weight.
    st, c = canary_action(gw, action="promote")
    assert st == 200 and c["weight"] == 100 and c["state"] == "promoted", c
    st, c = canary_action(gw, action="rollback", reason="operator: bad outputs")
    assert st == 200 and (c["state"], c["weight"]) == ("rolled_back", 0), c
    assert "operator: bad outputs" in c["reason"]
    before = canary.received()
    assert set().union(*versions_by_tenant(gw, tenants[:20], rounds=1).values()) == {"v1"}
    assert canary.received() == before

    # Refusals: 409 with the reason, 400 for malformed bodies.
    st, body = canary_action(gw, action="promote")
    assert st == 409, body
    st, body = canary_action(gw, action="set_weight")
    assert st == 400, body
    st, body = canary_action(gw, action="explode")
    assert st == 400, body
    st, _, body = http(gw.admin_port, "POST", "/api/v1/canary/chat", b"{not json",
                       (("Authorization", f"Bearer {ADMIN_TOKEN}"),))
    assert st == 400, body
    st, _, _ = http(gw.admin_port, "POST", "/api/v1/canary/nosuch", b'{"action":"pause"}',
                    (("Authorization", f"Bearer {ADMIN_TOKEN}"),))
    assert st == 404

    # resume after a rollback starts a new attempt at the first step.
    st, c = canary_action(gw, action="resume")
    assert st == 200 and (c["state"], c["weight"], c["step"]) == ("running", 20, 1), c
    st, c = canary_action(gw, action="promote")
    assert st == 200 and c["weight"] == 50

    events = [(e["action"], e["source"]) for e in canary_state(gw)["events"]]
    for a in ("pause", "set_weight", "promote", "rollback", "resume"):
        assert (a, "admin") in events, events
    ms = metrics(gw.admin_port)
    assert metric(ms, "rampart_canary_rollbacks_total", upstream="chat", source="admin") == 1
    assert metric(ms, "rampart_canary_rollbacks_total", upstream="chat", source="auto") == 0
    assert metric(ms, "rampart_canary_weight_ratio", upstream="chat") == pytest.approx(0.5)
    _, err = gw.output()
    logged = [json.loads(l) for l in err.decode().splitlines() if l.startswith("{") and '"canary"' in l]
    assert [(e["action"], e["source"]) for e in logged if e["source"] == "admin"][:3] == \
        [("pause", "admin"), ("set_weight", "admin"), ("set_weight", "admin")], logged


def test_admin_writes_refused_without_a_token_file(procs, tmp_path):
    stable, canary = start_sim(procs, seed=53), start_sim(procs, seed=54)
    gw = start_gateway(procs, tmp_path, servers_yaml(stable.addr, (canary.addr, "canary")), token=False)
    st, body = canary_action(gw, action="rollback")
    assert st == 403, body
    assert canary_state(gw)["state"] == "running"


# --------------------------------------------------------------------------
# balancing


def test_round_robin_uses_every_server(procs, tmp_path):
    sims = [start_sim(procs, seed=s) for s in (61, 62)]
    gw = start_gateway(procs, tmp_path, servers_yaml(*(s.addr for s in sims)) + "    balance: round_robin\n")
    assert [chat(gw.port, f"t{i}") for i in range(20)] == [200] * 20
    assert [s.served() for s in sims] == [10, 10]
