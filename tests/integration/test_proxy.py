"""The gateway core against scripted upstreams on loopback.

Each test starts build/rampart with a generated config in front of one or
more small Python upstreams whose behaviour the test scripts, then talks to
rampart over raw sockets so every byte on the wire is under control.
"""
import json
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import binary, free_port
from wire import Upstream, respond, ok_handler, read_response, connect, write_config


# --------------------------------------------------------------------------
# tests


def test_forwards_and_reuses_connections_both_sides(gateway):
    up = Upstream(ok_handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    for i in range(5):
        s.sendall(f"GET /a{i}?secret=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, hdrs, body, rest = read_response(s)
        assert status == 200
        assert body == f"hello /a{i}?secret=1".encode()
        assert rest == b""
    s.close()
    # five requests on one client connection reused one upstream connection
    assert up.connections == 1
    assert len(up.requests) == 5
    up.close()


def test_forwarding_headers(gateway):
    up = Upstream(ok_handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: x-drop, keep-alive\r\n"
              b"X-Drop: 1\r\nKeep-Alive: 5\r\nX-Keep: a\r\nX-Request-Id: abc-123\r\n\r\n")
    status, hdrs, body, _ = read_response(s)
    assert status == 200
    req = up.requests[0]["headers"]
    assert req["x-forwarded-for"] == ["10.0.0.1, 127.0.0.1"]
    assert req["x-forwarded-proto"] == ["http"]
    assert req["x-request-id"] == ["abc-123"]
    assert hdrs["x-request-id"] == "abc-123"
    assert "x-drop" not in req and "keep-alive" not in req and "connection" not in req
    assert req["x-keep"] == ["a"]
    # client order is kept
    names = [l.split(b":")[0].lower() for l in up.requests[0]["raw_head"].split(b"\r\n")[1:]]
    assert names.index(b"host") < names.index(b"x-forwarded-for") < names.index(b"x-keep")
    # a generated id when the client sends an invalid one
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: bad id!\r\n\r\n")
    status, hdrs, _, _ = read_response(s)
    assert len(hdrs["x-request-id"]) == 32 and hdrs["x-request-id"] != "bad id!"
    up.close()


def test_connection_header_cannot_remove_framing(gateway):
    up = Upstream(lambda c, r: respond(c, 200, r["body"]))
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello")
    status, _, body, _ = read_response(s)
    assert status == 200 and body == b"hello"
    assert up.requests[0]["headers"]["content-length"] == ["5"]
    up.close()


def test_chunked_request_and_response(gateway):
    def handler(conn, req):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")

    up = Upstream(handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    status, hdrs, body, _ = read_response(s)
    assert status == 200
    assert hdrs["transfer-encoding"] == "chunked"
    assert body == b"hello world"
    assert up.requests[0]["body"] == b"3\r\nabc\r\n0\r\n\r\n"
    # same connection still usable
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(s)[0] == 200
    up.close()


def test_http10_client_gets_dechunked_body_and_close(gateway):
    def handler(conn, req):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")

    up = Upstream(handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    status, hdrs, body, _ = read_response(s)
    assert status == 200 and body == b"abc"
    assert "transfer-encoding" not in hdrs
    up.close()


def test_pipelined_requests_answered_in_order(gateway):
    def handler(conn, req):
        path = req["line"].split(" ")[1]
        if path == "/slow":
            time.sleep(0.3)
        respond(conn, 200, path.encode())

    up = Upstream(handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(10)
    data = b""
    deadline = time.time() + 10
    while data.count(b"HTTP/1.1 200") < 3 and time.time() < deadline:
        data += s.recv(65536)
    assert data.count(b"HTTP/1.1 200") == 3
    assert data.index(b"/slow") < data.index(b"/fast") < data.index(b"/third")
    up.close()


def test_sse_first_event_arrives_before_upstream_finishes(gateway):
    release = threading.Event()

    def handler(conn, req):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        ev = b'data: {"n":1}\n\n'
        conn.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
        release.wait(10)
        ev = b"data: [DONE]\n\n"
        conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(ev), ev))

    up = Upstream(handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    s.settimeout(5)
    data = b""
    while b'data: {"n":1}' not in data:
        d = s.recv(65536)
        assert d, "connection closed before the first event"
        data += d
    assert b"[DONE]" not in data  # the upstream has not finished yet
    release.set()
    while not data.endswith(b"0\r\n\r\n"):
        data += s.recv(65536)
    assert b"[DONE]" in data
    up.close()


def test_client_disconnect_mid_stream_cancels_upstream(gateway):
    upstream_saw_close = threading.Event()

    def handler(conn, req):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for i in range(400):
                ev = b"data: tok\n\n"
                conn.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
                time.sleep(0.02)
        except OSError:
            upstream_saw_close.set()
        return False

    up = Upstream(handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    data = b""
    while b"data: tok" not in data:
        d = s.recv(65536)
        assert d
        data += d
    s.close()
    assert upstream_saw_close.wait(5), "upstream kept streaming to a client that left"
    up.close()


def test_slow_reading_client_keeps_memory_bounded(gateway):
    total = 64 * 1024 * 1024
    sent = {"n": 0}

    def handler(conn, req):
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode())
        chunk = b"x" * 65536
        try:
            while sent["n"] < total:
                conn.sendall(chunk)
                sent["n"] += len(chunk)
        except OSError:
            pass
        return False

    up = Upstream(handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    s.recv(1024)
    time.sleep(1.5)
    # The upstream is blocked by backpressure long before the whole body:
    # what it managed to send sits in kernel socket buffers (a few MiB
    # each way on loopback) and in rampart's fixed buffers.
    assert sent["n"] < 32 * 1024 * 1024
    with open(f"/proc/{gw.p.pid}/status") as f:
        rss_kb = int([l for l in f if l.startswith("VmRSS")][0].split()[1])
    assert rss_kb < 64 * 1024
    # Now read everything: the stream completes intact.
    got = 0
    s.settimeout(30)
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        got += len(d)
        if got >= total - 1024:
            break
    assert got >= total - 1024
    up.close()


def test_upstream_connect_failure_is_502_json(gateway):
    dead = free_port()
    gw = gateway([dead])
    s = connect(gw.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, hdrs, body, _ = read_response(s)
    assert status == 502
    err = json.loads(body)["error"]
    assert err["type"] and err["message"] and err["code"]


def test_upstream_timeout_is_504(gateway):
    def handler(conn, req):
        time.sleep(3)

    up = Upstream(handler)
    gw = gateway([up.port], extra="    first_byte_timeout: 500ms\n")
    s = connect(gw.port)
    t0 = time.monotonic()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, hdrs, body, _ = read_response(s)
    assert status == 504
    assert time.monotonic() - t0 < 2.5
    assert "error" in json.loads(body)
    up.close()


def test_malformed_upstream_response_is_502(gateway):
    def handler(conn, req):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
        return False

    up = Upstream(handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body, _ = read_response(s)
    assert status == 502
    assert b"hello" not in body
    up.close()


@pytest.mark.parametrize("raw,status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
])
def test_ambiguous_requests_are_refused(gateway, raw, status):
    up = Upstream(ok_handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(raw)
    got, hdrs, body, _ = read_response(s)
    assert got == status
    assert hdrs.get("connection") == "close"
    assert "error" in json.loads(body)
    assert up.requests == []
    up.close()


def test_expect_100_continue(gateway):
    up = Upstream(lambda c, r: respond(c, 200, r["body"]))
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    s.settimeout(5)
    interim = s.recv(1024)
    assert interim.startswith(b"HTTP/1.1 100")
    s.sendall(b"data")
    status, _, body, _ = read_response(s)
    assert status == 200 and body == b"data"
    assert "expect" not in up.requests[0]["headers"]
    up.close()


def test_graceful_drain_on_sigterm(gateway):
    def handler(conn, req):
        time.sleep(1.0)
        respond(conn, 200, b"finished")

    up = Upstream(handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    gw.p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # no new connections are accepted while draining
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=1).recv(1)
    status, hdrs, body, _ = read_response(s)
    assert status == 200 and body == b"finished"
    assert hdrs.get("connection") == "close"
    assert gw.p.wait(timeout=10) == 0
    up.close()


def test_access_log_has_no_secrets(gateway):
    up = Upstream(ok_handler)
    gw = gateway([up.port])
    s = connect(gw.port)
    s.sendall(b"POST /v1/chat/completions?key=sekrit-query HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: Bearer sk-supersecret\r\nCookie: session=cookiesecret\r\n"
              b"Content-Length: 64\r\n\r\n"
              b'{"messages":[{"role":"user","content":"prompt-private"}]}       ')
    assert read_response(s)[0] == 200
    s.close()
    gw.stop()
    out, err = gw.output()
    lines = [json.loads(l) for l in out.decode().splitlines() if l.startswith("{")]
    assert lines, "no access log line"
    line = lines[-1]
    assert line["path"] == "/v1/chat/completions"
    assert line["status"] == 200 and line["method"] == "POST"
    for key in ("request_id", "first_byte_ms", "total_ms", "upstream", "bytes_out"):
        assert key in line
    blob = out + err
    for secret in (b"sekrit-query", b"sk-supersecret", b"cookiesecret", b"prompt-private"):
        assert secret not in blob
    up.close()


def test_metrics_and_healthz(gateway):
    up = Upstream(ok_handler)
    gw = gateway([up.port], admin=True)
    s = connect(gw.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    read_response(s)
    a = connect(gw.admin_port)
    a.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body, _ = read_response(a)
    assert status == 200
    text = body.decode()
    assert 'rampart_requests_total{upstream="app",class="2xx"} 1' in text
    assert "rampart_first_byte_seconds_bucket" in text
    assert "rampart_upstream_connect_errors_total" in text
    a.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(a)[0] == 200
    up.close()


def test_config_check_reports_every_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: 127.0.0.1:notaport\nupstreams:\n  a:\n    servers: [127.0.0.1:1]\n"
                   "    connect_timeout: 10x\n  b:\n    servers: [127.0.0.1:2]\n"
                   "routes:\n  - prefix: /\n    upstream: nope\nbogus: 1\n")
    r = subprocess.run([binary("rampart"), "-t", "-c", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    errs = [l for l in r.stderr.splitlines() if l.startswith(str(bad) + ":")]
    assert len(errs) >= 4
    text = r.stderr
    assert f"{bad}:1:" in text          # bad address
    assert f"{bad}:5:" in text          # bad duration
    assert f"{bad}:10:" in text         # missing upstream
    assert f"{bad}:11:1:" in text       # unknown key
    good = tmp_path / "good.yaml"
    good.write_text("listen: 127.0.0.1:8080\nupstreams:\n  chat:\n    servers: [127.0.0.1:9001, 127.0.0.1:9002]\n"
                    "admin:\n  listen: 127.0.0.1:9901\n")
    r = subprocess.run([binary("rampart"), "-t", "-c", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_cli_flags():
    r = subprocess.run([binary("rampart"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("rampart ")
    r = subprocess.run([binary("rampart"), "-h"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: rampart" in r.stdout
    r = subprocess.run([binary("rampart"), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage:" in r.stderr


def test_listen_address_in_use_is_a_clean_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = write_config(tmp_path, port, [free_port()])
        r = subprocess.run([binary("rampart"), "-c", cfg], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in r.stderr
