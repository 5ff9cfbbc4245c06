#!/usr/bin/env bash
# Installs what is missing, builds ferry and runs every check, lane by lane:
#   gcc       gcc, ASan+UBSan, -Werror: unit, ops and fuzz-driver tests (meson),
#             the integration tests under pytest (one result per test function),
#             on the default backend: io_uring, or epoll where the kernel refuses
#             io_uring (kernel.io_uring_disabled, a seccomp profile)
#   epoll     the gcc lane's build on the epoll backend (AC_BACKEND picks it at
#             run time): asynccore and integration
#             (lane io_uring, by name only: the same on io_uring)
#   poll      the same sanitizers with the poll(2) backend: asynccore and integration
#   kqueue    asynccore on the kqueue backend over a TEST-ONLY kevent(2)
#             emulation on epoll (tests/kqueue_emul/), same sanitizers
#   coverage  asynccore's line coverage (at least 85%)
#   clang     clang release build (hardening, -Werror) and the unit tests
#   tsan      ThreadSanitizer (clang): asynccore and daemon unit tests, and the
#             integration tests that run several threads (workers, DNS, logs)
#   fuzz      every libFuzzer target (clang, -Dfuzz=true, ASan+UBSan) for
#             FUZZ_SECONDS each (default 25) from its seeds: a crash fails
#   package   the Debian package: build, contents, hardening-check, lintian,
#             install/upgrade/purge in a throwaway Debian 12 root
# Usage: ./test.sh [--quick] [LANE...]   (--quick: the gcc lane only; default: all)
# Each lane builds in build-LANE; the last line is "N passed, N failed" over all.
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh test

san=(-Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true -Dbuildtype=debug)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONDONTWRITEBYTECODE=1
jobs=2

# A step of a lane that runs tests: a failure is recorded and the lane goes
# on (the integration tests still run after a failed unit test); a failed
# build or setup stops the lane (set -e).
step() { "$@" || failed=1; }

setup() { # dir, options...
  local dir=$1; shift
  if [ -d "$dir" ]; then meson setup --wipe "$dir" "$@" >/dev/null; else meson setup "$dir" "$@" >/dev/null; fi
}

# pytest over tests/integration against BUILD's ferryd; extra args go to pytest.
# Debian's python3 (python3-pytest, -xdist and -yaml are installed for it),
# whatever python3 comes first in PATH.
pytest_integration() { # build, lane, pytest args...
  local build=$PWD/$1 lane=$2; shift 2
  [ $# -gt 0 ] || set -- tests/integration
  FERRYD=$build/daemon/ferryd FERRYCTL=$build/daemon/ferryctl \
    FERRYD_NEXT=$build/tests/integration/ferryd-next \
    /usr/bin/python3 -m pytest -p no:cacheprovider -q -n "$jobs" --dist loadfile \
      --junitxml="$build/pytest-$lane.xml" -o junit_suite_name="$lane" "$@"
}

lane_gcc() {
  setup build-test "${san[@]}"
  meson compile -C build-test
  step meson test -C build-test --print-errorlogs --num-processes "$jobs" --no-suite integration
  step pytest_integration build-test gcc
}

# io_uring_setup(2) allowed here (the syscall number is 425 on every arch).
io_uring_ok() {
  python3 -c 'import ctypes, sys; p = ctypes.create_string_buffer(120)
sys.exit(ctypes.CDLL(None, use_errno=True).syscall(425, 1, p) < 0)'
}

lane_io_uring() {
  if ! io_uring_ok; then
    echo "io_uring refused by this kernel: lane skipped"
    echo "skip io_uring_lane" >build-test/results-io_uring.txt 2>/dev/null || true
    return 0
  fi
  [ -f build-test/build.ninja ] || setup build-test "${san[@]}"
  meson compile -C build-test
  AC_BACKEND=io_uring step meson test -C build-test --print-errorlogs --num-processes "$jobs" \
    --suite asynccore --logbase testlog-io_uring
  AC_BACKEND=io_uring step pytest_integration build-test io_uring
}

lane_epoll() {
  [ -f build-test/build.ninja ] || setup build-test "${san[@]}"
  meson compile -C build-test
  AC_BACKEND=epoll step meson test -C build-test --print-errorlogs --num-processes "$jobs" \
    --suite asynccore --logbase testlog-epoll
  AC_BACKEND=epoll step pytest_integration build-test epoll
}

lane_poll() {
  setup build-poll "${san[@]}" -Dreactor=poll
  meson compile -C build-poll
  step meson test -C build-poll --print-errorlogs --num-processes "$jobs" --suite asynccore
  step pytest_integration build-poll poll
}

# The emulation's own test, then asynccore's suite.
lane_kqueue() {
  setup build-kqueue "${san[@]}" -Dkqueue_emulation=true
  meson compile -C build-kqueue
  step meson test -C build-kqueue --print-errorlogs --num-processes "$jobs" --suite asynccore
}

lane_coverage() {
  setup build-cov -Db_coverage=true -Dbuildtype=debug -Dwerror=true
  meson compile -C build-cov
  step meson test -C build-cov --suite asynccore --num-processes "$jobs" >/dev/null
  # the io_uring poller is compiled in: its lines count too
  if io_uring_ok; then
    step env AC_BACKEND=io_uring meson test -C build-cov --suite asynccore --num-processes "$jobs" \
      --logbase testlog-io_uring >/dev/null
  fi
  step python3 scripts/coverage.py build-cov 85
}

lane_clang() {
  CC=clang setup build-clang -Dbuildtype=release -Dwerror=true
  meson compile -C build-clang
  step meson test -C build-clang --print-errorlogs --num-processes "$jobs" \
    --suite asynccore --suite config --suite daemon
}

# Integration files whose ferryd runs several threads at once: workers > 1,
# the log writer, the DNS resolver and the blocking pool, the control socket.
tsan_integration=(test_forward.py test_dns.py test_logs.py test_control.py test_runtime.py
                  test_tls.py test_tickets.py)
lane_tsan() {
  CC=clang setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dwerror=true -Dbuildtype=debug
  meson compile -C build-tsan
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    step meson test -C build-tsan --print-errorlogs --num-processes "$jobs" --suite asynccore --suite daemon
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    step pytest_integration build-tsan tsan "${tsan_integration[@]/#/tests/integration/}"
}

lane_fuzz() {
  CC=clang setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debugoptimized -Dwerror=true
  meson compile -C build-fuzz
  local targets
  targets=$(cd build-fuzz/tests/fuzz && ls fuzz_*_seeds | sed 's/^fuzz_//; s/_seeds$//')
  # Two at a time; each exits non-zero on a crash, a leak or a timeout.
  rm -f build-fuzz/results-fuzz.txt
  printf '%s\n' $targets | xargs -P "$jobs" -I{} sh -c \
    'if tests/fuzz/run.sh build-fuzz {} "${FUZZ_SECONDS:-25}" -timeout=20 >build-fuzz/fuzz-{}.log 2>&1; then
       echo "ok fuzz_{}" >>build-fuzz/results-fuzz.txt
       echo "fuzz {}: $(grep -m1 "stat::number_of_executed_units" build-fuzz/fuzz-{}.log)"
     else
       echo "FAIL fuzz_{}" >>build-fuzz/results-fuzz.txt
       echo "fuzz {}: FAILED"; tail -40 build-fuzz/fuzz-{}.log; exit 1
     fi'
}

lane_package() {
  mkdir -p build-package
  # 77: not root (chroot, mount), skipped
  python3 tests/package/package_test.py --results build-package/results-package.txt ||
    { rc=$?; [ $rc -eq 77 ] || failed=1; }
}

all_lanes=(gcc epoll poll kqueue coverage clang tsan fuzz package)
# The build directory whose results a lane leaves (summary below).
declare -A lane_dir=([gcc]=build-test [epoll]=build-test [io_uring]=build-test [poll]=build-poll [kqueue]=build-kqueue [coverage]=build-cov [clang]=build-clang
                     [tsan]=build-tsan [fuzz]=build-fuzz [package]=build-package)
lanes=()
for a in "$@"; do
  case $a in
    --quick) lanes+=(gcc) ;;
    -*) echo "unknown option $a" >&2; exit 2 ;;
    *) lanes+=("$a") ;;
  esac
done
[ ${#lanes[@]} -gt 0 ] || lanes=("${all_lanes[@]}")

status=0
report=()
dirs=()
lane_failures=0
for l in "${lanes[@]}"; do
  declare -F "lane_$l" >/dev/null || { echo "unknown lane $l (lanes: ${all_lanes[*]})" >&2; exit 2; }
  echo "=== lane $l"
  t0=$SECONDS
  set +e
  ( set -e; failed=0; "lane_$l"; exit $failed )   # not in an if: set -e stays in force
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then r=ok; else r=FAILED; status=1; lane_failures=$((lane_failures + 1)); fi
  dirs+=("${lane_dir[$l]}")
  report+=("$(printf '%-9s %-6s %4ds' "$l" "$r" $((SECONDS - t0)))")
done
echo "=== lanes"
printf '%s\n' "${report[@]}"
# A failed lane counts once more than its failed tests: its build may have broken first.
python3 scripts/summary.py --lane-failures "$lane_failures" "${dirs[@]}" || status=1
exit $status
