//! The embedded queue of `polaroid standalone`: the same semantics as the Redis one, in
//! this process's memory (so jobs do not outlive it). Each tenant has its own set of job
//! ids for listing and its own idempotency keys.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use polaroid_proto::v1::{Job, JobPriority, JobProgress, JobResult, JobSpec, JobState};
use tokio::sync::Notify;

use crate::lifecycle::{self, PRIORITIES, Transition, is_terminal, priority_rank};
use crate::{
    DeadLetter, EntryRef, EventBatch, FailureOutcome, JobPage, JobQueue, Lease, LeaseStatus,
    QueueError, QueueResult, QueueSettings, StreamDepth, checked_tenant,
};

struct Entry {
    job_id: String,
    priority: JobPriority,
    enqueued: Instant,
    /// Who holds it and when they last showed signs of life; `None` while waiting.
    owner: Option<(String, Instant)>,
}

#[derive(Default)]
struct State {
    jobs: BTreeMap<String, Job>,
    /// Each tenant's job ids, so that its listing skips other tenants' jobs.
    by_tenant: HashMap<String, BTreeSet<String>>,
    events: HashMap<String, Vec<polaroid_proto::v1::JobEvent>>,
    /// When finished jobs are forgotten.
    expires: HashMap<String, Instant>,
    /// (tenant, idempotency key) → job id.
    idempotency: HashMap<(String, String), String>,
    entries: BTreeMap<u64, Entry>,
    next_entry: u64,
    delayed: Vec<(Instant, String, JobPriority)>,
    dead: Vec<DeadLetter>,
}

impl State {
    fn enqueue(&mut self, job_id: String, priority: JobPriority) {
        self.next_entry += 1;
        self.entries.insert(
            self.next_entry,
            Entry {
                job_id,
                priority,
                enqueued: Instant::now(),
                owner: None,
            },
        );
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let gone: Vec<String> = self
            .expires
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.expires.remove(&id);
            self.events.remove(&id);
            if let Some(job) = self.jobs.remove(&id) {
                if let Some(ids) = self.by_tenant.get_mut(&job.tenant) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.by_tenant.remove(&job.tenant);
                    }
                }
                let key = (
                    job.tenant,
                    job.spec.map(|s| s.idempotency_key).unwrap_or_default(),
                );
                if self.idempotency.get(&key) == Some(&id) {
                    self.idempotency.remove(&key);
                }
            }
        }
        let mut index = 0;
        while index < self.delayed.len() {
            if self.delayed[index].0 <= now {
                let (_, id, priority) = self.delayed.swap_remove(index);
                self.enqueue(id, priority);
            } else {
                index += 1;
            }
        }
    }

    fn apply(&mut self, transition: Transition, entry: Option<u64>, settings: &QueueSettings) {
        let Transition {
            job,
            event,
            acknowledge,
            requeue_after,
            dead_letter,
        } = transition;
        let id = job.id.clone();
        if let Some(event) = event {
            self.events.entry(id.clone()).or_default().push(event);
        }
        if acknowledge && let Some(entry) = entry {
            self.entries.remove(&entry);
        }
        if let Some(delay) = requeue_after {
            self.delayed.push((
                Instant::now() + delay,
                id.clone(),
                job.spec
                    .as_ref()
                    .map_or(JobPriority::Normal, |s| s.priority()),
            ));
        }
        if dead_letter {
            self.dead.push(DeadLetter {
                job_id: id.clone(),
                tenant: job.tenant.clone(),
                attempts: job.attempts,
                error: job.error.clone(),
            });
        }
        if is_terminal(job.state()) {
            self.expires
                .insert(id.clone(), Instant::now() + settings.retention);
        }
        self.jobs.insert(id, job);
    }

    /// The entry to start next: a reclaimable one first, then the waiting one that is
    /// most urgent once aged.
    fn next_entry(&mut self, consumer: &str, settings: &QueueSettings) -> Option<u64> {
        let now = Instant::now();
        let stale = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.owner.as_ref().is_some_and(|(_, seen)| {
                    now.duration_since(*seen) >= settings.visibility_timeout
                })
            })
            .min_by_key(|(seq, e)| (lifecycle::priority_rank(e.priority), **seq))
            .map(|(seq, _)| *seq);
        let chosen = stale.or_else(|| {
            self.entries
                .iter()
                .filter(|(_, e)| e.owner.is_none())
                .max_by_key(|(seq, e)| {
                    (
                        aged_score(e.priority, now.duration_since(e.enqueued), settings),
                        std::cmp::Reverse(**seq),
                    )
                })
                .map(|(seq, _)| *seq)
        })?;
        if let Some(entry) = self.entries.get_mut(&chosen) {
            entry.owner = Some((consumer.to_owned(), now));
        }
        Some(chosen)
    }
}

/// Waiting time plus a head start per priority level: high beats normal beats low, until
/// a lower one has waited `priority_aging` per level longer.
pub(crate) fn aged_score(
    priority: JobPriority,
    waited: Duration,
    settings: &QueueSettings,
) -> u128 {
    let levels = (lifecycle::PRIORITIES.len() - 1 - lifecycle::priority_rank(priority)) as u32;
    waited.as_millis() + settings.priority_aging.saturating_mul(levels).as_millis()
}

/// The embedded queue.
pub struct MemoryQueue {
    settings: QueueSettings,
    state: Mutex<State>,
    arrived: Notify,
}

impl MemoryQueue {
    pub fn new(settings: QueueSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied transition: each is
        // applied by plain field updates after it was computed.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn entry_seq(lease: &Lease) -> Option<u64> {
        lease.entry.id.parse().ok()
    }

    /// Applies `change` to the lease's job under the lock.
    fn update(
        &self,
        lease: &Lease,
        change: impl FnOnce(&Job) -> QueueResult<Transition>,
    ) -> QueueResult<Job> {
        let mut state = self.state();
        let job = state
            .jobs
            .get(&lease.job.id)
            .cloned()
            .ok_or_else(|| QueueError::LeaseLost(lease.job.id.clone()))?;
        let transition = change(&job)?;
        let next = transition.job.clone();
        state.apply(transition, Self::entry_seq(lease), &self.settings);
        drop(state);
        self.arrived.notify_waiters();
        Ok(next)
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(QueueSettings::default())
    }
}

#[async_trait::async_trait]
impl JobQueue for MemoryQueue {
    async fn submit(
        &self,
        id: &str,
        tenant: &str,
        spec: JobSpec,
        max_active: Option<u32>,
    ) -> QueueResult<(Job, bool)> {
        let tenant = checked_tenant(tenant)?;
        let mut state = self.state();
        state.expire();
        let key = (tenant.to_owned(), spec.idempotency_key.clone());
        if !key.1.is_empty()
            && let Some(existing) = state
                .idempotency
                .get(&key)
                .and_then(|id| state.jobs.get(id))
        {
            return Ok((existing.clone(), false));
        }
        if let Some(limit) = max_active {
            let active = state.by_tenant.get(tenant).map_or(0, |ids| {
                ids.iter()
                    .filter_map(|id| state.jobs.get(id))
                    .filter(|job| !is_terminal(job.state()))
                    .count() as u64
            });
            if active >= u64::from(limit) {
                return Err(QueueError::QuotaExceeded {
                    tenant: tenant.to_owned(),
                    active,
                    limit,
                });
            }
        }
        let priority = spec.priority();
        let transition = lifecycle::submitted(id, tenant, spec, &self.settings);
        let job = transition.job.clone();
        state.apply(transition, None, &self.settings);
        state
            .by_tenant
            .entry(key.0.clone())
            .or_default()
            .insert(id.to_owned());
        if !key.1.is_empty() {
            state.idempotency.insert(key, id.to_owned());
        }
        state.enqueue(id.to_owned(), priority);
        drop(state);
        self.arrived.notify_waiters();
        Ok((job, true))
    }

    async fn get(&self, id: &str) -> QueueResult<Option<Job>> {
        let mut state = self.state();
        state.expire();
        Ok(state.jobs.get(id).cloned())
    }

    async fn find(&self, tenant: &str, idempotency_key: &str) -> QueueResult<Option<Job>> {
        let tenant = checked_tenant(tenant)?;
        if idempotency_key.is_empty() {
            return Ok(None);
        }
        let mut state = self.state();
        state.expire();
        Ok(state
            .idempotency
            .get(&(tenant.to_owned(), idempotency_key.to_owned()))
            .and_then(|id| state.jobs.get(id))
            .cloned())
    }

    async fn list(
        &self,
        tenant: Option<&str>,
        state_filter: Option<JobState>,
        page_size: usize,
        page_token: &str,
    ) -> QueueResult<JobPage> {
        let tenant = tenant.map(checked_tenant).transpose()?;
        if !page_token.is_empty() && !crate::valid_job_id(page_token) {
            return Err(QueueError::InvalidPageToken(page_token.to_owned()));
        }
        let mut state = self.state();
        state.expire();
        let state = &*state;
        // Newest first, before the token: ids start with the submit time.
        let before = if page_token.is_empty() {
            std::ops::Bound::Unbounded
        } else {
            std::ops::Bound::Excluded(page_token)
        };
        let range = (std::ops::Bound::Unbounded, before);
        let ids: Box<dyn Iterator<Item = &String>> = match tenant {
            None => Box::new(state.jobs.range::<str, _>(range).rev().map(|(id, _)| id)),
            Some(tenant) => match state.by_tenant.get(tenant) {
                Some(ids) => Box::new(ids.range::<str, _>(range).rev()),
                None => Box::new(std::iter::empty()),
            },
        };
        let mut matching = ids
            .filter_map(|id| state.jobs.get(id))
            .filter(|job| state_filter.is_none_or(|s| job.state() == s));
        let jobs: Vec<Job> = matching.by_ref().take(page_size.max(1)).cloned().collect();
        let more = matching.next().is_some();
        Ok(JobPage {
            next_page_token: match (more, jobs.last()) {
                (true, Some(last)) => last.id.clone(),
                _ => String::new(),
            },
            jobs,
        })
    }

    async fn cancel(&self, id: &str) -> QueueResult<Job> {
        let mut state = self.state();
        state.expire();
        let job = state
            .jobs
            .get(id)
            .cloned()
            .ok_or_else(|| QueueError::NotFound(id.to_owned()))?;
        match lifecycle::cancel_requested(&job) {
            Some(transition) => {
                let next = transition.job.clone();
                state.apply(transition, None, &self.settings);
                Ok(next)
            }
            None => Ok(job),
        }
    }

    async fn events(&self, id: &str, cursor: &str) -> QueueResult<EventBatch> {
        let start: usize = if cursor.is_empty() {
            0
        } else {
            cursor
                .parse()
                .map_err(|_| QueueError::InvalidPageToken(cursor.to_owned()))?
        };
        let state = self.state();
        let all = state.events.get(id).map(Vec::as_slice).unwrap_or_default();
        let events = all.get(start..).unwrap_or_default().to_vec();
        Ok(EventBatch {
            next: (start + events.len()).to_string(),
            events,
        })
    }

    async fn take(&self, consumer: &str, wait: Duration) -> QueueResult<Option<Lease>> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so an arrival in between is not missed.
            let arrived = self.arrived.notified();
            {
                let mut state = self.state();
                state.expire();
                while let Some(seq) = state.next_entry(consumer, &self.settings) {
                    let Some(entry) = state.entries.get(&seq) else {
                        continue;
                    };
                    let priority = entry.priority;
                    let Some(job) = state.jobs.get(&entry.job_id).cloned() else {
                        state.entries.remove(&seq);
                        continue;
                    };
                    let transition = lifecycle::taken(&job, consumer);
                    let started = transition.job.clone();
                    state.apply(transition, Some(seq), &self.settings);
                    if started.state() == JobState::Running {
                        return Ok(Some(Lease {
                            attempt: started.attempts,
                            consumer: consumer.to_owned(),
                            entry: EntryRef {
                                priority,
                                id: seq.to_string(),
                            },
                            job: started,
                        }));
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // Retries coming due and stale attempts do not notify: look again soon.
            let nap = (deadline - now).min(Duration::from_millis(50));
            let _ = tokio::time::timeout(nap, arrived).await;
        }
    }

    async fn renew(
        &self,
        lease: &Lease,
        progress: Option<JobProgress>,
    ) -> QueueResult<LeaseStatus> {
        let mut state = self.state();
        let Some(seq) = Self::entry_seq(lease) else {
            return Ok(LeaseStatus::Lost);
        };
        let held = state
            .entries
            .get_mut(&seq)
            .is_some_and(|entry| match entry.owner.as_mut() {
                Some((owner, seen)) if *owner == lease.consumer => {
                    *seen = Instant::now();
                    true
                }
                _ => false,
            });
        let job = state.jobs.get(&lease.job.id).cloned();
        let Some(job) = job.filter(|job| held && lifecycle::check_lease(job, lease).is_ok()) else {
            return Ok(LeaseStatus::Lost);
        };
        if let Some(progress) = progress {
            let transition = lifecycle::progressed(&job, lease, progress, None)?;
            state.apply(transition, None, &self.settings);
        }
        Ok(LeaseStatus::Held {
            cancel_requested: job.cancel_requested,
        })
    }

    async fn progress(&self, lease: &Lease, progress: JobProgress, rows: bool) -> QueueResult<()> {
        let kind = lifecycle::progress_kind(rows);
        self.update(lease, |job| {
            lifecycle::progressed(job, lease, progress, Some(kind))
        })?;
        Ok(())
    }

    async fn succeed(&self, lease: &Lease, result: JobResult) -> QueueResult<Job> {
        self.update(lease, |job| lifecycle::succeeded(job, lease, result))
    }

    async fn fail(&self, lease: &Lease, error: &str) -> QueueResult<FailureOutcome> {
        let mut outcome = FailureOutcome::DeadLettered;
        self.update(lease, |job| {
            let transition = lifecycle::failed(job, lease, error, &self.settings)?;
            outcome = FailureOutcome::of(&transition);
            Ok(transition)
        })?;
        Ok(outcome)
    }

    async fn cancelled(&self, lease: &Lease) -> QueueResult<Job> {
        self.update(lease, |job| lifecycle::stopped(job, lease))
    }

    async fn dead_letters(
        &self,
        tenant: Option<&str>,
        limit: usize,
    ) -> QueueResult<Vec<DeadLetter>> {
        let tenant = tenant.map(checked_tenant).transpose()?;
        Ok(self
            .state()
            .dead
            .iter()
            .filter(|dead| tenant.is_none_or(|t| dead.tenant == t))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn depth(&self) -> QueueResult<Vec<StreamDepth>> {
        let state = self.state();
        let mut depths = PRIORITIES.map(|priority| StreamDepth {
            priority,
            waiting: 0,
            taken: 0,
            delayed: 0,
        });
        for entry in state.entries.values() {
            let depth = &mut depths[priority_rank(entry.priority)];
            match entry.owner {
                None => depth.waiting += 1,
                Some(_) => depth.taken += 1,
            }
        }
        for (_, _, priority) in &state.delayed {
            depths[priority_rank(*priority)].delayed += 1;
        }
        Ok(depths.to_vec())
    }
}
