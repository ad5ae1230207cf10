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
                rest += sock.recv(65536)
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += sock.recv(65536)
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
