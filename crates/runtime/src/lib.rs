//! The node's container runtime, as k3s runs it: k8rs starts the machine's containerd itself with
//! a config it writes under the data dir (its own root, state, socket and CNI directories, and
//! the settings these machines need), adopts one that is still running from an earlier start
//! (stopping k8rs leaves pods running), imports the offline image archives found in
//! `<data-dir>/agent/images/`, writes the pod network's CNI conflist from the node's podCIDR,
//! and tears everything down again with [`killall`].
//!
//! Layout under `<data-dir>/agent/`: `containerd/{config.toml, containerd.sock, containerd.log,
//! containerd.pid, root/, state/, imported-images.json}`, `etc/cni/net.d/`, `images/`,
//! `cni/networks/` (host-local IPAM state). Two agents with different data dirs share nothing.
//!
//! This crate talks to containerd only through the CRI socket and the `ctr` tool; it must not
//! depend on the API server, the store or the kubelet (the kubelet depends on it).

mod cni;
mod config;
mod containerd;
mod cri;
mod error;
mod images;
mod killall;
mod proc;

pub use cni::{CONFLIST_NAME, CniNetwork, read_bridge_name, render_conflist, write_cni_config};
pub use config::{ContainerdConfig, ContainerdPaths, render_config};
pub use containerd::{Containerd, ensure_containerd};
pub use cri::{connect, version};
pub use error::Error;
pub use images::{ImportReport, import_images};
pub use killall::{KillallReport, killall};

/// The CRI v1 API (client stubs and messages), re-exported so that users of this crate use the
/// same generated types.
pub use k8s_cri::v1 as api;

/// The containerd namespace the CRI plugin keeps its images and containers in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// The default pause (sandbox) image, built by `scripts/build-images.sh`.
pub const DEFAULT_SANDBOX_IMAGE: &str = "localhost/k8rs/pause:3.10";
