#!/usr/bin/env bash
# Quick start: installs what is missing, builds k8rs (release) and starts a single-node server
# on the embedded store. Extra arguments go to `k8rs server`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p k8rs
exec target/release/k8rs server "$@"
