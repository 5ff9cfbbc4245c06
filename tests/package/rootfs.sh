#!/usr/bin/env bash
# Prints the path of a Debian 12 (bookworm) minbase root file system as a
# tarball, made once with debootstrap from the Debian mirror and cached
# (FERRY_ROOTFS_CACHE, default /var/cache/ferry-test): the throwaway root the
# package test installs, upgrades and purges ferry in. The cache is keyed by
# the package list, so adding a runtime dependency here makes a new one.
#   tests/package/rootfs.sh            # -> /var/cache/ferry-test/bookworm-HASH.tar
set -euo pipefail
mirror=${FERRY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${FERRY_ROOTFS_CACHE:-/var/cache/ferry-test}
# What ferry's maintainer scripts and binaries need: systemd-sysusers and
# systemd-tmpfiles (postinst), deb-systemd-helper, the shared libraries
# ferryd links, and logrotate to check the shipped logrotate file.
include=systemd,init-system-helpers,libssl3,libinih1,libc-ares2,libjansson4,liburing2,logrotate
key=$(printf '%s %s' "$mirror" "$include" | sha256sum | cut -c1-12)
tarball=$cache/bookworm-$key.tar
if [ ! -s "$tarball" ]; then
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/make.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  debootstrap --variant=minbase --include="$include" bookworm "$work/root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
  tar -C "$work/root" -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  # Roots made for another package list are not used any more.
  find "$cache" -maxdepth 1 -name 'bookworm-*.tar' ! -path "$tarball" -delete
fi
echo "$tarball"
