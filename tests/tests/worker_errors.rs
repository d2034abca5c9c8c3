//! Bad input gets a precise status, loses nothing, and the worker keeps serving.

use polaroid_proto::v1::{self as pb, BinaryOperator as Op};
use polaroid_tests::{Client, TestWorker, collect, e, upload, write_parquet};
use polars::prelude::*;
use tonic::Code;

fn frame() -> DataFrame {
    df!("a" => [1i64, 2, 3], "b" => ["x", "y", "z"]).unwrap()
}

/// The worker still answers a real call after an error.
async fn still_serves(client: &mut Client) {
    let handle = upload(client, &frame())
        .await
        .expect("upload after an error");
    let df = collect(client, &handle)
        .await
        .expect("collect after an error");
    assert!(df.equals(&frame()));
}

#[track_caller]
fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("call must fail");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(needle),
        "message `{}` should mention `{needle}`",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_errors() -> anyhow::Result<()> {
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let good = upload(&mut client, &frame()).await?;

    for malformed in [
        "",
        "../../etc/passwd",
        "ph1_zz",
        &good.to_uppercase(),
        &format!("{good}x"),
    ] {
        assert_status(
            client
                .get_schema(pb::GetSchemaRequest {
                    handle: malformed.into(),
                })
                .await,
            Code::InvalidArgument,
            "malformed handle",
        );
        assert_status(
            client
                .drop_handle(pb::DropHandleRequest {
                    handle: malformed.into(),
                })
                .await,
            Code::InvalidArgument,
            "malformed handle",
        );
    }
    // Well-formed but unknown, of another tenant, or dropped: not found.
    let mut unknown = good.clone();
    unknown.replace_range(good.len() - 4.., "0000");
    let mut foreign = good.clone();
    foreign.replace_range(4..20, "0123456789abcdef");
    for missing in [&unknown, &foreign] {
        assert_status(
            client
                .get_shape(pb::GetShapeRequest {
                    handle: missing.clone(),
                })
                .await,
            Code::NotFound,
            "not found",
        );
        assert_status(
            collect(&mut client, missing).await,
            Code::NotFound,
            "not found",
        );
    }
    client
        .drop_handle(pb::DropHandleRequest {
            handle: good.clone(),
        })
        .await?;
    assert_status(
        client
            .head(pb::HeadRequest {
                handle: good.clone(),
                n: 1,
            })
            .await,
        Code::NotFound,
        "not found",
    );
    still_serves(&mut client).await;
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_errors_are_reported_at_the_call() -> anyhow::Result<()> {
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let base = upload(&mut client, &frame()).await?;

    let unknown_column = client
        .select(pb::SelectRequest {
            handle: base.clone(),
            columns: vec!["nope".into()],
            ..Default::default()
        })
        .await;
    assert_status(unknown_column, Code::InvalidArgument, "nope");
    let bad_filter = client
        .filter(pb::FilterRequest {
            handle: base.clone(),
            predicate: Some(e::binary(e::col("missing"), Op::Gt, e::int(1))),
        })
        .await;
    assert_status(bad_filter, Code::InvalidArgument, "missing");
    let wrong_type = client
        .filter(pb::FilterRequest {
            handle: base.clone(),
            predicate: Some(e::col("a")),
        })
        .await;
    assert_status(wrong_type, Code::InvalidArgument, "filter");
    let bad_arith = client
        .with_columns(pb::WithColumnsRequest {
            handle: base.clone(),
            exprs: vec![e::binary(e::col("b"), Op::Minus, e::int(1))],
            ..Default::default()
        })
        .await;
    assert_status(bad_arith, Code::InvalidArgument, "with_columns");
    let upper_of_a_number = client
        .with_columns(pb::WithColumnsRequest {
            handle: base.clone(),
            exprs: vec![e::func("upper", vec![e::col("a")])],
            ..Default::default()
        })
        .await;
    assert_status(upper_of_a_number, Code::InvalidArgument, "with_columns");

    let unknown_function = client
        .with_columns(pb::WithColumnsRequest {
            handle: base.clone(),
            exprs: vec![e::func("frobnicate", vec![e::col("a")])],
            ..Default::default()
        })
        .await;
    assert_status(
        unknown_function,
        Code::InvalidArgument,
        "known functions: contains, starts_with",
    );
    let wrong_arity = client
        .with_columns(pb::WithColumnsRequest {
            handle: base.clone(),
            exprs: vec![e::func("upper", vec![])],
            ..Default::default()
        })
        .await;
    assert_status(wrong_arity, Code::InvalidArgument, "upper");
    let empty_expr = client
        .filter(pb::FilterRequest {
            handle: base.clone(),
            predicate: Some(pb::Expression { kind: None }),
        })
        .await;
    assert_status(empty_expr, Code::InvalidArgument, "empty Expression");
    let bad_cast = client
        .select(pb::SelectRequest {
            handle: base.clone(),
            exprs: vec![pb::Expression {
                kind: Some(pb::expression::Kind::Cast(Box::new(pb::CastExpr {
                    expr: Some(Box::new(e::col("a"))),
                    data_type: "Quaternion".into(),
                    strict: false,
                }))),
            }],
            ..Default::default()
        })
        .await;
    assert_status(bad_cast, Code::InvalidArgument, "unknown data type");
    let bad_join = client
        .join(pb::JoinRequest {
            left_handle: base.clone(),
            right_handle: base.clone(),
            on: Some(pb::JoinOn {
                columns: vec!["zz".into()],
            }),
            ..Default::default()
        })
        .await;
    assert_status(bad_join, Code::InvalidArgument, "zz");
    let bad_sql = client
        .sql(pb::SqlRequest {
            query: "SELEC nonsense".into(),
            tables: [("t".to_owned(), base.clone())].into(),
        })
        .await;
    assert_status(bad_sql, Code::InvalidArgument, "sql");
    write_parquet(&worker.path("f.parquet"), &frame());
    let predicate = |text: &str| pb::ReadParquetRequest {
        path: "f.parquet".into(),
        predicate: Some(text.into()),
        ..Default::default()
    };
    assert_status(
        client.read_parquet(predicate("a >>> 1")).await,
        Code::InvalidArgument,
        "is not a SQL expression",
    );
    assert_status(
        client.read_parquet(predicate("zz > 1")).await,
        Code::InvalidArgument,
        "zz",
    );
    let negative = client
        .head(pb::HeadRequest {
            handle: base.clone(),
            n: -1,
        })
        .await;
    assert_status(negative, Code::InvalidArgument, "n must be");
    let lead_out_of_range = client
        .lead(pb::LeadRequest {
            handle: base.clone(),
            every_column_periods: Some(i64::MIN),
            ..Default::default()
        })
        .await;
    assert_status(lead_out_of_range, Code::InvalidArgument, "out of range");
    let grouped = client
        .group_by(pb::GroupByRequest {
            handle: base.clone(),
            columns: vec!["b".into()],
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    assert_status(
        collect(&mut client, &grouped).await,
        Code::InvalidArgument,
        "call Agg",
    );
    let not_grouped = client
        .agg(pb::AggRequest {
            handle: base.clone(),
            aggregations: vec![],
            exprs: vec![e::col("a")],
        })
        .await;
    assert_status(not_grouped, Code::InvalidArgument, "grouped handle");
    let garbage = client
        .create_from_arrow(pb::CreateFromArrowRequest {
            arrow_ipc: b"definitely not arrow".to_vec().into(),
            name: None,
        })
        .await;
    assert_status(garbage, Code::InvalidArgument, "Arrow IPC");
    still_serves(&mut client).await;
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_access_is_confined_and_atomic() -> anyhow::Result<()> {
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let outside = tempfile::tempdir()?;
    std::fs::write(outside.path().join("secret.csv"), "a\n1\n")?;
    std::os::unix::fs::symlink(outside.path(), worker.path("escape"))?;

    let read = |path: &str| pb::ReadCsvRequest {
        path: path.into(),
        ..Default::default()
    };
    assert_status(
        client.read_csv(read("missing.csv")).await,
        Code::NotFound,
        "missing.csv",
    );
    assert_status(
        client
            .read_parquet(pb::ReadParquetRequest {
                path: "nope.parquet".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "nope",
    );
    let secret = outside.path().join("secret.csv");
    for path in [
        "../secret.csv",
        secret.to_str().unwrap_or_default(),
        "escape/secret.csv",
        "escape/missing.csv",
        "/etc/passwd",
    ] {
        assert_status(
            client.read_csv(read(path)).await,
            Code::PermissionDenied,
            "",
        );
    }
    let base = upload(&mut client, &frame()).await?;
    for path in ["../out.parquet", "escape/out.parquet", "/tmp/out.parquet"] {
        let write = pb::WriteParquetRequest {
            handle: base.clone(),
            path: path.into(),
            ..Default::default()
        };
        assert_status(
            client.write_parquet(write).await,
            Code::PermissionDenied,
            "",
        );
    }
    assert!(!outside.path().join("out.parquet").exists());

    // A failed append changes nothing: the existing file keeps its bytes.
    let write = pb::WriteParquetRequest {
        handle: base.clone(),
        path: "kept.parquet".into(),
        ..Default::default()
    };
    client.write_parquet(write).await?;
    let before = std::fs::read(worker.path("kept.parquet"))?;
    let other = upload(&mut client, &df!("zzz" => [1.5f64])?).await?;
    let append = pb::WriteParquetRequest {
        handle: other,
        path: "kept.parquet".into(),
        append: true,
        ..Default::default()
    };
    assert_status(
        client.write_parquet(append).await,
        Code::InvalidArgument,
        "schema",
    );
    assert_eq!(std::fs::read(worker.path("kept.parquet"))?, before);
    let bad_codec = pb::WriteParquetRequest {
        handle: base.clone(),
        path: "codec.parquet".into(),
        compression: Some("lzma9".into()),
        ..Default::default()
    };
    assert_status(
        client.write_parquet(bad_codec).await,
        Code::InvalidArgument,
        "compression",
    );
    assert!(!worker.path("codec.parquet").exists());
    let names: Vec<String> = std::fs::read_dir(worker.data_root.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".tmp")),
        "temp files left: {names:?}"
    );
    still_serves(&mut client).await;
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_over_limits_are_resource_exhausted() -> anyhow::Result<()> {
    let worker = TestWorker::start_with(|c| {
        c.max_result_rows = 100;
        c.max_result_columns = 3;
        c.max_result_bytes = 4096;
    })
    .await?;
    let mut client = worker.client().await?;
    let rows = upload(&mut client, &df!("n" => (0..101i64).collect::<Vec<_>>())?).await?;
    assert_status(
        collect(&mut client, &rows).await,
        Code::ResourceExhausted,
        "100 rows",
    );
    let limited = polaroid_tests::collect_batches(&mut client, &rows, Some(100)).await?;
    assert_eq!(
        polaroid_tests::stack(&limited).height(),
        100,
        "a limit brings the result under the cap"
    );
    let wide = upload(
        &mut client,
        &df!("a" => [1i64], "b" => [1i64], "c" => [1i64], "d" => [1i64])?,
    )
    .await?;
    assert_status(
        collect(&mut client, &wide).await,
        Code::ResourceExhausted,
        "columns",
    );
    let heavy = upload(
        &mut client,
        &df!("s" => (0..50).map(|i| "x".repeat(200 + i)).collect::<Vec<_>>())?,
    )
    .await?;
    assert_status(
        collect(&mut client, &heavy).await,
        Code::ResourceExhausted,
        "bytes",
    );
    still_serves(&mut client).await;
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_limit_are_resource_exhausted() -> anyhow::Result<()> {
    let worker = TestWorker::start_with(|c| c.max_upload_bytes = 64 * 1024).await?;
    let mut client = worker.client().await?;
    let chunks = (0..4)
        .map(|_| pb::UploadArrowChunk {
            data: vec![0; 32 * 1024].into(),
            name: None,
        })
        .collect::<Vec<_>>();
    assert_status(
        client.upload_arrow(tokio_stream::iter(chunks)).await,
        Code::ResourceExhausted,
        "upload",
    );
    let truncated = pb::UploadArrowChunk {
        data: polaroid_tests::to_ipc(&frame())[..40].to_vec().into(),
        name: None,
    };
    assert_status(
        client.upload_arrow(tokio_stream::iter([truncated])).await,
        Code::InvalidArgument,
        "Arrow IPC",
    );
    still_serves(&mut client).await;
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_internal_and_the_worker_keeps_serving() -> anyhow::Result<()> {
    let worker = TestWorker::start_with(|c| c.debug_panic_on_operation = "sort".into()).await?;
    let mut client = worker.client().await?;
    let base = upload(&mut client, &frame()).await?;
    for _ in 0..3 {
        let sorted = client
            .sort(pb::SortRequest {
                handle: base.clone(),
                columns: vec![pb::SortColumn {
                    name: "a".into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await;
        assert_status(sorted, Code::Internal, "internal error in sort");
    }
    still_serves(&mut client).await;
    worker.stop().await
}
