#!/usr/bin/env python3
"""Logs (ferryd(8) LOGS) with the real ferryd: logfmt with ts= or the journal's <N>
priority, JSON, escaping of hostile values (configuration and SNI), the
access log's fields and its own file, log_level independence, SIGUSR1
reopen, syslog, and sinks that never drain (a pipe nobody reads, a FIFO whose
reader never reads): traffic keeps flowing and the dropped-lines counter
rises."""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

from ferrytest import (FERRYD, cleanup, connect, free_port, parse_logfmt, recv_exact, runner,
                       start_backend, start_ferry, wait_for, web_config)

HERE = os.path.dirname(os.path.abspath(__file__))
TS = re.compile(r"^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(error|warn|info|debug) msg=[a-z0-9_]+( |$)")
CONN_KEYS = ["level", "msg", "id", "listener", "client", "server", "duration_ms", "connect_ms",
             "retries", "bytes_in", "bytes_out", "end", "closed_by"]


def echo_once(port, data=b"ping"):
    s = connect(port)
    s.sendall(data)
    assert recv_exact(s, len(data)) == data
    s.close()


def read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def conn_lines(text):
    return [kv for kv in map(parse_logfmt, text.splitlines()) if kv.get("msg") == "conn"]


def test_logfmt_lines_start_with_ts():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}"))
    echo_once(port)
    wait_for(lambda: f.access_log(), what="access log line")
    f.stop()
    lines = [l for l in f.logtext().splitlines() if l.strip()]
    assert lines
    for l in lines:
        assert TS.match(l), l
        assert parse_logfmt(l), l
    started = f.events("started")[0]
    assert started["level"] == "info" and started["pid"] == str(f.proc.pid), started
    e = f.access_log()[0]
    assert list(e)[:len(CONN_KEYS) + 1] == ["ts"] + CONN_KEYS, list(e)
    assert e["server"] == "app/app1" and e["end"] == "closed" and e["closed_by"] == "client", e
    assert e["retries"] == "0" and int(e["connect_ms"]) >= 0 and e["bytes_in"] == "4", e
    assert "reason" not in e and "sni" not in e, e
    assert f.events("stopped")


def run_raw(config, stderr, env=None, dirname=None, name="ferry.ini"):
    """ferryd with stderr of our choosing; returns (proc, dir, socket, stop)."""
    d = dirname or tempfile.mkdtemp(prefix="ferry-logs-")
    cleanup(lambda: shutil.rmtree(d, True))
    sock = os.path.join(d, "ferry.sock")
    path = os.path.join(d, name)
    with open(path, "w") as fh:
        fh.write(config.replace("@SOCK@", sock).replace("@DIR@", d))
    e = dict(os.environ)
    # Sanitizer reports must not depend on the stderr under test.
    san = tempfile.mkdtemp(prefix="ferry-san-")
    cleanup(lambda: shutil.rmtree(san, True))
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        e[k] = (e.get(k, "") + ":" if e.get(k) else "") + "log_path=" + os.path.join(san, "san")
    e.update(env or {})
    p = subprocess.Popen([FERRYD, "-c", path], stdout=subprocess.DEVNULL, stderr=stderr, env=e)

    def stop():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise AssertionError("ferryd did not stop")
        reports = os.listdir(san)
        assert not reports, read(os.path.join(san, reports[0]))
        assert p.returncode == 0, p.returncode
    cleanup(stop)
    wait_for(lambda: os.path.exists(sock) or p.poll() is not None, timeout=15, what="control socket")
    if p.poll() is not None:
        stderr.flush() if hasattr(stderr, "flush") else None
        raise AssertionError(f"ferryd exited {p.returncode}: " + read(os.path.join(d, "stderr")))
    return p, d, sock, stop


def control(sock, line):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock)
    s.sendall(line)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out.decode()


def test_journal_priority_prefix():
    b = start_backend("echo")
    port = free_port()
    d = tempfile.mkdtemp(prefix="ferry-logs-")
    logf = os.path.join(d, "stderr")
    fh = open(logf, "wb")
    st = os.fstat(fh.fileno())
    cfg = web_config(port, f"server app1 127.0.0.1:{b.port}\nserver bad 127.0.0.1:{free_port()}",
                     "log_level = debug")
    p, _, sock, stop = run_raw(cfg, fh, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"},
                               dirname=d)
    for _ in range(4):
        echo_once(port)
    wait_for(lambda: "msg=connect_failed" in read(logf), what="a warning")
    stop()
    fh.close()
    lines = [l for l in read(logf).splitlines() if l]
    for l in lines:
        assert re.match(r"^<[3467]>level=", l), l
        assert "ts=" not in l, l
    warn = [l for l in lines if "msg=connect_failed" in l]
    assert warn and all(l.startswith("<4>level=warn ") for l in warn), warn
    assert any(l.startswith("<6>level=info msg=conn ") for l in lines), lines
    # Not the journal (another inode): ts= again.
    port2 = free_port()
    logf2 = os.path.join(d, "stderr2")
    with open(logf2, "wb") as fh2:
        p2, _, _, stop2 = run_raw(web_config(port2, f"server app1 127.0.0.1:{b.port}"), fh2,
                                  env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"},
                                  dirname=tempfile.mkdtemp(prefix="ferry-logs-"))
        wait_for(lambda: "msg=started" in read(logf2), what="started")
        stop2()
    assert all(TS.match(l) for l in read(logf2).splitlines() if l), read(logf2)


def test_json_format():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}", "log_format = json"))
    echo_once(port, b"hello")
    wait_for(lambda: '"msg":"conn"' in f.logtext(), what="access line")
    f.stop()
    objs = [json.loads(l) for l in f.logtext().splitlines() if l.strip()]
    assert objs
    for o in objs:
        assert list(o)[:3] == ["ts", "level", "msg"], o
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", o["ts"]), o
    conn = [o for o in objs if o["msg"] == "conn"][0]
    assert list(conn)[1:len(CONN_KEYS) + 1] == CONN_KEYS, conn
    assert isinstance(conn["id"], int) and conn["bytes_in"] == 5 and conn["bytes_out"] == 5, conn
    assert conn["server"] == "app/app1" and conn["end"] == "closed", conn


def test_hostile_values_stay_on_one_line():
    # A configuration path full of quotes, spaces and '=' (logged as config=),
    # and a reload error quoting a hostile value.
    b = start_backend("echo")
    port = free_port()
    weird = tempfile.mkdtemp(prefix='ferry "we=ird dir ')
    out = os.path.join(weird, "stderr")
    fh = open(out, "wb")
    p, d, sock, stop = run_raw(web_config(port, f"server app1 127.0.0.1:{b.port}"), fh,
                               dirname=weird, name='f"e=rry me.ini')
    wait_for(lambda: "msg=started" in read(out), what="started")
    with open(os.path.join(weird, 'f"e=rry me.ini'), "a") as c:
        c.write('\n[listener x]\nbind = 127.0.0.1:1\nbackend = pg"x y=1\n')
    p.send_signal(signal.SIGHUP)
    wait_for(lambda: "msg=reload_failed" in read(out), what="reload failed")
    echo_once(port)
    wait_for(lambda: "msg=conn " in read(out), what="access line")
    stop()
    fh.close()
    text = read(out)
    for l in text.splitlines():
        assert parse_logfmt(l) and TS.match(l), l
    started = [parse_logfmt(l) for l in text.splitlines() if "msg=started" in l][0]
    assert started["config"] == os.path.join(weird, 'f"e=rry me.ini'), started
    err = [parse_logfmt(l) for l in text.splitlines() if "msg=reload_failed" in l]
    assert any('pg"x' in e["error"] for e in err), err
    assert all(set(e) == {"ts", "level", "msg", "error"} for e in err), err


def test_hostile_sni_and_tls_fields():
    certs = tempfile.mkdtemp(prefix="ferry-logs-certs-")
    atexit.register(shutil.rmtree, certs, True)
    subprocess.run(["sh", os.path.join(HERE, "..", "fixtures", "gen-certs.sh"), certs], check=True,
                   timeout=120, stdout=subprocess.DEVNULL)
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}", "",
                               f"tls = on\ntls_cert = {os.path.join(certs, 'a-ec.pem')}\n"
                               "tls_alpn = h2,http/1.1"))
    hostile = 'evil" end=closed\nlevel=error msg=forged x='
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                        hostile, "-alpn", "http/1.1"], input=b"hi", capture_output=True,
                       timeout=20)
    # A handshake that fails: its reason (OpenSSL's words) is on the conn line.
    r2 = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1",
                         "-cipher", "DEFAULT@SECLEVEL=0"], stdin=subprocess.DEVNULL,
                        capture_output=True, timeout=20)
    assert r2.returncode != 0
    wait_for(lambda: len(f.access_log()) == 2, what="two access lines")
    text = f.logtext()
    assert "msg=forged" not in [parse_logfmt(l).get("msg") for l in text.splitlines()]
    assert all(parse_logfmt(l) for l in text.splitlines() if l), text
    ok = [e for e in f.access_log() if e["end"] != "handshake_failed"]
    assert len(ok) == 1, (f.access_log(), r.stderr)
    e = ok[0]
    assert e["sni"] == hostile, e
    assert e["tls"] in ("TLSv1.3", "TLSv1.2") and e["cipher"] and e["alpn"] == "http/1.1", e
    assert "client_cert" not in e and "reason" not in e, e
    bad = [e for e in f.access_log() if e["end"] == "handshake_failed"][0]
    assert bad["closed_by"] == "proxy" and "protocol" in bad["reason"], bad
    assert not [l for l in text.splitlines() if "handshake" in l and "msg=conn" not in l], text
    # A client certificate's subject (RFC 2253).
    mport = free_port()
    m = start_ferry(web_config(mport, f"server app1 127.0.0.1:{b.port}", "",
                               f"tls = on\ntls_cert = {os.path.join(certs, 'a-ec.pem')}\n"
                               f"tls_client_ca = {os.path.join(certs, 'ca.pem')}"))
    client = os.path.join(certs, "client.pem")
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{mport}", "-servername",
                        "a.test", "-cert", client, "-key", client], input=b"hi",
                       capture_output=True, timeout=20)
    wait_for(lambda: m.access_log(), what="mTLS access line")
    e = m.access_log()[0]
    assert e["end"] == "closed" and e["client_cert"] == "CN=client" and e["sni"] == "a.test", (e, r.stderr)


def test_warn_level_keeps_access_log_in_its_own_file():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}\n"
                               f"server gone 127.0.0.1:{free_port()}",
                               "log_level = warn\naccess_log = @DIR@/access.log"))
    for _ in range(4):
        echo_once(port)
    acc = os.path.join(f.dir, "access.log")
    wait_for(lambda: len(conn_lines(read(acc))) == 4, what="four access lines")
    wait_for(lambda: "msg=connect_failed" in f.logtext(), what="a warning in the main log")
    f.signal(signal.SIGHUP)  # msg=reloaded is info: not written at warn
    wait_for(lambda: f.ctl("info").find("reloads: 1") >= 0, what="reloaded")
    f.signal(signal.SIGHUP)
    wait_for(lambda: f.ctl("info").find("reloads: 2") >= 0, what="reloaded twice")
    text = f.logtext()
    assert "msg=conn " not in text and "level=info" not in text, text
    lines = conn_lines(read(acc))
    assert all(TS.match(l) for l in read(acc).splitlines()), read(acc)
    assert {e["server"] for e in lines} == {"app/app1"}, lines
    assert any(e["retries"] == "1" for e in lines), lines  # went past the dead server first


def test_sigusr1_reopens_moved_files():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}",
                               "log = ./ferry.log\naccess_log = ./access.log"),
                    )
    main, acc = os.path.join(f.dir, "ferry.log"), os.path.join(f.dir, "access.log")
    wait_for(lambda: "msg=started" in read(main), what="started in the log file")
    echo_once(port)
    wait_for(lambda: len(conn_lines(read(acc))) == 1, what="access line")
    os.rename(main, main + ".1")
    os.rename(acc, acc + ".1")
    echo_once(port)  # still written to the moved file until the signal
    wait_for(lambda: len(conn_lines(read(acc + ".1"))) == 2, what="second line, old file")
    f.signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(main) and os.path.exists(acc), what="files reopened")
    echo_once(port)
    wait_for(lambda: len(conn_lines(read(acc))) == 1, what="line in the new access file")
    assert "msg=log_reopened" in read(main)
    assert len(conn_lines(read(acc + ".1"))) == 2
    assert f.logtext() == "", f.logtext()  # nothing went to stderr


def test_syslog_datagrams():
    """log = syslog: one datagram a line to /dev/log, `<PRI>ferryd[PID]: `
    (facility daemon) then the line with ts=. Where no syslog daemon owns
    /dev/log and we may create it, the test listens there itself; otherwise
    it only checks that ferryd starts and serves."""
    b = start_backend("echo")
    port = free_port()
    rx = None
    if not os.path.exists("/dev/log") and os.access("/dev", os.W_OK):
        rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        rx.bind("/dev/log")
        rx.settimeout(10)

        def unbind():
            rx.close()
            os.unlink("/dev/log")
        cleanup(unbind)
    if rx is None and not os.path.exists("/dev/log"):
        print("skip: no /dev/log and cannot create it")
        return
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}\n"
                               f"server gone 127.0.0.1:{free_port()}", "log = syslog"))
    for _ in range(3):
        echo_once(port)
    if rx is None:
        return
    got = []
    while not any(b" msg=conn " in g for g in got) or not any(b"msg=connect_failed" in g for g in got):
        got.append(rx.recv(8192))
    pid = f.proc.pid
    for g in got:
        m = re.match(rb"<(\d+)>ferryd\[(\d+)\]: (.*)$", g, re.S)
        assert m and int(m.group(2)) == pid, g
        line = m.group(3).decode()
        assert "\n" not in line and TS.match(line), g
        level = parse_logfmt(line)["level"]
        assert int(m.group(1)) == 3 * 8 + {"error": 3, "warn": 4, "info": 6, "debug": 7}[level], g
    assert f.logtext() == "", f.logtext()  # nothing on stderr


def test_closed_by_server_and_reset():
    def bye(c, _):
        c.recv(16)
        c.sendall(b"bye")
        c.close()  # FIN first, from the server

    def rst(c, _):
        c.recv(16)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST
    b1, b2 = start_backend(bye), start_backend(rst)
    p1, p2 = free_port(), free_port()
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
[listener bye]
bind = 127.0.0.1:{p1}
backend = bye
[listener rst]
bind = 127.0.0.1:{p2}
backend = rst
[backend bye]
server s 127.0.0.1:{b1.port}
[backend rst]
server s 127.0.0.1:{b2.port}
""")
    s = connect(p1)
    s.sendall(b"hi")
    assert recv_exact(s, 3) == b"bye"
    time.sleep(0.2)
    s.close()
    s = connect(p2)
    s.sendall(b"hi")
    try:
        s.recv(16)
    except OSError:
        pass
    s.close()
    wait_for(lambda: len(f.access_log()) == 2, what="two access lines")
    by = {e["listener"]: (e["end"], e["closed_by"]) for e in f.access_log()}
    assert by == {"bye": ("closed", "server"), "rst": ("reset", "server")}, by


def many_clients(port, n, threads=8):
    done = []
    errors = []

    def work(k):
        for i in range(k):
            try:
                echo_once(port, b"x" * 16)
                done.append(1)
            except OSError as e:
                errors.append(e)
    ts = [threading.Thread(target=work, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[:3]
    return len(done)


def test_stderr_pipe_nobody_reads():
    b = start_backend("echo")
    port = free_port()
    r, w = os.pipe()
    cleanup(lambda: os.close(r))
    cfg = web_config(port, f"server app1 127.0.0.1:{b.port}", "log_level = debug")
    p, d, sock, stop = run_raw(cfg, w)
    os.close(w)
    t0 = time.monotonic()
    # 4,000 access lines: more than the pipe (64 KiB) and the rings hold.
    assert many_clients(port, 4000) == 4000
    info = dict(l.split(": ", 1) for l in control(sock, b"show info\n").splitlines())
    assert int(info["log_dropped"]) > 0, info
    metrics = control(sock, b"show metrics\n")
    m = re.search(r"^ferry_log_lines_dropped_total (\d+)$", metrics, re.M)
    assert m and int(m.group(1)) >= int(info["log_dropped"]), metrics[-500:]
    echo_once(port)  # still serving
    t1 = time.monotonic()
    stop()  # exits although the pipe never drains
    assert time.monotonic() - t1 < 10
    print(f"  4000 connections in {t1 - t0:.1f}s, log_dropped={info['log_dropped']}")


def test_log_fifo_reader_never_reads():
    b = start_backend("echo")
    port = free_port()
    d = tempfile.mkdtemp(prefix="ferry-logs-")
    fifo = os.path.join(d, "log.fifo")
    os.mkfifo(fifo)
    rd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader that never reads
    cleanup(lambda: os.close(rd))
    out = open(os.path.join(d, "stderr"), "wb")
    cfg = web_config(port, f"server app1 127.0.0.1:{b.port}", f"log = {fifo}")
    p, _, sock, stop = run_raw(cfg, out, dirname=d)
    assert many_clients(port, 4000) == 4000
    info = json.loads(control(sock, b"show info json\n"))
    assert info["log_dropped"] > 0, info
    stop()
    out.close()
    assert read(os.path.join(d, "stderr")) == ""


if __name__ == "__main__":
    runner.run(globals())
