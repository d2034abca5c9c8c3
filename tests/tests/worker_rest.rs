//! `ReadRestApi` against a real local HTTP server started by the test, each answer
//! compared with Polars parsing the same bytes in-process.

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use polaroid_proto::v1 as pb;
use polaroid_tests::{Client, TestWorker, assert_frame_eq, collect};
use polars::prelude::*;
use std::collections::HashMap;
use tonic::Code;

const ROWS: &str = r#"[{"id": 1, "name": "ann"}, {"id": 2, "name": null}]"#;
const NESTED: &str = r#"{"data": {"items": [{"v": 1.5}, {"v": 2.5}]}}"#;
const NESTED_ITEMS: &str = r#"[{"v": 1.5}, {"v": 2.5}]"#;
const NDJSON: &str = "{\"a\": 1, \"b\": \"x\"}\n\n{\"a\": 2, \"b\": null}\n";
const CSV: &str = "city,temp\r\nOslo,3.5\r\nLima,19\r\n";
/// The largest answer the test's worker accepts.
const MAX_ANSWER: usize = 4096;

fn json_page(page: i64) -> String {
    format!(r#"[{{"page": {page}}}, {{"page": {page}}}]"#)
}

fn csv_page(page: i64) -> String {
    if page > 2 {
        "n,square\n".to_owned()
    } else {
        format!("n,square\n{page},{}\n", page * page)
    }
}

fn page_of(query: &HashMap<String, String>) -> i64 {
    query.get("page").and_then(|p| p.parse().ok()).unwrap_or(0)
}

async fn serve() -> anyhow::Result<String> {
    let json =
        |body: &'static str| async move { ([(header::CONTENT_TYPE, "application/json")], body) };
    let app = axum::Router::new()
        .route("/rows", get(move || json(ROWS)))
        .route("/nested", get(move || json(NESTED)))
        .route("/ndjson", get(|| async { NDJSON }))
        .route("/csv", get(|| async { CSV }))
        .route("/empty", get(move || json("[]")))
        .route(
            "/secure",
            get(|headers: HeaderMap| async move {
                let ok = headers.get("authorization").and_then(|v| v.to_str().ok())
                    == Some("Bearer t0k");
                format!(r#"[{{"authorized": {ok}}}]"#)
            }),
        )
        .route(
            "/echo",
            post(|body: String| async move { format!("[{body}]") }),
        )
        .route(
            "/pages",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let page = page_of(&q);
                if page > 3 {
                    "[]".to_owned()
                } else {
                    json_page(page)
                }
            }),
        )
        .route(
            "/csv-pages",
            get(|Query(q): Query<HashMap<String, String>>| async move { csv_page(page_of(&q)) }),
        )
        .route(
            "/csv-other-header",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                format!("column{}\n1\n", page_of(&q))
            }),
        )
        .route("/big", get(|| async { "x".repeat(2 * MAX_ANSWER) }))
        .route(
            "/big-pages",
            get(|| async { format!("[{}]", vec![r#"{"v": 12345678}"#; 60].join(",")) }),
        )
        .route(
            "/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/text", get(|| async { "not json" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}"))
}

/// Polars' reading of a JSON array of records.
fn polars_json(text: &str) -> DataFrame {
    JsonReader::new(std::io::Cursor::new(text.as_bytes().to_vec()))
        .finish()
        .expect("Polars reads the JSON")
}

fn polars_ndjson(text: &str) -> DataFrame {
    JsonReader::new(std::io::Cursor::new(text.as_bytes().to_vec()))
        .with_json_format(JsonFormat::JsonLines)
        .finish()
        .expect("Polars reads the NDJSON")
}

fn polars_csv(text: &str) -> DataFrame {
    CsvReadOptions::default()
        .with_has_header(true)
        .into_reader_with_file_handle(std::io::Cursor::new(text.as_bytes().to_vec()))
        .finish()
        .expect("Polars reads the CSV")
}

fn paged(path_request: pb::RestApiRequest, start_page: i64, max_pages: i64) -> pb::RestApiRequest {
    pb::RestApiRequest {
        pagination: Some(pb::RestPagination {
            page_param: "page".into(),
            start_page,
            max_pages,
            ..Default::default()
        }),
        ..path_request
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_rest_api_from_a_local_server() -> anyhow::Result<()> {
    let base_url = serve().await?;
    let allowed = base_url.clone();
    let worker = TestWorker::start_with(|c| {
        c.max_rest_response_bytes = MAX_ANSWER;
        // The server is on loopback, which REST sources may reach only when allowed.
        c.rest_allowed_url_prefixes = vec![allowed];
    })
    .await?;
    let mut client = worker.client().await?;
    let request = |path: &str| pb::RestApiRequest {
        url: format!("{base_url}{path}"),
        method: "GET".into(),
        ..Default::default()
    };

    assert_frame_eq(
        &read(&mut client, request("/rows")).await?,
        &polars_json(ROWS),
    );
    let nested = pb::RestApiRequest {
        records_path: Some("data.items".into()),
        ..request("/nested")
    };
    assert_frame_eq(
        &read(&mut client, nested).await?,
        &polars_json(NESTED_ITEMS),
    );
    for format in ["ndjson", "NDJSON", "jsonl"] {
        let ndjson = pb::RestApiRequest {
            format: Some(format.into()),
            ..request("/ndjson")
        };
        assert_frame_eq(&read(&mut client, ndjson).await?, &polars_ndjson(NDJSON));
    }
    let csv = pb::RestApiRequest {
        format: Some("csv".into()),
        ..request("/csv")
    };
    assert_frame_eq(&read(&mut client, csv).await?, &polars_csv(CSV));
    let json = pb::RestApiRequest {
        format: Some("json".into()),
        ..request("/rows")
    };
    assert_frame_eq(&read(&mut client, json).await?, &polars_json(ROWS));

    let secure = pb::RestApiRequest {
        headers: [("authorization".to_owned(), "Bearer t0k".to_owned())].into(),
        ..request("/secure")
    };
    assert_frame_eq(
        &read(&mut client, secure).await?,
        &polars_json(r#"[{"authorized": true}]"#),
    );

    let body = r#"{"q": "hello", "n": 3}"#;
    let echo = pb::RestApiRequest {
        method: "POST".into(),
        headers: [("content-type".to_owned(), "application/json".to_owned())].into(),
        body: Some(body.into()),
        schema: vec![pb::Field {
            name: "n".into(),
            data_type: "Int32".into(),
        }],
        ..request("/echo")
    };
    let expected = polars_json(&format!("[{body}]"))
        .lazy()
        .with_column(col("n").strict_cast(DataType::Int32))
        .collect()?;
    assert_frame_eq(&read(&mut client, echo).await?, &expected);

    // An empty answer with a schema is an empty frame of that schema.
    let empty = pb::RestApiRequest {
        schema: vec![pb::Field {
            name: "n".into(),
            data_type: "Int32".into(),
        }],
        ..request("/empty")
    };
    assert_frame_eq(
        &read(&mut client, empty).await?,
        &DataFrame::empty_with_schema(&Schema::from_iter([Field::new(
            "n".into(),
            DataType::Int32,
        )])),
    );

    // Pages until one has no records, at most max_pages, paced by the rate limit.
    let json_pages = pb::RestApiRequest {
        rate_limit: Some(pb::RestRateLimit {
            requests_per_second: 200.0,
        }),
        ..paged(request("/pages"), 1, 10)
    };
    let all: Vec<String> = (1..=3).map(json_page).collect();
    let expected = concat_pages(&all);
    assert_frame_eq(&read(&mut client, json_pages).await?, &expected);
    let csv_pages = pb::RestApiRequest {
        format: Some("csv".into()),
        ..paged(request("/csv-pages"), 1, 10)
    };
    assert_frame_eq(
        &read(&mut client, csv_pages).await?,
        &polars_csv("n,square\n1,1\n2,4\n"),
    );
    let two_pages = paged(request("/pages"), 2, 2);
    assert_frame_eq(
        &read(&mut client, two_pages).await?,
        &concat_pages(&[json_page(2), json_page(3)]),
    );

    fails(&mut client, request("/broken"), Code::Unavailable, "500").await;
    fails(
        &mut client,
        request("/text"),
        Code::InvalidArgument,
        "did not answer JSON",
    )
    .await;
    let outside = pb::RestApiRequest {
        url: "file:///etc/passwd".into(),
        ..Default::default()
    };
    fails(
        &mut client,
        outside,
        Code::InvalidArgument,
        "not http or https",
    )
    .await;
    let missing_path = pb::RestApiRequest {
        records_path: Some("data.nothing".into()),
        ..request("/nested")
    };
    fails(
        &mut client,
        missing_path,
        Code::InvalidArgument,
        "no `nothing`",
    )
    .await;
    let unknown_format = pb::RestApiRequest {
        format: Some("xml".into()),
        ..request("/rows")
    };
    fails(
        &mut client,
        unknown_format,
        Code::InvalidArgument,
        "unknown REST format `xml`",
    )
    .await;
    let path_with_csv = pb::RestApiRequest {
        format: Some("csv".into()),
        records_path: Some("data".into()),
        ..request("/csv")
    };
    fails(
        &mut client,
        path_with_csv,
        Code::InvalidArgument,
        "json format only",
    )
    .await;
    let other_header = pb::RestApiRequest {
        format: Some("csv".into()),
        ..paged(request("/csv-other-header"), 1, 3)
    };
    fails(
        &mut client,
        other_header,
        Code::InvalidArgument,
        "header differs",
    )
    .await;
    for rate in [1e-30, -1.0, f64::NAN, f64::INFINITY] {
        let bad_rate = pb::RestApiRequest {
            rate_limit: Some(pb::RestRateLimit {
                requests_per_second: rate,
            }),
            ..paged(request("/pages"), 1, 2)
        };
        fails(
            &mut client,
            bad_rate,
            Code::InvalidArgument,
            "requests_per_second",
        )
        .await;
    }
    fails(
        &mut client,
        paged(request("/pages"), i64::MAX, 2),
        Code::InvalidArgument,
        "overflows",
    )
    .await;
    fails(
        &mut client,
        paged(request("/pages"), 1, 0),
        Code::InvalidArgument,
        "max_pages",
    )
    .await;
    let bad_schema = pb::RestApiRequest {
        schema: vec![pb::Field {
            name: "id".into(),
            data_type: "NoSuchType".into(),
        }],
        ..request("/rows")
    };
    fails(&mut client, bad_schema, Code::InvalidArgument, "NoSuchType").await;
    // Over the answer limit: one large page, and small pages that add up past it.
    fails(
        &mut client,
        request("/big"),
        Code::ResourceExhausted,
        "max_rest_response_bytes",
    )
    .await;
    fails(
        &mut client,
        paged(request("/big-pages"), 1, 10),
        Code::ResourceExhausted,
        "max_rest_response_bytes",
    )
    .await;

    // The worker still serves.
    assert_frame_eq(
        &read(&mut client, request("/rows")).await?,
        &polars_json(ROWS),
    );
    worker.stop().await
}

async fn read(client: &mut Client, request: pb::RestApiRequest) -> anyhow::Result<DataFrame> {
    let handle = client.read_rest_api(request).await?.into_inner().handle;
    Ok(collect(client, &handle).await?)
}

/// Asserts the request fails with `code` and a message that mentions `mentions`.
async fn fails(client: &mut Client, request: pb::RestApiRequest, code: Code, mentions: &str) {
    let status = client.read_rest_api(request).await.unwrap_err();
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(mentions),
        "`{}` should mention `{mentions}`",
        status.message()
    );
}

/// Polars' reading of several pages of JSON records, one after the other.
fn concat_pages(pages: &[String]) -> DataFrame {
    let records: Vec<&str> = pages
        .iter()
        .map(|page| page.trim().trim_start_matches('[').trim_end_matches(']'))
        .collect();
    polars_json(&format!("[{}]", records.join(",")))
}
