//! The behaviour every [`JobQueue`] backend must show. Backends' tests call
//! [`run_all`] with a factory that makes a fresh, empty queue with the given settings.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use polaroid_proto::v1::{
    JobEventKind, JobPlan, JobPriority, JobProgress, JobResult, JobSpec, JobState,
};

use crate::{FailureOutcome, JobQueue, LeaseStatus, QueueError, QueueSettings, new_job_id};

/// The tenant of the cases that are not about tenants.
const TENANT: &str = "analytics";
/// Another tenant, for the cases that are.
const OTHER: &str = "marketing";

/// Settings that keep the suite fast: short timeouts, no real waiting.
pub fn quick_settings() -> QueueSettings {
    QueueSettings {
        visibility_timeout: Duration::from_secs(30),
        retry_backoff: Duration::from_millis(10),
        retry_backoff_max: Duration::from_millis(40),
        priority_aging: Duration::from_secs(60),
        retention: Duration::from_secs(600),
        default_max_attempts: 3,
    }
}

fn spec(priority: JobPriority) -> JobSpec {
    JobSpec {
        plan: Some(JobPlan { steps: vec![] }),
        priority: priority as i32,
        ..JobSpec::default()
    }
}

async fn submit(queue: &dyn JobQueue, spec: JobSpec) -> String {
    submit_as(queue, TENANT, spec).await
}

async fn submit_as(queue: &dyn JobQueue, tenant: &str, spec: JobSpec) -> String {
    let id = new_job_id();
    let (job, created) = queue.submit(&id, tenant, spec, None).await.unwrap();
    assert!(created);
    assert_eq!(job.id, id);
    assert_eq!(job.tenant, tenant);
    id
}

/// Every page of a listing, newest first.
async fn list_all(
    queue: &dyn JobQueue,
    tenant: Option<&str>,
    state: Option<JobState>,
    page_size: usize,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = queue.list(tenant, state, page_size, &token).await.unwrap();
        assert!(page.jobs.len() <= page_size);
        seen.extend(page.jobs.iter().map(|j| j.id.clone()));
        if page.next_page_token.is_empty() {
            return seen;
        }
        token = page.next_page_token;
    }
}

const SHORT: Duration = Duration::from_millis(150);
const LONG: Duration = Duration::from_secs(5);

/// Runs every case, each on a fresh queue.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn(QueueSettings) -> Fut,
    Fut: Future<Output = Arc<dyn JobQueue>>,
{
    submitted_jobs_read_back(&*make(quick_settings()).await).await;
    idempotency_keys_return_the_first_job(&*make(quick_settings()).await).await;
    an_attempt_runs_to_success(&*make(quick_settings()).await).await;
    failures_retry_then_dead_letter_after_max_attempts(&*make(quick_settings()).await).await;
    retries_wait_out_their_backoff(
        &*make(QueueSettings {
            retry_backoff: Duration::from_millis(600),
            retry_backoff_max: Duration::from_millis(600),
            ..quick_settings()
        })
        .await,
    )
    .await;
    a_waiting_job_is_cancelled_at_once(&*make(quick_settings()).await).await;
    a_running_job_is_cancelled_through_its_worker(&*make(quick_settings()).await).await;
    let short_visibility = QueueSettings {
        visibility_timeout: Duration::from_millis(400),
        ..quick_settings()
    };
    a_quiet_attempt_is_reclaimed_and_fenced(&*make(short_visibility.clone()).await).await;
    renewing_keeps_an_attempt(&*make(short_visibility.clone()).await).await;
    a_last_attempt_lost_with_its_worker_is_dead_lettered(&*make(short_visibility).await).await;
    a_retrying_job_is_cancelled_at_once(&*make(quick_settings()).await).await;
    higher_priorities_go_first(&*make(quick_settings()).await).await;
    waiting_raises_priority(
        &*make(QueueSettings {
            priority_aging: Duration::from_millis(200),
            ..quick_settings()
        })
        .await,
    )
    .await;
    listing_pages_by_state(&*make(quick_settings()).await).await;
    idempotency_keys_are_per_tenant(&*make(quick_settings()).await).await;
    listings_are_per_tenant(&*make(quick_settings()).await).await;
    dead_letters_carry_their_tenant(&*make(quick_settings()).await).await;
    the_tenant_survives_every_change(&*make(quick_settings()).await).await;
    tenant_names_are_checked(&*make(quick_settings()).await).await;
    active_jobs_quota_counts_queued_running_and_retrying(&*make(quick_settings()).await).await;
    depth_counts_waiting_taken_and_delayed(
        &*make(QueueSettings {
            retry_backoff: Duration::from_secs(30),
            retry_backoff_max: Duration::from_secs(30),
            ..quick_settings()
        })
        .await,
    )
    .await;
}

async fn submitted_jobs_read_back(queue: &dyn JobQueue) {
    let id = submit(queue, spec(JobPriority::Normal)).await;
    let job = queue.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state(), JobState::Queued);
    assert_eq!(
        job.spec.as_ref().unwrap().max_attempts,
        3,
        "default attempts"
    );
    assert!(queue.get(&new_job_id()).await.unwrap().is_none());
    let events = queue.events(&id, "").await.unwrap();
    assert_eq!(events.events.len(), 1);
    assert_eq!(events.events[0].kind(), JobEventKind::Queued);
    let after = queue.events(&id, &events.next).await.unwrap();
    assert!(after.events.is_empty(), "a cursor skips what was read");
    assert!(matches!(
        queue.events(&id, "not a cursor").await,
        Err(QueueError::InvalidPageToken(_))
    ));
}

async fn idempotency_keys_return_the_first_job(queue: &dyn JobQueue) {
    let keyed = JobSpec {
        idempotency_key: "nightly-2026-11-24".into(),
        ..spec(JobPriority::Normal)
    };
    let first = submit(queue, keyed.clone()).await;
    assert_eq!(
        queue
            .find(TENANT, "nightly-2026-11-24")
            .await
            .unwrap()
            .map(|j| j.id),
        Some(first.clone())
    );
    assert!(queue.find(TENANT, "never-used").await.unwrap().is_none());
    assert!(queue.find(TENANT, "").await.unwrap().is_none());
    let (again, created) = queue
        .submit(&new_job_id(), TENANT, keyed, None)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, first);
    let other = JobSpec {
        idempotency_key: "nightly-2026-11-25".into(),
        ..spec(JobPriority::Normal)
    };
    assert_ne!(submit(queue, other).await, first);
    // Only the two jobs were queued.
    assert!(queue.take("w", SHORT).await.unwrap().is_some());
    assert!(queue.take("w", SHORT).await.unwrap().is_some());
    assert!(queue.take("w", SHORT).await.unwrap().is_none());
}

async fn an_attempt_runs_to_success(queue: &dyn JobQueue) {
    let id = submit(queue, spec(JobPriority::Normal)).await;
    let lease = queue.take("worker-a", LONG).await.unwrap().unwrap();
    assert_eq!(lease.job.id, id);
    assert_eq!(lease.attempt, 1);
    let running = queue.get(&id).await.unwrap().unwrap();
    assert_eq!(running.state(), JobState::Running);
    assert_eq!(running.worker, "worker-a");
    let progress = JobProgress {
        steps_done: 1,
        steps_total: 2,
        rows_written: 0,
    };
    queue.progress(&lease, progress, false).await.unwrap();
    let result = JobResult {
        handle: String::new(),
        path: "out.parquet".into(),
        rows: 42,
    };
    let done = queue.succeed(&lease, result.clone()).await.unwrap();
    assert_eq!(done.state(), JobState::Succeeded);
    assert_eq!(queue.get(&id).await.unwrap().unwrap().result, Some(result));
    assert!(
        queue.take("worker-a", SHORT).await.unwrap().is_none(),
        "acknowledged"
    );
    let kinds: Vec<_> = queue
        .events(&id, "")
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.kind())
        .collect();
    assert_eq!(
        kinds,
        [
            JobEventKind::Queued,
            JobEventKind::Started,
            JobEventKind::Step,
            JobEventKind::Succeeded
        ]
    );
    assert!(matches!(
        queue.succeed(&lease, JobResult::default()).await,
        Err(QueueError::LeaseLost(_))
    ));
}

async fn failures_retry_then_dead_letter_after_max_attempts(queue: &dyn JobQueue) {
    let id = submit(queue, spec(JobPriority::Normal)).await;
    for attempt in 1..=3u32 {
        let lease = queue.take("w", LONG).await.unwrap().unwrap();
        assert_eq!(lease.attempt, attempt);
        let outcome = queue
            .fail(&lease, &format!("boom {attempt}"))
            .await
            .unwrap();
        if attempt < 3 {
            assert!(matches!(outcome, FailureOutcome::Retrying { .. }));
            assert_eq!(
                queue.get(&id).await.unwrap().unwrap().state(),
                JobState::Retrying
            );
        } else {
            assert_eq!(outcome, FailureOutcome::DeadLettered);
        }
    }
    let job = queue.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state(), JobState::Failed);
    assert_eq!(job.attempts, 3);
    assert_eq!(job.error, "boom 3");
    let dead = queue.dead_letters(None, 100).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].job_id.as_str(), dead[0].attempts),
        (id.as_str(), 3)
    );
    assert_eq!(dead[0].tenant, TENANT);
    assert_eq!(dead[0].error, "boom 3");
    assert!(queue.take("w", SHORT).await.unwrap().is_none());
}

async fn retries_wait_out_their_backoff(queue: &dyn JobQueue) {
    submit(queue, spec(JobPriority::Normal)).await;
    let lease = queue.take("w", LONG).await.unwrap().unwrap();
    let FailureOutcome::Retrying { after } = queue.fail(&lease, "flaky").await.unwrap() else {
        panic!("expected a retry");
    };
    assert!(
        after >= Duration::from_millis(300),
        "jittered within half of 600 ms: {after:?}"
    );
    assert!(
        queue
            .take("w", Duration::from_millis(100))
            .await
            .unwrap()
            .is_none()
    );
    let retry = queue
        .take("w", LONG)
        .await
        .unwrap()
        .expect("retried after the backoff");
    assert_eq!(retry.attempt, 2);
}

async fn a_waiting_job_is_cancelled_at_once(queue: &dyn JobQueue) {
    let id = submit(queue, spec(JobPriority::Normal)).await;
    let job = queue.cancel(&id).await.unwrap();
    assert_eq!(job.state(), JobState::Cancelled);
    assert!(queue.take("w", SHORT).await.unwrap().is_none());
    assert_eq!(
        queue.cancel(&id).await.unwrap().state(),
        JobState::Cancelled
    );
    assert!(matches!(
        queue.cancel(&new_job_id()).await,
        Err(QueueError::NotFound(_))
    ));
}

async fn a_running_job_is_cancelled_through_its_worker(queue: &dyn JobQueue) {
    let id = submit(queue, spec(JobPriority::Normal)).await;
    let lease = queue.take("w", LONG).await.unwrap().unwrap();
    assert_eq!(
        queue.renew(&lease, None).await.unwrap(),
        LeaseStatus::Held {
            cancel_requested: false
        }
    );
    let job = queue.cancel(&id).await.unwrap();
    assert_eq!(job.state(), JobState::Running);
    assert!(job.cancel_requested);
    assert_eq!(
        queue.renew(&lease, None).await.unwrap(),
        LeaseStatus::Held {
            cancel_requested: true
        }
    );
    let done = queue.cancelled(&lease).await.unwrap();
    assert_eq!(done.state(), JobState::Cancelled);
    let kinds: Vec<_> = queue
        .events(&id, "")
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.kind())
        .collect();
    assert!(kinds.ends_with(&[JobEventKind::CancelRequested, JobEventKind::Cancelled]));
    assert!(queue.take("w", SHORT).await.unwrap().is_none());
}

async fn a_quiet_attempt_is_reclaimed_and_fenced(queue: &dyn JobQueue) {
    let id = submit(queue, spec(JobPriority::Normal)).await;
    let lost = queue.take("dies", LONG).await.unwrap().unwrap();
    let started = std::time::Instant::now();
    let reclaimed = queue.take("survives", LONG).await.unwrap().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the timeout"
    );
    assert_eq!(reclaimed.job.id, id);
    assert_eq!(reclaimed.attempt, 2);
    assert_eq!(queue.renew(&lost, None).await.unwrap(), LeaseStatus::Lost);
    assert!(matches!(
        queue.succeed(&lost, JobResult::default()).await,
        Err(QueueError::LeaseLost(_))
    ));
    queue
        .succeed(&reclaimed, JobResult::default())
        .await
        .unwrap();
    assert_eq!(queue.get(&id).await.unwrap().unwrap().attempts, 2);
}

async fn renewing_keeps_an_attempt(queue: &dyn JobQueue) {
    submit(queue, spec(JobPriority::Normal)).await;
    let lease = queue.take("busy", LONG).await.unwrap().unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let progress = JobProgress {
            steps_done: 1,
            steps_total: 1,
            rows_written: 10,
        };
        assert!(matches!(
            queue.renew(&lease, Some(progress)).await.unwrap(),
            LeaseStatus::Held { .. }
        ));
        assert!(queue.take("idle", Duration::ZERO).await.unwrap().is_none());
    }
    let job = queue.get(&lease.job.id).await.unwrap().unwrap();
    assert_eq!(job.progress.unwrap().rows_written, 10);
    queue.succeed(&lease, JobResult::default()).await.unwrap();
}

async fn a_last_attempt_lost_with_its_worker_is_dead_lettered(queue: &dyn JobQueue) {
    let id = submit(
        queue,
        JobSpec {
            max_attempts: 1,
            ..spec(JobPriority::Normal)
        },
    )
    .await;
    let _lost = queue.take("dies", LONG).await.unwrap().unwrap();
    // Past the visibility timeout the entry is met again, with no attempt left.
    assert!(
        queue
            .take("survives", Duration::from_millis(1500))
            .await
            .unwrap()
            .is_none()
    );
    let job = queue.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state(), job.attempts), (JobState::Failed, 1));
    assert!(job.error.contains("lost with its worker"), "{}", job.error);
    let dead = queue.dead_letters(Some(TENANT), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].job_id, id);
}

async fn a_retrying_job_is_cancelled_at_once(queue: &dyn JobQueue) {
    let id = submit(queue, spec(JobPriority::Normal)).await;
    let lease = queue.take("w", LONG).await.unwrap().unwrap();
    queue.fail(&lease, "flaky").await.unwrap();
    assert_eq!(
        queue.cancel(&id).await.unwrap().state(),
        JobState::Cancelled
    );
    assert!(
        queue
            .take("w", Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(queue.get(&id).await.unwrap().unwrap().attempts, 1);
}

async fn higher_priorities_go_first(queue: &dyn JobQueue) {
    let low = submit(queue, spec(JobPriority::Low)).await;
    let normal = submit(queue, spec(JobPriority::Normal)).await;
    let high = submit(queue, spec(JobPriority::High)).await;
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(queue.take("w", LONG).await.unwrap().unwrap().job.id);
    }
    assert_eq!(order, [high, normal, low]);
}

async fn waiting_raises_priority(queue: &dyn JobQueue) {
    let low = submit(queue, spec(JobPriority::Low)).await;
    // Two levels of aging (400 ms) and then some.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let high = submit(queue, spec(JobPriority::High)).await;
    assert_eq!(queue.take("w", LONG).await.unwrap().unwrap().job.id, low);
    assert_eq!(queue.take("w", LONG).await.unwrap().unwrap().job.id, high);
}

async fn listing_pages_by_state(queue: &dyn JobQueue) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(submit(queue, spec(JobPriority::Normal)).await);
        // Ids order by milliseconds first.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(list_all(queue, None, None, 2).await, newest_first);
    assert_eq!(list_all(queue, Some(TENANT), None, 2).await, newest_first);

    let lease = queue.take("w", LONG).await.unwrap().unwrap();
    queue.succeed(&lease, JobResult::default()).await.unwrap();
    let succeeded = queue
        .list(None, Some(JobState::Succeeded), 10, "")
        .await
        .unwrap();
    assert_eq!(succeeded.jobs.len(), 1);
    assert_eq!(succeeded.jobs[0].id, lease.job.id);
    let queued = queue
        .list(Some(TENANT), Some(JobState::Queued), 10, "")
        .await
        .unwrap();
    assert_eq!(queued.jobs.len(), 4);
    assert!(queued.jobs.iter().all(|j| j.state() == JobState::Queued));
    assert!(matches!(
        queue.list(None, None, 10, "../../etc").await,
        Err(QueueError::InvalidPageToken(_))
    ));
}

async fn idempotency_keys_are_per_tenant(queue: &dyn JobQueue) {
    let keyed = JobSpec {
        idempotency_key: "nightly".into(),
        ..spec(JobPriority::Normal)
    };
    let mine = submit_as(queue, TENANT, keyed.clone()).await;
    let theirs = submit_as(queue, OTHER, keyed.clone()).await;
    assert_ne!(mine, theirs, "the same key in two tenants makes two jobs");
    let found = |tenant: &'static str| async move {
        queue
            .find(tenant, "nightly")
            .await
            .unwrap()
            .map(|j| (j.id, j.tenant))
    };
    assert_eq!(found(TENANT).await, Some((mine.clone(), TENANT.into())));
    assert_eq!(found(OTHER).await, Some((theirs.clone(), OTHER.into())));
    assert_eq!(found("nobody").await, None, "as if the key was never used");
    for (tenant, first) in [(TENANT, &mine), (OTHER, &theirs)] {
        let (again, created) = queue
            .submit(&new_job_id(), tenant, keyed.clone(), None)
            .await
            .unwrap();
        assert!(!created);
        assert_eq!((&again.id, again.tenant.as_str()), (first, tenant));
    }
    // Only the two jobs were queued.
    assert!(queue.take("w", SHORT).await.unwrap().is_some());
    assert!(queue.take("w", SHORT).await.unwrap().is_some());
    assert!(queue.take("w", SHORT).await.unwrap().is_none());
}

async fn listings_are_per_tenant(queue: &dyn JobQueue) {
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..5 {
        mine.push(submit_as(queue, TENANT, spec(JobPriority::Normal)).await);
        if round % 2 == 0 {
            theirs.push(submit_as(queue, OTHER, spec(JobPriority::Normal)).await);
        }
        // Ids order by milliseconds first.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let newest_first = |ids: &[String]| ids.iter().rev().cloned().collect::<Vec<_>>();
    assert_eq!(
        list_all(queue, Some(TENANT), None, 2).await,
        newest_first(&mine)
    );
    assert_eq!(
        list_all(queue, Some(OTHER), None, 2).await,
        newest_first(&theirs)
    );
    assert!(list_all(queue, Some("nobody"), None, 2).await.is_empty());
    let mut everyone: Vec<String> = mine.iter().chain(&theirs).cloned().collect();
    everyone.sort();
    assert_eq!(
        list_all(queue, None, None, 3).await,
        newest_first(&everyone)
    );
    let page = queue.list(Some(TENANT), None, 10, "").await.unwrap();
    assert!(page.jobs.iter().all(|j| j.tenant == TENANT));

    // By state too: finish the oldest job (one of mine).
    let lease = queue.take("w", LONG).await.unwrap().unwrap();
    assert_eq!(lease.job.id, mine[0]);
    queue.succeed(&lease, JobResult::default()).await.unwrap();
    let succeeded = |tenant| list_all(queue, tenant, Some(JobState::Succeeded), 2);
    assert_eq!(succeeded(Some(TENANT)).await, [mine[0].clone()]);
    assert!(succeeded(Some(OTHER)).await.is_empty());
    assert_eq!(succeeded(None).await, [mine[0].clone()]);
    assert_eq!(
        list_all(queue, Some(TENANT), Some(JobState::Queued), 2).await,
        newest_first(&mine[1..])
    );
    assert_eq!(
        list_all(queue, Some(OTHER), Some(JobState::Queued), 2).await,
        newest_first(&theirs)
    );
}

async fn dead_letters_carry_their_tenant(queue: &dyn JobQueue) {
    let once = || JobSpec {
        max_attempts: 1,
        ..spec(JobPriority::Normal)
    };
    let mine = submit_as(queue, TENANT, once()).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    let theirs = submit_as(queue, OTHER, once()).await;
    for _ in 0..2 {
        let lease = queue.take("w", LONG).await.unwrap().unwrap();
        let outcome = queue.fail(&lease, "boom").await.unwrap();
        assert_eq!(outcome, FailureOutcome::DeadLettered);
    }
    let letters = |tenant| async move {
        queue
            .dead_letters(tenant, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.job_id, d.tenant))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        letters(None).await,
        [
            (mine.clone(), TENANT.to_owned()),
            (theirs.clone(), OTHER.to_owned())
        ]
    );
    assert_eq!(letters(Some(TENANT)).await, [(mine, TENANT.to_owned())]);
    assert_eq!(letters(Some(OTHER)).await, [(theirs, OTHER.to_owned())]);
    assert!(letters(Some("nobody")).await.is_empty());
    assert_eq!(queue.dead_letters(None, 1).await.unwrap().len(), 1);
}

async fn the_tenant_survives_every_change(queue: &dyn JobQueue) {
    let id = submit_as(queue, OTHER, spec(JobPriority::Normal)).await;
    let tenant_now = || async { queue.get(&id).await.unwrap().unwrap().tenant };
    assert_eq!(tenant_now().await, OTHER);
    let lease = queue.take("w", LONG).await.unwrap().unwrap();
    assert_eq!(lease.job.tenant, OTHER);
    queue
        .progress(&lease, JobProgress::default(), true)
        .await
        .unwrap();
    assert!(matches!(
        queue.fail(&lease, "flaky").await.unwrap(),
        FailureOutcome::Retrying { .. }
    ));
    assert_eq!(tenant_now().await, OTHER);
    let retry = queue.take("w", LONG).await.unwrap().unwrap();
    assert_eq!(retry.job.tenant, OTHER);
    let done = queue.succeed(&retry, JobResult::default()).await.unwrap();
    assert_eq!(done.tenant, OTHER);
    assert_eq!(tenant_now().await, OTHER);

    let cancelled = submit_as(queue, OTHER, spec(JobPriority::Normal)).await;
    assert_eq!(queue.cancel(&cancelled).await.unwrap().tenant, OTHER);
}

async fn tenant_names_are_checked(queue: &dyn JobQueue) {
    for bad in ["", "a:b", "a/b", "x y", &"t".repeat(65)] {
        let submitted = queue
            .submit(&new_job_id(), bad, spec(JobPriority::Normal), None)
            .await;
        assert!(
            matches!(submitted, Err(QueueError::InvalidTenant(_))),
            "{bad}: {submitted:?}"
        );
        assert!(matches!(
            queue.find(bad, "key").await,
            Err(QueueError::InvalidTenant(_))
        ));
        assert!(matches!(
            queue.list(Some(bad), None, 10, "").await,
            Err(QueueError::InvalidTenant(_))
        ));
        assert!(matches!(
            queue.dead_letters(Some(bad), 10).await,
            Err(QueueError::InvalidTenant(_))
        ));
    }
    assert!(
        queue.take("w", SHORT).await.unwrap().is_none(),
        "nothing queued"
    );
}

async fn active_jobs_quota_counts_queued_running_and_retrying(queue: &dyn JobQueue) {
    let quota = Some(2);
    let submit_limited = |tenant: &'static str, spec: JobSpec| async move {
        queue.submit(&new_job_id(), tenant, spec, quota).await
    };
    let keyed = JobSpec {
        idempotency_key: "nightly".into(),
        ..spec(JobPriority::Normal)
    };
    let (first, _) = submit_limited(TENANT, keyed.clone()).await.unwrap();
    submit_limited(TENANT, spec(JobPriority::Normal))
        .await
        .unwrap();
    match submit_limited(TENANT, spec(JobPriority::Normal)).await {
        Err(QueueError::QuotaExceeded {
            tenant,
            active,
            limit,
        }) => {
            assert_eq!((tenant.as_str(), active, limit), (TENANT, 2, 2));
        }
        other => panic!("the third job is over the quota: {other:?}"),
    }
    // A job submitted again by its idempotency key is the same job, not a new one.
    let (again, created) = submit_limited(TENANT, keyed).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, first.id);
    // Another tenant has quota of its own.
    submit_limited(OTHER, spec(JobPriority::Normal))
        .await
        .unwrap();
    // A running job still counts; a failed attempt waiting to retry too; a finished one
    // does not.
    let lease = queue.take("worker-a", LONG).await.unwrap().unwrap();
    assert!(
        submit_limited(TENANT, spec(JobPriority::Normal))
            .await
            .is_err()
    );
    let outcome = queue.fail(&lease, "flaky").await.unwrap();
    if lease.job.tenant == TENANT {
        assert!(matches!(outcome, FailureOutcome::Retrying { .. }));
        assert!(
            submit_limited(TENANT, spec(JobPriority::Normal))
                .await
                .is_err()
        );
    }
    let tenant_job = loop {
        let lease = queue.take("worker-a", LONG).await.unwrap().unwrap();
        if lease.job.tenant == TENANT {
            break lease;
        }
        queue.succeed(&lease, JobResult::default()).await.unwrap();
    };
    queue
        .succeed(&tenant_job, JobResult::default())
        .await
        .unwrap();
    submit_limited(TENANT, spec(JobPriority::Normal))
        .await
        .unwrap();
    assert!(
        submit_limited(TENANT, spec(JobPriority::Normal))
            .await
            .is_err()
    );
    // Without a quota nothing is counted.
    submit_as(queue, TENANT, spec(JobPriority::Normal)).await;
}

/// (waiting, taken, delayed) per priority, most urgent first.
async fn depths(queue: &dyn JobQueue) -> Vec<(JobPriority, u64, u64, u64)> {
    queue
        .depth()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.priority, d.waiting, d.taken, d.delayed))
        .collect()
}

async fn depth_counts_waiting_taken_and_delayed(queue: &dyn JobQueue) {
    use JobPriority::{High, Low, Normal};
    assert_eq!(
        depths(queue).await,
        [(High, 0, 0, 0), (Normal, 0, 0, 0), (Low, 0, 0, 0)]
    );
    submit(queue, spec(Normal)).await;
    submit(queue, spec(Normal)).await;
    submit(queue, spec(High)).await;
    assert_eq!(
        depths(queue).await,
        [(High, 1, 0, 0), (Normal, 2, 0, 0), (Low, 0, 0, 0)]
    );
    let urgent = queue.take("w", LONG).await.unwrap().unwrap();
    let normal = queue.take("w", LONG).await.unwrap().unwrap();
    assert_eq!(
        depths(queue).await,
        [(High, 0, 1, 0), (Normal, 1, 1, 0), (Low, 0, 0, 0)]
    );
    // A retry waits out its backoff outside the stream; a success leaves it.
    queue.fail(&urgent, "flaky").await.unwrap();
    queue.succeed(&normal, JobResult::default()).await.unwrap();
    assert_eq!(
        depths(queue).await,
        [(High, 0, 0, 1), (Normal, 1, 0, 0), (Low, 0, 0, 0)]
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryQueue;

    #[tokio::test]
    async fn the_memory_queue_conforms() {
        run_all(
            |settings| async move { Arc::new(MemoryQueue::new(settings)) as Arc<dyn JobQueue> },
        )
        .await;
    }
}
