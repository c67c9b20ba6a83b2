//! What the proxy believes is in its table, and the transactions that change it: a full
//! rewrite (start, periodic resync, after a failure) or an incremental one whose size follows
//! the change (only the Service ports given as changed are compared).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::hostport::PodName;
use crate::model::ServicePortName;
use crate::nft::{ElemKey, ElemValue, Op, SetKind};
use crate::render::{Chain, Fragment};

type ElemId = (&'static str, ElemKey);

/// Who a part of the table belongs to: a Service port, or a pod's hostPorts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    Service(ServicePortName),
    HostPorts(PodName),
}

impl From<ServicePortName> for Owner {
    fn from(name: ServicePortName) -> Owner {
        Owner::Service(name)
    }
}

impl From<PodName> for Owner {
    fn from(name: PodName) -> Owner {
        Owner::HostPorts(name)
    }
}

/// The chains and sets the table holds now, by name (from `nft list table`), so that a full
/// rewrite can remove what is no longer wanted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Existing {
    pub chains: BTreeSet<String>,
    /// Each set or map, and whether it is a map.
    pub sets: BTreeMap<String, bool>,
}

/// The table's contents by owner, with each set/map element's claimants (two Service ports
/// may claim the same key, e.g. a shared ClusterIP in `cluster-ips`; the first one wins).
#[derive(Debug, Default)]
pub struct TableState {
    skeleton: Fragment,
    fragments: HashMap<Owner, Fragment>,
    claims: HashMap<ElemId, BTreeMap<Owner, Option<ElemValue>>>,
    /// Chains shared by Service ports (one per endpoint count), with their users; deleted
    /// with their last user.
    shared: BTreeMap<String, Shared>,
}

#[derive(Debug)]
struct Shared {
    chain: Chain,
    users: usize,
}

impl TableState {
    /// A state holding the `skeleton` and no Service.
    pub fn new(skeleton: Fragment) -> TableState {
        TableState {
            skeleton,
            ..TableState::default()
        }
    }

    /// The number of owners (Service ports and pods with hostPorts) held.
    pub fn len(&self) -> usize {
        self.fragments.len()
    }

    /// Whether no owner is held.
    pub fn is_empty(&self) -> bool {
        self.fragments.is_empty()
    }

    /// The fragment of one owner.
    pub fn fragment(&self, owner: &Owner) -> Option<&Fragment> {
        self.fragments.get(owner)
    }

    /// Records `changes` (an owner's new fragment, or `None` when it is gone) and returns
    /// the operations turning the old contents into the new.
    pub fn update<O: Into<Owner>>(&mut self, changes: Vec<(O, Option<Fragment>)>) -> Vec<Op> {
        let mut diff = Diff::default();
        let mut touched: BTreeSet<ElemId> = BTreeSet::new();
        let mut before: HashMap<ElemId, Option<Option<ElemValue>>> = HashMap::new();
        for (name, new) in changes {
            let name: Owner = name.into();
            let old = self.fragments.remove(&name);
            if old.as_ref() == new.as_ref() {
                if let Some(f) = old {
                    self.fragments.insert(name, f);
                }
                continue;
            }
            self.share(&mut diff, old.as_ref(), new.as_ref());
            let empty = Fragment::default();
            diff.objects(
                old.as_ref().unwrap_or(&empty),
                new.as_ref().unwrap_or(&empty),
            );
            for (set, key, _) in old.iter().flat_map(|f| f.elements.iter()) {
                let id = (*set, key.clone());
                before
                    .entry(id.clone())
                    .or_insert_with(|| self.effective(&id));
                if let Some(owners) = self.claims.get_mut(&id) {
                    owners.remove(&name);
                }
                touched.insert(id);
            }
            for (set, key, value) in new.iter().flat_map(|f| f.elements.iter()) {
                let id = (*set, key.clone());
                before
                    .entry(id.clone())
                    .or_insert_with(|| self.effective(&id));
                let owners = self.claims.entry(id.clone()).or_default();
                owners.entry(name.clone()).or_insert_with(|| value.clone());
                touched.insert(id);
            }
            if let Some(f) = new {
                self.fragments.insert(name, f);
            }
        }
        self.unshare(&mut diff);
        for id in touched {
            let after = self.effective(&id);
            if self.claims.get(&id).is_some_and(|o| o.is_empty()) {
                self.claims.remove(&id);
            }
            let was = before.remove(&id).flatten();
            if was == after {
                continue;
            }
            let (set, key) = id;
            if was.is_some() {
                diff.del_elems
                    .push(Op::DeleteElement(set.into(), key.clone()));
            }
            if let Some(value) = after {
                diff.add_elems.push(Op::AddElement(set.into(), key, value));
            }
        }
        diff.into_ops()
    }

    /// Counts the users of shared chains: a chain new to the table is created.
    fn share(&mut self, diff: &mut Diff, old: Option<&Fragment>, new: Option<&Fragment>) {
        for name in old.iter().flat_map(|f| f.shared.keys()) {
            if let Some(s) = self.shared.get_mut(name) {
                s.users = s.users.saturating_sub(1);
            }
        }
        for (name, chain) in new.iter().flat_map(|f| f.shared.iter()) {
            if let Some(s) = self.shared.get_mut(name) {
                s.users += 1;
                continue;
            }
            diff.add_chains.push(Op::AddChain(name.clone(), chain.hook));
            for rule in &chain.rules {
                diff.add_rules.push(Op::AddRule(name.clone(), rule.clone()));
            }
            let chain = chain.clone();
            self.shared.insert(name.clone(), Shared { chain, users: 1 });
        }
    }

    /// Deletes the shared chains that lost their last user (after the elements that
    /// referred to them).
    fn unshare(&mut self, diff: &mut Diff) {
        let unused: Vec<String> = self
            .shared
            .iter()
            .filter(|(_, s)| s.users == 0)
            .map(|(name, _)| name.clone())
            .collect();
        for name in unused {
            self.shared.remove(&name);
            diff.del_chains.push(Op::DeleteChain(name));
        }
    }

    fn effective(&self, id: &ElemId) -> Option<Option<ElemValue>> {
        self.claims.get(id)?.values().next().cloned()
    }

    /// A transaction that replaces whatever the table holds (`existing`, as listed) with the
    /// whole state. It never deletes the table: deleting and re-creating a table with sets in
    /// one transaction has locked up this kernel. Instead it flushes every rule and every
    /// existing set that is still wanted and deletes the sets and chains that are not.
    pub fn full(&self, existing: &Existing) -> Vec<Op> {
        let shared = Fragment {
            chains: self
                .shared
                .iter()
                .map(|(name, s)| (name.clone(), s.chain.clone()))
                .collect(),
            ..Fragment::default()
        };
        let mut ops = vec![Op::AddTable, Op::FlushTable];
        let all = || {
            [&self.skeleton, &shared]
                .into_iter()
                .chain(self.fragments.values())
        };
        let wanted_sets: HashMap<&String, SetKind> = all()
            .flat_map(|f| f.sets.iter().map(|(n, k)| (n, *k)))
            .collect();
        for name in existing.sets.keys() {
            match wanted_sets.get(name) {
                Some(want) => ops.push(Op::FlushSet(name.clone(), *want)),
                None => ops.push(Op::DeleteSet(name.clone())),
            }
        }
        for (name, kind) in &wanted_sets {
            if !existing.sets.contains_key(*name) {
                ops.push(Op::AddSet((*name).clone(), *kind));
            }
        }
        let wanted_chains: BTreeSet<&String> = all().flat_map(|f| f.chains.keys()).collect();
        for name in existing
            .chains
            .iter()
            .filter(|c| !wanted_chains.contains(c))
        {
            ops.push(Op::DeleteChain(name.clone()));
        }
        for f in all() {
            for (name, chain) in &f.chains {
                ops.push(Op::AddChain(name.clone(), chain.hook));
            }
        }
        for f in all() {
            for (name, chain) in &f.chains {
                for rule in &chain.rules {
                    ops.push(Op::AddRule(name.clone(), rule.clone()));
                }
            }
        }
        for (set, key, value) in &self.skeleton.elements {
            ops.push(Op::AddElement((*set).into(), key.clone(), value.clone()));
        }
        let mut elems: Vec<_> = self
            .claims
            .iter()
            .filter_map(|(id, owners)| Some((id, owners.values().next()?)))
            .collect();
        elems.sort_by(|a, b| a.0.cmp(b.0));
        for ((set, key), value) in elems {
            ops.push(Op::AddElement((*set).into(), key.clone(), value.clone()));
        }
        ops
    }
}

/// Operations collected by phase, emitted in an order the kernel accepts in one transaction:
/// new objects exist before anything refers to them, references are gone before their
/// targets are deleted.
#[derive(Default)]
struct Diff {
    add_chains: Vec<Op>,
    add_sets: Vec<Op>,
    flush_chains: Vec<Op>,
    del_elems: Vec<Op>,
    del_sets: Vec<Op>,
    readd_sets: Vec<Op>,
    add_rules: Vec<Op>,
    add_elems: Vec<Op>,
    del_chains: Vec<Op>,
}

impl Diff {
    fn objects(&mut self, old: &Fragment, new: &Fragment) {
        for (name, chain) in &new.chains {
            match old.chains.get(name) {
                Some(prev) if prev == chain => continue,
                Some(_) => self.flush_chains.push(Op::FlushChain(name.clone())),
                None => self.add_chains.push(Op::AddChain(name.clone(), chain.hook)),
            }
            for rule in &chain.rules {
                self.add_rules.push(Op::AddRule(name.clone(), rule.clone()));
            }
        }
        for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
            self.flush_chains.push(Op::FlushChain(name.clone()));
            self.del_chains.push(Op::DeleteChain(name.clone()));
        }
        for (name, kind) in &new.sets {
            match old.sets.get(name) {
                Some(prev) if prev == kind => {}
                Some(_) => {
                    self.del_sets.push(Op::DeleteSet(name.clone()));
                    self.readd_sets.push(Op::AddSet(name.clone(), *kind));
                }
                None => self.add_sets.push(Op::AddSet(name.clone(), *kind)),
            }
        }
        for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
            self.del_sets.push(Op::DeleteSet(name.clone()));
        }
    }

    fn into_ops(self) -> Vec<Op> {
        let mut ops = self.add_chains;
        ops.extend(self.add_sets);
        ops.extend(self.flush_chains);
        ops.extend(self.del_elems);
        ops.extend(self.del_sets);
        ops.extend(self.readd_sets);
        ops.extend(self.add_rules);
        ops.extend(self.add_elems);
        ops.extend(self.del_chains);
        ops
    }
}
