#!/usr/bin/env python3
"""Probes and graceful hand-off (ferryd(8) signals, 2 metrics / shutdown_delay):
/ready and /live on the metrics address, and shutdown_delay with a client that
keeps connecting through the delay (every connection served) until the moment
accepting stops; STATUS= while delaying; a second signal stops at once."""
import http.client
import os
import queue
import signal
import socket
import tempfile
import threading
import time

from ferrytest import (connect, free_port, recv_exact, runner, start_backend, start_ferry,
                       wait_for, web_config)


def get(port, path, method="GET", timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path)
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, body


class Notify:
    """Plays systemd's end of NOTIFY_SOCKET: a datagram socket drained by a thread."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ferry-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.msgs = queue.Queue()
        self.stopped = False
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self):
        while not self.stopped:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.msgs.put(dict(l.split("=", 1) for l in data.decode().split("\n") if "=" in l))

    def wait(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                m = self.msgs.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if pred(m):
                return m
        raise AssertionError("no matching notification")

    def close(self):
        self.stopped = True
        self.thread.join()
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


def test_ready_and_live():
    b = start_backend("echo")
    port, mport = free_port(), free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}",
                               global_lines=f"metrics = 127.0.0.1:{mport}\nshutdown_delay = 30s"))
    assert get(mport, "/ready") == (200, "ready\n")
    assert get(mport, "/live") == (200, "live\n")
    assert get(mport, "/ready?verbose=1")[0] == 200
    assert get(mport, "/ready", method="HEAD") == (200, "")
    assert get(mport, "/ready", method="POST")[0] == 405
    assert get(mport, "/readyz")[0] == 404
    f.signal(signal.SIGTERM)
    wait_for(lambda: get(mport, "/ready") == (503, "stopping\n"), what="/ready at 503")
    # Still alive and still serving while not ready.
    assert get(mport, "/live") == (200, "live\n")
    s = connect(port)
    s.sendall(b"during")
    assert recv_exact(s, 6) == b"during"
    s.close()
    # A second signal stops at once, well before the 30 s delay ends.
    t0 = time.monotonic()
    f.signal(signal.SIGTERM)
    f.proc.wait(15)
    assert f.proc.returncode == 0, f.proc.returncode
    assert time.monotonic() - t0 < 15


def open_idle(n, port=None, path=None, say=b""):
    """n connections that send `say` (perhaps nothing) and then sit idle."""
    out = []
    for _ in range(n):
        if path:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
        else:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if say:
            s.sendall(say)
        out.append(s)
    return out


def test_probes_answered_under_idle_abuse():
    """Idle connections to the metrics port (silent ones, half-sent heads,
    scrapes that never read their answer) cannot starve the probes: with
    more than 64 of them held open, and fresh ones opened before every
    probe, /live and /ready are each answered in under a second."""
    b = start_backend("echo")
    port, mport = free_port(), free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}",
                               global_lines=f"metrics = 127.0.0.1:{mport}"))
    held = []
    try:
        held += open_idle(8, mport, say=b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        for i in range(6):
            held += open_idle(48, mport)
            held += open_idle(24, mport, say=b"GET /live HTTP/1.1\r\n")
            for path, body in (("/live", "live\n"), ("/ready", "ready\n")):
                t0 = time.monotonic()
                got = get(mport, path, timeout=5)
                took = time.monotonic() - t0
                assert got == (200, body), (i, path, got)
                assert took < 1.0, f"probe {i} {path} took {took:.2f}s"
            time.sleep(0.3)
    finally:
        for s in held:
            s.close()
    assert get(mport, "/metrics")[0] == 200


def test_control_socket_not_blocked_by_idle_clients():
    """More idle clients than the control socket's slots do not make
    `ferryctl reload` (or `show info`) wait for them."""
    b = start_backend("echo")
    port = free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}"))
    held = []
    try:
        held += open_idle(150, path=f.sock_path)
        held += open_idle(20, path=f.sock_path, say=b"show in")
        t0 = time.monotonic()
        assert f.ctl("reload").startswith("ok"), "reload"
        assert "pid:" in f.ctl("info")
        took = time.monotonic() - t0
        assert took < 3.0, f"reload and info took {took:.2f}s behind idle clients"
    finally:
        for s in held:
            s.close()


def _shutdown_delay_keeps_serving_then_stops_accepting(reuseport):
    delay = 2.0
    b = start_backend("echo")
    port, mport = free_port(), free_port()
    n = Notify()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}", global_lines=f"""
metrics = 127.0.0.1:{mport}
shutdown_delay = {int(delay * 1000)}ms
drain_timeout = 10s
workers = 2
reuseport = {reuseport}
"""), env={"NOTIFY_SOCKET": n.path})
    n.wait(lambda m: m.get("READY") == "1")
    served, refused, failed = [], [], []
    stop = threading.Event()

    def client():
        """Connects again and again until refused; each connection must be served."""
        i = 0
        while not stop.is_set():
            i += 1
            msg = b"conn %d" % i
            t = time.monotonic()
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
            except ConnectionRefusedError:
                refused.append(t)
                return
            except OSError as e:  # a SYN racing the close of the listening socket
                failed.append((t, repr(e)))
                continue
            try:
                s.sendall(msg)
                got = recv_exact(s, len(msg))
                if got != msg:
                    failed.append((t, got))
                else:
                    served.append(t)
            except OSError as e:
                failed.append((t, repr(e)))
            finally:
                s.close()
            time.sleep(0.01)

    th = threading.Thread(target=client)
    th.start()
    wait_for(lambda: len(served) >= 20, what="traffic before the stop")
    # A long connection opened before the stop runs on after accepting stops.
    held = connect(port)
    held.sendall(b"held")
    assert recv_exact(held, 4) == b"held"
    t_sig = time.monotonic()
    f.signal(signal.SIGTERM)
    n.wait(lambda m: m.get("STOPPING") == "1")
    m = n.wait(lambda m: "STATUS" in m and "not ready" in m["STATUS"])
    assert "shutdown_delay" in m["STATUS"], m
    wait_for(lambda: get(mport, "/ready")[0] == 503, what="/ready at 503")
    # A connection accepted during the delay, still open when it ends.
    late = connect(port)
    late.sendall(b"late")
    assert recv_exact(late, 4) == b"late"
    th.join(timeout=delay + 20)
    stop.set()
    assert not th.is_alive(), "the client was never refused"
    assert len(refused) == 1
    # Every connection was served up to the moment accepting stopped; only
    # one racing the kernel's close of the listening socket may be reset.
    assert len(failed) <= 1 and all(t >= t_sig + delay - 0.05 for t, _ in failed), failed[:5]
    # The moment accepting stopped: not before the delay, and soon after it.
    stopped_after = refused[0] - t_sig
    assert stopped_after >= delay - 0.05, stopped_after
    assert stopped_after < delay + 5, stopped_after
    during = [t for t in served if t > t_sig]
    assert len(during) >= 10 and during[-1] - t_sig > delay * 0.75, (len(during), during[-1:])
    n.wait(lambda m: "STATUS" in m and "draining" in m["STATUS"])
    # In-flight connections finish within drain_timeout after the delay.
    for s, word in ((held, b"after-held"), (late, b"after-late")):
        s.sendall(word)
        assert recv_exact(s, len(word)) == word
    assert f.proc.poll() is None, "ferryd exited with connections in flight"
    held.close()
    late.close()
    f.proc.wait(15)
    assert f.proc.returncode == 0, f.proc.returncode
    n.close()


def test_shutdown_delay_keeps_serving_then_stops_accepting():
    _shutdown_delay_keeps_serving_then_stops_accepting("off")


def test_shutdown_delay_keeps_serving_then_stops_accepting_reuseport():
    # Each worker serves its own socket's queue, then closes it.
    _shutdown_delay_keeps_serving_then_stops_accepting("on")


def test_no_delay_stops_accepting_at_once():
    b = start_backend("echo")
    port, mport = free_port(), free_port()
    f = start_ferry(web_config(port, f"server app1 127.0.0.1:{b.port}",
                               global_lines=f"metrics = 127.0.0.1:{mport}"))
    assert get(mport, "/ready")[0] == 200
    held = connect(port)
    held.sendall(b"x")
    assert recv_exact(held, 1) == b"x"
    f.signal(signal.SIGTERM)

    def refused():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return False
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:
            # Queued in the instant the listener closed: reset with the
            # queue (seen under poll(2)); the next attempt is refused.
            return False
    wait_for(refused, timeout=5, what="accepting stopped")
    held.sendall(b"y")
    assert recv_exact(held, 1) == b"y"
    held.close()
    f.proc.wait(15)
    assert f.proc.returncode == 0


if __name__ == "__main__":
    runner.run(globals())
