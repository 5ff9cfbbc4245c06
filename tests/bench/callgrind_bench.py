#!/usr/bin/env python3
"""Instructions per proxied request: ferryd vs HAProxy under
`valgrind --tool=callgrind`, one worker each, an nginx `return 200` backend.
Instruction counts do not depend on the machine's load (the shared machine
cannot move them), so this is the figure to decide hot-path changes with.

For each proxy: start it under callgrind, warm up, zero the counters
(callgrind_control -z), drive a fixed amount of traffic with a small client
of our own (C concurrency, exactly N requests), dump (callgrind_control -d)
and divide the instructions (user space of every thread of the proxy; the
kernel's work is not counted) by the requests served.

  keepalive: --conns kept-alive connections, --requests requests in all
  short:     --short new connections (Connection: close), --conns at a time
  tls:       --tls new connections to a TLS 1.3 listener (ECDSA P-256
             certificate, X25519), each a full handshake (no resumption)
             and one request; minus `short` it is what the handshake costs
             the proxy. A TLS handshake's CPU time varies run to run on a
             shared machine by tens of percent; its instruction count does not.

Usage: python3 tests/bench/callgrind_bench.py [--ferryd PATH ...] [--no-haproxy]
       [--tls N] [--keep DIR]   (keep the callgrind.out files for callgrind_annotate)
"""
import argparse
import os
import re
import selectors
import shutil
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as pb  # noqa: E402

REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
REQ_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
END = b"\r\n\r\nok\n"  # the backend's body, after the headers


def drive_keepalive(port, conns, total):
    """`total` requests over `conns` kept-alive connections, one in flight on
    each. Returns the number of responses read."""
    sel = selectors.DefaultSelector()
    left = total
    done = 0
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ, bytearray())
    for s in socks:
        if left > 0:
            s.sendall(REQ)
            left -= 1
    deadline = time.monotonic() + 600
    while done < total and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=5):
            s, buf = key.fileobj, key.data
            data = s.recv(65536)
            if not data:
                raise RuntimeError("proxy closed a kept-alive connection")
            buf += data
            while True:
                i = buf.find(END)
                if i < 0:
                    break
                del buf[:i + len(END)]
                done += 1
                if left > 0:
                    s.setblocking(True)
                    s.sendall(REQ)
                    s.setblocking(False)
                    left -= 1
    for s in socks:
        s.close()
    return done


def drive_short(port, conns, total):
    """`total` connections, `conns` at a time: connect, one request with
    Connection: close, read to EOF, close. Returns the number completed."""
    sel = selectors.DefaultSelector()
    started = done = 0

    def start_one():
        nonlocal started
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(REQ_CLOSE)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
        started += 1

    for _ in range(min(conns, total)):
        start_one()
    deadline = time.monotonic() + 600
    while done < total and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=5):
            s, buf = key.fileobj, key.data
            data = s.recv(65536)
            if data:
                buf += data
                continue
            sel.unregister(s)
            s.close()
            if END in buf:
                done += 1
            if started < total:
                start_one()
    return done


def drive_tls(port, conns, total):
    """`total` TLS 1.3 connections, one at a time, each with a full handshake
    (a fresh context: no session to resume), one request with Connection:
    close, read to EOF. Returns the number completed. (conns is unused: the
    handshakes are what is measured, and the proxy's count does not depend
    on their concurrency.)"""
    done = 0
    for _ in range(total):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
            with ctx.wrap_socket(raw, server_hostname="bench.test") as s:
                s.sendall(REQ_CLOSE)
                buf = b""
                while True:
                    try:
                        data = s.recv(65536)
                    except (ssl.SSLZeroReturnError, ConnectionResetError):
                        break
                    if not data:
                        break
                    buf += data
                if END in buf:
                    done += 1
    return done


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def run_one(name, cmd_fn, tmp, backend_port, args, keep):
    port, tls_port = pb.free_port(), pb.free_port()
    out = os.path.join(keep or tmp, f"callgrind.{name}.out")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd_fn(port, tls_port)
    # ferryd on epoll: valgrind 3.19 hangs at the first io_uring_enter, and
    # io_backend = auto is io_uring (RESULTS.md, "io_uring").
    env = dict(os.environ, AC_BACKEND="epoll")
    p = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
    try:
        pb.wait_port(port, timeout=60)
        drive_keepalive(port, args.conns, 200)  # warm-up
        drive_short(port, args.conns, 50)
        rows = {}
        kinds = [("keepalive", drive_keepalive, args.requests),
                 ("short", drive_short, args.short)]
        if args.tls:
            pb.wait_port(tls_port, timeout=60)
            drive_tls(tls_port, 1, 10)  # warm-up: the TLS listener's first handshakes
            kinds.append(("tls", lambda _p, c, n: drive_tls(tls_port, c, n), args.tls))
        for kind, fn, n in kinds:
            subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True,
                           capture_output=True)
            served = fn(port, args.conns, n)
            before = set(os.listdir(os.path.dirname(out)))
            subprocess.run(["callgrind_control", "-d", kind, str(p.pid)], check=True,
                           capture_output=True)
            new = [f for f in set(os.listdir(os.path.dirname(out))) - before
                   if f.startswith(os.path.basename(out))]
            if not new:
                raise RuntimeError("callgrind wrote no dump")
            path = os.path.join(os.path.dirname(out), sorted(new)[-1])
            rows[kind] = (total_ir(path) / served, served, path)
        return rows
    finally:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def ferryd_cmd(tmp, binary, backend_port, pem=None):
    """Plain on port; with pem, a TLS listener on tls_port as well."""
    def cmd(port, tls_port):
        conf = pb.ferryd_conf(tmp, port, backend_port)
        if pem:
            with open(conf, "a") as f:
                f.write(f"[listener tls]\nbind = 127.0.0.1:{tls_port}\nbackend = b\n"
                        f"tls = on\ntls_cert = {pem}\n")
        return [binary, "-c", conf]
    return cmd


def haproxy_cmd(tmp, backend_port, pem=None):
    def cmd(port, tls_port):
        tls = ""
        if pem:
            tls = f"""frontend fe_tls
  bind 127.0.0.1:{tls_port} ssl crt {pem}
  default_backend be
"""
        conf = os.path.join(tmp, f"haproxy-{port}.cfg")
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
  bind 127.0.0.1:{port}
  default_backend be
{tls}backend be
  server s1 127.0.0.1:{backend_port}
""")
        return ["haproxy", "-db", "-f", conf]
    return cmd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferryd", action="append",
                    help="ferryd binary (repeatable); default build-bench/daemon/ferryd")
    ap.add_argument("--no-haproxy", action="store_true")
    ap.add_argument("--conns", type=int, default=20)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--short", type=int, default=2000)
    ap.add_argument("--tls", type=int, default=0,
                    help="full TLS 1.3 handshakes to measure (0: none)")
    ap.add_argument("--keep", help="directory to keep the callgrind.out files in")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            print(f"{tool} is missing", file=sys.stderr)
            return 77
    binaries = args.ferryd or [os.path.join(pb.ROOT, "build-bench", "daemon", "ferryd")]
    tmp, backend_port, backend = pb.bench_setup("ferry-cg-")
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    results = {}
    pem = pb.make_cert(tmp) if args.tls else None
    try:
        for i, b in enumerate(binaries):
            name = f"ferryd{i}" if len(binaries) > 1 else "ferryd"
            results[f"{name} ({b})"] = run_one(name, ferryd_cmd(tmp, b, backend_port, pem), tmp,
                                               backend_port, args, args.keep)
        if not args.no_haproxy and shutil.which("haproxy"):
            results["haproxy"] = run_one("haproxy", haproxy_cmd(tmp, backend_port, pem), tmp,
                                         backend_port, args, args.keep)
    finally:
        backend.terminate()
        backend.wait(10)
    tls_head = f" {'TLS 1.3 conn':>12} {'handshake':>12}" if args.tls else ""
    print(f"\n{'instructions per request':50} {'kept-alive':>12} {'short conn':>12}{tls_head}")
    for name, rows in results.items():
        tls_cols = ""
        if args.tls:
            tls_cols = f" {rows['tls'][0]:12.0f} {rows['tls'][0] - rows['short'][0]:12.0f}"
        print(f"{name:50} {rows['keepalive'][0]:12.0f} {rows['short'][0]:12.0f}{tls_cols}")
    if args.keep:
        for name, rows in results.items():
            for kind, (_, served, path) in rows.items():
                print(f"{name} {kind}: {served} served, {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
