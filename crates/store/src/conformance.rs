//! The behaviour every [`ResultStore`] backend must show; each backend's tests call
//! [`run_all`] on a fresh, empty instance.

use std::sync::Arc;

use bytes::Bytes;

use crate::{ResultStore, StoreError, now_unix_ms};

/// Runs every conformance check against `store`, which must start empty.
pub async fn run_all(store: Arc<dyn ResultStore>) -> Result<(), String> {
    round_trip(&*store).await?;
    missing_is_none(&*store).await?;
    overwrite_replaces(&*store).await?;
    list_by_prefix(&*store).await?;
    head_reports_size_and_age(&*store).await?;
    delete_is_idempotent(&*store).await?;
    rejects_path_like_keys(&*store).await?;
    concurrent_writers(store).await?;
    Ok(())
}

fn check(condition: bool, what: &str) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

fn fail(e: StoreError) -> String {
    e.to_string()
}

async fn round_trip(store: &dyn ResultStore) -> Result<(), String> {
    // A record's size, an empty value, and a result's: backends may take another path
    // for large values (the filesystem store reads small ones on the caller's thread).
    for (key, length) in [("rt/a", 100_000), ("rt/empty", 0), ("rt/large", 3 << 20)] {
        let value = Bytes::from((0..=255u8).cycle().take(length).collect::<Vec<_>>());
        store.put(key, value.clone()).await.map_err(fail)?;
        check(
            store.get(key).await.map_err(fail)? == Some(value),
            &format!("get returns what put stored ({length} bytes)"),
        )?;
    }
    Ok(())
}

async fn missing_is_none(store: &dyn ResultStore) -> Result<(), String> {
    check(
        store.get("missing/key").await.map_err(fail)?.is_none(),
        "a missing key reads as None",
    )
}

async fn overwrite_replaces(store: &dyn ResultStore) -> Result<(), String> {
    store
        .put("ow/k", Bytes::from_static(b"first"))
        .await
        .map_err(fail)?;
    store
        .put("ow/k", Bytes::from_static(b"second"))
        .await
        .map_err(fail)?;
    check(
        store.get("ow/k").await.map_err(fail)?.as_deref() == Some(&b"second"[..]),
        "a second put replaces the first",
    )
}

async fn list_by_prefix(store: &dyn ResultStore) -> Result<(), String> {
    for key in ["ls/a/1", "ls/a/2", "ls/b/1", "lsx/1"] {
        store
            .put(key, Bytes::from_static(b"x"))
            .await
            .map_err(fail)?;
    }
    let listed: Vec<String> = store
        .list("ls/a/")
        .await
        .map_err(fail)?
        .into_iter()
        .map(|meta| meta.key)
        .collect();
    check(
        listed == ["ls/a/1", "ls/a/2"],
        &format!("list by prefix, got {listed:?}"),
    )
}

async fn head_reports_size_and_age(store: &dyn ResultStore) -> Result<(), String> {
    check(
        store.head("hd/missing").await.map_err(fail)?.is_none(),
        "head of a missing key is None",
    )?;
    let before = now_unix_ms();
    store
        .put("hd/k", Bytes::from_static(b"12345"))
        .await
        .map_err(fail)?;
    let meta = store
        .head("hd/k")
        .await
        .map_err(fail)?
        .ok_or("head of a stored key")?;
    check(
        meta.key == "hd/k" && meta.size == 5,
        &format!("head gives key and size, got {meta:?}"),
    )?;
    // Clocks of remote servers drift a little from ours; a minute is generous.
    check(
        meta.modified_unix_ms + 60_000 >= before && meta.modified_unix_ms <= now_unix_ms() + 60_000,
        &format!("modification time is about now, got {meta:?}"),
    )?;
    // (HTTP stores give list times in milliseconds but head times in seconds.)
    let listed = store.list("hd/").await.map_err(fail)?;
    check(
        listed.len() == 1 && listed[0].key == meta.key && listed[0].size == meta.size,
        &format!("list gives the key and size head gives, got {listed:?}"),
    )
}

async fn delete_is_idempotent(store: &dyn ResultStore) -> Result<(), String> {
    store
        .put("del/k", Bytes::from_static(b"x"))
        .await
        .map_err(fail)?;
    check(
        store.delete("del/k").await.map_err(fail)?,
        "delete reports an existing key",
    )?;
    check(
        !store.delete("del/k").await.map_err(fail)?,
        "a second delete reports nothing",
    )?;
    check(
        store.get("del/k").await.map_err(fail)?.is_none(),
        "a deleted key reads as None",
    )
}

async fn rejects_path_like_keys(store: &dyn ResultStore) -> Result<(), String> {
    for key in [
        "../escape",
        "/abs",
        "a/../b",
        "a//b",
        "UPPER",
        "%2e%2e/x",
        "",
    ] {
        let rejected = matches!(
            store.put(key, Bytes::from_static(b"x")).await,
            Err(StoreError::InvalidKey(_))
        );
        check(rejected, &format!("key {key:?} must be rejected"))?;
    }
    Ok(())
}

async fn concurrent_writers(store: Arc<dyn ResultStore>) -> Result<(), String> {
    let values: Vec<Bytes> = (0..8u8).map(|i| Bytes::from(vec![i; 64 * 1024])).collect();
    let writers: Vec<_> = values
        .iter()
        .cloned()
        .map(|value| {
            let store = store.clone();
            tokio::spawn(async move { store.put("cc/k", value).await })
        })
        .collect();
    for writer in writers {
        writer.await.map_err(|e| e.to_string())?.map_err(fail)?;
    }
    let read = store
        .get("cc/k")
        .await
        .map_err(fail)?
        .ok_or("concurrent key missing")?;
    check(
        values.contains(&read),
        "concurrent writers leave exactly one whole value",
    )
}
