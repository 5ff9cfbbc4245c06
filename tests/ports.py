"""The one port picker of every test suite (integration, ops, bench)."""
import os
import random
import socket
import time

_PORTS_GIVEN = set()


def free_port():
    """A port nothing listens on, taken below the kernel's ephemeral range
    (ip_local_port_range starts at 32768): a port the kernel handed out could
    become some connection's source port before the test binds it, which then
    fails with EADDRINUSE (seen on 127.0.0.2 under load). Never the same port
    twice in one process."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(500):
        port = rng.randrange(20000, 32000)
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
