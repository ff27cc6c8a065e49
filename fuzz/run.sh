#!/usr/bin/env bash
# Run one fuzz target: fuzz/run.sh TARGET SECONDS [extra libFuzzer flags]
# Needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz). The campaign's corpus
# starts from the committed seeds (fuzz/corpus/TARGET) and grows in fuzz/work/TARGET, which is
# not committed; crashes land in fuzz/artifacts/TARGET. An input gets 1 s, and no single
# allocation may pass 64 MiB. The process may grow to 2 GiB: AddressSanitizer's quarantine of
# freed memory alone holds up to 256 MiB, so a tighter RSS cap fails runs no input caused.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET SECONDS}
seconds=${2:?usage: fuzz/run.sh TARGET SECONDS}
shift 2
mkdir -p "work/$target" "artifacts/$target"
cp -n "corpus/$target"/* "work/$target/" 2>/dev/null || true
exec cargo +nightly fuzz run "$target" "work/$target" -- \
  -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=64 -max_len=65536 \
  -artifact_prefix="artifacts/$target/" -print_final_stats=1 "$@"
