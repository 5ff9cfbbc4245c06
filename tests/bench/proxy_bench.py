#!/usr/bin/env python3
"""Connection rate, kept-alive request rate and idle memory per connection,
ferryd vs HAProxy vs nginx stream vs direct: the `rates` and `idle`
measures of compare.py alone, kept under their old name.

    python3 tests/bench/proxy_bench.py [--ferryd PATH] [--seconds S] [--rounds N] [--idle N]

is `compare.py --only rates,idle` with the same options. The contenders,
backends and load live in benchlib.py.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferryd")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--idle", type=int, default=5000)
    a = ap.parse_args()
    cmd = [sys.executable, os.path.join(HERE, "compare.py"), "--only", "rates,idle",
           "--seconds", str(a.seconds), "--rounds", str(a.rounds), "--idle", str(a.idle)]
    if a.ferryd:
        cmd += ["--ferryd", a.ferryd]
    os.execv(sys.executable, cmd)


if __name__ == "__main__":
    main()
