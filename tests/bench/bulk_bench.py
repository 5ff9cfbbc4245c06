#!/usr/bin/env python3
"""Bulk plain TCP through ferryd (one worker): Gbit/s and system calls per MiB.

    python3 tests/bench/bulk_bench.py --ferryd build-bench/daemon/ferryd \
        [--ferryd other/build-bench/daemon/ferryd ...] [--seconds 5] [--rounds 3]

An iperf3 server is the backend; iperf3 -c sends through each ferryd given
(rounds interleaved, median reported). A second pass sends a fixed 2 GiB with
`strace -f -c` attached to ferryd and divides its system calls by the MiB
moved. Loopback only, bounded in time; never run by test.sh.
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


def start_ferryd(tmp, ferryd, port, backend):
    conf = os.path.join(tmp, f"ferry-{port}.ini")
    with open(conf, "w") as f:
        f.write(f"""
[global]
workers = 1
control_socket =
access_log = off
log_level = warn
[listener bulk]
bind = 127.0.0.1:{port}
backend = b
[backend b]
server s1 127.0.0.1:{backend}
""")
    p = subprocess.Popen([ferryd, "-c", conf], stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def iperf(port, args):
    out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-J"] + args,
                         capture_output=True, text=True, timeout=120)
    r = json.loads(out.stdout)
    if "error" in r:
        raise SystemExit("iperf3: " + r["error"])
    return r["end"]["sum_received"]["bits_per_second"] / 1e9


def syscalls_per_mib(pid, port, mib):
    st = subprocess.Popen(["strace", "-f", "-c", "-p", str(pid)], stderr=subprocess.PIPE,
                          text=True)
    time.sleep(0.5)
    iperf(port, ["-n", f"{mib}M"])
    st.send_signal(2)
    err = st.communicate(timeout=30)[1]
    m = re.search(r"^-+ -+ -+ -+ -+ -+\n\s*100\.00\s+\S+\s+\S+\s+(\d+)", err, re.M)
    if not m:  # the total line: "100.00 <secs> <usecs/call> <calls> [errors] total"
        m = re.search(r"^\s*100\.00\s+\S+\s+\S+\s+(\d+).*total$", err, re.M)
    calls = int(m.group(1)) if m else -1
    top = [l for l in err.splitlines() if re.match(r"^\s*\d+\.\d+\s", l)][:6]
    return calls / mib, top


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferryd", action="append", required=True)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mib", type=int, default=2048)
    a = ap.parse_args()
    bport = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-p", str(bport)], stdout=subprocess.DEVNULL)
    wait_port(bport)
    procs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ports = []
            for fd in a.ferryd:
                port = free_port()
                procs.append(start_ferryd(tmp, fd, port, bport))
                ports.append(port)
            rates = {fd: [] for fd in a.ferryd}
            direct = []
            for _ in range(a.rounds):
                direct.append(iperf(bport, ["-t", str(a.seconds)]))
                for fd, port in zip(a.ferryd, ports):
                    rates[fd].append(iperf(port, ["-t", str(a.seconds)]))
            print(f"direct: {statistics.median(direct):.2f} Gbit/s "
                  f"(rounds {', '.join(f'{x:.2f}' for x in direct)})")
            for fd, port, p in zip(a.ferryd, ports, procs):
                per, top = syscalls_per_mib(p.pid, port, a.mib)
                print(f"{fd}: {statistics.median(rates[fd]):.2f} Gbit/s "
                      f"(rounds {', '.join(f'{x:.2f}' for x in rates[fd])}); "
                      f"{per:.1f} syscalls/MiB")
                for l in top:
                    print("    " + l.strip())
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        srv.terminate()
        srv.wait(10)


if __name__ == "__main__":
    sys.exit(main())
