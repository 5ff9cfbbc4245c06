#!/usr/bin/env python3
"""What an operator meets at the control socket, in ferryctl, the health
checks, the access log and the metrics (ferryctl(8), ferry.ini(5),
ferryd(8)): commands on servers that are gone, reload warnings against the
running values, ferryctl's socket resolution, help and errors, /ready with
every listener disabled, check and end reasons, histogram resolution."""
import http.client
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

from ferrytest import (FERRYCTL, cleanup, connect, free_port, recv_all, recv_exact, runner,
                       start_backend, start_ferry, wait_for, web_config)

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "..", "fixtures", "gen-certs.sh")


def tmpdir():
    d = tempfile.mkdtemp(prefix="ferry-op-")
    cleanup(lambda: shutil.rmtree(d, True))
    return d


def certs():
    d = tmpdir()
    subprocess.run(["sh", GEN, d], check=True, capture_output=True, timeout=120)
    return d


def ctl(*args, env=None, sock=None):
    """ferryctl with these arguments: (exit status, stdout, stderr)."""
    e = dict(os.environ)
    e.pop("FERRY_CONTROL_SOCKET", None)
    e.update(env or {})
    cmd = [FERRYCTL] + (["-s", sock] if sock else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, timeout=30, env=e)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def http_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, body


def roundtrip(port, data=b"ping"):
    s = connect(port)
    s.sendall(data)
    got = recv_exact(s, len(data))
    s.close()
    return got


# ---- commands on servers that are gone (item 11) ----

def test_commands_on_a_deleted_server_are_errors():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server a 127.0.0.1:{b.port}"))
    f.ctl("add", "app", "b", f"127.0.0.1:{b.port}")
    f.ctl("disable", "app/a")
    for _ in range(3):
        assert roundtrip(port) == b"ping"  # served by b
    wait_for(lambda: f.server("app", "b")["active"] == 0, what="b idle")
    assert f.server("app", "b")["total"] == 3
    f.ctl("disable", "app/b")
    f.ctl("del", "app/b")
    mark = len(f.logtext())
    for args in (("enable", "app/b"), ("disable", "app/b"), ("set", "app/b", "state", "maint"),
                 ("set", "app/b", "weight", "3"), ("enable", "app/never")):
        rc, out, err = ctl(*args, sock=f.sock_path)
        name = args[1]
        assert rc == 1 and out == f"error: no such server {name}\n", (args, rc, out, err)
        rc, out, _ = ctl("--json", *args, sock=f.sock_path)
        assert rc == 1 and "no such server" in out, (args, out)
    time.sleep(0.3)
    later = f.logtext()[mark:]
    assert "app/b" not in later and "app/never" not in later, later
    assert all(s["name"] != "b" for s in f.stats()["backends"][0]["servers"])
    # The name comes back with fresh counters.
    f.ctl("add", "app", "b", f"127.0.0.1:{b.port}")
    s = f.server("app", "b")
    assert s["total"] == 0 and s["bytes_in"] == 0 and s["bytes_out"] == 0, s
    assert s["state"] == "up", s
    assert roundtrip(port) == b"ping"
    wait_for(lambda: f.server("app", "b")["total"] == 1, what="b counts from zero")


# ---- reload warnings against the running values (item 12) ----

def test_reload_warnings_compare_with_the_running_values():
    b = start_backend("echo")
    port = free_port()

    def conf(workers):
        return web_config(port, f"server a 127.0.0.1:{b.port}", global_lines=f"workers = {workers}")
    f = start_ferry(conf(1))
    f.write_config(conf(2))
    out = f.ctl("reload")
    assert out.startswith("ok\n") and "warning:" in out and "workers" in out, out
    # The file says 2 again: the running value is still 1, so still a warning.
    out = f.ctl("reload")
    assert "workers" in out and "until restart" in out, out
    # Back to the running value: nothing to warn about.
    f.write_config(conf(1))
    out = f.ctl("reload")
    assert out == "ok\n", out
    assert f.ctl("info").count("workers: 1") == 1
    # Each warning names the key that changed: control_mode, group.
    f.write_config(conf(1) .replace("[listener", "control_mode = 0600\n[listener", 1))
    out = f.ctl("reload")
    assert "warning:" in out and "control_mode changed" in out, out
    assert "control_socket" not in out, out
    f.write_config(conf(1).replace("[listener", "group = root\n[listener", 1))
    out = f.ctl("reload")
    assert "group changed" in out and "user" not in out, out


# ---- health checks and the access log (item 14) ----

def wrong_and_open(c, b):
    """Answers a check with the wrong words and keeps the connection open."""
    c.recv(64)
    c.sendall(b"-ERR nope\r\n")
    while c.recv(64):
        pass


def test_send_expect_wrong_answer_is_expect_not_timeout():
    srv = start_backend(wrong_and_open)
    port = free_port()
    f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{srv.port}
health_check = send-expect
health_send = PING\\r\\n
health_expect = PONG
health_interval = 300ms
health_timeout = 200ms
health_fall = 1
"""))
    wait_for(lambda: f.server("app", "a")["check"] != "-", timeout=5, what="a check result")
    for _ in range(3):
        time.sleep(0.3)
        assert f.server("app", "a")["check"] == "expect", f.server("app", "a")
    assert f.server("app", "a")["state"] == "down"


def wrong_and_reset(c, b):
    """Answers a check with the wrong words, then resets the connection."""
    c.recv(64)
    c.sendall(b"-ERR nope\r\n")
    time.sleep(0.05)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_send_expect_wrong_answer_then_reset_is_expect():
    # The server answered something else: a reset after it is still expect.
    srv = start_backend(wrong_and_reset)
    port = free_port()
    f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{srv.port}
health_check = send-expect
health_send = PING\\r\\n
health_expect = PONG
health_interval = 300ms
health_timeout = 250ms
health_fall = 1
"""))
    wait_for(lambda: f.server("app", "a")["check"] != "-", timeout=5, what="a check result")
    for _ in range(3):
        time.sleep(0.3)
        assert f.server("app", "a")["check"] == "expect", f.server("app", "a")


def test_no_server_and_connect_failed_reason():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server a 127.0.0.1:{b.port}\nserver z 127.0.0.1:{b.port}"))
    f.ctl("disable", "app/a")
    f.ctl("disable", "app/z")
    s = connect(port)
    assert recv_all(s) == b""
    s.close()
    wait_for(lambda: f.access_log(), what="access log")
    e = f.access_log()[-1]
    assert e["end"] == "no_server" and e["server"] == "-" and e["closed_by"] == "proxy", e
    # A refused connect names the error of its last attempt.
    f.ctl("enable", "app/a")
    f.ctl("enable", "app/z")
    b.close()
    s = connect(port)
    assert recv_all(s) == b""
    s.close()
    wait_for(lambda: len(f.access_log()) == 2, what="second access line")
    e = f.access_log()[-1]
    assert e["end"] == "connect_failed" and "refused" in e.get("reason", "").lower(), e


def test_connect_failed_names_the_tls_verify_error():
    import ssl
    import socket
    import threading
    c = certs()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(c, "a-ec.pem"))
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    cleanup(ls.close)

    def serve():
        while True:
            try:
                conn, _ = ls.accept()
            except OSError:
                return
            try:
                ctx.wrap_socket(conn, server_side=True).close()
            except (OSError, ssl.SSLError):
                conn.close()
    threading.Thread(target=serve, daemon=True).start()
    port = free_port()
    f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{ls.getsockname()[1]}
tls = on
tls_ca = {os.path.join(c, "other-ca.pem")}
tls_sni = a.test
"""))
    s = connect(port)
    recv_all(s)
    s.close()
    wait_for(lambda: f.access_log(), what="access log")
    e = f.access_log()[-1]
    assert e["end"] == "connect_failed", e
    assert e.get("reason", "").startswith("tls:") and "certificate verify failed" in e["reason"], e


# ---- /ready, ferryctl (item 15) ----

def test_ready_is_503_while_every_listener_is_disabled():
    b = start_backend("echo")
    port, mport = free_port(), free_port()
    cfg = web_config(port, f"server a 127.0.0.1:{b.port}",
                     global_lines=f"metrics = 127.0.0.1:{mport}")
    cfg += f"[listener two]\nbind = 127.0.0.1:{free_port()}\nbackend = app\n"
    f = start_ferry(cfg)
    assert http_get(mport, "/ready")[0] == 200
    f.ctl("disable-listener", "web")
    assert http_get(mport, "/ready")[0] == 200  # one still accepts
    f.ctl("disable-listener", "two")
    assert http_get(mport, "/ready")[0] == 503
    assert http_get(mport, "/live")[0] == 200
    f.ctl("enable-listener", "two")
    assert http_get(mport, "/ready")[0] == 200


def test_ferryctl_help_lists_every_command():
    rc, out, _ = ctl("--help")
    assert rc == 0, out
    for word in ("info", "stats", "conns", "metrics", "reload", "upgrade", "acme",
                 "disable BACKEND/SERVER", "enable BACKEND/SERVER", "state ready|drain|maint",
                 "weight N", "add BACKEND NAME ADDRESS", "del BACKEND/SERVER",
                 "disable-listener NAME", "enable-listener NAME", "addr ADDRESS",
                 "shutdown CONN_ID", "-c", "FERRY_CONTROL_SOCKET"):
        assert word in out, (word, out)


def test_ferryctl_finds_the_socket():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server a 127.0.0.1:{b.port}"))
    # -c FERRY.INI: its control_socket (relative paths from its directory).
    rc, out, err = ctl("-c", f.path, "info")
    assert rc == 0 and "pid:" in out, (rc, out, err)
    # $FERRY_CONTROL_SOCKET.
    rc, out, err = ctl("info", env={"FERRY_CONTROL_SOCKET": f.sock_path})
    assert rc == 0 and "pid:" in out, (rc, out, err)
    # -s wins over the environment.
    rc, out, err = ctl("-s", f.sock_path, "info", env={"FERRY_CONTROL_SOCKET": "/nonexistent/x"})
    assert rc == 0, (rc, out, err)
    # Nothing there: exit 2, the reason and a hint.
    missing = os.path.join(tmpdir(), "none.sock")
    rc, out, err = ctl("info", env={"FERRY_CONTROL_SOCKET": missing})
    assert rc == 2, (rc, out, err)
    assert err.strip() == (f"ferryctl: cannot connect to {missing}: No such file or directory "
                           "(is ferryd running?)"), err
    # A -c file that cannot be read is a usage error naming it.
    rc, out, err = ctl("-c", missing + ".ini", "info")
    assert rc == 2 and missing + ".ini" in err, (rc, err)


def test_ferryctl_permission_hint():
    if os.geteuid() == 0:
        # root passes every permission check: run ferryctl as nobody.
        if not shutil.which("setpriv"):
            print("skip: no setpriv")
            return
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server a 127.0.0.1:{b.port}",
                               global_lines="control_mode = 0600"))
    os.chmod(f.dir, 0o755)
    cmd = [FERRYCTL, "-s", f.sock_path, "info"]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
    r = subprocess.run(cmd, capture_output=True, timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 2, (r.returncode, err)
    assert "Permission denied (are you in the socket's group?)" in err, err


def test_ferryctl_argument_errors_name_the_wrong_word():
    for args, word in ((("add", "se", "a/b", "127.0.0.1:1"), "a/b"),
                       (("add", "b@d", "ok", "127.0.0.1:1"), "b@d"),
                       (("add", "web", "x", "nowhere"), "nowhere"),
                       (("set", "web/a", "state", "sleepy"), "sleepy"),
                       (("set", "web/a", "colour", "1"), "colour"),
                       (("frobnicate",), "frobnicate")):
        rc, out, err = ctl("-s", "/nonexistent.sock", *args)
        assert rc == 2, (args, rc, out, err)
        first = err.splitlines()[0]
        assert f"'{word}'" in first, (args, first)
        if args[0] == "add" and word == "a/b":
            assert "'se" not in first, first


def test_text_stats_shows_weight_backup_queue_and_last_change():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{b.port} weight=7
server spare 127.0.0.1:{b.port} backup
max_queue = 5
"""))
    time.sleep(1.1)
    out = f.ctl("stats")
    lines = out.splitlines()
    head = next(l for l in lines if l.startswith("backend/server"))
    cols = head.split()
    for c in ("weight", "backup", "queue", "last_change_s"):
        assert c in cols, (c, head)
    row_a = next(l.split() for l in lines if l.split()[:1] == ["a"])
    row_s = next(l.split() for l in lines if l.split()[:1] == ["spare"])
    assert row_a[cols.index("weight")] == "7", (head, row_a)
    assert row_a[cols.index("backup")] == "no" and row_s[cols.index("backup")] == "yes"
    assert int(row_a[cols.index("last_change_s")]) >= 1, row_a
    row_b = next(l.split() for l in lines if l.split()[:1] == ["app"])
    assert row_b[cols.index("queue")] == "0", (head, row_b)


# ---- metrics (item 16) ----

def metric_lines(f, name):
    return [l for l in f.command(b"show metrics\n").splitlines() if l.startswith(name)]


def test_histograms_have_microsecond_resolution():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server a 127.0.0.1:{b.port}"))
    for _ in range(20):
        assert roundtrip(port) == b"ping"
    wait_for(lambda: f.server("app", "a")["total"] == 20 and f.server("app", "a")["active"] == 0,
             what="20 connections done")
    lines = metric_lines(f, "ferry_server_connect_seconds")
    assert any('le="0.0001"' in l for l in lines), lines
    first = next(l for l in lines if "_bucket" in l)
    assert 'le="0.0001"' in first, first
    total = next(float(l.split()[-1]) for l in lines if "_sum" in l)
    # 20 loopback connects: more than nothing, and not whole milliseconds.
    assert 0 < total < 5, total
    assert abs(total * 1000 - round(total * 1000)) > 1e-9 or total * 1e6 % 1000 != 0, total
    sess = metric_lines(f, "ferry_listener_session_seconds_sum")
    assert sess and float(sess[0].split()[-1]) > 0, sess


def test_listener_accepting_metric_and_stats():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server a 127.0.0.1:{b.port}"))
    assert metric_lines(f, 'ferry_listener_accepting{listener="web"}') == [
        'ferry_listener_accepting{listener="web"} 1']
    assert f.listener("web")["accepting"] is True
    f.ctl("disable-listener", "web")
    assert metric_lines(f, 'ferry_listener_accepting{listener="web"}') == [
        'ferry_listener_accepting{listener="web"} 0']
    assert f.listener("web")["accepting"] is False
    f.ctl("enable-listener", "web")
    assert f.listener("web")["accepting"] is True


def test_backend_client_certificate_expiry_metric():
    c = certs()
    port = free_port()
    f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{free_port()}
tls = on
tls_ca = {os.path.join(c, "ca.pem")}
tls_cert = {os.path.join(c, "client.pem")}
"""))
    lines = metric_lines(f, "ferry_tls_cert_not_after_seconds")
    mine = [l for l in lines if 'backend="app"' in l]
    assert len(mine) == 1 and os.path.join(c, "client.pem") in mine[0], lines
    assert float(mine[0].split()[-1]) > time.time(), mine


# ---- memory at rest (item 19) ----

def openssl_conf_read(config, tmp):
    """Runs ferryd under strace until it has started, then stops it: whether
    it opened OPENSSL_CONF, the sign that OpenSSL initialised itself (its
    configuration, providers and random generator: about 2.4 MB of RSS)."""
    conf = os.path.join(tmp, "openssl-probe.cnf")
    with open(conf, "w") as fh:
        fh.write("# ferry test: read only when OpenSSL initialises\n")
    ini = os.path.join(tmp, "ferry.ini")
    with open(ini, "w") as fh:
        fh.write(config)
    trace = os.path.join(tmp, "strace.out")
    log = open(os.path.join(tmp, "ferryd.log"), "wb")
    p = subprocess.Popen(["strace", "-f", "-e", "trace=openat,open", "-o", trace,
                          os.environ.get("FERRYD", "build/daemon/ferryd"), "-c", ini],
                         stdout=log, stderr=subprocess.STDOUT,
                         env=dict(os.environ, OPENSSL_CONF=conf))
    try:
        wait_for(lambda: "started" in open(log.name, errors="replace").read() or
                 p.poll() is not None, timeout=30, what="ferryd started")
    finally:
        # Stop ferryd itself (its pid is on the started line); strace follows.
        m = re.search(r"msg=started .*?pid=(\d+)", open(log.name, errors="replace").read())
        if m:
            os.kill(int(m.group(1)), signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()
    with open(trace) as fh:
        return conf in fh.read()


def test_plain_ferryd_leaves_openssl_uninitialised():
    if not shutil.which("strace"):
        print("skip: no strace")
        return
    d = tmpdir()
    port = free_port()
    plain = (f"[global]\ncontrol_socket =\nworkers = 1\n[listener web]\n"
             f"bind = 127.0.0.1:{port}\nbackend = app\n[backend app]\nserver a 127.0.0.1:9\n")
    assert not openssl_conf_read(plain, d), "ferryd without TLS initialised OpenSSL"
    # With a TLS listener it must (the probe can tell).
    c = certs()
    tls = plain.replace("backend = app\n[backend",
                        f"backend = app\ntls = on\ntls_cert = {os.path.join(c, 'a-ec.pem')}\n"
                        "[backend", 1)
    assert openssl_conf_read(tls.replace(str(port), str(free_port())), tmpdir())


if __name__ == "__main__":
    runner.run(globals())
