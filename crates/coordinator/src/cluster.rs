//! The coordinator's view of the cluster: the ring of live workers, connections to each,
//! and the workers this coordinator saw fail since their last report.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use polaroid_auth::tls::ClientTls;
use polaroid_server::InProcess;
use tonic::transport::{Channel, Endpoint};

use crate::config::{CoordinatorConfig, RoutingPolicy};
use crate::error::CoordinatorError;
use crate::link::WorkerLink;
use crate::membership::{Member, Membership};
use crate::ring::Ring;

/// A worker a call can be sent to.
#[derive(Clone)]
pub struct Target {
    pub worker_id: Arc<str>,
    /// For forwarded DataFrame calls.
    pub link: Arc<WorkerLink>,
    /// For the coordinator's own calls (job validation).
    pub channel: Channel,
}

/// The live members and the ring built from them.
#[derive(Default)]
struct View {
    /// Which membership read this view comes from: an older read never replaces it.
    generation: u64,
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
    links: Mutex<HashMap<String, Arc<WorkerLink>>>,
    /// Workers are dialed over TLS with this (`tls.ca_file`), presenting this
    /// coordinator's certificate; `None`: plaintext.
    tls: Option<ClientTls>,
    /// The stacks of workers in this process (`polaroid standalone`), called without a
    /// socket.
    in_process: Option<InProcess>,
    /// Workers whose calls failed at the transport, with the lease end they had then:
    /// skipped until a report renews it (compared in the membership's clock, not ours).
    /// Held while a new view is computed and installed, which serializes the two.
    suspects: Mutex<HashMap<Arc<str>, u64>>,
    reads: AtomicU64,
    next_round_robin: AtomicUsize,
    /// When a call last found no live worker to go to (ms since the Unix epoch; 0:
    /// never): load the workers' reports cannot show, which KEDA's scaler counts.
    last_unserved_unix_ms: AtomicU64,
}

impl Cluster {
    pub fn new(
        membership: Arc<dyn Membership>,
        config: &CoordinatorConfig,
        tls: Option<ClientTls>,
    ) -> Self {
        Self {
            membership,
            routing: config.routing,
            virtual_nodes: config.virtual_nodes,
            lease: config.worker_lease(),
            view: RwLock::new(Arc::default()),
            channels: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            tls,
            in_process: None,
            suspects: Mutex::new(HashMap::new()),
            next_round_robin: AtomicUsize::new(0),
            reads: AtomicU64::new(0),
            last_unserved_unix_ms: AtomicU64::new(0),
        }
    }

    /// Calls the workers that published their stacks in `registry` through it.
    pub fn with_in_process(mut self, registry: InProcess) -> Self {
        self.in_process = Some(registry);
        self
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
        let generation = self.reads.fetch_add(1, Ordering::Relaxed) + 1;
        let live = self.membership.live().await?;
        let mut suspects = self.suspects.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.view();
        if current.generation > generation {
            // A later read already installed its view.
            return Ok(());
        }
        suspects.retain(|id, lease_then| {
            live.iter()
                .any(|m| *m.worker_id == **id && m.lease_expires_unix_ms <= *lease_then)
        });
        let usable: Vec<Member> = live
            .into_iter()
            .filter(|m| !suspects.contains_key(m.worker_id.as_str()))
            .collect();
        self.install(generation, &current, usable);
        Ok(())
    }

    /// Skips `worker_id` until it reports again.
    pub fn suspect(&self, worker_id: &Arc<str>) {
        tracing::warn!(worker = %worker_id, "worker unreachable; routing around it");
        metrics::counter!("polaroid_coordinator_workers_suspected_total").increment(1);
        let mut suspects = self.suspects.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.view();
        let Some(member) = current.members.get(worker_id) else {
            return;
        };
        suspects.insert(worker_id.clone(), member.lease_expires_unix_ms);
        let usable = current
            .members
            .values()
            .filter(|m| *m.worker_id != **worker_id)
            .cloned()
            .collect();
        self.install(current.generation, &current, usable);
    }

    /// Installs a view of `usable` members; callers hold the suspects lock.
    fn install(&self, generation: u64, current: &View, usable: Vec<Member>) {
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
            let ring = Ring::new(
                usable.iter().map(|m| m.worker_id.as_str()),
                self.virtual_nodes,
            );
            tracing::info!(workers = ?ring.workers(), "ring changed");
            // Connections to workers that left go with them: a coordinator that lives
            // through many worker restarts (new pods, new addresses) keeps one per live
            // worker, not one per address it has ever seen. Calls in flight hold their
            // own reference and finish on it.
            let addresses: Vec<&str> = usable.iter().map(|m| m.address.as_str()).collect();
            let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            channels.retain(|address, _| addresses.contains(&address.as_str()));
            drop(channels);
            let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            links.retain(|address, _| addresses.contains(&address.as_str()));
            metrics::gauge!("polaroid_coordinator_worker_links").set(links.len() as f64);
            ring
        };
        metrics::gauge!("polaroid_coordinator_workers_live").set(usable.len() as f64);
        for member in &usable {
            let worker = member.worker_id.clone();
            let load = member.load;
            metrics::gauge!("polaroid_coordinator_worker_in_flight_calls", "worker" => worker.clone())
                .set(load.in_flight_calls as f64);
            metrics::gauge!("polaroid_coordinator_worker_cache_bytes", "worker" => worker.clone())
                .set(load.cache_bytes as f64);
            metrics::gauge!("polaroid_coordinator_worker_cpu_cores", "worker" => worker.clone())
                .set(load.cpu_cores);
            metrics::gauge!("polaroid_coordinator_worker_memory_bytes", "worker" => worker)
                .set(load.memory_bytes as f64);
        }
        let members = usable
            .into_iter()
            .map(|m| (Arc::from(m.worker_id.as_str()), m))
            .collect();
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(View {
            generation,
            ring,
            members,
        });
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

    /// When a call last found no live worker at all (ms since the Unix epoch; 0: never).
    pub fn last_unserved_unix_ms(&self) -> u64 {
        self.last_unserved_unix_ms.load(Ordering::Relaxed)
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
        .ok_or_else(|| {
            if view.members.is_empty() {
                self.last_unserved_unix_ms
                    .store(polaroid_store::now_unix_ms(), Ordering::Relaxed);
            }
            CoordinatorError::NoLiveWorkers
        })?;
        let member = view
            .members
            .get(&worker_id)
            .ok_or(CoordinatorError::NoLiveWorkers)?;
        Ok(Target {
            link: self.link(&member.address),
            channel: self.channel(&member.address)?,
            worker_id,
        })
    }

    fn link(&self, address: &str) -> Arc<WorkerLink> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(link) = links.get(address) {
            return link.clone();
        }
        let link = Arc::new(WorkerLink::new(
            address,
            self.tls.clone(),
            self.in_process.clone(),
        ));
        links.insert(address.to_owned(), link.clone());
        metrics::gauge!("polaroid_coordinator_worker_links").set(links.len() as f64);
        link
    }

    fn channel(&self, address: &str) -> Result<Channel, CoordinatorError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let bad = |e: tonic::transport::Error| {
            CoordinatorError::BadWorkerAddress(format!("{address}: {e}"))
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(bad)?
            // A worker that does not answer a connect quickly is treated as down.
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            // Only the coordinator's own small calls (job validation) use this channel;
            // forwarded calls and their results go through `link`.
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            endpoint = tls.endpoint(endpoint).map_err(bad)?;
        }
        let channel = endpoint.connect_lazy();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::membership::MemoryMembership;
    use polaroid_proto::v1::WorkerLoad;

    fn connections(cluster: &Cluster) -> (usize, usize) {
        let links = cluster.links.lock().unwrap().len();
        let channels = cluster.channels.lock().unwrap().len();
        (links, channels)
    }

    #[tokio::test]
    async fn connections_to_workers_that_left_are_forgotten() {
        let membership = Arc::new(MemoryMembership::default());
        let cluster = Cluster::new(membership.clone(), &CoordinatorConfig::default(), None);
        let lease = Duration::from_secs(60);
        // Workers come and go, each restart at a new address, as pods do.
        for generation in 0..20u16 {
            for slot in 0..3u16 {
                let address = format!("127.0.0.1:{}", 20_000 + generation * 3 + slot);
                membership
                    .renew(&format!("w{slot}"), &address, WorkerLoad::default(), lease)
                    .await
                    .unwrap();
            }
            cluster.refresh().await.unwrap();
            for key in 0..64 {
                cluster.pick(key, &[]).unwrap();
            }
            assert_eq!(connections(&cluster), (3, 3), "generation {generation}");
        }
        membership.leave("w1").await.unwrap();
        cluster.refresh().await.unwrap();
        assert_eq!(connections(&cluster), (2, 2));
    }
}
