"""Feeds and admin errors stay valid text whatever was typed.

XML 1.0 forbids some characters outright (C0 controls other than tab, LF
and CR; U+FFFE; U+FFFF; and anything that is not UTF-8): one of them in an
incident makes a feed reader drop the whole feed.  The admin API accepts
U+FFFE and U+FFFF (they are valid UTF-8), and a canary rollback reason may
carry control characters into the incident release control opens; the
feeds must parse anyway.  Admin error messages quote what was sent, cut to
a few dozen bytes: the cut must not split a character, and a body that is
not UTF-8 is refused with where the bad byte is.

Each test starts rampart with a status section and an upstream with a
canary group; no upstream needs to answer (nothing here sends traffic).
"""
import http.client
import json
import os
import socket
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import binary, wait_port, distinct_ports

TOKEN = "feeds-test-token-5b1e07"
ATOM = "{http://www.w3.org/2005/Atom}"




@pytest.fixture
def gw(procs, tmp_path):
    port, aport, sport, up1, up2 = distinct_ports(5)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    conf = tmp_path / "rampart.yaml"
    conf.write_text(f"""listen: 127.0.0.1:{port}
upstreams:
  chat:
    servers:
      - 127.0.0.1:{up1}
      - {{address: 127.0.0.1:{up2}, group: canary}}
admin:
  listen: 127.0.0.1:{aport}
  token_file: {token}
log: {{access: "off"}}
status:
  listen: 127.0.0.1:{sport}
  db: {tmp_path / "status.db"}
  page: {{name: Feeds AI, url: "http://127.0.0.1:{sport}"}}
  refresh: 1s
""")
    p = procs([binary("rampart"), "-c", str(conf)], wait_for_port=port)
    for q in (aport, sport):
        wait_port(q)
    p.port, p.admin_port, p.status_port = port, aport, sport
    return p


def request(port, method, path, body=None, headers=None):
    """(status, raw body bytes).  body: bytes, or anything json.dumps takes."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, out


def admin(gw, method, path, body=None):
    return request(gw.admin_port, method, path, body, {"Authorization": f"Bearer {TOKEN}"})


def feed(gw, path):
    """The feed as text, after checking it is UTF-8 and well-formed XML."""
    st, raw = request(gw.status_port, "GET", path)
    assert st == 200, (path, st)
    text = raw.decode("utf-8")  # strict: raises on invalid UTF-8
    return text, ET.fromstring(raw)


def wait_feed_contains(gw, path, needle, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        text, root = feed(gw, path)
        if needle in text or time.monotonic() > deadline:
            return text, root
        time.sleep(0.2)


LONG = "\u00e9\u20ac\U0001F600" * 1000  # 9,000 bytes of 2-, 3- and 4-byte characters


def test_feeds_parse_with_characters_xml_forbids(gw):
    name = "Outage \ufffe\uffff of <chat> & co"
    body = "tab\tand newline\nand CR\r: \ufffe \uffff, then " + LONG
    st, out = admin(gw, "POST", "/api/v1/incidents", {"name": name, "body": body})
    assert st == 201, out
    # A rollback reason may carry controls; release control opens an
    # incident with it.
    reason = "bad build \x01\x08\x0b\x1b\x7f end \uffff"
    st, out = admin(gw, "POST", "/api/v1/canary/chat", {"action": "rollback", "reason": reason})
    assert st == 200, out

    text, root = wait_feed_contains(gw, "/history.atom", "rolled back")
    entries = root.findall(ATOM + "entry")
    assert len(entries) == 2, text[:2000]
    titles = [e.find(ATOM + "title").text for e in entries]
    assert any(t.startswith("Outage \ufffd\ufffd of <chat> & co") for t in titles), titles
    contents = [e.find(ATOM + "content").text for e in entries]
    # The content is HTML (escaped once more into the feed): the long text
    # is there whole, the noncharacters replaced.
    typed = [c for c in contents if LONG in c]
    assert typed and "\ufffe" not in typed[0] and "\ufffd \ufffd" in typed[0], contents
    rolled = [c for c in contents if "bad build" in c]
    assert rolled and "bad build \ufffd\ufffd\ufffd\ufffd\x7f end \ufffd" in rolled[0], contents

    text, root = wait_feed_contains(gw, "/history.rss", "rolled back")
    items = root.find("channel").findall("item")
    assert len(items) == 2
    assert any(i.find("title").text.startswith("Outage \ufffd\ufffd") for i in items)
    assert any("bad build \ufffd" in i.find("description").text for i in items)

    # The page and the JSON carry the same text validly.
    st, page = request(gw.status_port, "GET", "/")
    assert st == 200
    page = page.decode("utf-8")
    assert "\ufffe" not in page and "\uffff" not in page and "\x01" not in page
    st, raw = request(gw.status_port, "GET", "/api/v2/incidents.json")
    assert st == 200
    names = [i["name"] for i in json.loads(raw.decode("utf-8"))["incidents"]]
    assert name in names  # JSON can carry U+FFFE and U+FFFF as they are


def error_of(status, raw, want_status=400):
    assert status == want_status, raw
    doc = json.loads(raw.decode("utf-8"))  # strict UTF-8, then JSON
    return doc["error"]


def test_admin_errors_quote_multibyte_text_validly(gw):
    euros = "\u20ac" * 40  # 120 bytes: any byte limit below that falls inside a character
    cases = [
        ({"name": "x", "body": "y", "components": {euros: "major_outage"}}, "unknown_component"),
        ({"name": "x", "body": "y", "components": [euros]}, "unknown_component"),
        ({"name": "x", "body": "y", euros: 1}, "unknown_field"),
        ({"name": "x", "body": "y", "status": euros}, "invalid_value"),
        ({"name": "x", "body": "y", "impact": "\u00e9" * 45}, "invalid_value"),
    ]
    for body, code in cases:
        err = error_of(*admin(gw, "POST", "/api/v1/incidents", body))
        assert err["code"] == code, err
        assert "\ufffd" not in err["message"], err
        assert "\u20ac" * 10 in err["message"] or "\u00e9" * 10 in err["message"], err
    err = error_of(*admin(gw, "POST", "/api/v1/maintenances",
                          {"name": "m", "scheduled_for": euros, "scheduled_until": "2099-01-01T00:00:00Z"}))
    assert err["code"] == "invalid_value" and err["param"] == "scheduled_for"
    assert "\u20ac" * 20 in err["message"]


def test_admin_refuses_invalid_utf8_precisely(gw):
    for raw, offset in [(b'{"name":"caf\xc3","body":"y"}', 12),
                        (b'{"name":"x","body":"\xff\xfe"}', 20),
                        (b'{"name":"\xed\xa0\x80","body":"y"}', 9),  # an encoded surrogate
                        (b'{"name":"\xc0\xbc","body":"y"}', 9)]:  # an overlong "<"
        err = error_of(*admin(gw, "POST", "/api/v1/incidents", raw))
        assert err["code"] == "invalid_utf8", err
        assert f"at offset {offset}" in err["message"], err
    st, raw = request(gw.status_port, "GET", "/api/v2/incidents.json")
    assert json.loads(raw)["incidents"] == []
