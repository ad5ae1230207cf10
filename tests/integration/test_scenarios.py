"""Seeded scenarios: scripted clients and a scripted upstream draw their
behaviour from the traffic shapes of docs/testing.md, many at once, against
one rampart per batch, and every exchange is checked from the outside.

Each scenario's behaviour comes from random.Random(f"{seed}:{index}") alone,
so a failing scenario replays by itself:

    RAMPART_SCENARIO_SEED=1 RAMPART_SCENARIO_ONLY=17,240 \\
        python3 -m pytest -q tests/integration/test_scenarios.py

Environment: RAMPART_SCENARIO_SEED (default 1), RAMPART_SCENARIOS (how
many, default 3000), RAMPART_SCENARIO_BATCH (scenarios run at once against
one gateway, default 200), RAMPART_SCENARIO_ONLY (comma-separated indices), RAMPART_SCENARIO_REPORT (a
file that receives every failure, one per line; the assertion message shows
the first few of each invariant), RAMPART_SCENARIO_SKIP (upstream kinds or
client behaviours never drawn, e.g. late_cl,late_204,head_body: for triage;
it changes every draw, so quote it together with the seed).

The client tells the scripted upstream what to do in an `X-Scenario` header
(JSON with a unique token `t`); the upstream echoes the token in `X-Echo` and
in the body, so a byte of one exchange reaching another is visible.

Invariants (the name in brackets is what a failure message starts with):

- [response]     every request gets exactly one well-framed response of the
                 expected kind, or a close where the scenario allows one;
- [cross-talk]   a response carries the request id, echo header and body
                 token of its own request, and no stray bytes follow it;
- [cut-stream]   a stream the upstream cut never looks complete to the client
                 (no `data: [DONE]`); with EXPECT_ERROR_EVENT it carries an
                 OpenAI-style `data: {"error": ...}` event;
- [cancel]       a client that left stops the work upstream (mid-stream: the
                 upstream connection is closed; queued: nothing is sent);
- [leak]         after the batch rampart's sockets, descriptors and
                 rampart_client_connections return to their baseline;
- [quota]        generation requests admitted for a token-budgeted tenant
                 never exceed its budget (plus refill), path variants included;
                 a tenant whose budget is below every request it sends never
                 reaches the upstream, whatever spelling of the path it uses;
- [status-model] rampart_status_requests_total{class} agrees with what the
                 clients saw (good = non-5xx and complete), within the bounds
                 that ambiguous cases (a client leaving) allow;
- [access-log]   one access-log line per answered request, with its status;
                 a cut response is not logged with outcome "ok";
- [process]      rampart is still running and wrote no sanitizer report.

Durations are never asserted, only outcomes; the configuration uses short
timeouts (seconds) so stall behaviours resolve within a batch.
"""
import hashlib
import json
import math
import os
import random
import re
import socket
import threading
import time

import pytest

from conftest import Proc, binary, metric_sum, parse_metrics, wait_for, wait_port
from conftest import distinct_ports
from wire import Malformed, StreamReader, Timeout, Upstream, http_request, proc_fds

# Flip to False only to see which other invariants fail while rampart does
# not yet end a cut stream with an error event.
EXPECT_ERROR_EVENT = True

SEED = int(os.environ.get("RAMPART_SCENARIO_SEED", "1"))
COUNT = int(os.environ.get("RAMPART_SCENARIOS", "3000"))
BATCH = int(os.environ.get("RAMPART_SCENARIO_BATCH", "200"))
ONLY = [int(x) for x in os.environ.get("RAMPART_SCENARIO_ONLY", "").split(",") if x.strip()]
# Upstream kinds or client behaviours never to draw (triage: keeps one bug's
# fallout from hiding the others; it changes every draw, so quote it with the
# seed when reporting).
SKIP = {x.strip() for x in os.environ.get("RAMPART_SCENARIO_SKIP", "").split(",") if x.strip()}

# Timeouts of the generated configuration (seconds).
CLIENT_HEADER = 1.0
# Timeouts keep a margin of 1.5 s or more over every pause a scenario
# means to survive: 200 scripted clients share one Python process, and on a
# loaded 2-core machine a thread can be scheduled late by most of a second.
CLIENT_BODY = 2.0
CLIENT_IDLE = 2.0
SEND_TIMEOUT = 3.0
FIRST_BYTE = 4.0
UPSTREAM_IDLE = 1.5
POOL_IDLE = 1.0

READ_DEADLINE = 9.0         # per response; a scripted exchange never needs more
SCENARIO_JOIN = 30.0        # a scenario thread that runs longer is reported
BUDGET = 1000               # tokens_per_minute of tenant "budget"
BUDGET_MAX_TOKENS = 150
TINY_BUDGET = 100           # tenant "tiny": every request is too large
PROMPT = "hi"
PROMPT_EST = 8              # ceil(2 / 4) + 4 per message + 3 for the reply

PATH_VARIANTS = [
    "/v1/chat/completions",
    "/v1/chat/%63ompletions",
    "/v1/%63hat/completions",
    "/%761/chat/completions",
    "/v1/chat%2Fcompletions",
    "/v1//chat/completions",
    "//v1/chat/completions",
    "/v1/chat/completions/",
    "/v1/./chat/completions",
    "/v1/chat/./completions",
    "/v1/x/../chat/completions",
    "/v1/chat/completions?x=1",
    "http://127.0.0.1/v1/chat/completions",
]

# Upstream behaviours.  OK: a complete answer is expected.  FAIL: the
# upstream never sends a usable head, rampart answers 5xx.  CUT: the head
# went out, the body is cut.
OK_KINDS = {"cl", "big", "chunked", "sse", "sse_long", "sse10", "close", "closedelim", "http10",
            "slow_first", "late_cl", "late_204", "head_body", "204_cl", "gen"}
FAIL_KINDS = {"close_before", "stall_head", "big_head", "garbage_head"}
CUT_KINDS = {"cut_cl", "cut_chunked", "sse_cut", "stall_mid", "bad_chunk"}
SSE_KINDS = {"sse", "sse_long", "sse10", "sse_cut", "stall_mid", "bad_chunk"}

UPSTREAM_MIX = [
    ("cl", 12), ("chunked", 6), ("sse", 8), ("sse_long", 5), ("sse10", 2), ("close", 4), ("closedelim", 3),
    ("http10", 3), ("slow_first", 4), ("late_cl", 4), ("late_204", 2), ("head_body", 2), ("204_cl", 2),
    ("close_before", 3), ("stall_head", 2), ("big_head", 2), ("garbage_head", 1),
    ("cut_cl", 3), ("cut_chunked", 2), ("sse_cut", 3), ("stall_mid", 2), ("bad_chunk", 2),
]
CLIENT_MIX = [
    ("single", 18), ("keepalive", 14), ("pipeline", 12), ("slow_upload", 8), ("stalled_upload", 5),
    ("vanish", 12), ("slow_reader", 6), ("http10", 8), ("path", 7), ("quota", 7),
]
VANISH_STAGES = ["head", "body", "queued", "before_first_byte", "mid_stream"]


def pick(rng, mix):
    mix = [(n, w) for n, w in mix if n not in SKIP] or mix
    total = sum(w for _, w in mix)
    x = rng.uniform(0, total)
    for name, w in mix:
        x -= w
        if x <= 0:
            return name
    return mix[-1][0]


# --------------------------------------------------------------------------
# the scripted upstream


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse_event(tok, i):
    return f'data: {{"t":"{tok}","i":{i}}}\n\n'.encode()


POISON = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nX-Echo: POISON\r\nX-Up: 1\r\n\r\npoison-poison"


class ScriptedUpstream:
    """wire.Upstream with a handler that follows each request's X-Scenario
    spec.  Records which tokens arrived and which streams ran to their end
    (every write accepted)."""

    def __init__(self):
        self.seen = {}
        self.finished = set()
        self.conns, self.history, self.tok_conn = {}, {}, {}
        self.lock = threading.Lock()
        self.up = Upstream(self.handle)
        self.port = self.up.port

    def close(self):
        self.up.close()

    def handle(self, conn, req):
        try:
            spec = json.loads(req["headers"]["x-scenario"][0])
            tok, kind = spec["t"], spec["u"]
        except (KeyError, ValueError, TypeError):
            conn.sendall(b"HTTP/1.1 400 Bad\r\nContent-Length: 10\r\nX-Up: 1\r\n\r\nno spec!!\n")
            return True
        with self.lock:
            self.seen[tok] = self.seen.get(tok, 0) + 1
            key = id(conn)
            self.conns[key] = conn          # keeps id(conn) unique for the batch
            self.history.setdefault(key, []).append(f"{tok}:{kind}")
            self.tok_conn.setdefault(tok, []).append(key)
        keep = self.respond(conn, req, spec, tok, kind)
        with self.lock:
            self.finished.add(tok)
        return keep

    def respond(self, conn, req, spec, tok, kind):
        method = req["line"].split(" ", 1)[0]
        base = f"X-Echo: {tok}\r\nX-Up: 1\r\n"
        body = f'{{"token":"{tok}"}}'.encode() + b"x" * spec.get("pad", 0)
        send = conn.sendall

        def head(status="200 OK", extra="", version="HTTP/1.1"):
            return f"{version} {status}\r\n{base}{extra}".encode()

        if kind in ("cl", "big", "slow_first"):
            if kind == "slow_first":
                time.sleep(spec["s"])
            send(head(extra=f"Content-Length: {len(body)}\r\n\r\n") + (b"" if method == "HEAD" else body))
            return True
        if kind == "chunked":
            out = head(extra="Transfer-Encoding: chunked\r\n\r\n")
            n = max(1, spec.get("n", 3))
            step = max(1, math.ceil(len(body) / n))
            for i in range(0, len(body), step):
                out += chunk(body[i:i + step])
            send(out + b"0\r\n\r\n")
            return True
        if kind in ("sse", "sse_long", "sse_cut", "stall_mid", "sse10"):
            v10 = kind == "sse10"
            if v10:
                send(head(extra="Content-Type: text/event-stream\r\n\r\n", version="HTTP/1.0"))
            else:
                send(head(extra="Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"))
            wrap = (lambda d: d) if v10 else chunk
            for i, gap in enumerate(spec["gaps"]):
                time.sleep(gap)
                send(wrap(sse_event(tok, i)))
            if kind == "sse_cut":
                return False
            if kind == "stall_mid":
                time.sleep(spec["s"])
                return False
            send(wrap(b"data: [DONE]\n\n") + (b"" if v10 else b"0\r\n\r\n"))
            return not v10
        if kind == "close":
            send(head(extra=f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n") + body)
            return False
        if kind == "closedelim":
            send(head(extra="\r\n") + body)
            return False
        if kind == "http10":
            cl = f"Content-Length: {len(body)}\r\n" if spec.get("cl") else ""
            send(head(extra=cl + "\r\n", version="HTTP/1.0") + body)
            return False
        # Bytes past the end of a response, in the same write: a server
        # whose Content-Length is wrong.  Bytes written later, once rampart
        # has handed the connection to the next request, cannot be told
        # from that request's response (HTTP/1.1 carries no request id);
        # what rampart guarantees is that a pooled connection receiving
        # anything while idle is closed (see head_body, which arrives while
        # the connection would be idle) and that trailing bytes in the same
        # read are never forwarded.
        if kind == "late_cl":
            send(head(extra=f"Content-Length: {len(body)}\r\n\r\n") + body + POISON)
            return True
        if kind == "late_204":
            send(head("204 No Content", "\r\n") + POISON)
            return True
        if kind == "head_body":
            # a HEAD answer followed by the body a GET would have had
            send(head(extra=f"Content-Length: {len(body)}\r\n\r\n"))
            time.sleep(spec.get("late", 0))
            send(body)
            return True
        if kind == "204_cl":
            send(head("204 No Content", "Content-Length: 5\r\n\r\n"))
            return True
        if kind == "close_before":
            return False
        if kind == "stall_head":
            time.sleep(spec["s"])
            return False
        if kind == "big_head":
            send(head(extra="X-Big: " + "a" * 70000 + f"\r\nContent-Length: {len(body)}\r\n\r\n") + body)
            return False
        if kind == "garbage_head":
            send(b"HTP/1.1 two hundred\r\nwhat\r\n\r\n" + body)
            return False
        if kind == "cut_cl":
            send(head(extra=f"Content-Length: {len(body) + 1000}\r\n\r\n") + body)
            return False
        if kind == "cut_chunked":
            send(head(extra="Transfer-Encoding: chunked\r\n\r\n") + chunk(body))
            time.sleep(0.05)
            return False
        if kind == "bad_chunk":
            send(head(extra="Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                 + chunk(sse_event(tok, 0)))
            time.sleep(0.05)
            send(b"zz\r\n" + sse_event(tok, 1) + b"\r\n")
            time.sleep(0.1)
            return False
        if kind == "gen":
            m = spec.get("m", 16)
            usage = {"prompt_tokens": PROMPT_EST, "completion_tokens": m, "total_tokens": PROMPT_EST + m}
            cid = f"chatcmpl-{tok}"
            if spec.get("stream"):
                out = head(extra="Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                for _ in range(2):
                    ev = {"id": cid, "object": "chat.completion.chunk",
                          "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": None}]}
                    out += chunk(b"data: " + json.dumps(ev).encode() + b"\n\n")
                ev = {"id": cid, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                out += chunk(b"data: " + json.dumps(ev).encode() + b"\n\n") + chunk(b"data: [DONE]\n\n")
                send(out + b"0\r\n\r\n")
            else:
                doc = json.dumps({"id": cid, "object": "chat.completion", "model": "m",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                               "finish_reason": "length"}], "usage": usage}).encode()
                send(head(extra=f"Content-Type: application/json\r\nContent-Length: {len(doc)}\r\n\r\n") + doc)
            return True
        send(b"HTTP/1.1 500 Unknown\r\nContent-Length: 0\r\nX-Up: 1\r\n\r\n")
        return True


# --------------------------------------------------------------------------
# scenarios


class Req:
    """One request of a scenario and what it should get."""

    def __init__(self, tok, kind, spec, method="GET", path="/up/x", version="HTTP/1.1", host=True,
                 body=None, key=None, expect=None):
        self.tok = tok
        self.kind = kind
        self.spec = dict(spec, t=tok, u=kind)
        self.method = method
        self.path = path
        self.version = version
        self.host = host
        self.body = body
        self.key = key
        # expect: "upstream" (kind decides), ("local", {codes}), "path" (upstream or 400/404),
        # "quota" (upstream or 429/400/404), "408", "vanish"
        self.expect = expect or "upstream"
        self.outcome = None     # "response", "unanswered", "not_sent", "vanished", "timeout", "malformed", "error"
        self.resp = None
        # status-model classes this request may be counted in (any, until
        # the client has seen what happened)
        self.classes = {"good", "error", "excluded", "none"}

    def head_bytes(self, chunked=False, content_length=None):
        lines = [f"{self.method} {self.path} {self.version}"]
        if self.host:
            lines.append("Host: 127.0.0.1")
        lines.append(f"X-Request-Id: {self.tok}")
        lines.append("X-Scenario: " + json.dumps(self.spec, separators=(",", ":")))
        if self.key:
            lines.append(f"Authorization: Bearer {self.key}")
        if self.body is not None:
            if chunked:
                lines.append("Transfer-Encoding: chunked")
            else:
                lines.append(f"Content-Length: {len(self.body) if content_length is None else content_length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def raw(self):
        return self.head_bytes() + (self.body or b"")

    def short(self):
        params = {k: v for k, v in self.spec.items() if k not in ("t", "u", "pad")}
        p = json.dumps(params, separators=(",", ":")) if params else ""
        return f"{self.method} {self.path} {self.version} upstream={self.kind}{p} expect={self.expect}"


def gen_body(max_tokens, stream):
    return json.dumps({"model": "m", "max_tokens": max_tokens, "stream": stream,
                       "messages": [{"role": "user", "content": PROMPT}]}).encode()


def draw_spec(rng, kind):
    spec = {}
    if kind == "big":
        spec["pad"] = rng.randrange(100_000, 600_000)
    elif kind == "chunked":
        spec["n"] = rng.randrange(1, 6)
        spec["pad"] = rng.randrange(0, 5000)
    elif kind in ("cl", "cut_cl", "close", "closedelim", "http10", "slow_first", "late_cl", "head_body"):
        spec["pad"] = rng.randrange(0, 3000)
    if kind == "http10":
        spec["cl"] = rng.random() < 0.5
    if kind == "sse":
        spec["gaps"] = [round(rng.uniform(0, 0.15), 3) for _ in range(rng.randrange(1, 8))]
    elif kind == "sse_long":
        # spans more than client_header, each gap below the upstream idle timeout
        n = rng.randrange(3, 6)
        spec["gaps"] = [round(rng.uniform(0.35, 0.6), 3) for _ in range(n)]
    elif kind in ("sse10", "sse_cut"):
        spec["gaps"] = [round(rng.uniform(0, 0.2), 3) for _ in range(rng.randrange(1, 5))]
    elif kind == "stall_mid":
        spec["gaps"] = [0.0]
        spec["s"] = UPSTREAM_IDLE + 1.0
    if kind == "slow_first":
        # a long "thinking" pause: past client_header, within first_byte_timeout
        spec["s"] = round(rng.uniform(CLIENT_HEADER + 0.1, CLIENT_HEADER + 0.9), 3)
    elif kind == "stall_head":
        spec["s"] = FIRST_BYTE + 1.0
    if kind == "head_body":
        spec["late"] = rng.choice([0, 0, 0.02, 0.1, 0.3])
    return spec


class Scenario:
    def __init__(self, index, batch_keys):
        self.index = index
        rng = random.Random(f"{SEED}:{index}")
        self.rng = rng
        self.client = pick(rng, CLIENT_MIX)
        self.delay = round(rng.uniform(0, 0.5), 3)
        self.reqs = []
        self.failures = []
        self.keys = batch_keys
        self.stage = None
        self.slow = None
        self.crosstalk = set()      # tokens whose answer belonged to another exchange
        self.n = 0
        getattr(self, "_draw_" + self.client)()

    # -- drawing ------------------------------------------------------------

    def tok(self):
        self.n += 1
        return f"s{SEED}-{self.index}-{self.n}"

    def upstream_req(self, allow_head=True, kinds=None):
        kind = pick(self.rng, [(k, w) for k, w in UPSTREAM_MIX if kinds is None or k in kinds])
        spec = draw_spec(self.rng, kind)
        method = "GET"
        if kind == "head_body" or (allow_head and kind in ("cl", "late_cl") and self.rng.random() < 0.15):
            method = "HEAD"
        return Req(self.tok(), kind, spec, method=method, path=f"/up/{kind}")

    def local_error_req(self):
        if self.rng.random() < 0.5:
            return Req(self.tok(), "cl", {}, path="/nowhere/at/all", expect=("local", {404}))
        # tenant tiny's budget is smaller than any of its requests: refused
        # whatever spelling of the path is used
        return Req(self.tok(), "gen", {"m": 500}, method="POST", path=self.rng.choice(PATH_VARIANTS),
                   body=gen_body(500, False), key=self.keys["tiny"], expect=("local", {429, 400, 404}))

    def _draw_single(self):
        self.reqs = [self.upstream_req()]

    def _draw_keepalive(self):
        self.reqs = [self.upstream_req() for _ in range(self.rng.randrange(2, 5))]

    def _draw_pipeline(self):
        n = self.rng.randrange(2, 4)
        self.reqs = []
        for i in range(n):
            if i > 0 and self.rng.random() < 0.3:
                self.reqs.append(self.local_error_req())
            elif self.rng.random() < 0.25:
                self.reqs.append(self.local_error_req())
            else:
                self.reqs.append(self.upstream_req())

    def _draw_slow_upload(self):
        if self.rng.random() < 0.3:
            m = self.rng.randrange(4, 64)
            stream = self.rng.random() < 0.5
            r = Req(self.tok(), "gen", {"m": m, "stream": stream}, method="POST", path="/v1/chat/completions",
                    body=gen_body(m, stream))
        else:
            kind = pick(self.rng, [(k, w) for k, w in UPSTREAM_MIX if k in ("cl", "chunked", "sse", "sse_long")])
            r = Req(self.tok(), kind, draw_spec(self.rng, kind), method="POST", path="/up/upload",
                    body=bytes(self.rng.randrange(97, 123) for _ in range(self.rng.randrange(2000, 9000))))
        self.chunked_body = self.rng.random() < 0.3
        self.pieces = self.rng.randrange(3, 6)
        self.gaps = [round(self.rng.uniform(0.15, 0.5), 3) for _ in range(self.pieces)]
        self.reqs = [r]

    def _draw_stalled_upload(self):
        kind = "cl"
        self.chunked_body = self.rng.random() < 0.3
        path = "/v1/chat/completions" if self.rng.random() < 0.3 else "/up/upload"
        body = b"{" + b"a" * self.rng.randrange(3000, 9000)
        self.sent = self.rng.randrange(1, 2000)
        self.reqs = [Req(self.tok(), kind, {}, method="POST", path=path, body=body, expect="408")]

    def _draw_vanish(self):
        self.stage = self.rng.choice(VANISH_STAGES)
        self.leave_after = round(self.rng.uniform(0.05, 0.5), 3)
        self.rst = self.rng.random() < 0.5
        if self.stage == "queued":
            self.delay = round(0.3 + self.rng.uniform(0, 0.3), 3)
            r = Req(self.tok(), "cl", {}, path="/q/wait", expect="vanish")
        elif self.stage == "before_first_byte":
            r = Req(self.tok(), "slow_first", {"s": FIRST_BYTE - 0.5}, path="/up/think", expect="vanish")
        elif self.stage == "mid_stream":
            r = Req(self.tok(), "sse", {"gaps": [0.0, 0.4, 0.4, 0.4, 0.4]}, path="/up/stream", expect="vanish")
        elif self.stage == "body":
            r = Req(self.tok(), "cl", {}, method="POST", path="/up/upload", body=b"b" * 5000, expect="vanish")
        else:
            r = Req(self.tok(), "cl", {}, path="/up/head", expect="vanish")
        self.reqs = [r]

    def _draw_slow_reader(self):
        kind = "big" if self.rng.random() < 0.6 else "sse"
        spec = draw_spec(self.rng, kind)
        self.slow = (self.rng.choice([4096, 8192, 16384, 32768]), round(self.rng.uniform(0.002, 0.01), 4))
        self.reqs = [Req(self.tok(), kind, spec, path=f"/up/{kind}")]

    def _draw_http10(self):
        r = self.upstream_req()
        r.version = "HTTP/1.0"
        r.host = self.rng.random() < 0.6
        self.reqs = [r]

    def _draw_path(self):
        self.reqs = []
        for _ in range(self.rng.randrange(1, 3)):
            m = self.rng.randrange(4, 64)
            stream = self.rng.random() < 0.4
            self.reqs.append(Req(self.tok(), "gen", {"m": m, "stream": stream}, method="POST",
                                 path=self.rng.choice(PATH_VARIANTS), body=gen_body(m, stream), expect="path"))

    def _draw_quota(self):
        self.reqs = []
        for _ in range(self.rng.randrange(1, 4)):
            stream = self.rng.random() < 0.4
            self.reqs.append(Req(self.tok(), "gen", {"m": BUDGET_MAX_TOKENS, "stream": stream}, method="POST",
                                 path=self.rng.choice(PATH_VARIANTS), body=gen_body(BUDGET_MAX_TOKENS, stream),
                                 key=self.keys["budget"], expect="quota"))
        self.pipelined = self.rng.random() < 0.3

    # -- reporting ----------------------------------------------------------

    def describe(self):
        extra = f" stage={self.stage}" if self.stage else ""
        reqs = "; ".join(r.short() for r in self.reqs)
        return f"seed={SEED} index={self.index} client={self.client}{extra} requests=[{reqs}]"

    def fail(self, invariant, detail, req=None):
        where = f" request {req.tok} ({req.short()})" if req else ""
        if invariant == "cross-talk" and req is not None:
            self.crosstalk.add(req.tok)
        self.failures.append((invariant, f"[{invariant}] scenario {self.describe()}:{where} {detail}",
                              req.tok if req else None))

    # -- running ------------------------------------------------------------

    def run(self, port):
        time.sleep(self.delay)
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError as e:
            self.fail("response", f"connect failed: {e!r}")
            return
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            getattr(self, "_run_" + self.client, self._run_sequential)(s)
        except Exception as e:  # a client-side surprise is a failure too, with its cause
            self.fail("response", f"client raised {e!r}")
        finally:
            try:
                s.close()
            except OSError:
                pass
        for r in self.reqs:
            r.classes = status_classes(self, r)

    def _run_sequential(self, s):
        rd = StreamReader(s, slow=self.slow)
        for i, r in enumerate(self.reqs):
            try:
                s.sendall(r.raw())
            except OSError as e:
                self.fail("response", f"send failed on a connection that was kept open: {e!r}", r)
                r.outcome = "error"
                for q in self.reqs[i + 1:]:
                    q.outcome = "not_sent"
                return
            go_on = self.read_one(rd, r, last=(i == len(self.reqs) - 1))
            if not go_on:
                for q in self.reqs[i + 1:]:
                    q.outcome = "not_sent"
                return

    _run_single = _run_keepalive = _run_slow_reader = _run_http10 = _run_path = _run_sequential

    def _run_quota(self, s):
        if self.pipelined:
            return self._run_pipeline(s)
        return self._run_sequential(s)

    def _run_pipeline(self, s):
        rd = StreamReader(s)
        s.sendall(b"".join(r.raw() for r in self.reqs))
        for i, r in enumerate(self.reqs):
            go_on = self.read_one(rd, r, last=(i == len(self.reqs) - 1), pipelined=len(self.reqs) - i - 1)
            if not go_on:
                for q in self.reqs[i + 1:]:
                    q.outcome = "unanswered"
                return

    def _run_slow_upload(self, s):
        r = self.reqs[0]
        s.sendall(r.head_bytes(chunked=self.chunked_body))
        body = r.body
        step = math.ceil(len(body) / self.pieces)
        for k, gap in enumerate(self.gaps):
            time.sleep(gap)
            piece = body[k * step:(k + 1) * step]
            if not piece:
                continue
            data = chunk(piece) if self.chunked_body else piece
            try:
                s.sendall(data)
            except OSError as e:
                self.fail("response", f"upload refused after {k} of {self.pieces} pieces "
                                      f"(each gap below client_body): {e!r}", r)
                r.outcome = "error"
                return
        if self.chunked_body:
            s.sendall(b"0\r\n\r\n")
        self.read_one(StreamReader(s), r, last=True)

    def _run_stalled_upload(self, s):
        r = self.reqs[0]
        if self.chunked_body:
            s.sendall(r.head_bytes(chunked=True) + b"%x\r\n" % len(r.body) + r.body[:self.sent])
        else:
            s.sendall(r.head_bytes() + r.body[:self.sent])
        rd = StreamReader(s)
        deadline = time.monotonic() + READ_DEADLINE
        try:
            resp = rd.read_response(deadline, r.method)
        except Timeout:
            r.outcome = "timeout"
            self.fail("response", "stalled upload: neither 408 nor a close", r)
            return
        except Malformed as e:
            r.outcome = "malformed"
            self.fail("response", f"stalled upload: malformed response: {e}", r)
            return
        if resp["closed_before"]:
            r.outcome = "closed"
            self.fail("response", "stalled upload: closed without a 408", r)
            return
        r.outcome, r.resp = "response", resp
        self.check_ids(r, resp)
        if resp["status"] != 408:
            self.fail("response", f"stalled upload: expected 408, got {resp['status']} "
                                  f"{resp['body'][:200]!r}", r)
        if not resp["complete"]:
            self.fail("response", f"stalled upload: 408 not well framed ({resp['cut']})", r)
        extra, eof = rd.pending(3.0, deadline)
        if extra:
            self.fail("cross-talk", f"bytes after the 408: {extra[:200]!r}", r)
        if not eof:
            self.fail("response", "stalled upload: connection left open after the 408", r)

    def _run_vanish(self, s):
        r = self.reqs[0]
        r.outcome = "vanished"
        if self.stage == "head":
            raw = r.raw()
            s.sendall(raw[:self.rng.randrange(1, len(raw) - 4)])
            time.sleep(self.leave_after)
        elif self.stage == "body":
            s.sendall(r.head_bytes() + r.body[:self.rng.randrange(0, 2000)])
            time.sleep(self.leave_after)
        elif self.stage == "queued":
            s.sendall(r.raw())
            time.sleep(self.leave_after)
        elif self.stage == "before_first_byte":
            s.sendall(r.raw())
            time.sleep(min(self.leave_after * 2, FIRST_BYTE - 1.0))
        else:
            s.sendall(r.raw())
            s.settimeout(READ_DEADLINE)
            got = b""
            while b"data:" not in got:
                d = s.recv(65536)
                if not d:
                    self.fail("response", f"stream closed before its first event: {got[:300]!r}", r)
                    return
                got += d
        if self.rst:
            # leave with a reset instead of a FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    # -- checking ---------------------------------------------------------------

    def check_ids(self, r, resp):
        h = resp["headers"]
        rid = h.get("x-request-id")
        if rid != [r.tok] and (rid or resp["status"] not in (400, 414, 431)):
            self.fail("cross-talk", f"x-request-id {rid} on the response (status {resp['status']})", r)
        echo = h.get("x-echo")
        if echo and echo != [r.tok]:
            self.fail("cross-talk", f"the response carries another exchange's echo {echo} "
                                    f"(status {resp['status']}, body {resp['body'][:120]!r})", r)

    def read_one(self, rd, r, last, pipelined=0):
        """Read and check the response to r; True when the connection can
        carry the next request."""
        deadline = time.monotonic() + READ_DEADLINE
        try:
            resp = rd.read_response(deadline, r.method)
            while resp.get("interim"):
                resp = rd.read_response(deadline, r.method)
        except Timeout:
            r.outcome = "timeout"
            what = f" ({pipelined} more pipelined behind it)" if pipelined else ""
            self.fail("response", f"no response within {READ_DEADLINE:.0f}s{what}", r)
            return False
        except Malformed as e:
            r.outcome = "malformed"
            self.fail("response", f"malformed response: {e}", r)
            return False
        if resp["closed_before"]:
            r.outcome = "closed"
            prev = self.reqs[self.reqs.index(r) - 1] if self.reqs.index(r) > 0 else None
            if prev is not None and prev.resp is not None:
                pc = ",".join(prev.resp["headers"].get("connection", []))
                how = "pipelined behind" if self.client in ("pipeline", "quota") else "sent after"
                self.fail("response", f"connection closed without answering a request {how} a response "
                                      f"that kept the connection (status {prev.resp['status']}, "
                                      f"Connection: {pc or '-'})", r)
            elif not self.close_allowed(r):
                self.fail("response", "connection closed without any response", r)
            return False
        r.outcome, r.resp = "response", resp
        self.check_ids(r, resp)
        if r.tok not in self.crosstalk:     # someone else's answer: judged once, as cross-talk
            self.check_expectation(r, resp)
        conn_close = "close" in ",".join(resp["headers"].get("connection", [])).lower()
        v10 = resp["version"] == "HTTP/1.0" or r.version == "HTTP/1.0"
        keep_alive_10 = "keep-alive" in ",".join(resp["headers"].get("connection", [])).lower()
        must_close = conn_close or resp["framing"] == "close" or not resp["complete"] or (v10 and not keep_alive_10)
        if must_close:
            extra, eof = rd.pending(3.0)
            if extra:
                self.fail("cross-talk", f"bytes after a response that ends the connection: {extra[:200]!r}", r)
            if not eof and resp["complete"]:
                why = "Connection: close" if conn_close else "HTTP/1.0" if v10 else resp["framing"]
                self.fail("response", f"connection left open after a response that ends it ({why})", r)
            return False
        if last:
            extra, eof = rd.pending(0.3)
            if extra:
                self.fail("cross-talk", f"stray bytes after the last response "
                                        f"(status {resp['status']}): {extra[:200]!r}", r)
        return True

    def close_allowed(self, r):
        return r.kind in CUT_KINDS

    def check_expectation(self, r, resp):
        st = resp["status"]
        h = resp["headers"]
        body = resp["body"]
        from_up = "x-up" in h
        if r.expect == "408":
            return
        if isinstance(r.expect, tuple):
            codes = r.expect[1]
            if st not in codes or from_up:
                self.fail("response", f"expected a local {sorted(codes)}, got {st} (from upstream: {from_up}) "
                                      f"{body[:200]!r}", r)
            elif not resp["complete"]:
                self.fail("response", f"local {st} not well framed ({resp['cut']})", r)
            return
        if r.expect in ("path", "quota"):
            local_ok = {400, 404} | ({429} if r.expect == "quota" else set())
            if not from_up:
                if st not in local_ok:
                    self.fail("response", f"path variant: expected the upstream's answer or a local "
                                          f"{sorted(local_ok)}, got {st} {body[:200]!r}", r)
                return
        if r.kind in OK_KINDS:
            problems = []
            if not from_up:
                problems.append(f"a local {st} instead of the upstream's answer")
            else:
                want = 204 if r.kind in ("late_204", "204_cl") else 200
                if st != want:
                    problems.append(f"status {st}, expected {want}")
                if not resp["complete"]:
                    problems.append(f"body cut ({resp['cut']})")
                has_body = r.method != "HEAD" and st not in (204, 304)
                if has_body and r.tok.encode() not in body:
                    problems.append(f"its token is missing from the body {body[:160]!r}")
                if b"POISON" in body or b"poison-poison" in body:
                    problems.append("another exchange's late bytes in the body")
                if r.kind in SSE_KINDS or (r.kind == "gen" and r.spec.get("stream")):
                    if b"data: [DONE]" not in body:
                        problems.append("stream without data: [DONE]")
                if r.kind == "big" and has_body and len(body) != len(f'{{"token":"{r.tok}"}}') + r.spec["pad"]:
                    problems.append(f"body of {len(body)} bytes")
            if problems:
                self.fail("response", "expected a complete answer: " + "; ".join(problems)
                          + f" (status {st}, framing {resp['framing']}, {len(body)} body bytes)", r)
            return
        if r.kind in FAIL_KINDS:
            if from_up or st not in (502, 503, 504):
                self.fail("response", f"upstream gave no usable head: expected 502/503/504, got {st} "
                                      f"(from upstream: {from_up}) {body[:200]!r}", r)
            elif not resp["complete"]:
                self.fail("response", f"local {st} not well framed ({resp['cut']})", r)
            return
        if r.kind in CUT_KINDS:
            if not from_up:
                if st not in (502, 503, 504):
                    self.fail("response", f"cut upstream answer: expected a cut stream or 502/504, got {st}", r)
                return
            sse = "text/event-stream" in ",".join(h.get("content-type", []))
            looks_complete = resp["complete"] and (not sse or b"data: [DONE]" in body)
            # close-delimited framing (all an HTTP/1.0 client can get for an
            # answer of unknown length) cannot tell a cut from an end
            undetectable = resp["framing"] == "close" and r.version == "HTTP/1.0" and not sse
            if looks_complete and not undetectable:
                self.fail("cut-stream", f"the upstream cut its answer but the client got a complete one "
                                        f"(framing {resp['framing']}, {len(body)} bytes, "
                                        f"tail {body[-120:]!r})", r)
            if sse and b"data: [DONE]" in body:
                self.fail("cut-stream", "a cut stream ends with data: [DONE]", r)
            if sse and EXPECT_ERROR_EVENT and not re.search(rb'data: ?\{\s*"error"', body):
                self.fail("cut-stream", f"cut stream without a data: {{\"error\": ...}} event "
                                        f"(ended by {resp['cut'] or 'a complete framing'}, "
                                        f"tail {body[-120:]!r})", r)
            return


def status_classes(sc, r):
    """The status-model classes (good, error, excluded, none = not counted)
    that request r may legitimately be counted in, from what the client saw."""
    ANY = {"good", "error", "excluded", "none"}
    if r.outcome in ("not_sent",):
        return {"none"}
    if r.outcome == "unanswered":
        return {"none", "excluded"}
    if r.outcome == "vanished":
        return {"head": {"none"}, "body": {"none", "excluded"}, "queued": {"excluded"},
                "before_first_byte": {"excluded"}, "mid_stream": {"good", "excluded"}}[sc.stage]
    if r.outcome != "response" or r.tok in sc.crosstalk:
        return ANY
    resp = r.resp
    st = resp["status"]
    from_up = "x-up" in resp["headers"]
    if not from_up:
        if st == 429:
            return {"excluded"}
        if st == 404:
            return {"none"}
        if st in (400, 413, 414, 431):
            return {"none", "good"}
        if st == 408:
            return {"good", "excluded"}
    if st >= 500:
        return {"error"}
    if r.kind in CUT_KINDS or not resp["complete"]:
        return {"error"}
    sse = "text/event-stream" in ",".join(resp["headers"].get("content-type", []))
    if sse and b"data: [DONE]" not in resp["body"]:
        return {"error"}
    return {"good"}


# --------------------------------------------------------------------------
# one batch: a gateway, a scripted upstream, many scenarios at once


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def gateway_config(d, port, aport, sport, up_port, keys):
    common = (f"    servers: [127.0.0.1:{up_port}]\n"
              f"    connect_timeout: 1s\n"
              f"    first_byte_timeout: {int(FIRST_BYTE * 1000)}ms\n"
              f"    idle_timeout: {int(UPSTREAM_IDLE * 1000)}ms\n"
              f"    pool: {{max_idle: 64, idle_timeout: {int(POOL_IDLE * 1000)}ms}}\n"
              f"    outlier: {{enabled: false}}\n")
    return f"""listen: 127.0.0.1:{port}
upstreams:
  app:
{common}    overload: {{limiter: {{max_concurrency: 1000}}, queue: {{max_wait: 5s}}}}
  narrow:
{common}    overload: {{limiter: {{max_concurrency: 1}}, queue: {{max_wait: 5s}}}}
routes:
  - {{prefix: /q/, upstream: narrow}}
  - {{prefix: /v1/, upstream: app}}
  - {{prefix: /up/, upstream: app}}
limits: {{max_body: 256k}}
timeouts: {{client_header: {int(CLIENT_HEADER * 1000)}ms, client_body: {int(CLIENT_BODY * 1000)}ms, client_idle: {int(CLIENT_IDLE * 1000)}ms, send: {int(SEND_TIMEOUT * 1000)}ms, drain: 0s}}
log: {{access: {d}/access.log}}
admin: {{listen: 127.0.0.1:{aport}}}
tenants:
  identify: api_key
  default: {{class: interactive}}
  list:
    - {{name: budget, key_sha256: {sha(keys['budget'])}, tokens_per_minute: {BUDGET}}}
    - {{name: tiny, key_sha256: {sha(keys['tiny'])}, tokens_per_minute: {TINY_BUDGET}}}
status:
  listen: 127.0.0.1:{sport}
  db: {d}/status.db
  refresh: 1s
  objective: {{target: 99.5, latency: 10m}}
  incidents: {{auto: false}}
"""




def metrics(aport):
    status, _, body = http_request(aport, "/metrics")
    assert status == 200, f"/metrics answered {status}"
    return parse_metrics(body.decode())


def quiet_state(gw):
    """(descriptors, sockets, rampart_client_connections) of the gateway."""
    fds, socks = proc_fds(gw.p.pid)
    conns = metric_sum(metrics(gw.admin_port), "rampart_client_connections")
    return fds, socks, conns


def run_batch(bno, indices, workdir):
    """Runs the scenarios `indices` at once; returns (scenarios, [(invariant, text)])."""
    d = os.path.join(workdir, f"batch{bno}")
    os.makedirs(d, exist_ok=True)
    keys = {"budget": f"sk-scenario-budget-{SEED}-{bno}", "tiny": f"sk-scenario-tiny-{SEED}-{bno}"}
    up = ScriptedUpstream()
    port, aport, sport = distinct_ports(3)
    cfg = os.path.join(d, "rampart.yaml")
    with open(cfg, "w") as f:
        f.write(gateway_config(d, port, aport, sport, up.port, keys))
    failures = []
    gw = Proc([binary("rampart"), "-c", cfg], wait_for_port=port)
    gw.admin_port = aport
    batch_name = f"batch {bno} (seed={SEED} scenarios {indices[0]}..{indices[-1]})"
    scenarios, everyone = [], []
    try:
        wait_port(aport)
        wait_port(sport)
        http_request(sport, "/api/v2/summary.json")
        time.sleep(0.2)
        base = quiet_state(gw)
        scenarios = [Scenario(i, keys) for i in indices]
        holder = None
        if any(s.stage == "queued" for s in scenarios):
            # holds the narrow upstream's only slot while queued clients leave
            holder = Scenario(-1, keys)
            holder.client, holder.stage, holder.slow, holder.delay = "single", None, None, 0
            holder.reqs = [Req(f"s{SEED}-holder-{bno}", "sse_long", {"gaps": [0.5] * 6}, path="/q/hold")]
        everyone = scenarios + ([holder] if holder else [])
        t0 = time.monotonic()
        threads = [threading.Thread(target=s.run, args=(port,), daemon=True) for s in everyone]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.1, t0 + SCENARIO_JOIN - time.monotonic()))
        for s, t in zip(everyone, threads):
            if t.is_alive():
                s.fail("response", f"scenario still running after {SCENARIO_JOIN:.0f}s")
        for s in everyone:
            failures.extend(s.failures)

        if gw.p.poll() is not None:
            _, err = gw.output()
            failures.append(("process", f"[process] {batch_name}: rampart exited with {gw.p.returncode}; "
                                        f"stderr tail: {err.decode(errors='replace')[-1500:]}"))
            raise _Crashed()

        # [cancel]
        with up.lock:
            seen, finished = dict(up.seen), set(up.finished)
        for s in scenarios:
            r = s.reqs[0]
            if s.stage == "queued" and r.tok in seen and holder is not None and holder.reqs[0].tok not in finished:
                s.fail("cancel", "a client that left the queue still had its request sent upstream", r)
                failures.append(s.failures[-1])
            if s.stage == "mid_stream" and r.tok in finished:
                s.fail("cancel", "a client that left mid-stream: the upstream stream ran to its end "
                                 "(its connection was not closed)", r)
                failures.append(s.failures[-1])
        for s in scenarios:
            for r in s.reqs:
                if seen.get(r.tok, 0) > 1 and r.kind not in ("close_before", "stall_head", "big_head",
                                                              "garbage_head"):
                    s.fail("cross-talk", f"the upstream received this request {seen[r.tok]} times", r)
                    failures.append(s.failures[-1])

        # [leak]
        def settled():
            st = quiet_state(gw)
            return st if (st[1] <= base[1] and st[2] <= base[2] and st[0] <= base[0] + 3) else None

        after = wait_for(settled, timeout=CLIENT_IDLE + POOL_IDLE + UPSTREAM_IDLE + 6, step=0.25)
        if not after:
            now = quiet_state(gw)
            failures.append(("leak", f"[leak] {batch_name}: after the batch rampart holds {now[0]} descriptors "
                                     f"({now[1]} sockets) and rampart_client_connections={now[2]:.0f}; "
                                     f"baseline {base[0]} ({base[1]} sockets), {base[2]:.0f}"))

        ms = metrics(aport)
        # [status-model]
        counted = {k: metric_sum(ms, "rampart_status_requests_total", **{"class": k})
                   for k in ("good", "error", "excluded", "slow")}
        reqs = [(s, r) for s in everyone for r in s.reqs]
        for k in ("good", "error", "excluded"):
            lo = sum(1 for _, r in reqs if r.classes == {k})
            hi = sum(1 for _, r in reqs if k in r.classes)
            if not lo <= counted[k] <= hi:
                sure = [f"{r.tok}({s.client}/{r.kind}/{r.resp['status'] if r.resp else r.outcome})"
                        for s, r in reqs if r.classes == {k}][:8]
                failures.append(("status-model",
                                 f"[status-model] {batch_name}: rampart_status_requests_total{{class=\"{k}\"}} = "
                                 f"{counted[k]:.0f}, clients saw between {lo} and {hi} "
                                 f"(all classes counted: {counted}); requests that can only be {k}: "
                                 f"{', '.join(sure)}"))
        if counted["slow"]:
            failures.append(("status-model", f"[status-model] {batch_name}: {counted['slow']:.0f} requests "
                                             f"counted slow with a 10 min latency objective"))

        # [quota]
        allowed = math.floor(BUDGET * (1 + (time.monotonic() - t0 + 1) / 60) / (BUDGET_MAX_TOKENS + PROMPT_EST))
        admitted = [(s, r) for s, r in reqs if r.expect == "quota" and r.resp is not None
                    and "x-up" in r.resp["headers"] and 200 <= r.resp["status"] < 300]
        for s, r in admitted:
            if "x-ratelimit-remaining-tokens" not in r.resp["headers"]:
                s.fail("quota", "a generation request of tenant budget was admitted without a token reservation "
                                "(no x-ratelimit-*-tokens headers on the answer)", r)
                failures.append(s.failures[-1])
        # an answer that was cut or belonged to another exchange reports no
        # usage, so rampart may refund its reservation
        refunds = sum(1 for s, r in admitted if r.tok in s.crosstalk or not r.resp["complete"])
        allowed += refunds
        if len(admitted) > allowed:
            others = sorted(f"{r.resp['status'] if r.resp else r.outcome}"
                            f"{'/up' if r.resp and 'x-up' in r.resp['headers'] else ''}"
                            for s, r in reqs if r.expect == "quota" and (s, r) not in admitted)
            paths = [f"{r.path} (remaining {','.join(r.resp['headers'].get('x-ratelimit-remaining-tokens', ['?']))})"
                     for _, r in admitted]
            failures.append(("quota", f"[quota] {batch_name}: tenant budget ({BUDGET} tokens/min, "
                                      f"{BUDGET_MAX_TOKENS + PROMPT_EST} reserved per request) had "
                                      f"{len(admitted)} generation requests admitted, at most {allowed} fit "
                                      f"({refunds} of them for answers without usage); "
                                      f"admitted, in the order read: {paths}; scenarios: "
                                      f"{sorted({s.index for s, _ in admitted})[:20]}; the tenant's other requests got: "
                                      f"{others}"))
        tiny = [(s, r) for s, r in reqs if r.key == keys["tiny"] and r.resp is not None
                and "x-up" in r.resp["headers"]]
        for s, r in tiny:
            s.fail("quota", f"tenant tiny's request (max_tokens 500, budget {TINY_BUDGET} tokens/min) reached the "
                            f"upstream: this spelling of the path is not charged", r)
            failures.append(s.failures[-1])
    except _Crashed:
        pass
    finally:
        gw.stop()
        up.close()

    # [access-log] and [process], after the gateway stopped (logs flushed)
    out, err = gw.output()
    text = err.decode(errors="replace")
    for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        if marker in text:
            i = text.index(marker)
            failures.append(("process", f"[process] {batch_name}: sanitizer report: {text[max(0, i - 200):i + 1500]}"))
            break
    lines = {}
    try:
        with open(os.path.join(d, "access.log"), "rb") as f:
            for raw in f:
                try:
                    e = json.loads(raw)
                except ValueError:
                    failures.append(("access-log", f"[access-log] {batch_name}: not JSON: {raw[:200]!r}"))
                    continue
                lines.setdefault(e.get("request_id"), []).append(e)
    except FileNotFoundError:
        failures.append(("access-log", f"[access-log] {batch_name}: no access log written"))
    for s in everyone:
        for r in s.reqs:
            got = lines.get(r.tok, [])
            if r.outcome == "response" and r.resp is not None:
                if len(got) != 1:
                    s.fail("access-log", f"{len(got)} access-log lines for an answered request", r)
                    failures.append(s.failures[-1])
                    continue
                e = got[0]
                if e.get("status") != r.resp["status"]:
                    s.fail("access-log", f"logged status {e.get('status')}, the client got {r.resp['status']}", r)
                    failures.append(s.failures[-1])
                if r.classes == {"error"} and r.resp["status"] < 500 and e.get("outcome") == "ok":
                    s.fail("status-model", f"the client got a cut answer (status {r.resp['status']}) that "
                                           f"rampart logged with outcome \"ok\" (counted as a success)", r)
                    failures.append(s.failures[-1])
            elif len(got) > 1:
                s.fail("access-log", f"{len(got)} access-log lines for one request", r)
                failures.append(s.failures[-1])
    return scenarios, [explain(f, lines, up) for f in failures]


class _Crashed(Exception):
    pass


def explain(f, lines, up):
    """(invariant, text) with what rampart logged for the request and what
    its upstream connection carried, when the failure names a request."""
    inv, text = f[0], f[1]
    tok = f[2] if len(f) > 2 else None
    if not tok:
        return inv, text
    logged = lines.get(tok, [])
    if logged:
        text += " | rampart logged: " + "; ".join(
            f"status={e.get('status')} outcome={e.get('outcome')} bytes_out={e.get('bytes_out')}" for e in logged)
    else:
        text += " | no access-log line"
    conns = up.tok_conn.get(tok, [])
    if not conns:
        text += " | never reached the upstream"
    for key in conns[:2]:
        hist = up.history.get(key, [])
        mine = [i for i, h in enumerate(hist) if h.startswith(tok + ":")]
        i = mine[0] if mine else 0
        text += (f" | its upstream connection carried, in order: "
                 f"{' '.join(hist[max(0, i - 3):i])} [{hist[i] if hist else ''}] {' '.join(hist[i + 1:i + 3])}")
    return inv, text


# --------------------------------------------------------------------------
# the test


def test_seeded_scenarios(tmp_path):
    indices = ONLY or list(range(COUNT))
    batches = [indices[i:i + BATCH] for i in range(0, len(indices), BATCH)]
    all_failures = []
    kinds = {}
    n_req = 0
    for bno, idx in enumerate(batches):
        scenarios, failures = run_batch(bno, idx, str(tmp_path))
        all_failures.extend(failures)
        for s in scenarios:
            kinds[s.client] = kinds.get(s.client, 0) + 1
            n_req += len(s.reqs)
    # the run exercised every client behaviour (a generator bug must not
    # silently shrink the coverage)
    if not ONLY and COUNT >= 500:
        missing = [c for c, _ in CLIENT_MIX if kinds.get(c, 0) == 0]
        assert not missing, f"client behaviours never drawn: {missing}"
    assert n_req >= len(indices)
    report = os.environ.get("RAMPART_SCENARIO_REPORT")
    if report:
        with open(report, "w") as f:
            for inv, text in all_failures:
                f.write(text + "\n")
    if all_failures:
        by = {}
        for inv, text in all_failures:
            by.setdefault(inv, []).append(text)
        msg = [f"{len(all_failures)} invariant failures over {len(indices)} scenarios (seed {SEED}); "
               f"replay one with RAMPART_SCENARIO_SEED={SEED} RAMPART_SCENARIO_ONLY=<index>"]
        for inv, texts in sorted(by.items()):
            msg.append(f"--- {inv}: {len(texts)}")
            msg.extend(texts[:6])
        if SKIP:
            msg.append(f"(drawn with RAMPART_SCENARIO_SKIP={','.join(sorted(SKIP))})")
        pytest.fail("\n".join(msg), pytrace=False)
