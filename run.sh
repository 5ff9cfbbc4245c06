#!/usr/bin/env bash
# Installs what is missing, builds ferry, starts two demo backends and ferryd
# on config/ferry.ini, and tells what to try. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh run

if [ -d build ]; then meson setup --reconfigure build >/dev/null; else meson setup build -Dbuildtype=release >/dev/null; fi
meson compile -C build >/dev/null
mkdir -p .run

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# Two demo backends: each answers every line with "backend N: <line>".
for n in 1 2; do
  python3 scripts/demo_backend.py 127.0.0.1 900$n "backend $n" &
  pids+=($!)
done

build/daemon/ferryd -c config/ferry.ini &
pids+=($!)
for _ in $(seq 50); do [ -S .run/ferry.sock ] && break; sleep 0.1; done

cat <<TXT

ferryd is running (pid ${pids[2]}) on config/ferry.ini, forwarding
127.0.0.1:8080 to two demo backends (127.0.0.1:9001 and :9002, round robin).

Try, in another terminal:
  echo hello | nc -q1 127.0.0.1 8080         # answered by backend 1, then 2, ...
  build/daemon/ferryctl -s .run/ferry.sock stats
  build/daemon/ferryctl -s .run/ferry.sock conns
  build/daemon/ferryctl -s .run/ferry.sock --json info
  curl -s http://127.0.0.1:9100/metrics      # Prometheus metrics
  build/daemon/ferryctl -s .run/ferry.sock disable demo/app1
  kill -HUP ${pids[2]}                       # reload config/ferry.ini

Ctrl-C stops ferryd (graceful drain) and the demo backends.
TXT
wait "${pids[2]}"
