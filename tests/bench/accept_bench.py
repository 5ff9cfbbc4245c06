#!/usr/bin/env python3
"""Accept distribution: one shared listening socket (EPOLLEXCLUSIVE) against
one SO_REUSEPORT socket per worker ([global] reuseport), with workers = auto.

Run from the repo root with a release build (never the sanitized one):
    meson setup build-bench -Dbuildtype=release && meson compile -C build-bench
    python3 tests/bench/accept_bench.py --ferryd build-bench/daemon/ferryd

For each accept mode (reuseport off / on) and each placement (unpinned; or
pinned: worker thread i bound to CPU i with sched_setaffinity, the rest of
the machine free) one ferryd runs in front of the nginx `return 200` backend
of benchlib.py. Each round runs, for every variant in turn (order rotated
per round, so drift hits all alike):
  1. wrk --latency with `Connection: close` (a new proxied TCP connection per
     request): connection rate and p99 latency;
  2. wrk --latency over kept-alive connections: request rate and p99;
and records the proxy's CPU-seconds (utime + stime of every thread, from
/proc) per connection or request, and how many connections each worker
accepted (ferry_listener_worker_connections_total from the metrics
endpoint). Medians over the rounds; ratios reuseport / shared per round.
All traffic is on 127.0.0.1; every run is bounded in time.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, bench_setup, free_port, wait_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
EPOLL_WAITS = {"232", "281", "441"}  # x86_64 epoll_wait, epoll_pwait, epoll_pwait2


class Ferryd:
    def __init__(self, tmp, ferryd, backend, reuseport, pinned):
        self.name = f"{'reuseport' if reuseport else 'shared'}/{'pinned' if pinned else 'unpinned'}"
        self.reuseport, self.pinned = reuseport, pinned
        self.port, self.metrics_port = free_port(), free_port()
        conf = os.path.join(tmp, f"ferry-{'r' if reuseport else 's'}{'p' if pinned else 'u'}.ini")
        self.conf = conf
        with open(conf, "w") as f:
            f.write(f"""
[global]
workers = auto
reuseport = {'on' if reuseport else 'off'}
control_socket =
access_log = off
log_level = warn
max_connections = 19000
metrics = 127.0.0.1:{self.metrics_port}
[listener bench]
bind = 127.0.0.1:{self.port}
backend = b
[backend b]
server s1 127.0.0.1:{backend}
""")
        self.proc = subprocess.Popen([ferryd, "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port)
            wait_port(self.metrics_port)
            if pinned:
                self.pin()
        except BaseException:
            self.stop()
            raise

    def workers(self):
        """Thread ids of the event loops, worker 0 (the main thread) first:
        the threads that, idle, sit in epoll_wait."""
        tids = []
        for tid in sorted(int(t) for t in os.listdir(f"/proc/{self.proc.pid}/task")):
            with open(f"/proc/{self.proc.pid}/task/{tid}/syscall") as f:
                if f.read().split()[0] in EPOLL_WAITS:
                    tids.append(tid)
        return tids

    def pin(self):
        ncpu = len(os.sched_getaffinity(0))  # workers = auto: one per CPU
        deadline = time.monotonic() + 10
        while len(tids := self.workers()) != ncpu:  # some loop is busy: look again
            assert time.monotonic() < deadline, f"event loops {tids}, {ncpu} CPUs"
            time.sleep(0.05)
        assert tids[0] == self.proc.pid, tids
        for i, tid in enumerate(tids):
            os.sched_setaffinity(tid, {i % ncpu})

    def cpu_s(self):
        """utime + stime of every thread of ferryd, in seconds."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def per_worker(self):
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                      timeout=10).read().decode()
        out = {}
        for m in re.finditer(r'^ferry_listener_worker_connections_total\{listener="bench",'
                             r'worker="(\d+)"\} (\d+)$', body, re.M):
            out[int(m.group(1))] = int(m.group(2))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wrk_latency(port, seconds, conns, threads, close):
    cmd = ["wrk", "--latency", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\b", out, re.M)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return {
        "rate": float(rate.group(1)) if rate else 0.0,
        "n": int(done.group(1)) if done else 0,
        "p99_ms": float(p99.group(1)) * unit[p99.group(2)] if p99 else float("nan"),
        "errors": sum(int(x) for x in errs.groups()) if errs else 0,
        "non2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0,
    }


def measure(fd, args, close):
    before_cpu, before_w = fd.cpu_s(), fd.per_worker()
    r = wrk_latency(fd.port, args.seconds, args.conns if close else args.keep_conns,
                    args.wrk_threads, close)
    cpu = fd.cpu_s() - before_cpu
    after_w = fd.per_worker()
    r["cpu_us_per"] = cpu / r["n"] * 1e6 if r["n"] else float("nan")
    r["accepted"] = [after_w.get(w, 0) - before_w.get(w, 0) for w in sorted(after_w)]
    return r


def strace_counts(fd, args, close):
    """System calls per connection (close) or request (kept-alive), counted by
    strace -f -c attached to every thread of ferryd while wrk runs: a figure
    machine load cannot move (only how events batch)."""
    out = os.path.join(os.path.dirname(fd.conf), f"strace-{fd.port}-{close}.txt")
    st = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(fd.proc.pid)],
                          stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached to every thread
    r = wrk_latency(fd.port, args.seconds, args.conns if close else args.keep_conns,
                    args.wrk_threads, close)
    st.send_signal(2)
    st.wait(30)
    calls = {}
    with open(out) as f:
        for line in f:
            m = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
            if m and m.group(2) != "total":
                calls[m.group(2)] = int(m.group(1))
    n = r["n"] or 1
    return {k: v / n for k, v in calls.items()}, sum(calls.values()) / n


def med(v):
    v = [x for x in v if x == x]
    return statistics.median(v) if v else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferryd", default=os.path.join(ROOT, "build-bench", "daemon", "ferryd"))
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=50, help="wrk connections, Connection: close")
    ap.add_argument("--keep-conns", type=int, default=100, help="wrk connections, kept alive")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--no-pinned", action="store_true", help="unpinned placements only")
    ap.add_argument("--strace", action="store_true",
                    help="also count system calls per connection / request (strace -f -c)")
    args = ap.parse_args()
    tmp, backend_port, backend = bench_setup("ferry-accept-bench-")
    variants = []
    try:
        for pinned in ([False] if args.no_pinned else [False, True]):
            for reuseport in (False, True):
                variants.append(Ferryd(tmp, args.ferryd, backend_port, reuseport, pinned))
        res = {v.name: {"close": [], "keep": []} for v in variants}
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                c = measure(v, args, True)
                k = measure(v, args, False)
                res[v.name]["close"].append(c)
                res[v.name]["keep"].append(k)
                print(f"round {r + 1} {v.name:18} conn/s {c['rate']:8.0f} p99 {c['p99_ms']:7.2f}ms "
                      f"cpu {c['cpu_us_per']:6.1f}us/conn accepted {c['accepted']} "
                      f"err {c['errors']} | req/s {k['rate']:8.0f} p99 {k['p99_ms']:7.2f}ms "
                      f"cpu {k['cpu_us_per']:5.1f}us/req accepted {k['accepted']}", flush=True)

        print(f"\nmedians of {args.rounds} interleaved rounds of {args.seconds}s "
              f"(wrk -t{args.wrk_threads}, {args.conns} close / {args.keep_conns} kept-alive "
              f"connections; {os.cpu_count()} CPUs, workers = auto)")
        print(f"{'variant':18} {'conn/s':>8} {'p99 ms':>7} {'us CPU/conn':>11} {'busiest worker':>14} "
              f"{'req/s':>8} {'p99 ms':>7} {'us CPU/req':>10}")
        for v in variants:
            c, k = res[v.name]["close"], res[v.name]["keep"]
            share = med([max(x["accepted"]) / sum(x["accepted"]) if sum(x["accepted"]) else float("nan")
                         for x in c])
            print(f"{v.name:18} {med([x['rate'] for x in c]):8.0f} {med([x['p99_ms'] for x in c]):7.2f} "
                  f"{med([x['cpu_us_per'] for x in c]):11.1f} {share:13.0%} "
                  f"{med([x['rate'] for x in k]):8.0f} {med([x['p99_ms'] for x in k]):7.2f} "
                  f"{med([x['cpu_us_per'] for x in k]):10.1f}")
        print("\nreuseport / shared, median of the per-round ratios:")
        for placement in ("unpinned", "pinned"):
            s, rp = res.get(f"shared/{placement}"), res.get(f"reuseport/{placement}")
            if not s or not rp:
                continue

            def ratio(kind, key):
                return med([b[key] / a[key] if a[key] else float("nan")
                            for a, b in zip(s[kind], rp[kind])])
            print(f"  {placement:9} conn/s {ratio('close', 'rate'):.3f}  "
                  f"p99(close) {ratio('close', 'p99_ms'):.3f}  "
                  f"CPU/conn {ratio('close', 'cpu_us_per'):.3f}  "
                  f"req/s {ratio('keep', 'rate'):.3f}  p99(keep) {ratio('keep', 'p99_ms'):.3f}  "
                  f"CPU/req {ratio('keep', 'cpu_us_per'):.3f}")
        if args.strace:
            print("\nsystem calls per connection (close) / per request (kept-alive), strace -f -c:")
            for v in variants:
                if v.pinned:
                    continue
                for close in (True, False):
                    per, total = strace_counts(v, args, close)
                    print(f"  {v.name:18} {'close' if close else 'keep '} {total:6.2f}: " +
                          ", ".join(f"{k} {per.get(k, 0):.3f}" for k in
                                    ("accept4", "epoll_wait", "epoll_ctl", "futex", "splice")))
    finally:
        for v in variants:
            v.stop()
        backend.terminate()
        backend.wait(10)


if __name__ == "__main__":
    main()
