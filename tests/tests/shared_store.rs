//! Handles survive their worker: worker A builds a chain of handles on a shared store and is
//! killed with SIGKILL; worker B, sharing only the store, collects every handle identically.

use polaroid_proto::v1::{self as pb, AggregateFunction as Agg, BinaryOperator as Op};
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
            handle: filtered,
            right: managers,
            on: vec!["region".into()],
            how: pb::JoinType::Left as i32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    handles.push(joined.clone());
    let grouped = client
        .group_by(pb::GroupByRequest {
            handle: joined,
            by: vec!["region".into()],
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
            by: vec!["total".into()],
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
