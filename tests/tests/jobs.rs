//! Batch jobs end to end: the Redis queue's conformance, and jobs submitted to real
//! clusters (coordinator and worker processes, redis-server, `polaroid standalone`) on
//! loopback, checked against Polars computing the same thing here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use polaroid_jobs::{JobQueue, QueueSettings, RedisQueue};
use polaroid_proto::v1::{
    self as pb, JobEventKind, JobPriority, JobState, job_input,
    job_service_client::JobServiceClient, plan_step::Op,
};
use polaroid_tests::*;
use polars::prelude::*;
use tonic::transport::Channel;

type Jobs = JobServiceClient<Channel>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_queue_conforms() -> anyhow::Result<()> {
    let redis = redis_server().await?;
    let url = redis.redis_url();
    let runs = AtomicUsize::new(0);
    polaroid_jobs::conformance::run_all(|settings: QueueSettings| {
        // A fresh prefix per case: an empty queue each time.
        let prefix = format!("conformance-{}", runs.fetch_add(1, Ordering::Relaxed));
        let url = url.clone();
        async move {
            Arc::new(
                RedisQueue::connect(&url, &prefix, settings)
                    .await
                    .expect("connect"),
            ) as Arc<dyn JobQueue>
        }
    })
    .await;
    Ok(())
}

/// What a Redis queue written before jobs had tenants holds (records without a tenant,
/// idempotency keys and dead letters in the old layout) reads as the default tenant's; a
/// finished job leaves every index, global and per tenant, when its record expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_jobs_from_before_tenants_are_the_default_tenants() -> anyhow::Result<()> {
    use polaroid_jobs::{LEGACY_TENANT, new_job_id};
    use prost::Message;

    let redis = redis_server().await?;
    let mut raw =
        redis::aio::ConnectionManager::new(redis::Client::open(redis.redis_url())?).await?;
    let old_spec = pb::JobSpec {
        plan: Some(pb::JobPlan { steps: vec![] }),
        idempotency_key: "old-key".into(),
        max_attempts: 3,
        ..pb::JobSpec::default()
    };
    let queued = new_job_id();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let finished = new_job_id();
    let dead = new_job_id();
    let record = |id: &str, state: JobState| {
        pb::Job {
            id: id.to_owned(),
            spec: Some(old_spec.clone()),
            state: state as i32,
            ..pb::Job::default()
        }
        .encode_to_vec()
    };
    let _: () = redis::pipe()
        .cmd("SET")
        .arg(format!("old:job:{queued}"))
        .arg(record(&queued, JobState::Queued))
        .ignore()
        .cmd("ZADD")
        .arg("old:jobs:index:all")
        .arg(0)
        .arg(&queued)
        .ignore()
        .cmd("ZADD")
        .arg("old:jobs:index:queued")
        .arg(0)
        .arg(&queued)
        .ignore()
        .cmd("SET")
        .arg("old:jobs:idem:old-key")
        .arg(&queued)
        .ignore()
        .cmd("XADD")
        .arg("old:jobs:q:normal")
        .arg("*")
        .arg("job")
        .arg(&queued)
        .ignore()
        .cmd("SET")
        .arg(format!("old:job:{finished}"))
        .arg(record(&finished, JobState::Succeeded))
        .ignore()
        .cmd("ZADD")
        .arg("old:jobs:index:all")
        .arg(0)
        .arg(&finished)
        .ignore()
        .cmd("ZADD")
        .arg("old:jobs:index:succeeded")
        .arg(0)
        .arg(&finished)
        .ignore()
        .cmd("XADD")
        .arg("old:jobs:dead")
        .arg("*")
        .arg("job")
        .arg(&dead)
        .arg("attempts")
        .arg(3)
        .arg("error")
        .arg("boom")
        .ignore()
        .query_async(&mut raw)
        .await?;

    let settings = QueueSettings {
        retention: Duration::from_millis(500),
        ..polaroid_jobs::conformance::quick_settings()
    };
    let queue = RedisQueue::connect(&redis.redis_url(), "old", settings).await?;
    let listed = |tenant: &'static str, state: Option<JobState>| {
        let queue = &queue;
        async move {
            let page = queue.list(Some(tenant), state, 100, "").await?;
            anyhow::Ok(page.jobs.into_iter().map(|j| j.id).collect::<Vec<_>>())
        }
    };
    assert_eq!(
        queue.get(&queued).await?.map(|j| j.tenant),
        Some(LEGACY_TENANT.into())
    );
    assert_eq!(
        listed(LEGACY_TENANT, None).await?,
        [finished.clone(), queued.clone()]
    );
    assert!(listed("analytics", None).await?.is_empty());
    assert_eq!(
        queue.find(LEGACY_TENANT, "old-key").await?.map(|j| j.id),
        Some(queued.clone())
    );
    assert!(queue.find("analytics", "old-key").await?.is_none());
    let (again, created) = queue
        .submit(&new_job_id(), LEGACY_TENANT, old_spec.clone(), None)
        .await?;
    assert_eq!((again.id.as_str(), created), (queued.as_str(), false));
    let (theirs, created) = queue
        .submit(&new_job_id(), "analytics", old_spec.clone(), None)
        .await?;
    assert!(created, "another tenant's key, though the same text");
    let letters = queue.dead_letters(Some(LEGACY_TENANT), 10).await?;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].job_id.as_str(), letters[0].tenant.as_str()),
        (dead.as_str(), LEGACY_TENANT)
    );
    assert!(queue.dead_letters(Some("analytics"), 10).await?.is_empty());

    // The old job runs as the default tenant's, and its record says so from then on.
    let lease = queue
        .take("w", Duration::from_secs(5))
        .await?
        .expect("the old entry");
    assert_eq!(
        (lease.job.id.as_str(), lease.job.tenant.as_str()),
        (queued.as_str(), LEGACY_TENANT)
    );
    let done = queue.succeed(&lease, pb::JobResult::default()).await?;
    assert_eq!(done.tenant, LEGACY_TENANT);
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(format!("old:job:{queued}"))
        .query_async(&mut raw)
        .await?;
    assert_eq!(pb::Job::decode(stored.as_slice())?.tenant, LEGACY_TENANT);
    assert_eq!(
        listed(LEGACY_TENANT, Some(JobState::Succeeded)).await?,
        [finished.clone(), queued.clone()]
    );
    let lease = queue
        .take("w", Duration::from_secs(5))
        .await?
        .expect("the new job");
    assert_eq!(lease.job.id, theirs.id);
    queue.succeed(&lease, pb::JobResult::default()).await?;

    // Past the retention, the next change sweeps the finished jobs out of every index.
    tokio::time::sleep(Duration::from_millis(700)).await;
    queue
        .submit(&new_job_id(), "analytics", pb::JobSpec::default(), None)
        .await?;
    for (id, tenant) in [(&queued, LEGACY_TENANT), (&theirs.id, "analytics")] {
        for index in [
            "old:jobs:index:all".to_owned(),
            "old:jobs:index:succeeded".to_owned(),
            format!("old:jobs:t:{tenant}:index:all"),
            format!("old:jobs:t:{tenant}:index:succeeded"),
        ] {
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(&index)
                .arg(id)
                .query_async(&mut raw)
                .await?;
            assert_eq!(score, None, "{id} is still in {index}");
        }
    }
    let left: usize = redis::cmd("ZCARD")
        .arg("old:jobs:finished")
        .query_async(&mut raw)
        .await?;
    assert_eq!(left, 0);
    let old_key: Option<String> = redis::cmd("GET")
        .arg("old:jobs:idem:old-key")
        .query_async(&mut raw)
        .await?;
    assert_eq!(
        old_key, None,
        "the old idempotency key expires with its job"
    );
    Ok(())
}

/// Redis, a coordinator and `workers` workers sharing the queue; attempts of a dead worker
/// are reclaimed after 2 s and failed attempts retried after about 0.1 s.
async fn cluster_with_queue(
    workers: usize,
    worker_args: &[&str],
) -> anyhow::Result<(ExternalServer, TestCluster)> {
    let redis = redis_server().await?;
    let url = redis.redis_url();
    let mut args = vec![
        "--redis-url",
        &url,
        "--job-visibility-timeout-secs",
        "2",
        "--job-retry-backoff-secs",
        "0.1",
    ];
    args.extend(worker_args);
    // The REST sources of these tests are on loopback, which workers refuse by default.
    let env = vec![(
        "POLAROID_REST_ALLOW_PRIVATE_NETWORKS".to_owned(),
        "true".to_owned(),
    )];
    let cluster =
        TestCluster::start_with_env(workers, &["--redis-url", &url], &args, env, None).await?;
    Ok((redis, cluster))
}

/// A worker that only runs jobs: it takes them from Redis without joining any ring.
fn job_worker(redis: &ExternalServer, cluster: &TestCluster) -> anyhow::Result<WorkerProcess> {
    let url = redis.redis_url();
    let state = cluster.state.path().to_string_lossy().into_owned();
    let root = cluster.data_root.path().to_string_lossy().into_owned();
    WorkerProcess::spawn(
        &[
            "--redis-url",
            &url,
            "--job-slots",
            "1",
            "--handle-store",
            "external",
            "--state-dir",
            &state,
            "--data-root",
            &root,
        ],
        &[],
    )
}

async fn jobs_client(address: SocketAddr) -> anyhow::Result<Jobs> {
    Ok(JobServiceClient::connect(format!("http://{address}")).await?)
}

fn step(op: Op, inputs: Vec<pb::JobInput>) -> pb::JobStep {
    pb::JobStep {
        step: Some(pb::PlanStep { op: Some(op) }),
        inputs,
    }
}

fn from_step(index: u32) -> pb::JobInput {
    pb::JobInput {
        input: Some(job_input::Input::Step(index)),
    }
}

fn read_parquet(path: &str) -> Op {
    Op::ReadParquet(pb::ReadParquetRequest {
        path: path.into(),
        ..Default::default()
    })
}

fn read_rest(url: &str) -> Op {
    Op::ReadRestApi(pb::RestApiRequest {
        url: url.into(),
        ..Default::default()
    })
}

fn sort_by(column: &str) -> Op {
    Op::Sort(pb::SortRequest {
        columns: vec![pb::SortColumn {
            name: column.into(),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn spec(steps: Vec<pb::JobStep>, path: &str, keep_handle: bool) -> pb::JobSpec {
    pb::JobSpec {
        plan: Some(pb::JobPlan { steps }),
        sink: Some(pb::JobSink {
            path: path.into(),
            keep_handle,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn submit(jobs: &mut Jobs, spec: pb::JobSpec) -> Result<pb::Job, tonic::Status> {
    let reply = jobs
        .submit_job(pb::SubmitJobRequest { spec: Some(spec) })
        .await?
        .into_inner();
    Ok(reply.job.unwrap_or_default())
}

async fn get(jobs: &mut Jobs, id: &str) -> anyhow::Result<pb::Job> {
    Ok(jobs
        .get_job(pb::GetJobRequest { job_id: id.into() })
        .await?
        .into_inner())
}

/// Follows a job with WatchJob until it ends: its events, then its final record.
async fn watch_to_end(jobs: &mut Jobs, id: &str) -> anyhow::Result<(Vec<pb::JobEvent>, pb::Job)> {
    let mut stream = jobs
        .watch_job(pb::WatchJobRequest { job_id: id.into() })
        .await?
        .into_inner();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Some(event) = tokio::time::timeout_at(deadline.into(), stream.message()).await?? {
        events.push(event);
    }
    Ok((events, get(jobs, id).await?))
}

/// Waits for the first event of `kind`.
async fn wait_for_event(
    jobs: &mut Jobs,
    id: &str,
    kind: JobEventKind,
) -> anyhow::Result<pb::JobEvent> {
    let mut stream = jobs
        .watch_job(pb::WatchJobRequest { job_id: id.into() })
        .await?
        .into_inner();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(event) = tokio::time::timeout_at(deadline.into(), stream.message()).await?? {
        if event.kind() == kind {
            return Ok(event);
        }
    }
    anyhow::bail!("job {id} ended without a {kind:?} event")
}

fn kinds(events: &[pb::JobEvent]) -> Vec<JobEventKind> {
    events.iter().map(|e| e.kind()).collect()
}

fn sales(rows: usize) -> DataFrame {
    let regions = ["north", "south", "east", "west"];
    df!(
        "region" => (0..rows).map(|i| regions[i % 4]).collect::<Vec<_>>(),
        "amount" => (0..rows).map(|i| (i % 37) as f64 - 5.0).collect::<Vec<_>>(),
    )
    .expect("frame")
}

/// What the example job computes, by Polars here.
fn revenue_by_region(df: &DataFrame) -> DataFrame {
    df.clone()
        .lazy()
        .filter(col("amount").gt(lit(0.0)))
        .group_by([col("region")])
        .agg([col("amount").sum().alias("revenue")])
        .sort(["region"], Default::default())
        .collect()
        .expect("polars")
}

fn read_parquet_file(path: &std::path::Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).expect("sink exists"))
        .finish()
        .expect("sink is parquet")
}

/// The spec of `examples/jobs/revenue-by-region.json`, built in code.
fn revenue_spec(sink: &str) -> pb::JobSpec {
    use polaroid_tests::e;
    let filter = Op::Filter(pb::FilterRequest {
        handle: String::new(),
        predicate: Some(e::binary(
            e::col("amount"),
            pb::BinaryOperator::Gt,
            e::float(0.0),
        )),
    });
    let group = Op::GroupBy(pb::GroupByRequest {
        columns: vec!["region".into()],
        aggs: vec![e::alias(
            e::agg(pb::AggFunction::Sum, e::col("amount")),
            "revenue",
        )],
        ..Default::default()
    });
    spec(
        vec![
            step(read_parquet("sales.parquet"), vec![]),
            step(filter, vec![from_step(0)]),
            step(group, vec![from_step(1)]),
            step(sort_by("region"), vec![from_step(2)]),
        ],
        sink,
        true,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_and_its_sink_and_handle_match_polars() -> anyhow::Result<()> {
    let (_redis, cluster) = cluster_with_queue(2, &[]).await?;
    let df = sales(10_000);
    write_parquet(&cluster.path("sales.parquet"), &df);
    std::fs::create_dir(cluster.path("reports"))?;
    let mut jobs = jobs_client(cluster.coordinator.address).await?;
    let keyed = pb::JobSpec {
        idempotency_key: "revenue-1".into(),
        ..revenue_spec("reports/revenue.parquet")
    };
    let job = submit(&mut jobs, keyed.clone()).await?;
    assert_eq!(job.state(), JobState::Queued);

    let (events, done) = watch_to_end(&mut jobs, &job.id).await?;
    assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
    // Rows-written events come as the writer goes (none for a quick write): the rest is exact.
    let milestones: Vec<JobEventKind> = kinds(&events)
        .into_iter()
        .filter(|k| *k != JobEventKind::RowsWritten)
        .collect();
    assert_eq!(
        milestones,
        [
            JobEventKind::Queued,
            JobEventKind::Started,
            JobEventKind::Step,
            JobEventKind::Step,
            JobEventKind::Step,
            JobEventKind::Step,
            JobEventKind::Succeeded,
        ]
    );
    let steps: Vec<u32> = events
        .iter()
        .filter(|e| e.kind() == JobEventKind::Step)
        .map(|e| e.progress.unwrap_or_default().steps_done)
        .collect();
    assert_eq!(steps, [1, 2, 3, 4], "step k of n, in order");

    let expected = revenue_by_region(&df);
    let written = read_parquet_file(&cluster.path("reports/revenue.parquet"));
    assert_frame_eq(&written, &expected);
    let result = done.result.unwrap_or_default();
    assert_eq!(result.rows, expected.height() as u64);
    // The kept handle is served by whichever worker it routes to.
    let mut client = cluster.client().await?;
    assert_frame_eq(&collect(&mut client, &result.handle).await?, &expected);
    // Nothing but the sink in its directory: no temp files.
    assert_eq!(std::fs::read_dir(cluster.path("reports"))?.count(), 1);

    // The same idempotency key names the same job, and nothing runs twice.
    let reply = jobs
        .submit_job(pb::SubmitJobRequest { spec: Some(keyed) })
        .await?
        .into_inner();
    assert!(!reply.created);
    assert_eq!(reply.job.unwrap_or_default().id, job.id);
    let listed = jobs
        .list_jobs(pb::ListJobsRequest {
            state: JobState::Succeeded as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(listed.jobs.len(), 1);
    Ok(())
}

/// A job whose steps are in the shapes from before the established contract (issue 23),
/// as a client of that time sends them or a queue of that time holds them: it runs with the
/// meaning they had (a slice without a length to the end, an unset diff `n` one period).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_in_the_old_step_shapes_runs_as_it_meant() -> anyhow::Result<()> {
    let (_redis, cluster) = cluster_with_queue(1, &[]).await?;
    let df = sales(100);
    write_parquet(&cluster.path("sales.parquet"), &df);
    let mut jobs = jobs_client(cluster.coordinator.address).await?;
    let old = spec(
        vec![
            step(read_parquet("sales.parquet"), vec![]),
            step(
                Op::SortV0(pb::SortStepV0 {
                    by: vec!["region".into(), "amount".into()],
                    descending: vec![true],
                    ..Default::default()
                }),
                vec![from_step(0)],
            ),
            step(
                Op::SliceV0(pb::SliceStepV0 {
                    offset: 90,
                    ..Default::default()
                }),
                vec![from_step(1)],
            ),
            step(
                Op::DiffV0(pb::DiffStepV0 {
                    columns: vec!["amount".into()],
                    ..Default::default()
                }),
                vec![from_step(2)],
            ),
        ],
        "old-shapes.parquet",
        false,
    );
    let job = submit(&mut jobs, old).await?;
    let (_, done) = watch_to_end(&mut jobs, &job.id).await?;
    assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
    let expected = df
        .lazy()
        .sort(
            ["region", "amount"],
            SortMultipleOptions::default()
                .with_order_descending(true)
                .with_maintain_order(true),
        )
        .slice(90, IdxSize::MAX)
        .with_column(col("amount").diff(lit(1), polars::series::ops::NullBehavior::Ignore))
        .collect()?;
    assert_frame_eq(
        &read_parquet_file(&cluster.path("old-shapes.parquet")),
        &expected,
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_specs_are_rejected_at_submit() -> anyhow::Result<()> {
    use polaroid_tests::e;
    let (_redis, cluster) = cluster_with_queue(1, &[]).await?;
    write_parquet(&cluster.path("sales.parquet"), &sales(100));
    let mut jobs = jobs_client(cluster.coordinator.address).await?;
    let filter_on = |column: &str| {
        Op::Filter(pb::FilterRequest {
            handle: String::new(),
            predicate: Some(e::binary(e::col(column), pb::BinaryOperator::Gt, e::int(0))),
        })
    };
    let cases: Vec<(&str, pb::JobSpec, tonic::Code, &str)> = vec![
        (
            "unknown column",
            spec(
                vec![
                    step(read_parquet("sales.parquet"), vec![]),
                    step(filter_on("no_such_column"), vec![from_step(0)]),
                ],
                "out.parquet",
                false,
            ),
            tonic::Code::InvalidArgument,
            "no_such_column",
        ),
        (
            "unknown function",
            spec(
                vec![
                    step(read_parquet("sales.parquet"), vec![]),
                    step(
                        Op::Select(pb::SelectRequest {
                            exprs: vec![e::func("no_such_function", vec![e::col("amount")])],
                            ..Default::default()
                        }),
                        vec![from_step(0)],
                    ),
                ],
                "out.parquet",
                false,
            ),
            tonic::Code::InvalidArgument,
            "no_such_function",
        ),
        (
            "source outside the data roots",
            spec(
                vec![step(read_parquet("../../etc/passwd"), vec![])],
                "out.parquet",
                false,
            ),
            tonic::Code::PermissionDenied,
            "`..` is not allowed",
        ),
        (
            "sink outside the data roots",
            spec(
                vec![step(read_parquet("sales.parquet"), vec![])],
                "/etc/out.parquet",
                false,
            ),
            tonic::Code::PermissionDenied,
            "outside the configured data roots",
        ),
        (
            "missing source",
            spec(
                vec![step(read_parquet("missing.parquet"), vec![])],
                "out.parquet",
                false,
            ),
            tonic::Code::NotFound,
            "missing.parquet",
        ),
        (
            "no steps",
            spec(vec![], "out.parquet", false),
            tonic::Code::InvalidArgument,
            "at least one step",
        ),
        (
            "no sink",
            spec(vec![step(read_parquet("sales.parquet"), vec![])], "", false),
            tonic::Code::InvalidArgument,
            "sink",
        ),
        (
            "unknown sink format",
            spec(
                vec![step(read_parquet("sales.parquet"), vec![])],
                "out.xlsx",
                false,
            ),
            tonic::Code::InvalidArgument,
            "format",
        ),
        (
            "an input from a later step",
            spec(
                vec![
                    step(read_parquet("sales.parquet"), vec![]),
                    step(filter_on("amount"), vec![from_step(1)]),
                ],
                "out.parquet",
                false,
            ),
            tonic::Code::InvalidArgument,
            "does not come before",
        ),
        (
            "a source given an input",
            spec(
                vec![step(read_parquet("sales.parquet"), vec![from_step(0)])],
                "out.parquet",
                false,
            ),
            tonic::Code::InvalidArgument,
            "takes 0 input",
        ),
        (
            "an unknown input handle",
            spec(
                vec![step(
                    filter_on("amount"),
                    vec![pb::JobInput {
                        input: Some(job_input::Input::Handle("not-a-handle".into())),
                    }],
                )],
                "out.parquet",
                false,
            ),
            tonic::Code::InvalidArgument,
            "handle",
        ),
        (
            "too many attempts",
            pb::JobSpec {
                max_attempts: 1000,
                ..spec(
                    vec![step(read_parquet("sales.parquet"), vec![])],
                    "out.parquet",
                    false,
                )
            },
            tonic::Code::InvalidArgument,
            "max_attempts",
        ),
    ];
    for (what, bad, code, mentions) in cases {
        let status = submit(&mut jobs, bad).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(status.message().contains(mentions), "{what}: {status:?}");
    }
    let missing = jobs
        .submit_job(pb::SubmitJobRequest { spec: None })
        .await
        .expect_err("no spec");
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);
    for (id, code) in [
        ("../../etc", tonic::Code::InvalidArgument),
        ("0000000000000000000000000000", tonic::Code::NotFound),
    ] {
        let status = get(&mut jobs, id).await.expect_err(id);
        let status = status.downcast::<tonic::Status>().expect("a status");
        assert_eq!(status.code(), code, "{id}");
    }
    // Nothing was queued by any of that.
    let all = jobs
        .list_jobs(pb::ListJobsRequest::default())
        .await?
        .into_inner();
    assert!(all.jobs.is_empty(), "{:?}", all.jobs);
    assert!(std::fs::read_dir(cluster.data_root.path())?.count() == 1);
    Ok(())
}

/// A JSON source on loopback whose every answer the test decides: by call number, a
/// delay or a failure.
struct RestSource {
    address: SocketAddr,
    calls: Arc<AtomicUsize>,
}

#[derive(Clone, Copy)]
enum Answer {
    Records,
    /// Ten records instead of a hundred.
    FewerRecords,
    SlowRecords(Duration),
    ServerError,
}

impl RestSource {
    async fn start(answer: fn(usize) -> Answer) -> anyhow::Result<Self> {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let app = axum::Router::new().route(
            "/records",
            axum::routing::get(move || {
                let call = counter.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    let answer = answer(call);
                    let count = if matches!(answer, Answer::FewerRecords) {
                        10
                    } else {
                        100
                    };
                    let records = axum::Json(
                        (0..count)
                            .map(|i| serde_json::json!({"id": count - 1 - i, "value": i * 2}))
                            .collect::<Vec<_>>(),
                    );
                    match answer {
                        Answer::Records | Answer::FewerRecords => Ok(records),
                        Answer::SlowRecords(delay) => {
                            tokio::time::sleep(delay).await;
                            Ok(records)
                        }
                        Answer::ServerError => Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { address, calls })
    }

    fn url(&self) -> String {
        format!("http://{}/records", self.address)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_reads_a_rest_source_afresh() -> anyhow::Result<()> {
    let (_redis, cluster) = cluster_with_queue(1, &[]).await?;
    // The first job's validation and run see 100 records; the second job's see 10.
    let source = RestSource::start(|call| match call {
        1 | 2 => Answer::Records,
        _ => Answer::FewerRecords,
    })
    .await?;
    let mut jobs = jobs_client(cluster.coordinator.address).await?;
    let mut rows = Vec::new();
    for _ in 0..2 {
        let job = submit(
            &mut jobs,
            spec(vec![step(read_rest(&source.url()), vec![])], "", true),
        )
        .await?;
        let (_, done) = watch_to_end(&mut jobs, &job.id).await?;
        assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
        rows.push(done.result.unwrap_or_default().rows);
    }
    assert_eq!(
        rows,
        [100, 10],
        "the second job is not the first one's cached answer"
    );
    Ok(())
}

fn rest_records_sorted() -> DataFrame {
    df!(
        "id" => (0..100i64).collect::<Vec<_>>(),
        "value" => (0..100i64).map(|i| (99 - i) * 2).collect::<Vec<_>>(),
    )
    .expect("frame")
}

/// Submits a job that reads `source` and sorts into `sink` (under `out/`, created here),
/// and waits until its attempt has started and reached the source, which holds it: the
/// jobs client, the job, its Started event and the index of the worker running it.
async fn start_held_job(
    cluster: &mut TestCluster,
    source: &RestSource,
    sink: &str,
) -> anyhow::Result<(Jobs, pb::Job, pb::JobEvent, usize)> {
    std::fs::create_dir(cluster.path("out"))?;
    let mut jobs = jobs_client(cluster.coordinator.address).await?;
    let job = submit(
        &mut jobs,
        spec(
            vec![
                step(read_rest(&source.url()), vec![]),
                step(sort_by("id"), vec![from_step(0)]),
            ],
            sink,
            false,
        ),
    )
    .await?;
    let started = wait_for_event(&mut jobs, &job.id, JobEventKind::Started).await?;
    let workers = cluster.live_workers().await?;
    let running = workers
        .iter()
        .find(|w| w.worker_id == started.worker)
        .and_then(|w| cluster.index_of(&w.address))
        .expect("the worker that started the job");
    eventually(
        "the attempt to reach the source",
        Duration::from_secs(30),
        || {
            let calls = source.calls.clone();
            async move { Ok(calls.load(Ordering::SeqCst) >= 2) }
        },
    )
    .await?;
    Ok((jobs, job, started, running))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_is_killed_is_reclaimed_and_completes() -> anyhow::Result<()> {
    let (_redis, mut cluster) = cluster_with_queue(2, &[]).await?;
    // Call 1 validates; call 2 is the first attempt, which hangs until its worker dies.
    let source = RestSource::start(|call| match call {
        2 => Answer::SlowRecords(Duration::from_secs(120)),
        _ => Answer::Records,
    })
    .await?;
    let (mut jobs, job, started, victim) =
        start_held_job(&mut cluster, &source, "out/reclaimed.parquet").await?;
    cluster.kill_worker(victim)?;

    let (events, done) = watch_to_end(&mut jobs, &job.id).await?;
    assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 2);
    assert_ne!(done.worker, started.worker, "another worker finished it");
    let starts = events
        .iter()
        .filter(|e| e.kind() == JobEventKind::Started)
        .count();
    assert_eq!(starts, 2);
    assert_frame_eq(
        &read_parquet_file(&cluster.path("out/reclaimed.parquet")),
        &rest_records_sorted(),
    );
    assert_eq!(
        std::fs::read_dir(cluster.path("out"))?.count(),
        1,
        "one complete sink"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_lets_its_running_job_end_within_job_drain_secs() -> anyhow::Result<()> {
    let (_redis, mut cluster) = cluster_with_queue(2, &["--job-drain-secs", "60"]).await?;
    // Call 1 validates; call 2, the attempt, answers 3 s later, while its worker drains.
    let source = RestSource::start(|call| match call {
        2 => Answer::SlowRecords(Duration::from_secs(3)),
        _ => Answer::Records,
    })
    .await?;
    let (mut jobs, job, started, draining) =
        start_held_job(&mut cluster, &source, "out/drained.parquet").await?;
    cluster.workers[draining]
        .as_ref()
        .expect("the draining worker")
        .terminate()?;

    let (_, done) = watch_to_end(&mut jobs, &job.id).await?;
    assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
    assert_eq!(
        (done.attempts, done.worker.as_str()),
        (1, started.worker.as_str()),
        "the draining worker finished it, nobody took it over"
    );
    assert_frame_eq(
        &read_parquet_file(&cluster.path("out/drained.parquet")),
        &rest_records_sorted(),
    );
    // Then it exits, cleanly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let worker = cluster.workers[draining].as_mut().expect("the worker");
        if let Some(status) = worker.try_exit()? {
            break status;
        }
        anyhow::ensure!(Instant::now() < deadline, "the drained worker did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_always_fails_is_dead_lettered_after_max_attempts() -> anyhow::Result<()> {
    let (redis, cluster) = cluster_with_queue(1, &[]).await?;
    // Validation reads the source; every attempt after that gets a server error.
    let source = RestSource::start(|call| match call {
        1 => Answer::Records,
        _ => Answer::ServerError,
    })
    .await?;
    let mut jobs = jobs_client(cluster.coordinator.address).await?;
    let job = submit(
        &mut jobs,
        pb::JobSpec {
            max_attempts: 3,
            ..spec(vec![step(read_rest(&source.url()), vec![])], "", true)
        },
    )
    .await?;
    let (events, done) = watch_to_end(&mut jobs, &job.id).await?;
    assert_eq!(done.state(), JobState::Failed, "{done:?}");
    assert_eq!(done.attempts, 3);
    assert!(done.error.contains("500"), "{}", done.error);
    let count = |kind| events.iter().filter(|e| e.kind() == kind).count();
    assert_eq!(count(JobEventKind::Started), 3);
    assert_eq!(count(JobEventKind::Retrying), 2);
    assert_eq!(count(JobEventKind::Failed), 1);
    assert_eq!(
        source.calls.load(Ordering::SeqCst),
        4,
        "validation, then 3 attempts"
    );

    let queue =
        RedisQueue::connect(&redis.redis_url(), "polaroid", QueueSettings::default()).await?;
    let dead = queue.dead_letters(None, 100).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].job_id, job.id);
    assert_eq!(dead[0].tenant, polaroid_jobs::LEGACY_TENANT);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].error, done.error);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_it_within_two_seconds() -> anyhow::Result<()> {
    let (_redis, cluster) = cluster_with_queue(1, &[]).await?;
    let source = RestSource::start(|call| match call {
        1 => Answer::Records,
        _ => Answer::SlowRecords(Duration::from_secs(120)),
    })
    .await?;
    std::fs::create_dir(cluster.path("out"))?;
    let mut jobs = jobs_client(cluster.coordinator.address).await?;
    let job = submit(
        &mut jobs,
        spec(
            vec![step(read_rest(&source.url()), vec![])],
            "out/never.parquet",
            false,
        ),
    )
    .await?;
    wait_for_event(&mut jobs, &job.id, JobEventKind::Started).await?;
    let asked = Instant::now();
    let cancelling = jobs
        .cancel_job(pb::CancelJobRequest {
            job_id: job.id.clone(),
        })
        .await?
        .into_inner();
    assert!(cancelling.cancel_requested);
    let (_, done) = watch_to_end(&mut jobs, &job.id).await?;
    let took = asked.elapsed();
    assert_eq!(done.state(), JobState::Cancelled, "{done:?}");
    assert!(took < Duration::from_secs(2), "cancelled after {took:?}");
    assert_eq!(
        std::fs::read_dir(cluster.path("out"))?.count(),
        0,
        "no sink, no temp file"
    );
    // It stays cancelled: no retry follows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = get(&mut jobs, &job.id).await?;
    assert_eq!((later.state(), later.attempts), (JobState::Cancelled, 1));
    // Cancelling a finished job changes nothing.
    let again = jobs
        .cancel_job(pb::CancelJobRequest { job_id: job.id })
        .await?
        .into_inner();
    assert_eq!(again.state(), JobState::Cancelled);
    Ok(())
}

fn small_job(priority: JobPriority) -> pb::JobSpec {
    pb::JobSpec {
        priority: priority as i32,
        ..spec(
            vec![
                step(read_parquet("sales.parquet"), vec![]),
                step(
                    Op::Head(pb::HeadRequest {
                        n: 5,
                        ..Default::default()
                    }),
                    vec![from_step(0)],
                ),
            ],
            "",
            true,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_priority_jobs_start_first_and_low_ones_still_run() -> anyhow::Result<()> {
    // The cluster's worker validates but takes no jobs: a backlog builds.
    let (redis, cluster) = cluster_with_queue(1, &["--job-slots", "0"]).await?;
    write_parquet(&cluster.path("sales.parquet"), &sales(100));
    let mut jobs = jobs_client(cluster.coordinator.address).await?;
    let mut submitted = Vec::new();
    for priority in [JobPriority::Low, JobPriority::Normal, JobPriority::High] {
        for _ in 0..3 {
            submitted.push((submit(&mut jobs, small_job(priority)).await?.id, priority));
        }
    }
    let _runner = job_worker(&redis, &cluster)?;
    let mut finished = Vec::new();
    for (id, priority) in &submitted {
        let (_, done) = watch_to_end(&mut jobs, id).await?;
        assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
        finished.push((done.started_unix_ms, done.finished_unix_ms, *priority));
    }
    // One slot: each job starts after the one before it finished.
    finished.sort_by_key(|(started, finished, _)| (*started, *finished));
    let order: Vec<JobPriority> = finished.into_iter().map(|(_, _, p)| p).collect();
    assert_eq!(
        order,
        [
            JobPriority::High,
            JobPriority::High,
            JobPriority::High,
            JobPriority::Normal,
            JobPriority::Normal,
            JobPriority::Normal,
            JobPriority::Low,
            JobPriority::Low,
            JobPriority::Low,
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_survive_a_redis_restart() -> anyhow::Result<()> {
    let (mut redis, cluster) = cluster_with_queue(1, &["--job-slots", "0"]).await?;
    write_parquet(&cluster.path("sales.parquet"), &sales(100));
    let mut jobs = jobs_client(cluster.coordinator.address).await?;
    let mut before = Vec::new();
    for _ in 0..4 {
        before.push(submit(&mut jobs, small_job(JobPriority::Normal)).await?.id);
    }
    redis.restart().await?;
    // The coordinator reconnects on its own; a submit right after may see it reconnecting.
    let submitter = jobs.clone();
    eventually(
        "a submit after the restart",
        Duration::from_secs(30),
        move || {
            let mut jobs = submitter.clone();
            async move {
                Ok(submit(&mut jobs, small_job(JobPriority::Normal))
                    .await
                    .is_ok())
            }
        },
    )
    .await?;
    let after = jobs
        .list_jobs(pb::ListJobsRequest::default())
        .await?
        .into_inner();
    assert_eq!(after.jobs.len(), 5, "four from before, one after");
    for id in &before {
        assert!(after.jobs.iter().any(|j| &j.id == id), "{id} survived");
    }
    let ids: Vec<String> = after.jobs.iter().map(|j| j.id.clone()).collect();
    let _runner = job_worker(&redis, &cluster)?;
    for id in &ids {
        let (_, done) = watch_to_end(&mut jobs, id).await?;
        assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_the_example_spec() -> anyhow::Result<()> {
    let (_redis, cluster) = cluster_with_queue(1, &[]).await?;
    let df = sales(1_000);
    write_parquet(&cluster.path("sales.parquet"), &df);
    std::fs::create_dir(cluster.path("reports"))?;
    // The directory cargo names at run time: a test binary built from another checkout
    // sharing the target dir (CI's clean clone) would carry that checkout's path.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let example = manifest_dir.join("../examples/jobs/revenue-by-region.json");
    let coordinator = format!("http://{}", cluster.coordinator.address);
    let polaroid = |args: &[&str]| {
        std::process::Command::new(polaroid_binary().expect("binary"))
            .arg("job")
            .args(args)
            .args(["--coordinator", &coordinator])
            .output()
            .expect("polaroid job runs")
    };
    let submitted = polaroid(&["submit", example.to_str().expect("utf-8"), "--wait"]);
    let stderr = String::from_utf8_lossy(&submitted.stderr);
    assert!(submitted.status.success(), "{stderr}");
    assert!(stderr.contains("succeeded"), "{stderr}");
    let id = String::from_utf8(submitted.stdout)?.trim().to_owned();
    assert_frame_eq(
        &read_parquet_file(&cluster.path("reports/revenue-by-region.parquet")),
        &revenue_by_region(&df),
    );

    let status = polaroid(&["status", &id]);
    let record: serde_json::Value = serde_json::from_slice(&status.stdout)?;
    assert_eq!(record["state"], "JOB_STATE_SUCCEEDED", "{record}");
    let listed = polaroid(&["list", "--state", "succeeded"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
    // The example's idempotency key: submitting again names the same job.
    let again = polaroid(&["submit", example.to_str().expect("utf-8")]);
    assert!(String::from_utf8_lossy(&again.stdout).starts_with(&id));
    let bad = polaroid(&["status", "not-a-job"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("InvalidArgument"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_runs_jobs_on_its_embedded_queue() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let root = tempfile::tempdir()?;
    let df = sales(1_000);
    write_parquet(&root.path().join("sales.parquet"), &df);
    std::fs::create_dir(root.path().join("reports"))?;
    let standalone = WorkerProcess::spawn_role(
        "standalone",
        &[
            "--state-dir",
            &state.path().to_string_lossy(),
            "--data-root",
            &root.path().to_string_lossy(),
        ],
        &[],
    )?;
    eventually("standalone ready", Duration::from_secs(30), || async {
        Ok(http_get(standalone.http_address, "/readyz")
            .await
            .is_ok_and(|r| r.trim() == "ready"))
    })
    .await?;
    let mut jobs = jobs_client(standalone.address).await?;
    let job = submit(&mut jobs, revenue_spec("reports/revenue.parquet")).await?;
    let (_, done) = watch_to_end(&mut jobs, &job.id).await?;
    assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
    let expected = revenue_by_region(&df);
    assert_frame_eq(
        &read_parquet_file(&root.path().join("reports/revenue.parquet")),
        &expected,
    );
    let mut client = standalone.client().await?;
    let handle = done.result.unwrap_or_default().handle;
    assert_frame_eq(&collect(&mut client, &handle).await?, &expected);
    Ok(())
}
