"""llmsim: wire format, capacity model, aborts, fault injection, control API.

Each test starts its own build/llmsim on a free loopback port.  Timing
assertions use generous bounds (the model's numbers are chosen so that the
expected effect is several times larger than scheduling noise).
"""
import http.client
import json
import signal
import socket
import time

import pytest

from conftest import binary, free_port, wait_for


def start_sim(procs, *args):
    port = free_port()
    procs([binary("llmsim"), "--port", str(port), "--seed", "7", *args], wait_for_port=port)
    return port


def request(port, method, path, body=None, headers=None, timeout=10):
    """One request on a fresh connection: (status, headers dict, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, out


def chat(port, **kw):
    body = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}
    body.update(kw)
    return request(port, "POST", "/v1/chat/completions", body)


def stats(port):
    st, _, b = request(port, "GET", "/sim/stats")
    assert st == 200
    return json.loads(b)


def config(port, body):
    st, _, b = request(port, "POST", "/sim/config", body)
    return st, json.loads(b)




class Stream:
    """A streaming chat completion read event by event over a raw socket,
    so the test controls exactly when the client leaves."""

    def __init__(self, port, max_tokens, prompt="hi"):
        body = json.dumps({"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                           "stream": True, "stream_options": {"include_usage": True}}).encode()
        self.t0 = time.monotonic()
        self.s = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.buf = b""
        self.head = None
        self.ttft = None

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        self.head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return self.head

    def next_event(self):
        """The payload of the next SSE event (chunked framing stripped)."""
        if self.head is None:
            self.read_head()
        while True:
            # chunk: size CRLF data CRLF; each llmsim event is one chunk
            if b"\r\n" in self.buf:
                size_line, rest = self.buf.split(b"\r\n", 1)
                n = int(size_line, 16)
                if len(rest) >= n + 2:
                    data, self.buf = rest[:n], rest[n + 2:]
                    if n == 0:
                        return None
                    assert data.startswith(b"data: ") and data.endswith(b"\n\n"), data
                    payload = data[6:-2].decode()
                    if self.ttft is None and '"content":"' in payload and '"content":""' not in payload:
                        self.ttft = time.monotonic() - self.t0
                    return payload
            self._fill()

    def close(self):
        self.s.close()


# --------------------------------------------------------------------------


def test_stream_format_and_usage_chunk(procs):
    port = start_sim(procs, "--token-ms", "5", "--version", "v7")
    ev = Stream(port, max_tokens=5)
    head = ev.read_head().decode().lower()
    assert head.startswith("http/1.1 200")
    assert "content-type: text/event-stream" in head
    assert "transfer-encoding: chunked" in head
    assert "x-llmsim-version: v7" in head
    events = []
    while True:
        e = ev.next_event()
        if e is None:
            break
        events.append(e)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    for c in chunks:
        assert c["object"] == "chat.completion.chunk"
        assert c["system_fingerprint"] == "v7"
        assert isinstance(c["created"], int)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c["choices"][0]["delta"]["content"] for c in chunks
               if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) == 5
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == "length"
    usage = chunks[-1]
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 5
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 5
    ev.close()


def test_stream_without_usage_and_non_stream_shape(procs):
    port = start_sim(procs, "--token-ms", "1", "--default-tokens", "40")
    st, h, b = chat(port, stream=True, max_tokens=3)
    assert st == 200
    lines = [l for l in b.decode().split("\n") if l.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert all(json.loads(l[6:])["choices"] for l in lines[:-1])  # no usage chunk

    st, h, b = chat(port, max_tokens=4)
    assert st == 200 and h["content-type"] == "application/json" and h["x-llmsim-version"] == "v1"
    d = json.loads(b)
    assert d["object"] == "chat.completion" and d["model"] == "m"
    assert d["choices"][0]["message"]["role"] == "assistant"
    assert len(d["choices"][0]["message"]["content"].split()) == 4
    assert d["choices"][0]["finish_reason"] == "length"
    assert d["usage"]["completion_tokens"] == 4
    assert d["usage"]["prompt_tokens"] == 3  # "hello there" = 11 chars -> ceil(11/4)

    # without max_tokens: default length (40 +- 50%), finish "stop"
    st, h, b = chat(port)
    d = json.loads(b)
    assert 20 <= d["usage"]["completion_tokens"] <= 61
    assert d["choices"][0]["finish_reason"] == "stop"

    st, _, b = request(port, "GET", "/v1/models")
    assert st == 200 and json.loads(b)["data"][0]["id"] == "llmsim-1"
    st, _, _ = request(port, "GET", "/health")
    assert st == 200


def test_keepalive_pipelining_and_chunked_body(procs):
    port = start_sim(procs, "--token-ms", "1")
    body = json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}).encode()
    one = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    chunked = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % 5 + body[:5] + b"\r\n" + b"%x\r\n" % (len(body) - 5) + body[5:] + b"\r\n0\r\n\r\n")
    last = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(one + chunked + last)  # pipelined in one write
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.count(b'"object":"chat.completion"') == 2
    assert data.rstrip().endswith(b'{"status":"ok"}')


def test_queueing_beyond_slots(procs):
    # service time: 20 tokens * 20 ms * (1 + 1.0 * 1/1) ~ 0.8 s with both slots busy
    port = start_sim(procs, "--slots", "2", "--token-ms", "20", "--prefill-base-ms", "0",
                     "--prefill-per-token-us", "0")
    first = [Stream(port, 20), Stream(port, 20)]
    for s in first:
        s.next_event()  # running: role chunk
    third = Stream(port, 20)
    st = wait_for(lambda: (lambda d: d if d["queue_len"] == 1 else None)(stats(port)))
    assert st and st["slots_busy"] == 2 and st["queue_len"] == 1
    # the queued request's head is out already; its first token waits for a slot
    while third.ttft is None:
        third.next_event()
    assert third.ttft >= 0.5, third.ttft
    for s in first + [third]:
        s.close()


def test_abort_frees_slot(procs):
    port = start_sim(procs, "--slots", "1", "--token-ms", "50")
    a = Stream(port, 1000)
    a.next_event()
    a.next_event()
    queued = Stream(port, 1000)
    assert wait_for(lambda: stats(port)["queue_len"] == 1)
    queued.close()  # leaves while queued
    assert wait_for(lambda: stats(port)["queue_len"] == 0)
    a.close()  # leaves mid-stream
    st = wait_for(lambda: (lambda d: d if d["slots_busy"] == 0 else None)(stats(port)))
    assert st, stats(port)
    assert st["requests_aborted"] == 2
    assert st["tokens_wasted"] >= 1 and st["tokens_wasted"] == st["tokens_generated"]
    # the freed slot serves the next request at once
    b = Stream(port, 2)
    while b.ttft is None:
        b.next_event()
    assert b.ttft < 0.5
    b.close()


def test_no_abort_keeps_generating(procs):
    port = start_sim(procs, "--slots", "1", "--token-ms", "10", "--no-abort")
    a = Stream(port, 30)
    a.next_event()
    a.close()
    st = wait_for(lambda: (lambda d: d if d["slots_busy"] == 0 else None)(stats(port)))
    assert st["tokens_generated"] == 30
    assert st["tokens_wasted"] == 30
    assert st["tokens_after_disconnect"] >= 20
    assert st["requests_aborted"] == 1


def test_fault_injection(procs):
    port = start_sim(procs, "--error-rate", "1.0", "--token-ms", "1")
    st, h, b = chat(port, max_tokens=2)
    assert st == 500
    err = json.loads(b)["error"]
    assert err["type"] == "server_error" and "message" in err and "code" in err and "param" in err
    st, h, b = chat(port, max_tokens=2, stream=True)
    assert st == 500
    assert stats(port)["requests_failed"] == 2

    assert config(port, {"error_rate": 0, "added_latency_ms": 300})[0] == 200
    t = time.monotonic()
    st, _, _ = chat(port, max_tokens=1)
    assert st == 200 and time.monotonic() - t >= 0.29

    assert config(port, {"added_latency_ms": 0, "health_fail": True})[0] == 200
    assert request(port, "GET", "/health")[0] == 503
    assert config(port, {"health_fail": False})[0] == 200
    assert request(port, "GET", "/health")[0] == 200


def test_bad_release_and_version(procs):
    port = start_sim(procs, "--token-ms", "10")
    base = stats(port)["token_interval_ms"]
    st, cfg = config(port, {"version": "v2-canary", "bad_release": {"error_rate": 0, "token_slowdown": 3}})
    assert st == 200 and cfg["bad_release"]["token_slowdown"] == 3
    s = stats(port)
    assert s["version"] == "v2-canary"
    assert s["token_interval_ms"] == pytest.approx(3 * base)
    st, h, b = chat(port, max_tokens=1)
    assert h["x-llmsim-version"] == "v2-canary" and json.loads(b)["system_fingerprint"] == "v2-canary"
    config(port, {"bad_release": {"error_rate": 1.0}})
    assert chat(port, max_tokens=1)[0] == 500
    config(port, {"bad_release": None})
    assert chat(port, max_tokens=1)[0] == 200


def test_capacity_change(procs):
    port = start_sim(procs, "--slots", "1", "--token-ms", "20")
    streams = [Stream(port, 500) for _ in range(3)]
    assert wait_for(lambda: stats(port)["queue_len"] == 2)
    st, cfg = config(port, {"slots": 3})
    assert st == 200 and cfg["slots"] == 3
    s = stats(port)
    assert s["slots"] == 3 and s["slots_busy"] == 3 and s["queue_len"] == 0
    for x in streams:
        x.close()
    assert wait_for(lambda: stats(port)["slots_busy"] == 0)


@pytest.mark.parametrize("body,param", [
    ({"slots": 0}, "slots"),
    ({"slots": "4"}, "slots"),
    ({"error_rate": 1.5}, "error_rate"),
    ({"added_latency_ms": -1}, "added_latency_ms"),
    ({"version": "bad version!"}, "version"),
    ({"bad_release": {"error_rate": "x"}}, "bad_release.error_rate"),
    ({"bad_release": {"slow": 2}}, "bad_release.slow"),
    ({"bad_release": 3}, "bad_release"),
    ({"health_fail": "yes"}, "health_fail"),
    ({"nope": 1}, "nope"),
])
def test_config_rejects_bad_fields(procs, body, param):
    port = start_sim(procs)
    before = request(port, "GET", "/sim/config")[2]
    st, d = config(port, dict(body, error_rate=0.5) if "error_rate" not in body else body)
    assert st == 400
    assert d["error"]["param"] == param and d["error"]["message"]
    # nothing applied, not even the valid field next to the bad one
    assert request(port, "GET", "/sim/config")[2] == before


def test_chat_rejects_bad_input(procs):
    port = start_sim(procs)
    st, _, b = request(port, "POST", "/v1/chat/completions", b"{not json")
    assert st == 400 and json.loads(b)["error"]["type"] == "invalid_request_error"
    st, _, b = request(port, "POST", "/v1/chat/completions", {"model": "m"})
    assert st == 400 and json.loads(b)["error"]["param"] == "messages"
    st, _, b = chat(port, max_tokens=0)
    assert st == 400 and json.loads(b)["error"]["param"] == "max_tokens"
    st, _, b = chat(port, stream="yes")
    assert st == 400 and json.loads(b)["error"]["param"] == "stream"
    st, _, b = request(port, "POST", "/v1/chat/completions", {"messages": [{"content": "x"}]})
    assert st == 400 and json.loads(b)["error"]["param"] == "messages[0].role"
    st, _, _ = request(port, "POST", "/v1/chat/completions", b"x" * (1024 * 1024 + 1))
    assert st == 413
    st, h, _ = request(port, "DELETE", "/v1/chat/completions")
    assert st == 405 and h["allow"] == "POST"
    st, _, b = request(port, "GET", "/nowhere")
    assert st == 404 and json.loads(b)["error"]["code"] == "unknown_url"
    assert stats(port)["requests_rejected"] >= 8


def test_sigterm_exits_zero(procs):
    port = free_port()
    p = procs([binary("llmsim"), "--port", str(port)], wait_for_port=port)
    s = Stream(port, 1000)
    s.next_event()
    assert p.stop(signal.SIGTERM) == 0
    s.close()


def test_many_concurrent_streams(procs):
    """Hundreds of streams on one loop: every one completes with all tokens."""
    port = start_sim(procs, "--slots", "400", "--token-ms", "20", "--batch-slowdown", "0")
    n = 300
    socks = []
    body = json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": 10, "stream": True}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
           % len(body)) + body
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(req)
        socks.append(s)
    done = 0
    for s in socks:
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        if data.count(b'"content":"') == 11 and b"data: [DONE]" in data:  # role chunk + 10 tokens
            done += 1
    assert done == n
    assert stats(port)["requests_served"] == n


def test_slow_reader_is_served_and_stalled_reader_dropped(procs):
    port = start_sim(procs, "--token-ms", "0", "--batch-slowdown", "0")
    # A client that pauses reading gets the whole stream once it reads again.
    s = Stream(port, 4000)  # ~1 MB: more than the socket buffers hold unread
    s.read_head()
    time.sleep(0.8)
    data = s.buf
    while not data.endswith(b"\r\n0\r\n\r\n"):
        d = s.s.recv(1 << 20)
        assert d, "stream ended early"
        data += d
    s.close()
    assert data.count(b"data: ") == 4000 + 4  # role chunk, tokens, final chunk, usage, [DONE]
    assert data.count(b"data: [DONE]") == 1
    # A client that never reads is dropped once 4 MiB are pending.
    s = Stream(port, 60000)
    s.read_head()
    st = wait_for(lambda: (lambda d: d if d["requests_aborted"] == 1 else None)(stats(port)), timeout=20)
    assert st and st["slots_busy"] == 0
    s.close()
