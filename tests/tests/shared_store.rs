//! Handles survive their worker: worker A builds a chain of handles on a shared store and is
//! killed with SIGKILL; worker B, sharing only the store, collects every handle identically.

use polaroid_proto::v1::{self as pb, AggFunction as Agg, BinaryOperator as Op};
use polaroid_tests::{
    Client, WorkerProcess, collect, e, s3_options, s3_server, upload, write_parquet,
};
use polars::prelude::*;
use tonic::Code;

fn sales() -> DataFrame {
    df!(
        "region" => ["north", "south", "north", "east", "south", "west"],
        "qty" => [3i64, 5, 8, 7, 2, 9],
        "price" => [2.5f64, 3.0, 4.0, 1.0, 1.5, 2.0],
    )
    .unwrap()
}

/// Builds a chain of handles over a Parquet file and an upload; returns each with its rows.
async fn build_chain(client: &mut Client) -> anyhow::Result<Vec<(String, DataFrame)>> {
    let mut handles = Vec::new();
    let source = client
        .read_parquet(pb::ReadParquetRequest {
            path: "sales.parquet".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    handles.push(source.clone());
    let filtered = client
        .filter(pb::FilterRequest {
            handle: source,
            predicate: Some(e::binary(e::col("qty"), Op::Gt, e::int(2))),
        })
        .await?
        .into_inner()
        .handle;
    handles.push(filtered.clone());
    let managers = upload(
        client,
        &df!("region" => ["north", "south", "east"], "manager" => ["ann", "bob", "cy"])?,
    )
    .await?;
    handles.push(managers.clone());
    let joined = client
        .join(pb::JoinRequest {
            left_handle: filtered,
            right_handle: managers,
            on: Some(pb::JoinOn {
                columns: vec!["region".into()],
            }),
            join_type: pb::JoinType::Left as i32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    handles.push(joined.clone());
    let grouped = client
        .group_by(pb::GroupByRequest {
            handle: joined,
            columns: vec!["region".into()],
            aggs: vec![e::alias(e::agg(Agg::Sum, e::col("qty")), "total")],
            maintain_order: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    handles.push(grouped.clone());
    let sorted = client
        .sort(pb::SortRequest {
            handle: grouped,
            columns: vec![pb::SortColumn {
                name: "total".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    handles.push(sorted);
    let mut chain = Vec::new();
    for handle in handles {
        let rows = collect(client, &handle).await?;
        chain.push((handle, rows));
    }
    Ok(chain)
}

async fn survives_sigkill(store_args: &[&str], env: &[(String, String)]) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    write_parquet(&data.path().join("sales.parquet"), &sales());
    let data_root = data.path().to_string_lossy().into_owned();
    let mut args = vec!["--data-root", &data_root, "--handle-store", "external"];
    args.extend_from_slice(store_args);

    let a = WorkerProcess::spawn(&args, env)?;
    let chain = build_chain(&mut a.client().await?).await?;
    a.kill()?;

    let b = WorkerProcess::spawn(&args, env)?;
    let mut client = b.client().await?;
    for (handle, expected) in &chain {
        let actual = collect(&mut client, handle).await?;
        assert!(
            actual.equals_missing(expected),
            "{handle} differs after the restart:\n{actual}\n{expected}"
        );
    }
    // The file under a never-materialized read changes: replaying it must not give other rows.
    write_parquet(&data.path().join("sales.parquet"), &sales().head(Some(2)));
    let c = WorkerProcess::spawn(&args, env)?;
    b.kill()?;
    let status = collect(&mut c.client().await?, &chain[0].0)
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    // An upload cannot change: it still collects.
    let upload_rows = collect(&mut c.client().await?, &chain[2].0).await?;
    assert!(upload_rows.equals(&chain[2].1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_survive_a_killed_worker_on_the_filesystem_store() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let state_dir = state.path().to_string_lossy().into_owned();
    survives_sigkill(&["--state-dir", &state_dir], &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_survive_a_killed_worker_on_the_s3_store() -> anyhow::Result<()> {
    let server = s3_server("polaroid-state").await?;
    let env: Vec<(String, String)> = s3_options(&server)
        .into_iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v))
        .collect();
    survives_sigkill(&["--store-url", "s3://polaroid-state/cluster"], &env).await
}

/// Every file under `root` whose name starts with `.`: writes in flight or abandoned.
fn temp_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    polaroid_tests::files_under(root)
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with('.'))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_storing_a_large_upload_leaves_nothing_partial() -> anyhow::Result<()>
{
    use polaroid_store::{ArtifactId, FsStore, HandleRecord, ResultStore};
    use prost::Message;

    let state = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    let state_dir = state.path().to_string_lossy().into_owned();
    let data_root = data.path().to_string_lossy().into_owned();
    let args = [
        "--handle-store",
        "external",
        "--state-dir",
        &state_dir,
        "--data-root",
        &data_root,
    ];
    let a = WorkerProcess::spawn(&args, &[])?;
    let mut client = a.client().await?;
    let before = upload(&mut client, &sales()).await?;

    // About 256 MiB of Arrow IPC: its store write takes long enough to be caught mid-way.
    let rows = 16_000_000i64;
    let big =
        df!("a" => (0..rows).collect::<Vec<_>>(), "b" => (0..rows).rev().collect::<Vec<_>>())?;
    let bytes = polaroid_tests::to_ipc(&big);
    drop(big);
    let chunks: Vec<pb::UploadArrowChunk> = bytes
        .chunks(4 * 1024 * 1024)
        .map(|chunk| pb::UploadArrowChunk {
            data: chunk.to_vec().into(),
            name: None,
        })
        .collect();
    drop(bytes);
    let mut uploader = client.clone();
    let upload_call =
        tokio::spawn(async move { uploader.upload_arrow(tokio_stream::iter(chunks)).await });

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if !temp_files(state.path()).is_empty() {
            break;
        }
        anyhow::ensure!(
            !upload_call.is_finished(),
            "the upload finished before its write was caught in flight"
        );
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no write seen");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    a.kill()?;
    assert!(
        upload_call.await?.is_err(),
        "the killed upload must not return a handle"
    );

    // Nothing visible is partial: every artifact is whole (its name is its hash), and
    // every handle record refers only to what exists.
    let store = FsStore::new(state.path())?;
    let objects = store.list("t/").await?;
    let present: std::collections::HashSet<&str> =
        objects.iter().map(|meta| meta.key.as_str()).collect();
    for meta in &objects {
        let (prefix, name) = meta.key.rsplit_once('/').unwrap_or_default();
        if prefix.ends_with("/artifacts") {
            let content = store.get(&meta.key).await?.unwrap_or_default();
            assert_eq!(
                ArtifactId::of(&content).as_str(),
                name,
                "{} is partial",
                meta.key
            );
        }
        if let Some(tenant) = prefix.strip_suffix("/handles") {
            let record = HandleRecord::decode(store.get(&meta.key).await?.unwrap_or_default())?;
            let node = record.node.unwrap_or_default();
            for input in &node.inputs {
                assert!(present.contains(format!("{tenant}/plans/{input}").as_str()));
            }
            if let Some(pb::plan_step::Op::Upload(upload)) = node.step.and_then(|s| s.op) {
                let artifact = format!("{tenant}/artifacts/{}", upload.artifact);
                assert!(
                    present.contains(artifact.as_str()),
                    "{} points at nothing",
                    meta.key
                );
            }
        }
    }

    // A new worker serves what was there before, and its collector removes the leftovers.
    let mut restart = args.to_vec();
    restart.extend(["--gc-interval-secs", "0.1", "--gc-grace-secs", "0"]);
    let b = WorkerProcess::spawn(&restart, &[])?;
    let mut client = b.client().await?;
    assert!(collect(&mut client, &before).await?.equals(&sales()));
    polaroid_tests::eventually(
        "the collector to remove the interrupted write",
        std::time::Duration::from_secs(30),
        || async { Ok(temp_files(state.path()).is_empty()) },
    )
    .await?;
    assert!(collect(&mut client, &before).await?.equals(&sales()));
    Ok(())
}
