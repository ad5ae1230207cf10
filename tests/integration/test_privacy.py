"""Nothing rampart writes holds a prompt or an API key.

rampart runs in front of build/llmsim with a configured tenant whose key is
a sentinel, an access log in a file, the status page with its SQLite store
and the admin listener.  Requests whose prompt holds another sentinel go
through it: non-streamed, streamed, one refused by the tenant's quota (429)
and one with a key no tenant has.  Then every file rampart wrote (the access
log, the store and its -wal/-shm files, read as bytes while it runs and
after it stopped), its stdout and stderr, /metrics and the public status
documents are searched for the sentinels, in clear and in the encodings a
careless log line would use (hex, base64, the unsalted SHA-256).
"""
import base64
import binascii
import hashlib
import json
import os
import signal
import time

from conftest import binary, wait_port
from conftest import distinct_ports
from wire import StreamReader, connect, http_request

KEY = "sk-priv-KEYSENTINEL-7f3a9c1e5b2d4086"
OTHER_KEY = "sk-priv-UNLISTED-2c8e0b6d9a4f1357"
PROMPT = "PROMPTSENTINEL-do-not-log-4b1d8e2f"
ADMIN_TOKEN = "privacy-admin-token-0123456789"


def forms(secret):
    """The byte strings that would give `secret` away."""
    raw = secret.encode()
    digest = hashlib.sha256(raw).digest()
    out = {
        "raw": raw,
        "hex": binascii.hexlify(raw),
        "base64": base64.b64encode(raw).rstrip(b"="),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "sha256-hex": digest.hex().encode(),
        "sha256-HEX": digest.hex().upper().encode(),
        "sha256-bytes": digest,
        "sha256-base64": base64.b64encode(digest).rstrip(b"="),
    }
    # a distinctive part, in case the value is cut or escaped around it
    out["middle"] = raw[len(raw) // 4: len(raw) * 3 // 4]
    return out


def leaks(blob, where):
    found = []
    for name, secret in (("api key", KEY), ("unlisted api key", OTHER_KEY), ("prompt", PROMPT)):
        for form, needle in forms(secret).items():
            if form.startswith("sha256") and name == "prompt":
                continue
            if needle in blob:
                i = blob.index(needle)
                found.append(f"{where}: the {name} ({form}) at byte {i}: {blob[max(0, i - 80):i + 80]!r}")
    return found


def chat(port, key, stream, max_tokens=8):
    body = json.dumps({"model": "llmsim-1", "max_tokens": max_tokens, "stream": stream,
                       "messages": [{"role": "user", "content": f"please answer {PROMPT} now"}]}).encode()
    s = connect(port)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                  + f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        return StreamReader(s).read_response(time.monotonic() + 20, "POST")
    finally:
        s.close()




def read_tree(d, skip):
    """{path: bytes} of every file under d except those in skip."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            if p in skip:
                continue
            try:
                with open(p, "rb") as fh:
                    out[p] = fh.read()
            except OSError:
                pass
    return out


def test_no_prompt_or_key_in_anything_rampart_writes(procs, tmp_path):
    port, aport, sport, sim = distinct_ports(4)
    procs([binary("llmsim"), "--port", str(sim), "--seed", "5", "--token-ms", "2", "--default-tokens", "6"],
          wait_for_port=sim)
    d = tmp_path / "run"
    d.mkdir()
    token_file = tmp_path / "admin.token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    os.chmod(token_file, 0o600)
    access = d / "access.log"
    db = d / "status.db"
    cfg = tmp_path / "rampart.yaml"
    cfg.write_text(f"""listen: 127.0.0.1:{port}
upstreams:
  chat:
    servers: [127.0.0.1:{sim}]
admin:
  listen: 127.0.0.1:{aport}
  token_file: {token_file}
log: {{access: {access}}}
tenants:
  identify: api_key
  default: {{class: interactive}}
  list:
    - name: acme
      key_sha256: {hashlib.sha256(KEY.encode()).hexdigest()}
      requests_per_minute: 3
status:
  listen: 127.0.0.1:{sport}
  db: {db}
  refresh: 1s
""")
    # rampart runs in d, so a file it wrote by a relative path is searched too
    gw = procs([binary("rampart"), "-c", str(cfg)], wait_for_port=port, cwd=str(d))
    wait_port(aport)
    wait_port(sport)

    answers = [chat(port, KEY, stream=False), chat(port, KEY, stream=True), chat(port, KEY, stream=False),
               chat(port, KEY, stream=True), chat(port, OTHER_KEY, stream=True)]
    statuses = [a.get("status") for a in answers]
    # the test is only meaningful if the requests did what they were meant to
    assert statuses[:3] == [200, 200, 200], statuses
    assert statuses[3] == 429, f"the fourth request of a 3/min tenant was not refused: {statuses}"
    assert statuses[4] == 200, statuses
    assert b"data: [DONE]" in answers[1]["body"], answers[1]["body"][-200:]

    found = []
    # rampart's own documents, while it runs
    st, _, body = http_request(aport, "/metrics")
    assert st == 200
    assert b"rampart_" in body
    found += leaks(body, "/metrics")
    for path in ("/api/v2/summary.json", "/", "/api/v2/incidents.json", "/history.atom"):
        st, _, body = http_request(sport, path)
        found += leaks(body, f"status {path}")
    # the store's pages reach the files on the one-second flush
    time.sleep(2.5)
    files_running = read_tree(str(d), skip=set())
    for p, blob in files_running.items():
        found += leaks(blob, f"{p} (while running)")

    assert gw.stop(signal.SIGTERM) == 0
    out, err = gw.output()
    found += leaks(out, "rampart stdout")
    found += leaks(err, "rampart stderr")
    files = read_tree(str(d), skip=set())
    for p, blob in files.items():
        found += leaks(blob, f"{p} (after exit)")

    # the search looked at real data: the log has a line per request and the
    # store holds the traffic
    lines = [json.loads(l) for l in access.read_bytes().splitlines() if l.strip()]
    assert len(lines) == len(answers), lines
    assert sorted(l["status"] for l in lines) == sorted(statuses)
    assert any(l.get("tenant") == "acme" for l in lines), lines
    assert str(db) in files and len(files[str(db)]) > 0
    assert not found, "secrets in rampart's output:\n" + "\n".join(found)
