#!/usr/bin/env python3
"""Application health checks: http (a Patroni-like primary/replica pair on
their REST ports), send-expect (right, wrong and silent answers), the PROXY
header a check sends, the last result in stats and the failure counter."""
import http.server
import signal
import socket
import threading
import time

from ferrytest import (web_config, cleanup, connect, free_port, recv_exact, runner, start_backend,
                       start_ferry, wait_for)


def who(port, hello=b""):
    s = connect(port)
    s.sendall(hello)
    label = recv_exact(s, 2)
    s.close()
    return label


class CheckServer:
    """A real HTTP server (http.server) answering GET `path` with the status
    in self.code; it records every request's path and Host header."""

    def __init__(self, host, port, path, code):
        self.code = code
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Host"),
                                       self.headers.get("Connection")))
                code = outer.code if self.path == path else 404
                body = b"{\"role\": \"x\"}\n" * 200  # a body the check must not need
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        cleanup(self.close)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def pair_ports():
    """A port free on both 127.0.0.2 and 127.0.0.3."""
    for _ in range(50):
        p = free_port()
        ok = True
        for h in ("127.0.0.2", "127.0.0.3"):
            with socket.socket() as s:
                try:
                    s.bind((h, p))
                except OSError:
                    ok = False
        if ok:
            return p
    raise AssertionError("no common free port")


def test_http_patroni_pair_follows_the_primary():
    data, rest = pair_ports(), pair_ports()
    start_backend("label", label=b"n1", host="127.0.0.2", port=data)
    start_backend("label", label=b"n2", host="127.0.0.3", port=data)
    n1 = CheckServer("127.0.0.2", rest, "/primary", 200)
    n2 = CheckServer("127.0.0.3", rest, "/primary", 503)
    port = free_port()
    f = start_ferry(web_config(port, f"""
server n1 127.0.0.2:{data}
server n2 127.0.0.3:{data}
health_check = http
health_uri = /primary
health_status = 200
health_port = {rest}
health_interval = 200ms
health_timeout = 1s
health_rise = 2
health_fall = 2
"""))
    wait_for(lambda: f.server("app", "n2")["state"] == "down", timeout=5, what="replica down")
    assert f.server("app", "n2")["check"] == "status 503"
    wait_for(lambda: f.server("app", "n1")["check"] == "ok", timeout=5, what="primary checked")
    assert f.server("app", "n1")["state"] == "up"
    assert {who(port) for _ in range(6)} == {b"n1"}
    # The request: the path asked for, Host = the server's host without port.
    assert n1.requests[0] == ("/primary", "127.0.0.2", "close"), n1.requests[0]
    assert n2.requests[0] == ("/primary", "127.0.0.3", "close"), n2.requests[0]

    # Failover: the replica is promoted, the old primary demoted. Traffic
    # follows within health_interval * health_rise (plus a check's time).
    n1.code, n2.code = 503, 200
    wait_for(lambda: f.server("app", "n2")["state"] == "up", timeout=3, what="new primary up")
    wait_for(lambda: f.server("app", "n1")["state"] == "down", timeout=3, what="old primary down")
    assert {who(port) for _ in range(6)} == {b"n2"}
    assert f.server("app", "n1")["check"] == "status 503"
    metrics = f.command(b"show metrics\n")
    fails = [l for l in metrics.splitlines()
             if l.startswith('ferry_server_check_failures_total{backend="app",server="n1"}')]
    assert fails and int(fails[0].split()[-1]) >= 2, fails
    assert "status 503" in f.ctl("stats")


def banner_server(answer):
    """Answers a check's "PING\\r\\n" with `answer` (None: never answers) and
    labels any other connection."""
    def handler(c, b):
        first = c.recv(64)
        if first.startswith(b"PING"):
            if answer is None:
                c.recv(64)  # silent until the check gives up
                return
            c.sendall(answer)
            return
        c.sendall(b.label)
    return handler


def test_send_expect_right_wrong_and_silent():
    good = start_backend(banner_server(b"+OK\r\n+PONG ferry\r\n"), label=b"s1")
    bad = start_backend(banner_server(b"-ERR unknown command\r\n"), label=b"s2")
    silent = start_backend(banner_server(None), label=b"s3")
    port = free_port()
    f = start_ferry(web_config(port, f"""
server good 127.0.0.1:{good.port}
server bad 127.0.0.1:{bad.port}
server silent 127.0.0.1:{silent.port}
health_check = send-expect
health_send = PING\\r\\n
health_expect = +P\\x4fNG
health_interval = 200ms
health_timeout = 300ms
health_rise = 1
health_fall = 1
"""))
    assert f.server("app", "good")["check"] in ("-", "ok")
    wait_for(lambda: f.server("app", "bad")["check"] == "expect", timeout=5, what="bad: expect")
    wait_for(lambda: f.server("app", "silent")["check"] == "timeout", timeout=5,
             what="silent: timeout")
    wait_for(lambda: f.server("app", "good")["check"] == "ok", timeout=5, what="good: ok")
    assert f.server("app", "good")["state"] == "up"
    assert f.server("app", "bad")["state"] == "down"
    assert f.server("app", "silent")["state"] == "down"
    assert {who(port, b"DATA\n") for _ in range(6)} == {b"s1"}
    # A refused check is told apart.
    good.close()
    wait_for(lambda: f.server("app", "good")["check"] == "refused", timeout=5, what="refused")


def recording_server(seen, answer):
    def handler(c, b):
        data = b""
        while b"PING\r\n" not in data and len(data) < 4096:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        seen.append(data)
        c.sendall(answer)
    return handler


def test_health_send_proxy_v1_and_v2():
    V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
    for version, want in (("v1", b"PROXY UNKNOWN\r\nPING\r\n"),
                          ("v2", V2_SIG + b"\x20\x00\x00\x00PING\r\n")):
        seen = []
        srv = start_backend(recording_server(seen, b"PONG\r\n"))
        port = free_port()
        f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{srv.port}
send_proxy = {version}
health_check = send-expect
health_send_proxy = on
health_send = PING\\r\\n
health_expect = PONG
health_interval = 200ms
"""))
        wait_for(lambda: f.server("app", "a")["check"] == "ok", timeout=5, what="check ok")
        assert seen[0] == want, (version, seen[0])
        f.stop()


def test_checks_spread_over_the_interval_at_start_and_reload():
    """Eight servers, a 2 s interval: the first checks of a start, and of a
    reload, do not all arrive at once (no thundering herd)."""
    n, interval = 8, 2.0
    times = [[] for _ in range(n)]

    def stamp(i):
        def handler(c, b):
            times[i].append(time.monotonic())
        return handler
    srvs = [start_backend(stamp(i)) for i in range(n)]
    port = free_port()
    servers = "\n".join(f"server s{i} 127.0.0.1:{s.port}" for i, s in enumerate(srvs))
    conf = web_config(port, servers + "\nhealth_check = tcp\nhealth_interval = 2s\n")
    f = start_ferry(conf)
    wait_for(lambda: all(times), timeout=10, what="every server checked")
    first = [t[0] for t in times]
    assert max(first) - min(first) >= interval / 3, sorted(first)
    # A reload starts new checks, spread again.
    mark = time.monotonic()
    f.write_config(conf + "retries = 1\n")
    f.signal(signal.SIGHUP)
    wait_for(lambda: "reload" in f.logtext() and all(any(x > mark + 0.05 for x in t) for t in times),
             timeout=10, what="checks after the reload")
    after = [min(x for x in t if x > mark + 0.05) for t in times]
    assert max(after) - min(after) >= interval / 3, sorted(after)


if __name__ == "__main__":
    runner.run(globals())
