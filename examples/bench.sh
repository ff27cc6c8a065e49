#!/usr/bin/env bash
# The benchmark in one command: installs nginx, wrk and unbound when missing, builds the release
# binaries, and runs examples/bench.rs, which prints the table. Pass --quick for a short run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v unbound >/dev/null 2>&1 || need+=(unbound)
command -v chrt >/dev/null 2>&1 || need+=(util-linux)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The benchmark opens tens of thousands of sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --locked --bin http_status_exporter --example bench
exec target/release/examples/bench "$@"
