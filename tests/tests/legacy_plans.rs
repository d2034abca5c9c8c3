//! Plans recorded before the established contract's shapes (issue 23) still replay: handles
//! whose records hold steps of the old shapes (`SortStepV0`, `SliceStepV0`, `DiffStepV0`,
//! `FillNullStepV0`, `ShiftStepV0` under their old `PlanStep` tags), as an older worker wrote them to a shared store, are
//! collected by today's worker with the meaning they were recorded with, and calls derive
//! from them.

use std::sync::Arc;

use polaroid_proto::v1::{self as pb, plan_step::Op};
use polaroid_store::{Catalog, FsStore, Handle, PlanId};
use polaroid_tests::*;
use polaroid_worker::HandleStoreKind;
use polars::prelude::*;

fn frame() -> DataFrame {
    df!(
        "region" => ["north", "south", "north", "east", "south"],
        "qty" => [5i64, 3, 8, 3, 1],
        "price" => [Some(2.0f64), None, Some(4.0), None, Some(9.0)],
    )
    .expect("frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_the_old_step_shapes_replay_as_they_meant() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let root = state.path().to_path_buf();
    let worker = TestWorker::start_with(|c| {
        c.handle_store = HandleStoreKind::External;
        c.state_dir = root;
    })
    .await?;
    let mut client = worker.client().await?;
    let df = frame();
    let upload_handle = upload(&mut client, &df).await?;
    let catalog = Catalog::new(Arc::new(FsStore::new(state.path())?));
    let parsed = Handle::parse(&upload_handle).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let upload_record = catalog
        .get_handle(&parsed)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the upload's record"))?;

    let cases = [
        (
            "sort by region descending, then qty (one flag for both keys)",
            Op::SortV0(pb::SortStepV0 {
                by: vec!["region".into()],
                descending: vec![true],
                by_exprs: vec![e::col("qty")],
                ..Default::default()
            }),
            df.clone()
                .lazy()
                .sort(
                    ["region", "qty"],
                    SortMultipleOptions::default()
                        .with_order_descending(true)
                        .with_maintain_order(true),
                )
                .collect()?,
        ),
        (
            "slice without a length: to the end",
            Op::SliceV0(pb::SliceStepV0 {
                offset: 2,
                length: None,
                ..Default::default()
            }),
            df.slice(2, usize::MAX),
        ),
        (
            "diff with n unset: one period",
            Op::DiffV0(pb::DiffStepV0 {
                columns: vec!["qty".into()],
                ..Default::default()
            }),
            df.clone()
                .lazy()
                .with_column(col("qty").diff(lit(1), polars::series::ops::NullBehavior::Ignore))
                .collect()?,
        ),
        (
            "fill_null with the old MEAN (5, FillMethod's FILL_MAX today): the mean",
            Op::FillNullV0(pb::FillNullStepV0 {
                strategy: pb::FillNullStrategy::Mean as i32,
                columns: vec!["price".into()],
                ..Default::default()
            }),
            df.clone()
                .lazy()
                .with_column(col("price").fill_null_with_strategy(FillNullStrategy::Mean))
                .collect()?,
        ),
        (
            "lag with a suffix: a new column",
            Op::LagV0(pb::ShiftStepV0 {
                columns: vec!["qty".into()],
                suffix: Some("_prev".into()),
                ..Default::default()
            }),
            df.clone()
                .lazy()
                .with_column(col("qty").shift(lit(1)).alias("qty_prev"))
                .collect()?,
        ),
        (
            "rolling window of qty with a suffix, min_periods unset (then: 1)",
            Op::RollingWindowV0(pb::RollingWindowStepV0 {
                columns: vec!["qty".into()],
                function: pb::RollingFunction::Sum as i32,
                window_size: Some(2),
                suffix: Some("_s".into()),
                ..Default::default()
            }),
            df.clone()
                .lazy()
                .with_column(
                    col("qty")
                        .rolling_sum(RollingOptionsFixedWindow {
                            window_size: 2,
                            min_periods: 1,
                            ..Default::default()
                        })
                        .alias("qty_s"),
                )
                .collect()?,
        ),
        (
            "lead of every column by 2",
            Op::LeadV0(pb::ShiftStepV0 {
                n: 2,
                ..Default::default()
            }),
            df.clone()
                .lazy()
                .with_columns([
                    col("region").shift(lit(-2)),
                    col("qty").shift(lit(-2)),
                    col("price").shift(lit(-2)),
                ])
                .collect()?,
        ),
    ];
    for (what, op, expected) in cases {
        // What an older worker wrote: the plan record and a handle record naming it.
        let node = pb::PlanNode {
            step: Some(pb::PlanStep { op: Some(op) }),
            inputs: vec![upload_record.plan.clone()],
            source: None,
        };
        let tenant = parsed.tenant();
        catalog.put_plan(tenant, &node).await?;
        let handle = Handle::new(tenant, parsed.affinity());
        let record = pb::HandleRecord {
            plan: PlanId::of(&node).to_string(),
            node: Some(node),
            schema: expected
                .schema()
                .iter()
                .map(|(name, dtype)| pb::Field {
                    name: name.to_string(),
                    data_type: polaroid_worker::dtype::name(dtype),
                })
                .collect(),
            rows: None,
            bytes: None,
            ..upload_record.clone()
        };
        catalog.create_handle(&handle, &record).await?;
        let text = handle.to_string();
        let actual = collect(&mut client, &text).await?;
        assert!(
            actual.equals_missing(&expected),
            "{what}:\n{actual}\nexpected\n{expected}"
        );
        // A call on it records today's shapes over the old record.
        let head = client
            .head(pb::HeadRequest { handle: text, n: 2 })
            .await?
            .into_inner()
            .handle;
        assert_frame_eq(&collect(&mut client, &head).await?, &expected.head(Some(2)));
    }

    // An old agg (its aggregations as expressions, field 2) over a grouped handle.
    let grouped = client
        .group_by(pb::GroupByRequest {
            handle: upload_handle.clone(),
            columns: vec!["region".into()],
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    let grouped_record = catalog
        .get_handle(&Handle::parse(&grouped).map_err(|e| anyhow::anyhow!("{e:?}"))?)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the grouped handle's record"))?;
    let node = pb::PlanNode {
        step: Some(pb::PlanStep {
            op: Some(Op::AggV0(pb::AggStepV0 {
                handle: String::new(),
                aggs: vec![e::alias(e::col("qty"), "qtys")],
            })),
        }),
        inputs: vec![grouped_record.plan.clone()],
        source: None,
    };
    let expected = df
        .clone()
        .lazy()
        .group_by_stable([col("region")])
        .agg([col("qty").alias("qtys")])
        .collect()?;
    let tenant = parsed.tenant();
    catalog.put_plan(tenant, &node).await?;
    let handle = Handle::new(tenant, parsed.affinity());
    let record = pb::HandleRecord {
        plan: PlanId::of(&node).to_string(),
        node: Some(node),
        schema: expected
            .schema()
            .iter()
            .map(|(name, dtype)| pb::Field {
                name: name.to_string(),
                data_type: polaroid_worker::dtype::name(dtype),
            })
            .collect(),
        rows: None,
        bytes: None,
        ..upload_record.clone()
    };
    catalog.create_handle(&handle, &record).await?;
    assert_frame_eq(&collect(&mut client, &handle.to_string()).await?, &expected);

    // A source: an old read_csv without `has_header` (then: a header line), replayed from
    // its record alone.
    std::fs::write(worker.path("old.csv"), "a,b\n1,x\n2,y\n")?;
    let node = pb::PlanNode {
        step: Some(pb::PlanStep {
            op: Some(Op::ReadCsvV0(pb::ReadCsvStepV0 {
                path: worker.path("old.csv").to_string_lossy().into_owned(),
                ..Default::default()
            })),
        }),
        inputs: vec![],
        source: None,
    };
    let tenant = parsed.tenant();
    catalog.put_plan(tenant, &node).await?;
    let handle = Handle::new(tenant, parsed.affinity());
    let expected = df!("a" => [1i64, 2], "b" => ["x", "y"])?;
    let record = pb::HandleRecord {
        plan: PlanId::of(&node).to_string(),
        node: Some(node),
        schema: expected
            .schema()
            .iter()
            .map(|(name, dtype)| pb::Field {
                name: name.to_string(),
                data_type: polaroid_worker::dtype::name(dtype),
            })
            .collect(),
        rows: None,
        bytes: None,
        artifacts: vec![],
        ..upload_record.clone()
    };
    catalog.create_handle(&handle, &record).await?;
    assert_frame_eq(&collect(&mut client, &handle.to_string()).await?, &expected);
    worker.stop().await
}

/// A PlanNode as the code before the contract's WindowExpr encoded it (hex; its input
/// "pp…p"): each holds a window with fields 2 and 3 as messages.
const OLD_WINDOWS: &[(&str, &str)] = &[
    (
        "with_column(\"s\", sum(v).over(g))",
        "0a1d621b1201731a163a140a0b3209080112050a030a017612050a030a0167",
    ),
    (
        "filter(rolling sum of v over 2 rows, min_periods unset (then: 1), > 1)",
        "0a1f5a1d121b1a190a0f3a0d0a050a030a01761a040801100210051a0412020801",
    ),
];

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_with_old_windows_replay_as_they_meant_and_keep_their_ids() -> anyhow::Result<()> {
    use prost::Message;
    let state = tempfile::tempdir()?;
    let root = state.path().to_path_buf();
    let worker = TestWorker::start_with(|c| {
        c.handle_store = HandleStoreKind::External;
        c.state_dir = root;
    })
    .await?;
    let mut client = worker.client().await?;
    let df = df!(
        "g" => ["a", "b", "a", "b", "a"],
        "v" => [Some(1i64), Some(2), None, Some(4), Some(0)],
    )?;
    let upload_handle = upload(&mut client, &df).await?;
    let catalog = Catalog::new(Arc::new(FsStore::new(state.path())?));
    let parsed = Handle::parse(&upload_handle).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let upload_record = catalog
        .get_handle(&parsed)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the upload's record"))?;
    let expected = [
        df.clone()
            .lazy()
            .with_column(col("v").sum().over([col("g")])?.alias("s"))
            .collect()?,
        df.clone()
            .lazy()
            .filter(
                col("v")
                    .rolling_sum(RollingOptionsFixedWindow {
                        window_size: 2,
                        min_periods: 1,
                        ..Default::default()
                    })
                    .gt(lit(1)),
            )
            .collect()?,
    ];
    for ((what, step_hex), expected) in OLD_WINDOWS.iter().zip(expected) {
        // The record as stored, over the fixture's input: decoded and encoded again, the
        // same bytes, so the same plan id.
        let mut stored = unhex(step_hex);
        stored.extend(unhex("1240"));
        stored.extend(std::iter::repeat_n(b'p', 64));
        let old = pb::PlanNode::decode(stored.as_slice())?;
        assert_eq!(old.encode_to_vec(), stored, "{what}: re-encodes as stored");

        // The same step over the upload, as an older worker would have written it.
        let node = pb::PlanNode {
            inputs: vec![upload_record.plan.clone()],
            ..old
        };
        let mut written = unhex(step_hex);
        written.extend(unhex("1240"));
        written.extend(upload_record.plan.as_bytes());
        assert_eq!(node.encode_to_vec(), written, "{what}: the old encoding");
        let tenant = parsed.tenant();
        catalog.put_plan(tenant, &node).await?;
        let handle = Handle::new(tenant, parsed.affinity());
        let record = pb::HandleRecord {
            plan: PlanId::of(&node).to_string(),
            node: Some(node),
            schema: expected
                .schema()
                .iter()
                .map(|(name, dtype)| pb::Field {
                    name: name.to_string(),
                    data_type: polaroid_worker::dtype::name(dtype),
                })
                .collect(),
            rows: None,
            bytes: None,
            ..upload_record.clone()
        };
        catalog.create_handle(&handle, &record).await?;
        let text = handle.to_string();
        let actual = collect(&mut client, &text).await?;
        assert!(
            actual.equals_missing(&expected),
            "{what}:\n{actual}\nexpected\n{expected}"
        );
        // A call on it derives from the old record.
        let head = client
            .head(pb::HeadRequest { handle: text, n: 2 })
            .await?
            .into_inner()
            .handle;
        assert_frame_eq(&collect(&mut client, &head).await?, &expected.head(Some(2)));
    }
    worker.stop().await
}
