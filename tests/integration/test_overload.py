"""Overload protection end to end: rampart in front of llmsim.

Each test starts its own llmsim and rampart on free loopback ports and
checks one promise of docs/overload.md from the outside: the concurrency
limit holds, the queue orders by class and is fair across tenants, refusals
are fast, honest and OpenAI-shaped, a client that leaves the queue costs the
model server nothing, and token budgets are reserved before a burst can
overspend them.

Assertions are about counts and orders, never about tight timings: the
model's durations are chosen so that each effect is many times larger than
scheduling noise on a loaded machine.
"""
import json
import re
import socket
import threading
import time


from conftest import binary, free_port, wait_port, parse_metrics, metric_sum, wait_for

JSON_ERROR_KEYS = {"message", "type", "param", "code"}


# --------------------------------------------------------------------------
# processes


def start_sim(procs, *args):
    port = free_port()
    procs([binary("llmsim"), "--port", str(port), "--seed", "3", *args], wait_for_port=port)
    return port


def start_gateway(procs, tmp_path, sim_port, extra=""):
    """rampart with one upstream (llmsim) and an admin listener; extra is
    YAML appended at the top level (overload:, tenants:)."""
    port, aport = free_port(), free_port()
    text = (f"listen: 127.0.0.1:{port}\n"
            f"upstreams:\n  chat:\n    servers: [127.0.0.1:{sim_port}]\n"
            f"admin:\n  listen: 127.0.0.1:{aport}\n"
            f"log:\n  access: off\n") + extra
    cfg = tmp_path / "rampart.yaml"
    cfg.write_text(text)
    p = procs([binary("rampart"), "-c", str(cfg)], wait_for_port=port)
    wait_port(aport)
    p.port, p.admin_port = port, aport
    return p


# --------------------------------------------------------------------------
# HTTP over raw sockets (the tests decide exactly when a client leaves)


def http_get(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    resp = Response(s)
    resp.read_all()
    s.close()
    return resp


def sim_stats(sim_port):
    return json.loads(http_get(sim_port, "/sim/stats").body)


def metrics(admin_port):
    """{(name, frozenset(labels)): value} from /metrics."""
    return parse_metrics(http_get(admin_port, "/metrics").body.decode())




class Response:
    """One HTTP response read from a socket: head, then a Content-Length,
    chunked or close-delimited body.  Records when the head, the first
    content token and the end arrived."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""
        self.status = None
        self.headers = {}
        self.body = b""
        self.t_head = self.t_first_token = self.t_done = None

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError(self.buf)
        self.buf += d

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        for l in lines[1:]:
            k, v = l.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self.t_head = time.monotonic()

    def _saw(self, data):
        self.body += data
        if self.t_first_token is None and b'"content":"' in data and b'"content":""' not in data:
            self.t_first_token = time.monotonic()

    def read_all(self):
        if self.status is None:
            self.read_head()
        if "content-length" in self.headers:
            n = int(self.headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            self._saw(self.buf[:n])
            self.buf = self.buf[n:]
        elif self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, rest = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    self._fill()
                    size_line, rest = self.buf.split(b"\r\n", 1)
                self._saw(rest[:size])
                self.buf = rest[size + 2:]
                if size == 0:
                    break
        else:
            while True:
                try:
                    self._fill()
                except EOFError:
                    break
            self._saw(self.buf)
            self.buf = b""
        self.t_done = time.monotonic()
        return self

    def json(self):
        return json.loads(self.body)


class Chat:
    """A chat completion sent to rampart on its own connection."""

    def __init__(self, port, max_tokens=4, stream=True, key=None, priority=None, prompt="hello there",
                 tag=None):
        body = {"model": "llmsim-1", "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        data = json.dumps(body).encode()
        head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n")
        if key:
            head += f"Authorization: Bearer {key}\r\n"
        if priority:
            head += f"x-priority: {priority}\r\n"
        self.tag = tag
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.t0 = time.monotonic()
        self.s.sendall(head.encode() + b"\r\n" + data)
        self.resp = Response(self.s)
        self.error = None
        self.thread = None

    def finish(self):
        try:
            self.resp.read_all()
        except (OSError, EOFError) as e:
            self.error = e
        finally:
            self.s.close()
        return self.resp

    def start(self):
        """Read the answer in a background thread."""
        self.thread = threading.Thread(target=self.finish, daemon=True)
        self.thread.start()
        return self

    def join(self, timeout=60):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"request {self.tag} did not finish"
        assert self.error is None, f"request {self.tag}: {self.error!r}"
        return self.resp

    def close(self):
        self.s.close()




def queue_len(gw):
    return metric_sum(metrics(gw.admin_port), "rampart_queue_length")


def check_error_shape(resp, status, code):
    assert resp.status == status
    assert resp.headers["content-type"].startswith("application/json")
    doc = resp.json()
    assert set(doc) == {"error"}
    err = doc["error"]
    assert set(err) == JSON_ERROR_KEYS, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    assert err["param"] is None
    assert err["code"] == code
    return err


def hold_slot(gw, sim, max_tokens, **kw):
    """Start one long request and wait until it runs on llmsim."""
    before = sim_stats(sim)["requests_received"]
    holder = Chat(gw.port, max_tokens=max_tokens, tag="holder", **kw).start()
    assert wait_for(lambda: sim_stats(sim)["requests_received"] > before), "holder never reached llmsim"
    return holder


PRIORITY_TENANTS = """
tenants:
  default:
    class: interactive
    max_class: critical
    allow_priority_header: true
"""


# --------------------------------------------------------------------------
# tests


def test_static_limit_is_never_exceeded(procs, tmp_path):
    limit, burst = 3, 24
    sim = start_sim(procs, "--slots", "16", "--token-ms", "10")
    gw = start_gateway(procs, tmp_path, sim, f"overload:\n  limiter: {{max_concurrency: {limit}}}\n"
                       "  queue: {max_wait: 30s, standing_wait: 30s}\n")
    ms = metrics(gw.admin_port)
    assert metric_sum(ms, "rampart_admit_limit") == limit

    chats = [Chat(gw.port, max_tokens=12, tag=i).start() for i in range(burst)]
    peak_sim = peak_gw = peak_queue = 0
    while any(c.thread.is_alive() for c in chats):
        st = sim_stats(sim)
        peak_sim = max(peak_sim, st["slots_busy"] + st["queue_len"])
        ms = metrics(gw.admin_port)
        peak_gw = max(peak_gw, metric_sum(ms, "rampart_admit_inflight"))
        peak_queue = max(peak_queue, metric_sum(ms, "rampart_queue_length"))
        time.sleep(0.005)
    for c in chats:
        assert c.join().status == 200, c.resp.body
        assert b"data: [DONE]" in c.resp.body
    st = sim_stats(sim)
    assert st["requests_served"] == burst
    assert peak_sim <= limit, f"llmsim ran {peak_sim} at once, limit {limit}"
    assert peak_gw <= limit
    # The burst did reach the limit and wait in rampart's queue.
    assert peak_sim == limit and peak_queue > 0
    assert st["max_queue_len"] == 0


def test_priority_classes_are_served_in_order(procs, tmp_path):
    sim = start_sim(procs, "--slots", "8", "--token-ms", "20")
    gw = start_gateway(procs, tmp_path, sim, "overload:\n  limiter: {max_concurrency: 1}\n"
                       "  queue: {max_wait: 30s, standing_wait: 30s}\n" + PRIORITY_TENANTS)
    holder = hold_slot(gw, sim, max_tokens=40)  # ~0.8 s
    waiters = []
    for i, cls in enumerate(["batch", "batch", "interactive", "interactive", "critical", "critical"]):
        waiters.append(Chat(gw.port, max_tokens=2, priority=cls, tag=cls).start())
        assert wait_for(lambda: queue_len(gw) == i + 1), "request did not queue"
    ms = metrics(gw.admin_port)
    for cls in ("critical", "interactive", "batch"):
        assert metric_sum(ms, "rampart_queue_length", **{"class": cls}) == 2
    assert holder.join().status == 200
    for w in waiters:
        assert w.join().status == 200
    order = [w.tag for w in sorted(waiters, key=lambda w: w.resp.t_done)]
    assert order == ["critical", "critical", "interactive", "interactive", "batch", "batch"]


def test_priority_header_ignored_without_permission(procs, tmp_path):
    """A tenant not allowed to choose its class stays in its own: a batch
    tenant asking for critical is still served after interactive."""
    sim = start_sim(procs, "--slots", "8", "--token-ms", "20")
    gw = start_gateway(procs, tmp_path, sim, "overload:\n  limiter: {max_concurrency: 1}\n"
                       "  queue: {max_wait: 30s, standing_wait: 30s}\n"
                       "tenants:\n  default: {class: interactive}\n")
    holder = hold_slot(gw, sim, max_tokens=30)
    a = Chat(gw.port, max_tokens=2, key="k1", priority="critical", tag="asked-critical").start()
    assert wait_for(lambda: queue_len(gw) == 1)
    ms = metrics(gw.admin_port)
    assert metric_sum(ms, "rampart_queue_length", **{"class": "interactive"}) == 1
    assert metric_sum(ms, "rampart_queue_length", **{"class": "critical"}) == 0
    assert holder.join().status == 200 and a.join().status == 200


def test_fair_between_two_tenants(procs, tmp_path):
    sim = start_sim(procs, "--slots", "8", "--token-ms", "10")
    gw = start_gateway(procs, tmp_path, sim, "overload:\n  limiter: {max_concurrency: 1}\n"
                       "  queue: {max_wait: 60s, standing_wait: 60s}\n")
    holder = hold_slot(gw, sim, max_tokens=30, key="tenant-a")
    a = []
    for i in range(20):
        a.append(Chat(gw.port, max_tokens=4, key="tenant-a", tag=f"a{i}").start())
    assert wait_for(lambda: queue_len(gw) >= 15), "A's burst did not queue"
    b = [Chat(gw.port, max_tokens=4, key="tenant-b", tag=f"b{i}").start() for i in range(2)]
    assert wait_for(lambda: queue_len(gw) >= 20)
    for c in [holder] + a + b:
        assert c.join().status == 200
    b_done = max(c.resp.t_done for c in b)
    a_after_b = sum(1 for c in a if c.resp.t_done > b_done)
    # Under FIFO both of B's would come after all of A's 20.  Fair queueing
    # (and the newcomer's credit) serves B within the first few dispatches.
    assert a_after_b >= 15, f"only {a_after_b} of A's 20 were served after B's requests"


def test_queue_deadline_is_503_with_retry_after(procs, tmp_path):
    sim = start_sim(procs, "--slots", "8", "--token-ms", "20")
    gw = start_gateway(procs, tmp_path, sim, "overload:\n  limiter: {max_concurrency: 1}\n"
                       "  queue: {max_wait: 300ms}\n")
    holder = hold_slot(gw, sim, max_tokens=100)  # ~2 s
    t0 = time.monotonic()
    late = Chat(gw.port, max_tokens=2, tag="late").start()
    resp = late.join()
    waited = resp.t_done - t0
    err = check_error_shape(resp, 503, "overloaded")
    assert "deadline" in err["message"]
    assert int(resp.headers["retry-after"]) >= 1
    # Refused at its deadline, well before the slot would have freed.
    assert 0.25 <= waited < 1.6, waited
    assert holder.join().status == 200
    st = sim_stats(sim)
    assert st["requests_received"] == 1  # the refused request never reached llmsim
    ms = metrics(gw.admin_port)
    assert metric_sum(ms, "rampart_queue_refused_total", reason="deadline") == 1


def test_queue_full_is_503_without_touching_the_upstream(procs, tmp_path):
    sim = start_sim(procs, "--slots", "8", "--token-ms", "20")
    gw = start_gateway(procs, tmp_path, sim, "overload:\n  limiter: {max_concurrency: 1}\n"
                       "  queue: {max_length: 2, max_wait: 30s, standing_wait: 30s}\n")
    holder = hold_slot(gw, sim, max_tokens=60)
    q = [Chat(gw.port, max_tokens=2, key="same", tag=i).start() for i in range(2)]
    assert wait_for(lambda: queue_len(gw) == 2)
    t0 = time.monotonic()
    refused = Chat(gw.port, max_tokens=2, key="same", tag="3rd").start().join()
    elapsed = time.monotonic() - t0
    check_error_shape(refused, 503, "overloaded")
    assert int(refused.headers["retry-after"]) >= 1
    assert elapsed < 0.5  # answered at once, not at a deadline
    for c in [holder] + q:
        assert c.join().status == 200
    assert sim_stats(sim)["requests_received"] == 3


QUOTA_TENANTS = """
tenants:
  identify: api_key
  default:
    requests_per_minute: 3
    tokens_per_minute: 2000
"""


def test_quota_429_with_ratelimit_headers(procs, tmp_path):
    sim = start_sim(procs, "--slots", "8", "--token-ms", "1")
    gw = start_gateway(procs, tmp_path, sim, QUOTA_TENANTS)
    seen = []
    for i in range(3):
        r = Chat(gw.port, max_tokens=10, key="q-key", stream=(i == 0)).finish()
        assert r.status == 200
        seen.append(r.headers)
    h = seen[0]
    assert h["x-ratelimit-limit-requests"] == "3"
    assert h["x-ratelimit-remaining-requests"] == "2"
    assert h["x-ratelimit-limit-tokens"] == "2000"
    assert 0 < int(h["x-ratelimit-remaining-tokens"]) < 2000
    for k in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        assert re.fullmatch(r"(\d+h)?(\d+m)?(\d+(\.\d+)?m?s)", h[k]), (k, h[k])
    assert [int(x["x-ratelimit-remaining-requests"]) for x in seen] == [2, 1, 0]
    assert "retry-after" not in h

    t0 = time.monotonic()
    r = Chat(gw.port, max_tokens=10, key="q-key").finish()
    elapsed = time.monotonic() - t0
    err = check_error_shape(r, 429, "rate_limit_exceeded")
    assert "requests" in err["message"]
    assert r.headers["x-ratelimit-limit-requests"] == "3"
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-reset-requests" in r.headers
    assert "x-ratelimit-limit-tokens" in r.headers and "x-ratelimit-remaining-tokens" in r.headers
    assert "x-ratelimit-reset-tokens" in r.headers
    # One request comes back every 20 s (3 per minute).
    assert 1 <= int(r.headers["retry-after"]) <= 20
    assert elapsed < 0.5
    assert sim_stats(sim)["requests_received"] == 3

    # Another API key is another tenant with its own budget.
    assert Chat(gw.port, max_tokens=10, key="other-key").finish().status == 200

    # A request larger than a minute's token budget: 429 that waiting would
    # not cure, so no Retry-After.
    big = Chat(gw.port, max_tokens=5000, key="third-key").finish()
    check_error_shape(big, 429, "rate_limit_exceeded")
    assert "retry-after" not in big.headers
    ms = metrics(gw.admin_port)
    assert metric_sum(ms, "rampart_tenant_refused_total", reason="requests") == 1
    assert metric_sum(ms, "rampart_tenant_refused_total", reason="too_large") == 1


def get_models(gw, key):
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
              "Connection: close\r\n\r\n".encode())
    r = Response(s).read_all()
    s.close()
    return r


def test_ratelimit_headers_on_every_model_api_response(procs, tmp_path):
    sim = start_sim(procs, "--slots", "8", "--token-ms", "1")
    gw = start_gateway(procs, tmp_path, sim, "tenants:\n  default: {requests_per_minute: 3, tokens_per_minute: 100000}\n")
    r = get_models(gw, "m-key")
    assert r.status == 200
    assert r.headers["x-ratelimit-limit-requests"] == "3"
    assert r.headers["x-ratelimit-remaining-requests"] == "2"
    assert r.headers["x-ratelimit-limit-tokens"] == "100000"
    assert "x-ratelimit-reset-requests" in r.headers and "x-ratelimit-reset-tokens" in r.headers
    # Not a model-API path: no OpenAI headers.
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    h = Response(s).read_all()
    s.close()
    assert h.status == 200
    assert not any(k.startswith("x-ratelimit-") for k in h.headers)


def test_listing_models_reserves_no_tokens(procs, tmp_path):
    sim = start_sim(procs, "--slots", "8", "--token-ms", "1")
    gw = start_gateway(procs, tmp_path, sim, QUOTA_TENANTS)
    r = get_models(gw, "m-key")
    assert r.status == 200
    assert r.headers["x-ratelimit-remaining-tokens"] == "2000"


def test_queued_client_that_leaves_costs_the_upstream_nothing(procs, tmp_path):
    sim = start_sim(procs, "--slots", "8", "--token-ms", "20")
    gw = start_gateway(procs, tmp_path, sim, "overload:\n  limiter: {max_concurrency: 1}\n"
                       "  queue: {max_wait: 30s, standing_wait: 30s}\n")
    holder = hold_slot(gw, sim, max_tokens=50)  # ~1 s
    leavers = [Chat(gw.port, max_tokens=50, tag=f"leaver{i}") for i in range(3)]
    assert wait_for(lambda: queue_len(gw) == 3)
    before = sim_stats(sim)
    for c in leavers:
        c.close()
    assert wait_for(lambda: queue_len(gw) == 0), "queue did not drop the clients that left"
    ms = metrics(gw.admin_port)
    assert metric_sum(ms, "rampart_queue_refused_total", reason="cancelled") == 3
    assert holder.join().status == 200
    # A request after them is served at once (the slot did not go to a ghost).
    after = Chat(gw.port, max_tokens=2, tag="after").finish()
    assert after.status == 200
    st = sim_stats(sim)
    assert st["requests_received"] == before["requests_received"] + 1  # only "after"
    assert st["requests_aborted"] == 0
    assert st["tokens_wasted"] == 0
    assert st["requests_served"] == 2


def test_token_reservation_blocks_a_concurrent_burst(procs, tmp_path):
    budget, max_tokens, k = 1000, 300, 8
    sim = start_sim(procs, "--slots", "16", "--token-ms", "3")
    gw = start_gateway(procs, tmp_path, sim,
                       f"tenants:\n  identify: api_key\n  default: {{tokens_per_minute: {budget}}}\n")
    # Learn this request's reservation from the headers of a probe by another tenant.
    # A streamed answer's head comes at dispatch, so its headers show the
    # reservation: max_tokens + ceil(11 characters / 4) + 4 per message + 3.
    need = max_tokens + 3 + 4 + 3
    probe = Chat(gw.port, max_tokens=max_tokens, key="probe")
    probe.resp.read_head()
    probe.finish()
    remaining = int(probe.resp.headers["x-ratelimit-remaining-tokens"])
    assert budget - need <= remaining <= budget - need + 3  # plus a few ms of refill
    fits = budget // need
    assert fits == 3

    # All k requests are on the wire before the first one can have answered
    # (each takes ~1 s on llmsim): without reservation all would pass.
    barrier = threading.Barrier(k)
    results = [None] * k

    def one(i):
        barrier.wait()
        results[i] = Chat(gw.port, max_tokens=max_tokens, key="burst", tag=i).finish()

    ts = [threading.Thread(target=one, args=(i,)) for i in range(k)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    statuses = sorted(r.status for r in results)
    assert statuses == [200] * fits + [429] * (k - fits), statuses
    for r in results:
        if r.status == 429:
            err = check_error_shape(r, 429, "rate_limit_exceeded")
            assert "tokens" in err["message"]
            assert int(r.headers["retry-after"]) >= 1
            assert int(r.headers["x-ratelimit-remaining-tokens"]) < need
    ms = metrics(gw.admin_port)
    assert metric_sum(ms, "rampart_tenant_refused_total", reason="tokens") == k - fits


def test_refusals_are_openai_shaped(procs, tmp_path):
    """429 and 503 bodies: exactly {"error": {message, type, param, code}},
    JSON content type, Retry-After and the request id."""
    sim = start_sim(procs, "--slots", "8", "--token-ms", "20")
    gw = start_gateway(procs, tmp_path, sim, "overload:\n  limiter: {max_concurrency: 1}\n"
                       "  queue: {max_length: 1, max_wait: 30s, standing_wait: 30s}\n"
                       "tenants:\n  default: {requests_per_minute: 1}\n")
    holder = hold_slot(gw, sim, max_tokens=50, key="a")
    queued = Chat(gw.port, max_tokens=2, key="b").start()
    assert wait_for(lambda: queue_len(gw) == 1)
    r503 = Chat(gw.port, max_tokens=2, key="c").finish()     # quota fine, queue full
    e503 = check_error_shape(r503, 503, "overloaded")
    r429 = Chat(gw.port, max_tokens=2, key="a").finish()     # a's minute is used up
    e429 = check_error_shape(r429, 429, "rate_limit_exceeded")
    for r in (r503, r429):
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
        assert int(r.headers["retry-after"]) >= 1
    assert e503["type"] != e429["type"]
    # The refused 503 was refunded: c may still send its one request.
    assert holder.join().status == 200 and queued.join().status == 200
    assert Chat(gw.port, max_tokens=2, key="c").finish().status == 200


def run_adaptive(procs, tmp_path, warm_clients, warm_s):
    """llmsim with 4 slots behind rampart's default (adaptive) limiter,
    which starts at 8: warm_clients closed-loop clients for warm_s, then
    12.  Returns (limits, llmsim queue lengths, statuses) sampled over 2 s
    after 3 s of the full load."""
    sim = start_sim(procs, "--slots", "4", "--token-ms", "10")
    gw = start_gateway(procs, tmp_path, sim)
    assert metric_sum(metrics(gw.admin_port), "rampart_admit_limit") == 8  # the default initial limit
    stop = threading.Event()
    statuses = []

    def client(i):
        while not stop.is_set():
            c = Chat(gw.port, max_tokens=16, key=f"c{i}", tag=i)
            statuses.append(c.finish().status)

    ts = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(12)]
    for t in ts[:warm_clients]:
        t.start()
    time.sleep(warm_s)
    for t in ts[warm_clients:]:
        t.start()
    time.sleep(3.0)
    limits, sim_queue = [], []
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:
        limits.append(metric_sum(metrics(gw.admin_port), "rampart_admit_limit"))
        sim_queue.append(sim_stats(sim)["queue_len"])
        time.sleep(0.05)
    stop.set()
    for t in ts:
        t.join(30)
    return limits, sim_queue, statuses


def test_adaptive_limit_finds_the_server_capacity(procs, tmp_path):
    """The default (adaptive) limiter, never told llmsim's 4 slots, brings
    its limit to about 4 when the load grows past them, and keeps llmsim's
    own queue (almost) empty: the backlog waits in rampart, where it can be
    ordered, shed or cancelled for free."""
    limits, sim_queue, statuses = run_adaptive(procs, tmp_path, warm_clients=2, warm_s=1.5)
    assert 200 in statuses and set(statuses) <= {200, 503}
    assert 3 <= sum(limits) / len(limits) <= 6, limits
    assert sum(sim_queue) / len(sim_queue) <= 1.0, sim_queue


def test_adaptive_limit_cold_start_under_overload(procs, tmp_path):
    limits, sim_queue, statuses = run_adaptive(procs, tmp_path, warm_clients=12, warm_s=0)
    assert 3 <= sum(limits) / len(limits) <= 6, limits
    assert sum(sim_queue) / len(sim_queue) <= 1.0, sim_queue
