"""Shared fixtures for rampart's integration tests.

Every test starts real binaries from $RAMPART_BUILD (default: build/) on
loopback ports chosen by the kernel, so tests can run side by side.
"""
import os
import re
import socket
import subprocess
import tempfile
import time

import pytest

from wire import write_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("RAMPART_BUILD", os.path.join(ROOT, "build"))


def binary(name):
    path = os.path.join(BUILD, name)
    if not os.path.exists(path):
        pytest.fail(f"{path} not built (run make)")
    return path


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def distinct_ports(n):
    """n loopback ports that were free a moment ago, all different (the
    sockets stay open until every port is chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class Proc:
    """A child process that is always stopped at the end of a test."""

    def __init__(self, args, wait_for_port=None, env=None, cwd=None):
        self.args = args
        # Output goes to files, not pipes: a chatty child (access logs) must
        # never block on a full pipe that nobody reads.
        self.out_f = tempfile.TemporaryFile()
        self.err_f = tempfile.TemporaryFile()
        self.p = subprocess.Popen(args, stdout=self.out_f, stderr=self.err_f,
                                  env=env, cwd=cwd)
        if wait_for_port is not None:
            try:
                wait_port(wait_for_port)
            except TimeoutError:
                self.stop()
                out, err = self.output()
                raise RuntimeError(f"{args[0]} did not start: {err.decode(errors='replace')}")

    def stop(self, sig=None, timeout=10):
        if self.p.poll() is None:
            if sig is None:
                self.p.terminate()
            else:
                self.p.send_signal(sig)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode

    def output(self):
        """(stdout, stderr) written so far, as bytes."""
        res = []
        for f in (self.out_f, self.err_f):
            f.flush()
            f.seek(0)
            res.append(f.read())
        return res[0], res[1]


@pytest.fixture
def procs():
    """Collects Proc objects and stops them after the test."""
    started = []

    def start(args, **kw):
        p = Proc(args, **kw)
        started.append(p)
        return p

    yield start
    for p in reversed(started):
        p.stop()


def wait_for(pred, timeout=10.0, step=0.02):
    """Poll pred until it returns something true or timeout passes; returns
    its last value (so a caller can assert on it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def parse_metrics(text):
    """{(name, frozenset(labels)): value} from a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$', line)
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric_sum(ms, name, **labels):
    """Sum of a metric over the series that carry the given labels."""
    want = set(labels.items())
    return sum(v for (n, ls), v in ms.items() if n == name and want <= set(ls))


@pytest.fixture
def gateway(tmp_path, procs):
    """Start rampart in front of the given upstream ports."""

    def start(servers, extra="", admin=False):
        port = free_port()
        aport = free_port() if admin else None
        cfg = write_config(tmp_path, port, servers, aport, extra)
        p = procs([binary("rampart"), "-c", cfg], wait_for_port=port)
        p.port = port
        p.admin_port = aport
        return p

    return start
