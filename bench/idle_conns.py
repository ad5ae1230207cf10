#!/usr/bin/python3
"""bench/idle_conns.py — memory of a proxy holding many idle keep-alive clients.

Opens N client connections to 127.0.0.1:PORT, sends one GET on each, reads
the whole response (Content-Length framing), and keeps every connection open
and idle.  It then waits SETTLE seconds, checks that the proxy closed none of
them, and reads VmRSS of each --pid from /proc.  Prints one JSON object.

    idle_conns.py --port 19381 --pid 1234 [--pid 1235 ...] [-n 10000]
                  [--parallel 256] [--settle 2] [--label rampart]

RSS is read twice: after a warm-up (16 connections, one request each, then
closed: "before") and with the N connections open and idle ("idle"); the
script reports (idle - before) / N as the cost of one idle connection.
Exit status 1 if fewer than N connections were open and idle at the end.
"""
import argparse
import errno
import json
import os
import resource
import select
import socket
import struct
import sys
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Conn:
    __slots__ = ("sock", "state", "rx", "need")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"
        self.rx = b""
        self.need = -1


def response_done(c):
    """True once a whole response (head + Content-Length body) is in c.rx."""
    if c.need < 0:
        end = c.rx.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = c.rx[:end].decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        if status != 200:
            raise RuntimeError(f"status {status}: {head[0]}")
        length = None
        for h in head[1:]:
            k, _, v = h.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        if length is None:
            raise RuntimeError("response without Content-Length")
        c.need = end + 4 + length
    return len(c.rx) >= c.need


def open_idle(port, n, parallel, path, timeout):
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    ep = select.epoll()
    live = {}
    idle = []
    started = 0
    deadline = time.monotonic() + timeout
    while len(idle) < n:
        while started < n and len(live) < parallel:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, f"connect #{started}: {os.strerror(err)}")
            c = Conn(s)
            live[s.fileno()] = c
            ep.register(s.fileno(), select.EPOLLOUT)
            started += 1
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out with {len(idle)} of {n} connections idle")
        for fd, ev in ep.poll(1.0):
            c = live[fd]
            if c.state == "connecting":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, f"connect: {os.strerror(err)}")
                c.sock.send(req)  # tiny: fits the socket buffer
                c.state = "reading"
                ep.modify(fd, select.EPOLLIN)
                continue
            data = c.sock.recv(65536)
            if not data:
                raise RuntimeError("proxy closed a connection before answering")
            c.rx += data
            if response_done(c):
                ep.unregister(fd)
                del live[fd]
                c.rx = b""
                idle.append(c.sock)
    ep.close()
    return idle


def still_open(socks):
    """Connections the proxy has not closed (no EOF, nothing unexpected)."""
    p = select.poll()
    mask = select.POLLIN | getattr(select, "POLLRDHUP", 0)
    for s in socks:
        p.register(s.fileno(), mask)
    bad = {fd for fd, _ in p.poll(0)}
    return len(socks) - len(bad)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, action="append", required=True, help="process whose RSS to read")
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=256, help="connections being set up at once")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds idle before reading RSS")
    ap.add_argument("--path", default="/")
    ap.add_argument("--label", default="")
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()

    raise_nofile(a.n + 256)

    # Warm-up: a few connections, a few hundred requests, then closed, so
    # "before" includes the proxy's steady-state allocations.
    warm = open_idle(a.port, 16, 16, a.path, a.timeout)
    for s in warm:
        s.close()
    time.sleep(0.5)
    before = {pid: rss_kb(pid) for pid in a.pid}

    t0 = time.monotonic()
    socks = open_idle(a.port, a.n, a.parallel, a.path, a.timeout)
    setup_s = time.monotonic() - t0
    time.sleep(a.settle)
    after = {pid: rss_kb(pid) for pid in a.pid}
    alive = still_open(socks)

    rss_before = sum(before.values())
    rss_idle = sum(after.values())
    out = {
        "label": a.label,
        "connections": a.n,
        "open_at_end": alive,
        "setup_s": round(setup_s, 2),
        "rss_kb_before": rss_before,
        "rss_kb_idle": rss_idle,
        "per_conn_bytes": round((rss_idle - rss_before) * 1024 / a.n) if a.n else 0,
        "pids": {str(p): {"before": before[p], "idle": after[p]} for p in a.pid},
    }
    print(json.dumps(out))
    sys.stdout.flush()
    # Abortive close: no TIME_WAIT pile-up on the client ports between runs.
    linger = struct.pack("ii", 1, 0)
    for s in socks:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
        s.close()
    return 0 if alive == a.n else 1


if __name__ == "__main__":
    sys.exit(main())
