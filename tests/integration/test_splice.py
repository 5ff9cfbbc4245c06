#!/usr/bin/env python3
"""Zero copy between plain sockets (splice through pooled pipes), through the
real ferryd: bulk data checked both ways at once, half-close passed on in
each direction, a reader that pauses while the writer pushes (nothing lost,
ferryd's memory bounded), and byte counts that stay exact."""
import hashlib
import os
import socket
import threading
import time

from ferrytest import connect, free_port, runner, start_backend, start_ferry, wait_for, web_config

MIB = 1 << 20


def pattern(n, seed):
    """n deterministic bytes (fast: a repeated 1 MiB block with a seed)."""
    block = hashlib.sha256(b"%d" % seed).digest() * (MIB // 32)
    out = bytearray()
    while len(out) < n:
        out += block[:n - len(out)]
    return bytes(out)


def one_worker(port, bport):
    return web_config(port, f"server app1 127.0.0.1:{bport}", "workers = 1")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def pipes_held(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:"):
                n += 1
        except OSError:
            pass
    return n


def send_all_then_shut(s, data, chunk=256 * 1024):
    for i in range(0, len(data), chunk):
        s.sendall(data[i:i + chunk])
    s.shutdown(socket.SHUT_WR)


def read_to_eof(s, h):
    n = 0
    while True:
        b = s.recv(1 << 17)
        if not b:
            return n
        h.update(b)
        n += len(b)


def test_64mib_both_ways_at_once():
    """64 MiB up while the echo backend sends them back down at the same time:
    both SHA-256 match, and the stats and access log count every byte."""
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(one_worker(port, b.port))
    data = pattern(64 * MIB, 1)
    s = connect(port, timeout=60)
    t = threading.Thread(target=send_all_then_shut, args=(s, data))
    t.start()
    h = hashlib.sha256()
    got = read_to_eof(s, h)
    t.join(60)
    s.close()
    assert got == len(data), got
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
    wait_for(lambda: f.access_log(), what="access log line")
    e = f.access_log()[0]
    assert e["bytes_in"] == str(64 * MIB) and e["bytes_out"] == str(64 * MIB), e
    assert e["end"] == "closed", e
    (l,) = f.ctl("stats", json_out=True)["listeners"]
    assert l["bytes_in"] == 64 * MIB and l["bytes_out"] == 64 * MIB, l


def test_half_close_client_first():
    """The client half-closes after 8 MiB; the server reads it all and only
    then answers 3 MiB on the same connection."""
    answer = pattern(3 * MIB, 3)
    seen = {}

    def serve(c, _b):
        h = hashlib.sha256()
        seen["n"] = read_to_eof(c, h)
        seen["sha"] = h.hexdigest()
        c.sendall(answer)
        c.shutdown(socket.SHUT_WR)
        c.recv(1)

    b = start_backend(serve)
    port = free_port()
    start_ferry(one_worker(port, b.port))
    up = pattern(8 * MIB, 2)
    s = connect(port, timeout=30)
    send_all_then_shut(s, up)
    h = hashlib.sha256()
    assert read_to_eof(s, h) == len(answer)
    assert h.hexdigest() == hashlib.sha256(answer).hexdigest()
    assert seen["n"] == len(up) and seen["sha"] == hashlib.sha256(up).hexdigest()
    s.close()


def test_half_close_server_first():
    """The server sends 2 MiB and half-closes first; the client sees the EOF,
    then still sends 5 MiB, all of which reach the server."""
    down = pattern(2 * MIB, 4)
    seen = {}
    done = threading.Event()

    def serve(c, _b):
        c.sendall(down)
        c.shutdown(socket.SHUT_WR)
        h = hashlib.sha256()
        seen["n"] = read_to_eof(c, h)
        seen["sha"] = h.hexdigest()
        done.set()

    b = start_backend(serve)
    port = free_port()
    start_ferry(one_worker(port, b.port))
    s = connect(port, timeout=30)
    h = hashlib.sha256()
    assert read_to_eof(s, h) == len(down)
    assert h.hexdigest() == hashlib.sha256(down).hexdigest()
    up = pattern(5 * MIB, 5)
    send_all_then_shut(s, up)
    assert done.wait(30)
    assert seen["n"] == len(up) and seen["sha"] == hashlib.sha256(up).hexdigest()
    s.close()


def test_paused_reader_bounded_memory():
    """The client stops reading for 3 s while it keeps pushing 48 MiB through
    the echo backend: ferryd's RSS stays bounded (the kernel's buffers and a
    pipe hold the backlog, not ferryd), a pipe is lent while bytes are stuck,
    and after the pause every byte arrives intact."""
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(one_worker(port, b.port))
    pid = f.proc.pid
    warm = connect(port)
    warm.sendall(b"warm")
    assert warm.recv(4) == b"warm"
    warm.close()
    time.sleep(0.2)
    rss0 = rss_kib(pid)
    pipes0 = pipes_held(pid)
    data = pattern(48 * MIB, 6)
    s = connect(port, timeout=60)
    t = threading.Thread(target=send_all_then_shut, args=(s, data))
    t.start()
    peak = rss0
    saw_pipe = False
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        peak = max(peak, rss_kib(pid))
        saw_pipe = saw_pipe or pipes_held(pid) > pipes0
        time.sleep(0.1)
    assert t.is_alive(), "the writer should be blocked by the paused reader"
    h = hashlib.sha256()
    got = read_to_eof(s, h)
    t.join(60)
    s.close()
    assert got == len(data), got
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
    assert saw_pipe, "no pipe lent while bytes were stuck: splice not used"
    assert peak - rss0 < 8 * 1024, (rss0, peak)


if __name__ == "__main__":
    runner.run(globals())
