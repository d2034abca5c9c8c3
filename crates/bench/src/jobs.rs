//! The batch-job benchmark: queue-to-start latency on idle workers, throughput of many
//! trivial jobs through Redis with several workers, and the cost of running a large plan
//! as a job instead of interactively.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use polaroid_coordinator::CoordinatorConfig;
use polaroid_proto::v1::{
    self as pb, BinaryOperator, JobState, job_input, job_service_client::JobServiceClient,
    literal_expr::Value, plan_step::Op,
};
use polaroid_worker::{HandleStoreKind, WorkerConfig};
use polars::prelude::*;
use tonic::transport::Channel;

use crate::{BenchServer, aggregate, binary, column, literal};

pub struct Options {
    pub data_dir: PathBuf,
    pub workers: usize,
    pub slots: usize,
    pub idle_jobs: usize,
    pub jobs: usize,
    pub submitters: usize,
    pub rows: usize,
    pub repetitions: usize,
    /// Where the workers' filesystem store lives (default: a scratch directory beside the
    /// data).
    pub state_dir: Option<PathBuf>,
}

type Jobs = JobServiceClient<Channel>;

/// A redis-server of the benchmark's own, with AOF on as in production.
struct Redis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    async fn start(scratch: &Path) -> anyhow::Result<Self> {
        let binary = std::env::var("POLAROID_REDIS_SERVER")
            .unwrap_or_else(|_| "/usr/bin/redis-server".into());
        let dir = tempfile::tempdir_in(scratch)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--appendonly", "yes", "--save", ""])
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {binary}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            anyhow::ensure!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            child,
            port,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn step(op: Op, input: Option<u32>) -> pb::JobStep {
    pb::JobStep {
        step: Some(pb::PlanStep { op: Some(op) }),
        inputs: input
            .map(|index| pb::JobInput {
                input: Some(job_input::Input::Step(index)),
            })
            .into_iter()
            .collect(),
    }
}

fn read(path: &Path) -> Op {
    Op::ReadParquet(pb::ReadParquetRequest {
        path: path.to_string_lossy().into_owned(),
        ..Default::default()
    })
}

/// A job with next to no work: read a 3-row file, take its first row, keep the handle.
fn trivial_job(path: &Path) -> pb::JobSpec {
    pb::JobSpec {
        plan: Some(pb::JobPlan {
            steps: vec![
                step(read(path), None),
                step(
                    Op::Head(pb::HeadRequest {
                        handle: String::new(),
                        n: 1,
                    }),
                    Some(0),
                ),
            ],
        }),
        sink: Some(pb::JobSink {
            keep_handle: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The large plan's operations after the source, in order (input handles left empty).
fn large_plan_ops(threshold: i32) -> Vec<Op> {
    vec![
        Op::Filter(pb::FilterRequest {
            handle: String::new(),
            predicate: Some(binary(
                column("qty"),
                BinaryOperator::Gt,
                literal(Value::IntVal(i64::from(threshold))),
            )),
        }),
        Op::GroupBy(pb::GroupByRequest {
            columns: vec!["key".into(), "category".into()],
            aggs: vec![
                aggregate(pb::AggFunction::Sum, column("value"), "total"),
                aggregate(pb::AggFunction::Mean, column("qty"), "mean_qty"),
                aggregate(pb::AggFunction::Count, column("id"), "rows"),
            ],
            ..Default::default()
        }),
        Op::Sort(pb::SortRequest {
            columns: ["key", "category"]
                .into_iter()
                .map(|name| pb::SortColumn {
                    name: name.into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    ]
}

async fn submit(jobs: &mut Jobs, spec: pb::JobSpec) -> anyhow::Result<String> {
    Ok(jobs
        .submit_job(pb::SubmitJobRequest { spec: Some(spec) })
        .await?
        .into_inner()
        .job
        .unwrap_or_default()
        .id)
}

/// Polls the record every `every` until the job ends. What is measured comes from the
/// record's own timestamps, so the polling adds nothing to it (and polls rarely, so as
/// not to take CPU from the workers).
async fn finished(jobs: &mut Jobs, id: &str, every: Duration) -> anyhow::Result<pb::Job> {
    loop {
        let job = jobs
            .get_job(pb::GetJobRequest { job_id: id.into() })
            .await?
            .into_inner();
        match job.state() {
            JobState::Succeeded => return Ok(job),
            JobState::Failed | JobState::Cancelled => {
                anyhow::bail!("job {id} ended {:?}: {}", job.state(), job.error)
            }
            _ => tokio::time::sleep(every).await,
        }
    }
}

fn queue_to_start_ms(job: &pb::Job) -> u64 {
    job.started_unix_ms.saturating_sub(job.submitted_unix_ms)
}

fn ms_percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The large plan as a batch job: from the client's submit to the finish in the job's
/// record; the rows written; and the wait from the submit to the job's start. A threshold
/// of its own (always true) keeps each run from reusing another's cached result.
async fn large_plan_as_job(
    jobs: &mut Jobs,
    large: &Path,
    output: &Path,
    repetition: usize,
) -> anyhow::Result<(Duration, u64, Duration)> {
    let mut steps = vec![step(read(large), None)];
    for (index, op) in large_plan_ops(-1 - repetition as i32)
        .into_iter()
        .enumerate()
    {
        steps.push(step(op, Some(index as u32)));
    }
    let spec = pb::JobSpec {
        plan: Some(pb::JobPlan { steps }),
        sink: Some(pb::JobSink {
            path: output
                .join(format!("job-{repetition}.parquet"))
                .to_string_lossy()
                .into_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let submitted = polaroid_jobs::lifecycle::now_unix_ms();
    let id = submit(jobs, spec).await?;
    let job = finished(jobs, &id, Duration::from_millis(50)).await?;
    Ok((
        Duration::from_millis(job.finished_unix_ms.saturating_sub(submitted)),
        job.result.unwrap_or_default().rows,
        Duration::from_millis(job.started_unix_ms.saturating_sub(submitted)),
    ))
}

/// The same plan as interactive calls ending in WriteParquet; and the rows written.
async fn large_plan_interactively(
    client: &mut crate::Client,
    large: &Path,
    output: &Path,
    repetition: usize,
) -> anyhow::Result<(Duration, u64)> {
    let start = Instant::now();
    let mut handle = crate::read_parquet(client, large).await?;
    for op in large_plan_ops(-1000 - repetition as i32) {
        handle = match op {
            Op::Filter(r) => client.filter(pb::FilterRequest { handle, ..r }).await,
            Op::GroupBy(r) => client
                .group_by(pb::GroupByRequest { handle, ..r })
                .await
                .map(|reply| {
                    tonic::Response::new(pb::DataFrameHandle {
                        handle: reply.into_inner().handle,
                        error: None,
                    })
                }),
            Op::Sort(r) => client.sort(pb::SortRequest { handle, ..r }).await,
            _ => unreachable!("the plan has no other operations"),
        }?
        .into_inner()
        .handle;
    }
    let written = client
        .write_parquet(pb::WriteParquetRequest {
            handle,
            path: output
                .join(format!("interactive-{repetition}.parquet"))
                .to_string_lossy()
                .into_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok((start.elapsed(), written.rows_written.unwrap_or(0) as u64))
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.data_dir)?;
    let data_dir = std::fs::canonicalize(&options.data_dir)?;
    let scratch = tempfile::Builder::new()
        .prefix("jobs-bench-")
        .tempdir_in(&data_dir)?;
    let large = data_dir.join(format!("core-{}.parquet", options.rows));
    crate::generate(&large, options.rows)?;
    let tiny = scratch.path().join("tiny.parquet");
    ParquetWriter::new(std::fs::File::create(&tiny)?).finish(&mut df!("a" => [1i64, 2, 3])?)?;

    let store_scratch = match &options.state_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Some(
                tempfile::Builder::new()
                    .prefix("jobs-bench-state-")
                    .tempdir_in(dir)?,
            )
        }
        None => None,
    };
    let state_dir = store_scratch
        .as_ref()
        .map_or_else(|| scratch.path().join("state"), |dir| dir.path().to_owned());
    let redis = Redis::start(scratch.path()).await?;
    let coordinator = BenchServer::coordinator(CoordinatorConfig {
        bind_address: "127.0.0.1:0".parse()?,
        http_address: "127.0.0.1:0".parse()?,
        redis_url: redis.url(),
        ..Default::default()
    })
    .await?;
    let mut workers = Vec::new();
    for index in 0..options.workers {
        workers.push(
            BenchServer::worker(WorkerConfig {
                coordinator_url: format!("http://{}", coordinator.address()),
                worker_id: format!("bench-{index}"),
                load_report_interval_secs: 0.5,
                handle_store: HandleStoreKind::External,
                state_dir: state_dir.clone(),
                data_roots: vec![data_dir.clone()],
                redis_url: redis.url(),
                job_slots: options.slots,
                ..Default::default()
            })
            .await?,
        );
    }
    let channel = Channel::from_shared(format!("http://{}", coordinator.address()))?
        .connect()
        .await?;
    let mut jobs = JobServiceClient::new(channel.clone());
    // Submitting validates on a worker: wait until they have registered.
    let deadline = Instant::now() + Duration::from_secs(30);
    while submit(&mut jobs, trivial_job(&tiny)).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "workers did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Idle workers: one job at a time.
    let mut idle = Vec::with_capacity(options.idle_jobs);
    for _ in 0..options.idle_jobs {
        let id = submit(&mut jobs, trivial_job(&tiny)).await?;
        idle.push(queue_to_start_ms(
            &finished(&mut jobs, &id, Duration::from_millis(5)).await?,
        ));
    }
    idle.sort_unstable();
    println!(
        "| queue-to-start, idle workers, {} jobs one at a time, p50 / p99 | {} ms / {} ms |",
        options.idle_jobs,
        ms_percentile(&idle, 0.5),
        ms_percentile(&idle, 0.99)
    );

    // A large plan as a job and interactively, alternating which goes first, before the
    // burst fills the store (whose collector then reads every record). The first pair
    // warms the page cache and the workers' allocators and is not counted: whichever ran
    // first would otherwise pay for it alone.
    let output = scratch.path().join("out");
    std::fs::create_dir_all(&output)?;
    let mut client = coordinator.client().await?;
    let (mut as_job, mut interactive) = (Vec::new(), Vec::new());
    for repetition in 0..=options.repetitions {
        let (job, calls) = if repetition % 2 == 0 {
            let job = large_plan_as_job(&mut jobs, &large, &output, repetition).await?;
            (
                job,
                large_plan_interactively(&mut client, &large, &output, repetition).await?,
            )
        } else {
            let calls = large_plan_interactively(&mut client, &large, &output, repetition).await?;
            (
                large_plan_as_job(&mut jobs, &large, &output, repetition).await?,
                calls,
            )
        };
        anyhow::ensure!(job.1 == calls.1, "job and interactive runs disagree");
        println!(
            "  {} {repetition}: job {} ms (queue {} ms), interactive {} ms",
            if repetition == 0 { "warm-up" } else { "run" },
            job.0.as_millis(),
            job.2.as_millis(),
            calls.0.as_millis()
        );
        if repetition > 0 {
            as_job.push(job.0);
            interactive.push(calls.0);
        }
    }
    as_job.sort();
    interactive.sort();
    let (job, calls) = (as_job[as_job.len() / 2], interactive[interactive.len() / 2]);
    println!(
        "| {}-row plan (filter, group_by + 3 aggregates, sort, Parquet sink) interactively, median of {} | {:.2} s |",
        options.rows,
        options.repetitions,
        calls.as_secs_f64()
    );
    println!(
        "| the same plan as a batch job, from the client's submit to the recorded finish | {:.2} s |",
        job.as_secs_f64()
    );
    println!(
        "| batch / interactive | {:.2} |",
        job.as_secs_f64() / calls.as_secs_f64()
    );

    // A burst: every job submitted by concurrent clients; throughput from the first
    // submit to the last finish.
    let started = Instant::now();
    let first_submit = polaroid_jobs::lifecycle::now_unix_ms();
    let submissions = (0..options.jobs).map(|_| {
        let mut jobs = JobServiceClient::new(channel.clone());
        let spec = trivial_job(&tiny);
        async move { submit(&mut jobs, spec).await }
    });
    let ids: Vec<String> = futures::stream::iter(submissions)
        .buffer_unordered(options.submitters)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let submitted_in = started.elapsed();
    let mut last_finish = 0;
    let mut waits = Vec::with_capacity(ids.len());
    for id in &ids {
        let job = finished(&mut jobs, id, Duration::from_millis(20)).await?;
        last_finish = last_finish.max(job.finished_unix_ms);
        waits.push(queue_to_start_ms(&job));
    }
    waits.sort_unstable();
    let span = Duration::from_millis(last_finish.saturating_sub(first_submit));
    println!(
        "| {} trivial jobs, {} workers × {} slots, {} concurrent submitters: submitted in | {:.2} s ({:.0} jobs/s) |",
        options.jobs,
        options.workers,
        options.slots,
        options.submitters,
        submitted_in.as_secs_f64(),
        options.jobs as f64 / submitted_in.as_secs_f64()
    );
    println!(
        "| the same, first submit to last finish | {:.2} s ({:.0} jobs/s; queue-to-start p50 {} ms, p99 {} ms) |",
        span.as_secs_f64(),
        options.jobs as f64 / span.as_secs_f64(),
        ms_percentile(&waits, 0.5),
        ms_percentile(&waits, 0.99)
    );

    for worker in workers {
        worker.stop().await?;
    }
    coordinator.stop().await?;
    Ok(())
}
