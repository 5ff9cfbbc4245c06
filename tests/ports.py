"""The one port picker of every test suite (integration, ops, bench)."""
import os
import random
import socket
import time

_PORTS_GIVEN = set()
LOW, HIGH = 20000, 32000


def _share():
    """This process's share of LOW..HIGH. Under pytest-xdist each worker
    (gw0, gw1, ...) takes a slice of its own, so two tests running at once
    never pick the same port between checking it and binding it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count < 2:
        return LOW, HIGH
    k, span = int(worker[2:]) % count, (HIGH - LOW) // count
    return LOW + k * span, LOW + (k + 1) * span


def free_port():
    """A port nothing listens on, taken below the kernel's ephemeral range
    (ip_local_port_range starts at 32768): a port the kernel handed out could
    become some connection's source port before the test binds it, which then
    fails with EADDRINUSE (seen on 127.0.0.2 under load). Never the same port
    twice in one process."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    low, high = _share()
    for _ in range(500):
        port = rng.randrange(low, high)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
