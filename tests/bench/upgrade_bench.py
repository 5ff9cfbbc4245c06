#!/usr/bin/env python3
"""Upgrading in place under load (ferryd(8), UPGRADE): how long `ferryctl
upgrade` takes until the new process accepts, the longest a client waits for
its connection to be served while it happens, and the memory of the old and
the new process while both run.

    python3 tests/bench/upgrade_bench.py [--ferryd PATH] [--ferryctl PATH]
        [--next PATH] [--upgrades N] [--clients N] [--held N]

Load: --clients threads, each opening connections one after another to an
echo backend through ferryd (connect, 64 bytes there and back, close), and
--held connections opened before each upgrade and kept open across it (they
stay on the old process, which drains them). For each upgrade: the time the
`upgrade` command takes (spawn, handover, the new process ready, the old one
told to go), the time from sending it to the first connection served by the
new process, the longest time any client waited for one connection (connect
to echo) while the upgrade ran, the same outside upgrades for comparison,
refused and failed connections, and the resident memory (VmRSS) of both
processes once the new one serves and the old one still drains.
Benchmarks measure; nothing here asserts a time.
"""
import argparse
import datetime
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_server():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4096)

    def serve(c):
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                c.sendall(b)
        except OSError:
            pass
        c.close()

    def run():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    threading.Thread(target=run, daemon=True).start()
    return ls


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            m = re.search(r"^VmRSS:\s+(\d+) kB", fh.read(), re.M)
            return int(m.group(1)) if m else 0
    except FileNotFoundError:
        return 0


def started_at(logpath, pid):
    """Wall-clock time of the new process's msg=started line (logged right
    before its event loops run, i.e. when it starts accepting)."""
    with open(logpath, "rb") as fh:
        for line in fh.read().decode(errors="replace").splitlines():
            if "msg=started" in line and f" pid={pid} " in line:
                ts = line.split()[0][len("ts="):]
                return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
    return float("nan")


def ctl(ferryctl, sock, *args):
    r = subprocess.run([ferryctl, "-s", sock] + list(args), capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout


class Clients:
    """Short connections in a loop; every one is (start, end, ok)."""

    def __init__(self, port, n):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.done = []  # (t_start, t_end)
        self.refused = self.failed = 0
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def run(self):
        msg = b"x" * 64
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except ConnectionRefusedError:
                with self.lock:
                    self.refused += 1
                continue
            except OSError:
                with self.lock:
                    self.failed += 1
                continue
            try:
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    b = s.recv(64)
                    if not b:
                        break
                    got += b
                ok = got == msg
            except OSError:
                ok = False
            s.close()
            with self.lock:
                if ok:
                    self.done.append((t0, time.monotonic()))
                else:
                    self.failed += 1

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferryd", default=os.path.join(ROOT, "build-bench/daemon/ferryd"))
    ap.add_argument("--ferryctl", default=os.path.join(ROOT, "build-bench/daemon/ferryctl"))
    ap.add_argument("--next", default=os.path.join(ROOT,
                                                   "build-bench/tests/integration/ferryd-next"))
    ap.add_argument("--upgrades", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--held", type=int, default=200)
    a = ap.parse_args()

    d = tempfile.mkdtemp(prefix="ferry-upgrade-bench-")
    exe = os.path.join(d, "ferryd")
    shutil.copy2(a.ferryd, exe)
    echo = echo_server()
    port = free_port()
    sock = os.path.join(d, "ferry.sock")
    with open(os.path.join(d, "ferry.ini"), "w") as fh:
        fh.write(f"""[global]
control_socket = {sock}
drain_timeout = 60s
access_log = off
[listener web]
bind = 127.0.0.1:{port}
backend = app
[backend app]
server a 127.0.0.1:{echo.getsockname()[1]}
""")
    log = open(os.path.join(d, "ferryd.log"), "wb")
    first = subprocess.Popen([exe, "-c", os.path.join(d, "ferry.ini")], stdout=log,
                             stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    clients = Clients(port, a.clients)
    time.sleep(1.0)
    rows = []
    pids = [first.pid]
    try:
        for k in range(a.upgrades):
            shutil.copy2(a.next if k % 2 == 0 else a.ferryd, exe + ".new")
            os.replace(exe + ".new", exe)
            held = [socket.create_connection(("127.0.0.1", port), timeout=10)
                    for _ in range(a.held)]
            for h in held:
                h.sendall(b"h")
                h.recv(1)
            old = pids[-1]
            w0 = time.time()
            t0 = time.monotonic()
            rc, out = ctl(a.ferryctl, sock, "upgrade")
            t1 = time.monotonic()
            m = re.search(r"pid: (\d+)", out)
            if rc != 0 or not m:
                print(f"upgrade {k + 1} failed: {out}", file=sys.stderr)
                break
            new = int(m.group(1))
            pids.append(new)
            time.sleep(0.5)
            accepting = started_at(os.path.join(d, "ferryd.log"), new) - w0
            mem_old, mem_new = rss_kib(old), rss_kib(new)
            t2 = time.monotonic()
            for h in held:
                h.close()
            with clients.lock:
                done = list(clients.done)
            # First connection served by the new process: the first one that
            # started after the old one was told to go (t1) is the new one's.
            after = [e for s, e in done if s >= t1]
            first_new = min(after) - t0 if after else float("nan")
            during = [e - s for s, e in done if s < t1 + 0.2 and e > t0]
            rows.append((t1 - t0, first_new, max(during) if during else 0.0, mem_old, mem_new,
                         accepting))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t2)))
    finally:
        clients.finish()
        newest = pids[-1]
        try:
            os.kill(newest, 15)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") and
                                                  rss_kib(p) for p in pids):
            time.sleep(0.1)
        first.wait(10)
        echo.close()
    outside = [e - s for s, e in clients.done]
    print(f"{len(rows)} upgrades, {a.clients} clients, {a.held} connections held across each")
    print("upgrade_ms  new_accepting_ms  first_served_by_new_ms  longest_wait_ms  rss_old_kib  "
          "rss_new_kib")
    for r in rows:
        print(f"{r[0] * 1000:10.1f}  {r[5] * 1000:16.1f}  {r[1] * 1000:22.1f}  "
              f"{r[2] * 1000:15.1f}  {r[3]:11d}  {r[4]:11d}")
    if rows:
        print(f"median upgrade {statistics.median(r[0] for r in rows) * 1000:.1f} ms, "
              f"median to the new process accepting "
              f"{statistics.median(r[5] for r in rows) * 1000:.1f} ms, "
              f"longest wait during upgrades {max(r[2] for r in rows) * 1000:.1f} ms; "
              f"all connections: p50 {statistics.median(outside) * 1000:.2f} ms, "
              f"p99 {sorted(outside)[int(len(outside) * 0.99)] * 1000:.2f} ms, "
              f"max {max(outside) * 1000:.1f} ms over {len(outside)}")
    print(f"refused {clients.refused}, failed {clients.failed}")
    shutil.rmtree(d, True)


if __name__ == "__main__":
    main()
