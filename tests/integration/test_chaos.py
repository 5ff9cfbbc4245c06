#!/usr/bin/env python3
"""Hostile and unlucky peers at once: clients and servers that reset, stall,
half-close or vanish at random points, while well-behaved clients check
their bytes. ferryd must lose no byte of the good connections, crash on
nothing, leak nothing (the sanitizers check at exit) and end with every
counter back at zero. Bounded: a fixed number of connections and a deadline."""
import hashlib
import os
import random
import socket
import struct
import threading
import time

from ferrytest import (connect, free_port, recv_all, runner, start_backend, start_ferry,
                       wait_for)


def rst_close(s):
    """Close with a reset instead of a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def moody_server(c, _b):
    """Echo, but sometimes reset, stall or stop early."""
    rnd = random.Random(os.getpid() ^ id(c))
    mood = rnd.random()
    try:
        if mood < 0.1:
            rst_close(c)
            return
        if mood < 0.2:
            c.recv(100)
            time.sleep(0.2)
            rst_close(c)
            return
        while True:
            b = c.recv(65536)
            if not b:
                break
            c.sendall(b)
        c.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def good_client(port, errors, rnd):
    data = os.urandom(rnd.randint(1, 300_000))
    try:
        s = connect(port, timeout=20)
        t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
        t.start()
        got = recv_all(s)
        t.join()
        s.close()
        if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
            errors.append(f"bytes differ: sent {len(data)} got {len(got)}")
    except OSError as e:
        errors.append(f"good client: {e!r}")


def bad_client(port, rnd):
    try:
        s = connect(port, timeout=5)
        what = rnd.random()
        if what < 0.25:
            rst_close(s)
        elif what < 0.5:
            s.sendall(os.urandom(rnd.randint(1, 50_000)))
            rst_close(s)
        elif what < 0.75:
            s.sendall(b"x" * rnd.randint(1, 10_000))
            s.shutdown(socket.SHUT_WR)
            time.sleep(rnd.random() * 0.2)
            s.close()  # without reading the answer
        else:
            time.sleep(rnd.random() * 0.3)  # says nothing
            s.close()
    except OSError:
        pass


def test_chaos_keeps_good_bytes_and_counters():
    good = start_backend("echo")
    moody = start_backend(moody_server)
    p_good, p_moody = free_port(), free_port()
    f = start_ferry(f"""
[global]
control_socket = @SOCK@
workers = 2
access_log = off
[listener good]
bind = 127.0.0.1:{p_good}
backend = good
idle_timeout = 5s
[listener moody]
bind = 127.0.0.1:{p_moody}
backend = moody
idle_timeout = 2s
[backend good]
server g1 127.0.0.1:{good.port}
[backend moody]
server m1 127.0.0.1:{moody.port}
server m2 127.0.0.1:{free_port()}
retries = 1
""")
    rnd = random.Random(1234)
    errors = []
    threads = []
    deadline = time.monotonic() + 8
    n = 0
    while time.monotonic() < deadline and n < 600:
        kind = rnd.random()
        if kind < 0.3:
            t = threading.Thread(target=good_client, args=(p_good, errors, random.Random(n)))
        elif kind < 0.6:
            t = threading.Thread(target=bad_client, args=(p_good, random.Random(n)))
        elif kind < 0.8:
            t = threading.Thread(target=bad_client, args=(p_moody, random.Random(n)))
        else:
            def moody_client(r=random.Random(n)):
                try:
                    s = connect(p_moody, timeout=5)
                    s.sendall(os.urandom(r.randint(1, 20_000)))
                    s.settimeout(5)
                    try:
                        recv_all(s)
                    except OSError:
                        pass
                    s.close()
                except OSError:
                    pass
            t = threading.Thread(target=moody_client)
        t.start()
        threads.append(t)
        n += 1
        if len(threads) > 80:
            threads.pop(0).join(30)
        time.sleep(0.005)
    for t in threads:
        t.join(30)
    print(f"{n} connections", flush=True)
    assert errors == [], errors[:5]
    wait_for(lambda: all(l["active"] == 0 for l in f.stats()["listeners"]), timeout=15,
             what="every connection ended")
    st = f.stats()
    for b in st["backends"]:
        assert b["active"] == 0, b
        for s in b["servers"]:
            assert s["active"] == 0, s
    assert sum(l["total"] for l in st["listeners"]) == n
    # Still healthy: a fresh good connection works.
    s = connect(p_good)
    s.sendall(b"after the storm")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"after the storm"
    s.close()


if __name__ == "__main__":
    runner.run(globals())
