#!/usr/bin/env bash
# Run one fuzz target: fuzz/run.sh TARGET SECONDS [extra libFuzzer flags]
# Needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz). The campaign's corpus
# starts from the committed seeds (fuzz/corpus/TARGET) and grows in fuzz/work/TARGET, which is
# not committed; crashes land in fuzz/artifacts/TARGET. An input gets 1 s, no single allocation
# may pass 64 MiB and the process 256 MiB. AddressSanitizer keeps freed memory in quarantine to
# catch use after free, up to 256 MiB by default, which alone would reach the cap with no input
# to blame; 32 MiB of quarantine leaves the cap to the code under test.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET SECONDS}
seconds=${2:?usage: fuzz/run.sh TARGET SECONDS}
shift 2
mkdir -p "work/$target" "artifacts/$target"
cp -n "corpus/$target"/* "work/$target/" 2>/dev/null || true
ASAN_OPTIONS="quarantine_size_mb=32${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
  exec cargo +nightly fuzz run "$target" "work/$target" -- \
  -max_total_time="$seconds" -timeout=1 -rss_limit_mb=256 -malloc_limit_mb=64 -max_len=65536 \
  -artifact_prefix="artifacts/$target/" -print_final_stats=1 "$@"
