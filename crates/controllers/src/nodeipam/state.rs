//! The range allocator's decisions, without IO: fed what the node watch saw and how the patches
//! ended, it answers with the API actions to take. The caller performs them.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::cidrset::{Cidr, CidrSet};

/// An API action the controller must perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Patch the node's `spec.podCIDR` and `spec.podCIDRs` to `cidr`.
    Assign {
        node: String,
        uid: String,
        cidr: Cidr,
    },
    /// Record a `CIDRNotAvailable` event on the node.
    NotAvailable { node: String, uid: String },
}

/// A node waiting for a subnet: the range was full, or its patch failed.
#[derive(Clone, Debug)]
struct Waiting {
    uid: String,
    notified: bool,
}

/// The objects seen since the watch (re)started listing.
#[derive(Debug, Default)]
struct Listing {
    seen: HashSet<String>,
    without_cidr: Vec<(String, String)>,
}

/// Which subnet each node holds, and the nodes waiting for one.
#[derive(Debug)]
pub struct IpamState {
    set: CidrSet,
    assigned: HashMap<String, Cidr>,
    waiting: BTreeMap<String, Waiting>,
    listing: Option<Listing>,
}

impl IpamState {
    pub fn new(set: CidrSet) -> IpamState {
        IpamState {
            set,
            assigned: HashMap::new(),
            waiting: BTreeMap::new(),
            listing: None,
        }
    }

    /// The subnet this controller believes `node` holds (assigned or observed).
    pub fn assigned(&self, node: &str) -> Option<Cidr> {
        self.assigned.get(node).copied()
    }

    /// The watch starts a new list: nothing is allocated until every listed node's subnet is
    /// known, so a subnet already held is never handed out twice.
    pub fn restart(&mut self) {
        self.listing = Some(Listing::default());
    }

    /// A node was added or changed.
    pub fn observe(&mut self, node: &str, uid: &str, pod_cidr: Option<&str>) -> Vec<Action> {
        let cidr = pod_cidr.filter(|c| !c.is_empty());
        if let Some(listing) = self.listing.as_mut() {
            listing.seen.insert(node.to_string());
            if cidr.is_none() {
                listing
                    .without_cidr
                    .push((node.to_string(), uid.to_string()));
            }
        }
        match cidr {
            Some(c) => {
                self.record(node, c);
                Vec::new()
            }
            None if self.listing.is_some() || self.assigned.contains_key(node) => Vec::new(),
            None => self.allocate_for(node, uid).into_iter().collect(),
        }
    }

    /// The list is complete: nodes that went away meanwhile free their subnets, then the listed
    /// nodes without one get theirs.
    pub fn listed(&mut self) -> Vec<Action> {
        let Some(listing) = self.listing.take() else {
            return Vec::new();
        };
        let gone: Vec<String> = self
            .assigned
            .keys()
            .filter(|n| !listing.seen.contains(*n))
            .cloned()
            .collect();
        for node in gone {
            self.free(&node);
        }
        self.waiting.retain(|n, _| listing.seen.contains(n));
        let mut actions = Vec::new();
        for (node, uid) in listing.without_cidr {
            if !self.assigned.contains_key(&node) {
                actions.extend(self.allocate_for(&node, &uid));
            }
        }
        actions
    }

    /// A node was deleted: its subnet is free, and a waiting node may take it at once.
    pub fn deleted(&mut self, node: &str) -> Vec<Action> {
        self.waiting.remove(node);
        if let Some(listing) = self.listing.as_mut() {
            listing.seen.remove(node);
            listing.without_cidr.retain(|(n, _)| n != node);
        }
        if self.free(node) {
            self.retry()
        } else {
            Vec::new()
        }
    }

    /// The patch giving `cidr` to `node` failed. The subnet is released unless the node took
    /// another meanwhile; a node that still exists waits for the next retry.
    pub fn patch_failed(&mut self, node: &str, uid: &str, cidr: Cidr, node_gone: bool) {
        if self.assigned.get(node) != Some(&cidr) {
            return;
        }
        self.free(node);
        if !node_gone {
            self.waiting.entry(node.to_string()).or_insert(Waiting {
                uid: uid.to_string(),
                notified: false,
            });
        }
    }

    /// Tries again for every waiting node, in name order.
    pub fn retry(&mut self) -> Vec<Action> {
        let names: Vec<(String, String)> = self
            .waiting
            .iter()
            .map(|(n, w)| (n.clone(), w.uid.clone()))
            .collect();
        names
            .into_iter()
            .filter_map(|(node, uid)| self.allocate_for(&node, &uid))
            .collect()
    }

    fn allocate_for(&mut self, node: &str, uid: &str) -> Option<Action> {
        match self.set.allocate() {
            Ok(cidr) => {
                self.waiting.remove(node);
                self.assigned.insert(node.to_string(), cidr);
                Some(Action::Assign {
                    node: node.to_string(),
                    uid: uid.to_string(),
                    cidr,
                })
            }
            Err(_) => {
                let w = self.waiting.entry(node.to_string()).or_insert(Waiting {
                    uid: uid.to_string(),
                    notified: false,
                });
                let first = !w.notified;
                w.notified = true;
                first.then(|| Action::NotAvailable {
                    node: node.to_string(),
                    uid: w.uid.clone(),
                })
            }
        }
    }

    /// Takes note that `node` holds `pod_cidr` (it was set before us, or by our patch).
    fn record(&mut self, node: &str, pod_cidr: &str) {
        self.waiting.remove(node);
        let Some(cidr) = Cidr::parse(pod_cidr) else {
            tracing::warn!(node, pod_cidr, "node has an unparsable podCIDR; left alone");
            return;
        };
        match self.assigned.insert(node.to_string(), cidr) {
            Some(old) if old == cidr => return,
            Some(old) => {
                let _ = self.set.release(old);
            }
            None => {}
        }
        if let Err(err) = self.set.occupy(cidr) {
            tracing::warn!(node, %err, "node's podCIDR is not in the cluster CIDR");
        }
    }

    /// Releases `node`'s subnet; whether it held one.
    fn free(&mut self, node: &str) -> bool {
        match self.assigned.remove(node) {
            Some(cidr) => {
                let _ = self.set.release(cidr);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(cluster: &str, mask: u8) -> IpamState {
        let cluster = Cidr::parse(cluster).expect("cidr");
        IpamState::new(CidrSet::new(cluster, mask).expect("set"))
    }

    fn assign(node: &str, cidr: &str) -> Action {
        Action::Assign {
            node: node.into(),
            uid: format!("uid-{node}"),
            cidr: Cidr::parse(cidr).expect("cidr"),
        }
    }

    fn not_available(node: &str) -> Action {
        Action::NotAvailable {
            node: node.into(),
            uid: format!("uid-{node}"),
        }
    }

    fn observe(s: &mut IpamState, node: &str, cidr: Option<&str>) -> Vec<Action> {
        s.observe(node, &format!("uid-{node}"), cidr)
    }

    #[test]
    fn existing_cidrs_are_known_before_anything_is_allocated() {
        let mut s = state("10.42.0.0/16", 24);
        s.restart();
        assert_eq!(observe(&mut s, "a", None), vec![]);
        assert_eq!(observe(&mut s, "b", Some("10.42.0.0/24")), vec![]);
        assert_eq!(observe(&mut s, "c", Some("10.42.1.0/24")), vec![]);
        assert_eq!(s.listed(), vec![assign("a", "10.42.2.0/24")]);
        assert_eq!(
            observe(&mut s, "d", None),
            vec![assign("d", "10.42.3.0/24")]
        );
    }

    #[test]
    fn our_own_patch_echo_is_not_reallocated() {
        let mut s = state("10.42.0.0/16", 24);
        s.restart();
        s.listed();
        assert_eq!(
            observe(&mut s, "a", None),
            vec![assign("a", "10.42.0.0/24")]
        );
        // A stale event from before the patch landed, then the patched node.
        assert_eq!(observe(&mut s, "a", None), vec![]);
        assert_eq!(observe(&mut s, "a", Some("10.42.0.0/24")), vec![]);
        assert_eq!(
            observe(&mut s, "b", None),
            vec![assign("b", "10.42.1.0/24")]
        );
    }

    #[test]
    fn deletion_frees_the_subnet_for_a_waiting_node() {
        let mut s = state("10.42.0.0/23", 24);
        s.restart();
        s.listed();
        observe(&mut s, "a", None);
        observe(&mut s, "b", None);
        assert_eq!(observe(&mut s, "c", None), vec![not_available("c")]);
        assert_eq!(s.retry(), vec![], "still full; the event is not repeated");
        assert_eq!(s.deleted("a"), vec![assign("c", "10.42.0.0/24")]);
        assert_eq!(s.retry(), vec![]);
    }

    #[test]
    fn failed_patch_releases_and_retries() {
        let mut s = state("10.42.0.0/16", 24);
        s.restart();
        s.listed();
        observe(&mut s, "a", None);
        let cidr = Cidr::parse("10.42.0.0/24").expect("cidr");
        s.patch_failed("a", "uid-a", cidr, false);
        assert_eq!(s.assigned("a"), None);
        assert_eq!(s.retry(), vec![assign("a", "10.42.1.0/24")]);
        // A node deleted meanwhile does not come back.
        s.patch_failed(
            "a",
            "uid-a",
            Cidr::parse("10.42.1.0/24").expect("cidr"),
            true,
        );
        assert_eq!(s.retry(), vec![]);
    }

    #[test]
    fn relist_forgets_nodes_deleted_during_the_gap() {
        let mut s = state("10.42.0.0/24", 24);
        s.restart();
        observe(&mut s, "a", Some("10.42.0.0/24"));
        observe(&mut s, "b", None);
        assert_eq!(s.listed(), vec![not_available("b")]);
        s.restart();
        observe(&mut s, "b", None);
        assert_eq!(s.listed(), vec![assign("b", "10.42.0.0/24")]);
    }

    #[test]
    fn a_changed_cidr_moves_the_reservation() {
        let mut s = state("10.42.0.0/16", 24);
        s.restart();
        observe(&mut s, "a", Some("10.42.5.0/24"));
        s.listed();
        observe(&mut s, "a", Some("10.42.0.0/24"));
        assert_eq!(
            observe(&mut s, "b", None),
            vec![assign("b", "10.42.1.0/24")]
        );
        assert_eq!(s.deleted("a"), vec![]);
        assert_eq!(
            observe(&mut s, "c", None),
            vec![assign("c", "10.42.2.0/24")]
        );
    }

    #[test]
    fn cidr_outside_the_cluster_range_is_tolerated() {
        let mut s = state("10.42.0.0/16", 24);
        s.restart();
        observe(&mut s, "a", Some("192.168.0.0/24"));
        observe(&mut s, "b", Some("garbage"));
        assert_eq!(s.listed(), vec![]);
        assert_eq!(
            observe(&mut s, "c", None),
            vec![assign("c", "10.42.0.0/24")]
        );
    }
}
