#!/usr/bin/env python3
"""The Grafana dashboard and the Prometheus alert rules in contrib/ use only
metric names a real ferryd exports, and every metric ferryctl(8) COMMANDS names is
exported; the rules pass `promtool check rules` and their unit tests."""
import json
import os
import re
import shutil
import socket
import subprocess

from ferrytest import (connect, free_port, recv_all, recv_exact, runner, start_backend,
                       start_ferry, wait_for, web_config)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
ALERTS = os.path.join(ROOT, "contrib", "prometheus", "ferry-alerts.yml")
ALERT_TESTS = os.path.join(ROOT, "contrib", "prometheus", "ferry-alerts.test.yml")
DASHBOARD = os.path.join(ROOT, "contrib", "grafana", "ferry-dashboard.json")

# Names used in contrib/ that another engineer builds and that are not on
# main yet; shrink to nothing as they land (a name here is still required
# to be a ferry_ metric name).
NOT_YET_EXPORTED = set()

# Every name ferryctl(8) COMMANDS promises on the metrics endpoint.
SPEC_NAMES = """
ferry_listener_connections_active ferry_listener_connections_total ferry_listener_rejected_total
ferry_listener_handshake_errors_total ferry_listener_bytes_in_total ferry_listener_bytes_out_total
ferry_listener_max_connections ferry_listener_rejected_by_reason_total ferry_server_up
ferry_server_connections_active ferry_server_connections_total ferry_server_connect_errors_total
ferry_server_bytes_in_total ferry_server_bytes_out_total ferry_server_weight
ferry_server_check_failures_total ferry_backend_queue ferry_server_state
ferry_server_connect_seconds ferry_listener_handshake_seconds ferry_listener_session_seconds
ferry_connections_active ferry_max_connections ferry_reloads_total ferry_reloads_failed_total
ferry_config_last_reload_successful ferry_config_last_reload_success_timestamp_seconds
ferry_tls_cert_not_after_seconds ferry_build_info process_cpu_seconds_total
ferry_log_lines_dropped_total ferry_listener_accepting ferry_acme_orders_total
process_resident_memory_bytes process_open_fds process_max_fds process_start_time_seconds
""".split()

NAME = re.compile(r"\b((?:ferry|process)_[a-z0-9_]+)\b")


def exported_families(text):
    """{name: type} from the # TYPE lines of an exposition."""
    fams = {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)$", line)
        if m:
            fams[m.group(1)] = m.group(2)
    return fams


def family_of(name, fams):
    for sfx in ("_bucket", "_sum", "_count"):
        base = name[: -len(sfx)]
        if name.endswith(sfx) and fams.get(base) == "histogram":
            return base
    return name


def contrib_expressions():
    """Every PromQL expression of the dashboard and the alert rules."""
    exprs = []
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash["panels"], "the dashboard has no panels"
    for p in dash["panels"]:
        assert p.get("targets"), f"panel {p.get('title')} has no query"
        exprs += [("dashboard: " + p["title"], t["expr"]) for t in p["targets"]]
    for t in dash["templating"]["list"]:
        if t.get("type") == "query":
            exprs.append(("dashboard variable " + t["name"], t["query"]))
    with open(ALERTS) as f:
        text = f.read()
    try:
        import yaml
        rules = [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]
        exprs += [("alert " + r["alert"], str(r["expr"])) for r in rules]
        alerts = {r["alert"] for r in rules}
        assert {"FerryServerDown", "FerryBackendNoServerUp", "FerryListenerAtLimit",
                "FerryReloadFailed", "FerryCertificateExpiring",
                "FerryBackendQueueGrowing", "FerryDown", "FerryMetricsAbsent",
                "FerryHandshakeErrors", "FerryLogLinesDropped",
                "FerryListenerNotAccepting"} <= alerts, alerts
    except ImportError:  # python3-yaml is not installed: the names are in the text
        exprs.append(("alerts file", text))
    return exprs


def scrape():
    b = start_backend("echo")
    port, mport = free_port(), free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}",
                               global_lines=f"metrics = 127.0.0.1:{mport}"))
    return f.ctl("metrics")


def test_contrib_uses_only_exported_names():
    fams = exported_families(scrape())
    missing = []
    used = set()
    for where, expr in contrib_expressions():
        for name in NAME.findall(expr):
            fam = family_of(name, fams)
            used.add(fam)
            if fam not in fams and fam not in NOT_YET_EXPORTED:
                missing.append(f"{where}: {name}")
    assert not missing, "names ferryd does not export:\n" + "\n".join(missing)
    stale = NOT_YET_EXPORTED & set(fams)
    assert not stale, f"exported now, drop from NOT_YET_EXPORTED: {stale}"
    # The dashboard and the rules between them watch every family of ferryctl(8) COMMANDS.
    unused = [n for n in SPEC_NAMES if n not in used]
    assert not unused, f"metrics neither the dashboard nor the alerts use: {unused}"


def test_spec_names_are_exported():
    fams = exported_families(scrape())
    missing = [n for n in SPEC_NAMES if n not in fams]
    assert not missing, f"ferryctl(8) COMMANDS names ferryd does not export: {missing}"
    for n in ("ferry_server_connect_seconds", "ferry_listener_handshake_seconds",
              "ferry_listener_session_seconds"):
        assert fams[n] == "histogram", (n, fams[n])


def sample(text, line_start):
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_start}")


def test_histograms_and_reasons_count_real_traffic():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}",
                               listener_lines="deny = 127.0.0.2/32"))
    for _ in range(5):
        s = connect(port)
        s.sendall(b"hi")
        assert recv_exact(s, 2) == b"hi"
        s.close()
    s = socket.socket()
    s.bind(("127.0.0.2", 0))  # from a denied source address
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    assert recv_all(s) == b""
    s.close()
    wait_for(lambda: f.listener("web")["active"] == 0 and f.listener("web")["total"] == 6,
             what="all six ended")
    m = f.ctl("metrics")
    lab = 'backend="app",server="app1"'
    assert sample(m, f'ferry_server_connect_seconds_count{{{lab}}}') == 5, m
    assert sample(m, f'ferry_server_connect_seconds_bucket{{{lab},le="+Inf"}}') == 5
    assert sample(m, 'ferry_listener_session_seconds_count{listener="web"}') == 6
    assert sample(m, 'ferry_listener_handshake_seconds_count{listener="web"}') == 0  # no TLS
    assert sample(m, 'ferry_listener_rejected_by_reason_total{listener="web",reason="deny"}') == 1
    by = f.listener("web")["rejected_by"]
    assert by["deny"] == 1 and sum(by.values()) == 1, by
    assert sample(m, f'ferry_server_state{{{lab},state="up"}}') == 1
    assert sample(m, f'ferry_server_state{{{lab},state="maint"}}') == 0
    assert sample(m, 'process_open_fds') > 3 and sample(m, 'process_resident_memory_bytes') > 1e6
    assert 'ferry_build_info{version="' in m


def test_promtool_accepts_the_rules():
    promtool = shutil.which("promtool")
    if not promtool:
        print("note: promtool is not installed; rules not validated")
        return
    r = subprocess.run([promtool, "check", "rules", ALERTS], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([promtool, "test", "rules", os.path.basename(ALERT_TESTS)],
                       capture_output=True, timeout=60, cwd=os.path.dirname(ALERT_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr


if __name__ == "__main__":
    runner.run(globals())
