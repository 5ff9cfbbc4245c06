#!/usr/bin/env bash
# Installs what ferry needs to build and test, if it is missing (Debian 12).
# Usage: scripts/deps.sh [build|run|test|bench]
set -euo pipefail
what=${1:-build}
pkgs=(meson ninja-build pkg-config gcc libc6-dev libssl-dev libinih-dev libcmocka-dev libc-ares-dev libjansson-dev liburing-dev openssl)
case "$what" in
  run)   pkgs+=(python3 netcat-openbsd curl) ;;
  # test.sh's lanes: pytest (integration), clang and its sanitizer and libFuzzer
  # runtimes (clang, tsan, fuzz), the Debian tool chain and a debootstrap for
  # the package lane.
  test)  pkgs+=(python3 gcovr socat mandoc man-db systemd iproute2 procps strace dnsmasq-base pebble prometheus python3-yaml
                python3-pytest python3-pytest-xdist clang libclang-rt-dev
                build-essential dpkg-dev debhelper fakeroot lintian devscripts debootstrap binutils) ;;
  bench) pkgs+=(python3 haproxy nginx-light libnginx-mod-stream hitch wrk socat iperf3 strace valgrind procps) ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
