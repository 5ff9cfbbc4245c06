#!/usr/bin/env python3
"""Runtime operations of the control socket (ferryctl(8)): `shutdown conn
ID` (end=killed, in every phase of a connection), `set server B/S addr
ADDRESS` (new connections and health checks follow, established ones run
on), and `add server` with a host name (resolved by a real dnsmasq,
`unresolved` until then, kept current by TTL)."""
import socket
import subprocess
import time

from ferrytest import (FERRYCTL, cleanup, connect, free_port, recv_exact, runner, start_backend,
                       start_ferry, start_stuck_listener, wait_for, web_config)
from test_dns import labelled, start_dnsmasq, who


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


def test_shutdown_conn_waiting_in_the_queue():
    app = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server s 127.0.0.1:{app.port} max_connections=1\n"
                                     "queue_timeout = 60s\n"))
    first = connect(port)
    first.sendall(b"1")
    assert recv_exact(first, 1) == b"1"
    queued = connect(port)
    wait_for(lambda: f.stats()["backends"][0]["queue"] == 1, what="one connection queued")
    cid = max(conn_ids(f))
    assert f.command(f"shutdown conn {cid}\n".encode()).strip() == "ok"
    assert gone(queued)
    wait_for(lambda: f.stats()["backends"][0]["queue"] == 0, what="the queue empty again")
    e = wait_for(lambda: ended(f, cid), what="its access line")
    assert e["end"] == "killed" and e["server"] == "-", e
    # The slot is still the first one's; a new client gets it once that ends.
    first.close()
    nxt = connect(port)
    nxt.sendall(b"2")
    assert recv_exact(nxt, 1) == b"2"
    nxt.close()


def label_of(port):
    s = connect(port)
    got = recv_exact(s, 1)
    s.close()
    return got


def test_set_server_addr_moves_new_connections_and_checks():
    a = start_backend("label", label=b"A")
    b = start_backend("label", label=b"B")
    port = free_port()
    f = start_ferry(web_config(port, f"server s 127.0.0.1:{a.port}\nhealth_check = tcp\n"
                                     "health_interval = 100ms\nhealth_timeout = 100ms\n"
                                     "health_rise = 1\nhealth_fall = 1\n"))
    held = connect(port)
    assert recv_exact(held, 1) == b"A"
    rc, out = ctl(f, "set", "app/s", "addr", f"127.0.0.1:{b.port}")
    assert rc == 0 and out.strip() == "ok", (rc, out)
    assert [label_of(port) for _ in range(5)] == [b"B"] * 5
    assert f.server("app", "s")["address"] == f"127.0.0.1:{b.port}"
    # The established connection still runs to A.
    held.sendall(b"x")
    assert recv_exact(held, 1) == b"x"
    held.close()
    # Health checks follow the new address: A gone changes nothing, B gone
    # marks the server down.
    a.close()
    time.sleep(0.5)
    assert f.server("app", "s")["state"] == "up"
    b.close()
    wait_for(lambda: f.server("app", "s")["state"] == "down", what="down after B went away")
    # Errors.
    assert f.command(b"set server app/nope addr 127.0.0.1:1\n").strip() == \
        "error: no such server app/nope"
    assert f.command(b"set server app/s addr 127.0.0.1\n").startswith("error: ")
    assert f.command(b"set server app/s addr unix:/tmp/x\n").startswith("error: ")


def test_add_server_with_a_host_name():
    backend2 = labelled("127.0.0.2", b"n2")
    backend3 = labelled("127.0.0.3", b"n3", port=backend2.port)
    dns = start_dnsmasq(f"127.0.0.2 app.test\n")
    port = free_port()
    first = start_backend("label", label=b"n1")
    f = start_ferry(web_config(port, f"server one 127.0.0.1:{first.port}",
                               f"workers = 2\nresolvers = 127.0.0.1:{dns.port}\n"
                               "dns_min_ttl = 1s\n"))
    assert f.ctl("disable", "app/one").strip() == "ok"
    out = f.ctl("add", "app", "named", f"app.test:{backend2.port}")
    assert out.strip() == "ok", out
    wait_for(lambda: f.server("app", "named")["state"] == "up", what="named server up")
    assert f.server("app", "named")["address"] == f"app.test:{backend2.port}"
    got = who(port)
    assert got == b"n2", (got, f.server("app", "named"), f.logtext()[-1500:])
    # The name moves: the server follows when the TTL ends.
    dns.reload("127.0.0.3 app.test\n")
    wait_for(lambda: who(port) == b"n3", timeout=15, what="server followed the name")
    # A name that does not resolve: added, unresolved, no traffic.
    out = f.ctl("add", "app", "nowhere", f"nowhere.test:{backend2.port}")
    assert out.strip() == "ok", out
    time.sleep(1.5)
    assert f.server("app", "nowhere")["state"] == "unresolved"
    assert all(who(port) == b"n3" for _ in range(6))
    assert [e for e in f.events("server_added") if e.get("server") == "app/nowhere"]
    # set ... addr moves it to a number (the name is no longer followed), then
    # back to a name.
    assert f.ctl("set", "app/named", "addr", f"127.0.0.1:{first.port}").strip() == "ok"
    assert who(port) == b"n1"
    dns.reload("127.0.0.2 app.test\n")
    time.sleep(2.5)
    assert who(port) == b"n1"
    assert f.ctl("set", "app/named", "addr", f"app.test:{backend2.port}").strip() == "ok"
    wait_for(lambda: who(port) == b"n2", timeout=15, what="following the name again")
    _ = backend3


if __name__ == "__main__":
    runner.run(globals())
