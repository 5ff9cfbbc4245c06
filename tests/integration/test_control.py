#!/usr/bin/env python3
"""The control socket and ferryctl, checked against real traffic, and hostile
control clients."""
import json
import os
import signal
import socket
import subprocess
import threading
import time

from ferrytest import (web_config, FERRYCTL, FERRYD as FERRYD_T, connect, free_port, recv_all, recv_exact, runner,
                       start_backend, start_ferry, wait_for)


def web_ferry():
    # Not `setup`: pytest would run a module-level setup() once before the
    # tests, outside any of them, and its ferryd was never stopped.
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"""
server app1 127.0.0.1:{b.port}
""", global_lines="max_connections = 500"))
    return f, port


def test_show_commands_match_traffic():
    f, port = web_ferry()
    held = connect(port)
    held.sendall(b"a" * 100)
    assert recv_exact(held, 100) == b"a" * 100
    for _ in range(3):
        s = connect(port)
        s.sendall(b"b" * 10)
        assert recv_exact(s, 10) == b"b" * 10
        s.close()
    wait_for(lambda: f.listener("web")["active"] == 1, what="three closed")

    info = f.ctl("info", json_out=True)
    assert info["active"] == 1 and info["total"] == 4, info
    assert info["max_connections"] == 500 and info["reloads"] == 0
    assert info["pid"] == f.proc.pid and info["workers"] >= 1
    assert info["config"] == f.path and info["version"]
    text = f.ctl("info")
    assert "active: 1" in text and f"pid: {f.proc.pid}" in text

    st = f.ctl("stats", json_out=True)
    (l,) = st["listeners"]
    assert l["name"] == "web" and l["binds"] == [f"127.0.0.1:{port}"] and l["tls"] is False
    assert l["active"] == 1 and l["total"] == 4 and l["rejected"] == 0
    assert l["bytes_in"] == 130 and l["bytes_out"] == 130, l
    (b,) = st["backends"]
    assert b["name"] == "app" and b["balance"] == "roundrobin" and b["active"] == 1 and b["total"] == 4
    (s,) = b["servers"]
    assert s["name"] == "app1" and s["state"] == "up" and s["total"] == 4
    assert s["bytes_out"] == 130 and s["bytes_in"] == 130 and s["connect_errors"] == 0
    table = f.ctl("stats")
    assert "web" in table and "app1" in table

    conns = f.ctl("conns", json_out=True)["conns"]
    assert len(conns) == 1
    c = conns[0]
    assert c["listener"] == "web" and c["server"] == "app/app1"
    assert c["client"] == "127.0.0.1:%d" % held.getsockname()[1]
    assert c["bytes_in"] == 100 and c["bytes_out"] == 100 and c["age_s"] >= 0
    assert str(c["id"]) in f.ctl("conns")

    metrics = f.ctl("metrics")
    assert 'ferry_listener_connections_total{listener="web"} 4' in metrics, metrics
    assert 'ferry_server_up{backend="app",server="app1"} 1' in metrics
    assert "# TYPE ferry_listener_connections_active gauge" in metrics
    held.close()


def test_text_views_escape_control_characters():
    """A client name from the network (here the path a Unix-socket client
    bound itself to) is printed escaped in every text view, as in the logs:
    `show conns`, `ferryctl conns`; JSON keeps it exact. ferryctl escapes
    whatever control character an answer holds, whoever sent it."""
    b = start_backend("echo")
    f = start_ferry(web_config(free_port(), f"server app1 127.0.0.1:{b.port}",
                               listener_lines="bind = unix:@DIR@/web.sock"))
    forged = os.path.join(f.dir, "c\x1b[2J\r\n9 web ok\x07")
    u = socket.socket(socket.AF_UNIX)
    u.settimeout(10)
    u.bind(forged)
    u.connect(os.path.join(f.dir, "web.sock"))
    u.sendall(b"hello")
    assert recv_exact(u, 5) == b"hello"
    try:
        (c,) = f.ctl("conns", json_out=True)["conns"]
        assert c["client"] == "unix:" + forged, c
        for text in (f.ctl("conns"), f.command(b"show conns\n")):
            assert not any(ord(ch) < 32 and ch != "\n" or ord(ch) == 127 for ch in text), repr(text)
            assert len(text.splitlines()) == 2, repr(text)
            assert "c\\x1b[2J\\x0d\\n9 web ok\\x07" in text, repr(text)
    finally:
        u.close()
        os.unlink(forged)

    # ferryctl itself: an answer with raw control characters (a daemon that
    # does not escape) is printed escaped, newlines kept.
    path = os.path.join(f.dir, "fake.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)

    def answer():
        for _ in range(2):
            c, _ = srv.accept()
            c.recv(4096)
            c.sendall(b"version: \x1b]0;owned\x07x\ttab\rcr\x7f\nnext: line\n")
            c.close()
    t = threading.Thread(target=answer, daemon=True)
    t.start()
    for cmd in ("info", "conns"):
        r = subprocess.run([FERRYCTL, "-s", path, cmd], capture_output=True, timeout=10)
        out = r.stdout.decode()
        assert r.returncode == 0, r
        assert out == "version: \\x1b]0;owned\\x07x\\ttab\\x0dcr\\x7f\nnext: line\n", repr(out)
    t.join(5)
    srv.close()


def test_help_and_errors():
    f, _ = web_ferry()
    assert "show stats" in f.command(b"help\n")
    for bad in [b"bogus\n", b"show\n", b"show nothing\n", b"disable server nope\n",
                b"disable server app/none\n", b"enable server x/y\n", b"\x00\x01\x02\n", b"\n"]:
        out = f.command(bad)
        assert out.startswith("error:"), (bad, out)
    r = subprocess.run([FERRYCTL, "-s", f.sock_path, "disable", "app/none"], capture_output=True)
    assert r.returncode == 1 and r.stdout.startswith(b"error:")
    r = subprocess.run([FERRYCTL, "-s", f.sock_path + ".missing", "info"], capture_output=True)
    assert r.returncode == 2
    assert b"cannot connect to" in r.stderr and b"No such file or directory" in r.stderr


def test_hostile_control_clients():
    f, port = web_ferry()
    # A 1 MiB line.
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(f.sock_path)
    try:
        s.sendall(b"x" * (1 << 20) + b"\n")
    except OSError:
        pass
    try:
        out = recv_all(s)
    except OSError:
        out = b"error:"
    assert out.startswith(b"error:"), out[:100]
    s.close()
    # 1,000 clients at once, half silent, half sending garbage without reading.
    clients = []
    for i in range(1000):
        c = socket.socket(socket.AF_UNIX)
        c.setblocking(False)
        try:
            c.connect(f.sock_path)
        except (BlockingIOError, OSError):
            pass
        if i % 2:
            try:
                c.send(b"garbage\x00" * 10)
            except OSError:
                pass
        clients.append(c)
    # Traffic is not disturbed.
    t = connect(port)
    t.sendall(b"ping")
    assert recv_exact(t, 4) == b"ping"
    t.close()
    for c in clients:
        c.close()
    # And the control socket answers again.
    wait_for(lambda: f.command(b"show info\n").startswith("version"), timeout=20,
             what="control answers after the flood")


def test_reload_command():
    f, _ = web_ferry()
    assert f.ctl("reload").strip() == "ok"
    assert f.ctl("info", json_out=True)["reloads"] == 1
    with open(f.path, "a") as fh:
        fh.write("\n[listener broken]\nbind = 127.0.0.1:notaport\n")
    r = subprocess.run([FERRYCTL, "-s", f.sock_path, "reload"], capture_output=True)
    assert r.returncode == 1
    out = r.stdout.decode()
    assert out.startswith("error:") and f.path + ":" in out, out
    info = f.ctl("info", json_out=True)
    assert info["reloads"] == 1 and info["reloads_failed"] == 1, info
    assert info["last_reload_ok"] is False and info["state"] == "ready", info


def test_reload_failure_only_a_running_daemon_sees():
    # A bind in use passes `ferryd -t` but fails the reload: ferryctl reload
    # (the unit's ExecReload=) reports it and exits 1; nothing changes.
    f, port = web_ferry()
    t0 = int(time.time())
    info = f.ctl("info", json_out=True)
    assert info["reloads"] == 0 and info["reloads_failed"] == 0, info
    assert info["last_reload"] == 0 and info["last_reload_ok"] is True, info
    assert info["config"] == os.path.realpath(f.path) and info["state"] == "ready", info
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    bport = busy.getsockname()[1]
    with open(f.path) as fh:
        old = fh.read()
    new = old + f"\n[listener extra]\nbind = 127.0.0.1:{bport}\nbackend = app\n"
    f.write_config(new)
    assert subprocess.run([FERRYD_T, "-t", "-c", f.path], capture_output=True).returncode == 0
    r = subprocess.run([FERRYCTL, "-s", f.sock_path, "reload"], capture_output=True, timeout=30)
    busy.close()
    assert r.returncode == 1, r
    line = new.splitlines().index(f"bind = 127.0.0.1:{bport}") + 1
    want = f"error: {f.path}:{line}: cannot bind 127.0.0.1:{bport}: Address already in use"
    assert want in r.stdout.decode().splitlines(), r.stdout
    info = f.ctl("info", json_out=True)
    assert info["reloads"] == 0 and info["reloads_failed"] == 1, info
    assert info["last_reload"] >= t0 and info["last_reload_ok"] is False, info
    assert "last_reload_ok: false" in f.ctl("info")
    m = f.ctl("metrics")
    assert "ferry_reloads_failed_total 1" in m and "ferry_config_last_reload_successful 0" in m
    s = connect(port)
    s.sendall(b"still")
    assert recv_exact(s, 5) == b"still"
    s.close()
    # Fixed: the reload goes through, and a restart-only change is a warning.
    f.write_config(old.replace("max_connections = 500", "max_connections = 500\nworkers = 3"))
    r = subprocess.run([FERRYCTL, "-s", f.sock_path, "reload"], capture_output=True, timeout=30)
    assert r.returncode == 0, r
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "ok" and any(l.startswith("warning: ") and "workers" in l
                                    for l in lines[1:]), lines
    info = f.ctl("info", json_out=True)
    assert info["reloads"] == 1 and info["reloads_failed"] == 1 and info["last_reload_ok"], info
    m = f.ctl("metrics")
    assert "ferry_reloads_total 1" in m and "ferry_config_last_reload_successful 1" in m
    ts = [l for l in m.splitlines()
          if l.startswith("ferry_config_last_reload_success_timestamp_seconds ")]
    assert ts and int(ts[0].split()[1]) >= t0, ts


def ctl_raw(f, *args):
    return subprocess.run([FERRYCTL, "-s", f.sock_path] + list(args), capture_output=True,
                          timeout=30)


def test_ferryctl_json_with_every_command():
    f, _ = web_ferry()
    r = ctl_raw(f, "--json", "disable", "app/app1")
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True}, r
    r = ctl_raw(f, "enable", "app/app1", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True}, r
    r = ctl_raw(f, "--json", "disable", "app/nope")
    assert r.returncode == 1, r
    assert json.loads(r.stdout) == {"ok": False, "error": "no such server app/nope"}, r.stdout
    r = ctl_raw(f, "--json", "reload")
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True}, r
    m = json.loads(ctl_raw(f, "--json", "metrics").stdout)
    assert "ferry_reloads_total 1" in m["metrics"], m
    h = json.loads(ctl_raw(f, "--json", "help").stdout)
    assert "show stats" in h["help"], h
    for cmd in ("info", "stats", "conns"):
        r = ctl_raw(f, "-j", cmd)
        assert r.returncode == 0 and isinstance(json.loads(r.stdout), dict), (cmd, r)
    # Two errors in the file: the first as "error", all under "errors".
    with open(f.path, "a") as fh:
        fh.write("\n[listener broken]\nbind = 127.0.0.1:notaport\nbogus = 1\n")
    r = ctl_raw(f, "--json", "reload")
    assert r.returncode == 1, r
    j = json.loads(r.stdout)
    assert j["ok"] is False and f.path in j["error"] and len(j["errors"]) >= 2, j
    assert j["error"] == j["errors"][0], j
    # Cannot connect: exit 2, the reason on stderr, and JSON on stdout.
    r = subprocess.run([FERRYCTL, "-s", f.sock_path + ".none", "--json", "info"],
                       capture_output=True, timeout=30)
    assert r.returncode == 2, r
    assert json.loads(r.stdout)["ok"] is False and b"cannot connect to" in r.stderr, r


def test_ferryctl_usage_errors_are_one_line():
    f, _ = web_ferry()
    cases = [
        ([], "missing command"),
        (["frob"], "unknown command 'frob'"),
        (["disable"], "usage: disable BACKEND/SERVER"),
        (["disable", "app"], "expected BACKEND/SERVER, got 'app'"),
        (["info", "extra"], "unexpected argument 'extra'"),
        (["--bogus", "info"], "unknown option '--bogus'"),
        (["-x", "info"], "unknown option '-x'"),
        (["info", "-s"], "option '-s' needs a SOCKET argument"),
    ]
    for args, want in cases:
        r = ctl_raw(f, *args)
        err = r.stderr.decode()
        assert r.returncode == 2, (args, r)
        assert err.count("\n") == 1 and err.startswith("ferryctl: ") and want in err, (args, err)
        assert r.stdout == b"", (args, r.stdout)
    r = ctl_raw(f, "--json", "frob")
    assert r.returncode == 2 and "unknown command 'frob'" in json.loads(r.stdout)["error"], r


def epoll_conns(pid, port):
    """Which event loop holds each of ferryd's connections accepted on port:
    {epoll fd: set of client ports}, read from /proc (each worker has its own
    epoll instance; its fdinfo lists the descriptors registered with it).
    Empty with the poll(2) reactor."""
    inode_client = {}
    for line in open(f"/proc/{pid}/net/tcp").read().splitlines()[1:]:
        cols = line.split()
        local, remote, inode = cols[1], cols[2], cols[9]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) != 0:
            inode_client[inode] = int(remote.split(":")[1], 16)
    fd_client, epolls = {}, []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inode_client:
            fd_client[int(fd)] = inode_client[target[8:-1]]
        elif target == "anon_inode:[eventpoll]":
            epolls.append(fd)
    loops = {}
    for ep in epolls:
        with open(f"/proc/{pid}/fdinfo/{ep}") as fh:
            tfds = {int(l.split()[1]) for l in fh if l.startswith("tfd:")}
        held = {fd_client[t] for t in tfds if t in fd_client}
        if held:
            loops[ep] = held
    return loops


def test_show_conns_lists_every_workers_connections():
    """workers = 2: each worker lists its own connections (asked through its
    inbox) and `show conns` merges them all, with each one's own bytes."""
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}\n",
                               global_lines="workers = 2"))
    held = {}
    # Bursts of clients until both event loops hold some (bounded).
    for burst in range(12):
        new = [connect(port) for _ in range(6)]
        for s in new:
            n = 1 + len(held)
            s.sendall(b"x" * n)
            held[s.getsockname()[1]] = (s, n)
        for s in new:
            n = held[s.getsockname()[1]][1]
            assert recv_exact(s, n) == b"x" * n
        loops = epoll_conns(f.proc.pid, port)
        if len(loops) >= 2 or (not loops and len(held) >= 16):
            break
    if loops:  # epoll: the connections really are on two workers
        assert len(loops) == 2, loops
        assert set().union(*loops.values()) == set(held), (loops, sorted(held))
    wait_for(lambda: f.listener("web")["active"] == len(held), what="all connections counted")
    conns = f.ctl("conns", json_out=True)["conns"]
    got = {int(c["client"].rsplit(":", 1)[1]): c for c in conns}
    assert set(got) == set(held), (sorted(got), sorted(held))
    assert len(conns) == len(held) and len({c["id"] for c in conns}) == len(held)
    for cport, (_, n) in held.items():
        c = got[cport]
        assert c["listener"] == "web" and c["server"] == "app/app1", c
        assert c["bytes_in"] == n and c["bytes_out"] == n, (c, n)
    text = f.ctl("conns").splitlines()
    assert text[0].split() == ["id", "listener", "client", "server", "age_s", "bytes_in",
                               "bytes_out"], text[0]
    assert sorted(int(l.split()[0]) for l in text[1:]) == sorted(c["id"] for c in conns)
    for s, _ in held.values():
        s.close()
    wait_for(lambda: f.ctl("conns", json_out=True)["conns"] == [], what="list emptied")


def test_show_conns_through_a_stop():
    """`show conns` while ferryd drains lists the connections still running;
    asked over and over until ferryd exits (drain, cut, exit), every request
    ends with an answer or a closed socket, never a hang."""
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}\n",
                               global_lines="workers = 2\ndrain_timeout = 5s"))
    held = []
    for i in range(4):
        s = connect(port)
        s.sendall(b"h" * (i + 1))
        assert recv_exact(s, i + 1) == b"h" * (i + 1)
        held.append(s)
    outcomes = {"answer": 0, "gone": 0, "hung": 0, "bad": []}

    def ask_until_exit():
        deadline = time.monotonic() + 60
        for _ in range(5000):
            if f.proc.poll() is not None or time.monotonic() > deadline:
                return
            try:
                out = f.command(b"show conns json\n", timeout=10)
            except socket.timeout:
                outcomes["hung"] += 1
                continue
            except OSError:  # the socket is gone: ferryd is exiting
                outcomes["gone"] += 1
                time.sleep(0.01)
                continue
            if out == "":
                outcomes["gone"] += 1
                continue
            try:
                json.loads(out)["conns"]
                outcomes["answer"] += 1
            except (ValueError, KeyError):
                outcomes["bad"].append(out)
            time.sleep(0.01)

    th = threading.Thread(target=ask_until_exit)
    th.start()
    try:
        f.signal(signal.SIGTERM)
        wait_for(lambda: "msg=stopping" in f.logtext(), what="drain began")
        assert f.ctl("info", json_out=True)["state"] == "stopping"
        conns = f.ctl("conns", json_out=True)["conns"]
        mine = {s.getsockname()[1]: i + 1 for i, s in enumerate(held)}
        assert {int(c["client"].rsplit(":", 1)[1]): c["bytes_in"] for c in conns} == mine, conns
        # Still serving while draining; the worker shows the new byte count.
        held[0].sendall(b"more")
        assert recv_exact(held[0], 4) == b"more"
        wait_for(lambda: any(c["bytes_in"] == 5 for c in f.ctl("conns", json_out=True)["conns"]),
                 what="bytes seen by show conns")
        assert f.proc.wait(30) == 0  # the drain timeout cut the rest
    finally:
        th.join(90)
    assert not th.is_alive()
    assert outcomes["hung"] == 0 and outcomes["bad"] == [], outcomes
    assert outcomes["answer"] >= 1, outcomes
    for s in held:
        s.close()


def test_workers_auto_counts_the_cpus_it_may_use():
    """workers = auto is bounded by the CPU affinity ferryd starts with
    (taskset, systemd CPUAffinity=), not the machine's CPU count."""
    b = start_backend("echo")
    port = free_port()
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}",
                                   global_lines="workers = auto"))
    finally:
        os.sched_setaffinity(0, cpus)
    assert f.ctl("info", json_out=True)["workers"] == 1
    s = connect(port)
    s.sendall(b"one cpu")
    assert recv_exact(s, 7) == b"one cpu"
    s.close()


if __name__ == "__main__":
    runner.run(globals())
