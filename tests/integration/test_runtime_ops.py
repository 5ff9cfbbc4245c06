#!/usr/bin/env python3
"""Runtime operations of the control socket (ferryctl(8)): `shutdown conn
ID` (end=killed, in every phase of a connection)."""
import socket
import subprocess
import time

from ferrytest import (FERRYCTL, cleanup, connect, free_port, recv_exact, runner, start_backend,
                       start_ferry, start_stuck_listener, wait_for, web_config)


def ctl(f, *args):
    r = subprocess.run([FERRYCTL, "-s", f.sock_path] + list(args), capture_output=True,
                       timeout=30)
    return r.returncode, r.stdout.decode() + r.stderr.decode()


def conn_ids(f):
    return [c["id"] for c in f.ctl("conns", json_out=True)["conns"]]


def ended(f, cid):
    for e in f.access_log():
        if e.get("id") == str(cid):
            return e
    return None


def gone(sock):
    """True once the peer closed or reset the socket (nothing more to read)."""
    sock.settimeout(5)
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_shutdown_conn_closes_both_sides_at_once():
    server_side = []

    def hold(c, _b):  # the server end of each connection, kept to see it close
        server_side.append(c)
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)

    app = start_backend(hold)
    port = free_port()
    f = start_ferry(web_config(port, f"server s 127.0.0.1:{app.port}"))
    a, b = connect(port), connect(port)
    for s in (a, b):
        s.sendall(b"hi")
        assert recv_exact(s, 2) == b"hi"
    wait_for(lambda: len(conn_ids(f)) == 2, what="2 connections listed")
    victim = max(conn_ids(f))
    rc, out = ctl(f, "shutdown", str(victim))
    assert rc == 0 and out.strip() == "ok", (rc, out)
    # The client sees its end at once; the server side is closed too.
    t0 = time.monotonic()
    assert gone(b), "client side still open"
    assert time.monotonic() - t0 < 3
    wait_for(lambda: len(server_side) == 2 and any(gone_nowait(c) for c in server_side),
             what="the server side closed")
    e = wait_for(lambda: ended(f, victim), what="access line of the killed connection")
    assert e["end"] == "killed" and e["closed_by"] == "proxy", e
    # The other connection runs on.
    a.sendall(b"still")
    assert recv_exact(a, 5) == b"still"
    assert conn_ids(f) == [min(conn_ids(f))]
    # Twice, or an id never seen: no such connection.
    rc, out = ctl(f, "shutdown", str(victim))
    assert rc == 1 and out.strip() == "error: no such connection", (rc, out)
    assert f.command(b"shutdown conn 18446744073709551615\n").strip() == \
        "error: no such connection"
    assert f.command(b"shutdown conn abc\n").startswith("error: ")
    assert f.command(b"shutdown conn\n").startswith("error: ")
    rc, out = ctl(f, "shutdown", "x1")
    assert rc == 2, (rc, out)
    rc, out = ctl(f, "--json", "shutdown", str(min(conn_ids(f))))
    assert rc == 0 and out.strip() == '{"ok": true}', out
    assert gone(a)
    a.close()
    b.close()


def gone_nowait(c):
    try:
        c.setblocking(False)
        return c.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_shutdown_conn_in_handshake_and_connect_phases():
    stuck = start_stuck_listener()
    port, pport = free_port(), free_port()
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
[listener web]
bind = 127.0.0.1:{port}
backend = stuck
[listener proxied]
bind = 127.0.0.1:{pport}
backend = stuck
accept_proxy = on
[backend stuck]
server s 127.0.0.1:{stuck}
connect_timeout = 60s
retries = 0
""")
    waiting_header = connect(pport)  # sends no PROXY header: in the handshake phase
    connecting = connect(port)       # its server never answers: in the connect phase
    wait_for(lambda: len(conn_ids(f)) == 2, what="2 connections listed")
    for cid in conn_ids(f):
        assert f.command(f"shutdown conn {cid}\n".encode()).strip() == "ok"
    assert gone(waiting_header) and gone(connecting)
    wait_for(lambda: len([e for e in f.access_log() if e["end"] == "killed"]) == 2,
             what="two end=killed lines")
    assert all(e["closed_by"] == "proxy" for e in f.access_log() if e["end"] == "killed")
    assert conn_ids(f) == []


if __name__ == "__main__":
    runner.run(globals())
