"""/metrics is a valid Prometheus page: `promtool check metrics` accepts it.

rampart runs with every subsystem that renders metrics switched on (admin,
status page, health checks, outlier detection, retries, a canary, tenants
with quotas) in front of llmsim servers, one of them failing a share of its
requests and one address with nothing listening.  After traffic that
includes errors (upstream 500s, a 404, a malformed request, a quota
refusal), the page must pass promtool's parser and lint with no finding,
declare each family once, and escape a label value taken from the
configuration (a status component named with a double quote and a
backslash).
"""
import hashlib
import os
import re
import shutil
import subprocess

from conftest import binary, free_port, parse_metrics, wait_for, wait_port
from wire import chat, http, raw

ADMIN_TOKEN = "metrics-test-token-7d41c09e2b58"
FAST_SIM = ["--slots", "64", "--token-ms", "2", "--prefill-base-ms", "2", "--prefill-per-token-us", "0",
            "--batch-slowdown", "0"]
# A status component name that needs escaping in a label value; YAML
# single quotes keep the backslash and the double quotes literal.
COMPONENT_YAML = "'Chat \"beta\" \\ models'"
COMPONENT_LABEL = 'component="Chat \\"beta\\" \\\\ models"'
QUOTA_KEY = "metrics-test-tiny-key"


def start(procs, tmp_path):
    sims = []
    for i, extra in enumerate((["--error-rate", "0.3"], [], ["--version", "v2"])):
        port = free_port()
        procs([binary("llmsim"), "--port", str(port), "--seed", str(11 + i), *FAST_SIM, *extra],
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
  page: {{name: "Metrics test", url: "https://status.example.com"}}
components:
  - name: {COMPONENT_YAML}
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


def test_metrics_page_passes_promtool(procs, tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install the prometheus package (bash scripts/deps.sh)"
    port, admin, dead = start(procs, tmp_path)

    # The dead server is seen down by its health checks before traffic, so
    # the health metrics carry both states.
    down = f'server="127.0.0.1:{dead}"'
    assert wait_for(lambda: re.search(r"^rampart_health_up\{[^}]*" + re.escape(down) + r"[^}]*\} 0$",
                                      scrape(admin), re.M), timeout=10)

    # Twelve tenants: the canary split is per tenant with a random salt, and
    # with only three all of them land on the canary group about one run in
    # eight, where no server fails, and no error would be counted.
    codes = {}
    for i in range(60):
        st = chat(port, f"tenant-{i % 12}", stream=i % 2 == 0)
        codes[st] = codes.get(st, 0) + 1
    for _ in range(3):
        st = chat(port, QUOTA_KEY)
        codes[st] = codes.get(st, 0) + 1
    codes["404"] = http(port, "GET", "/nowhere")[0]
    codes["bad"] = raw(port, b"NOT HTTP AT ALL\r\n\r\n")
    assert codes.get(200, 0) > 0, codes
    assert codes.get(429, 0) >= 1, codes  # the quota refused the tiny tenant
    assert codes["404"] == 404 and codes["bad"] == 400, codes

    # Wait (bounded) until the errors show on the page: an upstream 5xx
    # answered or retried, and the refused tenant.
    def errors_counted():
        ms = parse_metrics(scrape(admin))
        fails = sum(v for (n, _), v in ms.items() if n == "rampart_canary_errors_total")
        refused = sum(v for (n, ls), v in ms.items()
                      if n == "rampart_tenant_refused_total" and ("tenant", "tiny") in ls)
        return fails > 0 and refused > 0
    assert wait_for(errors_counted, timeout=10)

    page = scrape(admin)
    check = subprocess.run([promtool, "check", "metrics"], input=page.encode(), capture_output=True, timeout=60)
    findings = (check.stdout + check.stderr).decode(errors="replace").strip()
    assert check.returncode == 0 and findings == "", f"promtool check metrics (exit {check.returncode}):\n{findings}"

    # One family per name: one TYPE and one HELP line each, HELP first.
    types = re.findall(r"^# TYPE (\S+) ", page, re.M)
    helps = re.findall(r"^# HELP (\S+) ", page, re.M)
    dup = sorted({n for n in types if types.count(n) > 1})
    assert not dup, f"TYPE written more than once: {dup}"
    assert sorted(helps) == sorted(types), f"families without HELP: {sorted(set(types) - set(helps))}"

    # A family's samples follow its own lines, with no other family between.
    current = None
    seen = set()
    for line in page.splitlines():
        m = re.match(r"^# TYPE (\S+) ", line)
        if m:
            current = m.group(1)
            assert current not in seen, f"family {current} reopened"
            seen.add(current)
            continue
        if not line or line.startswith("#"):
            continue
        name = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", line).group(1)
        assert current and (name == current or re.fullmatch(re.escape(current) + r"_(bucket|sum|count)", name)), \
            f"sample {name} outside its family (current: {current})"

    # The configured name reached the page escaped, and reads back intact.
    assert re.search(r"^rampart_status_component\{" + re.escape(COMPONENT_LABEL) + r"\} \d+$", page, re.M), \
        [l for l in page.splitlines() if l.startswith("rampart_status_component")]
    ms = parse_metrics(page)
    assert any(n == "rampart_status_component" for (n, _) in ms)
    # Both latency histograms are on the page under their own names.
    assert "rampart_first_byte_seconds_count " in page
    assert "rampart_request_duration_seconds_count " in page
