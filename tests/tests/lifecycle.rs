//! Handle lifecycle against real workers: TTL extended by access and heartbeats, pins,
//! drops, Persist and write-behind, replay from the nearest persisted result, and bad
//! handles against a shared filesystem store.

use std::path::Path;
use std::time::Duration;

use polaroid_proto::v1::{self as pb, BinaryOperator as Op};
use polaroid_store::{AffinityKey, Handle, TenantId};
use polaroid_tests::{
    Client, TestWorker, assert_frame_eq, collect, e, eventually, handle_info, heartbeat, upload,
    write_parquet,
};
use polaroid_worker::HandleStoreKind;
use polars::prelude::*;
use tonic::Code;

fn sales() -> DataFrame {
    df!(
        "region" => ["north", "south", "north", "east", "south", "west"],
        "qty" => [3i64, 5, 8, 7, 2, 9],
    )
    .unwrap()
}

async fn pin(client: &mut Client, handle: &str, pinned: bool) -> Result<bool, tonic::Status> {
    let request = pb::PinRequest {
        handle: handle.to_owned(),
    };
    let response = if pinned {
        client.pin(request).await?
    } else {
        client.unpin(request).await?
    };
    Ok(response.into_inner().pinned)
}

async fn persist(client: &mut Client, handle: &str) -> Result<pb::PersistResponse, tonic::Status> {
    Ok(client
        .persist(pb::PersistRequest {
            handle: handle.to_owned(),
        })
        .await?
        .into_inner())
}

async fn drop_handle(client: &mut Client, handle: &str) -> Result<bool, tonic::Status> {
    Ok(client
        .drop_handle(pb::DropHandleRequest {
            handle: handle.to_owned(),
        })
        .await?
        .into_inner()
        .success)
}

async fn filter_qty_over(client: &mut Client, handle: &str, over: i64) -> anyhow::Result<String> {
    Ok(client
        .filter(pb::FilterRequest {
            handle: handle.to_owned(),
            predicate: Some(e::binary(e::col("qty"), Op::Gt, e::int(over))),
        })
        .await?
        .into_inner()
        .handle)
}

async fn read_parquet(client: &mut Client, path: &str) -> anyhow::Result<String> {
    Ok(client
        .read_parquet(pb::ReadParquetRequest {
            path: path.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle)
}

/// Two workers sharing a filesystem store and a data directory.
async fn shared_pair(
    state: &Path,
    data: &Path,
    adjust: impl Fn(&mut polaroid_worker::WorkerConfig) + Copy,
) -> anyhow::Result<(TestWorker, TestWorker)> {
    let configure = move |config: &mut polaroid_worker::WorkerConfig| {
        config.handle_store = HandleStoreKind::External;
        config.state_dir = state.to_path_buf();
        config.data_roots = vec![data.to_path_buf()];
        adjust(config);
    };
    Ok((
        TestWorker::start_with(configure).await?,
        TestWorker::start_with(configure).await?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_and_heartbeats_extend_the_ttl_and_pins_never_expire() -> anyhow::Result<()> {
    let worker = TestWorker::start_with(|config| config.handle_ttl_secs = 1.0).await?;
    let mut client = worker.client().await?;
    let kept = upload(&mut client, &sales()).await?;
    let pinned = upload(&mut client, &sales()).await?;
    let left = upload(&mut client, &sales()).await?;
    assert!(pin(&mut client, &pinned, true).await?);

    let first = handle_info(&mut client, &kept).await?;
    assert_eq!(first.expires_unix_ms, first.last_access_unix_ms + 1_000);
    assert_eq!(first.rows, Some(6), "an upload knows its size");
    assert_eq!(first.schema.len(), 2);
    assert_eq!(first.schema_hash.len(), 64);
    assert_eq!(first.artifacts.len(), 1);
    assert_eq!(handle_info(&mut client, &pinned).await?.expires_unix_ms, 0);

    // Heartbeats keep `kept` alive well past its first expiry.
    let until = tokio::time::Instant::now() + Duration::from_millis(2_000);
    while tokio::time::Instant::now() < until {
        assert!(heartbeat(&mut client, &kept).await?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let later = handle_info(&mut client, &kept).await?;
    assert!(later.expires_unix_ms >= first.expires_unix_ms + 1_000);

    // `left` was never touched again: it has expired, for every kind of call.
    assert_eq!(
        collect(&mut client, &left).await.unwrap_err().code(),
        Code::NotFound
    );
    assert!(!heartbeat(&mut client, &left).await?);
    assert!(!drop_handle(&mut client, &left).await?);
    // The pinned one has not, and unpinning starts its TTL anew.
    assert_frame_eq(&collect(&mut client, &pinned).await?, &sales());
    assert!(!pin(&mut client, &pinned, false).await?);
    assert!(handle_info(&mut client, &pinned).await?.expires_unix_ms > 0);

    // Dropping is final and touches no other handle.
    assert!(drop_handle(&mut client, &kept).await?);
    assert!(!drop_handle(&mut client, &kept).await?);
    assert_eq!(
        handle_info(&mut client, &kept).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_frame_eq(&collect(&mut client, &pinned).await?, &sales());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_starts_from_the_nearest_persisted_result() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    write_parquet(&data.path().join("sales.parquet"), &sales());
    let (a, b) = shared_pair(state.path(), data.path(), |c| {
        c.write_behind_after_secs = -1.0;
    })
    .await?;
    let mut client_a = a.client().await?;
    let read = read_parquet(&mut client_a, "sales.parquet").await?;
    let filtered = filter_qty_over(&mut client_a, &read, 2).await?;
    let persisted = persist(&mut client_a, &filtered).await?;
    assert_eq!(persisted.rows, 5);
    assert!(persisted.stored_bytes > 0);
    let doubled = client_a
        .with_column(pb::WithColumnRequest {
            handle: filtered.clone(),
            name: "double".into(),
            expr: Some(e::binary(e::col("qty"), Op::Multiply, e::int(2))),
        })
        .await?
        .into_inner()
        .handle;
    let expected = sales()
        .lazy()
        .filter(col("qty").gt(lit(2)))
        .with_column((col("qty") * lit(2)).alias("double"))
        .collect()?;

    // The source changes after the filter was persisted.
    write_parquet(&data.path().join("sales.parquet"), &sales().head(Some(2)));
    let mut client_b = b.client().await?;
    assert_frame_eq(&collect(&mut client_b, &doubled).await?, &expected);
    let info = handle_info(&mut client_b, &filtered).await?;
    assert!(info.persisted);
    assert_eq!(info.rows, Some(5));
    assert!(info.artifacts.iter().any(|key| key.contains("/results/")));
    // The read itself was never persisted: replaying it would give other rows.
    let status = collect(&mut client_b, &read).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_slow_to_compute_are_written_behind() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    // Every result counts as slow: each computed one is written behind.
    let (a, b) = shared_pair(state.path(), data.path(), |c| {
        c.write_behind_after_secs = 0.0;
    })
    .await?;
    let mut client_a = a.client().await?;
    let source = upload(&mut client_a, &sales()).await?;
    let filtered = filter_qty_over(&mut client_a, &source, 4).await?;
    assert!(!handle_info(&mut client_a, &filtered).await?.persisted);
    let rows = collect(&mut client_a, &filtered).await?;
    let mut client_b = b.client().await?;
    eventually(
        "the result to be written behind",
        Duration::from_secs(10),
        || {
            let mut client = client_b.clone();
            let filtered = filtered.clone();
            async move { Ok(handle_info(&mut client, &filtered).await?.persisted) }
        },
    )
    .await?;
    assert_frame_eq(&collect(&mut client_b, &filtered).await?, &rows);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_foreign_and_path_like_handles_touch_nothing() -> anyhow::Result<()> {
    let parent = tempfile::tempdir()?;
    let state = parent.path().join("state");
    let data = tempfile::tempdir()?;
    let (ours, _) = shared_pair(&state, data.path(), |_| {}).await?;
    let theirs = TestWorker::start_with(|config| {
        config.handle_store = HandleStoreKind::External;
        config.state_dir = state.clone();
        config.auth.anonymous_tenant = "other".into();
    })
    .await?;
    let mut client = ours.client().await?;
    let mut their_client = theirs.client().await?;
    let their_handle = upload(&mut their_client, &sales()).await?;
    let forged = Handle::new(TenantId::from_name("default"), AffinityKey::random()).to_string();

    // Another tenant's handle is exactly as unknown as a forged one.
    for handle in [&their_handle, &forged] {
        let code = collect(&mut client, handle).await.unwrap_err().code();
        assert_eq!(code, Code::NotFound, "collect {handle}");
        for (call, result) in [
            ("persist", persist(&mut client, handle).await.map(|_| ())),
            ("pin", pin(&mut client, handle, true).await.map(|_| ())),
            ("info", handle_info(&mut client, handle).await.map(|_| ())),
        ] {
            assert_eq!(
                result.unwrap_err().code(),
                Code::NotFound,
                "{call} {handle}"
            );
        }
        assert!(!heartbeat(&mut client, handle).await?);
        assert!(!drop_handle(&mut client, handle).await?);
    }
    // ... and dropping it from here did nothing to it.
    assert_frame_eq(&collect(&mut their_client, &their_handle).await?, &sales());

    let escape = parent.path().join("escaped");
    let path_like = [
        "../escaped".to_owned(),
        escape.to_string_lossy().into_owned(),
        "%2e%2e%2fescaped".to_owned(),
        format!("ph1_../../{}", "0".repeat(60)),
        format!("ph1_{}", "0".repeat(63) + "/"),
        "t/0000000000000000/handles/x".to_owned(),
        String::new(),
    ];
    for handle in &path_like {
        let code = collect(&mut client, handle).await.unwrap_err().code();
        assert_eq!(code, Code::InvalidArgument, "collect {handle:?}");
        for (call, result) in [
            ("persist", persist(&mut client, handle).await.map(|_| ())),
            ("pin", pin(&mut client, handle, true).await.map(|_| ())),
            ("drop", drop_handle(&mut client, handle).await.map(|_| ())),
            ("info", handle_info(&mut client, handle).await.map(|_| ())),
        ] {
            assert_eq!(
                result.unwrap_err().code(),
                Code::InvalidArgument,
                "{call} {handle:?}"
            );
        }
        assert!(!heartbeat(&mut client, handle).await?);
    }
    let beside: Vec<_> = std::fs::read_dir(parent.path())?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(beside, ["state"], "nothing written beside the store");
    // The worker still serves.
    let fresh = upload(&mut client, &sales()).await?;
    assert_frame_eq(&collect(&mut client, &fresh).await?, &sales());
    Ok(())
}
