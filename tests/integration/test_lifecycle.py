#!/usr/bin/env python3
"""Reload without refusing a connection, graceful stop, and the command line."""
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

from ferrytest import (FERRYD, connect, free_port, recv_all, recv_exact, runner,
                       start_backend, start_ferry, wait_for)


def cfg(ports, bport, extra=""):
    listeners = "".join(f"""
[listener l{i}]
bind = 127.0.0.1:{p}
backend = app
""" for i, p in enumerate(ports))
    return f"""
[global]
control_socket = @SOCK@
drain_timeout = 2s
{extra}
{listeners}
[backend app]
server app1 127.0.0.1:{bport}
"""


def _reload_refuses_nothing(accept):
    b = start_backend("echo")
    port = free_port()
    # Two workers even on a one-CPU machine, so that reuseport makes a group.
    extra = f"workers = 2\nreuseport = {accept}"
    f = start_ferry(cfg([port], b.port, extra))
    assert _listening(port) == (2 if accept == "on" else 1)
    stop = threading.Event()
    results = {"ok": 0, "failed": []}

    def hammer():
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"x")
                if recv_exact(s, 1) != b"x":
                    results["failed"].append("bad echo")
                s.close()
                results["ok"] += 1
            except OSError as e:
                results["failed"].append(repr(e))
            time.sleep(0.003)

    t = threading.Thread(target=hammer)
    t.start()
    # A long connection started before the reloads runs on through them.
    held = connect(port)
    held.sendall(b"before")
    assert recv_exact(held, 6) == b"before"
    deadline = time.monotonic() + 10
    n = 0
    other = free_port()
    while time.monotonic() < deadline:
        # Alternate: add a second listener, then remove it.
        f.write_config(cfg([port, other] if n % 2 == 0 else [port], b.port, extra))
        f.signal(signal.SIGHUP)
        n += 1
        time.sleep(0.25)
    stop.set()
    t.join()
    assert results["failed"] == [], results["failed"][:5]
    assert results["ok"] > 200, results["ok"]
    held.sendall(b"after")
    assert recv_exact(held, 5) == b"after"
    held.close()
    wait_for(lambda: f.ctl("info", json_out=True)["reloads"] == n, timeout=10,
             what=f"{n} reloads counted")


def test_reload_refuses_nothing_shared_socket():
    _reload_refuses_nothing("off")


def test_reload_refuses_nothing_reuseport():
    _reload_refuses_nothing("on")


def _listening(port):
    """Listening TCP sockets on 127.0.0.1:port (/proc/net/tcp, state 0A)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as fh:
        return sum(1 for line in fh.readlines()[1:]
                   if line.split()[1] == want and line.split()[3] == "0A")


def _worker_accepts(f, listener):
    """ferry_listener_worker_connections_total by worker index."""
    out = {}
    for line in f.ctl("metrics").splitlines():
        m = re.match(r'ferry_listener_worker_connections_total\{listener="([^"]*)",'
                     r'worker="(\d+)"\} (\d+)$', line)
        if m and m.group(1) == listener:
            out[int(m.group(2))] = int(m.group(3))
    return out


def test_reuseport_socket_per_worker():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(cfg([port], b.port, "workers = 2\nreuseport = on"))
    # One socket per worker, in one group.
    assert _listening(port) == 2
    for i in range(40):
        s = connect(port)
        s.sendall(b"%d" % i)
        assert recv_exact(s, len(b"%d" % i)) == b"%d" % i
        s.close()
    wait_for(lambda: f.listener("l0")["total"] == 40, what="40 connections counted")
    # The kernel hashes each connection (its addresses and ports) over the
    # group: 40 connections all on one socket would be a 2^-39 chance.
    per = _worker_accepts(f, "l0")
    assert sorted(per) == [0, 1] and sum(per.values()) == 40, per
    assert min(per.values()) > 0, per
    # reuseport is read at start: a reload keeps the sockets and says so.
    f.write_config(cfg([port], b.port, "workers = 2\nreuseport = off"))
    out = f.ctl("reload")
    assert "reuseport changed: the running value stays until restart" in out, out
    assert _listening(port) == 2
    s = connect(port)
    s.sendall(b"kept")
    assert recv_exact(s, 4) == b"kept"
    s.close()


def test_reuseport_bind_conflict_is_refused():
    # A group of our own user on the address would take the new sockets in
    # silently; the bind fails as a plain one does instead.
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    d = tempfile.mkdtemp()
    config = cfg([port], 9, f"control_socket = {d}/s.sock\nworkers = 2\nreuseport = on").replace(
        "control_socket = @SOCK@\n", "")
    r, path = run_ferryd(config=config)
    assert r.returncode == 2, r
    line = config.splitlines().index(f"bind = 127.0.0.1:{port}") + 1
    want = f"{path}:{line}: cannot bind 127.0.0.1:{port}: Address already in use"
    assert want in r.stderr.decode().splitlines(), r.stderr
    busy.close()


def test_reload_adds_and_removes_listeners():
    b = start_backend("echo")
    p1, p2 = free_port(), free_port()
    f = start_ferry(cfg([p1], b.port))
    s = connect(p1)
    s.sendall(b"old")
    assert recv_exact(s, 3) == b"old"
    s.close()
    f.write_config(cfg([p1, p2], b.port))
    assert f.ctl("reload").strip() == "ok"
    # Counters survive a reload.
    assert f.listener("l0")["total"] == 1
    assert f.listener("l0")["bytes_in"] == 3
    s = connect(p2)
    s.sendall(b"new")
    assert recv_exact(s, 3) == b"new"
    f.write_config(cfg([p2], b.port))
    assert f.ctl("reload").strip() == "ok"
    # p1 is closed now; p2 and its established connection live on.
    wait_for(lambda: _refused(p1), timeout=5, what="p1 closed")
    s.sendall(b"still")
    assert recv_exact(s, 5) == b"still"
    s.close()
    st = f.stats()
    assert [l["binds"] for l in st["listeners"]] == [[f"127.0.0.1:{p2}"]], st


def _refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except (ConnectionRefusedError, ConnectionResetError):
        # A probe that reached the accept queue as the socket closed is reset.
        return True


def test_failed_reload_changes_nothing():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(cfg([port], b.port))
    f.write_config(cfg([port], b.port) + "\n[backend app]\nserver x 127.0.0.1:1\nbogus = 1\n")
    f.signal(signal.SIGHUP)
    wait_for(lambda: "msg=reload_failed" in f.logtext(), what="reload failure logged")
    assert f.path + ":" in f.logtext()
    s = connect(port)
    s.sendall(b"fine")
    assert recv_exact(s, 4) == b"fine"
    s.close()
    assert f.ctl("info", json_out=True)["reloads"] == 0


def test_sigterm_drains_then_exits_zero():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(cfg([port], b.port))
    held = connect(port)
    held.sendall(b"a")
    assert recv_exact(held, 1) == b"a"
    f.signal(signal.SIGTERM)
    # Stops accepting at once...
    wait_for(lambda: _refused(port), timeout=5, what="listener closed")
    # ...while the established connection still works.
    held.sendall(b"b")
    assert recv_exact(held, 1) == b"b"
    held.close()
    assert f.proc.wait(10) == 0
    assert "end=closed" in f.logtext()


def test_drain_timeout_cuts_the_rest():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(cfg([port], b.port).replace("drain_timeout = 2s", "drain_timeout = 500ms"))
    held = connect(port)
    held.sendall(b"a")
    assert recv_exact(held, 1) == b"a"
    t0 = time.monotonic()
    f.signal(signal.SIGTERM)
    assert recv_all(held) == b""
    assert f.proc.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert "end=drained" in f.logtext()


def test_second_signal_stops_at_once():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(cfg([port], b.port).replace("drain_timeout = 2s", "drain_timeout = 60s"))
    held = connect(port)
    held.sendall(b"a")
    assert recv_exact(held, 1) == b"a"
    f.signal(signal.SIGTERM)
    time.sleep(0.3)
    f.signal(signal.SIGINT)
    assert f.proc.wait(5) == 0
    held.close()


def run_ferryd(*args, config=None):
    d = tempfile.mkdtemp()
    path = os.path.join(d, "ferry.ini")
    if config is not None:
        with open(path, "w") as fh:
            fh.write(config)
    r = subprocess.run([FERRYD, *args] + (["-c", path] if config is not None else []),
                       capture_output=True, timeout=30)
    return r, path


def test_cli_test_mode_and_version():
    r, path = run_ferryd("-t", config=cfg([free_port()], 9))
    assert r.returncode == 0, r
    assert r.stdout.decode().strip() == f"{path}: configuration is valid"
    bad = "[global]\nworkers = many\n[listener x]\nbackend = nowhere\n[frob]\n"
    r, path = run_ferryd("-t", config=bad)
    assert r.returncode == 1
    lines = (r.stdout + r.stderr).decode().strip().splitlines()
    assert f"{path}:2: " in lines[0], lines
    assert any(l.startswith(f"{path}:3: ") for l in lines), lines  # listener without bind
    assert any(l.startswith(f"{path}:4: ") for l in lines), lines  # unknown backend
    assert any(l.startswith(f"{path}:5: ") for l in lines), lines  # unknown section
    r, _ = run_ferryd("-V")
    assert r.returncode == 0 and r.stdout.decode().startswith("ferryd ")
    r, _ = run_ferryd("-h")
    assert r.returncode == 0 and b"--config" in r.stdout


def test_startup_failures():
    # A configuration error: exit 1.
    r, _ = run_ferryd(config="[listener x]\nbind = 127.0.0.1:1\n")
    assert r.returncode == 1
    # A bind that fails: exit 2 with the address and reason.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    d = tempfile.mkdtemp()
    config = cfg([port], 9, f"control_socket = {d}/s.sock").replace("control_socket = @SOCK@\n", "")
    r, path = run_ferryd(config=config)
    assert r.returncode == 2, r
    line = config.splitlines().index(f"bind = 127.0.0.1:{port}") + 1
    want = f"{path}:{line}: cannot bind 127.0.0.1:{port}: Address already in use"
    assert want in r.stderr.decode().splitlines(), r.stderr
    # The metrics endpoint and the control socket name their lines alike.
    free = free_port()
    config = cfg([free], 9, f"control_socket = {d}/m.sock\nmetrics = 127.0.0.1:{port}").replace(
        "control_socket = @SOCK@\n", "")
    r, path = run_ferryd(config=config)
    assert r.returncode == 2, r
    line = config.splitlines().index(f"metrics = 127.0.0.1:{port}") + 1
    want = f"{path}:{line}: cannot bind 127.0.0.1:{port}: Address already in use"
    assert want in r.stderr.decode().splitlines(), r.stderr
    regular = os.path.join(d, "not-a-socket")
    open(regular, "w").close()
    config = cfg([free], 9, f"control_socket = {regular}").replace("control_socket = @SOCK@\n", "")
    r, path = run_ferryd(config=config)
    assert r.returncode == 2, r
    line = config.splitlines().index(f"control_socket = {regular}") + 1
    assert f"{path}:{line}: cannot bind {regular}: " in r.stderr.decode(), r.stderr
    busy.close()


if __name__ == "__main__":
    runner.run(globals())
