"""ferryd speaks the systemd notification protocol (ferryd(8)).

The test plays systemd: it binds an AF_UNIX datagram socket, hands its path
to the real ferryd as NOTIFY_SOCKET with WATCHDOG_USEC=200000, and checks:
READY=1 once the listener accepts (with a STATUS= line), WATCHDOG=1 pings,
RELOADING=1 with a plausible MONOTONIC_USEC= on SIGHUP and READY=1 after it
(also after a reload that fails), STOPPING=1 on SIGTERM, exit status 0.
"""
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opslib  # noqa: E402


class Notifications:
    """The receiving end of NOTIFY_SOCKET: one dict per datagram.

    A thread drains the socket at once, as systemd does: a datagram queue
    left full would block or fail ferryd's sends."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.log = []
        self.queue = queue.Queue()
        self._stop = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self):
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            msg = {}
            for line in data.decode("utf-8", "replace").split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    msg[k] = v
            self.log.append(msg)
            self.queue.put(msg)

    def next(self, timeout):
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise socket.timeout() from None

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def wait(self, pred, timeout, what):
        """Reads datagrams until pred(msg); returns (msg, messages read)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout}s; got {seen}")
            try:
                msg = self.next(left)
            except socket.timeout:
                continue
            seen.append(msg)
            if pred(msg):
                return msg, seen


def has(key, value=None):
    return lambda m: key in m and (value is None or m[key] == value)


def check_ready(notes, port, backend):
    ready, seen = notes.wait(has("READY", "1"), 15, "READY=1")
    # The listener must already accept when READY=1 arrives.
    payload = b"ready-check " * 100
    got = opslib.echo_through(port, payload)
    assert got == payload, f"proxied {len(got)} bytes back, expected {len(payload)}"
    assert backend.accepted >= 1, "the backend saw no connection"
    status = [m for m in seen if "STATUS" in m]
    if not status:
        # STATUS= may travel in its own datagram right after READY=1.
        try:
            notes.wait(has("STATUS"), 3, "STATUS=")
        except AssertionError:
            raise AssertionError("READY=1 came without a STATUS= line")
    print("ok: READY=1 with the listener bound, STATUS= sent")


def check_watchdog(notes):
    t0 = time.monotonic()
    pings = 0
    while pings < 3:
        notes.wait(has("WATCHDOG", "1"), 5, f"WATCHDOG=1 number {pings + 1}")
        pings += 1
    print(f"ok: {pings} WATCHDOG=1 pings in {time.monotonic() - t0:.2f}s "
          "(WATCHDOG_USEC=200000)")


def check_reload(notes, proc, port):
    before = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
    proc.send_signal(signal.SIGHUP)
    msg, _ = notes.wait(has("RELOADING", "1"), 10, "RELOADING=1")
    after = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
    assert "MONOTONIC_USEC" in msg, f"RELOADING=1 without MONOTONIC_USEC= in the same message: {msg}"
    usec = int(msg["MONOTONIC_USEC"])
    # CLOCK_MONOTONIC is system-wide: the stamp lies between our two readings.
    assert before - 1e6 <= usec <= after + 1e6, \
        f"MONOTONIC_USEC={usec} is not between {before:.0f} and {after:.0f}"
    notes.wait(has("READY", "1"), 10, "READY=1 after the reload")
    assert opslib.echo_through(port, b"after reload") == b"after reload"
    print("ok: SIGHUP -> RELOADING=1 + MONOTONIC_USEC, then READY=1")


def check_failed_reload(notes, proc, port, config):
    with open(config, "a") as f:
        f.write("\n[global]\nno_such_key = 1\n")
    proc.send_signal(signal.SIGHUP)
    # Whatever ferryd announces, systemd must not be left "reloading".
    deadline = time.monotonic() + 10
    reloading = False
    while time.monotonic() < deadline:
        try:
            msg = notes.next(0.5)
        except socket.timeout:
            if not reloading:
                break  # nothing announced: fine as well
            continue
        if msg.get("RELOADING") == "1":
            reloading = True
        if reloading and msg.get("READY") == "1":
            reloading = False
            break
    assert not reloading, "RELOADING=1 after a failed reload was never followed by READY=1"
    assert proc.poll() is None, "ferryd died on a bad reload"
    assert opslib.echo_through(port, b"still serving") == b"still serving"
    print("ok: a failed reload leaves ferryd serving and not stuck in reloading")


def check_stop(notes, proc):
    proc.send_signal(signal.SIGTERM)
    notes.wait(has("STOPPING", "1"), 10, "STOPPING=1")
    status = proc.wait(15)
    assert status == 0, f"ferryd exited with {status} after SIGTERM"
    print("ok: SIGTERM -> STOPPING=1, exit status 0")


def main():
    ferryd = opslib.ferryd_path()
    with opslib.tempdir() as tmp:
        backend = opslib.EchoBackend()
        notes = Notifications(os.path.join(tmp, "notify"))
        port = opslib.free_port()
        config = os.path.join(tmp, "ferry.ini")
        opslib.write_config(config, port, backend.port, os.path.join(tmp, "ctl.sock"))
        env = opslib.child_env({"NOTIFY_SOCKET": os.path.join(tmp, "notify"),
                                "WATCHDOG_USEC": "200000"})
        proc = subprocess.Popen([ferryd, "-c", config], env=env)
        try:
            check_ready(notes, port, backend)
            check_watchdog(notes)
            check_reload(notes, proc, port)
            check_failed_reload(notes, proc, port, config)
            check_stop(notes, proc)
        except Exception:
            traceback.print_exc()
            print("notifications received:", notes.log)
            return 1
        finally:
            opslib.stop(proc)
            backend.close()
            notes.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
