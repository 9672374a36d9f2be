#!/usr/bin/env bash
# The main job: the Stars demo of the EKS guide on a local lab, with real enforcement
# and real flow logs. Does its own set-up; needs root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/setup.sh)"
cargo build --release --locked -p agent
exec target/release/netpol-agent demo "$@"
