#!/usr/bin/env python3
"""System calls per proxied request, ferryd vs HAProxy (splice and not) vs
nginx stream: the `syscalls` measure of compare.py alone (one round), kept
under its old name.

    python3 tests/bench/syscall_bench.py [--ferryd PATH] [--short S] [--keepalive S]

is `compare.py --only syscalls --rounds 1 --strace-seconds S` (one length
for both the short and the kept-alive run: the larger of the two given).
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferryd")
    ap.add_argument("--short", type=int, default=3, help="seconds of short connections")
    ap.add_argument("--keepalive", type=int, default=3, help="seconds of kept-alive requests")
    a = ap.parse_args()
    cmd = [sys.executable, os.path.join(HERE, "compare.py"), "--only", "syscalls",
           "--rounds", "1", "--strace-seconds", str(max(a.short, a.keepalive))]
    if a.ferryd:
        cmd += ["--ferryd", a.ferryd]
    os.execv(sys.executable, cmd)


if __name__ == "__main__":
    main()
