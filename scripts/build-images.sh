#!/usr/bin/env bash
# Builds k8rs's images offline, as docker-archive tarballs with fully-qualified names, into OUT_DIR:
#   pause.tar    localhost/k8rs/pause:3.10     the static pause program (images/pause) as /pause
#   busybox.tar  localhost/k8rs/busybox:1.35   busybox-static and its applets; default command
#                                              `httpd -f -v -p 8080 -h /www` (no entrypoint)
# Needs umoci, skopeo, busybox-static (scripts/setup.sh installs them) and cargo. An archive is
# rebuilt only when one of its inputs is newer than it. Usage: scripts/build-images.sh OUT_DIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
for tool in umoci skopeo cargo; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is missing: run scripts/setup.sh" >&2; exit 1; }
done
busybox_bin=/bin/busybox
# busybox-static installs a static /bin/busybox; the dynamic `busybox` package would not run in an
# empty image.
ldd_out="$(ldd "$busybox_bin" 2>&1 || true)"
if [ ! -x "$busybox_bin" ] || [[ "$ldd_out" != *"not a dynamic"* ]]; then
  echo "$busybox_bin is not static: apt-get install busybox-static" >&2; exit 1
fi

# stale OUT INPUT...: true when OUT is missing or an input is newer than it.
stale() {
  local target="$1"; shift
  [ -e "$target" ] || return 0
  local input
  for input in "$@"; do
    [ "$input" -nt "$target" ] && return 0
  done
  return 1
}

# new_layout WORK NAME: an empty image NAME in the OCI layout WORK/oci, unpacked to WORK/bundle.
new_layout() {
  umoci init --layout "$1/oci"
  umoci new --image "$1/oci:$2"
  umoci unpack --image "$1/oci:$2" "$1/bundle" >/dev/null
}

# finish WORK NAME ARCHIVE REF [umoci config args...]: repack, configure, export as ARCHIVE.
finish() {
  local work="$1" name="$2" archive="$3" ref="$4"; shift 4
  umoci repack --image "$work/oci:$name" "$work/bundle"
  umoci config --image "$work/oci:$name" --author k8rs "$@"
  rm -f "$archive.tmp"
  skopeo --insecure-policy copy -q "oci:$work/oci:$name" "docker-archive:$archive.tmp:$ref"
  mv -f "$archive.tmp" "$archive"
  echo "built $archive ($ref)"
}

build_pause() {
  RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --release \
    --target x86_64-unknown-linux-gnu --manifest-path "$root/images/pause/Cargo.toml" \
    --target-dir "$root/target/images"
  local bin="$root/target/images/x86_64-unknown-linux-gnu/release/k8rs-pause"
  local archive="$out/pause.tar"
  stale "$archive" "$bin" "$0" || return 0
  local work; work="$(mktemp -d)"
  new_layout "$work" pause
  install -m 0755 "$bin" "$work/bundle/rootfs/pause"
  finish "$work" pause "$archive" localhost/k8rs/pause:3.10 \
    --config.entrypoint /pause --clear config.cmd
  rm -rf "$work"
}

build_busybox() {
  local page="$root/images/busybox/index.html"
  local archive="$out/busybox.tar"
  stale "$archive" "$busybox_bin" "$page" "$0" || return 0
  local work; work="$(mktemp -d)"
  new_layout "$work" busybox
  local rootfs="$work/bundle/rootfs"
  mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,www,var/www} "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  install -m 0755 "$busybox_bin" "$rootfs/bin/busybox"
  local applet
  for applet in $("$busybox_bin" --list-full); do
    [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  install -m 0644 "$page" "$rootfs/www/index.html"
  finish "$work" busybox "$archive" localhost/k8rs/busybox:1.35 \
    --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    --config.cmd httpd --config.cmd -f --config.cmd -v --config.cmd -p --config.cmd 8080 \
    --config.cmd -h --config.cmd /www --config.exposedports 8080/tcp
  rm -rf "$work"
}

build_pause
build_busybox
