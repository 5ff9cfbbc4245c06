#!/usr/bin/env python3
"""Upgrading in place (ferryd(8), UPGRADE): `ferryctl upgrade` and SIGUSR2.

Two real executables built with different version strings (FERRYD and
FERRYD_NEXT) take turns at one path, replaced by rename as a package upgrade
does, while two clients load the listener (short connections one after
another, and long streams, some started before the first upgrade, some
after the tenth): 20 upgrades in a row refuse and cut nothing, long streams
arrive byte for byte (SHA-256), the old processes holding streams drain them
while the others are gone, every old process exits 0 once its connections
ended; session tickets made before an upgrade
resume after it; runtime changes survive it. Failed upgrades (a bad
configuration, an executable that exits at once, one that never gets ready)
leave the old process serving and `ferryctl upgrade` exits 1 with the
reason. Under systemd (NOTIFY_SOCKET played by the test) the new process
sends MAINPID= and READY=1 in one datagram and the old one no STOPPING=1.

The test makes itself a child subreaper, so each old ferryd, once its own
parent is gone, is reaped here and its exit status checked.
"""
import atexit
import ctypes
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import ferrytest
from ferrytest import (FERRYCTL, cleanup, free_port, recv_exact, runner, start_backend,
                       start_ferry, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
FERRYD_NEXT = os.environ.get("FERRYD_NEXT", "build/tests/integration/ferryd-next")
EXES = (ferrytest.FERRYD, FERRYD_NEXT)

PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

CERTS = tempfile.mkdtemp(prefix="ferry-upgrade-certs-")
atexit.register(shutil.rmtree, CERTS, True)
subprocess.run(["sh", os.path.join(HERE, "..", "fixtures", "gen-certs.sh"), CERTS], check=True,
               timeout=120, stdout=subprocess.DEVNULL)


def version_of(exe):
    out = subprocess.run([exe, "-V"], capture_output=True, check=True, timeout=10).stdout
    return out.decode().split()[1]


VERSIONS = tuple(version_of(e) for e in EXES)
assert VERSIONS[0] != VERSIONS[1], f"the two builds share a version: {VERSIONS}"

# ---- processes -------------------------------------------------------------

EXITS = {}  # pid -> exit status of the ferryd processes reaped here


def reap():
    """Reaps the ferryd processes that became our children (subreaper)."""
    for pid in list(PIDS):
        if pid in EXITS:
            continue
        try:
            r, st = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if r == pid:
            EXITS[pid] = os.waitstatus_to_exitcode(st)


PIDS = set()


def gone(pid):
    reap()
    if pid in EXITS:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class Site:
    """ferryd started from a path of its own (the one an upgrade re-runs),
    with an echo backend."""

    def __init__(self, config_extra="", listener_extra="", env=None, tls=False):
        self.dir = tempfile.mkdtemp(prefix="ferry-upgrade-")
        self.exe = os.path.join(self.dir, "sbin", "ferryd")
        os.mkdir(os.path.dirname(self.exe))
        self.install(0)
        self.backend = start_backend("echo")
        self.port = free_port()
        tls_lines = f"tls = on\ntls_cert = {CERTS}/a-ec.pem\n" if tls else ""
        self.config = f"""
[global]
control_socket = @SOCK@
drain_timeout = 60s
{config_extra}
[listener web]
bind = 127.0.0.1:{self.port}
backend = app
{tls_lines}{listener_extra}
[backend app]
server a1 127.0.0.1:{self.backend.port}
"""
        saved = ferrytest.FERRYD
        ferrytest.FERRYD = self.exe
        try:
            self.f = start_ferry(self.config, env=env)
        finally:
            ferrytest.FERRYD = saved
        self.pid = self.f.proc.pid
        PIDS.add(self.pid)
        runner.cleanups.append(self.stop_all)  # runs before start_ferry's stop (reversed)

    def install(self, which):
        """Puts executable `which` at the path, replacing it by rename."""
        tmp = self.exe + ".new"
        shutil.copy2(EXES[which], tmp)
        os.replace(tmp, self.exe)

    def install_script(self, text):
        tmp = self.exe + ".new"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, self.exe)

    def ctl(self, *args, timeout=60):
        r = subprocess.run([FERRYCTL, "-s", self.f.sock_path] + list(args), capture_output=True,
                           timeout=timeout)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def info(self):
        rc, out, _ = self.ctl("info")
        assert rc == 0, out
        return dict(l.split(": ", 1) for l in out.splitlines() if ": " in l)

    def upgrade(self):
        """`ferryctl upgrade`: returns (new pid, its version)."""
        rc, out, err = self.ctl("upgrade")
        assert rc == 0, f"upgrade failed ({rc}): {out}{err}\n{self.f.logtext()[-3000:]}"
        m = re.fullmatch(r"ok\npid: (\d+) version: (\S+)\n", out)
        assert m, repr(out)
        pid = int(m.group(1))
        PIDS.add(pid)
        self.pid = pid
        return pid, m.group(2)

    def stop_all(self):
        """Stops the newest process; every one must be gone, exit status 0."""
        if not gone(self.pid):
            os.kill(self.pid, signal.SIGTERM)
        wait_for(lambda: all(gone(p) for p in PIDS), timeout=90, what="every ferryd gone")
        reap()
        bad = {p: s for p, s in EXITS.items() if s != 0 and p != self.f.proc.pid}
        assert not bad, f"ferryd exit statuses: {bad}"
        PIDS.clear()


# ---- load ------------------------------------------------------------------

class Load:
    """Two clients: short connections one after another (each echoes 4 KiB
    and checks it), and long streams that run across upgrades, each checked
    by SHA-256 of what went and what came back."""

    def __init__(self, port, streams=3):
        self.port = port
        self.stop = threading.Event()
        self.refused = self.cut = self.short_ok = 0
        self.errors = []
        self.stream_results = []
        self.streaming = 0  # streams past their first echo
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._shorts, daemon=True)]
        self.threads += [threading.Thread(target=self._stream, args=(i,), daemon=True)
                         for i in range(streams)]
        for t in self.threads:
            t.start()

    def _note(self, what, e):
        with self.lock:
            if what == "refused":
                self.refused += 1
            else:
                self.cut += 1
            self.errors.append(f"{what}: {e!r}")

    def _shorts(self):
        payload = os.urandom(4096)
        while not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except ConnectionRefusedError as e:
                self._note("refused", e)
                continue
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                got = recv_exact(s, len(payload))
                if got != payload or s.recv(1) != b"":
                    raise AssertionError("echo differs")
                with self.lock:
                    self.short_ok += 1
            except (OSError, AssertionError) as e:
                self._note("cut", e)
            finally:
                s.close()

    def _stream(self, i):
        """One long connection: 16 KiB chunks, each echoed, until stopped."""
        sent, got = hashlib.sha256(), hashlib.sha256()
        n = 0
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        except OSError as e:
            self._note("refused", e)
            return
        try:
            while not self.stop.is_set():
                chunk = os.urandom(16384)
                sent.update(chunk)
                s.sendall(chunk)
                got.update(recv_exact(s, len(chunk)))
                if n == 0:
                    with self.lock:
                        self.streaming += 1
                n += len(chunk)
                time.sleep(0.01)
            s.shutdown(socket.SHUT_WR)
            if s.recv(1) != b"":
                raise AssertionError("bytes after the end")
            with self.lock:
                self.stream_results.append((n, sent.hexdigest() == got.hexdigest()))
        except (OSError, AssertionError) as e:
            self._note("cut", e)
        finally:
            s.close()

    def more_streams(self, n):
        """Streams that start now (on the process serving now): returns once
        each has been served its first echo."""
        before = self.streaming
        for i in range(n):
            t = threading.Thread(target=self._stream, args=(100 + i,), daemon=True)
            self.threads.append(t)
            t.start()
        wait_for(lambda: self.streaming >= before + n, timeout=30, what="new streams")

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)


# ---- tests -----------------------------------------------------------------

def test_twenty_upgrades_under_load():
    site = Site()
    f = site.f
    spare = start_backend("echo")
    # Runtime changes, to be found after every upgrade.
    assert site.ctl("add", "app", "extra", f"127.0.0.1:{spare.port}", "weight=3")[0] == 0
    assert site.ctl("set", "app/a1", "weight", "7")[0] == 0
    load = Load(site.port)
    pids = [site.pid]
    try:
        wait_for(lambda: load.short_ok > 20 and load.streaming >= 3, timeout=30,
                 what="load running")
        for k in range(20):
            which = (k + 1) % 2
            site.install(which)
            pid, version = site.upgrade()
            assert version == VERSIONS[which], (version, VERSIONS)
            assert pid not in pids
            pids.append(pid)
            ok = load.short_ok
            wait_for(lambda: load.short_ok > ok + 5, timeout=30, what="clients served after")
            if k == 9:  # these run on the 10th new process across the next 10 upgrades
                load.more_streams(2)
        # The processes holding the streams still drain them, the others are gone.
        assert not gone(pids[0]) and not gone(pids[10]), (pids, EXITS)
        wait_for(lambda: all(gone(p) for i, p in enumerate(pids[:-1]) if i not in (0, 10)),
                 timeout=30, what="old processes without connections gone")
    finally:
        load.finish()
    assert load.refused == 0 and load.cut == 0, load.errors[:10]
    assert len(load.stream_results) == 5, load.stream_results
    for n, same in load.stream_results:
        assert same and n > 0, load.stream_results
    # The old processes end once their connections did (the streams closed).
    wait_for(lambda: all(gone(p) for p in pids[:-1]), timeout=60, what="old processes gone")
    info = site.info()
    assert int(info["pid"]) == pids[-1] and info["state"] == "ready", info
    assert info["version"] == VERSIONS[0]
    stats = f.stats()
    servers = {s["name"]: s for b in stats["backends"] for s in b["servers"]}
    assert servers["extra"]["weight"] == 3 and servers["extra"]["address"] == \
        f"127.0.0.1:{spare.port}", servers
    assert servers["a1"]["weight"] == 7, servers
    # Every old process said it handed over, and exited 0 (checked at stop).
    assert len(f.events("upgraded")) == 20


def test_tickets_resume_after_upgrade():
    site = Site(tls=True)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
        ctx.minimum_version = ctx.maximum_version = version

        def hello(session=None):
            raw = socket.create_connection(("127.0.0.1", site.port), timeout=10)
            with ctx.wrap_socket(raw, server_hostname="a.test", session=session) as s:
                s.sendall(b"ping")
                assert recv_exact(s, 4) == b"ping"
                return s.session_reused, s.session

        reused, sess = hello()
        assert not reused and sess.has_ticket
        site.install(1)
        site.upgrade()
        assert hello(sess)[0], f"{version}: the ticket did not resume after the upgrade"


def test_disabled_listener_and_state_survive():
    site = Site()
    other = start_backend("echo")
    assert site.ctl("disable-listener", "web")[0] == 0
    assert site.ctl("set", "app/a1", "state", "maint")[0] == 0
    assert site.ctl("set", "app/a1", "addr", f"127.0.0.1:{other.port}")[0] == 0
    site.upgrade()
    stats = site.f.stats()
    assert stats["backends"][0]["servers"][0]["address"] == f"127.0.0.1:{other.port}"
    assert stats["listeners"][0]["accepting"] is False, stats["listeners"]
    assert stats["backends"][0]["servers"][0]["state"] == "maint"
    # The kernel queue holds a client meanwhile; enabling serves it.
    assert site.ctl("set", "app/a1", "state", "ready")[0] == 0
    c = socket.create_connection(("127.0.0.1", site.port), timeout=10)
    assert site.ctl("enable-listener", "web")[0] == 0
    c.sendall(b"hi")
    assert recv_exact(c, 2) == b"hi"
    c.close()


def test_metrics_and_unix_listener_are_handed_over():
    """The metrics port and a unix: listener go to the new process too: no
    bind error there, the socket file stays when the old one exits, both
    serve after it."""
    mport = free_port()
    site = Site(config_extra=f"metrics = 127.0.0.1:{mport}",
                listener_extra="bind = unix:@DIR@/web.sock")
    path = os.path.join(site.f.dir, "web.sock")
    old = site.pid
    site.install(1)
    site.upgrade()
    wait_for(lambda: gone(old), timeout=30, what="old process gone")
    assert os.path.exists(path) and os.path.exists(site.f.sock_path)
    u = socket.socket(socket.AF_UNIX)
    u.settimeout(10)
    u.connect(path)
    u.sendall(b"unix")
    assert recv_exact(u, 4) == b"unix"
    u.close()
    with socket.create_connection(("127.0.0.1", mport), timeout=10) as m:
        m.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        body = b""
        while True:
            b = m.recv(65536)
            if not b:
                break
            body += b
    assert body.startswith(b"HTTP/1.1 200") and VERSIONS[1].encode() in body, body[:300]


# Puts the socket on fd 3 with LISTEN_* as systemd does, and becomes ferryd.
SD_WRAPPER = r"""
import os, sys
fd = int(os.environ.pop("T_FD"))
os.dup2(fd, 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web")
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_socket_from_systemd_is_handed_over():
    """A socket systemd gave (FileDescriptorName=web) goes to the new process
    by its name: it binds none of the listener's bind lines and serves it."""
    d = tempfile.mkdtemp(prefix="ferry-upgrade-sd-")
    cleanup(lambda: shutil.rmtree(d, True))
    exe = os.path.join(d, "ferryd")
    shutil.copy2(EXES[0], exe)
    backend = start_backend("echo")
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    port = ls.getsockname()[1]
    sock = os.path.join(d, "ferry.sock")
    with open(os.path.join(d, "ferry.ini"), "w") as fh:
        fh.write(f"[global]\ncontrol_socket = {sock}\n[listener web]\n"
                 f"bind = 127.0.0.1:{free_port()}\nbackend = app\n"
                 f"[backend app]\nserver a 127.0.0.1:{backend.port}\n")
    log = open(os.path.join(d, "log"), "wb")
    env = dict(os.environ, T_FD=str(ls.fileno()))
    proc = subprocess.Popen([sys.executable, "-c", SD_WRAPPER, exe, "-c",
                             os.path.join(d, "ferry.ini")], env=env, pass_fds=(ls.fileno(),),
                            stdout=log, stderr=subprocess.STDOUT)
    ls.close()  # only ferryd holds it now
    PIDS.add(proc.pid)

    def stop():
        for p in list(PIDS):
            if not gone(p):
                os.kill(p, signal.SIGTERM)
        wait_for(lambda: all(gone(p) for p in PIDS), timeout=30, what="ferryd gone")
        PIDS.clear()
        log.close()
        with open(os.path.join(d, "log"), "rb") as fh:
            text = fh.read().decode(errors="replace")
        assert "Sanitizer" not in text and "runtime error:" not in text, text[-3000:]
    cleanup(stop)
    wait_for(lambda: os.path.exists(sock), timeout=15, what="control socket")

    def served():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"sd")
            return recv_exact(c, 2) == b"sd"
    assert served()
    shutil.copy2(EXES[1], exe + ".new")
    os.replace(exe + ".new", exe)
    r = subprocess.run([FERRYCTL, "-s", sock, "upgrade"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    new = int(re.search(rb"pid: (\d+)", r.stdout).group(1))
    PIDS.add(new)
    wait_for(lambda: gone(proc.pid), timeout=30, what="old process gone")
    assert EXITS.get(proc.pid, proc.returncode) == 0, (EXITS, proc.returncode)
    assert served()
    out = subprocess.run([FERRYCTL, "-s", sock, "--json", "stats"], capture_output=True,
                         timeout=30).stdout
    assert f"127.0.0.1:{port}".encode() in out, out


def test_failed_upgrades_leave_the_old_one_serving():
    site = Site()
    pid = site.pid

    def serving():
        c = socket.create_connection(("127.0.0.1", site.port), timeout=10)
        c.sendall(b"x")
        assert recv_exact(c, 1) == b"x"
        c.close()
        assert int(site.info()["pid"]) == pid

    # A configuration error: every error, with its line.
    site.f.write_config(site.config + "\n[listener bad]\nbind = 127.0.0.1:1\nnonsense = 1\n")
    rc, out, _ = site.ctl("upgrade")
    assert rc == 1, out
    assert re.search(r"^error: .*ferry\.ini:\d+: .*nonsense", out, re.M), out
    assert "exited with status 1" in out, out
    serving()
    site.f.write_config(site.config)
    # An executable that exits at once.
    site.install_script("#!/bin/sh\nexit 3\n")
    rc, out, _ = site.ctl("upgrade")
    assert rc == 1 and "exited with status 3" in out, out
    serving()
    # One that never gets ready: stopped after 30 s; meanwhile `show info`
    # says upgrading and another upgrade or a reload is refused.
    site.install_script("#!/bin/sh\nexec sleep 120\n")
    slow = subprocess.Popen([FERRYCTL, "-s", site.f.sock_path, "upgrade"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: site.info()["state"] == "upgrading", timeout=10, what="state upgrading")
    rc, out, _ = site.ctl("upgrade")
    assert rc == 1 and out == "error: upgrade in progress\n", out
    rc, out, _ = site.ctl("reload")
    assert rc == 1 and out == "error: upgrade in progress\n", out
    serving()
    out, err = slow.communicate(timeout=60)
    assert slow.returncode == 1, (out, err)
    assert b"not ready within 30 s" in out, out
    assert site.info()["state"] == "ready"
    serving()
    # The old process is as before: a real upgrade still works.
    site.install(1)
    site.upgrade()
    serving_pid = site.pid
    assert int(site.info()["pid"]) == serving_pid


def test_sigusr2_upgrades():
    site = Site()
    old = site.pid
    site.install(1)
    os.kill(old, signal.SIGUSR2)
    wait_for(lambda: gone(old), timeout=30, what="old process gone after SIGUSR2")
    info = site.info()
    assert int(info["pid"]) != old and info["version"] == VERSIONS[1], info
    site.pid = int(info["pid"])
    PIDS.add(site.pid)
    assert EXITS.get(old, 0) == 0


class Notify:
    """systemd's end of NOTIFY_SOCKET, with the sender's pid of each
    datagram (SO_PASSCRED), as systemd sees it."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.msgs = []  # (pid, {key: value})

    def recv(self):
        data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
        pid = 0
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = int.from_bytes(payload[:4], sys.byteorder)
        msg = dict(l.split("=", 1) for l in data.decode().split("\n") if "=" in l)
        self.msgs.append((pid, msg))
        return pid, msg

    def drain(self, until, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                pid, msg = self.recv()
            except socket.timeout:
                continue
            if until(pid, msg):
                return pid, msg
        raise AssertionError(f"no {what}: {self.msgs}")


def test_systemd_main_pid_moves():
    """The new process sends MAINPID= and READY=1 in one datagram, then
    pings the watchdog; the old one, draining, sends nothing more at all (no
    STOPPING=1, no WATCHDOG=1, no STATUS=)."""
    d = tempfile.mkdtemp(prefix="ferry-upgrade-notify-")
    atexit.register(shutil.rmtree, d, True)
    n = Notify(os.path.join(d, "notify"))
    site = Site(env={"NOTIFY_SOCKET": os.path.join(d, "notify"), "WATCHDOG_USEC": "200000"})
    old = site.pid
    n.drain(lambda p, m: m.get("READY") == "1" and p == old, 15, "READY=1")
    n.drain(lambda p, m: m.get("WATCHDOG") == "1" and p == old, 15, "WATCHDOG=1 from the old")
    site.install(1)
    pid, _ = site.upgrade()
    sender, msg = n.drain(lambda p, m: "MAINPID" in m, 15, "MAINPID=")
    assert sender == pid and msg.get("MAINPID") == str(pid) and msg.get("READY") == "1", msg
    mark = len(n.msgs)
    wait_for(lambda: gone(old), timeout=30, what="old process gone")
    n.drain(lambda p, m: m.get("WATCHDOG") == "1" and p == pid, 15, "WATCHDOG=1 from the new")
    after = n.msgs[mark:]
    assert all(p == pid for p, _ in after), after
    assert not any("STOPPING" in m for _, m in n.msgs), n.msgs


if __name__ == "__main__":
    runner.run(globals())
