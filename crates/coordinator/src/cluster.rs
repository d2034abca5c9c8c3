//! The coordinator's view of the cluster: the ring of live workers, a channel to each,
//! and the workers this coordinator saw fail since their last report.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use polaroid_store::now_unix_ms;
use tonic::transport::{Channel, Endpoint};

use crate::config::{CoordinatorConfig, RoutingPolicy};
use crate::error::CoordinatorError;
use crate::membership::{Member, Membership};
use crate::ring::Ring;

/// A worker a call can be sent to.
#[derive(Clone)]
pub struct Target {
    pub worker_id: Arc<str>,
    pub channel: Channel,
}

/// The live members and the ring built from them.
#[derive(Default)]
struct View {
    ring: Ring,
    members: HashMap<Arc<str>, Member>,
}

pub struct Cluster {
    membership: Arc<dyn Membership>,
    routing: RoutingPolicy,
    virtual_nodes: usize,
    lease: Duration,
    view: RwLock<Arc<View>>,
    channels: Mutex<HashMap<String, Channel>>,
    /// Workers whose calls failed at the transport, with when: skipped until they report
    /// again (a report renews the lease past the failure).
    suspects: Mutex<HashMap<Arc<str>, u64>>,
    next_round_robin: AtomicUsize,
}

impl Cluster {
    pub fn new(membership: Arc<dyn Membership>, config: &CoordinatorConfig) -> Self {
        Self {
            membership,
            routing: config.routing,
            virtual_nodes: config.virtual_nodes,
            lease: config.worker_lease(),
            view: RwLock::new(Arc::default()),
            channels: Mutex::new(HashMap::new()),
            suspects: Mutex::new(HashMap::new()),
            next_round_robin: AtomicUsize::new(0),
        }
    }

    pub fn membership(&self) -> &dyn Membership {
        &*self.membership
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rebuilds the ring from the membership records.
    pub async fn refresh(&self) -> Result<(), CoordinatorError> {
        let live = self.membership.live().await?;
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let usable: Vec<Member> = {
            let mut suspects = self.suspects.lock().unwrap_or_else(|p| p.into_inner());
            // A report after the failure renews the lease past failure + lease: trust it again.
            suspects.retain(|id, failed_at| {
                live.iter().any(|m| {
                    *m.worker_id == **id
                        && m.lease_expires_unix_ms < failed_at.saturating_add(lease_ms)
                })
            });
            live.into_iter()
                .filter(|m| !suspects.contains_key(m.worker_id.as_str()))
                .collect()
        };
        let current = self.view();
        let unchanged = current.members.len() == usable.len()
            && usable.iter().all(|m| {
                current
                    .members
                    .get(m.worker_id.as_str())
                    .is_some_and(|old| old.address == m.address)
            });
        let ring = if unchanged {
            current.ring.clone()
        } else {
            Ring::new(
                usable.iter().map(|m| m.worker_id.as_str()),
                self.virtual_nodes,
            )
        };
        if !unchanged {
            tracing::info!(workers = ?ring.workers(), "ring changed");
            let addresses: Vec<&str> = usable.iter().map(|m| m.address.as_str()).collect();
            let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            channels.retain(|address, _| addresses.contains(&address.as_str()));
        }
        metrics::gauge!("polaroid_coordinator_workers_live").set(usable.len() as f64);
        let members = usable
            .into_iter()
            .map(|m| (Arc::from(m.worker_id.as_str()), m))
            .collect();
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(View { ring, members });
        Ok(())
    }

    /// Skips `worker_id` until it reports again.
    pub fn suspect(&self, worker_id: &Arc<str>) {
        tracing::warn!(worker = %worker_id, "worker unreachable; routing around it");
        self.suspects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(worker_id.clone(), now_unix_ms());
        let current = self.view();
        let members: HashMap<Arc<str>, Member> = current
            .members
            .iter()
            .filter(|(id, _)| *id != worker_id)
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        let ring = Ring::new(members.keys().map(|id| &**id), self.virtual_nodes);
        metrics::gauge!("polaroid_coordinator_workers_live").set(members.len() as f64);
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(View { ring, members });
    }

    /// The workers calls are routed to now, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        let mut members: Vec<Member> = self.view().members.values().cloned().collect();
        members.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        members
    }

    pub fn live_workers(&self) -> usize {
        self.view().members.len()
    }

    /// The worker for a call routed by `key`, skipping those already `tried`.
    pub fn pick(&self, key: u64, tried: &[Arc<str>]) -> Result<Target, CoordinatorError> {
        let view = self.view();
        let worker_id = match self.routing {
            RoutingPolicy::Affinity => view.ring.first_available(key, tried),
            RoutingPolicy::RoundRobin => {
                let workers: Vec<&Arc<str>> = view
                    .ring
                    .workers()
                    .iter()
                    .filter(|w| !tried.contains(w))
                    .collect();
                (!workers.is_empty()).then(|| {
                    let turn = self.next_round_robin.fetch_add(1, Ordering::Relaxed);
                    workers[turn % workers.len()].clone()
                })
            }
        }
        .ok_or(CoordinatorError::NoLiveWorkers)?;
        let member = view
            .members
            .get(&worker_id)
            .ok_or(CoordinatorError::NoLiveWorkers)?;
        Ok(Target {
            channel: self.channel(&member.address)?,
            worker_id,
        })
    }

    fn channel(&self, address: &str) -> Result<Channel, CoordinatorError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| CoordinatorError::BadWorkerAddress(format!("{address}: {e}")))?
            // A worker that does not answer a connect quickly is treated as down.
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_adaptive_window(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// Rebuilds the ring every `every`, so that expired leases leave it and other
/// coordinators' registrations (through Redis) join it.
pub async fn refresh_every(cluster: Arc<Cluster>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = cluster.refresh().await {
            tracing::warn!(error = %e, "reading membership failed; keeping the last ring");
        }
    }
}
