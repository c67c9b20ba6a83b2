//! containerd's configuration file, rendered from [`ContainerdConfig`] (pure).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::DEFAULT_SANDBOX_IMAGE;

/// How k8rs runs containerd for one node agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdConfig {
    /// The agent's data dir (`/var/lib/k8rs` by default); everything lives under `<it>/agent`.
    pub data_dir: PathBuf,
    /// The pod sandbox image; must be local (imported), never pulled from the internet.
    pub sandbox_image: String,
    /// Where the CNI plugin binaries are (Debian: `/usr/lib/cni`).
    pub cni_bin_dir: PathBuf,
    /// Where the CNI conflist is (`<data_dir>/agent/etc/cni/net.d`).
    pub cni_conf_dir: PathBuf,
    /// The containerd program, looked up on `PATH` when it has no slash.
    pub containerd_binary: PathBuf,
    /// The `ctr` program, for image imports.
    pub ctr_binary: PathBuf,
    /// How long to wait for the CRI to answer after starting containerd.
    pub ready_timeout: Duration,
    /// containerd's log level (`info`, `debug`, ...).
    pub log_level: String,
}

impl ContainerdConfig {
    /// The defaults for an agent whose data dir is `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = absolute(data_dir.into());
        let cni_conf_dir = data_dir.join("agent/etc/cni/net.d");
        Self {
            data_dir,
            sandbox_image: DEFAULT_SANDBOX_IMAGE.to_string(),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            cni_conf_dir,
            containerd_binary: PathBuf::from("containerd"),
            ctr_binary: PathBuf::from("ctr"),
            ready_timeout: Duration::from_secs(20),
            log_level: "info".to_string(),
        }
    }

    /// The files and directories derived from the data dir.
    pub fn paths(&self) -> ContainerdPaths {
        ContainerdPaths::new(&self.data_dir)
    }
}

/// Where one agent's containerd keeps its files; all under `<data_dir>/agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdPaths {
    /// `<data_dir>/agent`.
    pub agent_dir: PathBuf,
    /// `<data_dir>/agent/containerd`.
    pub dir: PathBuf,
    /// `config.toml` in `dir`.
    pub config: PathBuf,
    /// The gRPC (CRI) socket, `containerd.sock` in `dir`.
    pub socket: PathBuf,
    /// containerd's persistent root (content, snapshots, metadata).
    pub root: PathBuf,
    /// containerd's state (bundles, mounts, fifos): gone after [`crate::killall`].
    pub state: PathBuf,
    /// containerd's stdout and stderr.
    pub log: PathBuf,
    /// The pid of the containerd k8rs started.
    pub pid_file: PathBuf,
    /// Archives found here are imported at start (`<data_dir>/agent/images`).
    pub images_dir: PathBuf,
    /// The record of archives already imported.
    pub import_record: PathBuf,
    /// Per-registry `hosts.toml` files (`<data_dir>/agent/etc/containerd/certs.d`).
    pub registry_config_dir: PathBuf,
    /// host-local IPAM's allocations (`<data_dir>/agent/cni/networks`).
    pub ipam_dir: PathBuf,
    /// The default CNI conf dir (`<data_dir>/agent/etc/cni/net.d`).
    pub cni_conf_dir: PathBuf,
}

impl ContainerdPaths {
    /// The paths for the agent whose data dir is `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        let agent_dir = absolute(data_dir.to_path_buf()).join("agent");
        let dir = agent_dir.join("containerd");
        Self {
            config: dir.join("config.toml"),
            socket: dir.join("containerd.sock"),
            root: dir.join("root"),
            state: dir.join("state"),
            log: dir.join("containerd.log"),
            pid_file: dir.join("containerd.pid"),
            import_record: dir.join("imported-images.json"),
            images_dir: agent_dir.join("images"),
            registry_config_dir: agent_dir.join("etc/containerd/certs.d"),
            ipam_dir: agent_dir.join("cni/networks"),
            cni_conf_dir: agent_dir.join("etc/cni/net.d"),
            dir,
            agent_dir,
        }
    }
}

/// `path` made absolute against the current directory (containerd runs elsewhere, and its
/// processes are recognised by their absolute config path).
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// Plugins this node never uses; disabling them keeps start-up quiet and fast.
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
];

/// containerd's `config.toml` (version 2) for `cfg`.
pub fn render_config(cfg: &ContainerdConfig) -> String {
    let p = cfg.paths();
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    let disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|s| quote(s)).collect();
    format!(
        "# Written by k8rs; rewritten at every start.\n\
         version = 2\n\
         root = {root}\n\
         state = {state}\n\
         oom_score = 0\n\
         disabled_plugins = [{disabled}]\n\
         \n\
         [grpc]\n  address = {socket}\n\
         \n\
         [debug]\n  level = {level}\n\
         \n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt}\n\
         \n\
         [{cri}]\n\
         \x20 sandbox_image = {sandbox}\n\
         \x20 # Required here: root lacks CAP_SYS_RESOURCE, and runc fails without it.\n\
         \x20 restrict_oom_score_adj = true\n\
         \x20 enable_selinux = false\n\
         \x20 stream_server_address = \"127.0.0.1\"\n\
         \x20 stream_server_port = \"0\"\n\
         \n\
         [{cri}.containerd]\n\
         \x20 snapshotter = \"overlayfs\"\n\
         \x20 default_runtime_name = \"runc\"\n\
         \n\
         [{cri}.containerd.runtimes.runc]\n\
         \x20 runtime_type = \"io.containerd.runc.v2\"\n\
         \n\
         [{cri}.containerd.runtimes.runc.options]\n\
         \x20 SystemdCgroup = false\n\
         \x20 Root = {runc_root}\n\
         \n\
         [{cri}.cni]\n\
         \x20 bin_dir = {cni_bin}\n\
         \x20 conf_dir = {cni_conf}\n\
         \x20 max_conf_num = 1\n\
         \n\
         [{cri}.registry]\n\
         \x20 config_path = {registry}\n",
        root = quote_path(&p.root),
        state = quote_path(&p.state),
        disabled = disabled.join(", "),
        socket = quote_path(&p.socket),
        level = quote(&cfg.log_level),
        opt = quote_path(&p.dir.join("opt")),
        sandbox = quote(&cfg.sandbox_image),
        runc_root = quote_path(&p.state.join("runc")),
        cni_bin = quote_path(&cfg.cni_bin_dir),
        cni_conf = quote_path(&cfg.cni_conf_dir),
        registry = quote_path(&p.registry_config_dir),
    )
}

fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_paths_under_the_data_dir() {
        let cfg = ContainerdConfig::new("/var/lib/k8rs");
        let toml = render_config(&cfg);
        assert!(toml.starts_with("# Written by k8rs"));
        assert!(toml.contains("version = 2\n"));
        assert!(toml.contains("root = \"/var/lib/k8rs/agent/containerd/root\"\n"));
        assert!(toml.contains("state = \"/var/lib/k8rs/agent/containerd/state\"\n"));
        assert!(toml.contains("address = \"/var/lib/k8rs/agent/containerd/containerd.sock\"\n"));
        assert!(toml.contains("sandbox_image = \"localhost/k8rs/pause:3.10\"\n"));
        assert!(toml.contains("restrict_oom_score_adj = true\n"));
        assert!(toml.contains("snapshotter = \"overlayfs\"\n"));
        assert!(toml.contains("bin_dir = \"/usr/lib/cni\"\n"));
        assert!(toml.contains("conf_dir = \"/var/lib/k8rs/agent/etc/cni/net.d\"\n"));
        assert!(toml.contains("Root = \"/var/lib/k8rs/agent/containerd/state/runc\"\n"));
        assert!(toml.contains("\"io.containerd.snapshotter.v1.btrfs\""));
    }

    #[test]
    fn every_cri_table_is_nested_under_the_cri_plugin() {
        let toml = render_config(&ContainerdConfig::new("/d"));
        let tables: Vec<&str> = toml.lines().filter(|l| l.starts_with('[')).collect();
        assert_eq!(tables.len(), 9, "{tables:?}");
        for t in &tables[3..] {
            assert!(
                t.starts_with("[plugins.\"io.containerd.grpc.v1.cri\""),
                "{t}"
            );
        }
    }

    #[test]
    fn relative_data_dirs_become_absolute() {
        let cfg = ContainerdConfig::new("rel");
        assert!(cfg.data_dir.is_absolute());
        assert!(cfg.cni_conf_dir.is_absolute());
        assert!(ContainerdPaths::new(Path::new("rel")).socket.is_absolute());
    }

    #[test]
    fn quotes_toml_strings() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        let mut cfg = ContainerdConfig::new("/d");
        cfg.sandbox_image = "x\"y".into();
        assert!(render_config(&cfg).contains("sandbox_image = \"x\\\"y\"\n"));
    }
}
