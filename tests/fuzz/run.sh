#!/usr/bin/env bash
# Runs one libFuzzer target of a -Dfuzz=true build for SECONDS, starting from
# its seeds, with its corpus kept in BUILD/fuzz-corpus/NAME between runs:
#   tests/fuzz/run.sh BUILD NAME SECONDS [libFuzzer options...]
# Prints libFuzzer's own summary; a crash leaves crash-* in BUILD/fuzz-crashes.
set -euo pipefail
build=$1 name=$2 secs=$3; shift 3
corpus=$build/fuzz-corpus/$name crashes=$build/fuzz-crashes
mkdir -p "$corpus" "$crashes"
"$build/tests/fuzz/fuzz_${name}_seeds" "$corpus"
exec "$build/tests/fuzz/fuzz_$name" -max_total_time="$secs" -print_final_stats=1 \
  -artifact_prefix="$crashes/$name-" -rss_limit_mb=1024 "$@" "$corpus"
