#!/usr/bin/env python3
"""Remote syslog (`log = udp://HOST:PORT | tcp://HOST:PORT`, ferry.ini(5)):
RFC 5424 messages to a real receiver (a Python socket server) over UDP (one
datagram each) and TCP (octet-counted frames, RFC 6587), the receiver going
away and coming back, and a receiver that stops reading never slowing the
proxied connections; lines that cannot be sent are counted in
ferry_log_lines_dropped_total."""
import re
import socket
import threading
import time

from ferrytest import (connect, free_port, recv_exact, runner, start_backend, start_ferry,
                       wait_for, web_config)

# <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
RFC5424 = re.compile(r"^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) ferryd (\d+) - - "
                     r"(level=\w+ msg=\w+.*)$")


class Receiver:
    """Collects syslog messages on 127.0.0.1:port (UDP datagrams, or TCP
    octet-counted frames from any number of connections)."""

    def __init__(self, proto, port=None, rcvbuf=None):
        self.proto = proto
        self.port = port or free_port()
        self.msgs = []
        self.lock = threading.Lock()
        self.conns = []
        self.reading = True
        self.sock = socket.socket(socket.AF_INET,
                                  socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:  # inherited by the accepted connections
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", self.port))
        if proto == "tcp":
            self.sock.listen(16)
        self.open = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.open:
            try:
                if self.proto == "udp":
                    data, _ = self.sock.recvfrom(65536)
                    self._add(data.decode())
                else:
                    c, _ = self.sock.accept()
                    self.conns.append(c)
                    threading.Thread(target=self._read_frames, args=(c,), daemon=True).start()
            except OSError:
                return

    def _read_frames(self, c):
        buf = b""
        while True:
            while not self.reading and self.open:
                time.sleep(0.05)
            try:
                data = c.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while True:  # "LEN SP MSG"
                sp = buf.find(b" ")
                if sp < 0:
                    break
                n = int(buf[:sp])
                if len(buf) < sp + 1 + n:
                    break
                self._add(buf[sp + 1:sp + 1 + n].decode())
                buf = buf[sp + 1 + n:]

    def _add(self, text):
        with self.lock:
            self.msgs.append(text)

    def messages(self):
        with self.lock:
            return list(self.msgs)

    def conn_ids(self):
        """The access-log connection ids received so far."""
        out = []
        for m in self.messages():
            g = RFC5424.match(m)
            if g and " msg=conn " in g.group(5):
                out.append(int(re.search(r" id=(\d+)", g.group(5)).group(1)))
        return out

    def close(self):
        self.open = False
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.conns = []
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def dropped(f):
    m = re.search(r"^ferry_log_lines_dropped_total (\d+)", f.command(b"show metrics\n"), re.M)
    assert m, "no ferry_log_lines_dropped_total"
    return int(m.group(1))


def proxied(port, n):
    """n connections through ferry, each echoed whole: returns their count."""
    ok = 0
    for i in range(n):
        s = connect(port)
        s.sendall(b"ping%d" % i)
        ok += recv_exact(s, len(b"ping%d" % i)) == b"ping%d" % i
        s.close()
    return ok


def start(proto, recv_port):
    app = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server s 127.0.0.1:{app.port}",
                               f"log = {proto}://127.0.0.1:{recv_port}\naccess_log = on\n"))
    return f, port


def check_format(msgs, ferry_pid):
    started = [m for m in msgs if " msg=started" in m]
    assert started, msgs[:5]
    for m in msgs:
        g = RFC5424.match(m)
        assert g, f"not RFC 5424: {m!r}"
        pri, pid = int(g.group(1)), int(g.group(4))
        assert pri // 8 == 3 and pid == ferry_pid, m  # facility daemon, our pid
        level = re.match(r"level=(\w+)", g.group(5)).group(1)
        assert pri % 8 == {"error": 3, "warn": 4, "info": 6, "debug": 7}[level], m
        assert not m.endswith("\n") and "ts=" not in g.group(5)[:20], m


def test_udp_one_datagram_per_line_and_a_receiver_that_comes_back():
    r = Receiver("udp")
    f, port = start("udp", r.port)
    assert proxied(port, 5) == 5
    wait_for(lambda: len(r.conn_ids()) >= 5, timeout=10, what="5 access lines over UDP")
    check_format(r.messages(), f.proc.pid)
    assert dropped(f) == 0

    # The receiver goes away: lines are refused (ICMP) and counted, the
    # connections are served as before.
    r.close()
    before = dropped(f)
    assert proxied(port, 20) == 20
    wait_for(lambda: dropped(f) > before, timeout=10, what="lines dropped while no receiver")

    # Back on the same port: new lines arrive again.
    r2 = Receiver("udp", port=r.port)
    try:
        base = max(r.conn_ids())
        wait_for(lambda: (proxied(port, 1), any(i > base for i in r2.conn_ids()))[1],
                 timeout=15, what="lines again after the receiver came back")
        for m in r2.messages():
            assert RFC5424.match(m), m
    finally:
        r2.close()


def test_tcp_octet_counted_and_reconnected_with_back_off():
    r = Receiver("tcp")
    f, port = start("tcp", r.port)
    assert proxied(port, 5) == 5
    wait_for(lambda: len(r.conn_ids()) >= 5, timeout=10, what="5 access lines over TCP")
    check_format(r.messages(), f.proc.pid)
    assert dropped(f) == 0

    # The receiver goes away (connection and listener closed): lines are
    # dropped and counted, never waited for.
    r.close()
    before = dropped(f)
    t0 = time.monotonic()
    assert proxied(port, 30) == 30
    assert time.monotonic() - t0 < 20
    wait_for(lambda: (proxied(port, 1), dropped(f) > before)[1], timeout=10,
             what="lines dropped while the receiver is away")

    # It comes back: ferryd connects again (back-off at most 10 s).
    r2 = Receiver("tcp", port=r.port)
    try:
        wait_for(lambda: (proxied(port, 1), len(r2.conn_ids()) > 0)[1], timeout=30,
                 interval=0.2, what="a new TCP connection carrying lines")
        for m in r2.messages():
            assert RFC5424.match(m), m
    finally:
        r2.close()


def test_a_receiver_that_stops_reading_never_slows_the_proxy():
    r = Receiver("tcp", rcvbuf=4096)
    f, port = start("tcp", r.port)
    assert proxied(port, 2) == 2
    wait_for(lambda: len(r.conn_ids()) >= 2, timeout=10, what="first lines")
    r.reading = False  # its socket buffers fill up, then ferryd's
    before = dropped(f)
    # Far more log bytes (about 200 a line) than the receiver's small buffer,
    # the kernel's and ferryd's own hold.
    t0 = time.monotonic()
    assert proxied(port, 5000) == 5000
    elapsed = time.monotonic() - t0
    wait_for(lambda: dropped(f) > before, timeout=10, what="lines dropped by a full stream")
    print(f"5000 connections with a stuck syslog receiver: {elapsed:.1f}s, "
          f"{dropped(f) - before} lines dropped")
    r.reading = True
    r.close()


def test_bad_log_addresses_are_errors_with_their_line():
    import os
    import subprocess
    import tempfile
    from ferrytest import FERRYD
    d = tempfile.mkdtemp(prefix="ferry-syslog-")
    for value, why in (("udp://localhost", "expected udp://HOST:PORT"),
                       ("tcp://127.0.0.1:0", "expected tcp://HOST:PORT"),
                       ("udp://[::1:514", "expected udp://HOST:PORT")):
        path = os.path.join(d, "ferry.ini")
        with open(path, "w") as fh:
            fh.write(f"[global]\ncontrol_socket =\nlog = {value}\n[listener l]\n"
                     f"bind = 127.0.0.1:{free_port()}\nbackend = b\n[backend b]\n"
                     "server s 127.0.0.1:9\n")
        r = subprocess.run([FERRYD, "-t", "-c", path], capture_output=True, timeout=60)
        out = (r.stdout + r.stderr).decode()
        assert r.returncode == 1 and f"{path}:3: invalid log address \"{value}\": {why}" in out, out
    # A receiver that is not there at start is no start-up error: lines are counted.
    f, port = start("tcp", free_port())
    assert proxied(port, 3) == 3
    wait_for(lambda: dropped(f) > 0, what="lines dropped without a receiver")


if __name__ == "__main__":
    runner.run(globals())
