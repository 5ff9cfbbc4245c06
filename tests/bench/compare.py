#!/usr/bin/env python3
"""The side-by-side benchmark of issue 9: ferryd against HAProxy (with and
without splice), nginx stream and the direct path, one worker each, in one
run, every figure reported per round, as a median and as a ratio to HAProxy,
then one PASS/FAIL line per target of the issue.

    tests/bench/run.sh [--quick] [--out FILE]        # builds build-bench first
    python3 tests/bench/compare.py --ferryd build-bench/daemon/ferryd [--quick] [--out FILE]

Backends: an nginx HTTP server (`return 200`) and an iperf3 server; every
proxy has one route to each. Each round runs every measure below with the
contenders interleaved (their order rotates each round, so drift on a shared
machine hits all alike):

  syscalls   `strace -f -c` on every process and thread of the proxy while
             wrk runs Connection: close requests (a new proxied connection
             each), then kept-alive requests, 20 connections; calls divided
             by the requests wrk completed. Noise cannot move these counts.
  rates      wrk --latency, 50 connections with Connection: close, then 100
             kept-alive; requests per second of the proxy's CPU time
             (utime+stime from /proc/PID/stat over all its processes -- for
             nginx master and worker -- before and after each wrk run), the
             wall-clock rate and the p99 latency.
  bulk       iperf3 through each proxy, 1 stream and 8 streams (-P 8), Gbit/s.
  idle       a fresh instance of each proxy, N connections each carrying one
             request through it, then held idle: RSS growth of all its
             processes divided by N.
  scale      ferryd `workers = auto` vs `workers = 1` and HAProxy nbthread 2
             vs 1, each pinned (taskset) to --cores; wrk -t2 -c100 with
             Connection: close; connections per second.
  callgrind  (once, not per round) ferryd and HAProxy under valgrind
             --tool=callgrind (callgrind_bench.py's run): user-space
             instructions per short connection and per kept-alive request
             over a fixed number of requests, 20 connections at a time.

Loopback only; every run is bounded in time; every process started is
stopped on exit, on an error and on Ctrl-C. A default run (3 rounds of 5 s
runs) takes about 8 minutes on 2 CPUs, --quick (1 round of 2 s runs, no
callgrind) about 75 s. Never run by test.sh.
"""
import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import callgrind_bench as cg  # noqa: E402

IDLE_TARGET = 1.6 * 1024  # bytes per idle plain connection

# key: (title, format, reference contender of the ratios)
MEASURES = collections.OrderedDict([
    ("sys_short", ("system calls per short connection (strace -f -c, wrk -c20, Connection: close)",
                   "{:.2f}", "haproxy")),
    ("sys_ka", ("system calls per kept-alive request (strace -f -c, wrk -c20)",
                "{:.2f}", "haproxy")),
    ("conn_cpu", ("new connections per proxy CPU-second (wrk -c50, Connection: close)",
                  "{:.0f}", "haproxy")),
    ("conn_rate", ("new connections per second, wall clock (same runs)", "{:.0f}", "haproxy")),
    ("p99_short", ("p99 latency of short connections, ms (same runs)", "{:.2f}", "haproxy")),
    ("req_cpu", ("kept-alive requests per proxy CPU-second (wrk -c100)", "{:.0f}", "haproxy")),
    ("req_rate", ("kept-alive requests per second, wall clock (same runs)", "{:.0f}", "haproxy")),
    ("p99_ka", ("p99 latency of kept-alive requests, ms (same runs)", "{:.2f}", "haproxy")),
    ("bulk1", ("bulk Gbit/s, iperf3 1 stream", "{:.2f}", "haproxy-splice")),
    ("bulk8", ("bulk Gbit/s, iperf3 8 streams (-P 8)", "{:.2f}", "haproxy-splice")),
    ("idle", ("idle memory per plain connection, bytes (RSS growth / connections held)",
              "{:.0f}", "haproxy")),
    ("scale", ("connections per second, proxy pinned (taskset), wrk -t2 -c100 Connection: close",
               "{:.0f}", None)),
    ("scale_p99", ("p99 latency of the same pinned runs, ms", "{:.2f}", None)),
    ("cg_short", ("user-space instructions per short connection (callgrind)", "{:.0f}", "haproxy")),
    ("cg_ka", ("user-space instructions per kept-alive request (callgrind)", "{:.0f}", "haproxy")),
])

# (label, measure, kind, comparison, threshold); kind "ratio" is ferryd / the
# measure's reference (median of the per-round ratios), "abs" ferryd's median,
# "scale" ferryd auto / ferryd 1 (median of the per-round ratios).
TARGETS = [
    ("system calls per short connection, ferryd/HAProxy", "sys_short", "ratio", "<=", 0.8),
    ("system calls per short connection, ferryd", "sys_short", "abs", "<=", 14.0),
    ("system calls per kept-alive request, ferryd/HAProxy", "sys_ka", "ratio", "<=", 0.8),
    ("system calls per kept-alive request, ferryd", "sys_ka", "abs", "<=", 4.0),
    ("new connections per proxy CPU-second, ferryd/HAProxy", "conn_cpu", "ratio", ">=", 1.2),
    ("kept-alive requests per proxy CPU-second, ferryd/HAProxy", "req_cpu", "ratio", ">=", 1.1),
    ("p99 latency, short connections, ferryd/HAProxy", "p99_short", "ratio", "<=", 0.9),
    ("p99 latency, kept-alive requests, ferryd/HAProxy", "p99_ka", "ratio", "<=", 0.9),
    ("bulk Gbit/s 1 stream, ferryd/HAProxy splice", "bulk1", "ratio", ">=", 1.0),
    ("bulk Gbit/s 8 streams, ferryd/HAProxy splice", "bulk8", "ratio", ">=", 1.0),
    ("idle memory per plain connection, ferryd, bytes", "idle", "abs", "<=", IDLE_TARGET),
    ("connection rate workers=auto / workers=1, ferryd pinned", "scale", "scale", ">=", 1.6),
]

GROUPS = ["syscalls", "rates", "bulk", "idle", "scale", "callgrind"]


class Results:
    """values[measure][contender] = one value per round (None: not taken)."""

    def __init__(self, rounds, ncores):
        self.rounds = rounds
        # the scale measure's ratio rows: (label, numerator, denominator)
        self.scale_ratios = [
            ("ferryd auto/1", "ferryd w=auto", "ferryd w=1"),
            (f"haproxy nbthread {ncores}/1", f"haproxy nbthread={ncores}", "haproxy nbthread=1")]
        self.values = {m: collections.OrderedDict() for m in MEASURES}

    def put(self, measure, contender, rnd, value):
        row = self.values[measure].setdefault(contender, [None] * self.rounds)
        row[rnd] = value

    def row(self, measure, contender):
        return self.values[measure].get(contender, [])

    def ratios(self, measure, num, den):
        a, b = self.row(measure, num), self.row(measure, den)
        return [x / y if x is not None and y else None for x, y in zip(a, b)]


def fmt(measure, v):
    if v is None or v != v:
        return "-"
    return MEASURES[measure][1].format(v)


def fmt_ratio(v):
    return "-" if v is None or v != v else f"{v:.2f}x"


def say(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------- contenders

def start_contenders(procs, tmp, args, http, bulk):
    """The one-worker contenders, each with a route to both backends."""
    cs = [bl.Contender("direct", http, bulk_port=bulk)]
    # ferryd runs on the default backend (io_uring where the kernel allows
    # it); with --io-uring it is pinned to epoll beside ferryd-io_uring.
    cs.append(bl.start_ferryd(tmp, bl.free_port(), http, args.ferryd,
                              bulk=(bl.free_port(), bulk), procs=procs,
                              io_backend="epoll" if args.io_uring else None))
    if args.io_uring:
        cs.append(bl.start_ferryd(tmp, bl.free_port(), http, args.ferryd, name="ferryd-io_uring",
                                  bulk=(bl.free_port(), bulk), procs=procs,
                                  io_backend="io_uring"))
    cs.append(bl.start_haproxy(tmp, bl.free_port(), http, bulk=(bl.free_port(), bulk),
                               procs=procs))
    cs.append(bl.start_haproxy(tmp, bl.free_port(), http, name="haproxy-splice", splice=True,
                               bulk=(bl.free_port(), bulk), procs=procs))
    cs.append(bl.start_nginx_stream(tmp, bl.free_port(), http, bulk=(bl.free_port(), bulk),
                                    procs=procs))
    return cs


def start_one(procs, tmp, args, name, http):
    """A fresh one-worker instance of a proxy (for the idle memory)."""
    port = bl.free_port()
    if name == "ferryd":
        return bl.start_ferryd(tmp, port, http, args.ferryd, procs=procs,
                               io_backend="epoll" if args.io_uring else None)
    if name == "ferryd-io_uring":
        return bl.start_ferryd(tmp, port, http, args.ferryd, name=name, procs=procs,
                               io_backend="io_uring")
    if name == "haproxy":
        return bl.start_haproxy(tmp, port, http, procs=procs)
    if name == "haproxy-splice":
        return bl.start_haproxy(tmp, port, http, name=name, splice=True, procs=procs)
    return bl.start_nginx_stream(tmp, port, http, procs=procs)


def start_scale(procs, tmp, args, http):
    ncores = len(expand_cores(args.cores))
    return [
        bl.start_ferryd(tmp, bl.free_port(), http, args.ferryd, name="ferryd w=auto",
                        workers="auto", cores=args.cores, procs=procs),
        bl.start_ferryd(tmp, bl.free_port(), http, args.ferryd, name="ferryd w=1",
                        workers="1", cores=args.cores, procs=procs),
        bl.start_haproxy(tmp, bl.free_port(), http, name=f"haproxy nbthread={ncores}",
                         nbthread=ncores, cores=args.cores, procs=procs),
        bl.start_haproxy(tmp, bl.free_port(), http, name="haproxy nbthread=1",
                         nbthread=1, cores=args.cores, procs=procs),
    ]


def expand_cores(spec):
    out = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


# ---------------------------------------------------------------- one round

def line(res, measure, rnd, names, note=""):
    ref = MEASURES[measure][2]
    vals = "  ".join(f"{n} {fmt(measure, res.row(measure, n)[rnd])}"
                     for n in res.values[measure] if n in names)  # first round's order
    ratio = ""
    if ref and "ferryd" in res.values[measure] and ref in res.values[measure]:
        ratio = f"  | ferryd/{ref} {fmt_ratio(res.ratios(measure, 'ferryd', ref)[rnd])}"
    say(f"  [r{rnd + 1}] {measure:9} {vals}{ratio}{note}")


def taken(rnd, c, what, fn):
    """fn()'s result, or None (and a line saying why) if the measurement
    failed. A proxy that exited is fatal: its figures would mean nothing."""
    try:
        return fn()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        say(f"  [r{rnd + 1}] {c.name} {what}: failed: {str(e).strip()[:300]}")
        return None
    finally:
        if c.proc is not None and c.proc.poll() is not None:
            raise RuntimeError(f"{c.name} exited with status {c.proc.returncode} "
                               f"during {what} (round {rnd + 1})")


def per_request(served_counts):
    if served_counts is None or not served_counts[0]:
        return None, ""
    served, counts = served_counts
    return sum(counts.values()) / served, bl.top_calls(counts, served)


def round_syscalls(res, rnd, order, args, breakdown):
    names = [c.name for c in order if c.proc]
    for c in order:
        if not c.proc:
            continue
        if taken(rnd, c, "warm-up", lambda: (bl.drive_short(c.port, 20),
                                             bl.drive_keepalive(c.port, 20))) is None:
            continue  # first connections allocate
        short = per_request(taken(rnd, c, "strace, short", lambda: bl.strace_counts(
            c.pids(), lambda: bl.wrk(c.port, args.strace_seconds, 20, True)["requests"])))
        ka = per_request(taken(rnd, c, "strace, kept-alive", lambda: bl.strace_counts(
            c.pids(), lambda: bl.wrk(c.port, args.strace_seconds, 20, False)["requests"])))
        res.put("sys_short", c.name, rnd, short[0])
        res.put("sys_ka", c.name, rnd, ka[0])
        breakdown[c.name] = (short[1], ka[1])
    line(res, "sys_short", rnd, names)
    line(res, "sys_ka", rnd, names)


def round_rates(res, rnd, order, args):
    errors = []
    for close, conns, cpu_m, rate_m, p99_m in ((True, 50, "conn_cpu", "conn_rate", "p99_short"),
                                               (False, 100, "req_cpu", "req_rate", "p99_ka")):
        for c in order:
            r = taken(rnd, c, "wrk", lambda: bl.wrk_cpu(c, args.seconds, conns, close))
            if r is None:
                continue
            if r["errors"]:
                errors.append(f"{c.name} {'short' if close else 'kept-alive'}: {r['errors']} errors")
            if r["cpu_s"] is not None:
                res.put(cpu_m, c.name, rnd, r["requests"] / r["cpu_s"] if r["cpu_s"] > 0 else None)
            res.put(rate_m, c.name, rnd, r["rate"])
            res.put(p99_m, c.name, rnd, r["p99_ms"])
    names = [c.name for c in order]
    for m in ("conn_cpu", "conn_rate", "p99_short", "req_cpu", "req_rate", "p99_ka"):
        line(res, m, rnd, names)
    for e in errors:
        say(f"  [r{rnd + 1}] wrk reported {e}")


def round_bulk(res, rnd, order, args):
    for streams, m in ((1, "bulk1"), (8, "bulk8")):
        for c in order:
            res.put(m, c.name, rnd, taken(rnd, c, f"iperf3 -P {streams}",
                                          lambda: bl.iperf(c.bulk_port, args.seconds, streams)))
        line(res, m, rnd, [c.name for c in order])


def round_idle(res, rnd, order, args, procs, tmp, http):
    names = [c.name for c in order if c.proc]
    for name in names:
        c = start_one(procs, tmp, args, name, http)
        try:
            res.put("idle", name, rnd, taken(rnd, c, "idle", lambda: bl.idle_memory(c, args.idle)))
        finally:
            procs.stop(c.proc)
    line(res, "idle", rnd, names, f"  (over {args.idle} held)")


def round_scale(res, rnd, scale, args):
    order = scale[rnd % len(scale):] + scale[:rnd % len(scale)]
    for c in order:
        r = taken(rnd, c, "wrk", lambda: bl.wrk(c.port, args.seconds, 100, True, threads=2))
        res.put("scale", c.name, rnd, r["rate"] if r else None)
        res.put("scale_p99", c.name, rnd, r["p99_ms"] if r else None)
    vals = "  ".join(f"{c.name} {fmt('scale', res.row('scale', c.name)[rnd])}" for c in scale)
    ratios = "  ".join(f"{label} {fmt_ratio(res.ratios('scale', a, b)[rnd])}"
                       for label, a, b in res.scale_ratios if a in res.values["scale"])
    say(f"  [r{rnd + 1}] scale     {vals}  | {ratios}")
    p99 = "  ".join(f"{c.name} {fmt('scale_p99', res.row('scale_p99', c.name)[rnd])}"
                    for c in scale)
    say(f"  [r{rnd + 1}] scale_p99 {p99}")


# ---------------------------------------------------------------- callgrind

def callgrind(res, tmp, args, http):
    """Instructions per request (user space, every thread), counted by
    valgrind between `callgrind_control -z` and `-d` after a warm-up; the
    proxy runs, the client and the counting are callgrind_bench.py's
    (20 connections at a time)."""
    opts = types.SimpleNamespace(conns=20, requests=args.callgrind * 10, short=args.callgrind)
    # ferryd on epoll (callgrind_bench sets AC_BACKEND): valgrind 3.19 hangs
    # in its first io_uring_enter (RESULTS.md, "io_uring against epoll").
    for name, cmd in (("ferryd", cg.ferryd_cmd(tmp, args.ferryd, http)),
                      ("haproxy", cg.haproxy_cmd(tmp, http))):
        rows = cg.run_one(name, cmd, tmp, http, opts, None)
        res.put("cg_short", name, 0, rows["short"][0])
        res.put("cg_ka", name, 0, rows["keepalive"][0])
    say("  callgrind  short: " + "  ".join(
        f"{n} {fmt('cg_short', res.row('cg_short', n)[0])}" for n in res.values["cg_short"]) +
        "  kept-alive: " + "  ".join(
        f"{n} {fmt('cg_ka', res.row('cg_ka', n)[0])}" for n in res.values["cg_ka"]))


# ---------------------------------------------------------------- report

def table(res, measure, md):
    """Rows: contenders, per-round values, median, x reference; then the
    per-round ratio rows."""
    title, _, ref = MEASURES[measure]
    rows = res.values[measure]
    if not any(v is not None for r in rows.values() for v in r):
        return []
    nr = 1 if measure.startswith("cg_") else res.rounds
    head = ["contender"] + [f"r{i + 1}" for i in range(nr)] + ["median"]
    if ref:
        head.append(f"x {ref}")
    body = []
    for name, vals in rows.items():
        cells = [name] + [fmt(measure, v) for v in vals[:nr]] + [fmt(measure, bl.median(vals))]
        if ref:
            cells.append(fmt_ratio(bl.median(res.ratios(measure, name, ref))) if ref in rows else "-")
        body.append(cells)
    ratio_rows = []
    if ref and "ferryd" in rows and ref in rows:
        ratio_rows.append((f"ferryd/{ref}", res.ratios(measure, "ferryd", ref)))
    if measure == "scale":
        ratio_rows += [(label, res.ratios(measure, a, b)) for label, a, b in res.scale_ratios
                       if a in rows and b in rows]
    for label, rs in ratio_rows:
        cells = [label] + [fmt_ratio(r) for r in rs[:nr]] + [fmt_ratio(bl.median(rs))]
        body.append(cells + ([""] if ref else []))
    if md:
        out = [f"**{title}**", "", "| " + " | ".join(head) + " |",
               "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in body]
        return out + [""]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    out = [title]
    for r in [head] + body:
        out.append("  " + "  ".join(c.rjust(w) if i else c.ljust(w)
                                    for i, (c, w) in enumerate(zip(r, widths))))
    return out + [""]


def verdicts(res):
    out = []
    for label, m, kind, op, thr in TARGETS:
        if kind == "abs":
            v = bl.median(res.row(m, "ferryd"))
            shown = fmt(m, v)
        elif kind == "scale":
            v = bl.median(res.ratios(m, "ferryd w=auto", "ferryd w=1"))
            shown = fmt_ratio(v)
        else:
            v = bl.median(res.ratios(m, "ferryd", MEASURES[m][2]))
            shown = fmt_ratio(v)
        if v != v:
            out.append(f"SKIP  {label}: not measured")
            continue
        ok = v <= thr if op == "<=" else v >= thr
        out.append(f"{'PASS' if ok else 'FAIL'}  {label}: {shown} (target {op} "
                   f"{thr:g}{'x' if kind != 'abs' else ''})")
    return out


def git_rev():
    r = subprocess.run(["git", "-C", bl.ROOT, "describe", "--always", "--dirty"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def write_markdown(path, res, args, header, breakdown, verdict_lines):
    lines = ["# ferryd side by side (tests/bench/compare.py)", ""]
    lines += [f"- {h}" for h in header] + [""]
    for m in MEASURES:
        lines += table(res, m, md=True)
    if breakdown:
        lines += ["**where the system calls go, last round (calls per request)**", ""]
        lines += [f"- {n} short: {s}\n- {n} kept-alive: {k}" for n, (s, k) in breakdown.items()]
        lines.append("")
    lines += ["**targets of issue 9**", ""] + [f"- {v}" for v in verdict_lines]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- main

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferryd", default=os.path.join(bl.ROOT, "build-bench", "daemon", "ferryd"),
                    help="ferryd binary (a release build: tests/bench/run.sh makes build-bench)")
    ap.add_argument("--quick", action="store_true",
                    help="1 round of 2 s runs, no callgrind (about 75 s)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    ap.add_argument("--seconds", type=int, help="length of each wrk/iperf3 run (default 5, quick 2)")
    ap.add_argument("--strace-seconds", type=int, help="wrk under strace (default 2, quick 1)")
    ap.add_argument("--idle", type=int, default=5000, help="idle connections held (default 5000)")
    ap.add_argument("--cores", default="0,1", help="CPUs the scale contenders are pinned to")
    ap.add_argument("--callgrind", type=int,
                    help="short connections under callgrind, 10x as many kept-alive requests; "
                         "0 skips (default 2000, quick 0)")
    ap.add_argument("--only", default=",".join(GROUPS),
                    help="comma-separated subset of " + ",".join(GROUPS))
    ap.add_argument("--out", help="also write the tables as markdown to this file")
    ap.add_argument("--io-uring", action="store_true",
                    help="ferryd pinned to epoll beside ferryd-io_uring (without it, ferryd "
                         "runs on the default backend, io_uring where the kernel allows it; "
                         "callgrind always runs it on epoll)")
    a = ap.parse_args()
    q = a.quick
    a.rounds = a.rounds or (1 if q else 3)
    a.seconds = a.seconds or (2 if q else 5)
    a.strace_seconds = a.strace_seconds or (1 if q else 2)
    if a.callgrind is None:
        a.callgrind = 0 if q else 2000
    a.only = set(a.only.split(","))
    if not 0 < a.idle <= 6500:
        ap.error("--idle takes 1 to 6500 (HAProxy with splice holds at most 7000)")
    if a.only - set(GROUPS):
        ap.error("--only takes " + ",".join(GROUPS))
    if a.callgrind == 0:
        a.only.discard("callgrind")
    return a


def check_tools(args):
    need = ["wrk", "iperf3", "haproxy", "nginx", "strace", "taskset", "pgrep"]
    if "callgrind" in args.only:
        need += ["valgrind", "callgrind_control"]
    missing = [t for t in need if not shutil.which(t)]
    if not os.path.exists(bl.STREAM_MODULE):
        missing.append(bl.STREAM_MODULE)
    if not os.access(args.ferryd, os.X_OK):
        missing.append(args.ferryd + " (build it: tests/bench/run.sh)")
    if missing:
        sys.exit("missing: " + ", ".join(missing) + " (scripts/deps.sh bench installs the peers)")


def main():
    args = parse_args()
    check_tools(args)
    bl.unwind_on_signals()
    nofile = bl.raise_nofile()
    if "idle" in args.only and nofile < 2 * args.idle + 100:  # the proxy's share
        sys.exit(f"--idle {args.idle} needs RLIMIT_NOFILE >= {2 * args.idle + 100} (have {nofile})")
    started = time.monotonic()
    header = [f"ferryd {args.ferryd} at {git_rev()}",
              f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
              f"load average at start {os.getloadavg()[0]:.2f}",
              f"rounds {args.rounds}, runs of {args.seconds} s (strace {args.strace_seconds} s), "
              f"idle {args.idle}, scale pinned to CPUs {args.cores}, callgrind {args.callgrind}"]
    if len(expand_cores(args.cores)) < (os.cpu_count() or 1):
        header.append("note: ferryd `workers = auto` counts online CPUs, not the taskset "
                      "affinity, so it starts more workers than pinned cores here")
    for h in header:
        say(h)
    res = Results(args.rounds, len(expand_cores(args.cores)))
    breakdown = {}
    tmp = tempfile.mkdtemp(prefix="ferry-compare-")
    try:
        with bl.Procs() as procs:
            http, bulk = bl.free_port(), bl.free_port()
            bl.start_backend_nginx(tmp, http, workers=len(expand_cores(args.cores)), procs=procs)
            bl.start_iperf_server(bulk, procs=procs)
            cs = start_contenders(procs, tmp, args, http, bulk)
            scale = start_scale(procs, tmp, args, http) if "scale" in args.only else []
            for rnd in range(args.rounds):
                order = cs[rnd % len(cs):] + cs[:rnd % len(cs)]
                say(f"\n== round {rnd + 1}/{args.rounds} (order: {' '.join(c.name for c in order)})")
                if "syscalls" in args.only:
                    round_syscalls(res, rnd, order, args, breakdown)
                if "rates" in args.only:
                    round_rates(res, rnd, order, args)
                if "bulk" in args.only:
                    round_bulk(res, rnd, order, args)
                if "idle" in args.only:
                    round_idle(res, rnd, order, args, procs, tmp, http)
                if "scale" in args.only:
                    round_scale(res, rnd, scale, args)
            if "callgrind" in args.only:
                say(f"\n== callgrind ({args.callgrind} short connections, "
                    f"{args.callgrind * 10} kept-alive requests, 20 at a time)")
                callgrind(res, tmp, args, http)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"\n== summary ({args.rounds} round(s), {time.monotonic() - started:.0f} s, "
        f"load average now {os.getloadavg()[0]:.2f})\n")
    for m in MEASURES:
        for ln in table(res, m, md=False):
            say(ln)
    if breakdown:
        say("where the system calls go, last round (calls per request)")
        for n, (s, k) in breakdown.items():
            say(f"  {n} short: {s}\n  {n} kept-alive: {k}")
        say("")
    verdict_lines = verdicts(res)
    say("targets of issue 9")
    for v in verdict_lines:
        say("  " + v)
    if args.out:
        write_markdown(args.out, res, args, header, breakdown, verdict_lines)
        say(f"\nmarkdown written to {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted; every process started was stopped")
    except RuntimeError as e:
        sys.exit(f"error: {e}; every process started was stopped")
