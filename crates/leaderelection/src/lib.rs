//! Leader election on a Lease (upstream's `client-go/tools/leaderelection` with a Lease lock),
//! as the scheduler (`kube-system/kube-scheduler`) and the controller manager
//! (`kube-system/kube-controller-manager`) use it: candidates try every 2 s; the holder
//! renews every 2 s and gives up if it cannot renew for 10 s; others take over once the lease
//! was not renewed for its 15 s duration; on shutdown the holder releases it.
//!
//! [`Elector`] is one attempt (`tryAcquireOrRenew`) against a [`LeaseStore`]; [`LeaderElection`]
//! is the explicit candidate/leader state machine stepped every retry period.

use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The namespace of the control plane's leases.
pub const LEASE_NAMESPACE: &str = "kube-system";

/// What the lease says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderRecord {
    /// The holder's identity (empty when released).
    pub holder: String,
    /// How long the holder may go without renewing.
    pub lease_duration_seconds: i32,
    /// When the holder acquired it.
    pub acquire_time: Option<Timestamp>,
    /// When the holder last renewed it.
    pub renew_time: Option<Timestamp>,
    /// How many times it changed hands.
    pub transitions: i32,
}

/// A lease operation that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Someone else changed the lease first: try again next period.
    #[error("the lease was changed concurrently")]
    Conflict,
    /// The API call failed: try again next period.
    #[error("lease request failed: {0}")]
    Api(String),
}

/// A record with the resource version it was read at.
pub type Versioned = (LeaderRecord, String);

/// Where the lease lives.
pub trait LeaseStore: Send + Sync {
    /// The current record, `None` when the lease does not exist.
    fn get(&self) -> BoxFuture<'_, Result<Option<Versioned>, LeaseError>>;
    /// Creates the lease; returns the new resource version.
    fn create(&self, record: LeaderRecord) -> BoxFuture<'_, Result<String, LeaseError>>;
    /// Replaces the lease if still at `resource_version`.
    fn update(
        &self,
        record: LeaderRecord,
        resource_version: String,
    ) -> BoxFuture<'_, Result<String, LeaseError>>;
}

/// Timing (upstream's kube-scheduler defaults).
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// Who we are.
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up.
    pub renew_deadline: Duration,
    /// How often to try.
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// Upstream's defaults for `identity`: 15 s, 10 s, 2 s.
    pub fn new(identity: &str) -> Self {
        Self {
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One participant's view of the lease.
pub struct Elector<S> {
    store: S,
    config: ElectionConfig,
    observed: Option<Versioned>,
    observed_at: Instant,
}

impl<S: LeaseStore> Elector<S> {
    /// A participant using `store`.
    pub fn new(store: S, config: ElectionConfig) -> Self {
        Self {
            store,
            config,
            observed: None,
            observed_at: Instant::now(),
        }
    }

    /// Whether the last observed record names us.
    pub fn is_leader(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|(r, _)| r.holder == self.config.identity)
    }

    fn fresh_record(&self, now: Timestamp) -> LeaderRecord {
        LeaderRecord {
            holder: self.config.identity.clone(),
            lease_duration_seconds: i32::try_from(self.config.lease_duration.as_secs())
                .unwrap_or(i32::MAX),
            acquire_time: Some(now),
            renew_time: Some(now),
            transitions: 0,
        }
    }

    /// Upstream's `tryAcquireOrRenew`: true when we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> bool {
        let now = Timestamp::now();
        let current = match self.store.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "reading the lease failed");
                return false;
            }
        };
        let Some((old, version)) = current else {
            let record = self.fresh_record(now);
            return match self.store.create(record.clone()).await {
                Ok(v) => self.observe(record, v),
                Err(_) => false,
            };
        };
        if self.observed.as_ref().is_none_or(|(r, _)| *r != old) {
            self.observed = Some((old.clone(), version.clone()));
            self.observed_at = Instant::now();
        }
        let valid_for = Duration::from_secs(u64::try_from(old.lease_duration_seconds).unwrap_or(0));
        let ours = old.holder == self.config.identity;
        if !old.holder.is_empty() && !ours && self.observed_at + valid_for > Instant::now() {
            return false;
        }
        let mut record = self.fresh_record(now);
        if ours {
            record.acquire_time = old.acquire_time;
            record.transitions = old.transitions;
        } else {
            record.transitions = old.transitions + 1;
        }
        match self.store.update(record.clone(), version).await {
            Ok(v) => self.observe(record, v),
            Err(e) => {
                tracing::debug!(error = %e, "updating the lease failed");
                false
            }
        }
    }

    fn observe(&mut self, record: LeaderRecord, version: String) -> bool {
        self.observed = Some((record, version));
        self.observed_at = Instant::now();
        true
    }

    /// Gives the lease up (holder empty, duration 1 s) when we hold it.
    pub async fn release(&mut self) -> bool {
        if !self.is_leader() {
            return true;
        }
        let Some((old, version)) = self.observed.clone() else {
            return true;
        };
        let now = Timestamp::now();
        let record = LeaderRecord {
            holder: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(now),
            renew_time: Some(now),
            transitions: old.transitions,
        };
        match self.store.update(record.clone(), version).await {
            Ok(v) => self.observe(record, v),
            Err(_) => false,
        }
    }
}

/// Where the state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Trying to acquire.
    Candidate,
    /// Holding the lease, last renewed at the instant.
    Leading {
        /// When the lease was last renewed.
        renewed: Instant,
    },
}

/// What a step changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing.
    Unchanged,
    /// We acquired the lease.
    Acquired,
    /// We could not renew within the deadline.
    Lost,
}

/// The candidate/leader state machine.
pub struct LeaderElection<S> {
    elector: Elector<S>,
    phase: Phase,
}

impl<S: LeaseStore> LeaderElection<S> {
    /// A candidate.
    pub fn new(store: S, config: ElectionConfig) -> Self {
        Self {
            elector: Elector::new(store, config),
            phase: Phase::Candidate,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// One attempt: acquire as a candidate, renew as the leader.
    pub async fn step(&mut self) -> Transition {
        let ok = self.elector.try_acquire_or_renew().await;
        match (self.phase, ok) {
            (Phase::Candidate, true) => self.lead(Transition::Acquired),
            (Phase::Candidate, false) => Transition::Unchanged,
            (Phase::Leading { .. }, true) => self.lead(Transition::Unchanged),
            (Phase::Leading { renewed }, false) => self.renew_failed(renewed),
        }
    }

    fn lead(&mut self, t: Transition) -> Transition {
        self.phase = Phase::Leading {
            renewed: Instant::now(),
        };
        t
    }

    fn renew_failed(&mut self, renewed: Instant) -> Transition {
        if Instant::now().duration_since(renewed) < self.elector.config.renew_deadline {
            return Transition::Unchanged;
        }
        self.phase = Phase::Candidate;
        Transition::Lost
    }

    /// Steps every retry period, publishing whether we lead, until `cancel`; then releases.
    pub async fn run(mut self, leading: watch::Sender<bool>, cancel: CancellationToken) {
        let period = self.elector.config.retry_period;
        loop {
            match self.step().await {
                Transition::Acquired => {
                    tracing::info!(identity = %self.elector.config.identity, "acquired the lease");
                    let _ = leading.send(true);
                }
                Transition::Lost => {
                    tracing::warn!(identity = %self.elector.config.identity, "lost the lease");
                    let _ = leading.send(false);
                }
                Transition::Unchanged => {}
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(period) => {}
            }
        }
        let _ = leading.send(false);
        if matches!(self.phase, Phase::Leading { .. }) {
            self.elector.release().await;
        }
    }
}

/// Runs `term` for every term during which `identity` holds the lease `kube-system/<lease>`:
/// each term gets a token that is cancelled when the lease is lost (or on `shutdown`), and the
/// next term starts only after the previous one returned. On shutdown the lease is released.
pub async fn run_while_leading<F, Fut>(
    client: kube::Client,
    lease: &str,
    config: ElectionConfig,
    shutdown: CancellationToken,
    mut term: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (tx, mut leading) = watch::channel(false);
    let election = LeaderElection::new(KubeLeaseStore::new(client, lease), config);
    let election = tokio::spawn(election.run(tx, shutdown.clone()));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            ok = wait_until(&mut leading, true) => if !ok { break },
        }
        let token = shutdown.child_token();
        let serving = term(token.clone());
        tokio::pin!(serving);
        tokio::select! {
            () = &mut serving => {}
            _ = wait_until(&mut leading, false) => {
                token.cancel();
                serving.await;
            }
        }
    }
    let _ = election.await;
}

/// Waits until the watched flag equals `value`; false when the sender is gone.
async fn wait_until(rx: &mut watch::Receiver<bool>, value: bool) -> bool {
    rx.wait_for(|v| *v == value).await.is_ok()
}

/// The lease in the API server.
pub struct KubeLeaseStore {
    api: Api<Lease>,
    name: String,
}

impl KubeLeaseStore {
    /// The lease `kube-system/<name>`.
    pub fn new(client: kube::Client, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, LEASE_NAMESPACE),
            name: name.to_owned(),
        }
    }

    fn to_lease(&self, record: &LeaderRecord, resource_version: Option<String>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(LEASE_NAMESPACE.into()),
                resource_version,
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(record.holder.clone()),
                lease_duration_seconds: Some(record.lease_duration_seconds),
                acquire_time: record.acquire_time.map(MicroTime),
                renew_time: record.renew_time.map(MicroTime),
                lease_transitions: Some(record.transitions),
                ..Default::default()
            }),
        }
    }

    fn from_lease(lease: &Lease) -> Versioned {
        let spec = lease.spec.clone().unwrap_or_default();
        let record = LeaderRecord {
            holder: spec.holder_identity.unwrap_or_default(),
            lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
            acquire_time: spec.acquire_time.map(|t| t.0),
            renew_time: spec.renew_time.map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
        };
        (
            record,
            lease.metadata.resource_version.clone().unwrap_or_default(),
        )
    }
}

fn lease_error(e: kube::Error) -> LeaseError {
    match e {
        kube::Error::Api(s) if s.code == 409 => LeaseError::Conflict,
        other => LeaseError::Api(other.to_string()),
    }
}

impl LeaseStore for KubeLeaseStore {
    fn get(&self) -> BoxFuture<'_, Result<Option<Versioned>, LeaseError>> {
        Box::pin(async move {
            let lease = self.api.get_opt(&self.name).await.map_err(lease_error)?;
            Ok(lease.as_ref().map(Self::from_lease))
        })
    }

    fn create(&self, record: LeaderRecord) -> BoxFuture<'_, Result<String, LeaseError>> {
        Box::pin(async move {
            let lease = self.to_lease(&record, None);
            let created = self
                .api
                .create(&PostParams::default(), &lease)
                .await
                .map_err(lease_error)?;
            Ok(created.metadata.resource_version.unwrap_or_default())
        })
    }

    fn update(
        &self,
        record: LeaderRecord,
        resource_version: String,
    ) -> BoxFuture<'_, Result<String, LeaseError>> {
        Box::pin(async move {
            let lease = self.to_lease(&record, Some(resource_version));
            let replaced = self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map_err(lease_error)?;
            Ok(replaced.metadata.resource_version.unwrap_or_default())
        })
    }
}

#[cfg(test)]
mod tests;
