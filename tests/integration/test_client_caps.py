#!/usr/bin/env python3
"""Per-client caps on a listener: max_connections_per_client (reason
client_limit) and client_rate (reason client_rate), from distinct loopback
source addresses, the client being the PROXY header's address with
accept_proxy, and the client table's memory bounded under 100,000 distinct
source addresses."""
import socket
import ssl
import struct
import time

from ferrytest import (closed_by_peer, free_port, recv_exact, runner, start_backend, start_ferry,
                       wait_for, web_config)


def connect_from(src, port):
    s = socket.socket()
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def served(s, data=b"ping"):
    """True when the connection echoes, False when ferryd closed it."""
    try:
        s.sendall(data)
        return s.recv(len(data)) == data
    except (ConnectionResetError, BrokenPipeError):
        return False


def rejected_by(f):
    return f.listener("web")["rejected_by"]


def test_max_connections_per_client():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server s 127.0.0.1:{b.port}",
                               listener_lines="max_connections_per_client = 2"))
    held = [connect_from("127.0.0.2", port) for _ in range(2)]
    assert all(served(s) for s in held)
    third = connect_from("127.0.0.2", port)
    assert closed_by_peer(third)
    third.close()
    # Another address has its own count: 127.0.0.2 at its cap does not matter.
    others = [connect_from("127.0.0.3", port) for _ in range(2)]
    assert all(served(s) for s in others)
    # A freed slot is available again.
    held.pop().close()
    wait_for(lambda: f.listener("web")["active"] == 3, what="one connection ended")
    again = connect_from("127.0.0.2", port)
    assert served(again)
    wait_for(lambda: rejected_by(f)["client_limit"] == 1, what="client_limit counted")
    st = f.listener("web")
    assert st["rejected"] == 1 and st["active"] == 4, st
    assert rejected_by(f)["client_rate"] == 0 and st["clients"] == 2, st
    for s in held + others + [again]:
        s.close()
    # The log writer thread writes the line a moment after the counter moved.
    wait_for(lambda: any(e["end"] == "rejected" for e in f.access_log()),
             what="the rejected connection's access line")
    ends = [e for e in f.access_log() if e["end"] == "rejected"]
    assert len(ends) == 1 and ends[0]["client"].startswith("127.0.0.2:"), f.access_log()
    assert ends[0]["reason"] == "client_limit", ends


def test_client_rate():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server s 127.0.0.1:{b.port}",
                               listener_lines="client_rate = 5"))
    # A burst of 12 from one address: 5 pass (one more at most, when the burst
    # straddles a second: the previous second is weighted by its overlap).
    ok = 0
    for _ in range(12):
        s = connect_from("127.0.0.2", port)
        ok += served(s)
        s.close()
    assert 5 <= ok <= 6, ok
    # Another address has its own rate.
    for _ in range(5):
        s = connect_from("127.0.0.3", port)
        assert served(s)
        s.close()
    wait_for(lambda: rejected_by(f)["client_rate"] == 12 - ok, what="client_rate counted")
    assert rejected_by(f)["client_limit"] == 0
    # Two seconds later the window has slid past the burst.
    time.sleep(2.1)
    s = connect_from("127.0.0.2", port)
    assert served(s)
    s.close()


def proxy_v2(src, sport):
    body = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", sport, 80)
    return b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack("!H", len(body)) + body


def test_client_is_the_proxy_header_address():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server s 127.0.0.1:{b.port}",
                               listener_lines="accept_proxy = on\nmax_connections_per_client = 1"))
    first = socket.create_connection(("127.0.0.1", port), timeout=10)
    first.sendall(proxy_v2("192.0.2.1", 1000) + b"a")
    assert recv_exact(first, 1) == b"a"
    second = socket.create_connection(("127.0.0.1", port), timeout=10)
    second.sendall(proxy_v2("192.0.2.1", 1001) + b"b")
    assert closed_by_peer(second)
    other = socket.create_connection(("127.0.0.1", port), timeout=10)
    other.sendall(proxy_v2("192.0.2.2", 1002) + b"c")
    assert recv_exact(other, 1) == b"c"
    wait_for(lambda: rejected_by(f)["client_limit"] == 1, what="client_limit counted")
    for s in (first, second, other):
        s.close()


def hello(name):
    """A real TLS ClientHello for `name` (Python's ssl, never finished)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def routed_from(src, port, data):
    """A connection from src whose hello is routed to the echo backend."""
    s = connect_from(src, port)
    s.sendall(data)
    return s if recv_exact(s, len(data)) == data else None


def test_client_table_bounded_under_100000_addresses():
    """100,000 distinct source addresses from 127.0.0.0/8 against a table of
    1024 slots (global max_connections 500): the table never tracks more than
    its slots, forgets idle clients to make room, and never one that holds a
    connection (127.0.0.2 holds its cap throughout and stays capped). The
    flood's connections say nothing and reset: each is tracked, then ends
    as a bad hello."""
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
max_connections = 500
[listener web]
bind = 127.0.0.1:{port}
backend = live
route = live.test live
max_connections_per_client = 2
client_rate = 1000
[backend live]
server s 127.0.0.1:{b.port}
""")
    h = hello("live.test")
    held = [routed_from("127.0.0.2", port, h) for _ in range(2)]
    assert all(held)
    n = 100_000
    linger = struct.pack("ii", 1, 0)
    for i in range(n):
        src = f"127.{1 + i // 64516}.{(i // 254) % 254 + 1}.{i % 254 + 1}"
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        s.close()  # a reset
        if i % 2000 == 1999:  # keep within the listen queue
            wait_for(lambda: f.listener("web")["total"] >= i - 2000, timeout=60,
                     what=f"ferryd to take {i} connections")
    wait_for(lambda: rejected_by(f)["bad_hello"] == n, timeout=120, what="the whole flood")
    st = f.listener("web")
    assert st["clients"] == 1024, st  # every slot in use, none more
    assert st["total"] == n + 2 and st["active"] == 2, st
    # The held client was never forgotten: still at its cap.
    third = connect_from("127.0.0.2", port)
    assert closed_by_peer(third)
    third.close()
    wait_for(lambda: rejected_by(f)["client_limit"] == 1, what="client_limit counted")
    # A new client still finds room.
    s = routed_from("127.0.0.9", port, h)
    assert s
    s.close()
    assert f.listener("web")["clients"] <= 1024
    for s in held:
        s.close()


if __name__ == "__main__":
    runner.run(globals())
