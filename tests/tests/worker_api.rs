//! Every DataFrameService call through a real tonic client over a real socket, each result
//! compared with Polars computing the same thing in this process.

use polaroid_proto::v1::{
    self as pb, AggFunction as Agg, BinaryOperator as Op, expression::Kind, literal_expr::Value,
};
use polaroid_tests::{
    Client, TestWorker, assert_frame_eq, collect, collect_batches, e, stack, upload, write_parquet,
};
use polars::prelude::*;

fn sales() -> DataFrame {
    df!(
        "id" => (1..=8i64).collect::<Vec<_>>(),
        "region" => ["north", "south", "north", "east", "south", "north", "east", "west"],
        "product" => ["a", "b", "a", "c", "b", "c", "a", "b"],
        "qty" => [Some(3i64), Some(5), None, Some(7), Some(2), Some(9), Some(4), Some(1)],
        "price" => [Some(2.5f64), Some(3.0), Some(4.0), Some(f64::NAN), Some(1.5), Some(2.0), Some(3.5), None],
    )
    .unwrap()
}

fn h(handle: &str) -> String {
    handle.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_match_polars() -> anyhow::Result<()> {
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let df = sales();

    // Parquet: projection, n_rows, row index.
    write_parquet(&worker.path("sales.parquet"), &df);
    let handle = client
        .read_parquet(pb::ReadParquetRequest {
            path: "sales.parquet".into(),
            columns: vec!["region".into(), "qty".into()],
            n_rows: Some(5),
            row_index_offset: Some(10),
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    let expected = df
        .clone()
        .lazy()
        .limit(5)
        .with_row_index("index", Some(10))
        .select([col("index"), col("region"), col("qty")])
        .collect()?;
    assert_frame_eq(&collect(&mut client, &handle).await?, &expected);

    // Parquet with a predicate (a SQL expression, as existing clients send it) on a
    // column the projection leaves out, after the row limit and the row index.
    let handle = client
        .read_parquet(pb::ReadParquetRequest {
            path: "sales.parquet".into(),
            columns: vec!["id".into(), "region".into()],
            predicate: Some("qty >= 3 AND region <> 'east'".into()),
            n_rows: Some(7),
            row_index_offset: Some(0),
            row_index_name: Some("row".into()),
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    let expected = df
        .clone()
        .lazy()
        .limit(7)
        .with_row_index("row", Some(0))
        .filter(col("qty").gt_eq(lit(3)).and(col("region").neq(lit("east"))))
        .select([col("row"), col("id"), col("region")])
        .collect()?;
    assert_eq!(
        expected.height(),
        3,
        "the predicate keeps some rows, not all"
    );
    assert_frame_eq(&collect(&mut client, &handle).await?, &expected);

    // CSV: separator, quote, skip rows, n_rows, columns, explicit schema.
    std::fs::write(
        worker.path("data.csv"),
        "junk line\nname;score;note\n'ann';1;'x;y'\n'bob';2;z\n'cy';3;w\n'dee';4;v\n",
    )?;
    let handle = client
        .read_csv(pb::ReadCsvRequest {
            path: "data.csv".into(),
            separator: Some(";".into()),
            quote_char: Some("'".into()),
            skip_rows: Some(1),
            n_rows: Some(3),
            has_header: true,
            columns: vec!["name".into(), "score".into(), "note".into()],
            schema: vec![
                pb::Field {
                    name: "name".into(),
                    data_type: "String".into(),
                },
                pb::Field {
                    name: "score".into(),
                    data_type: "Float64".into(),
                },
                pb::Field {
                    name: "note".into(),
                    data_type: "String".into(),
                },
            ],
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    let schema = Schema::from_iter([
        Field::new("name".into(), DataType::String),
        Field::new("score".into(), DataType::Float64),
        Field::new("note".into(), DataType::String),
    ]);
    let expected = LazyCsvReader::new(PlRefPath::new(
        worker.path("data.csv").to_str().unwrap_or(""),
    ))
    .with_separator(b';')
    .with_quote_char(Some(b'\''))
    .with_skip_rows(1)
    .with_schema(Some(Arc::new(schema)))
    .finish()?
    .limit(3)
    .collect()?;
    assert_eq!(expected.height(), 3);
    assert_frame_eq(&collect(&mut client, &handle).await?, &expected);

    // CSV without a header.
    std::fs::write(worker.path("plain.csv"), "1,a\n2,b\n")?;
    let handle = client
        .read_csv(pb::ReadCsvRequest {
            path: "plain.csv".into(),
            has_header: false,
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    let expected = LazyCsvReader::new(PlRefPath::new(
        worker.path("plain.csv").to_str().unwrap_or(""),
    ))
    .with_has_header(false)
    .finish()?
    .collect()?;
    assert_frame_eq(&collect(&mut client, &handle).await?, &expected);

    // Arrow IPC file.
    let mut file = std::fs::File::create(worker.path("sales.arrow"))?;
    IpcWriter::new(&mut file).finish(&mut df.clone())?;
    let handle = client
        .read_ipc(pb::ReadIpcRequest {
            path: "sales.arrow".into(),
            columns: vec!["id".into()],
            n_rows: Some(3),
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    assert_frame_eq(
        &collect(&mut client, &handle).await?,
        &df.select(["id"])?.head(Some(3)),
    );

    // JSON array and NDJSON.
    std::fs::write(
        worker.path("rows.json"),
        r#"[{"a": 1, "b": "x"}, {"a": 2, "b": null}]"#,
    )?;
    std::fs::write(
        worker.path("rows.ndjson"),
        "{\"a\": 1, \"b\": \"x\"}\n{\"a\": 2, \"b\": null}\n",
    )?;
    // Polars' own reading of the JSON array; the NDJSON file holds the same records.
    let expected = JsonReader::new(std::fs::File::open(worker.path("rows.json"))?).finish()?;
    assert_eq!(expected.height(), 2);
    for path in ["rows.json", "rows.ndjson"] {
        let handle = client
            .read_json(pb::ReadJsonRequest {
                path: path.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .handle;
        assert_frame_eq(&collect(&mut client, &handle).await?, &expected);
    }

    // Uploads: one message, and the client-streaming upload in small chunks.
    let handle = upload(&mut client, &df).await?;
    assert_frame_eq(&collect(&mut client, &handle).await?, &df);
    let big = df!("n" => (0..200_000i64).collect::<Vec<_>>(), "s" => (0..200_000).map(|i| format!("value {i}")).collect::<Vec<_>>())?;
    let bytes = polaroid_tests::to_ipc(&big);
    let chunks: Vec<pb::UploadArrowChunk> = bytes
        .chunks(256 * 1024)
        .enumerate()
        .map(|(i, c)| pb::UploadArrowChunk {
            data: c.to_vec().into(),
            name: (i == 0).then(|| "big".into()),
        })
        .collect();
    assert!(chunks.len() > 4);
    let handle = client
        .upload_arrow(tokio_stream::iter(chunks))
        .await?
        .into_inner()
        .handle;
    let batches = collect_batches(&mut client, &handle, None).await?;
    assert!(
        batches.len() > 1,
        "a result over the message size arrives in several self-contained messages"
    );
    assert_frame_eq(&stack(&batches), &big);
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transforms_match_polars() -> anyhow::Result<()> {
    transforms_match_polars_on(true).await
}

/// The same calls with every query on Polars' in-memory engine (`streaming_engine` off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transforms_match_polars_on_the_in_memory_engine() -> anyhow::Result<()> {
    transforms_match_polars_on(false).await
}

async fn transforms_match_polars_on(streaming_engine: bool) -> anyhow::Result<()> {
    let worker =
        TestWorker::start_with(|config| config.streaming_engine = streaming_engine).await?;
    let mut client = worker.client().await?;
    let df = sales();
    let base = upload(&mut client, &df).await?;
    let lf = || df.clone().lazy();

    macro_rules! check {
        ($call:ident, $request:expr, $expected:expr) => {{
            let handle = client.$call($request).await?.into_inner().handle;
            let expected: DataFrame = $expected;
            assert_frame_eq(&collect(&mut client, &handle).await?, &expected);
            handle
        }};
    }

    check!(
        select,
        pb::SelectRequest {
            handle: h(&base),
            columns: vec!["id".into()],
            exprs: vec![e::alias(
                e::binary(e::col("qty"), Op::Multiply, e::col("price")),
                "total"
            )],
        },
        lf().select([col("id"), (col("qty") * col("price")).alias("total")])
            .collect()?
    );
    check!(
        filter,
        pb::FilterRequest {
            handle: h(&base),
            predicate: Some(e::binary(
                e::binary(e::col("qty"), Op::Gte, e::int(3)),
                Op::And,
                e::binary(e::col("region"), Op::Neq, e::string("east")),
            )),
        },
        lf().filter(col("qty").gt_eq(lit(3)).and(col("region").neq(lit("east"))))
            .collect()?
    );
    check!(
        with_column,
        pb::WithColumnRequest {
            handle: h(&base),
            name: "double".into(),
            expr: Some(e::binary(e::col("qty"), Op::Plus, e::col("qty")))
        },
        lf().with_column((col("qty") + col("qty")).alias("double"))
            .collect()?
    );
    check!(
        with_columns,
        pb::WithColumnsRequest {
            handle: h(&base),
            columns: Default::default(),
            exprs: vec![
                e::alias(e::binary(e::col("id"), Op::Modulo, e::int(3)), "m"),
                e::alias(
                    e::binary(e::col("price"), Op::Divide, e::float(2.0)),
                    "half"
                ),
                e::alias(e::binary(e::col("id"), Op::Minus, e::int(1)), "id"),
            ],
        },
        lf().with_columns([
            (col("id") % lit(3)).alias("m"),
            (col("price") / lit(2.0)).alias("half"),
            (col("id") - lit(1)).alias("id")
        ])
        .collect()?
    );
    check!(
        drop,
        pb::DropRequest {
            handle: h(&base),
            columns: vec!["price".into(), "product".into()]
        },
        df.drop_many(["price", "product"])
    );
    check!(
        rename,
        pb::RenameRequest {
            handle: h(&base),
            mapping: [("qty".to_owned(), "quantity".to_owned())].into()
        },
        lf().rename(["qty"], ["quantity"], true).collect()?
    );
    check!(
        sort,
        pb::SortRequest {
            handle: h(&base),
            columns: vec![
                pb::SortColumn {
                    name: "region".into(),
                    descending: false,
                    nulls_last: true,
                },
                pb::SortColumn {
                    name: "qty".into(),
                    descending: true,
                    nulls_last: true,
                },
            ],
            exprs: vec![],
            maintain_order: true,
        },
        lf().sort(
            ["region", "qty"],
            SortMultipleOptions::default()
                .with_order_descending_multi([false, true])
                .with_nulls_last(true)
                .with_maintain_order(true)
        )
        .collect()?
    );
    for (keep, strategy) in [
        (pb::UniqueKeep::First, UniqueKeepStrategy::First),
        (pb::UniqueKeep::Last, UniqueKeepStrategy::Last),
        (pb::UniqueKeep::None, UniqueKeepStrategy::None),
    ] {
        check!(
            unique,
            pb::UniqueRequest {
                handle: h(&base),
                subset: vec!["region".into()],
                keep_first: false,
                keep: keep as i32,
                maintain_order: true
            },
            lf().unique_stable(Some(by_name(["region"], true, false)), strategy)
                .collect()?
        );
    }
    check!(
        head,
        pb::HeadRequest {
            handle: h(&base),
            n: 3
        },
        df.head(Some(3))
    );
    check!(
        limit,
        pb::LimitRequest {
            handle: h(&base),
            n: 2
        },
        df.head(Some(2))
    );
    check!(
        tail,
        pb::TailRequest {
            handle: h(&base),
            n: 3
        },
        df.tail(Some(3))
    );
    check!(
        slice,
        pb::SliceRequest {
            handle: h(&base),
            offset: -5,
            length: 2,
            to_end: false
        },
        df.slice(-5, 2)
    );
    check!(
        slice,
        pb::SliceRequest {
            handle: h(&base),
            offset: 6,
            length: 0,
            to_end: true
        },
        df.slice(6, 100)
    );

    // Group by with every aggregate, several per call, with aliases.
    let aggs = vec![
        e::alias(e::agg(Agg::Sum, e::col("qty")), "sum"),
        e::alias(e::agg(Agg::Min, e::col("qty")), "min"),
        e::alias(e::agg(Agg::Max, e::col("qty")), "max"),
        e::alias(e::agg(Agg::Mean, e::col("qty")), "mean"),
        e::alias(e::agg(Agg::Median, e::col("qty")), "median"),
        e::alias(e::agg(Agg::Std, e::col("qty")), "std"),
        e::alias(e::agg(Agg::Var, e::col("qty")), "var"),
        e::alias(e::agg(Agg::Count, e::col("qty")), "count"),
        e::alias(e::agg(Agg::First, e::col("product")), "first"),
        e::alias(e::agg(Agg::Last, e::col("product")), "last"),
        e::alias(e::agg(Agg::NUnique, e::col("product")), "n_unique"),
        e::alias(
            pb::Expression {
                kind: Some(Kind::Aggregation(Box::new(pb::AggregationExpr {
                    function: Agg::Quantile as i32,
                    expr: Some(Box::new(e::col("qty"))),
                    quantile: Some(0.5),
                }))),
            },
            "q50",
        ),
    ];
    let expected = lf()
        .group_by_stable([col("region")])
        .agg([
            col("qty").sum().alias("sum"),
            col("qty").min().alias("min"),
            col("qty").max().alias("max"),
            col("qty").mean().alias("mean"),
            col("qty").median().alias("median"),
            col("qty").std(1).alias("std"),
            col("qty").var(1).alias("var"),
            col("qty").count().alias("count"),
            col("product").first().alias("first"),
            col("product").last().alias("last"),
            col("product").n_unique().alias("n_unique"),
            col("qty")
                .quantile(lit(0.5), QuantileMethod::Linear)
                .alias("q50"),
        ])
        .collect()?;
    check!(
        group_by,
        pb::GroupByRequest {
            handle: h(&base),
            columns: vec!["region".into()],
            aggs: aggs.clone(),
            maintain_order: true,
            by_exprs: vec![]
        },
        expected.clone()
    );
    let grouped = client
        .group_by(pb::GroupByRequest {
            handle: h(&base),
            columns: vec!["region".into()],
            maintain_order: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    check!(
        agg,
        pb::AggRequest {
            handle: grouped,
            aggregations: vec![],
            exprs: aggs
        },
        expected
    );

    // Reshaping.
    check!(
        pivot,
        pb::PivotRequest {
            handle: h(&base),
            columns: "product".into(),
            index: "region".into(),
            values: "qty".into(),
            aggregate: Some(pb::AggFunction::Sum as i32),
            sort_columns: true,
            ..Default::default()
        },
        {
            let on = lf()
                .select([col("product")])
                .unique_stable(None, UniqueKeepStrategy::First)
                .collect()?
                .sort(["product"], Default::default())?;
            lf().pivot(
                by_name(["product"], true, false),
                std::sync::Arc::new(on),
                by_name(["region"], true, false),
                by_name(["qty"], true, false),
                element().sum(),
                true,
                "_".into(),
                Default::default(),
            )
            .collect()?
        }
    );
    check!(
        melt,
        pb::MeltRequest {
            handle: h(&base),
            id_vars: vec!["id".into()],
            value_vars: vec!["qty".into(), "price".into()],
            variable_name: Some("k".into()),
            value_name: Some("v".into())
        },
        lf().select([col("id"), col("qty").cast(DataType::Float64), col("price")])
            .unpivot(UnpivotArgsDSL {
                on: Some(by_name(["qty", "price"], true, false)),
                index: by_name(["id"], true, false),
                variable_name: Some("k".into()),
                value_name: Some("v".into())
            })
            .collect()?
    );

    // Joins.
    let regions = df!("region" => ["north", "south", "east", "arctic"], "manager" => ["ann", "bob", "cy", "dee"], "qty" => [100i64, 200, 300, 400])?;
    let right = upload(&mut client, &regions).await?;
    for (how, join_type) in [
        (pb::JoinHow::Inner, JoinType::Inner),
        (pb::JoinHow::Left, JoinType::Left),
        (pb::JoinHow::Right, JoinType::Right),
        (pb::JoinHow::Full, JoinType::Full),
        (pb::JoinHow::Semi, JoinType::Semi),
        (pb::JoinHow::Anti, JoinType::Anti),
    ] {
        let handle = client
            .join(pb::JoinRequest {
                left_handle: h(&base),
                right_handle: h(&right),
                on: Some(pb::JoinOn {
                    columns: vec!["region".into()],
                }),
                how: how as i32,
                suffix: Some("_r".into()),
                ..Default::default()
            })
            .await?
            .into_inner()
            .handle;
        let expected = lf()
            .join_builder()
            .with(regions.clone().lazy())
            .how(join_type)
            .on([col("region")])
            .suffix("_r")
            .finish()
            .sort(
                ["id", "region"],
                SortMultipleOptions::default().with_nulls_last(true),
            )
            .collect()?;
        let actual = collect(&mut client, &handle).await?.sort(
            ["id", "region"],
            SortMultipleOptions::default().with_nulls_last(true),
        )?;
        assert_frame_eq(&actual, &expected);
    }
    let renamed = upload(
        &mut client,
        &regions
            .clone()
            .lazy()
            .rename(["region"], ["area"], true)
            .collect()?,
    )
    .await?;
    check!(
        join,
        pb::JoinRequest {
            left_handle: h(&base),
            right_handle: renamed,
            left_right: Some(pb::JoinLeftRight {
                left: vec!["region".into()],
                right: vec!["area".into()],
            }),
            join_type: pb::JoinType::Left as i32,
            ..Default::default()
        },
        lf().join_builder()
            .with(regions.clone().lazy().rename(["region"], ["area"], true))
            .how(JoinType::Left)
            .left_on([col("region")])
            .right_on([col("area")])
            .finish()
            .collect()?
    );
    let small = upload(&mut client, &regions.head(Some(2))).await?;
    check!(
        cross,
        pb::CrossRequest {
            left_handle: h(&base),
            right_handle: h(&small),
            suffix: None
        },
        lf().cross_join(regions.head(Some(2)).lazy(), Some("_right".into()))
            .collect()?
    );
    check!(
        join,
        pb::JoinRequest {
            left_handle: h(&base),
            right_handle: small,
            join_type: pb::JoinType::Cross as i32,
            ..Default::default()
        },
        lf().cross_join(regions.head(Some(2)).lazy(), Some("_right".into()))
            .collect()?
    );

    // SQL over named handles, and Clone.
    check!(
        sql,
        pb::SqlRequest {
            query: "SELECT s.region, SUM(s.qty) AS total, r.manager FROM sales s JOIN regions r ON s.region = r.region GROUP BY s.region, r.manager ORDER BY s.region".into(),
            tables: [("sales".to_owned(), h(&base)), ("regions".to_owned(), h(&right))].into(),
        },
        {
            let mut context = polars::sql::SQLContext::new();
            context.register("sales", lf());
            context.register("regions", regions.clone().lazy());
            context.execute("SELECT s.region, SUM(s.qty) AS total, r.manager FROM sales s JOIN regions r ON s.region = r.region GROUP BY s.region, r.manager ORDER BY s.region")?.collect()?
        }
    );
    // `clone` is also `Clone::clone`: call the RPC by its path.
    let cloned = Client::clone(&mut client, pb::CloneRequest { handle: h(&base) })
        .await?
        .into_inner()
        .handle;
    assert_frame_eq(&collect(&mut client, &cloned).await?, &df);
    assert_ne!(cloned, base, "every call returns a new handle id");
    worker.stop().await
}

/// A `Sort` of `handle` by columns, each `(name, descending, nulls_last)`; the new handle.
async fn sort_by(
    client: &mut Client,
    handle: &str,
    keys: &[(&str, bool, bool)],
) -> anyhow::Result<String> {
    let columns = keys
        .iter()
        .map(|&(name, descending, nulls_last)| pb::SortColumn {
            name: name.into(),
            descending,
            nulls_last,
        })
        .collect();
    let request = pb::SortRequest {
        handle: handle.to_owned(),
        columns,
        ..Default::default()
    };
    Ok(client.sort(request).await?.into_inner().handle)
}

/// A sort straight after a group_by breaks ties by the group keys (the groups are then
/// computed in any order, which Polars' streaming engine does faster); the group_by alone
/// still gives its groups in order of first appearance (docs/architecture.md,
/// "Determinism").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sorted_group_by_breaks_ties_by_its_keys() -> anyhow::Result<()> {
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    // Totals: c 5, a 5, b 7, d 5, e 0; first appearance c, a, b, d, e.
    let df = df!(
        "g" => ["c", "a", "b", "d", "a", "b", "e"],
        "v" => [Some(5i64), Some(2), Some(3), Some(5), Some(3), Some(4), None],
    )?;
    let base = upload(&mut client, &df).await?;
    let grouped = client
        .group_by(pb::GroupByRequest {
            handle: base,
            columns: vec!["g".into()],
            aggs: vec![e::alias(e::agg(Agg::Sum, e::col("v")), "total")],
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    let totals = df
        .clone()
        .lazy()
        .group_by_stable([col("g")])
        .agg([col("v").sum().alias("total")]);
    assert_frame_eq(
        &collect(&mut client, &grouped).await?,
        &totals.clone().collect()?,
    );
    for (descending, nulls_last) in [(true, false), (false, true)] {
        let sorted = sort_by(&mut client, &grouped, &[("total", descending, nulls_last)]).await?;
        let expected = totals
            .clone()
            .sort(
                ["total", "g"],
                SortMultipleOptions::default()
                    .with_order_descending_multi([descending, false])
                    .with_nulls_last_multi([nulls_last, false]),
            )
            .collect()?;
        let got = collect(&mut client, &sorted).await?;
        assert_frame_eq(&got, &expected);
        let order: Vec<&str> = got.column("g")?.str()?.iter().flatten().collect();
        // The three groups with a total of 5, in key order, between 7 and 0 (the sum of
        // `e`'s one null).
        assert_eq!(order[1..4], ["a", "c", "d"], "{got}");
    }
    // Sorted by its own key, or by the total and the key: no key twice.
    for columns in [vec!["g"], vec!["total", "g"], vec!["g", "total"]] {
        let keys: Vec<_> = columns.iter().map(|name| (*name, true, false)).collect();
        let sorted = sort_by(&mut client, &grouped, &keys).await?;
        let expected = totals
            .clone()
            .sort(
                columns.clone(),
                SortMultipleOptions::default()
                    .with_order_descending(true)
                    .with_maintain_order(true),
            )
            .collect()?;
        assert_frame_eq(&collect(&mut client, &sorted).await?, &expected);
    }
    Ok(())
}

fn series_frame() -> DataFrame {
    let day = 86_400_000i64;
    let times: Vec<i64> = [0, 1, 2, 5, 6, 9, 10, 11]
        .iter()
        .map(|d| d * day / 4)
        .collect();
    df!(
        "time" => times,
        "sym" => ["x", "y", "x", "y", "x", "y", "x", "y"],
        "value" => [Some(1.0f64), Some(2.0), None, Some(4.0), Some(f64::NAN), Some(6.0), None, Some(8.0)],
    )
    .unwrap()
    .lazy()
    .with_column(col("time").cast(DataType::Datetime(TimeUnit::Milliseconds, None)))
    .collect()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_series_match_polars() -> anyhow::Result<()> {
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let df = series_frame();
    // Uploaded unsorted, as data often arrives.
    let shuffled = df
        .clone()
        .lazy()
        .sort(
            ["value"],
            SortMultipleOptions::default().with_nulls_last(true),
        )
        .collect()?;
    let base = upload(&mut client, &shuffled).await?;
    let sorted = || df.clone().lazy();

    macro_rules! check {
        ($call:ident, $request:expr, $expected:expr) => {{
            let handle = client.$call($request).await?.into_inner().handle;
            let expected: DataFrame = $expected;
            assert_frame_eq(&collect(&mut client, &handle).await?, &expected);
            handle
        }};
    }

    let series = check!(
        as_time_series,
        pb::AsTimeSeriesRequest {
            handle: h(&base),
            timestamp_column: "time".into(),
            frequency: None,
            ensure_sorted: true,
            by: vec![]
        },
        // The times are distinct: sorted, the upload is the frame it was shuffled from.
        df.clone()
    );
    check!(
        resample,
        pb::ResampleRequest {
            handle: h(&series),
            frequency: "1d".into(),
            exprs: vec![
                e::alias(e::agg(Agg::Sum, e::col("value")), "total"),
                e::alias(e::agg(Agg::Count, e::col("value")), "n")
            ],
            ..Default::default()
        },
        sorted()
            .group_by_dynamic(
                col("time"),
                [],
                DynamicGroupOptions {
                    every: Duration::parse("1d"),
                    period: Duration::parse("1d"),
                    offset: Duration::parse("0ns"),
                    ..Default::default()
                }
            )
            .agg([
                col("value").sum().alias("total"),
                col("value").count().alias("n")
            ])
            .collect()?
    );
    let fixed = RollingOptionsFixedWindow {
        window_size: 3,
        min_periods: 1,
        ..Default::default()
    };
    check!(
        rolling_window,
        pb::RollingWindowRequest {
            handle: h(&series),
            window_size: "3".into(),
            aggregations: vec![pb::RollingAggregation {
                column: "value".into(),
                alias: "value_mean3".into(),
                function: pb::AggFunction::Mean as i32,
            }],
            min_periods: Some(1),
            ..Default::default()
        },
        sorted()
            .with_column(col("value").rolling_mean(fixed).alias("value_mean3"))
            .collect()?
    );
    check!(
        rolling_window,
        pb::RollingWindowRequest {
            handle: h(&series),
            window_size: "1d".into(),
            aggregations: vec![pb::RollingAggregation {
                column: "value".into(),
                alias: String::new(),
                function: pb::AggFunction::Sum as i32,
            }],
            ..Default::default()
        },
        sorted()
            .with_column(col("value").rolling_sum_by(
                col("time"),
                RollingOptionsDynamicWindow {
                    window_size: Duration::parse("1d"),
                    min_periods: 1,
                    closed_window: ClosedWindow::Right,
                    fn_params: None
                }
            ))
            .collect()?
    );
    check!(
        lag,
        pb::LagRequest {
            handle: h(&series),
            columns: vec![pb::LagColumn {
                column: "value".into(),
                periods: 2,
                alias: Some("value_lag2".into())
            }],
            ..Default::default()
        },
        sorted()
            .with_column(col("value").shift(lit(2)).alias("value_lag2"))
            .collect()?
    );
    check!(
        lead,
        pb::LeadRequest {
            handle: h(&series),
            columns: vec![pb::LagColumn {
                column: "value".into(),
                periods: 1,
                alias: None
            }],
            ..Default::default()
        },
        sorted()
            .with_column(col("value").shift(lit(-1)))
            .collect()?
    );
    check!(
        diff,
        pb::DiffRequest {
            handle: h(&series),
            columns: vec!["value".into()],
            periods: 1,
            suffix: Some("_d".into())
        },
        sorted()
            .with_column(
                col("value")
                    .diff(lit(1), Default::default())
                    .alias("value_d")
            )
            .collect()?
    );
    check!(
        pct_change,
        pb::PctChangeRequest {
            handle: h(&series),
            columns: vec!["value".into()],
            periods: 1,
            suffix: None
        },
        sorted()
            .with_column(col("value").pct_change(lit(1)))
            .collect()?
    );
    check!(
        fill_null,
        pb::FillNullRequest {
            handle: h(&series),
            method: pb::FillMethod::FillForward as i32,
            columns: vec!["value".into()],
            ..Default::default()
        },
        sorted()
            .with_column(col("value").fill_null_with_strategy(FillNullStrategy::Forward(None)))
            .collect()?
    );
    check!(
        fill_null,
        pb::FillNullRequest {
            handle: h(&series),
            fill_expr: Some(e::float(-1.0)),
            columns: vec![],
            ..Default::default()
        },
        sorted()
            .with_column(col("value").fill_null(lit(-1.0)))
            .collect()?
    );
    check!(
        fill_nan,
        pb::FillNanRequest {
            handle: h(&series),
            fill_expr: Some(e::float(0.0)),
            ..Default::default()
        },
        sorted()
            .with_column(col("value").fill_nan(lit(0.0)))
            .collect()?
    );
    check!(
        interpolate,
        pb::InterpolateRequest {
            handle: h(&series),
            columns: vec!["value".into()],
            method: String::new(),
            interpolation: 0
        },
        sorted()
            .with_column(col("value").interpolate(InterpolationMethod::Linear))
            .collect()?
    );

    // As-of join with `by`, tolerance and each strategy.
    let quotes = df!(
        "time" => [0i64, 3, 5, 8, 12].iter().map(|d| d * 86_400_000 / 4).collect::<Vec<_>>(),
        "sym" => ["x", "y", "x", "y", "x"],
        "bid" => [10.0f64, 20.0, 11.0, 21.0, 12.0],
    )?
    .lazy()
    .with_column(col("time").cast(DataType::Datetime(TimeUnit::Milliseconds, None)))
    .collect()?;
    let right = upload(&mut client, &quotes).await?;
    for (strategy, polars_strategy) in [
        ("backward", AsofStrategy::Backward),
        ("Forward", AsofStrategy::Forward),
        ("NEAREST", AsofStrategy::Nearest),
    ] {
        check!(
            asof_join,
            pb::AsofJoinRequest {
                left_handle: h(&series),
                right_handle: h(&right),
                left_on: "time".into(),
                right_on: "time".into(),
                by: vec!["sym".into()],
                strategy: Some(strategy.into()),
                tolerance: Some("1d".into()),
                ..Default::default()
            },
            sorted()
                .join_builder()
                .with(quotes.clone().lazy())
                .how(JoinType::AsOf(Box::new(AsOfOptions {
                    strategy: polars_strategy,
                    tolerance_str: Some("1d".into()),
                    left_by: Some(vec!["sym".into()]),
                    right_by: Some(vec!["sym".into()]),
                    allow_eq: true,
                    check_sortedness: true,
                    ..Default::default()
                })))
                .left_on([col("time")])
                .right_on([col("time")])
                .suffix("_right")
                .finish()
                .collect()?
        );
    }
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expressions_match_polars() -> anyhow::Result<()> {
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let df = df!(
        "s" => [Some("  Apple pie "), Some("banana"), None, Some("cherry")],
        "n" => [Some(-1.44f64), Some(2.5), Some(9.0), None],
        "i" => [1i64, 2, 3, 4],
        "g" => ["a", "b", "a", "b"],
        "d" => [0i32, 31, 59, 365],
        "t" => [0i64, 3_600_000, 90_000_000, 1_000_000_000],
    )?
    .lazy()
    .with_columns([
        col("d").cast(DataType::Date),
        col("t").cast(DataType::Datetime(TimeUnit::Milliseconds, None)),
    ])
    .collect()?;
    let base = upload(&mut client, &df).await?;
    let named = |name: &str, args: Vec<pb::Expression>| e::alias(e::func(name, args), "out");
    let bool_lit = |b: bool| e::lit(Value::BoolVal(b));
    let list = |values: Vec<Value>| {
        e::lit(Value::ListVal(pb::LiteralList {
            values: values
                .into_iter()
                .map(|v| pb::LiteralExpr { value: Some(v) })
                .collect(),
        }))
    };
    let case = |cond: pb::Expression, then: pb::Expression, otherwise: Option<pb::Expression>| {
        pb::Expression {
            kind: Some(Kind::CaseExpr(Box::new(pb::CaseExpr {
                when_then: vec![pb::WhenThen {
                    when: Some(cond),
                    then: Some(then),
                }],
                otherwise: otherwise.map(Box::new),
            }))),
        }
    };

    let cases: Vec<(pb::Expression, Expr)> = vec![
        (
            named("contains", vec![e::col("s"), e::string("an+")]),
            col("s").str().contains(lit("an+"), true),
        ),
        (
            named(
                "contains",
                vec![e::col("s"), e::string("p"), bool_lit(true)],
            ),
            col("s").str().contains_literal(lit("p")),
        ),
        (
            named("starts_with", vec![e::col("s"), e::string("ba")]),
            col("s").str().starts_with(lit("ba")),
        ),
        (
            named("ends_with", vec![e::col("s"), e::string("ry")]),
            col("s").str().ends_with(lit("ry")),
        ),
        (
            named("lower", vec![e::col("s")]),
            col("s").str().to_lowercase(),
        ),
        (
            named("upper", vec![e::col("s")]),
            col("s").str().to_uppercase(),
        ),
        (
            named("length", vec![e::col("s")]),
            col("s").str().len_chars(),
        ),
        (
            named("replace", vec![e::col("s"), e::string("a"), e::string("_")]),
            col("s").str().replace_all(lit("a"), lit("_"), false),
        ),
        (
            named("slice", vec![e::col("s"), e::int(1), e::int(3)]),
            col("s").str().slice(lit(1), lit(3)),
        ),
        (
            named("strip", vec![e::col("s")]),
            col("s").str().strip_chars(lit(NULL)),
        ),
        (named("year", vec![e::col("d")]), col("d").dt().year()),
        (named("month", vec![e::col("d")]), col("d").dt().month()),
        (named("day", vec![e::col("d")]), col("d").dt().day()),
        (named("hour", vec![e::col("t")]), col("t").dt().hour()),
        (named("weekday", vec![e::col("d")]), col("d").dt().weekday()),
        (
            named("truncate", vec![e::col("t"), e::string("1d")]),
            col("t").dt().truncate(lit("1d")),
        ),
        (
            named("strftime", vec![e::col("t"), e::string("%Y-%m-%d %H:%M")]),
            col("t").dt().strftime("%Y-%m-%d %H:%M"),
        ),
        (named("abs", vec![e::col("n")]), col("n").abs()),
        (
            named("round", vec![e::col("n"), e::int(1)]),
            col("n").round(1, RoundMode::HalfAwayFromZero),
        ),
        (named("sqrt", vec![e::col("i")]), col("i").sqrt()),
        (
            named("log", vec![e::col("i")]),
            col("i").log(lit(std::f64::consts::E)),
        ),
        (
            named("log", vec![e::col("i"), e::float(2.0)]),
            col("i").log(lit(2.0)),
        ),
        (named("exp", vec![e::col("n")]), col("n").exp()),
        (
            named("clip", vec![e::col("n"), e::float(0.0), e::float(5.0)]),
            col("n").clip(lit(0.0), lit(5.0)),
        ),
        (
            named(
                "is_in",
                vec![e::col("i"), list(vec![Value::IntVal(2), Value::IntVal(4)])],
            ),
            col("i").is_in(
                lit(Series::new("l".into(), [2i64, 4])).implode(false),
                false,
            ),
        ),
        (
            named(
                "is_in",
                vec![e::col("g"), list(vec![Value::StringVal("b".into())])],
            ),
            col("g").is_in(lit(Series::new("l".into(), ["b"])).implode(false), false),
        ),
        (
            named("between", vec![e::col("i"), e::int(2), e::int(3)]),
            col("i").is_between(lit(2), lit(3), ClosedInterval::Both),
        ),
        (
            named("fill_null", vec![e::col("s"), e::string("?")]),
            col("s").fill_null(lit("?")),
        ),
        (
            named("coalesce", vec![e::col("n"), e::col("i")]),
            coalesce(&[col("n"), col("i")]),
        ),
        // Literals of every kind.
        (
            e::alias(e::lit(Value::DateVal(31)), "out"),
            lit(31).cast(DataType::Date),
        ),
        (
            e::alias(
                e::lit(Value::DatetimeVal(pb::DatetimeLiteral {
                    value: 5,
                    unit: pb::TimeUnit::Milliseconds as i32,
                    time_zone: None,
                })),
                "out",
            ),
            lit(5i64).cast(DataType::Datetime(TimeUnit::Milliseconds, None)),
        ),
        (
            e::alias(
                e::binary(
                    e::col("t"),
                    Op::Plus,
                    e::lit(Value::DurationVal(pb::DurationLiteral {
                        value: 1000,
                        unit: pb::TimeUnit::Milliseconds as i32,
                    })),
                ),
                "out",
            ),
            col("t") + lit(1000i64).cast(DataType::Duration(TimeUnit::Milliseconds)),
        ),
        (
            e::alias(e::lit(Value::NullVal(pb::NullLiteral {})), "out"),
            lit(NULL),
        ),
        (e::alias(e::lit(Value::BoolVal(true)), "out"), lit(true)),
        // Every binary and unary operator.
        (
            e::alias(e::binary(e::col("i"), Op::Eq, e::int(2)), "out"),
            col("i").eq(lit(2)),
        ),
        (
            e::alias(e::binary(e::col("i"), Op::Lt, e::int(2)), "out"),
            col("i").lt(lit(2)),
        ),
        (
            e::alias(e::binary(e::col("i"), Op::Lte, e::int(2)), "out"),
            col("i").lt_eq(lit(2)),
        ),
        (
            e::alias(e::binary(e::col("i"), Op::Gt, e::int(2)), "out"),
            col("i").gt(lit(2)),
        ),
        (
            e::alias(
                e::binary(
                    e::binary(e::col("i"), Op::Eq, e::int(1)),
                    Op::Or,
                    e::binary(e::col("i"), Op::Eq, e::int(4)),
                ),
                "out",
            ),
            col("i").eq(lit(1)).or(col("i").eq(lit(4))),
        ),
        (
            e::alias(
                e::unary(
                    pb::UnaryOperator::Not,
                    e::binary(e::col("i"), Op::Eq, e::int(2)),
                ),
                "out",
            ),
            col("i").eq(lit(2)).not(),
        ),
        (
            e::alias(e::unary(pb::UnaryOperator::Negate, e::col("n")), "out"),
            lit(0) - col("n"),
        ),
        (
            e::alias(e::unary(pb::UnaryOperator::IsNull, e::col("s")), "out"),
            col("s").is_null(),
        ),
        (
            e::alias(e::unary(pb::UnaryOperator::IsNotNull, e::col("s")), "out"),
            col("s").is_not_null(),
        ),
        (
            e::alias(e::unary(pb::UnaryOperator::Abs, e::col("n")), "out"),
            col("n").abs(),
        ),
        // when/then/otherwise, casts, windows.
        (
            e::alias(
                case(
                    e::binary(e::col("i"), Op::Gt, e::int(2)),
                    e::string("big"),
                    Some(e::string("small")),
                ),
                "out",
            ),
            when(col("i").gt(lit(2)))
                .then(lit("big"))
                .otherwise(lit("small")),
        ),
        (
            e::alias(
                case(e::binary(e::col("i"), Op::Gt, e::int(2)), e::int(1), None),
                "out",
            ),
            when(col("i").gt(lit(2))).then(lit(1)).otherwise(lit(NULL)),
        ),
        (
            e::alias(
                pb::Expression {
                    kind: Some(Kind::Cast(Box::new(pb::CastExpr {
                        expr: Some(Box::new(e::col("i"))),
                        data_type: "Float32".into(),
                        strict: true,
                    }))),
                },
                "out",
            ),
            col("i").strict_cast(DataType::Float32),
        ),
        (
            e::alias(
                pb::Expression {
                    kind: Some(Kind::Over(Box::new(pb::OverExpr {
                        expr: Some(Box::new(e::agg(Agg::Sum, e::col("i")))),
                        partition_by: vec![e::col("g")],
                        rolling: None,
                    }))),
                },
                "out",
            ),
            col("i").sum().over([col("g")])?,
        ),
        (
            e::alias(
                pb::Expression {
                    kind: Some(Kind::Over(Box::new(pb::OverExpr {
                        expr: Some(Box::new(e::col("i"))),
                        partition_by: vec![],
                        rolling: Some(pb::RollingSpec {
                            function: pb::RollingFunction::Max as i32,
                            window_size: Some(2),
                            min_periods: Some(1),
                            ..Default::default()
                        }),
                    }))),
                },
                "out",
            ),
            col("i").rolling_max(RollingOptionsFixedWindow {
                window_size: 2,
                min_periods: 1,
                ..Default::default()
            }),
        ),
    ];
    for (wire, local) in cases {
        let description = format!("{wire:?}");
        let handle = client
            .with_columns(pb::WithColumnsRequest {
                handle: h(&base),
                exprs: vec![wire],
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("{description}: {s}"))?
            .into_inner()
            .handle;
        let expected = df
            .clone()
            .lazy()
            .with_column(local.alias("out"))
            .collect()?;
        let actual = collect(&mut client, &handle).await?;
        assert!(
            actual.equals_missing(&expected),
            "{description}\nactual {actual}\nexpected {expected}"
        );
    }
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_and_lifecycle() -> anyhow::Result<()> {
    let worker = TestWorker::start_with(|c| c.max_response_message_bytes = 64 * 1024).await?;
    let mut client = worker.client().await?;
    let df = df!("k" => (0..50_000i64).map(|i| i % 7).collect::<Vec<_>>(), "v" => (0..50_000i64).collect::<Vec<_>>())?;
    write_parquet(&worker.path("numbers.parquet"), &df);
    let source = client
        .read_parquet(pb::ReadParquetRequest {
            path: "numbers.parquet".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;

    // Collect: split under the message size, with a limit.
    let batches = collect_batches(&mut client, &source, None).await?;
    assert!(batches.len() > 3, "{} batches", batches.len());
    assert_frame_eq(&stack(&batches), &df);
    assert_frame_eq(
        &stack(&collect_batches(&mut client, &source, Some(10)).await?),
        &df.head(Some(10)),
    );

    // CollectStreaming: batches of the requested size.
    let mut stream = client
        .collect_streaming(pb::CollectStreamingRequest {
            handle: h(&source),
            batch_size: Some(1000),
            limit: Some(4500),
        })
        .await?
        .into_inner();
    let mut sizes = Vec::new();
    let mut frames = Vec::new();
    while let Some(batch) = stream.message().await? {
        let frame = polaroid_tests::from_ipc(&batch.arrow_ipc);
        sizes.push(frame.height());
        frames.push(frame);
    }
    assert_eq!(sizes, [1000, 1000, 1000, 1000, 500]);
    assert_frame_eq(&stack(&frames), &df.head(Some(4500)));

    // Lazy lineage: projection and predicate pushdown into the scan across calls.
    let selected = client
        .select(pb::SelectRequest {
            handle: h(&source),
            columns: vec!["v".into()],
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    let filtered = client
        .filter(pb::FilterRequest {
            handle: h(&selected),
            predicate: Some(e::binary(e::col("v"), Op::Lt, e::int(100))),
        })
        .await?
        .into_inner()
        .handle;
    let explain = |optimized| pb::ExplainRequest {
        handle: h(&filtered),
        optimized,
        format_tree: false,
    };
    let optimized = client.explain(explain(true)).await?.into_inner();
    let unoptimized = client.explain(explain(false)).await?.into_inner();
    let scan = optimized
        .logical_plan
        .lines()
        .find(|l| l.contains("Parquet SCAN"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        optimized.logical_plan.contains("PROJECT 1/2 COLUMNS"),
        "projection pushdown:\n{}",
        optimized.logical_plan
    );
    assert!(
        optimized.logical_plan.contains("SELECTION"),
        "predicate pushdown into {scan}:\n{}",
        optimized.logical_plan
    );
    assert!(
        optimized
            .optimizations
            .iter()
            .any(|o| o == "predicate_pushdown"),
        "{:?}",
        optimized.optimizations
    );
    assert!(
        unoptimized.logical_plan.contains("FILTER"),
        "unoptimized plan:\n{}",
        unoptimized.logical_plan
    );
    assert!(unoptimized.optimizations.is_empty());
    let expected = df
        .clone()
        .lazy()
        .select([col("v")])
        .filter(col("v").lt(lit(100)))
        .collect()?;
    assert_frame_eq(&collect(&mut client, &filtered).await?, &expected);

    // Schema and shape.
    let schema = client
        .get_schema(pb::GetSchemaRequest {
            handle: h(&filtered),
        })
        .await?
        .into_inner();
    assert_eq!(
        schema
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.data_type.as_str()))
            .collect::<Vec<_>>(),
        [("v", "Int64")]
    );
    let parsed: serde_json::Value = serde_json::from_str(&schema.schema_json)?;
    assert_eq!(parsed["fields"][0]["name"], "v");
    let shape = client
        .get_shape(pb::GetShapeRequest {
            handle: h(&filtered),
        })
        .await?
        .into_inner();
    assert_eq!((shape.rows, shape.columns), (100, 1));
    let shape = client
        .get_shape(pb::GetShapeRequest { handle: h(&source) })
        .await?
        .into_inner();
    assert_eq!((shape.rows, shape.columns), (50_000, 2));

    // Describe and stats, against the same statistics computed here.
    let small_frame =
        df!("x" => [Some(1.0f64), Some(2.0), None, Some(4.0)], "s" => ["b", "a", "c", "a"])?;
    let small = upload(&mut client, &small_frame).await?;
    let described = client
        .describe(pb::DescribeRequest {
            handle: h(&small),
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    let described = collect(&mut client, &described).await?;
    let expected = df!(
        "statistic" => ["count", "null_count", "mean", "std", "min", "25%", "50%", "75%", "max"],
        "x" => [Some(3.0), Some(1.0), Some(7.0 / 3.0), Some((7.0f64 / 3.0).sqrt()), Some(1.0), Some(2.0), Some(2.0), Some(4.0), Some(4.0)],
        "s" => [Some("4"), Some("0"), None, None, Some("a"), None, None, None, Some("c")],
    )?;
    // Floating-point statistics: equal to Polars' up to rounding.
    assert_frame_eq(
        &described.select(["statistic", "s"])?,
        &expected.select(["statistic", "s"])?,
    );
    let (actual_x, expected_x) = (described.column("x")?.f64()?, expected.column("x")?.f64()?);
    for (a, b) in actual_x.iter().zip(expected_x.iter()) {
        assert!(
            (a.unwrap_or(f64::NAN) - b.unwrap_or(f64::NAN)).abs() < 1e-12,
            "{a:?} != {b:?}"
        );
    }
    let stats = client
        .get_stats(pb::GetStatsRequest {
            handle: h(&small),
            columns: vec![],
        })
        .await?
        .into_inner()
        .handle;
    let stats = collect(&mut client, &stats).await?;
    let x = small_frame.column("x")?.as_materialized_series();
    let expected = df!(
        "column" => ["x", "s"],
        "dtype" => ["Float64", "String"],
        "count" => [3u64, 4],
        "null_count" => [1u64, 0],
        "n_unique" => [4u64, 3],
        "min" => ["1.0", "a"],
        "max" => ["4.0", "c"],
        "mean" => [x.mean(), None],
        "std" => [x.std(1), None],
    )?;
    let exact = [
        "column",
        "dtype",
        "count",
        "null_count",
        "n_unique",
        "min",
        "max",
    ];
    assert_frame_eq(&stats.select(exact)?, &expected.select(exact)?);
    for name in ["mean", "std"] {
        let (actual, expected) = (stats.column(name)?.f64()?, expected.column(name)?.f64()?);
        for (a, b) in actual.iter().zip(expected.iter()) {
            match (a, b) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "{name}: {a} != {b}"),
                _ => assert_eq!(a, b, "{name}"),
            }
        }
    }

    // Writers: atomic, with append.
    for (name, format) in [("out.parquet", 0), ("out.csv", 1), ("out.arrow", 2)] {
        for append in [false, true] {
            let reply = match format {
                0 => {
                    client
                        .write_parquet(pb::WriteParquetRequest {
                            handle: h(&filtered),
                            path: name.into(),
                            compression: Some("snappy".into()),
                            row_group_size: Some(10),
                            append,
                        })
                        .await?
                }
                1 => {
                    client
                        .write_csv(pb::WriteCsvRequest {
                            handle: h(&filtered),
                            path: name.into(),
                            // Unset, the contract's plain bool means no header.
                            include_header: true,
                            append,
                            ..Default::default()
                        })
                        .await?
                }
                _ => {
                    client
                        .write_ipc(pb::WriteIpcRequest {
                            handle: h(&filtered),
                            path: name.into(),
                            compression: Some("zstd".into()),
                            append,
                        })
                        .await?
                }
            }
            .into_inner();
            assert!(reply.success && reply.error.is_none());
            assert_eq!(reply.rows_written, Some(100));
        }
        let path = worker.path(name);
        let written = match format {
            0 => ParquetReader::new(std::fs::File::open(&path)?).finish()?,
            1 => CsvReadOptions::default()
                .try_into_reader_with_file_path(Some(path.clone()))?
                .finish()?,
            _ => IpcReader::new(std::fs::File::open(&path)?).finish()?,
        };
        let mut twice = expected_rows(&df)?;
        twice.vstack_mut(&expected_rows(&df)?)?;
        assert_frame_eq(&written, &twice);
        let leftovers: Vec<_> = std::fs::read_dir(worker.data_root.path())?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left behind");
    }

    // Drop and heartbeat: dropping one handle never affects another of the same plan.
    let twin = Client::clone(
        &mut client,
        pb::CloneRequest {
            handle: h(&filtered),
        },
    )
    .await?
    .into_inner()
    .handle;
    let alive = client
        .heartbeat(pb::HeartbeatRequest {
            handles: vec![h(&filtered), h(&twin), "nonsense".into()],
        })
        .await?
        .into_inner()
        .alive;
    assert_eq!(alive.get(&filtered), Some(&true));
    assert_eq!(alive.get("nonsense"), Some(&false));
    assert!(
        client
            .drop_handle(pb::DropHandleRequest {
                handle: h(&filtered)
            })
            .await?
            .into_inner()
            .success
    );
    assert!(
        !client
            .drop_handle(pb::DropHandleRequest {
                handle: h(&filtered)
            })
            .await?
            .into_inner()
            .success
    );
    let alive = client
        .heartbeat(pb::HeartbeatRequest {
            handles: vec![h(&filtered), h(&twin)],
        })
        .await?
        .into_inner()
        .alive;
    assert_eq!((alive[&filtered], alive[&twin]), (false, true));
    assert_frame_eq(&collect(&mut client, &twin).await?, &expected_rows(&df)?);
    worker.stop().await
}

fn expected_rows(df: &DataFrame) -> anyhow::Result<DataFrame> {
    Ok(df
        .clone()
        .lazy()
        .select([col("v")])
        .filter(col("v").lt(lit(100)))
        .collect()?)
}

/// Every streaming source is served now: an empty `StreamGrpc` request is refused for
/// what it lacks (tests/tests/streams_grpc.rs tests the call itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_grpc_stream_request_is_invalid() -> anyhow::Result<()> {
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let status = client
        .stream_grpc(pb::GrpcStreamRequest::default())
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("endpoint (1)"),
        "{}",
        status.message()
    );
    worker.stop().await
}

/// A small cached result is encoded once and then sent as those bytes: a repeat collect
/// sends exactly the same messages, while a limit or a batch size of its own still gets
/// its own rows and messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_results_collect_alike_from_their_encoded_copy() -> anyhow::Result<()> {
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let df = sales();
    let handle = upload(&mut client, &df).await?;

    let raw = |client: &mut Client, limit: Option<i64>| {
        let mut client = Clone::clone(client);
        let handle = handle.clone();
        async move {
            let mut stream = client
                .collect(pb::CollectRequest { handle, limit })
                .await?
                .into_inner();
            let mut messages = Vec::new();
            while let Some(batch) = stream.message().await? {
                messages.push(batch.arrow_ipc);
            }
            anyhow::Ok(messages)
        }
    };
    let first = raw(&mut client, None).await?;
    let again = raw(&mut client, None).await?;
    assert_eq!(first.len(), 1);
    assert_eq!(first, again, "a repeat collect sends the same bytes");
    assert_frame_eq(&collect(&mut client, &handle).await?, &df);

    let limited = collect_batches(&mut client, &handle, Some(2)).await?;
    assert_frame_eq(&stack(&limited), &df.head(Some(2)));
    assert_frame_eq(&collect(&mut client, &handle).await?, &df);

    let mut streamed = Vec::new();
    for _ in 0..2 {
        let mut stream = client
            .collect_streaming(pb::CollectStreamingRequest {
                handle: handle.clone(),
                batch_size: Some(3),
                limit: None,
            })
            .await?
            .into_inner();
        let mut frames = Vec::new();
        while let Some(batch) = stream.message().await? {
            frames.push(polaroid_tests::from_ipc(&batch.arrow_ipc));
        }
        assert_eq!(
            frames.iter().map(DataFrame::height).collect::<Vec<_>>(),
            [3, 3, 2]
        );
        streamed.push(stack(&frames));
    }
    assert_frame_eq(&streamed[0], &df);
    assert_frame_eq(&streamed[1], &df);
    // The full result is unchanged by the other shapes cached beside it.
    assert_eq!(raw(&mut client, None).await?, first);
    assert_frame_eq(
        &stack(&collect_batches(&mut client, &handle, Some(0)).await?),
        &df.head(Some(0)),
    );
    worker.stop().await
}

/// Calls that follow each other closely keep the CPUs awake: after them the keep-warm
/// threads spin, and they stop once the warm period has passed (a spin is counted when it
/// ends). Other tests' workers keep nothing warm, so the spins counted are this worker's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_close_together_keep_the_cpus_warm_and_then_let_them_rest() -> anyhow::Result<()> {
    // The longest warm period allowed, far above the pause between these calls, so that
    // the test does not depend on the machine's speed.
    let worker = TestWorker::start_with(|c| c.keep_warm_micros = 10_000).await?;
    let mut client = worker.client().await?;
    let input = sales();
    let handle = upload(&mut client, &input).await?;
    let spins = |worker_http| async move {
        let text = polaroid_tests::http_get(worker_http, "/metrics").await?;
        anyhow::Ok(polaroid_tests::metric_sum(
            &text,
            "polaroid_runtime_keep_warm_spin_seconds_count",
            &[],
        ))
    };
    let before = spins(worker.http_address).await?;
    for _ in 0..5 {
        assert!(polaroid_tests::heartbeat(&mut client, &handle).await?);
    }
    assert_frame_eq(&collect(&mut client, &handle).await?, &input);
    polaroid_tests::eventually(
        "a keep-warm spin to end",
        std::time::Duration::from_secs(20),
        || async { Ok(spins(worker.http_address).await? > before) },
    )
    .await?;
    worker.stop().await
}
