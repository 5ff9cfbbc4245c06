#!/usr/bin/env python3
"""Reloads under a steady stream of connections, 2 workers accepting: every
connection that starts after `ferryctl reload` answered ok is served by the
new configuration (ferryd(8), SIGHUP), none refused or cut; with the shared
listening socket and with reuseport.

The reloads cycle through three backends, so that a connection started just
before the next reload (which that reload may serve: it waited in the kernel
queue) is told apart from one served by the configuration before."""
import threading
import time

from ferrytest import (connect, free_port, recv_exact, runner, start_backend, start_ferry,
                       web_config)

RELOADS = 12
CLIENTS = 4


def conf(port, label_port, reuseport):
    return web_config(port, f"server s 127.0.0.1:{label_port}",
                      global_lines=f"workers = 2\nreuseport = {reuseport}\naccess_log = off")


def stress(reuseport):
    backends = [start_backend("label", label=lab) for lab in (b"A", b"B", b"C")]
    port = free_port()
    f = start_ferry(conf(port, backends[0].port, reuseport))
    seen = []          # (start, label) of every connection
    errors = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                s = connect(port, timeout=10)
                got = recv_exact(s, 1)
                s.close()
            except OSError as e:
                errors.append((t0, repr(e)))
                continue
            seen.append((t0, got))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    switches = []      # (reload asked, answered ok, label served from then on)
    try:
        time.sleep(0.3)
        for k in range(RELOADS):
            target = backends[(k + 1) % 3]
            label = target.label
            asked = time.monotonic()
            f.write_config(conf(port, target.port, reuseport))
            out = f.ctl("reload")
            switches.append((asked, time.monotonic(), label))
            assert out == "ok\n", out
            time.sleep(0.25)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:5]
    wrong = []
    for i, (_, t_ok, label) in enumerate(switches):
        last = i + 1 == len(switches)
        until = float("inf") if last else switches[i + 1][1]
        allowed = {label} if last else {label, switches[i + 1][2]}
        # Started after the reload answered, before the next one answered.
        for t0, got in seen:
            if t_ok <= t0 < until and got not in allowed:
                wrong.append((i, round(t0 - t_ok, 4), got, label))
    checked = sum(1 for t0, _ in seen if t0 >= switches[0][1])
    assert checked > 100, checked
    assert not wrong, f"{len(wrong)} of {checked} served by the old configuration: {wrong[:10]}"


def test_reload_under_load_shared_socket():
    stress("off")


def test_reload_under_load_reuseport():
    stress("on")


if __name__ == "__main__":
    runner.run(globals())
