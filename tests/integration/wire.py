"""Wire-level helpers shared by the integration tests: a scripted HTTP/1.1
upstream whose handler writes every byte itself, a raw-socket response
reader, and the minimal gateway config.  Tests talk raw sockets so every
byte on the wire is under their control."""
import socket
import threading


# --------------------------------------------------------------------------
# scripted upstream


class Upstream:
    """A threaded HTTP/1.1 upstream.  handler(conn, head, body) writes the
    response itself; the upstream records requests and connection events."""

    def __init__(self, handler):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.connections = 0
        self.closed_early = threading.Event()
        self.lock = threading.Lock()
        self.stop = False
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
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
                lines = head.decode("latin-1").split("\r\n")
                hdrs = {}
                for l in lines[1:]:
                    k, v = l.split(":", 1)
                    hdrs.setdefault(k.strip().lower(), []).append(v.strip())
                body = b""
                if "content-length" in hdrs:
                    n = int(hdrs["content-length"][0])
                    while len(buf) < n:
                        d = conn.recv(65536)
                        if not d:
                            return
                        buf += d
                    body, buf = buf[:n], buf[n:]
                elif "transfer-encoding" in hdrs:
                    while not buf.endswith(b"0\r\n\r\n") and b"\r\n0\r\n\r\n" not in buf:
                        d = conn.recv(65536)
                        if not d:
                            return
                        buf += d
                    body, buf = buf, b""
                req = {"line": lines[0], "headers": hdrs, "body": body, "raw_head": head}
                with self.lock:
                    self.requests.append(req)
                if self.handler(conn, req) is False:
                    conn.close()
                    return
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.sock.close()


def respond(conn, status=200, body=b"ok", headers=()):
    h = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
    for k, v in headers:
        h += f"{k}: {v}\r\n"
    conn.sendall(h.encode() + b"\r\n" + body)


def ok_handler(conn, req):
    respond(conn, 200, b"hello " + req["line"].split(" ")[1].encode())


# --------------------------------------------------------------------------
# client helpers


def recv_more(sock, seen):
    """The next bytes of a response, or EOFError(seen) when the peer closed."""
    d = sock.recv(65536)
    if not d:
        raise EOFError(seen)
    return d


def read_response(sock, timeout=10):
    """Read one HTTP response (Content-Length, chunked or close framed)."""
    sock.settimeout(timeout)
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
    if "content-length" in hdrs:
        n = int(hdrs["content-length"])
        while len(rest) < n:
            d = sock.recv(65536)
            if not d:
                raise EOFError(rest)
            rest += d
        return status, hdrs, rest[:n], rest[n:]
    if hdrs.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += recv_more(sock, body + rest)
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += recv_more(sock, body + rest)
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                return status, hdrs, body, rest
    body = rest
    while True:
        d = sock.recv(65536)
        if not d:
            return status, hdrs, body, b""
        body += d


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def write_config(tmp_path, port, servers, admin_port=None, extra=""):
    srv = ", ".join(f"127.0.0.1:{p}" for p in servers)
    text = f"listen: 127.0.0.1:{port}\nupstreams:\n  app:\n    servers: [{srv}]\n"
    text += extra
    if admin_port:
        text += f"admin:\n  listen: 127.0.0.1:{admin_port}\n"
    path = tmp_path / "rampart.yaml"
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------
# helpers for the scenario and privacy tests (added; the ones above are
# unchanged)


class Timeout(Exception):
    """No byte arrived before the reader's deadline."""


class Malformed(Exception):
    """The peer sent bytes that are not a valid HTTP/1.x response."""


class StreamReader:
    """Reads HTTP/1.x responses from a blocking socket against a deadline,
    keeping whatever arrives after a response for the next one.  It never
    raises on a cut body: read_response() reports how the body ended.

    slow = (bytes per recv, seconds to sleep before each recv) makes it a
    slow reader."""

    def __init__(self, sock, slow=None):
        self.sock = sock
        self.buf = b""
        self.eof = False
        self.slow = slow

    def _fill(self, deadline):
        """Append at least one byte to buf; False at EOF; Timeout past the
        deadline; a reset counts as EOF."""
        import time as _t
        if self.eof:
            return False
        n = 65536
        if self.slow:
            n = self.slow[0]
            _t.sleep(self.slow[1])
        left = deadline - _t.monotonic()
        if left <= 0:
            raise Timeout()
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(n)
        except socket.timeout:
            raise Timeout()
        except OSError:
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def pending(self, wait, deadline=None):
        """Bytes that arrive within `wait` seconds (b"" if none), and
        whether the peer closed."""
        import time as _t
        end = _t.monotonic() + wait
        if deadline is not None:
            end = min(end, deadline)
        while not self.eof:
            try:
                if not self._fill(end):
                    break
            except Timeout:
                break
        got, self.buf = self.buf, b""
        return got, self.eof

    def read_response(self, deadline, method="GET"):
        """One response as a dict:
          status, version, headers {name: [values]}, body (de-chunked),
          framing: "length" | "chunked" | "close" | "none",
          complete: the framing says the body ended (a close-framed body is
            complete when the peer closes),
          cut: why it is not complete ("eof" while reading the body),
          closed_before: the peer closed before any byte of this response
            (the dict is then {"closed_before": True}).
        Raises Timeout or Malformed."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise Malformed("response head over 1 MiB")
            if not self._fill(deadline):
                if not self.buf:
                    return {"closed_before": True}
                raise Malformed(f"closed inside the response head: {self.buf[:200]!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") or not parts[1].isdigit() \
                or len(parts[1]) != 3:
            raise Malformed(f"bad status line {lines[0][:200]!r}")
        status = int(parts[1])
        hdrs = {}
        for l in lines[1:]:
            if ":" not in l:
                raise Malformed(f"bad header line {l[:200]!r}")
            k, v = l.split(":", 1)
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
        r = {"status": status, "version": parts[0], "headers": hdrs, "body": b"", "complete": False,
             "cut": None, "closed_before": False, "framing": None}
        if 100 <= status < 200 and status != 101:
            r["framing"] = "none"
            r["complete"] = True
            r["interim"] = True
            return r
        te = ",".join(hdrs.get("transfer-encoding", [])).lower()
        if method == "HEAD" or status in (204, 304):
            r["framing"] = "none"
            r["complete"] = True
        elif "chunked" in te:
            r["framing"] = "chunked"
            self._read_chunked(r, deadline)
        elif "content-length" in hdrs:
            vals = set(hdrs["content-length"])
            if len(vals) != 1 or not next(iter(vals)).isdigit():
                raise Malformed(f"bad Content-Length {hdrs['content-length']}")
            n = int(next(iter(vals)))
            r["framing"] = "length"
            while len(self.buf) < n:
                if not self._fill(deadline):
                    break
            r["body"], self.buf = self.buf[:n], self.buf[n:]
            if len(r["body"]) == n:
                r["complete"] = True
            else:
                r["cut"] = f"eof after {len(r['body'])} of {n} bytes"
        else:
            r["framing"] = "close"
            while self._fill(deadline):
                pass
            r["body"], self.buf = self.buf, b""
            r["complete"] = True
        return r

    def _read_chunked(self, r, deadline):
        body = []
        while True:
            while b"\r\n" not in self.buf:
                if len(self.buf) > 4096:
                    raise Malformed(f"chunk size line too long: {self.buf[:100]!r}")
                if not self._fill(deadline):
                    r["body"] = b"".join(body)
                    r["cut"] = "eof in a chunk size line"
                    return
            line, rest = self.buf.split(b"\r\n", 1)
            size_txt = line.split(b";")[0].strip()
            try:
                size = int(size_txt, 16)
            except ValueError:
                raise Malformed(f"bad chunk size {line[:100]!r}")
            self.buf = rest
            if size == 0:
                # trailers, then the empty line
                while True:
                    while b"\r\n" not in self.buf:
                        if not self._fill(deadline):
                            r["body"] = b"".join(body)
                            r["cut"] = "eof in the trailers"
                            return
                    tl, self.buf = self.buf.split(b"\r\n", 1)
                    if tl == b"":
                        r["body"] = b"".join(body)
                        r["complete"] = True
                        return
            while len(self.buf) < size + 2:
                if not self._fill(deadline):
                    body.append(self.buf[:size])
                    self.buf = b""
                    r["body"] = b"".join(body)
                    r["cut"] = "eof inside a chunk"
                    return
            if self.buf[size:size + 2] != b"\r\n":
                raise Malformed("chunk not followed by CRLF")
            body.append(self.buf[:size])
            self.buf = self.buf[size + 2:]


def http_request(port, path, method="GET", headers=(), body=None, timeout=10):
    """One request on its own connection (Connection: close); returns
    (status, headers {name: value}, body)."""
    s = connect(port)
    try:
        h = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for k, v in headers:
            h += f"{k}: {v}\r\n"
        data = body if body is not None else b""
        if body is not None or method in ("POST", "PUT", "PATCH"):
            h += f"Content-Length: {len(data)}\r\n"
        s.sendall(h.encode() + b"\r\n" + data)
        status, hdrs, b, _ = read_response(s, timeout=timeout)
        return status, hdrs, b
    finally:
        s.close()


def proc_fds(pid):
    """(open descriptors, of which sockets) of a process, from /proc."""
    import os as _os
    total = sockets = 0
    d = f"/proc/{pid}/fd"
    for name in _os.listdir(d):
        try:
            target = _os.readlink(f"{d}/{name}")
        except OSError:
            continue
        total += 1
        if target.startswith("socket:"):
            sockets += 1
    return total, sockets


# --------------------------------------------------------------------------
# one-shot requests (Connection: close), for tests that only count answers


def http(port, method, path, body=b"", headers=(), timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        h = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
        for k, v in headers:
            h += f"{k}: {v}\r\n"
        s.sendall(h.encode() + b"\r\n" + body)
        return read_response(s, timeout)[:3]
    finally:
        s.close()


def raw(port, data, timeout=10):
    """Send bytes as they are; the status of the answer (0 if none)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        return read_response(s, timeout)[0]
    except (OSError, EOFError):
        return 0
    finally:
        s.close()


def chat(port, key, stream=False):
    body = (b'{"model":"llmsim-1","max_tokens":3,"stream":%s,"messages":[{"role":"user","content":"hi"}]}'
            % (b"true" if stream else b"false"))
    try:
        return http(port, "POST", "/v1/chat/completions", body,
                    (("Authorization", f"Bearer {key}"), ("Content-Type", "application/json")))[0]
    except (OSError, EOFError):
        return 0
