#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds once, runs every test (unit, store
# conformance on the embedded store and on etcd, and the integration tests that drive the real
# binary with kubectl and kube-rs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --all-targets --locked
cargo test --workspace --locked --no-fail-fast -- --test-threads=4
