#!/usr/bin/env python3
"""Timeouts, connection limits, allow/deny and the PROXY protocol, in and out."""
import socket
import struct
import threading
import time

from ferrytest import (web_config, closed_by_peer, connect, free_port, recv_all, recv_exact, runner, start_backend,
                       start_ferry, wait_for)


def base(port, bport, listener_extra="", backend_extra="", global_extra=""):
    return web_config(port, f"server app1 127.0.0.1:{bport}\n{backend_extra}", global_extra,
                      listener_extra)


def assert_waiting(s, data):
    """s was accepted by the kernel, but ferryd does not serve it yet: what it
    sends gets no answer (no accept-and-close either)."""
    s.settimeout(0.5)
    s.sendall(data)
    try:
        got = s.recv(len(data))
    except socket.timeout:
        got = None
    assert got is None, got
    s.settimeout(10)


def test_idle_timeout_closes_quiet_connection():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(base(port, b.port, "idle_timeout = 300ms"))
    s = connect(port)
    # Activity keeps it open past the timeout...
    for _ in range(4):
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
        time.sleep(0.15)
    # ...silence closes it.
    t0 = time.monotonic()
    assert s.recv(10) == b""
    assert time.monotonic() - t0 < 3
    s.close()
    wait_for(lambda: f.access_log(), what="access log")
    assert f.access_log()[0]["end"] == "idle_timeout"


def test_listener_limit_pauses_and_resumes():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(base(port, b.port, "max_connections = 2"))
    a1, a2 = connect(port), connect(port)
    for s in (a1, a2):
        s.sendall(b"hi")
        assert recv_exact(s, 2) == b"hi"
    a3 = connect(port)
    assert_waiting(a3, b"yo")
    assert f.listener("web")["active"] == 2
    a1.close()
    assert recv_exact(a3, 2) == b"yo"
    a2.close()
    a3.close()
    assert f.listener("web")["rejected"] == 0


def test_global_limit():
    b = start_backend("echo")
    port = free_port()
    start_ferry(base(port, b.port, global_extra="max_connections = 1"))
    a1 = connect(port)
    a1.sendall(b"1")
    assert recv_exact(a1, 1) == b"1"
    a2 = connect(port)
    assert_waiting(a2, b"2")
    a1.close()
    assert recv_exact(a2, 1) == b"2"
    a2.close()


def test_deny_and_allow():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(base(port, b.port, "deny = 127.0.0.0/8"))
    s = connect(port)
    assert recv_all(s) == b""
    s.close()
    wait_for(lambda: f.listener("web")["rejected"] == 1, what="rejected counted")
    # The counter is bumped before the log line is written.
    wait_for(lambda: f.access_log(), what="access log line")
    assert f.access_log()[0]["end"] == "rejected"
    assert b.accepted == 0

    port2 = free_port()
    f2 = start_ferry(base(port2, b.port, "allow = 10.0.0.0/8\nallow = 127.0.0.1/32"))
    s = connect(port2)
    s.sendall(b"ok")
    assert recv_exact(s, 2) == b"ok"
    s.close()
    port3 = free_port()
    f3 = start_ferry(base(port3, b.port, "allow = 10.0.0.0/8"))
    s = connect(port3)
    assert recv_all(s) == b""
    s.close()
    wait_for(lambda: f3.listener("web")["rejected"] == 1, what="not allowed")
    assert f2.listener("web")["rejected"] == 0


def proxy_v2(src, sport, dst, dport):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def test_accept_proxy_v1_and_v2_sets_client():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(base(port, b.port, "accept_proxy = on\ndeny = 192.0.2.66/32"))
    s = connect(port)
    s.sendall(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\nhello")
    assert recv_exact(s, 5) == b"hello"
    s.close()
    s = connect(port)
    s.sendall(proxy_v2("203.0.113.9", 41000, "127.0.0.1", 80) + b"world")
    assert recv_exact(s, 5) == b"world"
    s.close()
    # deny applies to the address the header carries
    s = connect(port)
    s.sendall(b"PROXY TCP4 192.0.2.66 127.0.0.1 40000 80\r\nx")
    assert closed_by_peer(s)
    s.close()
    wait_for(lambda: len(f.access_log()) == 3, what="three log lines")
    clients = sorted(e["client"] for e in f.access_log())
    assert clients == ["192.0.2.66:40000", "198.51.100.7:40000", "203.0.113.9:41000"], clients


def proxy_v2_unix(src_path, dst_path=b"/run/lb.sock"):
    """A v2 PROXY header of the UNIX family (0x31) carrying two paths."""
    body = src_path.ljust(108, b"\0") + dst_path.ljust(108, b"\0")
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x31]) + struct.pack("!H", len(body)) + body


def connect_from(src, port):
    s = socket.socket()
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def test_accept_proxy_from_closes_untrusted_peers():
    """Only the peers in accept_proxy_from may send a header: another peer
    is closed at once, before a byte is read (no wait for handshake_timeout,
    the backend never sees it), counted as rejected_by proxy_untrusted."""
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(base(port, b.port, "accept_proxy = on\naccept_proxy_from = 127.0.0.2/32\n"
                         "accept_proxy_from = 10.0.0.0/8\nhandshake_timeout = 30s"))
    s = connect_from("127.0.0.2", port)  # the trusted load balancer
    s.sendall(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\nhello")
    assert recv_exact(s, 5) == b"hello"
    s.close()
    s = connect_from("127.0.0.1", port)  # anyone else, saying nothing
    t0 = time.monotonic()
    assert recv_all(s) == b""
    assert time.monotonic() - t0 < 10
    s.close()
    wait_for(lambda: len(f.access_log()) == 2, what="two log lines")
    log = sorted(f.access_log(), key=lambda e: e["client"])
    assert log[0]["client"].startswith("127.0.0.1:"), log
    assert (log[0]["end"], log[0]["reason"], log[0]["server"]) == \
        ("rejected", "proxy_untrusted", "-"), log
    assert log[1]["client"] == "198.51.100.7:40000", log
    lst = f.listener("web")
    assert lst["rejected"] == 1 and lst["rejected_by"].get("proxy_untrusted") == 1, lst
    assert b.accepted == 1
    text = f.ctl("metrics")
    assert 'ferry_listener_rejected_by_reason_total{listener="web",reason="proxy_untrusted"} 1' \
        in text, text


def test_accept_proxy_unix_family_keeps_peer():
    """A v2 header of the UNIX family carries no client address: the socket's
    peer stays the client, and deny applies to it (a forged path never walks
    through deny = 0.0.0.0/0)."""
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(base(port, b.port, "accept_proxy = on\ndeny = 0.0.0.0/0\ndeny = ::/0"))
    s = connect(port)
    s.sendall(proxy_v2_unix(b"/tmp/forged") + b"x")
    assert closed_by_peer(s)
    s.close()
    port2 = free_port()
    f2 = start_ferry(base(port2, b.port, "accept_proxy = on"))
    s = connect(port2)
    s.sendall(proxy_v2_unix(b"/tmp/forged") + b"hi")
    assert recv_exact(s, 2) == b"hi"
    s.close()
    wait_for(lambda: len(f.access_log()) == 1 and len(f2.access_log()) == 1, what="log lines")
    e = f.access_log()[0]
    assert e["client"].startswith("127.0.0.1:") and (e["end"], e["reason"]) == \
        ("rejected", "deny"), e
    e = f2.access_log()[0]
    assert e["client"].startswith("127.0.0.1:") and e["end"] == "closed", e
    assert b.accepted == 1


def test_accept_proxy_rejects_garbage_and_timeout():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(base(port, b.port, "accept_proxy = on\nhandshake_timeout = 300ms"))
    s = connect(port)
    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert closed_by_peer(s)
    s.close()
    s = connect(port)
    s.sendall(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n")
    assert closed_by_peer(s)
    s.close()
    s = connect(port)  # says nothing: closed at handshake_timeout
    t0 = time.monotonic()
    assert recv_all(s) == b""
    assert time.monotonic() - t0 < 3
    s.close()
    wait_for(lambda: f.listener("web")["rejected"] == 3, what="three rejected")
    assert b.accepted == 0


def test_handshake_timeout_spans_proxy_header_and_clienthello():
    """One handshake_timeout from the accept covers the PROXY header and the
    ClientHello peek after it: a client slow with its header gets only what
    is left for its hello, never a fresh budget per step."""
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(base(port, b.port, "accept_proxy = on\nhandshake_timeout = 2s\n"
                                       "route = a.test app"))
    s = connect(port)
    t0 = time.monotonic()
    time.sleep(1.5)
    # The header, then the start of a ClientHello that never ends.
    s.sendall(b"PROXY TCP4 192.0.2.7 192.0.2.8 40000 443\r\n\x16\x03\x01")
    assert closed_by_peer(s)
    took = time.monotonic() - t0
    # Closed at 2 s from the accept; a fresh budget would reach 3.5 s.
    assert 1.9 < took < 3.2, took
    s.close()
    wait_for(lambda: len(f.access_log()) == 1, what="the access-log line")
    e = f.access_log()[0]
    assert (e["client"], e["end"], e["reason"]) == ("192.0.2.7:40000", "rejected", "bad_hello"), e
    assert b.accepted == 0


def test_send_proxy_v1_and_v2():
    headers = []

    def capture(c, _b):
        # Read up to the client's bytes: closing with unread data would
        # reset the connection (and ferryd passes a reset on as a reset).
        got = b""
        while b"data" not in got:
            more = c.recv(4096)
            if not more:
                break
            got += more
        headers.append(got)
        c.close()

    b = start_backend(capture)
    p1, p2 = free_port(), free_port()
    start_ferry(f"""
[global]
control_socket = @SOCK@
[listener one]
bind = 127.0.0.1:{p1}
backend = v1
[listener two]
bind = 127.0.0.1:{p2}
backend = v2
[backend v1]
server s 127.0.0.1:{b.port}
send_proxy = v1
[backend v2]
server s 127.0.0.1:{b.port}
send_proxy = v2
""")
    s = connect(p1)
    cport = s.getsockname()[1]
    s.sendall(b"data1")
    recv_all(s)
    s.close()
    wait_for(lambda: headers, what="v1 header")
    assert headers[0] == f"PROXY TCP4 127.0.0.1 127.0.0.1 {cport} {p1}\r\ndata1".encode() or \
        headers[0].startswith(f"PROXY TCP4 127.0.0.1 127.0.0.1 {cport} {p1}\r\n".encode()), headers[0]
    s = connect(p2)
    cport = s.getsockname()[1]
    s.sendall(b"data2")
    recv_all(s)
    s.close()
    wait_for(lambda: len(headers) == 2, what="v2 header")
    # The address block, then the TLVs (here only UNIQUE_ID: the connection
    # id, test_proxy_v2 checks them all), then the data.
    want = proxy_v2("127.0.0.1", cport, "127.0.0.1", p2)
    got, n = headers[1], struct.unpack("!H", headers[1][14:16])[0]
    assert got[:14] == want[:14] and got[16:28] == want[16:28], got
    assert got[28] == 0x05 and b"data2".startswith(got[16 + n:]), got  # data may come later


if __name__ == "__main__":
    runner.run(globals())
