"""Regression tests for the traffic shapes real model-API clients and
servers produce: long streams, slow and stalled uploads, upstreams that
close or misbehave, pipelining after local replies, path variants.

Each test reproduces one defect seen on real traffic; timeouts are set low
in the config so a test takes seconds, not minutes.  Durations are never
asserted, only what the client received and what rampart kept open.
"""
import json
import os
import socket
import threading
import time
import urllib.request

import pytest

from conftest import parse_metrics, metric_sum, wait_for
from wire import Upstream, respond, ok_handler, read_response, connect


def metrics(gw):
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.admin_port}/metrics", timeout=5) as r:
        return parse_metrics(r.read().decode())


def connections(gw):
    return metric_sum(metrics(gw), "rampart_client_connections")


def access_log(gw):
    out, _ = gw.output()
    return [json.loads(l) for l in out.decode().splitlines() if l.startswith("{")]


def sse_handler(events, gap):
    """An upstream that streams `events` SSE events, one every `gap` s."""
    def handler(conn, req):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(events):
            ev = f'data: {{"choices":[{{"delta":{{"content":"t{i}"}}}}]}}\n\n'.encode()
            conn.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
            time.sleep(gap)
        ev = b"data: [DONE]\n\n"
        conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(ev), ev))
    return handler


CHAT = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s")


def chat_request(max_tokens=16, stream=True, path=b"/v1/chat/completions", key=None):
    body = json.dumps({"model": "m", "max_tokens": max_tokens, "stream": stream,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    auth = b"Authorization: Bearer %s\r\n" % key.encode() if key else b""
    return (b"POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path, auth, len(body), body))


# --------------------------------------------------------------------------
# 1. client timers must not cut streams or slow uploads


def test_stream_outlives_client_header_timeout(gateway):
    up = Upstream(sse_handler(events=15, gap=0.2))
    gw = gateway([up.port], extra="timeouts: {client_header: 1s, client_body: 1s}\n")
    s = connect(gw.port)
    s.sendall(chat_request())
    status, hdrs, body, _ = read_response(s, timeout=20)
    assert status == 200
    assert body.count(b"data: ") == 16, body[-200:]
    assert body.endswith(b"data: [DONE]\n\n")
    up.close()


def test_slow_upload_within_body_timeout_is_served(gateway):
    up = Upstream(lambda conn, req: respond(conn, 200, b"got %d" % len(req["body"])))
    gw = gateway([up.port], extra="timeouts: {client_header: 1s, client_body: 1s}\n")
    s = connect(gw.port)
    body = b"x" * 12000
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), 1000):  # 1 KB every 0.25 s: 3 s in all
        s.sendall(body[i:i + 1000])
        time.sleep(0.25)
    status, _, rbody, _ = read_response(s, timeout=10)
    assert (status, rbody) == (200, b"got 12000")
    up.close()


def test_head_trickled_byte_by_byte_arrives_whole(gateway):
    """A head sent one byte per write, as a slow or hostile client does:
    the parser resumes where it stopped (its state is kept between reads),
    and what reaches the upstream is every header, in order, unchanged."""
    up = Upstream(ok_handler)
    gw = gateway([up.port])
    names = [f"X-Trickle-{i}" for i in range(40)]
    head = (b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" +
            b"".join(b"%s: value-%d\r\n" % (n.encode(), i) for i, n in enumerate(names)) + b"\r\n")
    s = connect(gw.port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(head)):
        s.sendall(head[i:i + 1])
        if i % 64 == 0:
            time.sleep(0.002)  # let rampart read a partial head many times
    status, _, body, _ = read_response(s, timeout=20)
    assert status == 200, body
    assert body == b"hello /v1/models"
    got = up.requests[-1]["headers"]
    for i, n in enumerate(names):
        assert got.get(n.lower()) == [f"value-{i}"], (n, got.get(n.lower()))
    # and the connection is still good for a whole request
    s.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body, _ = read_response(s, timeout=10)
    assert status == 200 and body == b"hello /again"
    s.close()
    up.close()


# --------------------------------------------------------------------------
# 2./3. stalled uploads: answered, closed, and never holding an upstream slot


def test_stalled_body_is_408_and_the_connection_closes(gateway):
    up = Upstream(ok_handler)
    gw = gateway([up.port], admin=True, extra="timeouts: {client_body: 300ms, lingering: 1s}\n")
    base = connections(gw)
    socks = []
    for _ in range(5):
        s = connect(gw.port)
        s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nA")
        socks.append(s)
    for s in socks:
        status, hdrs, body, _ = read_response(s, timeout=5)
        assert status == 408 and hdrs.get("connection") == "close"
        assert json.loads(body)["error"]["code"] == "request_timeout"
        s.settimeout(5)
        assert s.recv(100) == b"", "rampart did not close after its 408"
    for s in socks:
        s.close()
    assert wait_for(lambda: connections(gw) == base, timeout=5), connections(gw)
    assert len(up.requests) == 0, "a request with a stalled body reached the upstream"
    up.close()


def test_stalled_uploads_hold_no_upstream_slot(gateway):
    up = Upstream(ok_handler)
    gw = gateway([up.port], admin=True,
                 extra="timeouts: {client_body: 3s}\n"
                       "overload: {limiter: {max_concurrency: 2}, queue: {max_wait: 1s}}\n")
    stalled = []
    for _ in range(6):
        s = connect(gw.port)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nA")
        stalled.append(s)
    time.sleep(0.2)
    # Well inside the stalled bodies' 3 s: healthy requests go through.
    for i in range(5):
        s = connect(gw.port)
        s.sendall(b"GET /ok%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        status, _, body, _ = read_response(s, timeout=5)
        assert (status, body) == (200, b"hello /ok%d" % i)
        s.close()
    for s in stalled:
        s.close()
    up.close()


# --------------------------------------------------------------------------
# 4. the request quota is spent by every request that reached an upstream


def test_request_quota_is_not_refunded_on_completion(gateway):
    def handler(conn, req):
        path = req["line"].split(" ")[1]
        respond(conn, 500 if path == "/fail" else 200, b"x")
    up = Upstream(handler)
    gw = gateway([up.port], extra="tenants:\n  identify: address\n"
                                  "  default: {requests_per_second: 0.01, burst: 1}\n")
    # The first request spends the only token (and fails upstream); no
    # later one may be served, whatever its path or answer.
    s = connect(gw.port)
    s.sendall(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(s)[0] == 500
    for path in (b"/plain", b"/fail", b"/v1/models"):
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
        status, hdrs, _, _ = read_response(s)
        assert status == 429, (path, status)
    assert len(up.requests) == 1
    up.close()


def test_request_quota_charges_an_aborted_request(gateway):
    gate = threading.Event()

    def slow(conn, req):
        gate.wait(5)
        respond(conn, 200, b"late")
    up = Upstream(slow)
    gw = gateway([up.port], extra="tenants:\n  identify: address\n"
                                  "  default: {requests_per_second: 0.01, burst: 1}\n")
    s = connect(gw.port)
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_for(lambda: len(up.requests) == 1, timeout=5)
    s.close()  # the client gives up while the upstream works
    time.sleep(0.2)
    gate.set()
    s = connect(gw.port)
    s.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(s)[0] == 429
    up.close()


# --------------------------------------------------------------------------
# 5. one canonical path for routing, model-API detection and quotas


@pytest.mark.parametrize("path", [b"/v1/chat/completions", b"/v1/chat/%63ompletions", b"/v1//chat/completions",
                                  b"/v1/./chat/completions", b"/v1/chat/completions/",
                                  b"/v1/x/../chat/completions", b"/v1/chat/%63%6F%6Dpletions",
                                  b"http://api.example/v1/chat/completions"])
def test_token_budget_holds_for_every_spelling_of_the_path(gateway, path):
    up = Upstream(ok_handler)
    gw = gateway([up.port], extra="tenants:\n  identify: address\n"
                                  "  default: {tokens_per_minute: 1000}\n")
    s = connect(gw.port)
    s.sendall(chat_request(max_tokens=5000, stream=False, path=path))
    status, _, body, _ = read_response(s)
    assert status == 429, (path, status, body)
    assert len(up.requests) == 0
    up.close()


def test_upstream_sees_the_canonical_path(gateway):
    up = Upstream(ok_handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"GET /a//b/./c/../%7Euser/%3f?q=%2e%2e HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body, _ = read_response(s)
    assert status == 200
    assert up.requests[0]["line"] == "GET /a/b/~user/%3F?q=%2e%2e HTTP/1.1"
    # Refused: climbing above the root, and encoded slashes, which many
    # servers decode into separators (one path to rampart, another upstream).
    for bad in (b"/../etc/passwd", b"/v1/chat%2Fcompletions", b"/a%5c..%5cb"):
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % bad)
        status, _, body, _ = read_response(s)
        assert status == 400 and json.loads(body)["error"]["code"] == "bad_path", bad
    assert len(up.requests) == 1
    up.close()


# --------------------------------------------------------------------------
# 6./7. what may go back to the upstream pool


def test_upstream_connection_close_is_not_pooled(gateway):
    def handler(conn, req):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        time.sleep(0.3)  # close a little later, as a real server may
        return False
    up = Upstream(handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    for i in range(3):
        s.sendall(b"GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        status, _, body, _ = read_response(s)
        assert (status, body) == (200, b"ok"), i
    assert up.connections == 3
    up.close()


def test_http10_upstream_response_is_not_pooled(gateway):
    def handler(conn, req):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        time.sleep(0.3)
        return False
    up = Upstream(handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    for i in range(3):
        s.sendall(b"GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        status, _, body, _ = read_response(s)
        assert (status, body) == (200, b"ok"), i
    up.close()


def test_late_bytes_after_a_bodyless_response_reach_nobody(gateway):
    def handler(conn, req):
        method, path = req["line"].split(" ")[:2]
        if method == "HEAD" or path == "/nocontent":
            head = (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n" if method == "HEAD"
                    else b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\n")
            conn.sendall(head)
            time.sleep(0.05)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
            return
        respond(conn, 200, b"good " + path.encode())
    up = Upstream(handler)
    gw = gateway([up.port])
    for first in (b"HEAD /h HTTP/1.1", b"GET /nocontent HTTP/1.1"):
        s = connect(gw.port)
        s.sendall(first + b"\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert b"EVIL" not in head
        if b" 204 " in head.split(b"\r\n")[0]:
            assert b"content-length" not in head.lower()
        for i in range(3):
            s.sendall(b"GET /next%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            status, _, body, _ = read_response(s)
            assert (status, body) == (200, b"good /next%d" % i), (first, body)
        s.close()
    up.close()


def test_bytes_past_content_length_close_the_upstream(gateway):
    def handler(conn, req):
        path = req["line"].split(" ")[1]
        if path == "/extra":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
            return
        respond(conn, 200, b"good")
    up = Upstream(handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"GET /extra HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(s)[2] == b"ok"
    time.sleep(0.1)
    s.sendall(b"GET /n HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(s)[2] == b"good"
    up.close()


# --------------------------------------------------------------------------
# 8. pipelining after a locally generated reply


def test_pipelined_request_after_a_local_reply_is_answered(gateway):
    up = Upstream(ok_handler)
    gw = gateway([up.port], extra="routes:\n  - {prefix: /ok, upstream: app}\n")
    s = connect(gw.port)
    s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /ok1 HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /nope2 HTTP/1.1\r\nHost: x\r\n\r\nGET /ok2 HTTP/1.1\r\nHost: x\r\n\r\n")
    got = []
    rest = b""
    for _ in range(4):
        status, hdrs, body, rest = read_response_buffered(s, rest)
        got.append((status, body[:9]))
    assert [g[0] for g in got] == [404, 200, 404, 200]
    assert got[1][1] == b"hello /ok" and got[3][1] == b"hello /ok"
    up.close()


def read_response_buffered(s, rest):
    """read_response that starts from bytes already received."""
    class Pre:
        def __init__(self, sock, pre):
            self.sock, self.pre = sock, pre

        def settimeout(self, t):
            self.sock.settimeout(t)

        def recv(self, n):
            if self.pre:
                d, self.pre = self.pre, b""
                return d
            return self.sock.recv(n)
    return read_response(Pre(s, rest))


# --------------------------------------------------------------------------
# 9. framing details


def test_http10_client_without_host_gets_a_host_upstream(gateway):
    up = Upstream(ok_handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"GET /old HTTP/1.0\r\n\r\n")
    status, _, body, _ = read_response(s)
    assert status == 200
    hosts = up.requests[0]["headers"].get("host")
    assert hosts == [f"127.0.0.1:{up.port}"], hosts
    assert up.requests[0]["line"].endswith("HTTP/1.1")
    up.close()


def test_oversized_chunk_size_from_upstream_is_502(gateway):
    def handler(conn, req):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nx")
        time.sleep(0.5)
        return False
    up = Upstream(handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body, _ = read_response(s)
    assert status == 502
    assert json.loads(body)["error"]["code"] == "bad_upstream_response"
    up.close()


# --------------------------------------------------------------------------
# 10. a reply that ends the connection is read by the client, not reset


@pytest.mark.parametrize("what", ["header", "uri"])
def test_huge_head_gets_its_error_reply(gateway, what):
    up = Upstream(ok_handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    if what == "header":
        req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000000 + b"\r\n\r\n"
    else:
        req = b"GET /" + b"a" * 4000000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    # Send everything before reading anything, as a client that writes
    # its request whole first does: without a lingering close the reset
    # that answers the unread bytes destroys the reply.
    try:
        s.sendall(req)
    except OSError as e:
        pytest.fail(f"rampart reset the connection while the client was sending: {e}")
    status, hdrs, body, _ = read_response(s, timeout=10)
    assert status in (431, 414), status
    assert hdrs.get("connection") == "close"
    up.close()


# --------------------------------------------------------------------------
# 11. a stream the upstream cuts is an error, visibly and in every count


def test_cut_stream_ends_with_an_error_event_and_counts_as_failure(gateway):
    def handler(conn, req):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(3):
            ev = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
            conn.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
            time.sleep(0.05)
        return False  # cut: no [DONE], no last chunk
    up = Upstream(handler)
    gw = gateway([up.port], admin=True)
    s = connect(gw.port)
    s.sendall(chat_request())
    s.settimeout(5)
    raw = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        raw += d
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b" 200 " in head.split(b"\r\n")[0]
    assert b"[DONE]" not in body
    assert not body.endswith(b"0\r\n\r\n"), "the cut must stay visible in the framing"
    events = [l for l in body.split(b"\n") if l.startswith(b"data: {\"error\"")]
    assert len(events) == 1, body
    err = json.loads(events[0][6:])["error"]
    assert err["code"] == "upstream_closed" and err["type"] == "upstream_error"
    gw.stop()
    line = access_log(gw)[-1]
    assert line["outcome"] == "upstream_closed_mid_response"
    up.close()


def test_connection_counts_return_to_baseline(gateway):
    """Every way a client or upstream can end an exchange leaves nothing
    open behind it."""
    def handler(conn, req):
        path = req["line"].split(" ")[1]
        if path == "/close":
            return False
        if path == "/cut":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            return False
        respond(conn, 200, b"ok")
    up = Upstream(handler)
    gw = gateway([up.port], admin=True, extra="timeouts: {client_body: 300ms, client_header: 300ms, lingering: 300ms}\n")
    base = connections(gw)
    socks = []
    for raw in (b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n",
                b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
                b"GET /partial-head HTTP/1.1\r\nHo", b"garbage\r\n\r\n",
                b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"):
        s = connect(gw.port)
        s.sendall(raw)
        socks.append(s)
    time.sleep(0.1)
    socks[-1].close()  # vanishes before reading
    assert wait_for(lambda: connections(gw) <= base + len(socks) - 1, timeout=5)
    for s in socks[:-1]:
        s.settimeout(5)
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass
    for s in socks:
        s.close()
    assert wait_for(lambda: connections(gw) == base, timeout=5), connections(gw)
    fds = len(os.listdir(f"/proc/{gw.p.pid}/fd"))
    assert fds < 40, fds
    up.close()


def test_client_that_stops_reading_is_cut_at_the_send_timeout(gateway):
    """A client that never reads its (large) answer holds a connection and
    an upstream slot only until `send` runs out; then both are freed and
    the log says why."""
    big = b"y" * (8 << 20)

    def handler(conn, req):
        try:
            respond(conn, 200, big)
        except OSError:
            pass
    up = Upstream(handler)
    gw = gateway([up.port], admin=True, extra="timeouts: {send: 500ms}\n")
    base = connections(gw)
    s = connect(gw.port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    # never read: rampart must give up on its own
    assert wait_for(lambda: connections(gw) == base, timeout=10), connections(gw)
    s.close()
    gw.stop()
    line = access_log(gw)[-1]
    assert (line["status"], line["outcome"]) == (200, "client_send_timeout")
    assert line["bytes_out"] < len(big)
    up.close()
