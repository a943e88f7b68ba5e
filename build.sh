#!/usr/bin/env bash
# felhom-agent build entry point.
#   ./build.sh          static x86_64 musl release binary (prints its path and size)
#   ./build.sh test     fmt check, clippy with -D warnings, and the whole test suite
#   ./build.sh bench    the benchmark
set -euo pipefail
cd "$(dirname "$0")"

cmd=${1:-build}
case "$cmd" in
  test)
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings
    cargo test --all-targets
    ;;
  *)
    echo "usage: ./build.sh [build|test|bench]" >&2
    exit 2
    ;;
esac
