#!/usr/bin/env python3
"""System calls per proxied request: ferryd vs HAProxy (splice and not) vs
nginx stream, one worker each, counted with `strace -f -c` over every thread
of the proxy and divided by the requests served. Noise-free: the counts do
not depend on the machine's load.

  short:     wrk, 20 connections, `Connection: close` (a new proxied TCP
             connection per request)
  keepalive: wrk, 20 kept-alive connections

Usage: python3 tests/bench/syscall_bench.py [--ferryd PATH] [--short S] [--keepalive S]
Prints one table and per-contender top calls; exits non-zero if a proxy
could not be measured.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_bench as pb  # noqa: E402

REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
REQ_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def read_response(s):
    """Reads one `return 200 "ok\\n"` response (headers + 3-byte body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(4096)
        if not b:
            raise RuntimeError("connection closed mid-response")
        buf += b
    head, body = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"Content-Length: (\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(body) < n:
        body += s.recv(4096)
    return head


def drive_short(port, n):
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(REQ_CLOSE)
        read_response(s)
        while s.recv(4096):
            pass
        s.close()
    return n


def drive_keepalive(port, m):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    for _ in range(m):
        s.sendall(REQ)
        read_response(s)
    s.close()
    return m


def wrk_requests(port, seconds, conns, close):
    """Runs wrk; returns the number of requests it completed."""
    cmd = ["wrk", "-t", "1", "-c", str(conns), "-d", f"{seconds}s"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise RuntimeError("wrk printed no request count:\n" + out)
    return int(m.group(1))


def strace_counts(pid, fn):
    """Runs fn() while strace -f -c is attached to pid; returns {call: count}."""
    out = f"/tmp/strace-{pid}-{time.monotonic_ns()}.txt"
    st = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(pid)],
                          stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached to every thread
    served = fn()
    time.sleep(0.5)  # the last closes are counted
    st.send_signal(signal.SIGINT)
    st.wait(20)
    counts = {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[-1] != "total" and parts[0][0].isdigit():
                try:
                    calls = int(parts[3])
                except ValueError:
                    continue
                counts[parts[-1]] = calls
    os.unlink(out)
    return served, counts


def per_request(counts, served, ignore=("epoll_wait", "epoll_pwait")):
    """Calls per request. epoll_wait is counted too (it is a system call the
    proxy makes per wake-up); `ignore` is only for the breakdown."""
    return sum(counts.values()) / served


def measure(c, short_n, ka_m):
    pid = c.pids()[-1] if c.name == "nginx-stream" else c.pids()[0]
    # warm-up (first connections allocate)
    drive_short(c.port, 20)
    drive_keepalive(c.port, 20)
    s_served, s_counts = strace_counts(pid, lambda: wrk_requests(c.port, short_n, 20, True))
    k_served, k_counts = strace_counts(pid, lambda: wrk_requests(c.port, ka_m, 20, False))
    return (per_request(s_counts, s_served), s_counts, s_served,
            per_request(k_counts, k_served), k_counts, k_served)


def top(counts, served, k=8):
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:k]
    return ", ".join(f"{n} {v / served:.1f}" for n, v in items)


def start_haproxy_splice(tmp, port, backend):
    conf = os.path.join(tmp, "haproxy-splice.cfg")
    with open(conf, "w") as f:
        f.write(f"""
global
  nbthread 1
  maxconn 7000
defaults
  mode tcp
  option splice-auto
  timeout connect 5s
  timeout client 5m
  timeout server 5m
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  server s1 127.0.0.1:{backend}
""")
    p = subprocess.Popen(["haproxy", "-f", conf], stderr=subprocess.DEVNULL)
    pb.wait_port(port)
    return pb.Contender("haproxy-splice", port, p, lambda: [p.pid])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferryd", default=os.path.join(pb.ROOT, "build-bench", "daemon", "ferryd"))
    ap.add_argument("--short", type=int, default=3, help="seconds of short connections")
    ap.add_argument("--keepalive", type=int, default=3, help="seconds of kept-alive requests")
    args = ap.parse_args()
    if not shutil.which("strace"):
        print("strace is missing", file=sys.stderr)
        return 77
    tmp, backend_port, backend = pb.bench_setup("ferry-sys-")
    contenders = []
    try:
        contenders.append(pb.start_ferryd(tmp, pb.free_port(), backend_port, args.ferryd))
        if shutil.which("haproxy"):
            contenders.append(pb.start_haproxy(tmp, pb.free_port(), backend_port))
            contenders.append(start_haproxy_splice(tmp, pb.free_port(), backend_port))
        if os.path.exists("/usr/lib/nginx/modules/ngx_stream_module.so"):
            contenders.append(pb.start_nginx_stream(tmp, pb.free_port(), backend_port))
        rows = {}
        for c in contenders:
            rows[c.name] = measure(c, args.short, args.keepalive)
        print(f"\n{'per request':18} {'short conn':>11} {'kept-alive':>11}")
        for name, (s, sc, sn, k, kc, kn) in rows.items():
            print(f"{name:18} {s:11.1f} {k:11.2f}")
        if "haproxy" in rows:
            f, h = rows["ferryd"], rows["haproxy"]
            print(f"\nferryd/haproxy: short {f[0] / h[0]:.2f}x, kept-alive {f[3] / h[3]:.2f}x")
        print()
        for name, (s, sc, sn, k, kc, kn) in rows.items():
            print(f"{name} short: {top(sc, sn)}")
            print(f"{name} kept-alive: {top(kc, kn)}")
    finally:
        for c in contenders:
            c.stop()
        backend.terminate()
        backend.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
