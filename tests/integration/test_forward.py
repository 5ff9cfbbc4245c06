#!/usr/bin/env python3
"""Plain TCP forwarding: bytes end to end, half-close, concurrency, IPv6 and
Unix listeners, the access log and counters."""
import os
import socket
import threading
import time

from ferrytest import (web_config, connect, recv_all, recv_exact, runner, sha256, start_backend,
                       start_ferry, free_port, wait_for)

MiB = 1 << 20


def config(lport, bport, extra_listener="", extra_global=""):
    return web_config(lport, f"server app1 127.0.0.1:{bport}",
                      "workers = 2\nlog_level = info\n" + extra_global, extra_listener)


def send_in_thread(sock, data, shut=True):
    def run():
        view = memoryview(data)
        while view:
            n = sock.send(view[:1 << 16])
            view = view[n:]
        if shut:
            sock.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_64mib_upload_checksummed():
    b = start_backend("sink")
    port = free_port()
    f = start_ferry(config(port, b.port))
    data = os.urandom(64 * MiB)
    s = connect(port, timeout=60)
    t = send_in_thread(s, data)
    reply = recv_all(s).decode()
    t.join()
    n, digest = reply.split()
    assert int(n) == len(data), reply
    assert digest == sha256(data)
    s.close()
    wait_for(lambda: f.listener("web")["bytes_in"] == len(data), what="bytes_in counted")


def test_64mib_download_checksummed():
    data = os.urandom(64 * MiB)

    def source(c, _b):
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        recv_all(c)

    b = start_backend(source)
    port = free_port()
    f = start_ferry(config(port, b.port))
    s = connect(port, timeout=60)
    got = recv_all(s)
    assert len(got) == len(data)
    assert sha256(got) == sha256(data)
    s.close()
    wait_for(lambda: f.listener("web")["bytes_out"] == len(data), what="bytes_out counted")
    srv = f.server("app", "app1")
    assert srv["bytes_in"] == len(data)


def test_64mib_both_ways_at_once():
    b = start_backend("echo")
    port = free_port()
    start_ferry(config(port, b.port))
    data = os.urandom(64 * MiB)
    s = connect(port, timeout=60)
    t = send_in_thread(s, data)
    got = recv_all(s)
    t.join()
    assert len(got) == len(data)
    assert sha256(got) == sha256(data)
    s.close()


def test_half_close_client_first():
    # The client shuts its write half; the server still sends afterwards.
    def late_reply(c, _b):
        got = recv_all(c)
        time.sleep(0.2)
        c.sendall(b"after-eof:" + got)
        c.shutdown(socket.SHUT_WR)

    b = start_backend(late_reply)
    port = free_port()
    start_ferry(config(port, b.port))
    s = connect(port)
    s.sendall(b"hello")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"after-eof:hello"
    s.close()


def test_half_close_server_first():
    # The server says its piece and shuts its write half; the client keeps
    # sending and the server still receives it.
    done = threading.Event()
    received = []

    def speak_then_listen(c, _b):
        c.sendall(b"banner\n")
        c.shutdown(socket.SHUT_WR)
        received.append(recv_all(c))
        done.set()

    b = start_backend(speak_then_listen)
    port = free_port()
    start_ferry(config(port, b.port))
    s = connect(port)
    assert recv_exact(s, 7) == b"banner\n"
    assert s.recv(10) == b""  # EOF passed on
    s.sendall(b"still talking")
    s.shutdown(socket.SHUT_WR)
    assert done.wait(10)
    assert received[0] == b"still talking"
    s.close()


def test_2000_concurrent_connections():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(config(port, b.port))
    socks = []
    try:
        for i in range(2000):
            socks.append(connect(port, timeout=30))
        for i, s in enumerate(socks):
            s.sendall(b"%d\n" % i)
        for i, s in enumerate(socks):
            want = b"%d\n" % i
            assert recv_exact(s, len(want)) == want
        info = f.ctl("info")
        assert "active: 2000" in info, info
    finally:
        for s in socks:
            s.close()
    wait_for(lambda: f.listener("web")["active"] == 0, timeout=20, what="all closed")
    assert f.listener("web")["total"] == 2000


def test_access_log_and_server_counters():
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(config(port, b.port))
    s = connect(port)
    s.sendall(b"x" * 1000)
    assert recv_exact(s, 1000) == b"x" * 1000
    s.close()
    wait_for(lambda: f.access_log(), what="access log line")
    entry = f.access_log()[0]
    assert entry["listener"] == "web"
    assert entry["server"] == "app/app1"
    assert entry["bytes_in"] == "1000" and entry["bytes_out"] == "1000"
    assert entry["end"] == "closed"
    assert entry["client"].startswith("127.0.0.1:")
    srv = f.server("app", "app1")
    assert srv["total"] == 1 and srv["bytes_out"] == 1000 and srv["state"] == "up"


def test_ipv6_and_unix_listeners():
    if not socket.has_ipv6:
        return
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        return
    b = start_backend("echo")
    p6 = free_port()
    any_port = free_port()
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
[listener v6]
bind = [::1]:{p6}
bind = unix:@DIR@/front.sock
backend = app
[listener any]
bind = *:{any_port}
backend = app
[backend app]
server app1 127.0.0.1:{b.port}
""")
    s = socket.create_connection(("::1", p6), timeout=10)
    s.sendall(b"six")
    assert recv_exact(s, 3) == b"six"
    s.close()
    u = socket.socket(socket.AF_UNIX)
    u.settimeout(10)
    u.connect(os.path.join(f.dir, "front.sock"))
    u.sendall(b"unix")
    assert recv_exact(u, 4) == b"unix"
    u.close()
    for host in ("127.0.0.1", "::1"):
        s = socket.create_connection((host, any_port), timeout=10)
        s.sendall(b"any")
        assert recv_exact(s, 3) == b"any"
        s.close()


def test_unix_backend():
    path = None
    port = free_port()
    import tempfile
    d = tempfile.mkdtemp()
    path = os.path.join(d, "backend.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(16)

    def serve():
        c, _ = srv.accept()
        c.sendall(recv_all(c)[::-1])
        c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    start_ferry(f"""
[global]
control_socket = @SOCK@
[listener web]
bind = 127.0.0.1:{port}
backend = app
[backend app]
server u unix:{path}
""")
    s = connect(port)
    s.sendall(b"abc")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"cba"
    s.close()
    srv.close()


if __name__ == "__main__":
    runner.run(globals())
