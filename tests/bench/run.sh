#!/usr/bin/env bash
# The benchmarks, run by hand (never by test.sh). Installs the peers from
# Debian if missing, builds a release ferryd in build-bench
# (-Dbuildtype=release, no sanitizers), then:
#
#   tests/bench/run.sh [--quick] [--out FILE] [other compare.py options]
#     The side by side of issue 9, one command, one run (tests/bench/compare.py):
#     ferryd vs HAProxy (splice and not) vs nginx stream vs direct, one worker
#     each, rounds interleaved; system calls per short connection and per
#     kept-alive request (strace), connections and requests per proxy
#     CPU-second, p99 latency (wrk), bulk Gbit/s 1 and 8 streams (iperf3),
#     idle memory per connection (5,000 held), ferryd workers=auto vs 1
#     pinned (and HAProxy nbthread 2 vs 1), instructions per request
#     (callgrind). Prints each round, the medians, the ratios to HAProxy and
#     a PASS/FAIL line per target; --out FILE also writes markdown tables.
#     About 8 minutes; --quick (1 round of 2 s runs, no callgrind) about 75 s.
#     One measure alone: --only syscalls|rates|bulk|idle|scale|callgrind
#     (comma-separated); see `python3 tests/bench/compare.py --help`.
#
#   tests/bench/run.sh --all [compare.py options]
#     the same, then the asynccore echo benchmark (echo_bench.sh) and the
#     TLS handshake benchmark (tls_bench.py).
#
# Loopback only, bounded in time; every process started is stopped on exit,
# on an error and on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
all=0
if [ "${1:-}" = "--all" ]; then all=1; shift; fi
scripts/deps.sh bench
# LTO: asynccore's hot path crosses files; whole-program inlining takes 13%
# of the instructions per kept-alive request (RESULTS.md, "The kept-alive path").
if [ -d build-bench ]; then meson setup --reconfigure build-bench >/dev/null
  meson configure build-bench -Db_lto=true -Db_ndebug=if-release >/dev/null
else meson setup build-bench -Dbuildtype=release -Db_lto=true -Dtests=false >/dev/null; fi
meson compile -C build-bench >/dev/null

echo "== ferryd vs haproxy (splice and not) vs nginx stream vs direct"
python3 tests/bench/compare.py --ferryd build-bench/daemon/ferryd "$@"
if [ "$all" = 1 ]; then
  echo
  echo "== asynccore echo vs hand-written epoll and io_uring loops"
  tests/bench/echo_bench.sh
  echo
  echo "== TLS handshakes: ferryd vs haproxy vs hitch"
  python3 tests/bench/tls_bench.py --ferryd build-bench/daemon/ferryd
fi
