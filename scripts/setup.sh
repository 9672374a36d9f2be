#!/usr/bin/env bash
# One-time, idempotent machine set-up for building and testing netpol-agent.
# Installs: rust-src, bpf-linker linked against rustc's own LLVM, the Debian packages
# the tests use, a Python venv with the local CloudWatch Logs endpoint (moto), and
# mounts bpffs. Safe to run again: every step checks before it acts.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${NETPOL_TOOLS_DIR:-$HOME/.cache/netpol-agent/tools}"
log() { printf 'setup: %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (BPF, network namespaces and bpffs need it)"; exit 1
  fi
}

debian_packages() {
  local missing=()
  for pkg in iproute2 python3-venv gzip procps util-linux; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

rust_src() {
  rustup component list --installed | grep -q '^rust-src' || {
    log "adding rustup component rust-src"; rustup component add rust-src; }
}

bpf_linker() {
  local llvm_major sysroot_lib
  llvm_major="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
  local root="$tools/llvm-$llvm_major"
  if [ -x "$root/bin/bpf-linker" ]; then
    echo "$root/bin"; return
  fi
  sysroot_lib="$(rustc --print sysroot)/lib"
  mkdir -p "$root/rust-llvm/lib"
  ln -sf "$(ls "$sysroot_lib"/libLLVM.so.*-rust-* | head -n1)" "$root/rust-llvm/lib/libLLVM.so"
  log "building bpf-linker 0.13.0 against rustc's LLVM $llvm_major (about 70 s)"
  LLVM_PREFIX="$root/rust-llvm" cargo install bpf-linker --version 0.13.0 --locked \
    --no-default-features --features "llvm-$llvm_major" --root "$root" >&2
  echo "$root/bin"
}

bpffs() {
  mountpoint -q /sys/fs/bpf || { log "mounting bpffs on /sys/fs/bpf"; mount -t bpf bpffs /sys/fs/bpf; }
}

python_venv() {
  local venv="$tools/venv"
  if [ ! -x "$venv/bin/moto_server" ]; then
    log "creating Python venv with moto[server] for the local CloudWatch Logs endpoint"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'moto[server]>=5.1,<5.3' >&2
  fi
  echo "$venv/bin"
}

need_root
debian_packages
rust_src
linker_bin="$(bpf_linker)"
venv_bin="$(python_venv)"
bpffs
# Printed for callers: `eval "$(scripts/setup.sh)"` puts the tools on PATH.
echo "export PATH=\"$linker_bin:$venv_bin:\$PATH\""
echo "export NETPOL_MOTO_SERVER=\"$venv_bin/moto_server\""
