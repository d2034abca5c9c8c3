//! Keeping the machine's CPUs awake between calls that arrive close together.
//!
//! A CPU with nothing to run halts, and on a virtual machine whose guest kernel does not
//! poll before halting, waking a halted vCPU costs tens of microseconds. A call wakes one
//! twice: the server's thread when the request arrives, the client's when the reply does.
//! While calls keep coming, [`KeepWarm`] runs one thread per CPU that does nothing but
//! yield, so those wakes find a running CPU. How long it stays warm after a call adapts
//! to the gaps between calls, as Linux's guest halt polling does: it grows while the next
//! call comes within the limit and shrinks when it does not, so a server whose calls are
//! far apart soon stops spinning. Under a CPU quota it stays off: spinning would spend
//! the quota and get the process throttled for milliseconds, far more than it saves.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the warm period starts growing from, as a fraction of the limit.
const GROW_FROM_DIVISOR: u64 = 4;
/// The longest warm period allowed, whatever the setting: spinning longer than this
/// after a call costs more CPU than any wake it could save.
pub const MAX_WARM: Duration = Duration::from_millis(10);

/// The warm period after a call that ended `gap` before the next one started, given the
/// period `window` in force then and the limit `max` (all in microseconds).
fn next_window(window: u64, gap: u64, max: u64) -> u64 {
    if window > 0 && gap <= window {
        // Warm long enough: the next call found a running CPU.
        window
    } else if gap <= max {
        // A little longer would have caught it.
        window
            .saturating_mul(2)
            .max(max / GROW_FROM_DIVISOR)
            .min(max)
    } else {
        // Too far apart to be worth spinning for.
        window / 2
    }
}

/// The threads that keep the CPUs warm; stopped and joined when dropped.
pub struct KeepWarm {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    /// The longest warm period, in microseconds; 0 turns keeping warm off.
    max_micros: u64,
    epoch: Instant,
    /// The current warm period, in microseconds.
    window_micros: AtomicU64,
    /// When the last call ended, in microseconds since `epoch` (0: none yet).
    last_end_micros: AtomicU64,
    /// Threads waiting on `wake` (a call ending, or a call in flight leaving, wakes them).
    sleeping: AtomicU64,
    /// Spins begun since the start (for tests and the curious).
    spins: AtomicU64,
    /// Calls started and not yet ended or dropped.
    in_flight: AtomicU64,
    /// Keep-warm threads started: with at least as many calls in flight, the CPUs are
    /// busy serving them and spinning would only take time from them.
    threads: u64,
    stop: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl KeepWarm {
    /// Keeps warm for at most `max` (capped at [`MAX_WARM`]) after a call, with one
    /// thread per CPU this process may use. A zero `max`, or a CPU quota on the
    /// process's cgroup, starts no thread and leaves calls untouched.
    pub fn start(max: Duration) -> std::io::Result<Self> {
        if max.is_zero() {
            return Self::with_threads(Duration::ZERO, 0);
        }
        if let Some(quota) = cgroup_cpu_quota() {
            tracing::info!(%quota, "keeping CPUs warm is off: the process has a CPU quota");
            return Self::with_threads(Duration::ZERO, 0);
        }
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        Self::with_threads(max.min(MAX_WARM), threads)
    }

    fn with_threads(max: Duration, threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::new(max, threads));
        let mut keep_warm = Self {
            shared: shared.clone(),
            threads: Vec::with_capacity(threads),
        };
        for _ in 0..threads {
            let shared = shared.clone();
            // On failure, `keep_warm` drops here and stops the threads started so far.
            keep_warm.threads.push(
                std::thread::Builder::new()
                    .name("polaroid-keep-warm".into())
                    .spawn(move || shared.run())?,
            );
        }
        Ok(keep_warm)
    }

    /// The tower layer that tells this when calls start and end.
    pub fn layer(&self) -> KeepWarmLayer {
        KeepWarmLayer {
            shared: (self.shared.max_micros > 0).then(|| self.shared.clone()),
        }
    }

    /// The current warm period.
    pub fn window(&self) -> Duration {
        Duration::from_micros(self.shared.window_micros.load(Ordering::Relaxed))
    }

    /// Threads spinning now (not waiting for a call).
    pub fn spinning(&self) -> usize {
        let sleeping = self.shared.sleeping.load(Ordering::SeqCst) as usize;
        self.threads.len().saturating_sub(sleeping)
    }

    /// Spins begun so far, by all threads.
    pub fn spins(&self) -> u64 {
        self.shared.spins.load(Ordering::SeqCst)
    }
}

impl Drop for KeepWarm {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.wake.notify_all();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn new(max: Duration, threads: usize) -> Self {
        Self {
            max_micros: u64::try_from(max.as_micros()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
            window_micros: AtomicU64::new(0),
            last_end_micros: AtomicU64::new(0),
            sleeping: AtomicU64::new(0),
            spins: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            threads: threads as u64,
            stop: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    fn now_micros(&self) -> u64 {
        // Never 0, which means "no call yet".
        u64::try_from(self.epoch.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn call_started(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let last_end = self.last_end_micros.load(Ordering::Relaxed);
        if last_end == 0 {
            return;
        }
        let gap = self.now_micros().saturating_sub(last_end);
        let window = self.window_micros.load(Ordering::Relaxed);
        // Concurrent calls may race here; any of their answers is a fair estimate.
        self.window_micros
            .store(next_window(window, gap, self.max_micros), Ordering::Relaxed);
    }

    /// A call's reply is ready (and it is no longer counted in flight).
    fn call_ended(&self) {
        self.last_end_micros
            .store(self.now_micros(), Ordering::SeqCst);
        // A `call_started` raising the window from 0 just now may be missed: that costs
        // one warm period, no more. Waking is only worth it when a thread would spin.
        if self.sleeping.load(Ordering::SeqCst) > 0 && self.warm() {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.wake.notify_all();
        }
    }

    /// Whether the last call ended less than the warm period ago, and fewer calls are in
    /// flight than there are keep-warm threads.
    fn warm(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) < self.threads && self.recently_ended()
    }

    fn recently_ended(&self) -> bool {
        let last_end = self.last_end_micros.load(Ordering::SeqCst);
        let window = self.window_micros.load(Ordering::Relaxed);
        last_end != 0 && window > 0 && self.now_micros() < last_end.saturating_add(window)
    }

    /// A keep-warm thread: waits for a call to end, then yields until the warm period
    /// after the last call has passed.
    fn run(&self) {
        loop {
            {
                let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
                // Counted as sleeping before looking, so that a call ending in between
                // either is seen here or sees this thread sleeping and wakes it.
                self.sleeping.fetch_add(1, Ordering::SeqCst);
                while !self.stop.load(Ordering::SeqCst) && !self.warm() {
                    guard = self.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
                }
                self.sleeping.fetch_sub(1, Ordering::SeqCst);
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            self.spins.fetch_add(1, Ordering::SeqCst);
            let started = Instant::now();
            while !self.stop.load(Ordering::Relaxed) && self.warm() {
                // Gives the CPU to anything else that wants it; the point is only that
                // the CPU does not halt.
                std::thread::yield_now();
            }
            metrics::histogram!("polaroid_runtime_keep_warm_spin_seconds")
                .record(started.elapsed().as_secs_f64());
        }
    }
}

/// Tells a [`KeepWarm`] when each call starts and ends.
#[derive(Clone)]
pub struct KeepWarmLayer {
    shared: Option<Arc<Shared>>,
}

impl<S> tower::Layer<S> for KeepWarmLayer {
    type Service = KeepWarmService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeepWarmService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A service whose calls a [`KeepWarm`] hears of.
#[derive(Clone)]
pub struct KeepWarmService<S> {
    inner: S,
    shared: Option<Arc<Shared>>,
}

impl<S, R> tower::Service<R> for KeepWarmService<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CallEnds<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let in_flight = self.shared.clone().map(|shared| {
            shared.call_started();
            InFlight(shared)
        });
        CallEnds {
            inner: self.inner.call(request),
            in_flight,
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's response future; its completion ends the call. For a streaming reply
    /// that is when its headers are ready, not when its last message is sent: a long
    /// stream then looks like a long gap before the next call, which only shrinks the
    /// warm period. A call dropped before its reply ends nothing.
    pub struct CallEnds<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

/// A call counted in flight until this is dropped, with its future or when it ends.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let shared = &self.0;
        let before = shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        // Threads that waited only because every one of them had a call in flight may
        // spin again (a call that ended wakes them in `call_ended`; a dropped one here).
        if before == shared.threads
            && shared.sleeping.load(Ordering::SeqCst) > 0
            && shared.recently_ended()
        {
            let _guard = shared.lock.lock().unwrap_or_else(|p| p.into_inner());
            shared.wake.notify_all();
        }
    }
}

impl<F: Future> Future for CallEnds<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let Some(in_flight) = this.in_flight.take() {
            let shared = in_flight.0.clone();
            drop(in_flight);
            shared.call_ended();
        }
        Poll::Ready(output)
    }
}

/// The CPU quota of this process's own cgroup (v2 `cpu.max`, or v1 `cpu.cfs_quota_us`),
/// as read from /proc and /sys; `None` when there is none or it cannot be read. Inside a
/// container the cgroup's files are often mounted at the root of the hierarchy rather
/// than under the path /proc names, so the root is read when that path is missing.
/// Quotas on parent cgroups are not looked for.
fn cgroup_cpu_quota() -> Option<String> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let first_readable =
        |paths: Vec<String>| paths.iter().find_map(|p| std::fs::read_to_string(p).ok());
    membership.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let path = path.trim_end_matches('/');
        if controllers.is_empty() {
            let max = first_readable(vec![
                format!("/sys/fs/cgroup{path}/cpu.max"),
                "/sys/fs/cgroup/cpu.max".to_owned(),
            ])?;
            quota_v2(&max)
        } else if controllers.split(',').any(|c| c == "cpu") {
            let quota = first_readable(
                ["cpu", "cpu,cpuacct"]
                    .iter()
                    .flat_map(|mount| {
                        [
                            format!("/sys/fs/cgroup/{mount}{path}/cpu.cfs_quota_us"),
                            format!("/sys/fs/cgroup/{mount}/cpu.cfs_quota_us"),
                        ]
                    })
                    .collect(),
            )?;
            quota_v1(&quota)
        } else {
            None
        }
    })
}

/// A quota from cgroup v2's `cpu.max` (`max 100000` is none).
fn quota_v2(cpu_max: &str) -> Option<String> {
    let quota = cpu_max.split_whitespace().next()?;
    (quota != "max").then(|| cpu_max.trim().to_owned())
}

/// A quota from cgroup v1's `cpu.cfs_quota_us` (`-1` is none).
fn quota_v1(cfs_quota_us: &str) -> Option<String> {
    let quota: i64 = cfs_quota_us.trim().parse().ok()?;
    (quota > 0).then(|| format!("{quota} µs per period"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    const MAX: u64 = 200;

    #[test]
    fn the_window_grows_while_calls_come_within_the_limit() {
        assert_eq!(next_window(0, 30, MAX), 50);
        assert_eq!(next_window(0, 0, MAX), 50, "back to back");
        assert_eq!(next_window(50, 80, MAX), 100);
        assert_eq!(next_window(100, 150, MAX), 200);
        assert_eq!(next_window(200, 199, MAX), 200);
    }

    #[test]
    fn the_window_holds_when_it_was_long_enough_and_shrinks_to_nothing_for_far_calls() {
        assert_eq!(next_window(100, 40, MAX), 100);
        let mut window = MAX;
        let mut steps = 0;
        while window > 0 {
            window = next_window(window, 10_000, MAX);
            steps += 1;
        }
        assert!(steps <= 8, "{steps} far-apart calls to stop spinning");
        assert_eq!(next_window(0, 10_000, MAX), 0);
    }

    /// Waits up to 10 s for `condition`.
    fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    async fn call<S: Service<u32, Response = u32, Error = ()>>(service: &mut S) {
        let answer = service.ready().await.expect("ready").call(7).await;
        assert_eq!(answer, Ok(7));
    }

    fn echo(x: u32) -> std::future::Ready<Result<u32, ()>> {
        std::future::ready(Ok(x))
    }

    #[tokio::test]
    async fn calls_close_together_start_the_threads_and_they_stop_after_the_window() {
        // A limit far above the pause between two calls here, and a warm period (a
        // quarter of it) long enough to see on a loaded machine and short enough to wait
        // out.
        let keep_warm = KeepWarm::with_threads(Duration::from_secs(4), 2).expect("threads start");
        let mut service = keep_warm
            .layer()
            .layer(tower::service_fn(echo as fn(u32) -> _));
        eventually("both threads wait", || keep_warm.spinning() == 0);
        call(&mut service).await;
        assert_eq!(keep_warm.window(), Duration::ZERO, "one call is no pattern");
        assert_eq!(keep_warm.spins(), 0);
        call(&mut service).await;
        assert_eq!(keep_warm.window(), Duration::from_secs(1));
        eventually("a thread spins", || keep_warm.spins() > 0);
        eventually("the window passed and both wait again", || {
            keep_warm.spinning() == 0
        });
        // Dropping stops and joins the threads, spinning or waiting.
        call(&mut service).await;
        call(&mut service).await;
        let (dropped, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(keep_warm);
            let _ = dropped.send(());
        });
        done.recv_timeout(Duration::from_secs(10))
            .expect("dropping KeepWarm joins its threads");
    }

    #[tokio::test]
    async fn calls_in_flight_on_every_thread_stop_the_spinning_and_dropped_calls_are_not_counted() {
        // Warm periods of a second or more: long enough to see on a loaded machine.
        let keep_warm = KeepWarm::with_threads(Duration::from_secs(4), 1).expect("starts");
        let mut service = keep_warm
            .layer()
            .layer(tower::service_fn(echo as fn(u32) -> _));
        eventually("the thread waits", || keep_warm.spinning() == 0);
        call(&mut service).await;
        call(&mut service).await;
        eventually("the thread spins", || keep_warm.spinning() == 1);
        // A call still waiting for its reply: the one CPU it could keep warm is busy.
        let mut slow = keep_warm.layer().layer(tower::service_fn(|_: u32| {
            std::future::pending::<Result<u32, ()>>()
        }));
        let pending = slow.call(1);
        eventually("the thread stops for the call in flight", || {
            keep_warm.spinning() == 0
        });
        assert_eq!(keep_warm.shared.in_flight.load(Ordering::SeqCst), 1);
        // Dropping the call uncounts it, and the thread spins again for what is left of
        // the warm period after the last call that ended.
        drop(pending);
        assert_eq!(keep_warm.shared.in_flight.load(Ordering::SeqCst), 0);
        eventually("the thread spins again", || keep_warm.spinning() == 1);
    }

    #[test]
    fn quotas_are_read_from_either_cgroup_version() {
        assert_eq!(quota_v2("max 100000\n"), None);
        assert_eq!(
            quota_v2("200000 100000\n").as_deref(),
            Some("200000 100000")
        );
        assert_eq!(quota_v1("-1\n"), None);
        assert_eq!(quota_v1("50000\n").as_deref(), Some("50000 µs per period"));
        assert_eq!(quota_v1("garbage"), None);
    }

    #[tokio::test]
    async fn off_starts_no_thread_and_passes_calls_through() {
        for keep_warm in [
            KeepWarm::start(Duration::ZERO).expect("nothing to start"),
            KeepWarm::with_threads(Duration::ZERO, 0).expect("nothing to start"),
        ] {
            let mut service = keep_warm
                .layer()
                .layer(tower::service_fn(echo as fn(u32) -> _));
            for _ in 0..3 {
                call(&mut service).await;
            }
            assert!(keep_warm.threads.is_empty());
            assert_eq!(keep_warm.window(), Duration::ZERO);
        }
    }
}
