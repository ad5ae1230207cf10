"""The published uptime is what the clients got.

An upstream answers a fixed mix: 6% server errors, 3% streams cut
mid-way after "200 OK", 2% first tokens far past the latency objective,
the rest good (streams and plain JSON).  The clients count, on their own
side, the answers that were good: a 200, a whole body (a stream ends with
its terminator), and a first byte within the objective.  The status page's
published uptime (components.json, rampart_uptime_90d) must match that
count within 0.1 percentage point: a cut stream or a late first token is
as bad on the page as it was for the client.
"""
import itertools
import json
import socket
import threading
import time
import urllib.request

from conftest import binary, free_port
from wire import Upstream, read_response

N = 1000
OBJECTIVE_S = 0.5    # status objective latency
SLOW_S = 1.5         # a late first byte: far past it, so no borderline case
CHAT = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s")


def kind(i):
    k = (i * 37) % 100
    if k < 6:
        return "error"
    if k < 9:
        return "cut"
    if k < 11:
        return "slow"
    return "stream" if i % 2 == 0 else "json"


def sse(conn, events, terminate):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    for j in range(events):
        ev = b'data: {"choices":[{"delta":{"content":"t%d"}}]}\n\n' % j
        conn.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
    if terminate:
        ev = b"data: [DONE]\n\n"
        conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(ev), ev))


def handler(conn, req):
    i = json.loads(req["body"])["metadata_index"]
    k = kind(i)
    if k == "error":
        body = b'{"error":{"message":"boom","type":"server_error"}}'
        conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    elif k == "cut":
        sse(conn, 3, terminate=False)
        return False  # close mid-stream
    elif k == "slow":
        time.sleep(SLOW_S)
        sse(conn, 3, terminate=True)
    elif k == "stream":
        sse(conn, 3, terminate=True)
    else:
        body = b'{"choices":[{"message":{"content":"hi"}}],"usage":{"total_tokens":3}}'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return None


def one(port, i):
    """True when the client got a good answer."""
    body = json.dumps({"model": "m", "stream": kind(i) in ("stream", "cut", "slow"),
                       "metadata_index": i, "messages": [{"role": "user", "content": "hi"}]}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        t0 = time.monotonic()
        s.sendall(CHAT % (len(body), body))
        s.settimeout(10)
        first = s.recv(1, socket.MSG_PEEK)
        ttfb = time.monotonic() - t0
        if not first:
            return False
        status, hdrs, got, _ = read_response(s, timeout=10)
    except (OSError, EOFError):
        return False
    finally:
        s.close()
    if status != 200 or ttfb > OBJECTIVE_S:
        return False
    if hdrs.get("content-type", "").startswith("text/event-stream"):
        return got.endswith(b"data: [DONE]\n\n") and b'"error"' not in got
    return True


def test_published_uptime_matches_what_clients_got(procs, tmp_path):
    up = Upstream(handler)
    port, status_port = free_port(), free_port()
    cfg = tmp_path / "rampart.yaml"
    cfg.write_text(f"""listen: 127.0.0.1:{port}
upstreams:
  chat:
    servers: [127.0.0.1:{up.port}]
    retry: {{max_per_request: 0}}
# a fixed limit far above the load: no request waits for a slot, so the
# only late first bytes are the upstream's
overload: {{limiter: {{max_concurrency: 1000}}}}
log: {{access: off}}
status:
  listen: 127.0.0.1:{status_port}
  db: {tmp_path / "status.db"}
  refresh: 1s
  objective: {{target: 99.5, latency: {int(OBJECTIVE_S * 1000)}ms}}
""")
    procs([binary("rampart"), "-c", str(cfg)], wait_for_port=port)

    good = 0
    lock = threading.Lock()
    ids = itertools.count()

    def worker():
        nonlocal good
        while True:
            i = next(ids)
            if i >= N:
                return
            ok = one(port, i)
            with lock:
                good += ok

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client_pct = 100.0 * good / N
    expected_bad = sum(kind(i) in ("error", "cut", "slow") for i in range(N))
    # the mix did what it says on the client side (else the comparison
    # below would prove nothing)
    assert good <= N - expected_bad and good >= N - expected_bad - 5, (good, expected_bad)

    deadline = time.monotonic() + 10
    published = None
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/api/v2/components.json", timeout=5) as r:
            comps = json.loads(r.read())["components"]
        published = comps[0].get("rampart_uptime_90d")
        if published is not None and abs(published - client_pct) <= 0.1:
            break
        time.sleep(0.5)
    assert published is not None
    print(f"\nuptime: published {published:.2f}%, clients {client_pct:.2f}%")
    assert abs(published - client_pct) <= 0.1, f"published {published:.2f}% vs clients {client_pct:.2f}%"
    up.close()
