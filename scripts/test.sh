#!/usr/bin/env bash
# The whole test suite, kernel tests included (needs root). Does its own set-up.
# Runs every step even after a failure and ends with one line per step and
# "N passed, N failed".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/setup.sh)"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
kernel_target="${CARGO_TARGET_DIR:-$PWD/target}/ebpf-clippy"

passed=0
failed=0
results=()
step() {
  local name="$1"; shift
  local started=$SECONDS
  echo "=== $name: $*"
  if "$@"; then
    passed=$((passed + 1)); results+=("ok     $name ($((SECONDS - started)) s)")
  else
    failed=$((failed + 1)); results+=("FAILED $name ($((SECONDS - started)) s)")
  fi
}

# Leftovers of test processes that died (a killed run cannot clean up): namespaces
# and pins whose name carries the pid of a process that no longer exists.
sweep_leftovers() {
  local name pid
  for name in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    if [[ "$name" =~ ^np[tnp]([0-9]+)x[0-9]+$ ]]; then
      pid="${BASH_REMATCH[1]}"
      [ -d "/proc/$pid" ] || ip netns del "$name" 2>/dev/null || true
    fi
  done
  for name in /sys/fs/bpf/netpol-test-* /sys/fs/bpf/netpol-traffic-*; do
    [ -e "$name" ] || continue
    if [[ "$name" =~ -([0-9]+)x[0-9]+$ ]]; then
      pid="${BASH_REMATCH[1]}"
      [ -d "/proc/$pid" ] || rm -rf "$name"
    fi
  done
}

kernel_clippy() {
  (cd datapath-ebpf && RUSTC_BOOTSTRAP=1 cargo clippy --locked --release \
    --target bpfel-unknown-none -Z build-std=core --bins \
    --target-dir "$kernel_target" -- -D warnings)
}

sweep_leftovers
trap sweep_leftovers EXIT

step "format" cargo fmt --all --check
step "format (kernel crate)" cargo fmt --manifest-path datapath-ebpf/Cargo.toml --check
step "build" cargo build --workspace --all-targets --locked
step "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "clippy (kernel crate)" kernel_clippy
step "tests" cargo test --workspace --locked --no-fail-fast -- --test-threads="${NETPOL_TEST_THREADS:-4}"
# Every benchmark in its quick mode: its invariants, never its speed targets.
step "benchmarks (quick)" env NETPOL_BENCH_QUICK=1 cargo test -p integration --benches --locked

echo
printf '%s\n' "${results[@]}"
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
