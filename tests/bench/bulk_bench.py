#!/usr/bin/env python3
"""Bulk plain TCP through ferryd (one worker): Gbit/s and system calls per MiB,
for one or several ferryd binaries (an A/B of two builds, say).

    python3 tests/bench/bulk_bench.py --ferryd build-bench/daemon/ferryd \
        [--ferryd other/build-bench/daemon/ferryd ...] [--seconds 5] [--rounds 3]

An iperf3 server is the backend; iperf3 -c sends through each ferryd given
(rounds interleaved with the direct path, median reported). A second pass
sends a fixed 2 GiB with `strace -f -c` attached to ferryd and divides its
system calls by the MiB moved. Loopback only, bounded in time; never run by
test.sh. The side by side with HAProxy and nginx (1 and 8 streams) is the
`bulk` measure of compare.py.
"""
import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def syscalls_per_mib(c, mib):
    _, counts = bl.strace_counts(c.pids(), lambda: bl.iperf(c.port, None, 1, ["-n", f"{mib}M"]),
                                 timeout=120)
    return sum(counts.values()) / mib, bl.top_calls(counts, mib, 6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferryd", action="append", required=True)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mib", type=int, default=2048)
    a = ap.parse_args()
    bl.unwind_on_signals()
    with bl.Procs() as procs, tempfile.TemporaryDirectory() as tmp:
        bport = bl.free_port()
        bl.start_iperf_server(bport, procs)
        cs = [bl.start_ferryd(tmp, bl.free_port(), bport, fd, name=fd, procs=procs)
              for fd in a.ferryd]
        rates = {c.name: [] for c in cs}
        direct = []
        for _ in range(a.rounds):
            direct.append(bl.iperf(bport, a.seconds))
            for c in cs:
                rates[c.name].append(bl.iperf(c.port, a.seconds))
        print(f"direct: {statistics.median(direct):.2f} Gbit/s "
              f"(rounds {', '.join(f'{x:.2f}' for x in direct)})")
        for c in cs:
            per, top = syscalls_per_mib(c, a.mib)
            print(f"{c.name}: {statistics.median(rates[c.name]):.2f} Gbit/s "
                  f"(rounds {', '.join(f'{x:.2f}' for x in rates[c.name])}); "
                  f"{per:.1f} syscalls/MiB")
            print(f"    per MiB: {top}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted; every process started was stopped")
