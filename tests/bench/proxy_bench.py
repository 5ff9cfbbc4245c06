#!/usr/bin/env python3
"""Side-by-side proxy benchmark: ferryd vs HAProxy vs nginx stream vs direct.

Run from the repo root (after ./run.sh or ./test.sh installed the basics):
    tests/bench/run.sh              # installs peers, builds release, runs this

Three measures, each taken for every contender in the same run, rounds
interleaved so drift on a shared machine hits all alike; reported as ratios:
  1. connection rate: wrk with `Connection: close` through each proxy to an
     nginx HTTP backend (a new proxied TCP connection per request);
  2. request rate over kept-alive connections (wrk, 100 connections);
  3. memory per idle connection: RSS growth of the proxy's processes over N
     idle proxied connections, divided by N.
All traffic is on 127.0.0.1. Every run is bounded in time.
"""
import argparse
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class Contender:
    def __init__(self, name, port, proc=None, pids_fn=None):
        self.name, self.port, self.proc, self.pids_fn = name, port, proc, pids_fn

    def pids(self):
        return self.pids_fn() if self.pids_fn else []

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_backend_nginx(tmp, port):
    conf = os.path.join(tmp, "backend-nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
daemon off; worker_processes 1; pid {tmp}/backend-nginx.pid; error_log stderr error;
events {{ worker_connections 20000; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_requests 1000000;
    location / {{ return 200 "ok\\n"; }} }} }}
""")
    p = subprocess.Popen(["nginx", "-e", "stderr", "-c", conf, "-p", tmp], stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def start_ferryd(tmp, port, backend, ferryd, listener_extra=""):
    conf = os.path.join(tmp, "ferry.ini")
    with open(conf, "w") as f:
        f.write(f"""
[global]
workers = 1
control_socket =
access_log = off
log_level = warn
max_connections = 19000
[listener bench]
bind = 127.0.0.1:{port}
backend = b
{listener_extra}
[backend b]
server s1 127.0.0.1:{backend}
""")
    p = subprocess.Popen([ferryd, "-c", conf], stderr=subprocess.DEVNULL)
    wait_port(port)
    return Contender("ferryd", port, p, lambda: [p.pid])


def start_haproxy(tmp, port, backend, bind_extra=""):
    conf = os.path.join(tmp, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"""
global
  nbthread 1
  maxconn 9500
defaults
  mode tcp
  timeout connect 5s
  timeout client 5m
  timeout server 5m
frontend fe
  bind 127.0.0.1:{port} {bind_extra}
  default_backend be
backend be
  server s1 127.0.0.1:{backend}
""")
    p = subprocess.Popen(["haproxy", "-f", conf], stderr=subprocess.DEVNULL)
    wait_port(port)
    return Contender("haproxy", port, p, lambda: [p.pid])


def start_nginx_stream(tmp, port, backend):
    conf = os.path.join(tmp, "stream-nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off; worker_processes 1; pid {tmp}/stream-nginx.pid; error_log stderr error;
worker_rlimit_nofile 20000;
events {{ worker_connections 19000; }}
stream {{ server {{ listen 127.0.0.1:{port} backlog=4096; proxy_pass 127.0.0.1:{backend}; }} }}
""")
    p = subprocess.Popen(["nginx", "-e", "stderr", "-c", conf, "-p", tmp], stderr=subprocess.DEVNULL)
    wait_port(port)
    return Contender("nginx-stream", port, p, lambda: [p.pid] + children(p.pid))


def bench_setup(prefix):
    """What every benchmark needs first: descriptors for thousands of idle
    connections, a temp dir, and the nginx HTTP backend. Returns
    (tmp, backend_port, backend_process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix=prefix)
    backend_port = free_port()
    return tmp, backend_port, start_backend_nginx(tmp, backend_port)


def wrk(port, seconds, conns, close):
    cmd = ["wrk", "-t", "1", "-c", str(conns), "-d", f"{seconds}s"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0


def idle_memory(c, n):
    """RSS growth per idle proxied connection, in bytes."""
    time.sleep(0.5)
    before = rss_kib(c.pids())
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
        socks.append(s)
    # Each must be proxied for real: one request through each.
    for s in socks:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    for s in socks:
        s.recv(4096)
    time.sleep(1.0)
    after = rss_kib(c.pids())
    for s in socks:
        s.close()
    return (after - before) * 1024 / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferryd", default=os.path.join(ROOT, "build-bench", "daemon", "ferryd"))
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--idle", type=int, default=5000)
    args = ap.parse_args()
    tmp, backend_port, backend = bench_setup("ferry-bench-")
    contenders = []
    try:
        contenders.append(Contender("direct", backend_port))
        contenders.append(start_ferryd(tmp, free_port(), backend_port, args.ferryd))
        if shutil.which("haproxy"):
            contenders.append(start_haproxy(tmp, free_port(), backend_port))
        if os.path.exists("/usr/lib/nginx/modules/ngx_stream_module.so"):
            contenders.append(start_nginx_stream(tmp, free_port(), backend_port))

        results = {c.name: {"conn_rate": [], "req_rate": []} for c in contenders}
        for r in range(args.rounds):
            for c in contenders:
                results[c.name]["conn_rate"].append(wrk(c.port, args.seconds, 50, True))
                results[c.name]["req_rate"].append(wrk(c.port, args.seconds, 100, False))
        mem = {}
        for c in contenders:
            if c.name != "direct":
                mem[c.name] = idle_memory(c, args.idle)

        def best(v):
            return max(v) if v else 0.0
        ref = results["ferryd"]
        print(f"\n{'contender':14} {'conn/s':>10} {'ferryd/x':>9} {'req/s':>10} {'ferryd/x':>9} {'idle B/conn':>12}")
        for c in contenders:
            r = results[c.name]
            cr, rr = best(r["conn_rate"]), best(r["req_rate"])
            print(f"{c.name:14} {cr:10.0f} {best(ref['conn_rate']) / cr if cr else 0:9.2f} "
                  f"{rr:10.0f} {best(ref['req_rate']) / rr if rr else 0:9.2f} "
                  f"{mem.get(c.name, float('nan')):12.0f}")
        print(f"\n(best of {args.rounds} interleaved rounds of {args.seconds}s; "
              f"idle memory over {args.idle} proxied connections)")
    finally:
        for c in contenders:
            c.stop()
        backend.terminate()
        backend.wait(10)


if __name__ == "__main__":
    main()
