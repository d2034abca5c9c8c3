//! Deep lineage: a call costs memory for its own step only, not for its ancestors', and a
//! deep chain still computes what Polars computes, on the worker that built it and on one
//! that replays it from the shared store.
//!
//! This binary counts every allocation (the worker runs in the test's process), so that
//! the memory a lineage holds is measured exactly rather than read off the RSS.

use polaroid_proto::v1::{self as pb, BinaryOperator as Op};
use polaroid_tests::{Client, TestWorker, assert_frame_eq, collect, e, upload};
use polaroid_worker::HandleStoreKind;
use polars::prelude::*;

#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

const COLUMNS: usize = 3;

fn base() -> DataFrame {
    df!(
        "id" => (0..1_000i64).collect::<Vec<_>>(),
        "a" => (0..1_000i64).map(|i| i * 2).collect::<Vec<_>>(),
        "b" => (0..1_000i64).map(|i| i % 7).collect::<Vec<_>>(),
    )
    .expect("frame")
}

/// One step of the chain: `a = a + 1`, so that the width stays the same at every depth and
/// only the lineage grows.
async fn step(client: &mut Client, handle: &str) -> anyhow::Result<String> {
    let request = pb::WithColumnsRequest {
        handle: handle.to_owned(),
        exprs: vec![e::alias(e::binary(e::col("a"), Op::Plus, e::int(1)), "a")],
        ..Default::default()
    };
    Ok(client.with_columns(request).await?.into_inner().handle)
}

async fn chain(client: &mut Client, from: &str, steps: usize) -> anyhow::Result<String> {
    let mut handle = from.to_owned();
    for _ in 0..steps {
        handle = step(client, &handle).await?;
    }
    Ok(handle)
}

fn expected(depth: i64) -> DataFrame {
    base()
        .lazy()
        .with_column(col("a") + lit(depth))
        .collect()
        .expect("local polars")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lineage_step_holds_the_memory_of_its_own_step_only() -> anyhow::Result<()> {
    const STEPS: usize = 2_000;
    // Issue 21's bound for a step: 16 KiB, whatever the depth. Were a step to keep a copy of
    // its ancestors' plans (as each node's cached IR did), 2,000 steps would hold about
    // 2,000²/2 IR nodes: gigabytes.
    const BOUND_PER_STEP: usize = 16 * 1024;
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let source = upload(&mut client, &base()).await?;
    // Polars' and the server's one-time allocations (thread pools, caches, metrics) happen
    // in the first calls; they are not the lineage's.
    let warm = chain(&mut client, &source, 50).await?;
    collect(&mut client, &warm).await?;
    let before = ALLOCATOR.allocated();
    let deep = chain(&mut client, &warm, STEPS).await?;
    let held = ALLOCATOR.allocated().saturating_sub(before);
    let per_step = held / STEPS;
    eprintln!("{STEPS} steps hold {held} bytes: {per_step} bytes a step");
    assert!(
        per_step <= BOUND_PER_STEP,
        "{STEPS} steps hold {held} bytes, {per_step} a step (bound {BOUND_PER_STEP})"
    );

    // The deep result is what Polars computes, and a call on it still works.
    let rows = collect(&mut client, &deep).await?;
    assert_frame_eq(&rows, &expected(50 + STEPS as i64));
    let one_more = step(&mut client, &deep).await?;
    let rows = collect(&mut client, &one_more).await?;
    assert_eq!(rows.width(), COLUMNS);
    assert_frame_eq(&rows, &expected(51 + STEPS as i64));
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_lineage_replays_on_a_worker_that_never_saw_it() -> anyhow::Result<()> {
    const STEPS: usize = 1_500;
    let state = tempfile::tempdir()?;
    let shared = |config: &mut polaroid_worker::WorkerConfig| {
        config.handle_store = HandleStoreKind::External;
        config.state_dir = state.path().to_path_buf();
    };
    let first = TestWorker::start_with(shared).await?;
    let mut client = first.client().await?;
    let source = upload(&mut client, &base()).await?;
    let deep = chain(&mut client, &source, STEPS).await?;
    // Deriving from the deep handle makes sure every plan record it names is durable.
    let deeper = step(&mut client, &deep).await?;
    first.stop().await?;

    let second = TestWorker::start_with(shared).await?;
    let mut client = second.client().await?;
    let rows = collect(&mut client, &deeper).await?;
    assert_frame_eq(&rows, &expected(STEPS as i64 + 1));
    let sibling = step(&mut client, &deep).await?;
    assert_frame_eq(
        &collect(&mut client, &sibling).await?,
        &expected(STEPS as i64 + 1),
    );
    second.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lineage_past_its_limit_is_refused_until_persisted() -> anyhow::Result<()> {
    const LIMIT: u32 = 20;
    let worker = TestWorker::start_with(|config| config.max_lineage_depth = LIMIT).await?;
    let mut client = worker.client().await?;
    let source = upload(&mut client, &base()).await?;
    let deepest = chain(&mut client, &source, LIMIT as usize).await?;
    let refused = step(&mut client, &deepest)
        .await
        .expect_err("a step past the limit");
    let status = refused
        .downcast_ref::<tonic::Status>()
        .expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("persist"), "{status:?}");

    // Persisting starts a new lineage from the stored result: the limit counts from it.
    client
        .persist(pb::PersistRequest {
            handle: deepest.clone(),
        })
        .await?;
    let further = chain(&mut client, &deepest, LIMIT as usize).await?;
    assert_frame_eq(
        &collect(&mut client, &further).await?,
        &expected(2 * i64::from(LIMIT)),
    );
    worker.stop().await
}
