#!/usr/bin/env python3
"""Multipath TCP (`mptcp = on` on listeners and backends) and TCP Fast Open
(`tcp_fastopen = N` on listeners), proven through the kernel's own counters
in /proc/net/netstat: MPTcpExt MPCapableSYNRX (an MP_CAPABLE SYN reached an
MPTCP listener), MPCapableSYNTX (an MPTCP socket sent one), TcpExt
TCPFastOpenPassive (a SYN's data was accepted by a TFO listener). Counters
are per network namespace: every check compares the change with and without
the option, so other traffic cannot make it pass."""
import os
import socket
import subprocess

from ferrytest import (FERRYD, cleanup, connect, free_port, recv_exact, runner, start_backend,
                       start_ferry, web_config)

IPPROTO_MPTCP = 262
MSG_FASTOPEN = 0x20000000


def netstat():
    """{"TcpExt.TCPFastOpenPassive": n, "MPTcpExt.MPCapableSYNRX": n, ...}"""
    out = {}
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for head, vals in zip(lines[0::2], lines[1::2]):
        proto, names = head.split(":", 1)
        _, values = vals.split(":", 1)
        for k, v in zip(names.split(), values.split()):
            out[f"{proto}.{k}"] = int(v)
    return out


def delta(before, key):
    return netstat().get(key, 0) - before.get(key, 0)


def mptcp_available():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP).close()
        return "MPTcpExt.MPCapableSYNRX" in netstat()
    except OSError:
        return False


def echo_through(port, payload, proto=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(payload)
    got = recv_exact(s, len(payload))
    s.close()
    return got


def on_and_off(option):
    """ferryd with two listeners to one echo backend: `on` with option, `off`
    without. Returns (ferry, port on, port off)."""
    app = start_backend("echo")
    p_on, p_off = free_port(), free_port()
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
[listener on]
bind = 127.0.0.1:{p_on}
backend = app
{option}
[listener off]
bind = 127.0.0.1:{p_off}
backend = app
[backend app]
server s 127.0.0.1:{app.port}
""")
    return f, p_on, p_off


def test_mptcp_listener_takes_mptcp_and_plain_clients():
    if not mptcp_available():
        print("skip: no Multipath TCP in this kernel")
        return
    f, p_on, p_off = on_and_off("mptcp = on")
    payload = os.urandom(200000)
    # An MPTCP client against the listener without mptcp: it falls back, and
    # no MP_CAPABLE SYN is received by an MPTCP listener.
    before = netstat()
    assert echo_through(p_off, payload, IPPROTO_MPTCP) == payload
    assert delta(before, "MPTcpExt.MPCapableSYNRX") == 0
    # Against mptcp = on: the kernel's MPTCP listener takes the MP_CAPABLE SYN.
    before = netstat()
    for _ in range(3):
        assert echo_through(p_on, payload, IPPROTO_MPTCP) == payload
    assert delta(before, "MPTcpExt.MPCapableSYNRX") >= 3, delta(before, "MPTcpExt.MPCapableSYNRX")
    assert delta(before, "MPTcpExt.MPCapableACKRX") >= 3
    # Plain TCP clients are served by the same listener.
    assert echo_through(p_on, payload) == payload
    assert f.listener("on")["total"] == 4
    # A reload keeps the listening socket of an address that stays: the change
    # of mptcp waits for a restart, and the reload says so.
    f.write_config(open(f.path).read().replace("mptcp = on", "mptcp = off"))
    out = f.ctl("reload")
    assert out.splitlines()[0] == "ok" and "mptcp changed" in out, out
    before = netstat()
    assert echo_through(p_on, payload, IPPROTO_MPTCP) == payload
    assert delta(before, "MPTcpExt.MPCapableSYNRX") >= 1


class MptcpEcho:
    """An echo server on an MPTCP listening socket."""

    def __init__(self):
        import threading
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.open = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import threading
        while self.open:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)

    def close(self):
        self.open = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def test_mptcp_backend_connects_with_mptcp_and_falls_back_to_tcp():
    if not mptcp_available():
        print("skip: no Multipath TCP in this kernel")
        return
    mp = MptcpEcho()
    cleanup(mp.close)
    plain = start_backend("echo")
    p_mp, p_plain, p_off = free_port(), free_port(), free_port()
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
[listener to_mptcp]
bind = 127.0.0.1:{p_mp}
backend = mp
[listener to_plain]
bind = 127.0.0.1:{p_plain}
backend = plain
[listener off]
bind = 127.0.0.1:{p_off}
backend = off
[backend mp]
server s 127.0.0.1:{mp.port}
mptcp = on
[backend plain]
server s 127.0.0.1:{plain.port}
mptcp = on
[backend off]
server s 127.0.0.1:{mp.port}
""")
    payload = os.urandom(100000)
    # Without mptcp the backend connection is plain TCP: no MP_CAPABLE SYN sent.
    before = netstat()
    assert echo_through(p_off, payload) == payload
    assert delta(before, "MPTcpExt.MPCapableSYNTX") == 0
    # With it, ferryd's connects carry MP_CAPABLE, and the MPTCP server's
    # listener takes them.
    before = netstat()
    for _ in range(3):
        assert echo_through(p_mp, payload) == payload
    assert delta(before, "MPTcpExt.MPCapableSYNTX") >= 3
    assert delta(before, "MPTcpExt.MPCapableSYNRX") >= 3
    # A plain TCP server: the MPTCP connect falls back and the stream works.
    before = netstat()
    assert echo_through(p_plain, payload) == payload
    assert delta(before, "MPTcpExt.MPCapableSYNTX") >= 1
    assert f.server("plain", "s")["connect_errors"] == 0


def set_tcp_fastopen(value):
    with open("/proc/sys/net/ipv4/tcp_fastopen", "w") as fh:
        fh.write(str(value))


def tfo_request(port, payload):
    """A TCP Fast Open client: data in the SYN (a cookie request the first
    time). Returns the echo."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.sendto(payload, MSG_FASTOPEN, ("127.0.0.1", port))  # blocking: connects and sends
    s.settimeout(10)
    got = recv_exact(s, len(payload))
    s.close()
    return got


def test_tcp_fastopen_listener_takes_data_in_the_syn():
    try:
        with open("/proc/sys/net/ipv4/tcp_fastopen") as fh:
            saved = int(fh.read())
        # Client (1) for our client, server (2) for a listener that asks for it.
        set_tcp_fastopen(saved | 3)
    except OSError as e:
        print(f"skip: cannot set net.ipv4.tcp_fastopen ({e})")
        return
    cleanup(lambda: set_tcp_fastopen(saved))
    f, p_on, p_off = on_and_off("tcp_fastopen = 64")
    # Without tcp_fastopen the listener ignores the cookie request: no SYN
    # data is ever taken.
    before = netstat()
    for i in range(3):
        assert tfo_request(p_off, b"hello %d" % i) == b"hello %d" % i
    assert delta(before, "TcpExt.TCPFastOpenPassive") == 0
    # With it: the first connection gets a cookie, the next ones send their
    # data in the SYN and the listener takes it.
    before = netstat()
    for i in range(4):
        assert tfo_request(p_on, b"fast %d" % i) == b"fast %d" % i
    assert delta(before, "TcpExt.TCPFastOpenPassive") >= 3, delta(before, "TcpExt.TCPFastOpenPassive")
    assert f.listener("on")["total"] == 4


def test_config_errors_for_mptcp_and_tcp_fastopen():
    import tempfile
    d = tempfile.mkdtemp(prefix="ferry-mptcp-")
    path = os.path.join(d, "ferry.ini")
    with open(path, "w") as fh:
        fh.write(f"""[global]
control_socket =
[listener a]
bind = unix:{d}/a.sock
backend = b
mptcp = on
tcp_fastopen = 8
[listener c]
bind = 127.0.0.1:{free_port()}
backend = b
mptcp = sometimes
tcp_fastopen = 70000
[backend b]
server s 127.0.0.1:9
mptcp = 2
""")
    r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=60)
    errs = (r.stdout + r.stderr).decode().strip().splitlines()
    assert r.returncode == 1, errs
    assert errs == [
        f"{path}:6: mptcp applies to TCP only, but bind unix:{d}/a.sock is a unix socket",
        f"{path}:7: tcp_fastopen applies to TCP only, but bind unix:{d}/a.sock is a unix socket",
        f"{path}:11: invalid value \"sometimes\" for mptcp: expected on, off, yes, no, true or "
        "false",
        f"{path}:12: invalid value \"70000\" for tcp_fastopen: expected a whole number from 0 to "
        "65535",
        f"{path}:15: invalid value \"2\" for mptcp: expected on, off, yes, no, true or false",
    ], errs


if __name__ == "__main__":
    runner.run(globals())
