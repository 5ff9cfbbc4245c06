#!/usr/bin/env python3
"""Memory at rest: RSS of a proxy that has bound its listener and served no
connection yet, one worker (ferryd workers = 1, HAProxy nbthread 1), split
into anonymous memory (the proxy's own heap, stacks, tables) and file pages
(the executable and the shared libraries it touched, shared with every other
process that maps them), and the mappings that hold the most.

    python3 tests/bench/rest_memory.py [--ferryd PATH ...] [--tls] [--no-haproxy]

--tls adds a TLS listener (an ECDSA P-256 certificate), so OpenSSL's share
shows. Each proxy is measured after a settle second, 3 fresh starts each,
the median printed. RSS does not depend on the machine's load.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as pb  # noqa: E402


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def mappings_kib(pid):
    """{mapping name: RSS KiB} from /proc/PID/smaps ('[anon]' for unnamed)."""
    out, name = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                name = os.path.basename(head[5]) if len(head) > 5 else "[anon]"
            elif line.startswith("Rss:"):
                out[name] = out.get(name, 0) + int(head[1])
    return out


def measure(cmd, port, settle):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pb.wait_port(port, timeout=30)
        time.sleep(settle)
        pids = [p.pid] + pb.children(p.pid)
        row = {k: sum(status_kib(x, k) for x in pids) for k in ("VmRSS", "RssAnon", "RssFile")}
        maps = {}
        for x in pids:
            for n, v in mappings_kib(x).items():
                maps[n] = maps.get(n, 0) + v
        row["maps"] = maps
        return row
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def make_cert(tmp):
    crt, key, pem = (os.path.join(tmp, n) for n in ("rest.crt", "rest.key", "rest.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "30", "-subj", "/CN=bench.test"],
                   check=True, capture_output=True, timeout=30)
    with open(pem, "w") as out:
        for part in (crt, key):
            with open(part) as f:
                out.write(f.read())
    return pem


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferryd", action="append",
                    help="ferryd binary (repeatable); default build-bench/daemon/ferryd")
    ap.add_argument("--no-haproxy", action="store_true")
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=1.0)
    args = ap.parse_args()
    binaries = args.ferryd or [os.path.join(pb.ROOT, "build-bench", "daemon", "ferryd")]
    tmp = __import__("tempfile").mkdtemp(prefix="ferry-rest-")
    pem = make_cert(tmp) if args.tls else None
    backend = pb.free_port()  # nothing needs to listen there: no connection is made
    contenders = []
    for b in binaries:
        def ferry_cmd(port, b=b):
            extra = f"tls = on\ntls_cert = {pem}\n" if pem else ""
            return [b, "-c", pb.ferryd_conf(tmp, port, backend, listener_extra=extra)]
        contenders.append((f"ferryd ({b})", ferry_cmd))
    if not args.no_haproxy and shutil.which("haproxy"):
        def haproxy_cmd(port):
            extra = f"ssl crt {pem}" if pem else ""
            return ["haproxy", "-db", "-f", pb.haproxy_conf(tmp, port, backend, bind_extra=extra)]
        contenders.append(("haproxy", haproxy_cmd))
    print(f"{'RSS at rest, KiB (median of %d)' % args.rounds:50} {'VmRSS':>8} {'anon':>8} "
          f"{'file':>8}  largest mappings")
    try:
        for name, cmd_fn in contenders:
            rows = []
            for _ in range(args.rounds):
                port = pb.free_port()
                rows.append(measure(cmd_fn(port), port, args.settle))
            med = {k: statistics.median(r[k] for r in rows) for k in ("VmRSS", "RssAnon", "RssFile")}
            top = sorted(rows[-1]["maps"].items(), key=lambda kv: -kv[1])[:5]
            tops = ", ".join(f"{n} {v}" for n, v in top)
            print(f"{name:50} {med['VmRSS']:8.0f} {med['RssAnon']:8.0f} {med['RssFile']:8.0f}  {tops}")
    finally:
        shutil.rmtree(tmp, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
