#!/usr/bin/env bash
# Installs what building and testing k8rs needs on a fresh Debian bookworm machine (as root):
# protoc for the gRPC crates, etcd for the etcd backend tests, and the node's runtime stack
# (containerd, runc, the CNI plugins, nftables, conntrack), the offline image tools (umoci,
# skopeo, busybox-static) and a local registry for pull tests. Enables IPv4 forwarding and builds
# the pause and busybox images into /var/lib/k8rs/agent/images/ (imported by the agent at start).
# Idempotent and quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have protoc || need+=(protobuf-compiler)
have etcd || need+=(etcd-server)
have kubectl || need+=(kubectl)
have containerd || need+=(containerd)
have runc || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
have nft || need+=(nftables)
have conntrack || need+=(conntrack)
have umoci || need+=(umoci)
have skopeo || need+=(skopeo)
{ [ -x /bin/busybox ] && dpkg -s busybox-static >/dev/null 2>&1; } || need+=(busybox-static)
have docker-registry || need+=(docker-registry)
have ip || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
have cargo || { echo "cargo is missing: install the Rust toolchain (rustup)" >&2; exit 1; }
# Pods' traffic is routed through the host; Debian boots with forwarding off.
if [ "$(cat /proc/sys/net/ipv4/ip_forward)" != 1 ]; then
  echo 1 >/proc/sys/net/ipv4/ip_forward
fi
scripts/build-images.sh /var/lib/k8rs/agent/images >/dev/null
