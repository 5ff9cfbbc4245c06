#!/usr/bin/env python3
"""The data path under stress: limits shared by listeners, running out of
file descriptors, accept errors, resets passed on."""
import os
import socket
import struct
import subprocess
import sys
import threading
import time

from ferrytest import (web_config, Ferry, cleanup, connect, free_port, recv_exact, runner, start_backend,
                       start_ferry, wait_for)


def two_listeners(pa, pb, bport, global_extra=""):
    return f"""
[global]
control_socket = @SOCK@
workers = 2
{global_extra}
[listener a]
bind = 127.0.0.1:{pa}
backend = app
[listener b]
bind = 127.0.0.1:{pb}
backend = app
[backend app]
server app1 127.0.0.1:{bport}
"""


def echo_once(s, data):
    s.sendall(data)
    assert recv_exact(s, len(data)) == data


def unanswered(s, data, wait=0.5):
    """True when s was accepted by the kernel but ferryd does not serve it."""
    s.settimeout(wait)
    s.sendall(data)
    try:
        got = s.recv(len(data))
    except socket.timeout:
        got = None
    s.settimeout(10)
    return got is None


def test_global_limit_shared_by_listeners():
    """max_connections = 2 over listeners a and b on two workers: a client
    waiting on one listener is served as soon as a connection on the other
    ends (no accept task may sit on the freed permit with nothing queued)."""
    b = start_backend("echo")
    pa, pb = free_port(), free_port()
    f = start_ferry(two_listeners(pa, pb, b.port, "max_connections = 2"))
    for rnd in range(4):
        first, waiting_port = (pa, pb) if rnd % 2 == 0 else (pb, pa)
        x = connect(first)
        echo_once(x, b"x%d" % rnd)
        y = connect(waiting_port)
        echo_once(y, b"y%d" % rnd)
        z = connect(waiting_port)
        assert unanswered(z, b"z%d" % rnd), f"round {rnd}: third connection served over the limit"
        x.close()
        assert recv_exact(z, 2) == b"z%d" % rnd, f"round {rnd}: waiting client not served"
        y.close()
        z.close()
        wait_for(lambda: f.listener("a")["active"] + f.listener("b")["active"] == 0,
                 what="connections ended")
    assert f.listener("a")["rejected"] + f.listener("b")["rejected"] == 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_out_of_descriptors_is_not_the_servers_fault():
    """Under a descriptor limit, socket() failing with EMFILE is not counted
    against the server, the server stays up, warnings are few and carry a
    count, and service resumes once descriptors are free again."""
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
workers = 2
[listener web]
bind = 127.0.0.1:{port}
backend = app
[backend app]
server app1 127.0.0.1:{b.port}
health_fall = 2
""")
    echo_once(connect(port), b"warm")
    wait_for(lambda: f.listener("web")["active"] == 0, what="warm-up ended")
    limit = fd_count(f.proc.pid) + 12
    subprocess.run(["prlimit", f"--pid={f.proc.pid}", f"--nofile={limit}:{limit}"], check=True)
    clients = []
    for i in range(24):
        s = connect(port)
        s.settimeout(10)
        clients.append(s)
        s.sendall(b"c")
    served = failed = 0
    deadline = time.monotonic() + 10  # one wait shared by all, not 10 s each
    for s in clients:
        s.settimeout(max(0.2, deadline - time.monotonic()))
        try:
            got = s.recv(1)
        except OSError:
            got = b""
        if got == b"c":
            served += 1
        else:
            failed += 1
    assert served >= 1 and failed >= 1, (served, failed)
    for s in clients:
        s.close()
    wait_for(lambda: f.listener("web")["active"] == 0, timeout=20, what="clients gone")
    srv = f.server("app", "app1")
    assert srv["connect_errors"] == 0, srv
    assert srv["state"] == "up", srv
    # Log lines are written by the log thread, after the fact: wait for the first.
    wait_for(lambda: "msg=accept_paused_no_resources" in f.logtext(), what="warning logged")
    warnings = [l for l in f.logtext().splitlines() if "msg=accept_paused_no_resources" in l]
    assert 1 <= len(warnings) <= 6 and len(warnings) < failed, (failed, warnings)
    assert all("count=" in w for w in warnings), warnings
    assert not [l for l in f.logtext().splitlines() if "msg=server_down" in l]
    # Descriptors free again: served at once, nothing left behind.
    for i in range(5):
        s = connect(port)
        echo_once(s, b"after%d" % i)
        s.close()


def reset_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_server_reset_reaches_client_as_reset():
    """A server that resets mid-response: the client sees the bytes sent
    before, then a reset, not a clean end that would look complete."""
    def cut(c, be):
        c.recv(100)
        c.sendall(b"partial")
        time.sleep(0.3)
        reset_close(c)
    b = start_backend(cut)
    port = free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}"))
    s = connect(port)
    s.sendall(b"GET")
    assert recv_exact(s, 7) == b"partial"
    try:
        got = s.recv(100)
        raise AssertionError(f"clean end of stream instead of a reset: {got!r}")
    except ConnectionResetError:
        pass
    s.close()
    wait_for(lambda: f.access_log(), what="access log")
    assert f.access_log()[0]["end"] == "reset", f.access_log()


def test_client_reset_reaches_server_as_reset():
    seen = []
    got_req = threading.Event()

    def watch(c, be):
        c.settimeout(10)
        c.recv(100)
        got_req.set()
        try:
            d = c.recv(100)
            seen.append(("eof", d))
        except ConnectionResetError:
            seen.append(("reset", b""))
        except OSError as e:
            seen.append(("error", str(e).encode()))
    b = start_backend(watch)
    port = free_port()
    start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}"))
    s = connect(port)
    s.sendall(b"hello")
    assert got_req.wait(10)
    reset_close(s)
    wait_for(lambda: seen, what="server saw the end")
    assert seen[0][0] == "reset", seen


# Runs in the child: the listening socket on fd 3 as socket activation.
WRAPPER = r"""
import os, sys
fd = int(os.environ.pop("DP_FD"))
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_accept_error_is_retried():
    """An accept error other than the EMFILE family (here EINVAL: the
    inherited socket is bound but not listening yet) does not end accepting
    for good: it is logged once, retried with back-off, and once the socket
    listens clients are served."""
    b = start_backend("echo")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    cleanup(ls.close)
    port = ls.getsockname()[1]
    config = f"""
[global]
control_socket = @SOCK@
workers = 1
[listener web]
bind = 127.0.0.1:{port}
backend = app
[backend app]
server app1 127.0.0.1:{b.port}
"""
    import ferrytest
    real = ferrytest.FERRYD
    env = {"DP_FD": str(ls.fileno())}
    orig_popen = subprocess.Popen

    def popen(argv, **kw):
        kw["pass_fds"] = (ls.fileno(),)
        return orig_popen([sys.executable, "-c", WRAPPER] + argv, **kw)
    subprocess.Popen = popen
    try:
        f = start_ferry(config, env=env)
    finally:
        subprocess.Popen = orig_popen
    assert f.proc.args[3] == real
    wait_for(lambda: "msg=accept_failed_retrying" in f.logtext(), what="accept error logged")
    time.sleep(1.5)  # several back-off rounds
    ls.listen(64)    # the socket ferryd holds listens now
    s = connect(port)
    echo_once(s, b"after")
    s.close()
    lines = [l for l in f.logtext().splitlines() if "msg=accept_failed_retrying" in l]
    assert len(lines) == 1, lines


if __name__ == "__main__":
    runner.run(globals())
