#!/usr/bin/env bash
# The asynccore echo benchmark: ac-echo (examples/echo.c, one
# worker) against epoll-echo (a hand-written edge-triggered epoll loop, the
# zero-overhead reference), both driven by echo-load with the same load:
# CONNS connections each doing ping-pong of SIZE-byte messages.
#
#   tests/bench/echo_bench.sh [ROUNDS] [SECONDS] [CONNS] [SIZE]
#   defaults:                   5        3        1000    256
#
# Builds a release build without sanitizers in build-echobench, then runs the two
# servers in alternating rounds (the order flips each round, so drift on a
# shared machine hits both alike) and prints every round, the medians and the
# ratio asynccore / hand-written for messages/s and bytes/s. It also prints the
# server's CPU time per message (from /proc/PID/task/*/schedstat), which a busy
# machine disturbs less than the rates. Loopback only; each round is bounded
# by SECONDS plus a 1 s warm-up. Never run by test.sh.
# ECHO_BENCH_PIN=1 pins the server to CPU 0 and the load to CPU 1.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${1:-5}
seconds=${2:-3}
conns=${3:-1000}
size=${4:-256}
build=build-echobench
port_ac=${ECHO_BENCH_PORT:-19461}
port_ep=$((port_ac + 1))

if [ -d "$build" ]; then
  meson setup --reconfigure "$build" -Dbuildtype=release -Db_sanitize=none >/dev/null
else
  meson setup "$build" -Dbuildtype=release -Db_sanitize=none >/dev/null
fi
nice meson compile -C "$build" -j 2 ac-echo epoll-echo echo-load >/dev/null

# Both processes hold one descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((conns + 64)) ]; then
  echo "echo_bench: need $((conns + 64)) descriptors, have $(ulimit -n)" >&2
  exit 1
fi

pin_server=() pin_load=()
if [ "${ECHO_BENCH_PIN:-0}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c 0)
  pin_load=(taskset -c 1)
fi

server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

wait_port() { # port
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "echo_bench: nothing listens on port $1" >&2
  return 1
}

cpu_ns() { # pid: CPU time so far of all its threads, in ns
  cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'
}

# Runs one server for one round; sets r_msgs, r_bytes and r_cpu_us (server
# CPU microseconds per message).
run_one() { # name
  local port out
  case $1 in
    asynccore) port=$port_ac; "${pin_server[@]}" "$build/examples/ac-echo" "$port" 1 2>/dev/null & ;;
    epoll) port=$port_ep; "${pin_server[@]}" "$build/tests/bench/epoll-echo" "$port" 2>/dev/null & ;;
  esac
  server_pid=$!
  wait_port "$port"
  local t0 t1 total
  t0=$(cpu_ns "$server_pid")
  out=$("${pin_load[@]}" "$build/tests/bench/echo-load" 127.0.0.1 "$port" "$conns" "$size" "$seconds" 1)
  t1=$(cpu_ns "$server_pid")
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=
  r_msgs=$(sed -n 's/.*msgs_per_s=\([0-9]*\).*/\1/p' <<<"$out")
  r_bytes=$(sed -n 's/.*bytes_per_s=\([0-9]*\).*/\1/p' <<<"$out")
  total=$(sed -n 's/.*total_msgs=\([0-9]*\).*/\1/p' <<<"$out")
  r_cpu_us=$(awk -v d=$((t1 - t0)) -v n="$total" 'BEGIN { printf "%.3f", (n > 0) ? d / 1e3 / n : 0 }')
}

median() { # [printf format]
  sort -g | awk -v fmt="${1:-%.0f}" '{a[NR]=$1}
    END {printf fmt "\n", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}

echo "echo benchmark: $conns connections, $size-byte messages, ${seconds}s x $rounds rounds, 1 worker"
ac_msgs=() ac_bytes=() ac_cpu=() ep_msgs=() ep_bytes=() ep_cpu=()
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then order=(asynccore epoll); else order=(epoll asynccore); fi
  for name in "${order[@]}"; do
    run_one "$name"
    m=$r_msgs b=$r_bytes
    printf 'round %d  %-10s msgs/s %10d  bytes/s %12d  cpu/msg %s us\n' "$r" "$name" "$m" "$b" "$r_cpu_us"
    if [ "$name" = asynccore ]; then
      ac_msgs+=("$m") ac_bytes+=("$b") ac_cpu+=("$r_cpu_us")
    else
      ep_msgs+=("$m") ep_bytes+=("$b") ep_cpu+=("$r_cpu_us")
    fi
  done
done

am=$(printf '%s\n' "${ac_msgs[@]}" | median)
ab=$(printf '%s\n' "${ac_bytes[@]}" | median)
em=$(printf '%s\n' "${ep_msgs[@]}" | median)
eb=$(printf '%s\n' "${ep_bytes[@]}" | median)
ac_=$(printf '%s\n' "${ac_cpu[@]}" | median %.3f)
ec=$(printf '%s\n' "${ep_cpu[@]}" | median %.3f)
echo "median     asynccore  msgs/s $am  bytes/s $ab  cpu/msg $ac_ us"
echo "median     epoll      msgs/s $em  bytes/s $eb  cpu/msg $ec us"
awk -v am="$am" -v em="$em" -v ab="$ab" -v eb="$eb" -v ac="$ac_" -v ec="$ec" 'BEGIN {
  printf "ratio asynccore/hand-written: msgs/s %.3f  bytes/s %.3f  (cpu/msg %.3f, lower is better)\n",
    am / em, ab / eb, ac / ec }'
# The two runs of a round are back to back, so their ratio is the figure a
# busy machine disturbs least.
rm=$(for i in "${!ac_msgs[@]}"; do echo "${ac_msgs[$i]} ${ep_msgs[$i]}"; done |
  awk '{printf "%.6f\n", $1 / $2}' | median %.3f)
rb=$(for i in "${!ac_bytes[@]}"; do echo "${ac_bytes[$i]} ${ep_bytes[$i]}"; done |
  awk '{printf "%.6f\n", $1 / $2}' | median %.3f)
rc=$(for i in "${!ac_cpu[@]}"; do echo "${ac_cpu[$i]} ${ep_cpu[$i]}"; done |
  awk '{printf "%.6f\n", $1 / $2}' | median %.3f)
echo "median of per-round ratios:  msgs/s $rm  bytes/s $rb  (cpu/msg $rc)"
