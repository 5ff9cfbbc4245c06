"""Shared parts of the proxy benchmarks in tests/bench/: starting the
contenders (ferryd, HAProxy, nginx stream) and the backends (an nginx HTTP
server, an iperf3 server), driving load (wrk, iperf3, plain sockets) and
reading what a proxy costs (CPU time and RSS from /proc, system calls from
`strace -f -c`). Everything listens on 127.0.0.1; every wait is bounded.

Processes started here are registered with a `Procs` (a context manager):
leaving its `with` block, normally, on an error or on Ctrl-C/SIGTERM (see
`unwind_on_signals`), stops every one of them.
"""
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ports import free_port  # noqa: E402,F401  (tests/ports.py: one port picker)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
CLK_TCK = os.sysconf("SC_CLK_TCK")

REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
REQ_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


# ---------------------------------------------------------------- processes

def wait_port(port, timeout=10, proc=None):
    """Waits until something accepts on port (or proc, if given, exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def tree(pid):
    """pid and all its descendants (nginx master + workers, haproxy -W)."""
    out, pending = [], [pid]
    while pending and len(out) < 1000:
        p = pending.pop()
        out.append(p)
        pending.extend(children(p))
    return out


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


def cpu_seconds(pids):
    """utime + stime of the processes, every thread of each included
    (/proc/PID/stat of a thread group leader sums its threads)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat
    return total / CLK_TCK


def stop(proc, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class Procs:
    """Every process a benchmark starts; `with Procs() as procs:` stops them
    all (last started first) however the block is left."""

    def __init__(self):
        self.started = []

    def spawn(self, cmd, cores=None, **kw):
        if cores:
            cmd = ["taskset", "-c", cores] + cmd  # taskset execs: same pid
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen(cmd, **kw)
        self.started.append(p)
        return p

    def stop(self, proc):
        stop(proc)
        if proc in self.started:
            self.started.remove(proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C waits
        try:
            for p in reversed(self.started):
                try:
                    stop(p)
                except Exception:  # keep stopping the others
                    p.kill()
            self.started.clear()
        finally:
            signal.signal(signal.SIGINT, old)
        return False


def unwind_on_signals():
    """SIGINT (even when the shell started us with it ignored, as it does
    for a background job), SIGTERM and SIGHUP raise KeyboardInterrupt, so
    `finally` blocks and `Procs` run."""
    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGINT, raise_interrupt)
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGHUP, raise_interrupt)


def raise_nofile():
    """Thousands of idle connections need descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------- contenders

class Contender:
    """A proxy (or the direct path, proc None) listening on `port` for the
    HTTP backend and, if given, on `bulk_port` for the iperf3 backend."""

    def __init__(self, name, port, proc=None, pids_fn=None, bulk_port=None):
        self.name, self.port, self.proc, self.pids_fn = name, port, proc, pids_fn
        self.bulk_port = bulk_port

    def pids(self):
        if self.pids_fn:
            return self.pids_fn()
        return tree(self.proc.pid) if self.proc else []

    def stop(self):
        stop(self.proc)


def _spawn(procs, cmd, cores=None):
    if procs is not None:
        return procs.spawn(cmd, cores)
    if cores:
        cmd = ["taskset", "-c", cores] + cmd
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ready(c, procs):
    try:
        wait_port(c.port, proc=c.proc)
        if c.bulk_port:
            wait_port(c.bulk_port, proc=c.proc)
    except RuntimeError:
        if procs is not None:
            procs.stop(c.proc)
        else:
            c.stop()
        raise RuntimeError(f"{c.name} did not start")
    return c


def start_backend_nginx(tmp, port, workers=1, procs=None):
    """The HTTP backend: `return 200 "ok\\n"`; with workers > 1 each has its
    own listening socket (reuseport), so a fast proxy is not held back."""
    conf = os.path.join(tmp, f"backend-nginx-{port}.conf")
    reuse = " reuseport" if workers > 1 else ""
    with open(conf, "w") as f:
        f.write(f"""
daemon off; worker_processes {workers}; pid {tmp}/backend-nginx-{port}.pid;
error_log stderr error; worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{port} backlog=4096{reuse}; keepalive_requests 1000000;
    location / {{ return 200 "ok\\n"; }} }} }}
""")
    p = _spawn(procs, ["nginx", "-e", "stderr", "-c", conf, "-p", tmp])
    wait_port(port)
    return p


def start_iperf_server(port, procs=None):
    p = _spawn(procs, ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)])
    wait_port(port)
    return p


def ferryd_conf(tmp, port, backend, listener_extra="", workers="1", bulk=None):
    """Writes a ferry.ini: a listener on port to backend and, with bulk =
    (listen port, iperf3 port), a second one. Returns its path."""
    conf = os.path.join(tmp, f"ferry-{port}.ini")
    bulk_sections = ""
    if bulk:
        bulk_sections = f"""
[listener bulk]
bind = 127.0.0.1:{bulk[0]}
backend = bulk
[backend bulk]
server s1 127.0.0.1:{bulk[1]}
"""
    with open(conf, "w") as f:
        f.write(f"""
[global]
workers = {workers}
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
{bulk_sections}""")
    return conf


def start_ferryd(tmp, port, backend, ferryd, listener_extra="", name="ferryd",
                 workers="1", bulk=None, cores=None, procs=None, io_backend=None):
    """io_backend: asynccore's backend (AC_BACKEND in ferryd's environment,
    which `io_backend = auto` follows); None: the default."""
    conf = ferryd_conf(tmp, port, backend, listener_extra, workers, bulk)
    cmd = [ferryd, "-c", conf]
    if io_backend:
        cmd = ["env", f"AC_BACKEND={io_backend}"] + cmd  # env execs: the pid is ferryd's
    p = _spawn(procs, cmd, cores)
    return _ready(Contender(name, port, p, bulk_port=bulk[0] if bulk else None), procs)


def haproxy_conf(tmp, port, backend, bind_extra="", nbthread=1, splice=False, bulk=None):
    """Writes a haproxy.cfg (TCP mode, like ferryd's listener; bulk as in
    ferryd_conf). splice: `option splice-request` and `option
    splice-response` (forced; HAProxy 2.6's `splice-auto` never spliced an
    iperf3 stream in TCP mode here: recvfrom/sendto only). Its pipes need
    descriptors: maxconn is lower with splice so HAProxy's descriptor need
    fits a 20000 limit. Returns its path."""
    conf = os.path.join(tmp, f"haproxy-{port}.cfg")
    splice_opts = "option splice-request\n  option splice-response" if splice else ""
    bulk_sections = ""
    if bulk:
        bulk_sections = f"""
frontend fe_bulk
  bind 127.0.0.1:{bulk[0]}
  default_backend be_bulk
backend be_bulk
  server s1 127.0.0.1:{bulk[1]}
"""
    with open(conf, "w") as f:
        f.write(f"""
global
  nbthread {nbthread}
  maxconn {7000 if splice else 9500}
defaults
  mode tcp
  {splice_opts}
  timeout connect 5s
  timeout client 5m
  timeout server 5m
frontend fe
  bind 127.0.0.1:{port} {bind_extra}
  default_backend be
backend be
  server s1 127.0.0.1:{backend}
{bulk_sections}""")
    return conf


def start_haproxy(tmp, port, backend, bind_extra="", name="haproxy", nbthread=1,
                  splice=False, bulk=None, cores=None, procs=None):
    conf = haproxy_conf(tmp, port, backend, bind_extra, nbthread, splice, bulk)
    p = _spawn(procs, ["haproxy", "-f", conf], cores)
    return _ready(Contender(name, port, p, bulk_port=bulk[0] if bulk else None), procs)


def start_nginx_stream(tmp, port, backend, name="nginx-stream", bulk=None, procs=None):
    conf = os.path.join(tmp, f"stream-nginx-{port}.conf")
    bulk_server = ""
    if bulk:
        bulk_server = f"server {{ listen 127.0.0.1:{bulk[0]}; proxy_pass 127.0.0.1:{bulk[1]}; }}"
    with open(conf, "w") as f:
        f.write(f"""
load_module {STREAM_MODULE};
daemon off; worker_processes 1; pid {tmp}/stream-nginx-{port}.pid; error_log stderr error;
worker_rlimit_nofile 20000;
events {{ worker_connections 19000; }}
stream {{ server {{ listen 127.0.0.1:{port} backlog=4096; proxy_pass 127.0.0.1:{backend}; }}
  {bulk_server} }}
""")
    p = _spawn(procs, ["nginx", "-e", "stderr", "-c", conf, "-p", tmp])
    return _ready(Contender(name, port, p, bulk_port=bulk[0] if bulk else None), procs)


def bench_setup(prefix):
    """What the older benchmarks need first: descriptors, a temp dir and the
    nginx HTTP backend. Returns (tmp, backend_port, backend_process)."""
    raise_nofile()
    tmp = tempfile.mkdtemp(prefix=prefix)
    backend_port = free_port()
    return tmp, backend_port, start_backend_nginx(tmp, backend_port)


# ---------------------------------------------------------------- load

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * _UNIT[m.group(2)] if m else float("nan")


def wrk(port, seconds, conns, close, threads=1):
    """Runs wrk with --latency; returns {requests, rate, p99_ms, errors}."""
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s", "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    n = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if not n:
        raise RuntimeError("wrk printed no request count:\n" + out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = (sum(int(x) for x in errs.groups()) if errs else 0) + (int(bad.group(1)) if bad else 0)
    return {"requests": int(n.group(1)), "rate": float(rate.group(1)) if rate else 0.0,
            "p99_ms": _ms(p99.group(1)) if p99 else float("nan"), "errors": errors}


def wrk_cpu(c, seconds, conns, close, threads=1):
    """wrk through contender c, with the CPU time c's processes spent
    meanwhile (None for the direct path)."""
    pids = c.pids()
    before = cpu_seconds(pids)
    r = wrk(c.port, seconds, conns, close, threads)
    r["cpu_s"] = cpu_seconds(pids) - before if pids else None
    return r


def iperf(port, seconds=None, streams=1, extra=()):
    """iperf3 client to port; returns Gbit/s received (all streams)."""
    cmd = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-J", "-P", str(streams)]
    cmd += ["-t", str(seconds)] if seconds else []
    cmd += list(extra)
    out = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=(seconds or 0) + 120)
    try:
        r = json.loads(out.stdout)
    except json.JSONDecodeError:
        raise RuntimeError("iperf3 printed no JSON: " + out.stdout[-300:] + out.stderr[-300:])
    if "error" in r:
        raise RuntimeError("iperf3: " + r["error"])
    return r["end"]["sum_received"]["bits_per_second"] / 1e9


def read_response(s):
    """Reads one `return 200 "ok\\n"` response (headers + body)."""
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
        b = s.recv(4096)
        if not b:
            raise RuntimeError("connection closed mid-body")
        body += b
    return head


def drive_short(port, n):
    """n requests, each on a new connection (Connection: close)."""
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(REQ_CLOSE)
            read_response(s)
            while s.recv(4096):
                pass
    return n


def drive_keepalive(port, m):
    """m requests on one kept-alive connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for _ in range(m):
            s.sendall(REQ)
            read_response(s)
    return m


def idle_memory(c, n, settle=1.0):
    """RSS growth of c's processes per idle proxied connection, in bytes:
    n connections, each carrying one request and response (so each is
    proxied for real and the upstream side is open), then held idle."""
    drive_short(c.port, 20)  # warm-up: first connections allocate pools
    time.sleep(settle / 2)
    pids = c.pids()
    before = rss_kib(pids)
    socks = []
    deadline = time.monotonic() + 60 + n / 100

    def in_time():
        if time.monotonic() > deadline:
            raise RuntimeError(f"idle connections: out of time ({len(socks)} of {n} open)")
    try:
        for _ in range(n):
            in_time()
            socks.append(socket.create_connection(("127.0.0.1", c.port), timeout=5))
        for s in socks:
            s.sendall(REQ)
        for s in socks:
            in_time()
            read_response(s)
        time.sleep(settle)
        after = rss_kib(pids)
    finally:
        for s in socks:
            s.close()
    return (after - before) * 1024 / n


# ---------------------------------------------------------------- system calls

def strace_counts(pids, fn, timeout=60):
    """Runs fn() while `strace -f -c` is attached to every thread of the
    processes; returns (fn's result, {call: count})."""
    fd, out = tempfile.mkstemp(prefix="strace-", suffix=".txt")
    os.close(fd)
    cmd = ["strace", "-f", "-c", "-o", out]
    for pid in pids:
        cmd += ["-p", str(pid)]
    st = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # attached to every thread
        served = fn()
        time.sleep(0.5)  # the last closes are counted
        st.send_signal(signal.SIGINT)
        st.wait(timeout)
        counts = {}
        with open(out) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[-1] != "total" and parts[0][0].isdigit():
                    try:
                        counts[parts[-1]] = int(parts[3])
                    except ValueError:
                        continue
        return served, counts
    finally:
        stop(st)
        os.unlink(out)


def top_calls(counts, served, k=8):
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:k]
    return ", ".join(f"{n} {v / served:.2f}" for n, v in items)


def median(values):
    v = [x for x in values if x is not None and x == x]  # drop None and NaN
    return statistics.median(v) if v else float("nan")


def make_cert(tmp):
    """One self-signed ECDSA P-256 certificate for bench.test and 127.0.0.1,
    chain then key in one PEM (what the TLS benchmarks serve)."""
    crt, key, pem = (os.path.join(tmp, n) for n in ("bench.crt", "bench.key", "bench.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "30", "-subj", "/CN=bench.test",
                    "-addext", "subjectAltName=DNS:bench.test,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    with open(pem, "w") as out:
        for part in (crt, key):
            with open(part) as f:
                out.write(f.read())
    return pem
