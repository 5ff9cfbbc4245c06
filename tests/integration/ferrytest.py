"""Shared helpers for ferry's integration tests: the real ferryd and ferryctl
on 127.0.0.1, real backends, real bytes. Standard library only.

Every wait is bounded; every process started is stopped in cleanup.
"""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

FERRYD = os.environ.get("FERRYD", "build/daemon/ferryd")
FERRYCTL = os.environ.get("FERRYCTL", "build/daemon/ferryctl")


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ports import free_port  # noqa: E402,F401  (tests/ports.py: one port picker)


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def connect(port, host="127.0.0.1", timeout=10.0):
    s = socket.create_connection((host, port), timeout=timeout)
    return s


def recv_all(sock, limit=None):
    chunks = []
    total = 0
    while True:
        b = sock.recv(1 << 16)
        if not b:
            break
        chunks.append(b)
        total += len(b)
        if limit is not None and total >= limit:
            break
    return b"".join(chunks)


def closed_by_peer(sock):
    """True when the peer closed: EOF, or a reset (closing with unread data
    sends RST), after reading and discarding whatever came first."""
    try:
        return recv_all(sock) is not None
    except ConnectionResetError:
        return True


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        b = sock.recv(n - len(buf))
        if not b:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += b
    return bytes(buf)


class Backend:
    """A threaded TCP server on 127.0.0.1 with a pluggable per-connection handler.

    Modes: 'echo' (echo until EOF, then half-close), 'label' (send the label
    first, then echo), 'sink' (read all, reply sha256 hex, close), or a
    callable(conn, backend)."""

    def __init__(self, mode="echo", label=b"", port=None, host="127.0.0.1"):
        self.mode = mode
        self.label = label
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port or 0))
        self.sock.listen(4096)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.lock = threading.Lock()
        self.conns = []
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            if callable(self.mode):
                self.mode(c, self)
            elif self.mode == "sink":
                h = hashlib.sha256()
                n = 0
                while True:
                    b = c.recv(1 << 16)
                    if not b:
                        break
                    h.update(b)
                    n += len(b)
                c.sendall(f"{n} {h.hexdigest()}\n".encode())
                c.shutdown(socket.SHUT_WR)
            else:
                if self.mode == "label":
                    c.sendall(self.label)
                while True:
                    b = c.recv(1 << 16)
                    if not b:
                        break
                    c.sendall(b)
                c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


_LOGFMT_PAIR = re.compile(r'([A-Za-z0-9_.-]+)=("(?:[^"\\]|\\.)*"|[^ "]*)(?: |$)')


def logfmt_unescape(v):
    if not v.startswith('"'):
        return v
    out, i, body = [], 0, v[1:-1]
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            n = body[i + 1]
            if n == "x":
                out.append(chr(int(body[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append({"n": "\n", "t": "\t"}.get(n, n))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_logfmt(line):
    """One logfmt line (ferryd(8) LOGS) as a dict; a `<N>` priority prefix becomes
    key `priority`. Raises ValueError on a line that is not whole logfmt."""
    kv = {}
    m = re.match(r"<(\d)>", line)
    if m:
        kv["priority"] = m.group(1)
        line = line[m.end():]
    pos = 0
    while pos < len(line):
        m = _LOGFMT_PAIR.match(line, pos)
        if not m:
            return {}
        kv[m.group(1)] = logfmt_unescape(m.group(2))
        pos = m.end()
    return kv


class Ferry:
    """Runs ferryd on a generated configuration in a temporary directory."""

    def __init__(self, config, name="ferry", env=None, check=True, pre_start=None):
        self.dir = tempfile.mkdtemp(prefix="ferry-it-")
        if pre_start:
            pre_start(self.dir)
        self.sock_path = os.path.join(self.dir, "ferry.sock")
        self.path = os.path.join(self.dir, "ferry.ini")
        self.write_config(config)
        self.log_path = os.path.join(self.dir, "ferryd.log")
        self.log = open(self.log_path, "wb")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen([FERRYD, "-c", self.path], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=e)
        if check:
            try:
                self._wait_started(config)
            except BaseException:
                # Nobody holds this Ferry yet (start_ferry registers its stop
                # only once the constructor returns): stop it here, or it runs on.
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                raise

    def _wait_started(self, config):
        wait_for(lambda: os.path.exists(self.sock_path) or self.proc.poll() is not None,
                 timeout=15, what="ferryd control socket")
        if self.proc.poll() is not None:
            raise AssertionError(f"ferryd exited {self.proc.returncode}:\n{self.logtext()}")
        # The "started" line, unless the configuration sends it elsewhere.
        if not re.search(r"^\s*(log\s*=|log_level\s*=\s*(warn|error))", config, re.M):
            wait_for(lambda: "started" in self.logtext(), timeout=10, what="ferryd started")

    def write_config(self, config):
        config = config.replace("@SOCK@", self.sock_path).replace("@DIR@", self.dir)
        with open(self.path + ".tmp", "w") as f:
            f.write(config)
        os.chmod(self.path + ".tmp", 0o644)
        os.replace(self.path + ".tmp", self.path)

    def logtext(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_lines(self, prefix):
        return [l for l in self.logtext().splitlines() if l.startswith(prefix)]

    def events(self, msg=None, text=None):
        """Parsed log lines (dicts), optionally only those with this msg."""
        out = []
        for line in (self.logtext() if text is None else text).splitlines():
            kv = parse_logfmt(line)
            if "level" in kv and (msg is None or kv.get("msg") == msg):
                out.append(kv)
        return out

    def access_log(self):
        """Parsed access-log lines (msg=conn): list of dicts."""
        return self.events("conn")

    def ctl(self, *args, json_out=False, check=True):
        cmd = [FERRYCTL, "-s", self.sock_path] + (["--json"] if json_out else []) + list(args)
        r = subprocess.run(cmd, capture_output=True, timeout=30)
        if check and r.returncode != 0:
            raise AssertionError(f"ferryctl {args} exited {r.returncode}: {r.stdout!r} {r.stderr!r}")
        out = r.stdout.decode()
        return json.loads(out) if json_out else out

    def command(self, line, timeout=10):
        """Raw control-socket exchange: send line, read until EOF."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(self.sock_path)
        s.sendall(line)
        data = recv_all(s)
        s.close()
        return data.decode(errors="replace")

    def stats(self):
        return json.loads(self.command(b"show stats json\n"))

    def listener(self, name):
        for l in self.stats()["listeners"]:
            if l["name"] == name:
                return l
        raise AssertionError(f"no listener {name}")

    def server(self, backend, name):
        for b in self.stats()["backends"]:
            if b["name"] == backend:
                for s in b["servers"]:
                    if s["name"] == name:
                        return s
        raise AssertionError(f"no server {backend}/{name}")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def sha256(b):
    return hashlib.sha256(b).hexdigest()


class Runner:
    """Minimal test runner: functions named test_*, prints a closing line."""

    def __init__(self):
        self.cleanups = []

    def run(self, module_globals):
        tests = [(n, f) for n, f in sorted(module_globals.items())
                 if n.startswith("test_") and callable(f)]
        only = sys.argv[1:]
        passed = failed = 0
        for name, fn in tests:
            if only and name not in only:
                continue
            t0 = time.monotonic()
            ok = True
            try:
                fn()
            except Exception:
                ok = False
                traceback.print_exc()
            for c in reversed(self.cleanups):
                try:
                    c()
                except Exception:
                    ok = False
                    traceback.print_exc()
            self.cleanups.clear()
            if ok:
                passed += 1
                print(f"ok   {name} ({time.monotonic() - t0:.1f}s)", flush=True)
            else:
                failed += 1
                print(f"FAIL {name}", flush=True)
        print(f"{passed} passed, {failed} failed")
        sys.exit(1 if failed else 0)


runner = Runner()


def cleanup(fn):
    runner.cleanups.append(fn)
    return fn


def web_config(port, backend, global_lines="", listener_lines=""):
    """The shape most tests use: [global] with the test's control socket, a
    listener `web` on 127.0.0.1:port forwarding to backend `app`, whose body
    (servers and keys) is `backend`."""
    return f"""
[global]
control_socket = @SOCK@
{global_lines}
[listener web]
bind = 127.0.0.1:{port}
backend = app
{listener_lines}
[backend app]
{backend}
"""


def processes_naming(d):
    """{pid: argv} of the live processes (other than this one) with an argument
    naming directory d or a file under it, read from /proc. Zombies have no
    argv and do not count."""
    found = {}
    d = d.rstrip("/")
    for ent in os.listdir("/proc"):
        if not ent.isdigit() or int(ent) == os.getpid():
            continue
        try:
            with open(f"/proc/{ent}/cmdline", "rb") as fh:
                argv = fh.read().decode(errors="replace").split("\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if any(a == d or a.startswith(d + "/") for a in argv):
            found[int(ent)] = " ".join(argv).strip()
    return found


def check_none_left(d, grace=10.0):
    """Fails when a process naming d (a test's ferryd, or one it started by an
    upgrade) outlives the test's cleanup: it would run on forever, reparented
    to init. Such processes are killed, then reported."""
    deadline = time.monotonic() + grace
    left = processes_naming(d)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = processes_naming(d)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if left:
        raise AssertionError("processes left running after the test (killed now):\n" +
                             "\n".join(f"  {p}: {a}" for p, a in sorted(left.items())))


def start_ferry(config, **kw):
    f = Ferry(config, **kw)

    def stop():
        rc = f.stop()
        check_none_left(f.dir)
        text = f.logtext()
        # The sanitizers report on stderr: any report fails the test.
        if "ERROR: AddressSanitizer" in text or "runtime error:" in text or "LeakSanitizer" in text:
            raise AssertionError("sanitizer report in ferryd output:\n" + text[-4000:])
        if rc not in (0, None):
            raise AssertionError(f"ferryd exited {rc}:\n" + text[-3000:])
    cleanup(stop)
    return f


def start_backend(*a, **kw):
    b = Backend(*a, **kw)
    cleanup(b.close)
    return b


def start_stuck_listener(host="127.0.0.1"):
    """A port whose connects hang: a listener with a backlog of 0 that never
    accepts, its accept queue filled by one connection of ours, so the kernel
    drops further SYNs (the client retransmits until it gives up). Returns
    the port."""
    ls = socket.socket()
    ls.bind((host, 0))
    ls.listen(0)
    filler = socket.create_connection((host, ls.getsockname()[1]), timeout=10)
    cleanup(filler.close)
    cleanup(ls.close)
    return ls.getsockname()[1]


def mute(c, _b):
    """A Backend handler that reads whatever comes and never answers."""
    while c.recv(4096):
        pass
