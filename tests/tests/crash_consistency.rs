//! Crash consistency (issue 26): a worker on the filesystem store is SIGKILLed at a random
//! moment while it uploads, computes and persists results, writes them behind, writes
//! Parquet files and collects garbage, round after round on one store. After each kill a
//! new worker on the same store must find every handle a client was given whole and
//! equal to what it was, every file a write left complete (or none), nothing partial
//! under a key, and, after its own garbage collection, still everything a live handle
//! needs.
//!
//! Rounds: `POLAROID_CRASH_ROUNDS` (12 by default, for CI); the campaign is
//! `POLAROID_CRASH_ROUNDS=100 cargo nextest run --workspace -E 'binary(crash_consistency)'`
//! (docs/reliability.md).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use polaroid_proto::v1::{self as pb, BinaryOperator as Op};
use polaroid_store::{FsStore, ResultStore};
use polaroid_tests::*;
use polars::prelude::*;
use rand::Rng;

/// What one round asked for, and what it was told.
#[derive(Default)]
struct Acknowledged {
    /// Handles a call returned, with the rows they must hold.
    handles: BTreeMap<String, DataFrame>,
    /// Files a write call reported written, with their rows.
    files: BTreeMap<String, DataFrame>,
}

fn frame(round: u64, rows: i64) -> DataFrame {
    let base = i64::try_from(round).unwrap_or(0) * 1_000_000;
    df!(
        "id" => (base..base + rows).collect::<Vec<_>>(),
        "qty" => (0..rows).map(|i| i % 97).collect::<Vec<_>>(),
    )
    .expect("frame")
}

fn worker(state: &Path, data: &Path) -> anyhow::Result<WorkerProcess> {
    let state = state.to_string_lossy().into_owned();
    let data = data.to_string_lossy().into_owned();
    WorkerProcess::spawn(
        &[
            "--handle-store",
            "external",
            "--state-dir",
            &state,
            "--data-root",
            &data,
            // Collect often, spare little: the collector runs amid the work and its kills.
            "--gc-grace-secs",
            "4",
        ],
        &[
            ("POLAROID_GC_INTERVAL_SECS".into(), "0.3".into()),
            // Every computed result is written behind, so kills land in those writes too.
            ("POLAROID_WRITE_BEHIND_AFTER_SECS".into(), "0".into()),
        ],
    )
}

/// One round's work on `client`, each call on its own task; what succeeded is recorded.
async fn work(client: &Client, round: u64, earlier: Option<(String, DataFrame)>) -> Acknowledged {
    let mut tasks = tokio::task::JoinSet::new();
    // An upload of about 16 MiB: its durable write takes a while.
    {
        let mut client = client.clone();
        tasks.spawn(async move {
            let rows = frame(round, 1_000_000);
            let handle = upload(&mut client, &rows).await.ok()?;
            Some((Some((handle, rows)), None))
        });
    }
    // A small upload, filtered, persisted, and written to a Parquet file.
    {
        let mut client = client.clone();
        let path = format!("out-{round}.parquet");
        tasks.spawn(async move {
            let rows = frame(round, 5_000);
            let source = upload(&mut client, &rows).await.ok()?;
            let filtered = client
                .filter(pb::FilterRequest {
                    handle: source,
                    predicate: Some(e::binary(e::col("qty"), Op::Gt, e::int(50))),
                })
                .await
                .ok()?
                .into_inner()
                .handle;
            let expected = rows.lazy().filter(col("qty").gt(lit(50))).collect().ok()?;
            let persisted = client
                .persist(pb::PersistRequest {
                    handle: filtered.clone(),
                })
                .await;
            let written = client
                .write_parquet(pb::WriteParquetRequest {
                    handle: filtered.clone(),
                    path: path.clone(),
                    ..Default::default()
                })
                .await;
            let handle = persisted.is_ok().then(|| (filtered, expected.clone()));
            let file = written.is_ok().then_some((path, expected));
            Some((handle, file))
        });
    }
    // A step on an earlier round's handle, computed (and written behind) now.
    if let Some((handle, rows)) = earlier {
        let mut client = client.clone();
        tasks.spawn(async move {
            let filtered = client
                .filter(pb::FilterRequest {
                    handle,
                    predicate: Some(e::binary(e::col("qty"), Op::Lt, e::int(10))),
                })
                .await
                .ok()?
                .into_inner()
                .handle;
            let expected = rows.lazy().filter(col("qty").lt(lit(10))).collect().ok()?;
            collect(&mut client, &filtered).await.ok()?;
            Some((Some((filtered, expected)), None))
        });
    }
    let mut acknowledged = Acknowledged::default();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some((handle, file))) = done {
            if let Some((handle, rows)) = handle {
                acknowledged.handles.insert(handle, rows);
            }
            if let Some((path, rows)) = file {
                acknowledged.files.insert(path, rows);
            }
        }
    }
    acknowledged
}

/// Every handle acknowledged so far collects as it did; every Parquet file there is
/// whole; no key of the store is a partial write.
async fn check(
    client: &mut Client,
    handles: &BTreeMap<String, DataFrame>,
    state: &Path,
    data: &Path,
    round: u64,
) -> anyhow::Result<()> {
    for (handle, expected) in handles {
        let actual = collect(client, handle)
            .await
            .map_err(|e| anyhow::anyhow!("round {round}: {handle} lost: {e}"))?;
        anyhow::ensure!(
            actual.equals_missing(expected),
            "round {round}: {handle} differs:\n{actual}\n{expected}"
        );
    }
    for entry in std::fs::read_dir(data)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(name) = name.filter(|n| n.ends_with(".parquet")) else {
            continue;
        };
        let read = ParquetReader::new(std::fs::File::open(&path)?).finish();
        anyhow::ensure!(read.is_ok(), "round {round}: {name} is partial: {read:?}");
    }
    let store = FsStore::new(state)?;
    for meta in store.list("t/").await? {
        anyhow::ensure!(
            !meta.key.split('/').any(|segment| segment.starts_with('.')),
            "round {round}: a temp file listed as a key: {}",
            meta.key
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_random_moments_loses_nothing_it_acknowledged() -> anyhow::Result<()> {
    let rounds: u64 = std::env::var("POLAROID_CRASH_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(12);
    let state = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    let mut handles: BTreeMap<String, DataFrame> = BTreeMap::new();
    let mut files: BTreeMap<String, DataFrame> = BTreeMap::new();
    let mut rng = rand::rng();
    let mut kills_mid_work = 0;
    for round in 0..rounds {
        let doomed = worker(state.path(), data.path())?;
        let client = doomed.client().await?;
        let earlier = handles
            .iter()
            .nth(rng.random_range(0..handles.len().max(1)))
            .map(|(handle, rows)| (handle.clone(), rows.clone()));
        let work = {
            let client = client.clone();
            tokio::spawn(async move { work(&client, round, earlier).await })
        };
        // Anywhere from before the first write to after the last.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        if !work.is_finished() {
            kills_mid_work += 1;
        }
        doomed.kill()?;
        let acknowledged = work.await?;
        handles.extend(acknowledged.handles);
        files.extend(acknowledged.files);

        // A new worker on the same store: it replays what the dead one's journal holds.
        let survivor = worker(state.path(), data.path())?;
        let mut client = survivor.client().await?;
        check(&mut client, &handles, state.path(), data.path(), round).await?;
        for (path, expected) in &files {
            let read = ParquetReader::new(std::fs::File::open(data.path().join(path))?).finish()?;
            anyhow::ensure!(
                read.equals_missing(expected),
                "round {round}: {path} was reported written but holds other rows"
            );
        }
        // Its collector runs (every 0.3 s) past the dead worker's leftovers: what live
        // handles need stays.
        tokio::time::sleep(Duration::from_secs(1)).await;
        check(&mut client, &handles, state.path(), data.path(), round).await?;
        survivor.kill()?;
    }
    println!(
        "{rounds} rounds, {kills_mid_work} killed mid-work, {} handles and {} files checked",
        handles.len(),
        files.len()
    );
    anyhow::ensure!(
        rounds < 4 || kills_mid_work > 0,
        "no kill landed while work was in flight"
    );
    Ok(())
}
