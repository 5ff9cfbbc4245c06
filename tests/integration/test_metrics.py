#!/usr/bin/env python3
"""The Prometheus endpoint: HTTP behaviour, and the exposition parsed strictly
(text format 0.0.4) with values checked against real traffic."""
import http.client
import re
import shutil
import subprocess

from ferrytest import (web_config, connect, free_port, recv_exact, runner, start_backend, start_ferry,
                       wait_for)

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{({LABEL}(?:,{LABEL})*)?,?\}})? (\S+)(?: -?\d+)?$")

SPEC_METRICS = {
    "ferry_listener_connections_active": "gauge",
    "ferry_listener_connections_total": "counter",
    "ferry_listener_rejected_total": "counter",
    "ferry_listener_bytes_in_total": "counter",
    "ferry_listener_bytes_out_total": "counter",
    "ferry_server_up": "gauge",
    "ferry_server_connections_active": "gauge",
    "ferry_server_connections_total": "counter",
    "ferry_server_connect_errors_total": "counter",
    "ferry_server_bytes_in_total": "counter",
    "ferry_server_bytes_out_total": "counter",
    "ferry_server_check_failures_total": "counter",
    "ferry_backend_queue": "gauge",
}


def parse_exposition(text):
    """A strict parser: every sample belongs to a family declared by HELP and
    TYPE before it, families are contiguous, values are floats, no duplicate
    series. Returns {family: {"type": t, "samples": {labels_tuple: value}}}."""
    families = {}
    current = None
    assert text.endswith("\n"), "exposition must end with a newline"
    for n, line in enumerate(text.split("\n")[:-1], 1):
        assert line == line.strip(), f"line {n}: stray whitespace"
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert re.fullmatch(NAME, name), f"line {n}: bad name"
            assert name not in families, f"line {n}: family {name} declared twice"
            assert help_text, f"line {n}: empty HELP"
            families[name] = {"type": None, "samples": {}}
            current = name
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert name == current, f"line {n}: TYPE for {name} outside its family"
            assert typ in ("counter", "gauge", "untyped", "summary", "histogram"), typ
            assert families[name]["type"] is None, f"line {n}: second TYPE"
            assert not families[name]["samples"], f"line {n}: TYPE after samples"
            families[name]["type"] = typ
            continue
        assert not line.startswith("#"), f"line {n}: unknown comment {line!r}"
        assert line, f"line {n}: empty line"
        m = SAMPLE.match(line)
        assert m, f"line {n}: not a sample: {line!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        suffix = ""
        if current and families[current]["type"] == "histogram":
            suffix = name[len(current):]
            assert name.startswith(current) and suffix in ("_bucket", "_sum", "_count"), \
                f"line {n}: sample {name} outside its histogram {current}"
        else:
            assert name == current, f"line {n}: sample {name} outside its family {current}"
        float(value)
        key = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels)))
        if suffix:
            key = (suffix,) + key
            name = current
        assert key not in families[name]["samples"], f"line {n}: duplicate series"
        families[name]["samples"][key] = float(value)
    for name, fam in families.items():
        assert fam["type"], f"{name} has no TYPE"
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return families


def check_histogram(name, samples):
    """Buckets cumulative in le order, +Inf equal to _count, per series."""
    series = {}
    for key, v in samples.items():
        labels = tuple(kv for kv in key[1:] if kv[0] != "le")
        le = dict(key[1:]).get("le")
        series.setdefault(labels, {"buckets": [], "count": None})
        if key[0] == "_bucket":
            series[labels]["buckets"].append((float(le), v))
        elif key[0] == "_count":
            series[labels]["count"] = v
    for labels, s in series.items():
        b = sorted(s["buckets"])
        assert b and b[-1][0] == float("inf"), f"{name}{labels}: no +Inf bucket"
        assert all(x[1] <= y[1] for x, y in zip(b, b[1:])), f"{name}{labels}: not cumulative"
        assert b[-1][1] == s["count"], f"{name}{labels}: +Inf bucket != _count"


def get(port, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path)
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r, body


def test_metrics_endpoint():
    b = start_backend("echo")
    port, mport = free_port(), free_port()
    f = start_ferry(web_config(port, f"""
server app1 127.0.0.1:{b.port}
server down1 127.0.0.1:{free_port()}
""", global_lines=f"metrics = 127.0.0.1:{mport}"))
    for _ in range(3):
        s = connect(port)
        s.sendall(b"12345")
        assert recv_exact(s, 5) == b"12345"
        s.close()
    wait_for(lambda: f.listener("web")["active"] == 0, what="closed")

    r, body = get(mport, "/metrics")
    assert r.status == 200
    assert r.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    fams = parse_exposition(body)
    for name, typ in SPEC_METRICS.items():
        assert name in fams, f"missing {name}"
        assert fams[name]["type"] == typ, (name, fams[name]["type"])
    lst = (("listener", "web"),)
    total_conns = fams["ferry_listener_connections_total"]["samples"][lst]
    assert total_conns == 3
    assert fams["ferry_listener_bytes_in_total"]["samples"][lst] == 15
    assert fams["ferry_listener_bytes_out_total"]["samples"][lst] == 15
    assert fams["ferry_listener_connections_active"]["samples"][lst] == 0
    ups = fams["ferry_server_up"]["samples"]
    assert ups[(("backend", "app"), ("server", "app1"))] == 1
    srv_total = fams["ferry_server_connections_total"]["samples"]
    assert sum(srv_total.values()) == 3
    # The control socket serves the same exposition.
    parse_exposition(f.ctl("metrics"))

    r, _ = get(mport, "/metrics?x=1")
    assert r.status == 200
    r, _ = get(mport, "/")
    assert r.status == 404
    r, _ = get(mport, "/metricsx")
    assert r.status == 404
    r, _ = get(mport, "/metrics", method="POST")
    assert r.status == 405
    s = connect(mport)
    s.sendall(b"garbage\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 400")
    s.close()


def thread_cpu_ticks(pid, tid):
    """utime + stime of one thread (clock ticks), from /proc."""
    with open(f"/proc/{pid}/task/{tid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def process_cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_metrics_rendered_off_the_worker():
    """With one worker (the main thread, which carries all traffic), a
    burst of scrapes of a large exposition (600 servers) costs that worker
    little: the rendering runs on another thread. Measured in CPU ticks per
    thread (/proc), not in time."""
    b = start_backend("echo")
    port, mport = free_port(), free_port()
    many = "".join(f"server s{i} 127.3.{i // 250}.{i % 250 + 1}:{b.port}\n" for i in range(600))
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port} weight=256\n" + many,
                               global_lines=f"workers = 1\nmetrics = 127.0.0.1:{mport}"))
    pid = f.proc.pid
    r, body = get(mport, "/metrics")
    assert r.status == 200 and body.count("\n") > 15000, body.count("\n")
    w0, total = thread_cpu_ticks(pid, pid), process_cpu_ticks(pid)
    for i in range(30):
        r, body = get(mport, "/metrics") if i % 2 else (None, f.ctl("metrics"))
        assert r is None or r.status == 200
        assert 'ferry_server_up{backend="app",server="s599"}' in body
    w0 = thread_cpu_ticks(pid, pid) - w0
    total = process_cpu_ticks(pid) - total
    assert total >= 20, f"the scrapes cost only {total} ticks: too little to judge"
    assert w0 * 4 < total, f"worker 0 spent {w0} of {total} ticks on the scrapes"
    s = connect(port)
    s.sendall(b"after")
    assert recv_exact(s, 5) == b"after"
    s.close()


def test_promtool_check_metrics():
    """Prometheus' own linter accepts a live scrape with every family filled:
    traffic, a server down, a queue-capable backend."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (scripts/deps.sh test installs prometheus)"
    b = start_backend("echo")
    port, mport = free_port(), free_port()
    f = start_ferry(web_config(port, f"""
server app1 127.0.0.1:{b.port}
server down1 127.0.0.1:{free_port()}
health_check = tcp
health_interval = 100ms
""", global_lines=f"metrics = 127.0.0.1:{mport}"))
    for _ in range(4):
        s = connect(port)
        s.sendall(b"promtool")
        assert recv_exact(s, 8) == b"promtool"
        s.close()
    wait_for(lambda: f.server("app", "down1")["state"] != "up", what="down1 seen down")
    r, body = get(mport, "/metrics")
    assert r.status == 200
    p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, f"promtool check metrics:\n{p.stdout}{p.stderr}"


def test_parser_is_strict():
    good = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v\"} 1\n"
    parse_exposition(good)
    for bad in [
        "a_total 1\n",                                            # no HELP/TYPE
        "# HELP a x\n# TYPE a gauge\na{l=v} 1\n",                 # unquoted label
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",                 # duplicate series
        "# HELP a x\n# TYPE a gauge\na one\n",                    # bad value
        "# HELP a x\n# TYPE a gauge\na 1",                        # no final newline
        "# HELP a x\n# TYPE a wrong\na 1\n",                      # bad type
    ]:
        try:
            parse_exposition(bad)
        except (AssertionError, ValueError):
            continue
        raise AssertionError(f"accepted: {bad!r}")


if __name__ == "__main__":
    runner.run(globals())
