#!/usr/bin/env python3
"""Per-server max_connections and the backend queue (queue_timeout,
max_queue), and slow_start: real clients, a real ferryd with two workers,
real servers recording the order they are reached in."""
import signal
import socket
import threading
import time

from ferrytest import (web_config, connect, closed_by_peer, free_port, recv_exact, runner,
                       start_backend, start_ferry, wait_for)


def recorder(order, lock):
    """Reads the client's 2-byte name, records it, then echoes until EOF."""
    def handler(c, b):
        name = recv_exact(c, 2)
        with lock:
            order.append(name)
        c.sendall(name)
        while True:
            d = c.recv(4096)
            if not d:
                break
            c.sendall(d)
    return handler


def backend_of(f, name="app"):
    for b in f.stats()["backends"]:
        if b["name"] == name:
            return b
    raise AssertionError(name)


def client(port, name):
    s = connect(port)
    s.sendall(name)
    return s



def served_by(port):
    """The two-byte label of the server that answers a new connection."""
    s = connect(port)
    r = recv_exact(s, 2)
    s.close()
    return r


def served_during(port, seconds, most):
    """Labels of connections made one after another for `seconds` (at most `most`)."""
    t0 = time.monotonic()
    out = []
    while time.monotonic() - t0 < seconds and len(out) < most:
        out.append(served_by(port))
    return out

def test_cap_two_five_clients_fifo():
    order, lock = [], threading.Lock()
    srv = start_backend(recorder(order, lock))
    port = free_port()
    f = start_ferry(web_config(port, f"""
server s 127.0.0.1:{srv.port} max_connections=2
queue_timeout = 20s
""", global_lines="workers = 2"))
    clients = {}
    for i in range(1, 6):
        name = b"c%d" % i
        clients[name] = client(port, name)
        # One at a time, so that "first come" is well defined.
        if i <= 2:
            wait_for(lambda: len(order) == i, what=f"{name} served")
            assert recv_exact(clients[name], 2) == name
        else:
            wait_for(lambda: backend_of(f)["queue"] == i - 2, what=f"{name} queued")
    assert order == [b"c1", b"c2"]
    assert f.server("app", "s")["active"] == 2
    assert f.server("app", "s")["max_connections"] == 2
    metrics = f.command(b"show metrics\n")
    assert 'ferry_backend_queue{backend="app"} 3' in metrics
    # Served in order as slots free.
    for done, nxt, waiting in ((b"c1", b"c3", 2), (b"c2", b"c4", 1), (b"c3", b"c5", 0)):
        clients[done].close()
        wait_for(lambda: len(order) == int(nxt[1:]), what=f"{nxt} served")
        assert order[-1] == nxt, order
        assert recv_exact(clients[nxt], 2) == nxt
        wait_for(lambda: backend_of(f)["queue"] == waiting, what="queue shrinks")
    for name in (b"c4", b"c5"):
        clients[name].sendall(b"hello")
        assert recv_exact(clients[name], 5) == b"hello"
        clients[name].close()
    wait_for(lambda: len(f.access_log()) == 5, what="access log")
    ends = {e["end"] for e in f.access_log()}
    assert ends == {"closed"}, f.access_log()


def test_queue_timeout_and_queue_full():
    order, lock = [], threading.Lock()
    srv = start_backend(recorder(order, lock))
    port = free_port()
    f = start_ferry(web_config(port, f"""
server s 127.0.0.1:{srv.port} max_connections=1
queue_timeout = 400ms
max_queue = 1
"""))
    holder = client(port, b"h1")
    wait_for(lambda: order == [b"h1"], what="holder served")
    waiting = client(port, b"w1")
    wait_for(lambda: backend_of(f)["queue"] == 1, what="w1 queued")
    # The queue is full: the next one ends at once.
    t0 = time.monotonic()
    late = client(port, b"x1")
    assert closed_by_peer(late)
    wait_for(lambda: any(e.get("end") == "rejected" for e in f.access_log()), what="rejected")
    rej = [e for e in f.access_log() if e.get("end") == "rejected"][0]
    assert rej.get("reason") == "queue_full", rej
    assert f.listener("web")["rejected"] == 1
    # The waiting one gives up after queue_timeout.
    assert closed_by_peer(waiting)
    assert time.monotonic() - t0 >= 0.3
    wait_for(lambda: any(e.get("end") == "queue_timeout" for e in f.access_log()),
             what="queue_timeout logged")
    qt = [e for e in f.access_log() if e.get("end") == "queue_timeout"][0]
    assert qt["server"] == "-", qt
    assert backend_of(f)["queue"] == 0
    assert order == [b"h1"]
    # The slot is still the holder's; once it leaves, a new client is served.
    holder.close()
    wait_for(lambda: f.server("app", "s")["active"] == 0, what="holder gone")
    s = client(port, b"n1")
    assert recv_exact(s, 2) == b"n1"
    s.close()


def test_stop_cuts_the_queue_at_drain_timeout():
    order, lock = [], threading.Lock()
    srv = start_backend(recorder(order, lock))
    port = free_port()
    f = start_ferry(web_config(port, f"""
server s 127.0.0.1:{srv.port} max_connections=1
queue_timeout = 1h
""", global_lines="drain_timeout = 300ms"))
    holder = client(port, b"h1")
    wait_for(lambda: order == [b"h1"], what="holder served")
    waiting = client(port, b"w1")
    wait_for(lambda: backend_of(f)["queue"] == 1, what="w1 queued")
    t0 = time.monotonic()
    f.signal(signal.SIGTERM)
    f.proc.wait(timeout=15)  # an hour's queue_timeout does not hold the stop
    assert f.proc.returncode == 0
    assert time.monotonic() - t0 < 10
    assert closed_by_peer(waiting)
    holder.close()
    ends = sorted(e["end"] for e in f.access_log())
    assert ends == ["drained", "drained"], f.access_log()


def label_server(label):
    def handler(c, b):
        c.sendall(label)
        while c.recv(4096):
            pass
    return handler


def test_balancers_pick_servers_with_room():
    for balance in ("roundrobin", "leastconn"):
        a = start_backend(label_server(b"aa"))
        b = start_backend(label_server(b"bb"))
        port = free_port()
        f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{a.port} max_connections=1 weight=5
server b 127.0.0.1:{b.port}
balance = {balance}
""", global_lines="workers = 1"))
        held = []
        got = []
        for _ in range(6):
            s = connect(port)
            got.append(recv_exact(s, 2))
            held.append(s)
        # a has room for one: everything else went to b, and nobody queued.
        assert got.count(b"aa") == 1, (balance, got)
        assert got.count(b"bb") == 5, (balance, got)
        assert backend_of(f)["queue"] == 0
        for s in held:
            s.close()
        f.stop()


def test_slow_start_ramps_a_returning_server():
    a = start_backend(label_server(b"aa"))
    b = start_backend(label_server(b"bb"))
    bport = b.port
    port = free_port()
    ramp = 9.0
    f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{a.port}
server b 127.0.0.1:{bport}
health_check = tcp
health_interval = 100ms
health_timeout = 500ms
health_rise = 1
health_fall = 1
slow_start = {int(ramp)}s
""", global_lines="workers = 1"))

    # At start there is no ramp: both take their full share.
    first = [served_by(port) for _ in range(20)]
    assert first.count(b"bb") == 10, first
    b.close()
    wait_for(lambda: f.server("app", "b")["state"] == "down", what="b down")
    start_backend(label_server(b"bb"), port=bport)
    wait_for(lambda: f.server("app", "b")["state"] == "up", what="b up again")
    early = served_during(port, ramp / 3, 300)
    share = early.count(b"bb") / len(early)
    # Its full weight would be half the connections; over the first third of
    # the ramp it averages a sixth of its weight, under a tenth of them.
    assert len(early) >= 20, len(early)
    assert share < 0.25, (share, len(early))
    print(f"slow_start: returning server took {early.count(b'bb')} of {len(early)} "
          "in the first third of its ramp")


def test_slow_start_after_enable_and_maint():
    a = start_backend(label_server(b"aa"))
    b = start_backend(label_server(b"bb"))
    port = free_port()
    ramp = 9.0
    f = start_ferry(web_config(port, f"""
server a 127.0.0.1:{a.port}
server b 127.0.0.1:{b.port}
slow_start = {int(ramp)}s
""", global_lines="workers = 1"))

    for off, on in ((("disable", "app/b"), ("enable", "app/b")),
                    (("set", "app/b", "state", "maint"), ("set", "app/b", "state", "ready"))):
        assert f.ctl(*off).strip() == "ok"
        assert {served_by(port) for _ in range(4)} == {b"aa"}
        assert f.ctl(*on).strip() == "ok"
        early = served_during(port, ramp / 3, 200)
        assert len(early) >= 20, len(early)
        assert early.count(b"bb") / len(early) < 0.25, (on, early.count(b"bb"), len(early))


def test_slow_start_ramps_a_discovered_server():
    from test_dns import DNSMASQ, dns_globals, start_dnsmasq
    import os
    if not os.path.exists(DNSMASQ):
        print("dnsmasq not installed: discovered servers not tried")
        return
    bport = free_port()
    start_backend("label", label=b"s2", host="127.0.0.2", port=bport)
    start_backend("label", label=b"s3", host="127.0.0.3", port=bport)
    dns = start_dnsmasq("127.0.0.2 svc.test\n")
    port = free_port()
    ramp = 9.0
    f = start_ferry(web_config(port, f"discover = dns svc.test:{bport}\nslow_start = {int(ramp)}s\n",
                               global_lines=dns_globals(dns).replace("workers = 2", "workers = 1")))
    names = lambda: {s["name"] for s in backend_of(f)["servers"]}
    wait_for(lambda: names() == {f"127.0.0.2:{bport}"}, timeout=10, what="first server")
    dns.reload("127.0.0.2 svc.test\n127.0.0.3 svc.test\n")
    wait_for(lambda: f"127.0.0.3:{bport}" in names(), timeout=15, what="second server added")
    # The first sixth of the ramp: s3's weight is at most ~1/6 of s2's there
    # (a share of ~14 %, ~50 % without slow_start), with room for the time the
    # ramp had already run before the test saw the server in show stats.
    early = served_during(port, ramp / 6, 200)
    assert len(early) >= 20, len(early)
    assert early.count(b"s3") / len(early) < 0.25, (early.count(b"s3"), len(early))


if __name__ == "__main__":
    runner.run(globals())
