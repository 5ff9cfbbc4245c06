#!/usr/bin/env python3
"""Side-by-side TLS termination benchmark: ferryd vs HAProxy vs hitch.

Run from the repo root (tests/bench/run.sh builds a release ferryd first):
    python3 tests/bench/tls_bench.py --ferryd build-bench/daemon/ferryd

Every contender runs one worker/thread, terminates TLS 1.3 with the same ECDSA
P-256 certificate and key (default group X25519) and forwards the plain stream
to the same nginx HTTP backend. Measured in one run, rounds interleaved so
drift on a shared machine hits all alike, reported as ratios ferryd/x:
  1. full handshakes/s: `openssl s_time -new -www /` (no resumption; each
     connection completes a handshake and fetches one page through the proxy);
  2. resumed handshakes/s: `openssl s_time -reuse -www /` (TLS 1.3 tickets;
     -www makes the client read, hence receive the tickets);
  3. memory per idle TLS connection: RSS growth of the contender's processes
     over N established connections (handshake done, one request answered),
     divided by N.
s_time is single-threaded and its loop ends on a whole-second clock, so
several run in parallel and each rate is its count over its own measured
wall time. A TLS client costs about as much CPU as the server, so on a small
machine the clients may set the rate; the contender's own CPU time per
connection (from /proc) is printed beside each rate as the per-core cost.
All traffic is on 127.0.0.1. Every step is bounded in time.
"""
import argparse
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, Contender, make_cert, bench_setup, children, free_port, rss_kib,  # noqa: E402
                         start_ferryd, start_haproxy, wait_port)


def start_hitch(tmp, port, backend, pem):
    cmd = ["hitch", f"--frontend=[127.0.0.1]:{port}", f"--backend=[127.0.0.1]:{backend}",
           "--workers=1", "--daemon=off", "--log-level=1", "--backlog=1024",
           f"--ocsp-dir={tmp}", pem]
    if os.geteuid() == 0:
        cmd.insert(1, "--user=nobody")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return Contender("hitch", port, p, lambda: [p.pid] + children(p.pid))


def cpu_seconds(pids):
    """User + system CPU time consumed so far by these processes."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def negotiated(port):
    """'TLSv1.3 X25519' as seen by openssl s_client, to check the setup."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief"],
                       input="", capture_output=True, text=True, timeout=15)
    proto = re.search(r"Protocol version: (\S+)", r.stderr)
    group = re.search(r"(?:Server Temp Key|Negotiated TLS1.3 group): (\w+)", r.stderr)
    return " ".join(m.group(1) for m in (proto, group) if m) or "?"


def s_time_rate(c, seconds, clients, reuse):
    """(connections/s, contender CPU seconds per connection, share resumed) of
    `clients` parallel s_time runs against c: the rate is the sum of each
    one's count over its own wall time (its loop ends on a whole-second
    clock); s_time marks each connection 'r' if it resumed a session, '*' if
    it made a new one."""
    port = c.port
    rates = [0.0] * clients
    conns = [0] * clients
    marks = [""] * clients

    def one(i):
        cmd = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-tls1_3",
               "-reuse" if reuse else "-new", "-www", "/", "-time", str(seconds)]
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
        wall = time.monotonic() - t0
        counts = re.findall(r"(\d+) connections in [\d.]+s", r.stdout)
        if counts:
            conns[i] = int(counts[-1])
            rates[i] = conns[i] / wall
        marks[i] = "".join(re.findall(r"^[r*]+$", r.stdout, re.M))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    cpu0 = cpu_seconds(c.pids())
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 40)
    cpu = cpu_seconds(c.pids()) - cpu0
    seen = "".join(marks)
    return (sum(rates), cpu / sum(conns) if sum(conns) else 0.0,
            seen.count("r") / len(seen) if seen else 0.0)


def idle_memory(c, n):
    """RSS growth per idle established TLS connection, in bytes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    time.sleep(0.5)
    before = rss_kib(c.pids())
    socks = []
    try:
        for _ in range(n):
            raw = socket.create_connection(("127.0.0.1", c.port), timeout=10)
            socks.append(ctx.wrap_socket(raw))
        # Each is proxied for real: one request answered through each.
        for s in socks:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in socks:
            if not s.recv(4096):
                raise RuntimeError(f"{c.name}: connection closed while idle")
        time.sleep(1.0)
        after = rss_kib(c.pids())
    finally:
        for s in socks:
            s.close()
    return (after - before) * 1024 / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferryd", default=os.path.join(ROOT, "build-bench", "daemon", "ferryd"))
    ap.add_argument("--seconds", type=int, default=5, help="per measurement")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", type=int, default=2, help="parallel s_time processes")
    ap.add_argument("--idle", type=int, default=1000)
    args = ap.parse_args()
    tmp, backend_port, backend = bench_setup("ferry-tlsbench-")
    contenders = []
    try:
        pem = make_cert(tmp)
        contenders.append(start_ferryd(tmp, free_port(), backend_port, args.ferryd,
                                          f"tls = on\ntls_cert = {pem}"))
        if shutil.which("haproxy"):
            contenders.append(start_haproxy(tmp, free_port(), backend_port, f"ssl crt {pem}"))
        if shutil.which("hitch"):
            contenders.append(start_hitch(tmp, free_port(), backend_port, pem))
        setup = {c.name: negotiated(c.port) for c in contenders}

        # Rates and CPU per connection, per round; lists of (rate, cpu) pairs.
        results = {c.name: {"full": [], "resumed": []} for c in contenders}
        share = {c.name: [] for c in contenders}  # of -reuse connections resumed
        for _ in range(args.rounds):
            for c in contenders:
                rate, cpu, _ = s_time_rate(c, args.seconds, args.clients, False)
                results[c.name]["full"].append((rate, cpu))
                rate, cpu, resumed = s_time_rate(c, args.seconds, args.clients, True)
                results[c.name]["resumed"].append((rate, cpu))
                share[c.name].append(resumed)
        mem = {c.name: idle_memory(c, args.idle) for c in contenders}

        def best(v):
            """Highest rate, lowest CPU per connection, over the rounds."""
            rated = [r for r in v if r[0] > 0]
            return (max(r[0] for r in rated), min(r[1] for r in rated)) if rated else (0.0, 0.0)
        ref = {k: best(v)[0] for k, v in results["ferryd"].items()}
        print(f"\n{'contender':10} {'full hs/s':>10} {'ferryd/x':>9} {'us CPU':>7} "
              f"{'resumed/s':>10} {'ferryd/x':>9} {'us CPU':>7} {'resumed':>8} "
              f"{'idle B/conn':>12}  negotiated")
        for c in contenders:
            (full, fcpu), (res, rcpu) = (best(results[c.name][k]) for k in ("full", "resumed"))
            print(f"{c.name:10} {full:10.0f} {ref['full'] / full if full else 0:9.2f} "
                  f"{fcpu * 1e6:7.0f} {res:10.0f} {ref['resumed'] / res if res else 0:9.2f} "
                  f"{rcpu * 1e6:7.0f} {100 * min(share[c.name]):7.0f}% "
                  f"{mem[c.name]:12.0f}  {setup[c.name]}")
        print(f"\n(best of {args.rounds} interleaved rounds of {args.seconds}s, "
              f"{args.clients} parallel `openssl s_time -www /` clients; ECDSA P-256 "
              f"certificate, one worker each; 'us CPU': the contender's user+system CPU per "
              f"connection, lowest round (what a core costs when the clients, not the "
              f"contender, set the rate); 'resumed': share of -reuse connections that did "
              f"resume, lowest round; idle memory over {args.idle} TLS connections)")
    finally:
        for c in contenders:
            c.stop()
        backend.terminate()
        backend.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
