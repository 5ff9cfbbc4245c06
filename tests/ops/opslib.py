"""Helpers shared by the operations tests: free ports, an echo backend,
ferryd configurations and processes, bounded waits. Standard library only.

Meson's convention: exit status 77 means "skipped".
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ports import free_port  # noqa: E402,F401  (tests/ports.py: one port picker)

SKIP = 77


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


def ferryd_path():
    path = os.environ.get("FERRYD", "")
    if not path or not os.access(path, os.X_OK):
        fail(f"FERRYD={path!r} is not an executable; run through meson test")
    return path


def ferryctl_path():
    path = os.environ.get("FERRYCTL", "")
    if not path or not os.access(path, os.X_OK):
        fail(f"FERRYCTL={path!r} is not an executable; run through meson test")
    return path


def wait_for(pred, timeout=10.0, what="condition", interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class EchoBackend:
    """A threaded TCP echo server on 127.0.0.1: echoes until EOF, then closes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        conn.settimeout(10)
        try:
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                conn.sendall(b)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def echo_through(port, payload, timeout=10.0):
    """Sends payload to 127.0.0.1:port, half-closes, returns all bytes read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def write_config(path, listen_port, backend_port, control_socket, listener="web", extra=""):
    with open(path, "w") as f:
        f.write(
            "[global]\n"
            "workers = 1\n"
            f"control_socket = {control_socket}\n"
            "drain_timeout = 2s\n"
            f"{extra}"
            "\n"
            f"[listener {listener}]\n"
            f"bind = 127.0.0.1:{listen_port}\n"
            "backend = echo\n"
            "\n"
            "[backend echo]\n"
            f"server = e1 127.0.0.1:{backend_port}\n"
        )


def child_env(extra=None):
    """The environment for ferryd: ours minus any systemd variables of the
    process running the tests, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                        "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")}
    env.update(extra or {})
    return env


def stop(proc, timeout=10.0):
    """Stops a process we started: SIGTERM, then SIGKILL. Returns its status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def tempdir():
    # Short paths: AF_UNIX socket paths are limited to 107 bytes.
    return tempfile.TemporaryDirectory(prefix="ferry-ops-", dir="/tmp")
