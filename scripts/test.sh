#!/usr/bin/env bash
# The whole test suite, kernel tests included (needs root). Does its own set-up.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/setup.sh)"
cargo build --workspace --all-targets --locked
cargo test --workspace --locked --no-fail-fast -- --test-threads="${NETPOL_TEST_THREADS:-4}"
