//! The I/O shell of a sync: read the node's network state through [`Exec`], plan with
//! [`crate::plan`], carry the plan out. Also the clean uninstall.

use k8s_openapi::api::core::v1::Node;

use crate::Error;
use crate::config::{Backend, Commands, PodNetConfig};
use crate::exec::Exec;
use crate::observe::{self, Links};
use crate::plan::{self, Action, Observed, OwnNode, ROUTE_PROTO};
use crate::render::{self, TABLE};

/// The sysctls the pod network needs: forwarding, and bridged pod traffic through netfilter
/// (so that the masquerade and the service proxy see it).
pub const SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-iptables", "1"),
];

/// The node's network stack as this crate sees it.
pub struct Dataplane<E> {
    config: PodNetConfig,
    exec: E,
}

fn argv(prefix: &[String], rest: &[&str]) -> Vec<String> {
    prefix
        .iter()
        .cloned()
        .chain(rest.iter().map(|s| s.to_string()))
        .collect()
}

fn parsed<T>(command: &[String], r: Result<T, observe::ParseError>) -> Result<T, Error> {
    r.map_err(|e| Error::UnexpectedOutput {
        command: command.join(" "),
        reason: e.to_string(),
    })
}

impl<E: Exec> Dataplane<E> {
    pub fn new(config: PodNetConfig, exec: E) -> Self {
        Dataplane { config, exec }
    }

    pub fn config(&self) -> &PodNetConfig {
        &self.config
    }

    pub fn exec(&self) -> &E {
        &self.exec
    }

    fn cmds(&self) -> &Commands {
        &self.config.commands
    }

    /// Sets [`SYSCTLS`].
    pub async fn set_sysctls(&self) -> Result<(), Error> {
        for (key, value) in SYSCTLS {
            match &self.cmds().sysctl {
                Some(prefix) => {
                    let setting = format!("{key}={value}");
                    self.exec
                        .run(&argv(prefix, &["-w", &setting]), None)
                        .await?;
                }
                None => self.exec.write_proc_sys(key, value).await?,
            }
        }
        Ok(())
    }

    /// Loads the node's nft table unless it is already exactly right. A wrong table is
    /// deleted in one transaction and created in the next (never both in one: see the
    /// kernel note in MACHINE.md).
    pub async fn ensure_table(&self) -> Result<(), Error> {
        let cluster = self.config.cluster_cidr;
        let nft = &self.cmds().nft;
        match self
            .exec
            .run(&argv(nft, &["list", "table", "ip", TABLE]), None)
            .await
        {
            Ok(listed) if render::ruleset_matches(&listed, &cluster) => return Ok(()),
            Ok(_) => {
                tracing::info!(table = TABLE, "nft table drifted; reloading it");
                self.exec
                    .run(&argv(nft, &["delete", "table", "ip", TABLE]), None)
                    .await?;
            }
            Err(_) => {} // absent
        }
        let text = render::ruleset(&cluster);
        self.exec.run(&argv(nft, &["-f", "-"]), Some(&text)).await?;
        Ok(())
    }

    async fn links(&self) -> Result<Links, Error> {
        let cmd = argv(&self.cmds().ip, &["-d", "-j", "addr", "show"]);
        let out = self.exec.run(&cmd, None).await?;
        parsed(&cmd, observe::links(&out))
    }

    async fn routes(&self) -> Result<Vec<plan::Route>, Error> {
        let cmd = argv(
            &self.cmds().ip,
            &["-j", "route", "show", "proto", ROUTE_PROTO],
        );
        let out = self.exec.run(&cmd, None).await?;
        parsed(&cmd, observe::routes(&out))
    }

    /// Routes, and (when the VXLAN device exists) its neighbours and FDB.
    async fn observe_peers(&self, device: Option<&str>) -> Result<Observed, Error> {
        let mut observed = Observed {
            routes: self.routes().await?,
            ..Observed::default()
        };
        if let Some(dev) = device {
            let cmd = argv(&self.cmds().ip, &["-j", "neigh", "show", "dev", dev]);
            let out = self.exec.run(&cmd, None).await?;
            observed.neighbours = parsed(&cmd, observe::neighbours(&out))?;
            let cmd = argv(&self.cmds().bridge, &["-j", "fdb", "show", "dev", dev]);
            let out = self.exec.run(&cmd, None).await?;
            observed.fdb = parsed(&cmd, observe::fdb(&out))?;
        }
        Ok(observed)
    }

    /// Carries out `actions` in order; a failed one does not stop the others.
    pub async fn apply(&self, actions: &[Action]) -> Result<(), Error> {
        let mut failures = Vec::new();
        for action in actions {
            let cmd = render::command(self.cmds(), action);
            tracing::debug!(command = %cmd.join(" "), "pod network change");
            if let Err(e) = self.exec.run(&cmd, None).await {
                tracing::warn!(error = %e, "pod network change failed");
                failures.push(e);
            }
        }
        match failures.len() {
            0 => Ok(()),
            failed => Err(Error::ChangesFailed {
                failed,
                total: actions.len(),
                first: Box::new(failures.swap_remove(0)),
            }),
        }
    }

    /// Brings the VXLAN device to its planned state (host-gw: removes a leftover one);
    /// returns the device name when VXLAN is on.
    async fn sync_device(&self, own: Option<&OwnNode>) -> Result<Option<String>, Error> {
        let links = self.links().await?;
        let Some(device) = self.config.backend.device() else {
            let leftover = Backend::vxlan();
            if let Some(dev) = leftover
                .device()
                .filter(|d| observe::device(&links, d).is_some())
            {
                self.apply(&[Action::DeleteLink {
                    device: dev.to_string(),
                }])
                .await?;
            }
            return Ok(None);
        };
        let underlay = observe::underlay(&links, self.config.node_ip)
            .ok_or(Error::NoUnderlay(self.config.node_ip))?;
        let current = observe::device(&links, device);
        let own_cidr = own.and_then(|o| o.pod_cidr);
        let actions = plan::plan_device(&self.config, own_cidr, &underlay, current.as_ref());
        self.apply(&actions).await?;
        Ok(Some(device.to_string()))
    }

    /// One full sync against the Nodes in `nodes`: sysctls, nft table, VXLAN device, and a
    /// route (plus FDB and neighbour for VXLAN) per peer.
    pub async fn sync<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a Node> + Clone,
    ) -> Result<(), Error> {
        self.set_sysctls().await?;
        self.ensure_table().await?;
        let own = plan::own_node(&self.config, nodes.clone());
        let device = self.sync_device(own.as_ref()).await?;
        let peers = plan::peers(&self.config, nodes);
        let observed = self.observe_peers(device.as_deref()).await?;
        let actions = plan::plan_peers(&self.config, &peers, &observed);
        if !actions.is_empty() {
            tracing::info!(
                peers = peers.len(),
                changes = actions.len(),
                "syncing pod network routes"
            );
        }
        self.apply(&actions).await
    }

    /// Removes everything this crate made: the nft table, its routes inside the cluster CIDR,
    /// and the VXLAN device (with its neighbours and FDB). Sysctls are left as they are.
    pub async fn cleanup(&self) -> Result<(), Error> {
        let nft = &self.cmds().nft;
        let mut result = Ok(());
        if self
            .exec
            .run(&argv(nft, &["list", "table", "ip", TABLE]), None)
            .await
            .is_ok()
        {
            result = self
                .exec
                .run(&argv(nft, &["delete", "table", "ip", TABLE]), None)
                .await
                .map(|_| ());
        }
        let cluster = self.config.cluster_cidr;
        let stale: Vec<Action> = self
            .routes()
            .await?
            .into_iter()
            .filter(|r| cluster.covers(&r.dst))
            .map(Action::DeleteRoute)
            .collect();
        let links = self.links().await?;
        let vxlan = Backend::vxlan();
        let device = self
            .config
            .backend
            .device()
            .or(vxlan.device())
            .unwrap_or_default();
        let mut actions = stale;
        if observe::device(&links, device).is_some() {
            actions.push(Action::DeleteLink {
                device: device.to_string(),
            });
        }
        result.and(self.apply(&actions).await)
    }

    /// The MTU pods on this node should use: the VXLAN device's for VXLAN, the underlay's
    /// for host-gw.
    pub async fn pod_mtu(&self) -> Result<u32, Error> {
        let links = self.links().await?;
        let underlay = observe::underlay(&links, self.config.node_ip)
            .ok_or(Error::NoUnderlay(self.config.node_ip))?;
        Ok(match self.config.backend {
            Backend::HostGw => underlay.mtu,
            Backend::Vxlan { .. } => self
                .config
                .mtu
                .unwrap_or(underlay.mtu.saturating_sub(crate::config::VXLAN_OVERHEAD)),
        })
    }
}
