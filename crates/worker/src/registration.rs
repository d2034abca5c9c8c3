//! Cluster membership from the worker's side: load reports to the coordinator every few
//! seconds (which renew the worker's lease), and leaving the ring when draining.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use polaroid_auth::WithClusterCredential;
use polaroid_observability::InFlight;
use polaroid_proto::v1 as pb;
use polaroid_proto::v1::cluster_service_client::ClusterServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::engine::Engine;

pub struct Registration {
    client: ClusterServiceClient<InterceptedService<Channel, WithClusterCredential>>,
    worker_id: String,
    address: String,
    engine: Arc<Engine>,
    in_flight: InFlight,
    jobs_running: Arc<AtomicU32>,
    /// Whether the coordinator accepted the latest report.
    pub registered: Arc<AtomicBool>,
}

/// A lazy channel to the coordinator at `url`, over TLS with `tls` (an `https://` URL).
pub fn channel(
    url: &str,
    tls: Option<&polaroid_auth::tls::ClientTls>,
) -> Result<Channel, tonic::transport::Error> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = tls.endpoint(endpoint)?;
    }
    Ok(endpoint.connect_lazy())
}

impl Registration {
    pub fn new(
        channel: Channel,
        worker_id: String,
        address: String,
        engine: Arc<Engine>,
        in_flight: InFlight,
        jobs_running: Arc<AtomicU32>,
        credential: WithClusterCredential,
    ) -> Self {
        Self {
            // Load reports and leaving are internal calls: they carry the cluster credential.
            client: ClusterServiceClient::with_interceptor(channel, credential),
            worker_id,
            address,
            engine,
            in_flight,
            jobs_running,
            registered: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Reports load every `interval` until `stop` changes. A coordinator that is down (or
    /// restarting) is retried at the next tick; nothing else depends on it. Stopping waits
    /// for a report in flight, so none can arrive after the worker leaves.
    pub async fn report_every(
        self: Arc<Self>,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut cpu = CpuClock::start();
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.changed() => return,
            }
            let resident = resident_bytes().unwrap_or(0);
            // Exported too, beside the limit, so an alert can compare them per pod.
            metrics::gauge!("polaroid_worker_memory_bytes").set(resident as f64);
            metrics::gauge!("polaroid_worker_memory_limit_bytes").set(memory_limit_bytes());
            let report = pb::LoadReport {
                worker_id: self.worker_id.clone(),
                address: self.address.clone(),
                load: Some(pb::WorkerLoad {
                    in_flight_calls: self.in_flight.get(),
                    cache_bytes: self.engine.cache().bytes() as u64,
                    cpu_cores: cpu.cores_since_last(),
                    memory_bytes: resident,
                    jobs_running: u64::from(self.jobs_running.load(Ordering::Relaxed)),
                }),
            };
            let accepted = match self.client.clone().report_load(report).await {
                Ok(_) => true,
                Err(status) => {
                    tracing::warn!(%status, "load report to the coordinator failed");
                    false
                }
            };
            if self.registered.swap(accepted, Ordering::Relaxed) != accepted {
                tracing::info!(registered = accepted, worker = %self.worker_id, "membership changed");
            }
        }
    }

    /// Leaves the ring: new calls go to other workers from now on.
    pub async fn leave(&self) {
        self.registered.store(false, Ordering::Relaxed);
        let request = pb::LeaveRequest {
            worker_id: self.worker_id.clone(),
        };
        if let Err(status) = self.client.clone().leave(request).await {
            // The lease runs out instead; the coordinator fails calls over meanwhile.
            tracing::warn!(%status, "leaving the ring failed");
        }
    }
}

/// This process's CPU time, from /proc (Linux); zero elsewhere.
struct CpuClock {
    at: Instant,
    cpu_secs: f64,
}

impl CpuClock {
    fn start() -> Self {
        Self {
            at: Instant::now(),
            cpu_secs: process_cpu_secs().unwrap_or(0.0),
        }
    }

    /// Cores kept busy on average since the previous call.
    fn cores_since_last(&mut self) -> f64 {
        let now = Instant::now();
        let cpu_secs = process_cpu_secs().unwrap_or(self.cpu_secs);
        let wall = now.duration_since(self.at).as_secs_f64();
        let cores = if wall > 0.0 {
            (cpu_secs - self.cpu_secs).max(0.0) / wall
        } else {
            0.0
        };
        (self.at, self.cpu_secs) = (now, cpu_secs);
        cores
    }
}

/// User plus system CPU seconds of this process.
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is parenthesized and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // /proc reports clock ticks of USER_HZ, which Linux fixes at 100 for user space.
    Some((utime + stime) / 100.0)
}

/// Resident memory of this process.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The memory limit of this process's cgroup (its container's limit); infinite without
/// one, so that the series exists and a ratio to it reads 0.
fn memory_limit_bytes() -> f64 {
    memory_limit_in(
        &std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
        |path| std::fs::read_to_string(path).ok(),
    )
    .map_or(f64::INFINITY, |limit| limit as f64)
}

/// The limit for the cgroups `/proc/self/cgroup` lists, read through `read`: v2's
/// `memory.max` (`max`: none), else v1's `memory.limit_in_bytes` (no limit: a number near
/// i64::MAX).
fn memory_limit_in(cgroups: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let limit = |text: String| {
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|limit| *limit < 1 << 60)
    };
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let file = match controllers {
            "" => format!("/sys/fs/cgroup{path}/memory.max"),
            v1 if v1.split(',').any(|c| c == "memory") => {
                format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
            }
            _ => continue,
        };
        // Inside a container's cgroup namespace the path is `/` and the files are at
        // the mount's root, which the same format names.
        let file = file.replace("//", "/");
        if let Some(found) = read(&file).and_then(limit) {
            return Some(found);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_limit_is_read_from_this_process_cgroup() {
        let files = |path: &str| {
            match path {
                "/sys/fs/cgroup/kubepods/pod1/memory.max" => Some("1073741824\n"),
                "/sys/fs/cgroup/unlimited/memory.max" => Some("max\n"),
                "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes" => Some("536870912\n"),
                "/sys/fs/cgroup/memory/memory.limit_in_bytes" => Some("9223372036854771712\n"),
                _ => None,
            }
            .map(str::to_owned)
        };
        assert_eq!(memory_limit_in("0::/kubepods/pod1\n", files), Some(1 << 30));
        assert_eq!(memory_limit_in("0::/unlimited\n", files), None);
        assert_eq!(
            memory_limit_in("4:memory:/docker/abc\n1:cpu:/docker/abc\n0::/\n", files),
            Some(1 << 29)
        );
        assert_eq!(memory_limit_in("4:cpu,memory:/\n", files), None);
        assert_eq!(memory_limit_in("", files), None);
        // On this machine: a number, or infinite, never an error.
        assert!(memory_limit_bytes() > 0.0);
    }

    #[test]
    fn proc_readings_are_plausible_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().is_some_and(|b| b > 1024 * 1024));
            let mut clock = CpuClock::start();
            let spin = Instant::now();
            let mut x = 0u64;
            while spin.elapsed() < Duration::from_millis(200) {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            std::hint::black_box(x);
            let cores = clock.cores_since_last();
            assert!(cores > 0.05 && cores < 4.0, "{cores}");
        }
    }
}
