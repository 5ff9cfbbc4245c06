#!/usr/bin/env bash
# Runs every benchmark side by side and prints ratios (never run by test.sh):
#   1. asynccore echo vs a hand-written epoll echo loop (tests/bench/echo_bench.sh)
#   2. ferryd vs HAProxy vs nginx stream vs direct: connections/s, requests/s,
#      memory per idle proxied connection (tests/bench/proxy_bench.py)
#   3. TLS handshakes/s: ferryd vs HAProxy vs hitch on one certificate
#      (tests/bench/tls_bench.py)
# Installs the peers from Debian if missing. Loopback only, bounded in time.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/deps.sh bench
if [ -d build-bench ]; then meson setup --reconfigure build-bench >/dev/null
else meson setup build-bench -Dbuildtype=release -Dtests=false >/dev/null; fi
meson compile -C build-bench >/dev/null

echo "== asynccore echo vs hand-written epoll loop"
tests/bench/echo_bench.sh
echo
echo "== proxies: ferryd vs haproxy vs nginx stream vs direct"
python3 tests/bench/proxy_bench.py --ferryd build-bench/daemon/ferryd
if [ -f tests/bench/tls_bench.py ]; then
  echo
  echo "== TLS handshakes: ferryd vs haproxy vs hitch"
  python3 tests/bench/tls_bench.py --ferryd build-bench/daemon/ferryd
fi
