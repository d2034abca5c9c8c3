//! The behaviour every [`ResultStore`] backend must show; each backend's tests call
//! [`run_all`] on a fresh, empty instance.

use std::sync::Arc;

use bytes::Bytes;

use polaroid_proto::v1::{HandleRecord, PlanNode};

use crate::{
    AffinityKey, Catalog, Handle, RecordChange, ResultStore, StoreError, TenantId, Version,
    now_unix_ms,
};

/// Runs every conformance check against `store`, which must start empty.
pub async fn run_all(store: Arc<dyn ResultStore>) -> Result<(), String> {
    round_trip(&*store).await?;
    missing_is_none(&*store).await?;
    overwrite_replaces(&*store).await?;
    list_by_prefix(&*store).await?;
    head_reports_size_and_age(&*store).await?;
    delete_is_idempotent(&*store).await?;
    rejects_path_like_keys(&*store).await?;
    concurrent_writers(store.clone()).await?;
    conditional_put(&*store).await?;
    compare_and_set_loses_no_update(store.clone()).await?;
    handle_record_updates_lose_nothing(store).await?;
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

async fn conditional_put(store: &dyn ResultStore) -> Result<(), String> {
    let key = "cas/k";
    store
        .put(key, Bytes::from_static(b"first"))
        .await
        .map_err(fail)?;
    let (value, first) = store
        .get_versioned(key)
        .await
        .map_err(fail)?
        .ok_or("get_versioned of a stored key")?;
    check(&value[..] == b"first", "get_versioned returns the value")?;
    check(
        store
            .put_if_unchanged(key, Bytes::from_static(b"second"), &first)
            .await
            .map_err(fail)?,
        "a conditional put at the version read succeeds",
    )?;
    check(
        !store
            .put_if_unchanged(key, Bytes::from_static(b"lost"), &first)
            .await
            .map_err(fail)?,
        "a conditional put at a version since replaced fails",
    )?;
    check(
        store.get(key).await.map_err(fail)?.as_deref() == Some(&b"second"[..]),
        "a failed conditional put writes nothing",
    )?;
    // A plain put in between is a change too.
    let (_, second) = store
        .get_versioned(key)
        .await
        .map_err(fail)?
        .ok_or("get_versioned after a conditional put")?;
    store
        .put(key, Bytes::from_static(b"third"))
        .await
        .map_err(fail)?;
    check(
        !store
            .put_if_unchanged(key, Bytes::from_static(b"lost"), &second)
            .await
            .map_err(fail)?,
        "a conditional put after another put fails",
    )?;
    store.delete(key).await.map_err(fail)?;
    check(
        !store
            .put_if_unchanged(key, Bytes::from_static(b"lost"), &second)
            .await
            .map_err(fail)?,
        "a conditional put of a deleted key fails",
    )?;
    check(
        store.get(key).await.map_err(fail)?.is_none(),
        "a conditional put never recreates a deleted key",
    )
}

/// Many writers each add one to a counter, again and again, by read then conditional put:
/// with a true compare-and-set no increment is lost.
async fn compare_and_set_loses_no_update(store: Arc<dyn ResultStore>) -> Result<(), String> {
    const WRITERS: u64 = 8;
    const INCREMENTS: u64 = 8;
    let key = "cas/counter";
    store
        .put(key, Bytes::from_static(b"0"))
        .await
        .map_err(fail)?;
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..INCREMENTS {
                    increment(&*store, key).await?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for writer in writers {
        writer.await.map_err(|e| e.to_string())??;
    }
    let read = store
        .get(key)
        .await
        .map_err(fail)?
        .ok_or("counter missing")?;
    let count = String::from_utf8_lossy(&read).into_owned();
    check(
        count == (WRITERS * INCREMENTS).to_string(),
        &format!(
            "{WRITERS} writers adding {INCREMENTS} each by compare-and-set reach {}, got {count}",
            WRITERS * INCREMENTS
        ),
    )
}

async fn increment(store: &dyn ResultStore, key: &str) -> Result<(), String> {
    loop {
        let (value, version): (Bytes, Version) = store
            .get_versioned(key)
            .await
            .map_err(fail)?
            .ok_or("counter missing")?;
        let count: u64 = String::from_utf8_lossy(&value)
            .parse()
            .map_err(|e| format!("counter {value:?}: {e}"))?;
        let next = Bytes::from((count + 1).to_string());
        if store
            .put_if_unchanged(key, next, &version)
            .await
            .map_err(fail)?
        {
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
}

/// Writers on one handle record at once, as workers serving one handle do (pins, drops,
/// access refreshes, persisted results): each adds its own mark through
/// [`Catalog::update_handle`], and every mark is in the record at the end.
async fn handle_record_updates_lose_nothing(store: Arc<dyn ResultStore>) -> Result<(), String> {
    const WRITERS: usize = 8;
    const MARKS: usize = 4;
    let catalog = Arc::new(Catalog::new(store));
    let handle = Handle::new(TenantId::from_name("conformance"), AffinityKey::random());
    let record = HandleRecord {
        plan: "0".repeat(64),
        node: Some(PlanNode::default()),
        created_unix_ms: now_unix_ms(),
        last_access_unix_ms: now_unix_ms(),
        ..Default::default()
    };
    catalog
        .create_handle(&handle, &record)
        .await
        .map_err(fail)?;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let catalog = catalog.clone();
            let handle = handle.clone();
            tokio::spawn(async move {
                for mark in 0..MARKS {
                    let mark = format!("w{writer}-{mark}");
                    catalog
                        .update_handle(&handle, |record| {
                            record.artifacts.push(mark.clone());
                            // One writer also pins, one drops: fields others never touch.
                            match writer {
                                0 => record.pinned = true,
                                1 => record.dropped_unix_ms = Some(now_unix_ms()),
                                _ => {}
                            }
                            RecordChange::Write(())
                        })
                        .await
                        .map_err(fail)?
                        .ok_or("the record vanished")?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for writer in writers {
        writer.await.map_err(|e| e.to_string())??;
    }
    let stored = catalog
        .get_handle(&handle)
        .await
        .map_err(fail)?
        .ok_or("record missing")?;
    check(
        stored.artifacts.len() == WRITERS * MARKS,
        &format!(
            "{WRITERS} writers adding {MARKS} marks each keep all {}, got {}",
            WRITERS * MARKS,
            stored.artifacts.len()
        ),
    )?;
    check(
        stored.pinned && stored.dropped_unix_ms.is_some(),
        "a pin and a drop made amid other writes both stay",
    )?;
    let unchanged = catalog
        .update_handle(&handle, |_| RecordChange::Keep(()))
        .await
        .map_err(fail)?;
    check(
        unchanged.is_some(),
        "an update that keeps the record answers",
    )?;
    let missing = Handle::new(TenantId::from_name("conformance"), AffinityKey::random());
    check(
        catalog
            .update_handle(&missing, |_| RecordChange::Write(()))
            .await
            .map_err(fail)?
            .is_none(),
        "an update of a missing record writes nothing and says so",
    )?;
    check(
        catalog.get_handle(&missing).await.map_err(fail)?.is_none(),
        "an update never creates a record",
    )
}
