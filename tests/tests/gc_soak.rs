//! GC soak: two workers share a filesystem store, both running the collector, while a
//! workload creates, derives, persists, pins and drops handles with a short TTL for a
//! while (`POLAROID_SOAK_SECS`, default 120). The store must stay under a stated bound,
//! and at the end a fresh worker collects every live and pinned handle intact.

use std::path::Path;
use std::time::Duration;

use polaroid_proto::v1::{self as pb, BinaryOperator as Op};
use polaroid_tests::{Client, TestWorker, assert_frame_eq, collect, e, upload};
use polaroid_worker::{HandleStoreKind, WorkerConfig};
use polars::prelude::*;

/// The stated bound on the store's size during the soak. The workload keeps about 1 MiB
/// live; what dies lives on for TTL + grace + one collector interval (under 4 s), a few
/// MiB at the rates reached here.
const STORE_BOUND_BYTES: u64 = 16 * 1024 * 1024;
/// Handles kept alive by heartbeats at any time.
const LIVE: usize = 8;
const PINNED: usize = 3;
const ROWS: i64 = 4_000;

fn frame(seed: i64) -> DataFrame {
    df!(
        "k" => (0..ROWS).map(|x| (x * 7 + seed) % 1_000).collect::<Vec<_>>(),
        "v" => (0..ROWS).map(|x| x ^ seed).collect::<Vec<_>>(),
    )
    .unwrap()
}

fn expected(seed: i64) -> DataFrame {
    frame(seed)
        .lazy()
        .filter(col("k").gt(lit(500)))
        .with_column((col("v") * lit(3)).alias("w"))
        .collect()
        .unwrap()
}

fn store_bytes(root: &Path) -> u64 {
    polaroid_tests::files_under(root)
        .iter()
        .map(|(_, size)| size)
        .sum()
}

fn soak_config(config: &mut WorkerConfig, state: &Path) {
    config.handle_store = HandleStoreKind::External;
    config.state_dir = state.to_path_buf();
    config.handle_ttl_secs = 2.0;
    config.gc_interval_secs = 0.2;
    config.gc_grace_secs = 1.5;
    config.write_behind_after_secs = -1.0;
}

/// Upload on one worker, filter on the other, derive again on the first: the chain
/// crosses workers through the store.
async fn chain(first: &mut Client, second: &mut Client, seed: i64) -> anyhow::Result<[String; 3]> {
    let source = upload(first, &frame(seed)).await?;
    let filtered = second
        .filter(pb::FilterRequest {
            handle: source.clone(),
            predicate: Some(e::binary(e::col("k"), Op::Gt, e::int(500))),
        })
        .await?
        .into_inner()
        .handle;
    let derived = first
        .with_column(pb::WithColumnRequest {
            handle: filtered.clone(),
            name: "w".into(),
            expr: Some(e::binary(e::col("v"), Op::Multiply, e::int(3))),
        })
        .await?
        .into_inner()
        .handle;
    Ok([source, filtered, derived])
}

async fn drop_handle(client: &mut Client, handle: String) -> anyhow::Result<()> {
    client.drop_handle(pb::DropHandleRequest { handle }).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_stays_bounded_and_keeps_what_is_live() -> anyhow::Result<()> {
    let soak = Duration::from_secs(
        std::env::var("POLAROID_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    );
    let state = tempfile::tempdir()?;
    let a = TestWorker::start_with(|c| soak_config(c, state.path())).await?;
    let b = TestWorker::start_with(|c| soak_config(c, state.path())).await?;
    let (mut client_a, mut client_b) = (a.client().await?, b.client().await?);

    let mut live: std::collections::VecDeque<(String, i64)> = Default::default();
    let mut pinned: Vec<(String, i64)> = Vec::new();
    let mut uploaded_bytes = 0u64;
    let mut largest = 0u64;
    let started = tokio::time::Instant::now();
    let mut seed = 0i64;
    while started.elapsed() < soak {
        seed += 1;
        let (first, second) = if seed % 2 == 0 {
            (&mut client_a, &mut client_b)
        } else {
            (&mut client_b, &mut client_a)
        };
        let [source, filtered, derived] = chain(first, second, seed).await?;
        uploaded_bytes += polaroid_tests::to_ipc(&frame(seed)).len() as u64;
        if seed % 10 == 0 {
            // Persisted results replace their lineage, and are collected in turn.
            second
                .persist(pb::PersistRequest {
                    handle: filtered.clone(),
                })
                .await?;
            assert_frame_eq(&collect(second, &derived).await?, &expected(seed));
        }
        if pinned.len() < PINNED {
            first
                .pin(pb::PinRequest {
                    handle: derived.clone(),
                })
                .await?;
            pinned.push((derived, seed));
        } else {
            live.push_back((derived, seed));
        }
        // Half the intermediates are dropped, the other half left to expire.
        if seed % 2 == 0 {
            drop_handle(first, source).await?;
            drop_handle(second, filtered).await?;
        }
        if live.len() > LIVE
            && let Some((oldest, _)) = live.pop_front()
        {
            drop_handle(first, oldest).await?;
        }
        let alive = first
            .heartbeat(pb::HeartbeatRequest {
                handles: live.iter().map(|(h, _)| h.clone()).collect(),
            })
            .await?
            .into_inner()
            .alive;
        assert!(
            alive.values().all(|&ok| ok),
            "a live handle expired: {alive:?}"
        );
        if seed % 5 == 0 {
            largest = largest.max(store_bytes(state.path()));
        }
    }
    let iterations = seed;
    println!(
        "soak: {iterations} chains in {:?}, {uploaded_bytes} bytes uploaded, largest store {largest} bytes (bound {STORE_BOUND_BYTES})",
        started.elapsed()
    );
    assert!(
        uploaded_bytes > 2 * STORE_BOUND_BYTES,
        "the workload must write well past the bound for the bound to mean anything"
    );
    assert!(
        largest <= STORE_BOUND_BYTES,
        "store grew to {largest} bytes, over the bound of {STORE_BOUND_BYTES}"
    );

    // A worker with a cold cache finds everything live and pinned, intact.
    let fresh = TestWorker::start_with(|c| soak_config(c, state.path())).await?;
    let mut client = fresh.client().await?;
    for (handle, seed) in live.iter().chain(&pinned) {
        // (The soak's heartbeats have stopped; this one keeps the handle for its collect.)
        assert!(
            polaroid_tests::heartbeat(&mut client, handle).await?,
            "{handle}"
        );
        assert_frame_eq(&collect(&mut client, handle).await?, &expected(*seed));
    }
    Ok(())
}
