#!/usr/bin/env bash
# Installs what is missing, builds ferry under AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs every test: the whole suite with the
# default reactor (epoll on Linux), the asynccore and integration suites again
# with the poll(2) backend, the asynccore suite on the kqueue backend over a
# test-only kevent(2) emulation, and asynccore's line coverage (at least 85%).
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh test

san=(-Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true -Dbuildtype=debug)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

setup() { # dir, options...
  local dir=$1; shift
  if [ -d "$dir" ]; then meson setup --wipe "$dir" "$@" >/dev/null; else meson setup "$dir" "$@" >/dev/null; fi
}

status=0
setup build-test "${san[@]}"
meson compile -C build-test
meson test -C build-test --print-errorlogs --num-processes 2 || status=1

setup build-poll "${san[@]}" -Dreactor=poll
meson compile -C build-poll
meson test -C build-poll --print-errorlogs --suite asynccore --suite integration || status=1

# The kqueue backend on a TEST-ONLY kevent(2) emulation over epoll
# (tests/kqueue_emul/): the emulation's own test, then asynccore's suite.
setup build-kqueue "${san[@]}" -Dkqueue_emulation=true
meson compile -C build-kqueue
meson test -C build-kqueue --print-errorlogs --suite asynccore || status=1

setup build-cov -Db_coverage=true -Dbuildtype=debug -Dwerror=true
meson compile -C build-cov
meson test -C build-cov --suite asynccore >/dev/null || status=1
python3 scripts/coverage.py build-cov 85 || status=1

python3 scripts/summary.py build-test build-poll || status=1
exit $status
