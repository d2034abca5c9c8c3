//! The established client's language (issue 23): calls made with the client generated from
//! the established contract (`crates/proto/contract/seed.proto`, `polaroid_tests::seed`)
//! against a coordinator with a worker, each answer collected and compared with Polars
//! computing the same thing locally; for each call a bad input and the status it gets, and
//! where Polaroid's own request adds fields, a conflict between a contract field and an
//! extra (sent with Polaroid's stubs, which know the extras).
//!
//! One test per call, each on its own cluster ([`Contract::start`]). To add a call: a test
//! that builds its seed request, calls [`Contract::check`] (or compares the reply itself)
//! with the frame Polars gives, and [`refused`] for its bad inputs.

use polaroid_proto::v1 as pb;
use polaroid_tests::seed::{self, data_frame_service_client::DataFrameServiceClient};
use polaroid_tests::*;
use polars::prelude::*;
use tonic::Code;
use tonic::transport::Channel;

type SeedClient = DataFrameServiceClient<Channel>;
type Reply = Result<tonic::Response<seed::DataFrameHandle>, tonic::Status>;

/// A cluster (a coordinator and one worker) and two clients of its coordinator: the
/// established client's, and Polaroid's own for what only it can say.
struct Contract {
    cluster: TestCluster,
    seed: SeedClient,
    ours: Client,
}

impl Contract {
    async fn start() -> anyhow::Result<Self> {
        let cluster = TestCluster::start(1, &[], &[]).await?;
        let channel = cluster.channel().await?;
        let seed = DataFrameServiceClient::new(channel.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        Ok(Self {
            seed,
            ours: client_over(channel),
            cluster,
        })
    }

    /// Uploads a frame with the established `CreateFromArrow`; its handle.
    async fn upload(&mut self, df: &DataFrame) -> anyhow::Result<String> {
        let reply = self
            .seed
            .create_from_arrow(seed::CreateFromArrowRequest {
                arrow_ipc: to_ipc(df),
                name: None,
            })
            .await?
            .into_inner();
        anyhow::ensure!(reply.error.is_none(), "error set on success: {reply:?}");
        Ok(reply.handle)
    }

    /// A handle's rows with the established `Collect`: each `ArrowBatch` a complete Arrow
    /// IPC stream of its own, stacked.
    async fn collect(&mut self, handle: &str) -> anyhow::Result<DataFrame> {
        let mut stream = self
            .seed
            .collect(seed::CollectRequest {
                handle: handle.to_owned(),
                limit: None,
            })
            .await?
            .into_inner();
        let mut frames = Vec::new();
        while let Some(batch) = stream.message().await? {
            anyhow::ensure!(batch.error.is_none(), "error set on success");
            frames.push(from_ipc(&batch.arrow_ipc));
        }
        Ok(stack(&frames))
    }

    /// The frame a call's handle names is `expected`.
    async fn check(&mut self, what: &str, reply: Reply, expected: DataFrame) -> anyhow::Result<()> {
        let reply = reply
            .map_err(|status| anyhow::anyhow!("{what}: {status:?}"))?
            .into_inner();
        anyhow::ensure!(reply.error.is_none(), "{what}: error set on success");
        let actual = self.collect(&reply.handle).await?;
        anyhow::ensure!(
            actual.schema() == expected.schema() && actual.equals_missing(&expected),
            "{what}: frames differ\n--- actual {:?}\n{actual}\n--- expected {:?}\n{expected}",
            actual.schema(),
            expected.schema()
        );
        Ok(())
    }
}

/// A call that must fail with `code`, its message saying `fragment`.
#[track_caller]
fn refused<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, tonic::Status>,
    code: Code,
    fragment: &str,
) {
    match result {
        Ok(value) => panic!("{what}: expected {code:?}, got {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(
                status.message().contains(fragment),
                "{what}: {:?} does not say {fragment:?}",
                status.message()
            );
        }
    }
}

/// Rows with repeats, nulls and numbers of both kinds.
fn sales() -> DataFrame {
    df!(
        "id" => [1i64, 2, 3, 4, 5, 6, 7, 8],
        "region" => [Some("north"), Some("south"), Some("north"), None, Some("east"), Some("south"), Some("north"), Some("east")],
        "qty" => [Some(5i64), Some(3), None, Some(3), Some(8), Some(1), Some(5), None],
        "price" => [Some(2.5f64), None, Some(4.0), Some(1.5), None, Some(3.0), Some(2.0), Some(6.5)],
    )
    .expect("frame")
}

/// Expressions as the established client builds them.
mod x {
    use polaroid_tests::seed::{self, expression::Kind, literal_expr::Value};

    pub fn col(name: &str) -> seed::Expression {
        seed::Expression {
            kind: Some(Kind::Column(seed::ColumnExpr { name: name.into() })),
        }
    }

    pub fn int(value: i64) -> seed::Expression {
        seed::Expression {
            kind: Some(Kind::Literal(seed::LiteralExpr {
                value: Some(Value::IntVal(value)),
            })),
        }
    }

    pub fn binary(
        left: seed::Expression,
        op: seed::BinaryOperator,
        right: seed::Expression,
    ) -> seed::Expression {
        seed::Expression {
            kind: Some(Kind::Binary(Box::new(seed::BinaryExpr {
                left: Some(Box::new(left)),
                op: op as i32,
                right: Some(Box::new(right)),
            }))),
        }
    }

    pub fn text(value: &str) -> seed::Expression {
        seed::Expression {
            kind: Some(Kind::Literal(seed::LiteralExpr {
                value: Some(Value::StringVal(value.into())),
            })),
        }
    }

    pub fn unary(op: seed::UnaryOperator, expr: seed::Expression) -> seed::Expression {
        seed::Expression {
            kind: Some(Kind::Unary(Box::new(seed::UnaryExpr {
                op: op as i32,
                expr: Some(Box::new(expr)),
            }))),
        }
    }

    pub fn agg(function: seed::AggFunction, expr: seed::Expression) -> seed::Expression {
        seed::Expression {
            kind: Some(Kind::Aggregation(Box::new(seed::AggExpr {
                function: function as i32,
                expr: Some(Box::new(expr)),
            }))),
        }
    }

    /// The contract's window: `expr` rolled over `window_size` rows.
    pub fn window(
        expr: seed::Expression,
        window_size: i64,
        min_periods: Option<i64>,
    ) -> seed::Expression {
        seed::Expression {
            kind: Some(Kind::Window(Box::new(seed::WindowExpr {
                expr: Some(Box::new(expr)),
                window_size,
                min_periods,
            }))),
        }
    }

    pub fn case(
        when_then: Vec<(seed::Expression, seed::Expression)>,
        otherwise: seed::Expression,
    ) -> seed::Expression {
        seed::Expression {
            kind: Some(Kind::CaseExpr(Box::new(seed::CaseExpr {
                when_then: when_then
                    .into_iter()
                    .map(|(when, then)| seed::WhenThen {
                        when: Some(when),
                        then: Some(then),
                    })
                    .collect(),
                otherwise: Some(Box::new(otherwise)),
            }))),
        }
    }
}

fn sort_column(name: &str, descending: bool, nulls_last: bool) -> seed::SortColumn {
    seed::SortColumn {
        name: name.into(),
        descending,
        nulls_last,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    let request = |columns| seed::SortRequest {
        handle: handle.clone(),
        columns,
    };
    let reply = c
        .seed
        .sort(request(vec![
            sort_column("region", false, true),
            sort_column("qty", true, false),
        ]))
        .await;
    let expected = df
        .clone()
        .lazy()
        .sort(
            ["region", "qty"],
            SortMultipleOptions::default()
                .with_order_descending_multi([false, true])
                .with_nulls_last_multi([true, false])
                .with_maintain_order(true),
        )
        .collect()?;
    c.check("sort by two columns", reply, expected).await?;
    // The flags left unset: ascending, nulls first (Polars' defaults too).
    let reply = c
        .seed
        .sort(request(vec![sort_column("price", false, false)]))
        .await;
    let expected = df
        .clone()
        .lazy()
        .sort(
            ["price"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()?;
    c.check("sort with default flags", reply, expected).await?;

    let unknown = c
        .seed
        .sort(request(vec![sort_column("nope", false, false)]))
        .await;
    refused(
        "sort by an unknown column",
        unknown,
        Code::InvalidArgument,
        "nope",
    );
    let none = c.seed.sort(request(vec![])).await;
    refused(
        "sort without keys",
        none,
        Code::InvalidArgument,
        "at least one key",
    );
    // Polaroid's expression keys come after the contract's columns, each with its flags.
    let mixed = c
        .ours
        .sort(pb::SortRequest {
            handle: handle.clone(),
            columns: vec![pb::SortColumn {
                name: "region".into(),
                descending: true,
                nulls_last: false,
            }],
            exprs: vec![pb::SortExpr {
                expr: Some(e::binary(
                    e::col("id"),
                    pb::BinaryOperator::Modulo,
                    e::int(3),
                )),
                descending: false,
                nulls_last: false,
            }],
            maintain_order: false,
        })
        .await?
        .into_inner()
        .handle;
    let expected = df
        .clone()
        .lazy()
        .sort_by_exprs(
            [col("region"), col("id") % lit(3)],
            SortMultipleOptions::default()
                .with_order_descending_multi([true, false])
                .with_maintain_order(true),
        )
        .collect()?;
    assert_frame_eq(&c.collect(&mixed).await?, &expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    let distinct = |subset: &[&str], keep| {
        let subset = (!subset.is_empty()).then(|| by_name(subset.to_vec(), true, false));
        df.clone().lazy().unique_stable(subset, keep).collect()
    };
    for (keep_first, strategy) in [
        (true, UniqueKeepStrategy::First),
        (false, UniqueKeepStrategy::Last),
    ] {
        let reply = c
            .seed
            .unique(seed::UniqueRequest {
                handle: handle.clone(),
                subset: vec!["region".into()],
                keep_first,
            })
            .await;
        let what = format!("unique by region, keep_first {keep_first}");
        c.check(&what, reply, distinct(&["region"], strategy)?)
            .await?;
    }
    // No subset: whole rows (all distinct here), keep_first unset: the last of each.
    let reply = c
        .seed
        .unique(seed::UniqueRequest {
            handle: handle.clone(),
            subset: vec![],
            keep_first: false,
        })
        .await;
    c.check(
        "unique rows",
        reply,
        distinct(&[], UniqueKeepStrategy::Last)?,
    )
    .await?;

    let unknown = c
        .seed
        .unique(seed::UniqueRequest {
            handle: handle.clone(),
            subset: vec!["nope".into()],
            keep_first: true,
        })
        .await;
    refused(
        "unique by an unknown column",
        unknown,
        Code::InvalidArgument,
        "nope",
    );
    // keep_first (contract) true and keep (Polaroid) LAST contradict each other.
    let conflict = c
        .ours
        .unique(pb::UniqueRequest {
            handle: handle.clone(),
            subset: vec!["region".into()],
            keep_first: true,
            keep: pb::UniqueKeep::Last as i32,
            maintain_order: true,
        })
        .await;
    refused(
        "unique keep_first with keep LAST",
        conflict,
        Code::InvalidArgument,
        "`keep_first` (field 3) is true but `keep` (field 5) is UNIQUE_KEEP_LAST",
    );
    // keep NONE with keep_first unset: Polaroid's extra decides.
    let none = c
        .ours
        .unique(pb::UniqueRequest {
            handle: handle.clone(),
            subset: vec!["region".into()],
            keep: pb::UniqueKeep::None as i32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    assert_frame_eq(
        &c.collect(&none).await?,
        &distinct(&["region"], UniqueKeepStrategy::None)?,
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_columns() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    use seed::BinaryOperator as B;
    let reply = c
        .seed
        .with_columns(seed::WithColumnsRequest {
            handle: handle.clone(),
            columns: [
                (
                    "total".to_owned(),
                    x::binary(x::col("price"), B::Multiply, x::col("qty")),
                ),
                (
                    "id".to_owned(),
                    x::binary(x::col("id"), B::Plus, x::int(100)),
                ),
                (
                    "doubled".to_owned(),
                    x::binary(x::col("qty"), B::Multiply, x::int(2)),
                ),
            ]
            .into(),
        })
        .await;
    // A map has no order: new columns come in name order, replaced ones keep their place.
    let expected = df
        .clone()
        .lazy()
        .with_columns([
            (col("qty") * lit(2)).alias("doubled"),
            (col("id") + lit(100)).alias("id"),
            (col("price") * col("qty")).alias("total"),
        ])
        .collect()?;
    c.check("with_columns by name", reply, expected).await?;

    let unknown = c
        .seed
        .with_columns(seed::WithColumnsRequest {
            handle: handle.clone(),
            columns: [("z".to_owned(), x::col("nope"))].into(),
        })
        .await;
    refused(
        "with_columns of an unknown column",
        unknown,
        Code::InvalidArgument,
        "nope",
    );
    let conflict = c
        .ours
        .with_columns(pb::WithColumnsRequest {
            handle: handle.clone(),
            columns: [("z".to_owned(), e::col("id"))].into(),
            exprs: vec![e::alias(e::col("qty"), "z")],
        })
        .await;
    refused(
        "with_columns with a map and a list",
        conflict,
        Code::InvalidArgument,
        "set `columns` (field 2, name -> expression) or `exprs` (field 3",
    );
    Ok(())
}

/// Filter, WithColumn and WithColumns with the contract's expressions: its window (an
/// aggregation over the last rows), a case's `when_then`, the operators by their names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expressions() -> anyhow::Result<()> {
    use seed::{AggFunction as A, BinaryOperator as B, UnaryOperator as U};
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    let rows = |window_size, min_periods| RollingOptionsFixedWindow {
        window_size,
        min_periods,
        ..Default::default()
    };

    let reply = c
        .seed
        .with_column(seed::WithColumnRequest {
            handle: handle.clone(),
            name: "qty_sum3".into(),
            expr: Some(x::window(x::agg(A::Sum, x::col("qty")), 3, Some(2))),
        })
        .await;
    let expected = df
        .clone()
        .lazy()
        .with_column(col("qty").rolling_sum(rows(3, 2)).alias("qty_sum3"))
        .collect()?;
    c.check("with_column of a window", reply, expected).await?;

    let reply = c
        .seed
        .with_columns(seed::WithColumnsRequest {
            handle: handle.clone(),
            columns: [
                (
                    "band".to_owned(),
                    x::case(
                        vec![
                            (x::binary(x::col("qty"), B::Gt, x::int(4)), x::text("high")),
                            (x::unary(U::IsNull, x::col("qty")), x::text("none")),
                        ],
                        x::text("low"),
                    ),
                ),
                (
                    // min_periods unset: all the window's rows, as Polars.
                    "price_mean2".to_owned(),
                    x::window(x::agg(A::Mean, x::col("price")), 2, None),
                ),
            ]
            .into(),
        })
        .await;
    let expected = df
        .clone()
        .lazy()
        .with_columns([
            when(col("qty").gt(lit(4)))
                .then(lit("high"))
                .when(col("qty").is_null())
                .then(lit("none"))
                .otherwise(lit("low"))
                .alias("band"),
            col("price").rolling_mean(rows(2, 2)).alias("price_mean2"),
        ])
        .collect()?;
    c.check("with_columns of a case and a window", reply, expected)
        .await?;

    let predicate = x::binary(
        x::unary(U::Not, x::unary(U::IsNull, x::col("region"))),
        B::And,
        x::binary(
            x::window(x::agg(A::Max, x::col("qty")), 2, Some(1)),
            B::Gte,
            x::int(5),
        ),
    );
    let reply = c
        .seed
        .filter(seed::FilterRequest {
            handle: handle.clone(),
            predicate: Some(predicate),
        })
        .await;
    let expected = df
        .clone()
        .lazy()
        .filter(
            col("region")
                .is_null()
                .not()
                .and(col("qty").rolling_max(rows(2, 1)).gt_eq(lit(5))),
        )
        .collect()?;
    c.check("filter by a window", reply, expected).await?;

    // Bad windows and operators.
    let bad = |what: &'static str, expr: seed::Expression| {
        let mut seed = c.seed.clone();
        let handle = handle.clone();
        async move {
            let reply = seed
                .with_column(seed::WithColumnRequest {
                    handle,
                    name: "z".into(),
                    expr: Some(expr),
                })
                .await;
            (what, reply)
        }
    };
    let sum_qty = || x::agg(A::Sum, x::col("qty"));
    let (what, reply) = bad("a window of no rows", x::window(sum_qty(), 0, None)).await;
    refused(
        what,
        reply,
        Code::InvalidArgument,
        "`window_size` (WindowExpr field 2) is its rows, at least 1; got 0",
    );
    let (what, reply) = bad("a negative window", x::window(sum_qty(), -2, None)).await;
    refused(what, reply, Code::InvalidArgument, "got -2");
    let (what, reply) = bad(
        "min_periods over the window",
        x::window(sum_qty(), 2, Some(3)),
    )
    .await;
    refused(
        what,
        reply,
        Code::InvalidArgument,
        "`min_periods` (WindowExpr field 3) must be between 0 and its `window_size` (2); got 3",
    );
    let (what, reply) = bad("a window of a column", x::window(x::col("qty"), 2, None)).await;
    refused(
        what,
        reply,
        Code::InvalidArgument,
        "is the aggregation it rolls",
    );
    let (what, reply) = bad(
        "a window of a count",
        x::window(x::agg(A::Count, x::col("qty")), 2, None),
    )
    .await;
    refused(what, reply, Code::Unimplemented, "a window of COUNT");
    let mut unknown_op = x::binary(x::col("qty"), B::Gt, x::int(1));
    if let Some(seed::expression::Kind::Binary(binary)) = &mut unknown_op.kind {
        binary.op = 99;
    }
    let (what, reply) = bad("an unknown operator", unknown_op).await;
    refused(
        what,
        reply,
        Code::InvalidArgument,
        "unknown binary operator 99",
    );
    let mut unknown_function = x::window(sum_qty(), 2, None);
    if let Some(seed::expression::Kind::Window(window)) = &mut unknown_function.kind {
        if let Some(seed::expression::Kind::Aggregation(agg)) =
            window.expr.as_mut().and_then(|e| e.kind.as_mut())
        {
            agg.function = 42;
        }
    }
    let (what, reply) = bad("an unknown aggregate function", unknown_function).await;
    refused(
        what,
        reply,
        Code::InvalidArgument,
        "`function` 42, which is not an AggFunction",
    );

    // Both shapes of window in one message, sent with Polaroid's stubs (which can say both).
    let mixed = c
        .ours
        .with_column(pb::WithColumnRequest {
            handle: handle.clone(),
            name: "z".into(),
            expr: Some(pb::Expression {
                kind: Some(pb::expression::Kind::Window(Box::new(pb::WindowExpr {
                    expr: Some(Box::new(e::col("qty"))),
                    window_size: 3,
                    partition_by_v0: vec![e::col("region")],
                    ..Default::default()
                }))),
            }),
        })
        .await;
    refused(
        "a window of both shapes",
        mixed,
        Code::InvalidArgument,
        "`window_size` (field 2) or `min_periods` (field 3) as integers and also \
         `partition_by` (field 2) or `rolling` (field 3) as messages",
    );

    // Polaroid's `over` (field 10) keeps what the old window did.
    let reply = c
        .ours
        .with_column(pb::WithColumnRequest {
            handle: handle.clone(),
            name: "qty_by_region".into(),
            expr: Some(pb::Expression {
                kind: Some(pb::expression::Kind::Over(Box::new(pb::OverExpr {
                    expr: Some(Box::new(e::agg(pb::AggFunction::Sum, e::col("qty")))),
                    partition_by: vec![e::col("region")],
                    rolling: None,
                }))),
            }),
        })
        .await?
        .into_inner();
    let expected = df
        .clone()
        .lazy()
        .with_column(
            col("qty")
                .sum()
                .over([col("region")])?
                .alias("qty_by_region"),
        )
        .collect()?;
    assert_frame_eq(&c.collect(&reply.handle).await?, &expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slice() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    for (offset, length) in [(2, 3), (-3, 2), (6, 10), (1, 0)] {
        let reply = c
            .seed
            .slice(seed::SliceRequest {
                handle: handle.clone(),
                offset,
                length,
            })
            .await;
        // A length of 0 (what a client that leaves it unset sends) is no rows.
        let expected = df.slice(offset, usize::try_from(length)?);
        c.check(&format!("slice({offset}, {length})"), reply, expected)
            .await?;
    }
    let negative = c
        .seed
        .slice(seed::SliceRequest {
            handle: handle.clone(),
            offset: 0,
            length: -1,
        })
        .await;
    refused(
        "slice of length -1",
        negative,
        Code::InvalidArgument,
        "length",
    );
    // Polaroid's `to_end` with a length as well: which one was meant?
    let conflict = c
        .ours
        .slice(pb::SliceRequest {
            handle: handle.clone(),
            offset: 1,
            length: 2,
            to_end: true,
        })
        .await;
    refused(
        "slice to_end with a length",
        conflict,
        Code::InvalidArgument,
        "`to_end` (field 4) takes every row from the offset but `length` (field 3) is 2",
    );
    let to_end = c
        .ours
        .slice(pb::SliceRequest {
            handle: handle.clone(),
            offset: -5,
            length: 0,
            to_end: true,
        })
        .await?
        .into_inner()
        .handle;
    assert_frame_eq(&c.collect(&to_end).await?, &df.slice(-5, usize::MAX));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_csv() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    for (name, include_header, separator) in [
        ("with-header.csv", true, Some(";")),
        // include_header unset (false), as a client that does not set it sends it.
        ("no-header.csv", false, None),
    ] {
        let reply = c
            .seed
            .write_csv(seed::WriteCsvRequest {
                handle: handle.clone(),
                path: name.into(),
                include_header,
                separator: separator.map(str::to_owned),
            })
            .await?
            .into_inner();
        assert!(reply.success && reply.error.is_none(), "{name}: {reply:?}");
        assert_eq!(reply.rows_written, Some(8), "{name}");
        let mut expected = Vec::new();
        CsvWriter::new(&mut expected)
            .include_header(include_header)
            .with_separator(separator.map_or(b',', |s| s.as_bytes()[0]))
            .finish(&mut df.clone())?;
        let written = std::fs::read(c.cluster.path(name))?;
        assert_eq!(
            String::from_utf8(written)?,
            String::from_utf8(expected)?,
            "{name}"
        );
    }
    let bad = c
        .seed
        .write_csv(seed::WriteCsvRequest {
            handle: handle.clone(),
            path: "bad.csv".into(),
            include_header: true,
            separator: Some(";;".into()),
        })
        .await;
    refused(
        "write_csv with a two-byte separator",
        bad,
        Code::InvalidArgument,
        "separator",
    );
    assert!(!c.cluster.path("bad.csv").exists(), "nothing written");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interpolate() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    let request = |method: &str, columns: &[&str]| seed::InterpolateRequest {
        handle: handle.clone(),
        method: method.into(),
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
    };
    let interpolated = |columns: &[&str], method| {
        df.clone()
            .lazy()
            .with_columns(
                columns
                    .iter()
                    .map(|c| col(*c).interpolate(method))
                    .collect::<Vec<_>>(),
            )
            .collect()
    };
    let reply = c.seed.interpolate(request("linear", &["price"])).await;
    c.check(
        "interpolate linear",
        reply,
        interpolated(&["price"], InterpolationMethod::Linear)?,
    )
    .await?;
    // No columns: every numeric one.
    let reply = c.seed.interpolate(request("nearest", &[])).await;
    c.check(
        "interpolate nearest",
        reply,
        interpolated(&["id", "qty", "price"], InterpolationMethod::Nearest)?,
    )
    .await?;
    // An empty method (a client that leaves it unset) is linear.
    let reply = c.seed.interpolate(request("", &["qty"])).await;
    c.check(
        "interpolate by default",
        reply,
        interpolated(&["qty"], InterpolationMethod::Linear)?,
    )
    .await?;

    let cubic = c.seed.interpolate(request("cubic", &["price"])).await;
    refused("interpolate cubic", cubic, Code::Unimplemented, "cubic");
    let unknown = c.seed.interpolate(request("sideways", &["price"])).await;
    refused(
        "interpolate sideways",
        unknown,
        Code::InvalidArgument,
        "sideways",
    );
    let conflict = c
        .ours
        .interpolate(pb::InterpolateRequest {
            handle: handle.clone(),
            method: "linear".into(),
            columns: vec!["price".into()],
            interpolation: pb::InterpolationMethod::Nearest as i32,
        })
        .await;
    refused(
        "interpolate linear and NEAREST",
        conflict,
        Code::InvalidArgument,
        "`method` (field 2) is `linear` but `interpolation` (field 4) is INTERPOLATION_METHOD_NEAREST",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let left = sales().head(Some(3));
    let right = df!("id" => [10i64, 20], "tag" => ["a", "b"])?;
    let (l, r) = (c.upload(&left).await?, c.upload(&right).await?);
    let reply = c
        .seed
        .cross(seed::CrossRequest {
            left_handle: l.clone(),
            right_handle: r.clone(),
        })
        .await;
    // Left-major, the clashing right column suffixed "_right", as Polars does.
    let expected = left
        .clone()
        .lazy()
        .cross_join(right.clone().lazy(), None)
        .collect()?;
    c.check("cross", reply, expected).await?;
    let malformed = c
        .seed
        .cross(seed::CrossRequest {
            left_handle: l.clone(),
            right_handle: "nonsense".into(),
        })
        .await;
    refused(
        "cross with a malformed right handle",
        malformed,
        Code::InvalidArgument,
        "nonsense",
    );
    c.ours
        .drop_handle(pb::DropHandleRequest { handle: r.clone() })
        .await?;
    let dropped = c
        .seed
        .cross(seed::CrossRequest {
            left_handle: l,
            right_handle: r,
        })
        .await;
    refused(
        "cross with a dropped right handle",
        dropped,
        Code::NotFound,
        "not found",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    use polars::series::ops::NullBehavior::Ignore;
    // 0 (what a client that leaves `periods` unset sends) is 0 periods: zeros.
    for periods in [1, 2, -1, 0] {
        let reply = c
            .seed
            .diff(seed::DiffRequest {
                handle: handle.clone(),
                columns: vec!["qty".into(), "price".into()],
                periods,
            })
            .await;
        let expected = df
            .clone()
            .lazy()
            .with_columns([
                col("qty").diff(lit(periods), Ignore),
                col("price").diff(lit(periods), Ignore),
            ])
            .collect()?;
        c.check(&format!("diff by {periods}"), reply, expected)
            .await?;
    }
    let unknown = c
        .seed
        .diff(seed::DiffRequest {
            handle: handle.clone(),
            columns: vec!["nope".into()],
            periods: 1,
        })
        .await;
    refused(
        "diff of an unknown column",
        unknown,
        Code::InvalidArgument,
        "nope",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pct_change() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    for periods in [1, 3, 0] {
        let reply = c
            .seed
            .pct_change(seed::PctChangeRequest {
                handle: handle.clone(),
                columns: vec!["price".into()],
                periods,
            })
            .await;
        let expected = df
            .clone()
            .lazy()
            .with_column(col("price").pct_change(lit(periods)))
            .collect()?;
        c.check(&format!("pct_change by {periods}"), reply, expected)
            .await?;
    }
    // No columns: every numeric one.
    let reply = c
        .seed
        .pct_change(seed::PctChangeRequest {
            handle: handle.clone(),
            columns: vec![],
            periods: 1,
        })
        .await;
    let expected = df
        .clone()
        .lazy()
        .with_columns(["id", "qty", "price"].map(|c| col(c).pct_change(lit(1))))
        .collect()?;
    c.check("pct_change of every numeric column", reply, expected)
        .await?;
    let unknown = c
        .seed
        .pct_change(seed::PctChangeRequest {
            handle: handle.clone(),
            columns: vec!["nope".into()],
            periods: 1,
        })
        .await;
    refused(
        "pct_change of an unknown column",
        unknown,
        Code::InvalidArgument,
        "nope",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn melt() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales().select(["id", "region", "price"])?;
    let handle = c.upload(&df).await?;
    let unpivot = |on: &[&str], index: &[&str], variable: Option<&str>, value: Option<&str>| {
        df.clone()
            .lazy()
            .unpivot(UnpivotArgsDSL {
                on: (!on.is_empty()).then(|| by_name(on.to_vec(), true, false)),
                index: by_name(index.to_vec(), true, false),
                variable_name: variable.map(PlSmallStr::from_str),
                value_name: value.map(PlSmallStr::from_str),
            })
            .collect()
    };
    let reply = c
        .seed
        .melt(seed::MeltRequest {
            handle: handle.clone(),
            id_vars: vec!["id".into()],
            value_vars: vec!["region".into()],
            variable_name: Some("k".into()),
            value_name: None,
        })
        .await;
    c.check(
        "melt one column",
        reply,
        unpivot(&["region"], &["id"], Some("k"), None)?,
    )
    .await?;
    // No value_vars: every column not in id_vars.
    let reply = c
        .seed
        .melt(seed::MeltRequest {
            handle: handle.clone(),
            id_vars: vec!["id".into(), "region".into()],
            value_vars: vec![],
            variable_name: None,
            value_name: Some("v".into()),
        })
        .await;
    c.check(
        "melt the rest",
        reply,
        unpivot(&[], &["id", "region"], None, Some("v"))?,
    )
    .await?;
    let unknown = c
        .seed
        .melt(seed::MeltRequest {
            handle: handle.clone(),
            id_vars: vec!["nope".into()],
            ..Default::default()
        })
        .await;
    refused(
        "melt by an unknown column",
        unknown,
        Code::InvalidArgument,
        "nope",
    );
    Ok(())
}

fn lag_column(column: &str, periods: i64, alias: Option<&str>) -> seed::LagColumn {
    seed::LagColumn {
        column: column.into(),
        periods,
        alias: alias.map(Into::into),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_and_lead() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    // Each column by its own periods, into its alias or in place; 0 (a client that leaves
    // `periods` unset) leaves the column as it is, negative shifts the other way.
    let columns = vec![
        lag_column("qty", 1, Some("qty_prev")),
        lag_column("price", 2, None),
        lag_column("id", 0, Some("id_same")),
        lag_column("region", -1, Some("region_next")),
    ];
    let reply = c
        .seed
        .lag(seed::LagRequest {
            handle: handle.clone(),
            columns: columns.clone(),
        })
        .await;
    let expected = df
        .clone()
        .lazy()
        .with_columns([
            col("qty").shift(lit(1)).alias("qty_prev"),
            col("price").shift(lit(2)),
            col("id").shift(lit(0)).alias("id_same"),
            col("region").shift(lit(-1)).alias("region_next"),
        ])
        .collect()?;
    c.check("lag", reply, expected).await?;
    let reply = c
        .seed
        .lead(seed::LeadRequest {
            handle: handle.clone(),
            columns,
        })
        .await;
    let expected = df
        .clone()
        .lazy()
        .with_columns([
            col("qty").shift(lit(-1)).alias("qty_prev"),
            col("price").shift(lit(-2)),
            col("id").shift(lit(0)).alias("id_same"),
            col("region").shift(lit(1)).alias("region_next"),
        ])
        .collect()?;
    c.check("lead", reply, expected).await?;

    let unknown = c
        .seed
        .lag(seed::LagRequest {
            handle: handle.clone(),
            columns: vec![lag_column("nope", 1, None)],
        })
        .await;
    refused(
        "lag of an unknown column",
        unknown,
        Code::InvalidArgument,
        "nope",
    );
    let none = c
        .seed
        .lead(seed::LeadRequest {
            handle: handle.clone(),
            columns: vec![],
        })
        .await;
    refused(
        "lead of no columns",
        none,
        Code::InvalidArgument,
        "lead needs at least one column in `columns`",
    );
    // Polaroid's every-column shift beside named columns.
    let conflict = c
        .ours
        .lag(pb::LagRequest {
            handle: handle.clone(),
            columns: vec![pb::LagColumn {
                column: "qty".into(),
                periods: 1,
                alias: None,
            }],
            every_column_periods: Some(1),
            suffix: None,
        })
        .await;
    refused(
        "lag of named columns and every column",
        conflict,
        Code::InvalidArgument,
        "`columns` (field 2) names columns but `every_column_periods` (field 5) shifts every \
         column",
    );
    // And it alone: every column, suffixed.
    let every = c
        .ours
        .lead(pb::LeadRequest {
            handle: handle.clone(),
            columns: vec![],
            every_column_periods: Some(1),
            suffix: Some("_next".into()),
        })
        .await
        .map(|r| {
            tonic::Response::new(seed::DataFrameHandle {
                handle: r.into_inner().handle,
                error: None,
            })
        });
    let expected = df
        .clone()
        .lazy()
        .with_columns(
            ["id", "region", "qty", "price"]
                .map(|name| col(name).shift(lit(-1)).alias(format!("{name}_next"))),
        )
        .collect()?;
    c.check("lead of every column", every, expected).await?;
    Ok(())
}

fn fill_value(value: seed::fill_value::Value) -> Option<seed::FillValue> {
    Some(seed::FillValue { value: Some(value) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_null() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    let request = |value, method: seed::FillMethod, columns: &[&str]| seed::FillNullRequest {
        handle: handle.clone(),
        value,
        method: method as i32,
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
    };
    // The contract's numbers: MEAN 3, MIN 4, MAX 5 (Polaroid's old enum had MIN 3, MAX 4,
    // MEAN 5).
    for (method, strategy) in [
        (
            seed::FillMethod::FillForward,
            FillNullStrategy::Forward(None),
        ),
        (
            seed::FillMethod::FillBackward,
            FillNullStrategy::Backward(None),
        ),
        (seed::FillMethod::FillMean, FillNullStrategy::Mean),
        (seed::FillMethod::FillMin, FillNullStrategy::Min),
        (seed::FillMethod::FillMax, FillNullStrategy::Max),
        (seed::FillMethod::FillZero, FillNullStrategy::Zero),
    ] {
        let reply = c
            .seed
            .fill_null(request(None, method, &["qty", "price"]))
            .await;
        let expected = df
            .clone()
            .lazy()
            .with_columns([
                col("qty").fill_null_with_strategy(strategy),
                col("price").fill_null_with_strategy(strategy),
            ])
            .collect()?;
        c.check(&format!("fill_null {method:?}"), reply, expected)
            .await?;
    }
    use seed::fill_value::Value;
    // A value without columns fills the columns of its kind.
    let reply = c
        .seed
        .fill_null(request(
            fill_value(Value::IntVal(0)),
            seed::FillMethod::Unspecified,
            &[],
        ))
        .await;
    let expected = df
        .clone()
        .lazy()
        .with_columns([
            col("id").fill_null(lit(0i64)),
            col("qty").fill_null(lit(0i64)),
            col("price").fill_null(lit(0i64)),
        ])
        .collect()?;
    c.check("fill_null with 0", reply, expected).await?;
    let reply = c
        .seed
        .fill_null(request(
            fill_value(Value::StringVal("?".into())),
            seed::FillMethod::Unspecified,
            &[],
        ))
        .await;
    let expected = df
        .clone()
        .lazy()
        .with_column(col("region").fill_null(lit("?")))
        .collect()?;
    c.check("fill_null with a string", reply, expected).await?;
    let reply = c
        .seed
        .fill_null(request(
            fill_value(Value::FloatVal(-1.5)),
            seed::FillMethod::Unspecified,
            &["price"],
        ))
        .await;
    let expected = df
        .clone()
        .lazy()
        .with_column(col("price").fill_null(lit(-1.5)))
        .collect()?;
    c.check("fill_null of price with -1.5", reply, expected)
        .await?;

    let nothing = c
        .seed
        .fill_null(request(None, seed::FillMethod::Unspecified, &[]))
        .await;
    refused(
        "fill_null with neither value nor method",
        nothing,
        Code::InvalidArgument,
        "fill_null needs a `value` (field 2), a `method` (field 3)",
    );
    let both = c
        .seed
        .fill_null(request(
            fill_value(Value::IntVal(1)),
            seed::FillMethod::FillMean,
            &[],
        ))
        .await;
    refused(
        "fill_null with a value and a method",
        both,
        Code::InvalidArgument,
        "`value` (field 2) and `method` (field 3) are both set",
    );
    let conflict = c
        .ours
        .fill_null(pb::FillNullRequest {
            handle: handle.clone(),
            method: pb::FillMethod::FillForward as i32,
            fill_expr: Some(e::float(1.0)),
            ..Default::default()
        })
        .await;
    refused(
        "fill_null with a method and fill_expr",
        conflict,
        Code::InvalidArgument,
        "`method` (field 3) and `fill_expr` (field 6) are both set",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_nan() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = df!(
        "id" => [1i64, 2, 3, 4, 5, 6],
        "x" => [Some(1.0f64), Some(f64::NAN), None, Some(f64::NAN), Some(4.0), Some(5.0)],
        "y" => [7.0f64, 2.0, f64::NAN, 6.0, f64::NAN, 1.0],
    )?;
    let handle = c.upload(&df).await?;
    let request = |value: f64, method: seed::FillMethod, columns: &[&str]| seed::FillNanRequest {
        handle: handle.clone(),
        value,
        method: method as i32,
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
    };
    // NaNs compare unequal: each expected frame has none left.
    let reply = c
        .seed
        .fill_nan(request(-1.0, seed::FillMethod::Unspecified, &[]))
        .await;
    let expected = df
        .clone()
        .lazy()
        .with_columns([col("x").fill_nan(lit(-1.0)), col("y").fill_nan(lit(-1.0))])
        .collect()?;
    c.check("fill_nan with -1", reply, expected).await?;
    // Unset, the value is 0.0.
    let reply = c
        .seed
        .fill_nan(request(0.0, seed::FillMethod::Unspecified, &["x", "y"]))
        .await;
    let expected = df
        .clone()
        .lazy()
        .with_columns([col("x").fill_nan(lit(0.0)), col("y").fill_nan(lit(0.0))])
        .collect()?;
    c.check("fill_nan unset", reply, expected).await?;
    // Methods: the nearest value, or the statistic, over values that are neither NaN nor
    // null; a null stays null.
    let valid = |name: &str| col(name).fill_nan(lit(NULL));
    let nearest = |name: &str, strategy| {
        when(col(name).is_nan())
            .then(valid(name).fill_null_with_strategy(strategy))
            .otherwise(col(name))
            .alias(name)
    };
    // x's NaN after a null takes the value before the null.
    for (method, x, y) in [
        (
            seed::FillMethod::FillForward,
            nearest("x", FillNullStrategy::Forward(None)),
            nearest("y", FillNullStrategy::Forward(None)),
        ),
        (
            seed::FillMethod::FillBackward,
            nearest("x", FillNullStrategy::Backward(None)),
            nearest("y", FillNullStrategy::Backward(None)),
        ),
        (
            seed::FillMethod::FillMean,
            col("x").fill_nan(valid("x").mean()),
            col("y").fill_nan(valid("y").mean()),
        ),
        (
            seed::FillMethod::FillMin,
            col("x").fill_nan(valid("x").min()),
            col("y").fill_nan(valid("y").min()),
        ),
        (
            seed::FillMethod::FillMax,
            col("x").fill_nan(valid("x").max()),
            col("y").fill_nan(valid("y").max()),
        ),
        (
            seed::FillMethod::FillZero,
            col("x").fill_nan(lit(0.0)),
            col("y").fill_nan(lit(0.0)),
        ),
    ] {
        let reply = c.seed.fill_nan(request(0.0, method, &[])).await;
        let expected = df.clone().lazy().with_columns([x, y]).collect()?;
        c.check(&format!("fill_nan {method:?}"), reply, expected)
            .await?;
    }
    let unknown = c
        .seed
        .fill_nan(request(1.0, seed::FillMethod::Unspecified, &["nope"]))
        .await;
    refused(
        "fill_nan of an unknown column",
        unknown,
        Code::InvalidArgument,
        "nope",
    );
    let both = c
        .seed
        .fill_nan(request(2.5, seed::FillMethod::FillMean, &[]))
        .await;
    refused(
        "fill_nan with a value and a method",
        both,
        Code::InvalidArgument,
        "`value` (field 2) is 2.5 but `method` (field 3) is FILL_MEAN",
    );
    let conflict = c
        .ours
        .fill_nan(pb::FillNanRequest {
            handle: handle.clone(),
            value: 2.5,
            fill_expr: Some(e::float(1.0)),
            ..Default::default()
        })
        .await;
    refused(
        "fill_nan with a value and fill_expr",
        conflict,
        Code::InvalidArgument,
        "`value` (field 2) is 2.5 but `fill_expr` (field 5) is set",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    let reply = c
        .seed
        .describe(seed::DescribeRequest {
            handle: handle.clone(),
            columns: vec!["price".into(), "qty".into()],
        })
        .await;
    // Polars' describe of the named columns, in the order named.
    let stat = |label: &str, f: &dyn Fn(Expr) -> Expr| {
        df.clone().lazy().select([
            lit(label).alias("statistic"),
            f(col("price")).cast(DataType::Float64).alias("price"),
            f(col("qty")).cast(DataType::Float64).alias("qty"),
        ])
    };
    let quantile = |p: f64| move |e: Expr| e.quantile(lit(p), QuantileMethod::Nearest);
    let expected = concat(
        [
            stat("count", &|e| e.count()),
            stat("null_count", &|e| e.null_count()),
            stat("mean", &|e| e.mean()),
            stat("std", &|e| e.std(1)),
            stat("min", &|e| e.min()),
            stat("25%", &quantile(0.25)),
            stat("50%", &quantile(0.5)),
            stat("75%", &quantile(0.75)),
            stat("max", &|e| e.max()),
        ],
        UnionArgs::default(),
    )?
    .collect()?;
    c.check("describe of price and qty", reply, expected)
        .await?;
    // No columns: every column.
    let every = c
        .seed
        .describe(seed::DescribeRequest {
            handle: handle.clone(),
            columns: vec![],
        })
        .await?
        .into_inner();
    let described = c.collect(&every.handle).await?;
    let names: Vec<&str> = described
        .get_column_names()
        .iter()
        .map(|n| n.as_str())
        .collect();
    assert_eq!(names, ["statistic", "id", "region", "qty", "price"]);

    let unknown = c
        .seed
        .describe(seed::DescribeRequest {
            handle: handle.clone(),
            columns: vec!["nope".into()],
        })
        .await;
    refused(
        "describe of an unknown column",
        unknown,
        Code::InvalidArgument,
        "nope",
    );
    // Polaroid's percentiles beside the contract's columns: no conflict, both apply.
    let ours = c
        .ours
        .describe(pb::DescribeRequest {
            handle: handle.clone(),
            columns: vec!["qty".into()],
            percentiles: vec![0.5],
        })
        .await?
        .into_inner();
    let described = c.collect(&ours.handle).await?;
    assert_eq!(described.shape(), (7, 2));
    let bad = c
        .ours
        .describe(pb::DescribeRequest {
            handle,
            columns: vec![],
            percentiles: vec![1.5],
        })
        .await;
    refused(
        "describe with a percentile over 1",
        bad,
        Code::InvalidArgument,
        "percentiles must be in [0, 1]",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let left = sales();
    let right = df!(
        "region" => ["north", "south", "west"],
        "manager" => ["ann", "bob", "wes"],
        "qty" => [100i64, 200, 300],
    )?;
    let (l, r) = (c.upload(&left).await?, c.upload(&right).await?);
    let on = |columns: &[&str]| {
        Some(seed::JoinOn {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        })
    };
    let request =
        |on, left_right, join_type: seed::JoinType, suffix: Option<&str>| seed::JoinRequest {
            left_handle: l.clone(),
            right_handle: r.clone(),
            on,
            left_right,
            join_type: join_type as i32,
            suffix: suffix.map(Into::into),
        };
    let polars = |how: JoinType, suffix: &str| {
        left.clone()
            .lazy()
            .join_builder()
            .with(right.clone().lazy())
            .how(how)
            .on([col("region")])
            .suffix(suffix)
            .maintain_order(MaintainOrderJoin::LeftRight)
            .finish()
            .collect()
    };
    // UNSPECIFIED (a client that leaves `join_type` unset) is an inner join.
    for (join_type, how) in [
        (seed::JoinType::Unspecified, JoinType::Inner),
        (seed::JoinType::Inner, JoinType::Inner),
        (seed::JoinType::Left, JoinType::Left),
        (seed::JoinType::Right, JoinType::Right),
        (seed::JoinType::Full, JoinType::Full),
    ] {
        let reply = c
            .seed
            .join(request(on(&["region"]), None, join_type, Some("_r")))
            .await;
        c.check(&format!("join {join_type:?}"), reply, polars(how, "_r")?)
            .await?;
    }
    // Keys by side; the default suffix.
    let reply = c
        .seed
        .join(request(
            None,
            Some(seed::JoinLeftRight {
                left: vec!["region".into(), "qty".into()],
                right: vec!["region".into(), "qty".into()],
            }),
            seed::JoinType::Left,
            None,
        ))
        .await;
    let expected = left
        .clone()
        .lazy()
        .join_builder()
        .with(right.clone().lazy())
        .how(JoinType::Left)
        .left_on([col("region"), col("qty")])
        .right_on([col("region"), col("qty")])
        .maintain_order(MaintainOrderJoin::LeftRight)
        .finish()
        .collect()?;
    c.check("join by sides", reply, expected).await?;
    // CROSS: every pair, left-major.
    let reply = c
        .seed
        .join(request(None, None, seed::JoinType::Cross, None))
        .await;
    let expected = left
        .clone()
        .lazy()
        .cross_join(right.clone().lazy(), None)
        .collect()?;
    c.check("join CROSS", reply, expected).await?;

    let none = c
        .seed
        .join(request(None, None, seed::JoinType::Inner, None))
        .await;
    refused(
        "join without keys",
        none,
        Code::InvalidArgument,
        "join needs key columns in `on` (field 3) or `left_right` (field 4)",
    );
    let both = c
        .seed
        .join(request(
            on(&["region"]),
            Some(seed::JoinLeftRight {
                left: vec!["region".into()],
                right: vec!["region".into()],
            }),
            seed::JoinType::Inner,
            None,
        ))
        .await;
    refused(
        "join with on and left_right",
        both,
        Code::InvalidArgument,
        "`on` (field 3) and `left_right` (field 4) are both set",
    );
    let unknown = c
        .seed
        .join(request(on(&["nope"]), None, seed::JoinType::Inner, None))
        .await;
    refused(
        "join on an unknown column",
        unknown,
        Code::InvalidArgument,
        "nope",
    );
    // Polaroid's `how`: semi and anti, and a conflict with the contract's `join_type`.
    let semi = c
        .ours
        .join(pb::JoinRequest {
            left_handle: l.clone(),
            right_handle: r.clone(),
            on: Some(pb::JoinOn {
                columns: vec!["region".into()],
            }),
            how: pb::JoinHow::Semi as i32,
            ..Default::default()
        })
        .await
        .map(|r| {
            tonic::Response::new(seed::DataFrameHandle {
                handle: r.into_inner().handle,
                error: None,
            })
        });
    c.check("join semi", semi, polars(JoinType::Semi, "_right")?)
        .await?;
    let conflict = c
        .ours
        .join(pb::JoinRequest {
            left_handle: l.clone(),
            right_handle: r.clone(),
            on: Some(pb::JoinOn {
                columns: vec!["region".into()],
            }),
            join_type: pb::JoinType::Left as i32,
            how: pb::JoinHow::Anti as i32,
            ..Default::default()
        })
        .await;
    refused(
        "join LEFT and anti",
        conflict,
        Code::InvalidArgument,
        "`join_type` (field 5) is LEFT but `how` (field 9) is JOIN_HOW_ANTI",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asof_join() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let trades = df!(
        "t" => [1i64, 5, 10, 15, 20],
        "sym" => ["a", "b", "a", "b", "a"],
        "qty" => [1i64, 2, 3, 4, 5],
    )?;
    let quotes = df!(
        "time" => [0i64, 4, 9, 14, 16],
        "sym" => ["a", "b", "b", "a", "b"],
        "bid" => [10.0f64, 20.0, 30.0, 40.0, 50.0],
    )?;
    let (l, r) = (c.upload(&trades).await?, c.upload(&quotes).await?);
    let request = |right_on: &str, by: &[&str], tolerance: Option<&str>, strategy: Option<&str>| {
        seed::AsofJoinRequest {
            left_handle: l.clone(),
            right_handle: r.clone(),
            left_on: "t".into(),
            right_on: right_on.into(),
            by: by.iter().map(|c| (*c).to_owned()).collect(),
            tolerance: tolerance.map(Into::into),
            strategy: strategy.map(Into::into),
        }
    };
    let polars = |strategy, by: bool, tolerance: Option<f64>| {
        trades
            .clone()
            .lazy()
            .join_builder()
            .with(quotes.clone().lazy())
            .how(JoinType::AsOf(Box::new(AsOfOptions {
                strategy,
                tolerance: tolerance.map(Scalar::from),
                left_by: by.then(|| vec!["sym".into()]),
                right_by: by.then(|| vec!["sym".into()]),
                allow_eq: true,
                check_sortedness: true,
                ..Default::default()
            })))
            .left_on([col("t")])
            .right_on([col("time")])
            .suffix("_right")
            .finish()
            .collect()
    };
    // Unset strategy: backward.
    for (strategy, polars_strategy) in [
        (None, AsofStrategy::Backward),
        (Some("backward"), AsofStrategy::Backward),
        (Some("forward"), AsofStrategy::Forward),
        (Some("Nearest"), AsofStrategy::Nearest),
    ] {
        let reply = c
            .seed
            .asof_join(request("time", &["sym"], None, strategy))
            .await;
        c.check(
            &format!("asof_join {strategy:?}"),
            reply,
            polars(polars_strategy, true, None)?,
        )
        .await?;
    }
    let reply = c
        .seed
        .asof_join(request("time", &[], Some("2"), None))
        .await;
    c.check(
        "asof_join with a tolerance",
        reply,
        polars(AsofStrategy::Backward, false, Some(2.0))?,
    )
    .await?;

    let sideways = c
        .seed
        .asof_join(request("time", &[], None, Some("sideways")))
        .await;
    refused(
        "asof_join sideways",
        sideways,
        Code::InvalidArgument,
        "unknown strategy `sideways`",
    );
    let no_key = c
        .seed
        .asof_join(seed::AsofJoinRequest {
            left_handle: l.clone(),
            right_handle: r.clone(),
            ..Default::default()
        })
        .await;
    refused(
        "asof_join without a key",
        no_key,
        Code::InvalidArgument,
        "asof join needs `left_on` (field 3)",
    );
    let conflict = c
        .ours
        .asof_join(pb::AsofJoinRequest {
            left_handle: l.clone(),
            right_handle: r.clone(),
            left_on: "t".into(),
            right_on: "time".into(),
            on: Some("t".into()),
            ..Default::default()
        })
        .await;
    refused(
        "asof_join with left_on and on",
        conflict,
        Code::InvalidArgument,
        "`on` (field 12) is set and so is `left_on` (field 3) or `right_on` (field 4)",
    );
    let by_conflict = c
        .ours
        .asof_join(pb::AsofJoinRequest {
            left_handle: l,
            right_handle: r,
            left_on: "t".into(),
            right_on: "time".into(),
            by: vec!["sym".into()],
            by_left: vec!["sym".into()],
            by_right: vec!["sym".into()],
            ..Default::default()
        })
        .await;
    refused(
        "asof_join with by and by_left",
        by_conflict,
        Code::InvalidArgument,
        "`by` (field 5) is set and so is `by_left` (field 13) or `by_right` (field 14)",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pivot() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = df!(
        "region" => ["north", "north", "south", "south", "north"],
        "product" => ["a", "b", "a", "b", "a"],
        "qty" => [1i64, 2, 3, 4, 5],
    )?;
    let handle = c.upload(&df).await?;
    let request = |aggregate: Option<seed::AggFunction>| seed::PivotRequest {
        handle: handle.clone(),
        index: "region".into(),
        columns: "product".into(),
        values: "qty".into(),
        aggregate: aggregate.map(|a| a as i32),
    };
    // Polars' pivot with the product columns in order of first appearance.
    let polars = |function: Expr| -> PolarsResult<DataFrame> {
        let on = df
            .clone()
            .lazy()
            .select([col("product")])
            .unique_stable(None, UniqueKeepStrategy::First)
            .collect()?;
        df.clone()
            .lazy()
            .pivot(
                by_name(["product"], true, false),
                std::sync::Arc::new(on),
                by_name(["region"], true, false),
                by_name(["qty"], true, false),
                function,
                true,
                "_".into(),
                Default::default(),
            )
            .collect()
    };
    for (function, expr) in [
        (seed::AggFunction::Sum, element().sum()),
        (seed::AggFunction::Mean, element().mean()),
        (seed::AggFunction::Max, element().max()),
        (seed::AggFunction::Count, element().count()),
        (seed::AggFunction::First, element().first()),
    ] {
        let reply = c.seed.pivot(request(Some(function))).await;
        c.check(&format!("pivot {function:?}"), reply, polars(expr)?)
            .await?;
    }
    // Unset: one value per cell, and north has two "a" rows: the result fails when
    // computed (the plan is lazy).
    let unset = c.seed.pivot(request(None)).await?.into_inner().handle;
    let failed = c.collect(&unset).await;
    anyhow::ensure!(
        failed.is_err(),
        "pivot without an aggregate over repeated cells: {failed:?}"
    );
    let unknown = c
        .seed
        .pivot(seed::PivotRequest {
            columns: "nope".into(),
            ..request(Some(seed::AggFunction::Sum))
        })
        .await;
    refused(
        "pivot on an unknown column",
        unknown,
        Code::InvalidArgument,
        "nope",
    );
    let conflict = c
        .ours
        .pivot(pb::PivotRequest {
            handle: handle.clone(),
            columns: "product".into(),
            on_columns: vec!["region".into()],
            aggregate: Some(pb::AggFunction::Sum as i32),
            ..Default::default()
        })
        .await;
    refused(
        "pivot with columns and on_columns",
        conflict,
        Code::InvalidArgument,
        "`columns` (field 3) and `on_columns` (field 8) are both set",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_csv() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    std::fs::write(
        c.cluster.path("people.csv"),
        "skip me\nname;age;score\nann;31;1.5\nbob;;2\ncy;45;\ndee;28;4.25\n",
    )?;
    let path = c.cluster.path("people.csv");
    let path_text = path.to_string_lossy().into_owned();
    let schema_json = r#"{"fields": [{"name": "name", "data_type": "String"}, {"name": "age", "data_type": "Int32"}, {"name": "score", "data_type": "Float64"}]}"#;
    let request = |has_header, schema_json: Option<&str>| seed::ReadCsvRequest {
        path: "people.csv".into(),
        has_header,
        separator: Some(";".into()),
        quote_char: None,
        skip_rows: Some(1),
        n_rows: Some(3),
        columns: vec!["name".into(), "score".into()],
        schema_json: schema_json.map(Into::into),
    };
    let reply = c.seed.read_csv(request(true, Some(schema_json))).await;
    let schema = Schema::from_iter([
        Field::new("name".into(), DataType::String),
        Field::new("age".into(), DataType::Int32),
        Field::new("score".into(), DataType::Float64),
    ]);
    let polars = |has_header: bool, schema: Option<SchemaRef>| {
        LazyCsvReader::new(PlRefPath::new(path_text.as_str()))
            .with_has_header(has_header)
            .with_separator(b';')
            .with_skip_rows(1)
            .with_schema(schema)
            .finish()
            .map(|lf| lf.limit(3))
    };
    let expected = polars(true, Some(std::sync::Arc::new(schema)))?
        .select([col("name"), col("score")])
        .collect()?;
    c.check("read_csv with schema_json", reply, expected)
        .await?;
    // has_header unset (false, as a client that leaves it unset sends it): the header line
    // is a row, and the columns are named column_1, ...
    let reply = c
        .seed
        .read_csv(seed::ReadCsvRequest {
            columns: vec![],
            ..request(false, None)
        })
        .await;
    let expected = polars(false, None)?.collect()?;
    c.check("read_csv without a header", reply, expected)
        .await?;

    for (what, bad, fragment) in [
        ("not JSON", "{", "not JSON"),
        ("no fields", r#"{"columns": []}"#, "no list of `fields`"),
        (
            "an unknown type",
            r#"[{"name": "name", "data_type": "Int99"}]"#,
            "Int99",
        ),
    ] {
        let reply = c.seed.read_csv(request(true, Some(bad))).await;
        refused(
            &format!("read_csv with {what}"),
            reply,
            Code::InvalidArgument,
            fragment,
        );
    }
    let conflict = c
        .ours
        .read_csv(pb::ReadCsvRequest {
            path: "people.csv".into(),
            has_header: true,
            schema_json: Some(schema_json.into()),
            schema: vec![pb::Field {
                name: "name".into(),
                data_type: "String".into(),
            }],
            ..Default::default()
        })
        .await;
    refused(
        "read_csv with schema_json and schema",
        conflict,
        Code::InvalidArgument,
        "`schema_json` (field 8) and `schema` (field 12) are both set",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    let filtered = c
        .seed
        .filter(seed::FilterRequest {
            handle: handle.clone(),
            predicate: Some(x::binary(
                x::col("qty"),
                seed::BinaryOperator::Gt,
                x::int(3),
            )),
        })
        .await?
        .into_inner()
        .handle;
    let local = df.clone().lazy().filter(col("qty").gt(lit(3)));
    for (optimized, format_tree) in [(false, false), (true, false), (false, true), (true, true)] {
        let reply = c
            .seed
            .explain(seed::ExplainRequest {
                handle: filtered.clone(),
                optimized,
                format_tree,
            })
            .await?
            .into_inner();
        // The plan Polars gives of the same query over the same frame.
        let expected = match (optimized, format_tree) {
            (true, true) => local.describe_optimized_plan_tree()?,
            (true, false) => local.describe_optimized_plan()?,
            (false, true) => local.describe_plan_tree()?,
            (false, false) => local.describe_plan()?,
        };
        assert_eq!(
            reply.logical_plan, expected,
            "optimized {optimized}, tree {format_tree}"
        );
        assert_eq!(reply.physical_plan, None);
        assert_eq!(
            reply
                .optimizations
                .iter()
                .any(|o| o == "predicate_pushdown"),
            optimized,
            "{:?}",
            reply.optimizations
        );
        // Nothing computed yet: no statistics to tell.
        assert_eq!(reply.stats, None);
    }
    // Once computed, the result's rows are known.
    c.collect(&filtered).await?;
    let reply = c
        .seed
        .explain(seed::ExplainRequest {
            handle: filtered.clone(),
            optimized: true,
            format_tree: false,
        })
        .await?
        .into_inner();
    assert_eq!(
        reply.stats.map(|s| s.estimated_rows),
        Some(i64::try_from(local.collect()?.height())?)
    );
    let unknown = c
        .seed
        .explain(seed::ExplainRequest {
            handle: "nonsense".into(),
            optimized: true,
            format_tree: false,
        })
        .await;
    refused(
        "explain of a malformed handle",
        unknown,
        Code::InvalidArgument,
        "nonsense",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_stats() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    let stats = |columns: &[&str]| seed::GetStatsRequest {
        handle: handle.clone(),
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
    };
    // A statistic as text, as Polars casts it.
    let text = |e: Expr| -> anyhow::Result<Option<String>> {
        let value = df
            .clone()
            .lazy()
            .select([e.cast(DataType::String).alias("v")])
            .collect()?;
        Ok(value.column("v")?.str()?.get(0).map(str::to_owned))
    };
    let every = c.seed.get_stats(stats(&[])).await?.into_inner();
    let mut names: Vec<&str> = every.stats.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["id", "price", "qty", "region"]);
    // The contract's ColumnStats names no fields: Polaroid's are read with its own stubs.
    let ours = c
        .ours
        .get_stats(pb::GetStatsRequest {
            handle: handle.clone(),
            columns: vec!["qty".into(), "region".into()],
        })
        .await?
        .into_inner();
    assert_eq!(ours.stats.len(), 2);
    for name in ["qty", "region"] {
        let series = df.column(name)?.as_materialized_series();
        let numeric = series.dtype().is_primitive_numeric();
        let got = &ours.stats[name];
        assert_eq!(got.data_type, polaroid_worker::dtype::name(series.dtype()));
        assert_eq!(
            got.count,
            i64::try_from(series.len() - series.null_count())?
        );
        assert_eq!(got.null_count, i64::try_from(series.null_count())?);
        assert_eq!(got.n_unique, i64::try_from(series.n_unique()?)?);
        assert_eq!(got.min, text(col(name).min())?, "{name} min");
        assert_eq!(got.max, text(col(name).max())?, "{name} max");
        assert_eq!(got.mean, if numeric { series.mean() } else { None });
        let std = if numeric { series.std(1) } else { None };
        assert!(
            got.std.zip(std).is_none_or(|(a, b)| (a - b).abs() < 1e-12)
                && got.std.is_some() == std.is_some(),
            "{name} std {:?} vs {std:?}",
            got.std
        );
    }
    // And as a frame, with Polaroid's handle.
    let frame = c.collect(&ours.handle).await?;
    assert_eq!(frame.column("column")?.str()?.get(0), Some("qty"));
    assert_eq!(frame.height(), 2);

    let unknown = c.seed.get_stats(stats(&["nope"])).await;
    refused(
        "get_stats of an unknown column",
        unknown,
        Code::InvalidArgument,
        "nope",
    );
    Ok(())
}

fn aggregation(column: &str, alias: &str, function: seed::AggFunction) -> seed::Aggregation {
    seed::Aggregation {
        column: column.into(),
        alias: alias.into(),
        function: function as i32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_and_agg() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = sales();
    let handle = c.upload(&df).await?;
    let grouped = c
        .seed
        .group_by(seed::GroupByRequest {
            handle: handle.clone(),
            columns: vec!["region".into()],
        })
        .await?
        .into_inner();
    assert_eq!(grouped.group_columns, ["region"]);
    assert_eq!(grouped.error, None);
    use seed::AggFunction as F;
    let reply = c
        .seed
        .agg(seed::AggRequest {
            handle: grouped.handle.clone(),
            aggregations: vec![
                aggregation("qty", "total", F::Sum),
                // No alias: the column's own name.
                aggregation("price", "", F::Mean),
                aggregation("id", "n", F::Count),
                aggregation("price", "lo", F::Min),
                aggregation("price", "hi", F::Max),
                aggregation("qty", "mid", F::Median),
                aggregation("price", "sd", F::Std),
                aggregation("price", "var", F::Var),
                aggregation("id", "first_id", F::First),
                aggregation("id", "last_id", F::Last),
            ],
        })
        .await;
    let expected = df
        .clone()
        .lazy()
        .group_by_stable([col("region")])
        .agg([
            col("qty").sum().alias("total"),
            col("price").mean(),
            col("id").count().alias("n"),
            col("price").min().alias("lo"),
            col("price").max().alias("hi"),
            col("qty").median().alias("mid"),
            col("price").std(1).alias("sd"),
            col("price").var(1).alias("var"),
            col("id").first().alias("first_id"),
            col("id").last().alias("last_id"),
        ])
        .collect()?;
    c.check("agg of the contract's aggregations", reply, expected)
        .await?;
    // Two keys.
    let two = c
        .seed
        .group_by(seed::GroupByRequest {
            handle: handle.clone(),
            columns: vec!["region".into(), "qty".into()],
        })
        .await?
        .into_inner();
    assert_eq!(two.group_columns, ["region", "qty"]);
    let reply = c
        .seed
        .agg(seed::AggRequest {
            handle: two.handle.clone(),
            aggregations: vec![aggregation("price", "sum", F::Sum)],
        })
        .await;
    let expected = df
        .clone()
        .lazy()
        .group_by_stable([col("region"), col("qty")])
        .agg([col("price").sum().alias("sum")])
        .collect()?;
    c.check("agg over two keys", reply, expected).await?;

    let grouped_handle = grouped.handle.clone();
    let agg = |aggregations| seed::AggRequest {
        handle: grouped_handle.clone(),
        aggregations,
    };
    let unspecified = c
        .seed
        .agg(agg(vec![aggregation("qty", "", F::Unspecified)]))
        .await;
    refused(
        "agg without a function",
        unspecified,
        Code::InvalidArgument,
        "the aggregation of `qty` has no `function`",
    );
    let unknown_function = c
        .seed
        .agg(agg(vec![seed::Aggregation {
            column: "qty".into(),
            alias: String::new(),
            function: 42,
        }]))
        .await;
    refused(
        "agg with an unknown function",
        unknown_function,
        Code::InvalidArgument,
        "`function` 42, which is not an AggFunction",
    );
    let none = c.seed.agg(agg(vec![])).await;
    refused(
        "agg of nothing",
        none,
        Code::InvalidArgument,
        "at least one aggregation",
    );
    let unknown_column = c.seed.agg(agg(vec![aggregation("nope", "", F::Sum)])).await;
    refused(
        "agg of an unknown column",
        unknown_column,
        Code::InvalidArgument,
        "nope",
    );
    let not_grouped = c
        .seed
        .agg(seed::AggRequest {
            handle: handle.clone(),
            aggregations: vec![aggregation("qty", "", F::Sum)],
        })
        .await;
    refused(
        "agg of a frame not grouped",
        not_grouped,
        Code::InvalidArgument,
        "grouped handle",
    );
    let unknown_key = c
        .seed
        .group_by(seed::GroupByRequest {
            handle: handle.clone(),
            columns: vec!["nope".into()],
        })
        .await;
    refused(
        "group_by an unknown column",
        unknown_key,
        Code::InvalidArgument,
        "nope",
    );
    let no_key = c
        .seed
        .group_by(seed::GroupByRequest {
            handle: handle.clone(),
            columns: vec![],
        })
        .await;
    refused(
        "group_by without keys",
        no_key,
        Code::InvalidArgument,
        "at least one key",
    );
    // Polaroid's: expressions after the contract's aggregations, N_UNIQUE, and aggregations
    // in GroupBy itself.
    let mixed = c
        .ours
        .agg(pb::AggRequest {
            handle: grouped.handle.clone(),
            aggregations: vec![pb::Aggregation {
                column: "qty".into(),
                alias: "kinds".into(),
                function: pb::AggFunction::NUnique as i32,
            }],
            exprs: vec![e::alias(e::col("id"), "ids")],
        })
        .await?
        .into_inner()
        .handle;
    let expected = df
        .clone()
        .lazy()
        .group_by_stable([col("region")])
        .agg([col("qty").n_unique().alias("kinds"), col("id").alias("ids")])
        .collect()?;
    assert_frame_eq(&c.collect(&mixed).await?, &expected);
    let at_once = c
        .ours
        .group_by(pb::GroupByRequest {
            handle: handle.clone(),
            columns: vec!["region".into()],
            aggs: vec![e::alias(e::col("id"), "ids")],
            maintain_order: true,
            by_exprs: vec![],
        })
        .await?
        .into_inner();
    assert_eq!(at_once.group_columns, ["region"]);
    let expected = df
        .clone()
        .lazy()
        .group_by_stable([col("region")])
        .agg([col("id").alias("ids")])
        .collect()?;
    assert_frame_eq(&c.collect(&at_once.handle).await?, &expected);
    Ok(())
}

/// Readings at shuffled times (one hour apart, some half hours), with nulls.
fn readings() -> anyhow::Result<DataFrame> {
    const HOUR: i64 = 3_600_000;
    let times =
        [5, 0, 3, 1, 7, 2, 4, 6].map(|h: i64| h * HOUR + if h % 3 == 0 { HOUR / 2 } else { 0 });
    let df = df!(
        "time" => times,
        "value" => [Some(5.0f64), Some(1.0), None, Some(2.0), Some(8.0), Some(3.0), Some(4.0), Some(7.0)],
        "tag" => ["a", "b", "a", "b", "a", "b", "a", "b"],
    )?
    .lazy()
    .with_column(col("time").cast(DataType::Datetime(TimeUnit::Milliseconds, None)))
    .collect()?;
    Ok(df)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_series() -> anyhow::Result<()> {
    let mut c = Contract::start().await?;
    let df = readings()?;
    let handle = c.upload(&df).await?;
    let sorted = df.clone().lazy().sort(
        ["time"],
        SortMultipleOptions::default().with_maintain_order(true),
    );
    let series = c
        .seed
        .as_time_series(seed::AsTimeSeriesRequest {
            handle: handle.clone(),
            timestamp_column: "time".into(),
            frequency: Some("2h".into()),
            ensure_sorted: true,
        })
        .await?
        .into_inner();
    assert_eq!(
        (
            series.timestamp_column.as_str(),
            series.frequency.as_str(),
            series.error
        ),
        ("time", "2h", None)
    );
    assert_frame_eq(
        &c.collect(&series.handle).await?,
        &sorted.clone().collect()?,
    );
    // ensure_sorted unset: the rows as they are.
    let as_is = c
        .seed
        .as_time_series(seed::AsTimeSeriesRequest {
            handle: handle.clone(),
            timestamp_column: "time".into(),
            frequency: None,
            ensure_sorted: false,
        })
        .await?
        .into_inner();
    assert_eq!(as_is.frequency, "");
    assert_frame_eq(&c.collect(&as_is.handle).await?, &df);

    use seed::AggFunction as F;
    let dynamic = |every: &str, label| DynamicGroupOptions {
        every: Duration::parse(every),
        period: Duration::parse(every),
        offset: Duration::parse("0ns"),
        label,
        ..Default::default()
    };
    // Frequency empty: the time series' own ("2h").
    for (frequency, label, polars_every, polars_label) in [
        ("", None, "2h", Label::Left),
        ("3h", Some("Right"), "3h", Label::Right),
        ("1h", Some("datapoint"), "1h", Label::DataPoint),
    ] {
        let reply = c
            .seed
            .resample(seed::ResampleRequest {
                handle: series.handle.clone(),
                frequency: frequency.into(),
                aggregations: vec![
                    aggregation("value", "total", F::Sum),
                    aggregation("value", "", F::Mean),
                    aggregation("tag", "n", F::Count),
                ],
                label: label.map(Into::into),
            })
            .await;
        let expected = sorted
            .clone()
            .group_by_dynamic(col("time"), [], dynamic(polars_every, polars_label))
            .agg([
                col("value").sum().alias("total"),
                col("value").mean(),
                col("tag").count().alias("n"),
            ])
            .collect()?;
        c.check(
            &format!("resample {frequency:?} {label:?}"),
            reply,
            expected,
        )
        .await?;
    }

    // Windows of rows: unset min_periods is the window's rows, as in Polars.
    let reply = c
        .seed
        .rolling_window(seed::RollingWindowRequest {
            handle: series.handle.clone(),
            window_size: "3".into(),
            aggregations: vec![
                seed::RollingAggregation {
                    column: "value".into(),
                    alias: "mean3".into(),
                    function: F::Mean as i32,
                },
                seed::RollingAggregation {
                    column: "value".into(),
                    alias: String::new(),
                    function: F::Max as i32,
                },
            ],
            min_periods: None,
            center: true,
        })
        .await;
    let fixed = |min_periods| RollingOptionsFixedWindow {
        window_size: 3,
        min_periods,
        center: true,
        ..Default::default()
    };
    let expected = sorted
        .clone()
        .with_columns([
            col("value").rolling_mean(fixed(3)).alias("mean3"),
            col("value").rolling_max(fixed(3)),
        ])
        .collect()?;
    c.check("rolling_window of 3 rows", reply, expected).await?;
    // A duration over the timestamp column.
    let reply = c
        .seed
        .rolling_window(seed::RollingWindowRequest {
            handle: series.handle.clone(),
            window_size: "2h".into(),
            aggregations: vec![seed::RollingAggregation {
                column: "value".into(),
                alias: "sum2h".into(),
                function: F::Sum as i32,
            }],
            min_periods: Some(2),
            center: false,
        })
        .await;
    let expected = sorted
        .clone()
        .with_column(
            col("value")
                .rolling_sum_by(
                    col("time"),
                    RollingOptionsDynamicWindow {
                        window_size: Duration::parse("2h"),
                        min_periods: 2,
                        closed_window: ClosedWindow::Right,
                        fn_params: None,
                    },
                )
                .alias("sum2h"),
        )
        .collect()?;
    c.check("rolling_window of 2 hours", reply, expected)
        .await?;

    let not_time = c
        .seed
        .as_time_series(seed::AsTimeSeriesRequest {
            handle: handle.clone(),
            timestamp_column: "value".into(),
            frequency: None,
            ensure_sorted: true,
        })
        .await;
    refused(
        "as_time_series of a float column",
        not_time,
        Code::InvalidArgument,
        "must be Date or Datetime",
    );
    let plain = c
        .seed
        .resample(seed::ResampleRequest {
            handle: handle.clone(),
            frequency: "1h".into(),
            aggregations: vec![aggregation("value", "", F::Sum)],
            label: None,
        })
        .await;
    refused(
        "resample of a frame that is no time series",
        plain,
        Code::InvalidArgument,
        "needs a time series handle",
    );
    let middle = c
        .seed
        .resample(seed::ResampleRequest {
            handle: series.handle.clone(),
            frequency: "1h".into(),
            aggregations: vec![aggregation("value", "", F::Sum)],
            label: Some("middle".into()),
        })
        .await;
    refused(
        "resample labelled middle",
        middle,
        Code::InvalidArgument,
        "unknown `label` `middle`",
    );
    let count = c
        .seed
        .rolling_window(seed::RollingWindowRequest {
            handle: series.handle.clone(),
            window_size: "3".into(),
            aggregations: vec![seed::RollingAggregation {
                column: "value".into(),
                alias: String::new(),
                function: F::Count as i32,
            }],
            min_periods: None,
            center: false,
        })
        .await;
    refused(
        "rolling COUNT",
        count,
        Code::Unimplemented,
        "COUNT has no rolling form",
    );
    let no_size = c
        .seed
        .rolling_window(seed::RollingWindowRequest {
            handle: series.handle.clone(),
            window_size: String::new(),
            aggregations: vec![],
            min_periods: None,
            center: false,
        })
        .await;
    refused(
        "rolling_window without a size",
        no_size,
        Code::InvalidArgument,
        "needs `window_size`",
    );
    // Polaroid's extras: a label of each kind that disagree; every numeric column.
    let conflict = c
        .ours
        .resample(pb::ResampleRequest {
            handle: series.handle.clone(),
            frequency: "1h".into(),
            exprs: vec![e::col("value")],
            label: Some("left".into()),
            window_label: pb::WindowLabel::Right as i32,
            ..Default::default()
        })
        .await;
    refused(
        "resample label left and window_label RIGHT",
        conflict,
        Code::InvalidArgument,
        "`label` (field 4) is `left` but `window_label` (field 9) is WINDOW_LABEL_RIGHT",
    );
    let every = c
        .ours
        .rolling_window(pb::RollingWindowRequest {
            handle: series.handle.clone(),
            window_size: "2".into(),
            every_numeric_column: pb::AggFunction::Sum as i32,
            suffix: Some("_s".into()),
            min_periods: Some(1),
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    let expected = sorted
        .clone()
        .with_column(
            col("value")
                .rolling_sum(RollingOptionsFixedWindow {
                    window_size: 2,
                    min_periods: 1,
                    ..Default::default()
                })
                .alias("value_s"),
        )
        .collect()?;
    assert_frame_eq(&c.collect(&every).await?, &expected);
    Ok(())
}

/// A REST server on loopback for the REST sources: `/items?page=N` gives two records a
/// page for pages 1 and 2, one on page 3, then none.
async fn rest_server() -> anyhow::Result<String> {
    use axum::extract::Query;
    use std::collections::HashMap;
    let app = axum::Router::new().route(
        "/items",
        axum::routing::get(|Query(q): Query<HashMap<String, String>>| async move {
            let page: i64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let ids: Vec<i64> = match page {
                1 => vec![1, 2],
                2 => vec![3, 4],
                3 => vec![5],
                _ => vec![],
            };
            let records: Vec<String> = ids
                .iter()
                .map(|id| format!(r#"{{"id": {id}, "name": "n{id}", "extra": true}}"#))
                .collect();
            format!("[{}]", records.join(","))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}"))
}

/// A cluster whose workers may reach loopback (where the tests' peers are).
async fn start_reaching_loopback() -> anyhow::Result<Contract> {
    let env = vec![(
        "POLAROID_REST_ALLOW_PRIVATE_NETWORKS".to_owned(),
        "true".to_owned(),
    )];
    let cluster = TestCluster::start_with_env(1, &[], &[], env, None).await?;
    let channel = cluster.channel().await?;
    Ok(Contract {
        seed: DataFrameServiceClient::new(channel.clone()),
        ours: client_over(channel),
        cluster,
    })
}

/// The seed's REST request for `/items`: page numbers with a page size (a shorter page is
/// the last), a schema, a rate limit, JSON.
fn seed_rest(base: &str) -> seed::RestApiRequest {
    seed::RestApiRequest {
        url: format!("{base}/items"),
        headers: Default::default(),
        method: "GET".into(),
        body: None,
        pagination: Some(seed::PaginationConfig {
            strategy: Some(seed::pagination_config::Strategy::PageNumber(
                seed::PageNumberPagination {
                    page_size: 2,
                    page_param: "page".into(),
                },
            )),
        }),
        schema_json: r#"{"name": "String", "id": "Int32"}"#.into(),
        rate_limit: Some(seed::RateLimitConfig {
            requests_per_second: 100,
            burst_size: 2,
        }),
        format: seed::MessageFormat::Json as i32,
    }
}

/// What `/items` holds, with `seed_rest`'s schema: its columns, in its order, its types.
fn items() -> DataFrame {
    df!(
        "name" => ["n1", "n2", "n3", "n4", "n5"],
        "id" => [1i32, 2, 3, 4, 5],
    )
    .expect("frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_rest_api() -> anyhow::Result<()> {
    let base = rest_server().await?;
    let mut c = start_reaching_loopback().await?;
    let reply = c.seed.read_rest_api(seed_rest(&base)).await;
    c.check("read_rest_api, three pages", reply, items())
        .await?;
    // No pagination, no schema, no format: one request, the columns as the answer has them.
    let plain = seed::RestApiRequest {
        url: format!("{base}/items?page=2"),
        pagination: None,
        schema_json: String::new(),
        rate_limit: None,
        format: seed::MessageFormat::Unspecified as i32,
        ..seed_rest(&base)
    };
    let expected = df!(
        "id" => [3i64, 4],
        "name" => ["n3", "n4"],
        "extra" => [true, true],
    )?;
    let reply = c.seed.read_rest_api(plain).await;
    c.check("read_rest_api, one page", reply, expected).await?;

    let bad_schema = c
        .seed
        .read_rest_api(seed::RestApiRequest {
            schema_json: r#"{"id": "Int"#.into(),
            ..seed_rest(&base)
        })
        .await;
    refused(
        "read_rest_api with a schema_json that is not JSON",
        bad_schema,
        Code::InvalidArgument,
        "schema_json (6): not JSON",
    );
    let bad_format = c
        .seed
        .read_rest_api(seed::RestApiRequest {
            format: 7,
            ..seed_rest(&base)
        })
        .await;
    refused(
        "read_rest_api with an unknown format",
        bad_format,
        Code::InvalidArgument,
        "unknown MessageFormat 7",
    );
    let conflict = c
        .ours
        .read_rest_api(pb::RestApiRequest {
            url: format!("{base}/items"),
            format: pb::MessageFormat::Json as i32,
            text_format: pb::RestTextFormat::Ndjson as i32,
            ..Default::default()
        })
        .await;
    refused(
        "read_rest_api with format and text_format",
        conflict,
        Code::InvalidArgument,
        "format (8) JSON and text_format (11) REST_TEXT_FORMAT_NDJSON: set one of them",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_rest_api() -> anyhow::Result<()> {
    let base = rest_server().await?;
    let mut c = start_reaching_loopback().await?;
    // The answer, every page, as ArrowBatch messages the established client opens one by
    // one; each record with the stream's receive time and source position after it.
    let mut stream = c.seed.stream_rest_api(seed_rest(&base)).await?.into_inner();
    let mut frames = Vec::new();
    while let Some(batch) = stream.message().await? {
        anyhow::ensure!(batch.error.is_none(), "error set on success");
        frames.push(from_ipc(&batch.arrow_ipc));
    }
    let streamed = stack(&frames);
    assert_frame_eq(
        &streamed.drop_many(["_received_at", "_source_position"]),
        &items(),
    );
    let positions: Vec<&str> = streamed
        .column("_source_position")?
        .str()?
        .iter()
        .flatten()
        .collect();
    assert_eq!(positions, ["0:0:0", "0:0:1", "0:1:0", "0:1:1", "0:2:0"]);

    let bad_schema = c
        .seed
        .stream_rest_api(seed::RestApiRequest {
            schema_json: r#"{"id": 5}"#.into(),
            ..seed_rest(&base)
        })
        .await
        .map(|_| ());
    refused(
        "stream_rest_api with a schema_json of no type names",
        bad_schema,
        Code::InvalidArgument,
        "must be a type name",
    );
    let conflict = c
        .ours
        .stream_rest_api(pb::RestApiRequest {
            url: format!("{base}/items"),
            rate_limit: Some(pb::RateLimitConfig {
                requests_per_second: 2,
                burst_size: 1,
            }),
            min_request_interval_ms: Some(2000),
            ..Default::default()
        })
        .await
        .map(|_| ());
    refused(
        "stream_rest_api with rate_limit and min_request_interval_ms",
        conflict,
        Code::InvalidArgument,
        "rate_limit (7) and min_request_interval_ms (18): set one of them",
    );
    Ok(())
}

/// Messages of an established client's stream until `rows` rows came: the records
/// without the stream's columns, and their positions.
async fn take_seed_rows(
    stream: &mut tonic::Streaming<seed::ArrowBatch>,
    rows: usize,
) -> anyhow::Result<(DataFrame, Vec<String>)> {
    let mut frames = Vec::new();
    let mut got = 0;
    while got < rows {
        let batch = stream
            .message()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the stream ended after {got} rows"))?;
        anyhow::ensure!(batch.error.is_none(), "error set on success");
        let frame = from_ipc(&batch.arrow_ipc);
        got += frame.height();
        frames.push(frame);
    }
    let streamed = stack(&frames);
    let positions = streamed
        .column("_source_position")?
        .str()?
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    Ok((
        streamed.drop_many(["_received_at", "_source_position"]),
        positions,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_message_queue() -> anyhow::Result<()> {
    let server = redis_server().await?;
    let mut redis = redis::Client::open(server.redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    // The group made first, so that every entry added after is the group's to read.
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", "orders", "readers", "$", "MKSTREAM"])
        .query_async(&mut redis)
        .await?;
    let mut ids = Vec::new();
    for (id, amount) in [(1, 9.5), (2, 3.25), (3, 7.0)] {
        let payload = format!(r#"{{"order": {id}, "amount": {amount}}}"#);
        let added: String = redis::cmd("XADD")
            .arg(&["orders", "*", "data", payload.as_str()])
            .query_async(&mut redis)
            .await?;
        ids.push(added);
    }
    let mut c = start_reaching_loopback().await?;
    let request = seed::MessageQueueRequest {
        r#type: seed::MessageQueueType::RedisStream as i32,
        connection_string: server.redis_url(),
        topic: "orders".into(),
        consumer_group: Some("readers".into()),
        schema_json: r#"{"order": "Int64", "amount": "Float64"}"#.into(),
        format: seed::MessageFormat::Json as i32,
    };
    let mut stream = c
        .seed
        .stream_message_queue(request.clone())
        .await?
        .into_inner();
    let (rows, positions) = take_seed_rows(&mut stream, 3).await?;
    drop(stream);
    assert_frame_eq(
        &rows,
        &df!("order" => [1i64, 2, 3], "amount" => [9.5f64, 3.25, 7.0])?,
    );
    assert_eq!(positions, ids);

    let bad = c
        .seed
        .stream_message_queue(seed::MessageQueueRequest {
            schema_json: "not json".into(),
            ..request.clone()
        })
        .await
        .map(|_| ());
    refused(
        "stream_message_queue with a schema_json that is not JSON",
        bad,
        Code::InvalidArgument,
        "schema_json (5): not JSON",
    );
    let kafka = c
        .seed
        .stream_message_queue(seed::MessageQueueRequest {
            r#type: seed::MessageQueueType::Kafka as i32,
            ..request
        })
        .await
        .map(|_| ());
    refused(
        "stream_message_queue of KAFKA at a Redis URL",
        kafka,
        Code::InvalidArgument,
        "scheme `redis` is not kafka",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_message_queue_of_kafka() -> anyhow::Result<()> {
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    let broker = kafka_broker(None).await?;
    let producer = rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{}", broker.port)])
        .build()
        .await?;
    producer
        .controller_client()?
        .create_topic("orders", 1, 1, 5_000)
        .await?;
    let partition = producer
        .partition_client("orders", 0, UnknownTopicHandling::Retry)
        .await?;
    let mut c = start_reaching_loopback().await?;
    // The contract's fields only: the records written once the call answered.
    let request = seed::MessageQueueRequest {
        r#type: seed::MessageQueueType::Kafka as i32,
        connection_string: format!("kafka://127.0.0.1:{}", broker.port),
        topic: "orders".into(),
        consumer_group: None,
        schema_json: r#"{"order": "Int64", "amount": "Float64"}"#.into(),
        format: seed::MessageFormat::Json as i32,
    };
    let mut stream = c.seed.stream_message_queue(request).await?.into_inner();
    let mut positions = Vec::new();
    for (id, amount) in [(1, 9.5), (2, 3.25)] {
        let record = rskafka::record::Record {
            key: None,
            value: Some(format!(r#"{{"order": {id}, "amount": {amount}}}"#).into_bytes()),
            headers: Default::default(),
            timestamp: rskafka::chrono::Utc::now(),
        };
        let offsets = partition
            .produce(vec![record], Compression::NoCompression)
            .await?;
        positions.push(format!("0:{}", offsets[0]));
    }
    let (rows, streamed_positions) = take_seed_rows(&mut stream, 2).await?;
    drop(stream);
    assert_frame_eq(
        &rows,
        &df!("order" => [1i64, 2], "amount" => [9.5f64, 3.25])?,
    );
    assert_eq!(streamed_positions, positions);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_web_socket() -> anyhow::Result<()> {
    let server = websocket_server().await?;
    let mut c = start_reaching_loopback().await?;
    let request = seed::WebSocketSourceRequest {
        url: format!("ws://127.0.0.1:{}/records", server.port),
        headers: [("x-token".to_owned(), "secret".to_owned())].into(),
        schema_json: r#"{"name": "String", "id": "Int32"}"#.into(),
        reconnect_policy: None,
        buffer_size: Some(3),
        format: Some(seed::MessageFormat::Json as i32),
    };
    let mut stream = c
        .seed
        .stream_web_socket(request.clone())
        .await?
        .into_inner();
    let mut frames = Vec::new();
    while let Some(batch) = stream.message().await? {
        anyhow::ensure!(batch.error.is_none(), "error set on success");
        frames.push(from_ipc(&batch.arrow_ipc));
    }
    anyhow::ensure!(frames.iter().all(|f| f.height() <= 3), "buffer_size rows");
    assert_frame_eq(
        &stack(&frames).drop_many(["_received_at", "_source_position"]),
        &df!(
            "name" => [Some("n1"), Some("n2"), Some("n3"), Some("n4"), None],
            "id" => [1i32, 2, 3, 4, 5],
        )?,
    );
    let bad = c
        .seed
        .stream_web_socket(seed::WebSocketSourceRequest {
            buffer_size: Some(-1),
            ..request
        })
        .await
        .map(|_| ());
    refused(
        "stream_web_socket with a negative buffer_size",
        bad,
        Code::InvalidArgument,
        "buffer_size (5) must be positive",
    );
    Ok(())
}
