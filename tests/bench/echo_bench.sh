#!/usr/bin/env bash
# The asynccore echo benchmark: ac-echo (examples/echo.c, one worker) against
# the hand-written echo loop of the same kernel interface, the zero-overhead
# reference, both driven by echo-load with the same load: CONNS connections
# each doing ping-pong of SIZE-byte messages. Four servers:
#   ac-epoll    ac-echo with AC_BACKEND=epoll
#   epoll-echo  tests/bench/epoll_echo.c, hand-written edge-triggered epoll
#   ac-uring    ac-echo with AC_BACKEND=io_uring
#   uring-echo  tests/bench/uring_echo.c, hand-written liburing (multishot
#               accept, recv into a provided buffer ring, send through the ring)
#
#   tests/bench/echo_bench.sh [ROUNDS] [SECONDS] [CONNS] [SIZE]
#   defaults:                   5        3        1000    256
#
# Builds a release build without sanitizers in build-echobench, then runs the
# servers one after the other in every round, in an order that alternates and
# rotates (each pair's order flips every round, and over four rounds every
# server takes every place), so drift on a shared machine hits all alike. It
# prints every round, the medians and, per backend, the ratio asynccore /
# hand-written for messages/s, bytes/s and the server's CPU time per message
# (from /proc/PID/task/*/schedstat, which a busy machine disturbs less than
# the rates), lower being better for CPU. Loopback only; each run is bounded
# by SECONDS plus a 1 s warm-up. Never run by test.sh.
# ECHO_BENCH_PIN=1 pins the server to CPU 0 and the load to CPU 1.
# ECHO_BENCH_BACKENDS="epoll io_uring" (the default) picks the pairs to run;
# io_uring is left out, with a note, where uring-echo is not built (no
# liburing) or the kernel refuses io_uring.
# ECHO_BENCH_PORT (default 19461) is the first of four consecutive ports.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${1:-5}
seconds=${2:-3}
conns=${3:-1000}
size=${4:-256}
build='build-echobench'
port0=${ECHO_BENCH_PORT:-19461}
read -r -a backends <<<"${ECHO_BENCH_BACKENDS:-epoll io_uring}"

if [ -d "$build" ]; then
  meson setup --reconfigure "$build" -Dbuildtype=release -Db_sanitize=none >/dev/null
else
  meson setup "$build" -Dbuildtype=release -Db_sanitize=none >/dev/null
fi
nice meson compile -C "$build" -j 2 ac-echo epoll-echo echo-load >/dev/null
have_uring=0
if nice meson compile -C "$build" -j 2 uring-echo >/dev/null 2>&1; then have_uring=1; fi

# Every process holds one descriptor per connection.
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

# Each server has its own port (a port left in TIME_WAIT by one cannot slow
# down the next).
port_of() { # server
  case $1 in
    ac-epoll) echo "$port0" ;;
    epoll-echo) echo $((port0 + 1)) ;;
    ac-uring) echo $((port0 + 2)) ;;
    uring-echo) echo $((port0 + 3)) ;;
  esac
}

# Starts a server in the background; sets server_pid.
start_server() { # server
  local port
  port=$(port_of "$1")
  case $1 in
    ac-epoll) AC_BACKEND=epoll "${pin_server[@]}" "$build/examples/ac-echo" "$port" 1 2>/dev/null & ;;
    epoll-echo) "${pin_server[@]}" "$build/tests/bench/epoll-echo" "$port" 2>/dev/null & ;;
    ac-uring) AC_BACKEND=io_uring "${pin_server[@]}" "$build/examples/ac-echo" "$port" 1 2>/dev/null & ;;
    uring-echo) "${pin_server[@]}" "$build/tests/bench/uring-echo" "$port" 2>/dev/null & ;;
  esac
  server_pid=$!
}

stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

wait_port() { # port: fails at once if the server died
  for _ in $(seq 100); do
    if ! kill -0 "$server_pid" 2>/dev/null; then return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

# The kernel interface a server really polls with, from its descriptors:
# a run measured on another backend than its name says is refused.
uses_backend() { # backend
  local want
  case $1 in epoll) want='anon_inode:\[eventpoll\]' ;; io_uring) want='anon_inode:\[io_uring\]' ;; esac
  find /proc/"$server_pid"/fd -maxdepth 1 -type l -printf '%l\n' 2>/dev/null | grep -q "^$want"
}

cpu_ns() { # pid: CPU time so far of all its threads (io_uring's workers too), in ns
  cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'
}

# The pairs to run, each "asynccore-server hand-written-server backend".
pairs=()
for b in "${backends[@]}"; do
  case $b in
    epoll) pairs+=("ac-epoll epoll-echo epoll") ;;
    io_uring)
      if [ "$have_uring" = 0 ]; then
        echo "echo_bench: io_uring left out: uring-echo is not built (no liburing)" >&2
        continue
      fi
      ok=1
      for s in ac-uring uring-echo; do
        start_server "$s"
        if ! wait_port "$(port_of "$s")" || ! uses_backend io_uring; then ok=0; fi
        stop_server
      done
      if [ "$ok" = 0 ]; then
        echo "echo_bench: io_uring left out: the kernel refuses it (or ac-echo did not use it)" >&2
        continue
      fi
      pairs+=("ac-uring uring-echo io_uring") ;;
    *) echo "echo_bench: unknown backend '$b' in ECHO_BENCH_BACKENDS (epoll, io_uring)" >&2; exit 2 ;;
  esac
done
if [ "${#pairs[@]}" = 0 ]; then
  echo "echo_bench: nothing to run" >&2
  exit 1
fi

# Runs one server for one round; sets r_msgs, r_bytes and r_cpu_us (server
# CPU microseconds per message).
run_one() { # server backend
  local port out t0 t1 total
  port=$(port_of "$1")
  start_server "$1"
  if ! wait_port "$port"; then
    echo "echo_bench: $1 does not listen on port $port" >&2
    exit 1
  fi
  if ! uses_backend "$2"; then
    echo "echo_bench: $1 does not poll with $2" >&2
    exit 1
  fi
  t0=$(cpu_ns "$server_pid")
  out=$("${pin_load[@]}" "$build/tests/bench/echo-load" 127.0.0.1 "$port" "$conns" "$size" "$seconds" 1)
  t1=$(cpu_ns "$server_pid")
  stop_server
  r_msgs=$(sed -n 's/.*msgs_per_s=\([0-9]*\).*/\1/p' <<<"$out")
  r_bytes=$(sed -n 's/.*bytes_per_s=\([0-9]*\).*/\1/p' <<<"$out")
  total=$(sed -n 's/.*total_msgs=\([0-9]*\).*/\1/p' <<<"$out")
  r_cpu_us=$(awk -v d=$((t1 - t0)) -v n="$total" 'BEGIN { printf "%.3f", (n > 0) ? d / 1e3 / n : 0 }')
}

median() { # [printf format]
  sort -g | awk -v fmt="${1:-%.0f}" '{a[NR]=$1}
    END {printf fmt "\n", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}

# The order of round r: the pairs rotated by one every two rounds, flattened,
# and reversed in even rounds.
round_order() { # r
  local np=${#pairs[@]} rot i list=() p
  rot=$((($1 - 1) / 2 % np))
  for i in $(seq 0 $((np - 1))); do
    read -r -a p <<<"${pairs[$(((i + rot) % np))]}"
    list+=("${p[0]} ${p[2]}" "${p[1]} ${p[2]}")
  done
  if [ $(($1 % 2)) -eq 0 ]; then
    for ((i = ${#list[@]} - 1; i >= 0; i--)); do echo "${list[$i]}"; done
  else
    printf '%s\n' "${list[@]}"
  fi
}

echo "echo benchmark: $conns connections, $size-byte messages, ${seconds}s x $rounds rounds, 1 worker"
declare -A msgs bytes cpu # server -> the rounds' figures, space-separated
for r in $(seq "$rounds"); do
  while read -r name backend; do
    run_one "$name" "$backend"
    printf 'round %d  %-10s msgs/s %10d  bytes/s %12d  cpu/msg %s us\n' \
      "$r" "$name" "$r_msgs" "$r_bytes" "$r_cpu_us"
    msgs[$name]+="$r_msgs " bytes[$name]+="$r_bytes " cpu[$name]+="$r_cpu_us "
  done < <(round_order "$r")
done

col() { tr ' ' '\n' | sed '/^$/d'; }
declare -A med_m med_b med_c
for p in "${pairs[@]}"; do
  read -r -a s <<<"$p"
  for name in "${s[0]}" "${s[1]}"; do
    med_m[$name]=$(col <<<"${msgs[$name]}" | median)
    med_b[$name]=$(col <<<"${bytes[$name]}" | median)
    med_c[$name]=$(col <<<"${cpu[$name]}" | median %.3f)
    printf 'median     %-10s msgs/s %10d  bytes/s %12d  cpu/msg %s us\n' \
      "$name" "${med_m[$name]}" "${med_b[$name]}" "${med_c[$name]}"
  done
done

# The median of the per-round ratios a/b of two servers' figures: the runs
# of a round are close in time, so this is the figure a busy machine
# disturbs least.
round_ratio() { # a-figures b-figures
  paste -d ' ' <(col <<<"$1") <(col <<<"$2") | awk '{printf "%.6f\n", $1 / $2}' | median %.3f
}
for p in "${pairs[@]}"; do
  read -r a h b <<<"$p"
  awk -v b="$b," -v am="${med_m[$a]}" -v hm="${med_m[$h]}" -v ab="${med_b[$a]}" -v hb="${med_b[$h]}" \
    -v ac="${med_c[$a]}" -v hc="${med_c[$h]}" 'BEGIN {
    printf "ratio asynccore/hand-written, %-9s of the medians:             msgs/s %.3f  bytes/s %.3f  (cpu/msg %.3f, lower is better)\n",
      b, am / hm, ab / hb, ac / hc }'
  printf 'ratio asynccore/hand-written, %-9s median of per-round ratios: msgs/s %s  bytes/s %s  (cpu/msg %s)\n' \
    "$b," "$(round_ratio "${msgs[$a]}" "${msgs[$h]}")" "$(round_ratio "${bytes[$a]}" "${bytes[$h]}")" \
    "$(round_ratio "${cpu[$a]}" "${cpu[$h]}")"
done
if [ -n "${msgs[uring-echo]:-}" ] && [ -n "${msgs[epoll-echo]:-}" ]; then
  printf 'hand-written io_uring/epoll,  median of per-round ratios:           msgs/s %s  (cpu/msg %s)\n' \
    "$(round_ratio "${msgs[uring-echo]}" "${msgs[epoll-echo]}")" \
    "$(round_ratio "${cpu[uring-echo]}" "${cpu[epoll-echo]}")"
fi
