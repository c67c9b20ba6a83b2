#!/usr/bin/env bash
# Installs what building and testing k8rs needs on a fresh Debian bookworm machine (as root):
# protoc for the gRPC crates, etcd for the etcd backend tests. Idempotent and quiet.
set -euo pipefail
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v kubectl >/dev/null 2>&1 || need+=(kubectl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install the Rust toolchain (rustup)" >&2; exit 1; }
