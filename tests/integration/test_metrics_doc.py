"""docs/metrics.md lists exactly the metric families rampart exposes.

rampart runs with every subsystem that renders metrics switched on (admin
listener, status page, health checks, outlier detection, retries, a canary
group, tenants with quotas, overload control) in front of llmsim servers,
one of them failing a share of its requests and one address with nothing
listening.  After traffic of every kind (so that series shown only once
they are above 0 are on the page too), the page is scraped and compared
with the reference tables of docs/metrics.md:

  - every family on the page has a row, with the page's type and the
    labels the page's samples carry;
  - every row names a family on the page, except rows marked
    "conditional", which must still be rendered somewhere in src/ (a
    family renamed or removed cannot linger in the doc).
"""
import hashlib
import os
import re

from conftest import ROOT, binary, free_port, parse_metrics, wait_for, wait_port
from wire import chat, http, raw

DOC = os.path.join(ROOT, "docs", "metrics.md")
ADMIN_TOKEN = "metrics-doc-test-token-5c2e81f0a9"
FAST_SIM = ["--slots", "64", "--token-ms", "2", "--prefill-base-ms", "2", "--prefill-per-token-us", "0",
            "--batch-slowdown", "0"]
QUOTA_KEY = "metrics-doc-tiny-key"


def start_full(procs, tmp_path):
    """rampart with every metrics-rendering subsystem on; (port, admin)."""
    sims = []
    for i, extra in enumerate((["--error-rate", "0.3"], [], ["--version", "v2"])):
        port = free_port()
        procs([binary("llmsim"), "--port", str(port), "--seed", str(21 + i), *FAST_SIM, *extra],
              wait_for_port=port)
        sims.append(port)
    dead = free_port()  # nothing listens: connect errors, a server down
    port, admin, status = free_port(), free_port(), free_port()
    token = tmp_path / "admin.token"
    token.write_text(ADMIN_TOKEN + "\n")
    os.chmod(token, 0o600)
    quota_sha = hashlib.sha256(QUOTA_KEY.encode()).hexdigest()
    cfg = tmp_path / "rampart.yaml"
    cfg.write_text(f"""listen: 127.0.0.1:{port}
upstreams:
  chat:
    servers:
      - 127.0.0.1:{sims[0]}
      - address: 127.0.0.1:{sims[1]}
        group: stable
      - address: 127.0.0.1:{sims[2]}
        group: canary
      - 127.0.0.1:{dead}
    health_check: {{interval: 200ms, timeout: 100ms, rise: 1, fall: 2}}
    outlier: {{consecutive_failures: 3, interval: 1s, window: 5s, min_requests: 20}}
    retry: {{budget: 20%, min_per_second: 5, max_per_request: 2}}
    canary: {{steps: [50, 100], step_duration: 1m, interval: 1s, window: 10s, min_samples: 20}}
routes:
  - prefix: /v1/
    upstream: chat
admin:
  listen: 127.0.0.1:{admin}
  token_file: {token}
log: {{access: off}}
overload:
  limiter: {{mode: adaptive, initial: 8, min: 1, max: 64}}
  queue: {{max_length: 256, max_wait: 5s}}
tenants:
  identify: api_key
  default: {{requests_per_second: 200, burst: 200, tokens_per_minute: 1000000}}
  list:
    - name: tiny
      key_sha256: {quota_sha}
      requests_per_minute: 1
      burst: 1
status:
  listen: 127.0.0.1:{status}
  db: {tmp_path / "status.db"}
  page: {{name: "Metrics doc test", url: "https://status.example.com"}}
components:
  - name: Chat
    upstreams: [chat]
""")
    gw = procs([binary("rampart"), "-c", str(cfg)], wait_for_port=port)
    try:
        wait_port(admin)
    except TimeoutError:
        raise RuntimeError("admin listener did not start: " + gw.output()[1].decode(errors="replace")[-2000:])
    return port, admin, dead


def scrape(admin):
    status, _, body = http(admin, "GET", "/metrics")
    assert status == 200, body
    return body.decode()


def drive_traffic(port, admin, dead):
    """Traffic of every kind the page reports: streamed and whole
    generations from many tenants, quota refusals, a 404, a bad request."""
    down = f'server="127.0.0.1:{dead}"'
    assert wait_for(lambda: re.search(r"^rampart_health_up\{[^}]*" + re.escape(down) + r"[^}]*\} 0$",
                                      scrape(admin), re.M), timeout=10)
    codes = {}
    # Twelve tenants: the canary split is sticky per tenant, so both
    # release groups see traffic.
    for i in range(60):
        st = chat(port, f"tenant-{i % 12}", stream=i % 2 == 0)
        codes[st] = codes.get(st, 0) + 1
    for _ in range(3):
        st = chat(port, QUOTA_KEY)
        codes[st] = codes.get(st, 0) + 1
    codes["404"] = http(port, "GET", "/nowhere")[0]
    codes["bad"] = raw(port, b"NOT HTTP AT ALL\r\n\r\n")
    assert codes.get(200, 0) > 0, codes
    assert codes.get(429, 0) >= 1, codes
    assert codes["404"] == 404 and codes["bad"] == 400, codes

    # Only rampart_requests_total leaves out series that are still 0, so
    # its labels show once answers of some class were counted; every
    # other family renders all of its series from the start.
    def answers_counted():
        ms = parse_metrics(scrape(admin))
        ok = sum(v for (n, ls), v in ms.items() if n == "rampart_requests_total" and ("class", "2xx") in ls)
        refused = sum(v for (n, ls), v in ms.items()
                      if n == "rampart_tenant_refused_total" and ("tenant", "tiny") in ls)
        return ok > 0 and refused > 0
    assert wait_for(answers_counted, timeout=10)


def page_families(page):
    """{family: (type, set of label names)} from a Prometheus text page;
    le of histogram buckets is not a label of the family."""
    fams = {}
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", page, re.M):
        fams[m.group(1)] = (m.group(2), set())
    for line in page.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
        if not m:
            continue
        name = m.group(1)
        if name not in fams:
            name = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in fams, f"sample {m.group(1)} has no TYPE line"
        labels = set(re.findall(r'(\w+)="(?:[^"\\]|\\.)*"', m.group(3) or "")) - {"le"}
        fams[name][1].update(labels)
    return fams


def doc_families(text):
    """{family: (type, set of label names, conditional)} from the rows of
    docs/metrics.md: | `name` | type | `label`, ... or - | meaning |."""
    fams = {}
    for line in text.splitlines():
        m = re.match(r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*(\w+)\s*\|([^|]*)\|(.*)\|\s*$", line)
        if not m:
            continue
        name, typ, labels, meaning = m.groups()
        assert name not in fams, f"docs/metrics.md lists {name} twice"
        fams[name] = (typ, set(re.findall(r"`(\w+)`", labels)), "conditional" in meaning.lower())
    return fams


def rendered_in_source(name):
    """Whether the family name appears as a string in src/."""
    for d, _, files in os.walk(os.path.join(ROOT, "src")):
        for f in files:
            if f.endswith(".c"):
                with open(os.path.join(d, f), encoding="utf-8", errors="replace") as fh:
                    if f'"{name}"' in fh.read():
                        return True
    return False


def test_doc_parser_reads_rows():
    """The table parser reads the documented row shape (so an empty match
    cannot make the comparison pass)."""
    text = ("| family | type | labels | meaning |\n|---|---|---|---|\n"
            "| `a_total` | counter | `upstream`, `server` | Things. |\n"
            "| `b` | gauge | - | Conditional: only with x. |\n")
    assert doc_families(text) == {"a_total": ("counter", {"upstream", "server"}, False),
                                  "b": ("gauge", set(), True)}
    page = ("# HELP a_total x\n# TYPE a_total counter\na_total{upstream=\"u\",server=\"s\"} 1\n"
            "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n")
    assert page_families(page) == {"a_total": ("counter", {"upstream", "server"}), "h": ("histogram", set())}


def test_metrics_doc_matches_page(procs, tmp_path):
    port, admin, dead = start_full(procs, tmp_path)
    drive_traffic(port, admin, dead)
    page = page_families(scrape(admin))
    with open(DOC, encoding="utf-8") as f:
        doc = doc_families(f.read())
    assert len(doc) >= 40, f"docs/metrics.md: only {len(doc)} family rows found"

    problems = []
    for name, (typ, labels) in sorted(page.items()):
        if name not in doc:
            problems.append(f"{name} ({typ}, labels {sorted(labels)}) is on /metrics but not in docs/metrics.md")
            continue
        dtyp, dlabels, _ = doc[name]
        if dtyp != typ:
            problems.append(f"{name}: docs/metrics.md says {dtyp}, /metrics says {typ}")
        if dlabels != labels:
            problems.append(f"{name}: docs/metrics.md lists labels {sorted(dlabels)}, /metrics has {sorted(labels)}")
    for name, (_, _, conditional) in sorted(doc.items()):
        if name in page:
            continue
        if not conditional:
            problems.append(f"{name} is in docs/metrics.md but not on /metrics (mark it conditional if it "
                            "only shows under some condition)")
        elif not rendered_in_source(name):
            problems.append(f"{name} is in docs/metrics.md (conditional) but nothing in src/ renders it")
    assert not problems, "\n".join(problems)
