//! `ReadRestApi` against a real local HTTP server started by the test, each answer
//! compared with Polars parsing the same bytes in-process.

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use polaroid_proto::v1 as pb;
use polaroid_proto::v1::pagination_config::Strategy;
use polaroid_tests::{Client, TestWorker, assert_frame_eq, collect, to_ipc};
use polars::prelude::*;
use std::collections::HashMap;
use tonic::Code;

const ROWS: &str = r#"[{"id": 1, "name": "ann"}, {"id": 2, "name": null}]"#;
const NESTED: &str = r#"{"data": {"items": [{"v": 1.5}, {"v": 2.5}]}}"#;
const NESTED_ITEMS: &str = r#"[{"v": 1.5}, {"v": 2.5}]"#;
const NDJSON: &str = "{\"a\": 1, \"b\": \"x\"}\n\n{\"a\": 2, \"b\": null}\n";
const CSV: &str = "city,temp\r\nOslo,3.5\r\nLima,19\r\n";
/// ROWS in MessagePack: an array of two maps.
const MSGPACK_ROWS: &[u8] = &[
    0x92, 0x82, 0xa2, b'i', b'd', 0x01, 0xa4, b'n', b'a', b'm', b'e', 0xa3, b'a', b'n', b'n', 0x82,
    0xa2, b'i', b'd', 0x02, 0xa4, b'n', b'a', b'm', b'e', 0xc0,
];
/// Records behind `/offset`.
const OFFSET_RECORDS: usize = 7;
/// The largest answer the test's worker accepts.
const MAX_ANSWER: usize = 4096;
/// The most pages the test's worker reads for one answer.
const MAX_PAGES: u32 = 20;

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
        .route("/text", get(|| async { "not json" }))
        .route("/arrow", get(|| async { to_ipc(&polars_json(ROWS)) }))
        .route("/msgpack", get(|| async { MSGPACK_ROWS.to_vec() }))
        .route("/forbidden", get(|| async { StatusCode::FORBIDDEN }))
        .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
        .route(
            "/offset",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let number = |key: &str| q.get(key).and_then(|v| v.parse::<usize>().ok());
                let (Some(offset), Some(limit)) = (number("from"), number("limit")) else {
                    return (StatusCode::BAD_REQUEST, String::new());
                };
                let items: Vec<String> = (offset..(offset + limit).min(OFFSET_RECORDS))
                    .map(|i| format!(r#"{{"i": {i}}}"#))
                    .collect();
                (StatusCode::OK, format!("[{}]", items.join(",")))
            }),
        )
        .route(
            "/cursor",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let page = match q.get("after").map(String::as_str) {
                    None => 0,
                    Some("c1") => 1,
                    Some("c2") => 2,
                    Some(_) => return (StatusCode::BAD_REQUEST, String::new()),
                };
                let next = match page {
                    0 => r#""c1""#,
                    1 => r#""c2""#,
                    _ => "null",
                };
                let body =
                    format!(r#"{{"items": [{{"page": {page}}}], "meta": {{"next": {next}}}}}"#);
                (StatusCode::OK, body)
            }),
        )
        .route(
            "/linked",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let page = page_of(&q).max(1);
                let mut headers = HeaderMap::new();
                if page < 3 {
                    let link = format!(r#"</linked?page={}>; rel="next""#, page + 1);
                    headers.insert(header::LINK, link.parse().expect("a header value"));
                }
                (headers, json_page(page))
            }),
        )
        .route(
            "/sized",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                match page_of(&q) {
                    1 => (StatusCode::OK, json_page(1)),
                    2 => (StatusCode::OK, r#"[{"page": 2}]"#.to_owned()),
                    // A page shorter than page_size was the last: never asked for.
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                }
            }),
        )
        .route(
            "/endless",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let at: u64 = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
                format!(r#"{{"items": [{{"at": {at}}}], "next": {}}}"#, at + 1)
            }),
        );
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

fn paged(path_request: pb::RestApiRequest, start_page: i64, max_pages: u32) -> pb::RestApiRequest {
    pb::RestApiRequest {
        pagination: Some(pb::PaginationConfig {
            strategy: Some(Strategy::PageNumber(pb::PageNumberPagination {
                page_param: "page".into(),
                page_size: 0,
            })),
        }),
        start_page: Some(start_page),
        max_pages: Some(max_pages),
        ..path_request
    }
}

fn text(format: pb::RestTextFormat, request: pb::RestApiRequest) -> pb::RestApiRequest {
    pb::RestApiRequest {
        text_format: format as i32,
        ..request
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_rest_api_from_a_local_server() -> anyhow::Result<()> {
    let base_url = serve().await?;
    let allowed = base_url.clone();
    let worker = TestWorker::start_with(|c| {
        c.max_rest_response_bytes = MAX_ANSWER;
        c.max_rest_pages = MAX_PAGES;
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
    let ndjson = text(pb::RestTextFormat::Ndjson, request("/ndjson"));
    assert_frame_eq(&read(&mut client, ndjson).await?, &polars_ndjson(NDJSON));
    let csv = text(pb::RestTextFormat::Csv, request("/csv"));
    assert_frame_eq(&read(&mut client, csv).await?, &polars_csv(CSV));
    let json = pb::RestApiRequest {
        format: pb::MessageFormat::Json as i32,
        ..request("/rows")
    };
    assert_frame_eq(&read(&mut client, json).await?, &polars_json(ROWS));
    let arrow = pb::RestApiRequest {
        format: pb::MessageFormat::ArrowIpc as i32,
        ..request("/arrow")
    };
    assert_frame_eq(&read(&mut client, arrow).await?, &polars_json(ROWS));
    let msgpack = pb::RestApiRequest {
        format: pb::MessageFormat::Msgpack as i32,
        ..request("/msgpack")
    };
    assert_frame_eq(&read(&mut client, msgpack).await?, &polars_json(ROWS));

    let secure = pb::RestApiRequest {
        headers: [("authorization".to_owned(), "Bearer t0k".to_owned())].into(),
        ..request("/secure")
    };
    assert_frame_eq(
        &read(&mut client, secure).await?,
        &polars_json(r#"[{"authorized": true}]"#),
    );

    // schema_json decides the columns: its own, in its order, of its types (a column
    // the answer lacks is null); with cast_only it casts those and keeps the others.
    let body = r#"{"q": "hello", "n": 3}"#;
    let echo = pb::RestApiRequest {
        method: "POST".into(),
        headers: [("content-type".to_owned(), "application/json".to_owned())].into(),
        body: Some(body.into()),
        schema_json: r#"{"n": "Int32", "absent": "String"}"#.into(),
        ..request("/echo")
    };
    let expected = polars_json(&format!("[{body}]"))
        .lazy()
        .select([
            col("n").strict_cast(DataType::Int32),
            lit(NULL).cast(DataType::String).alias("absent"),
        ])
        .collect()?;
    assert_frame_eq(&read(&mut client, echo.clone()).await?, &expected);
    let cast_only = pb::RestApiRequest {
        schema_json: r#"{"fields": [{"name": "n", "data_type": "Int32"}]}"#.into(),
        cast_only: true,
        ..echo
    };
    let expected = polars_json(&format!("[{body}]"))
        .lazy()
        .with_column(col("n").strict_cast(DataType::Int32))
        .collect()?;
    assert_frame_eq(&read(&mut client, cast_only).await?, &expected);

    // An empty answer with a schema is an empty frame of that schema.
    let empty = pb::RestApiRequest {
        schema_json: r#"[{"name": "n", "type": "Int32"}]"#.into(),
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
        rate_limit: Some(pb::RateLimitConfig {
            requests_per_second: 200,
            burst_size: 1,
        }),
        ..paged(request("/pages"), 1, 10)
    };
    let all: Vec<String> = (1..=3).map(json_page).collect();
    let expected = concat_pages(&all);
    assert_frame_eq(&read(&mut client, json_pages).await?, &expected);
    let csv_pages = text(pb::RestTextFormat::Csv, paged(request("/csv-pages"), 1, 10));
    assert_frame_eq(
        &read(&mut client, csv_pages).await?,
        &polars_csv("n,square\n1,1\n2,4\n"),
    );
    let two_pages = paged(request("/pages"), 2, 2);
    assert_frame_eq(
        &read(&mut client, two_pages).await?,
        &concat_pages(&[json_page(2), json_page(3)]),
    );

    // The contract's other pagination schemes.
    let offset = pb::RestApiRequest {
        pagination: Some(pb::PaginationConfig {
            strategy: Some(Strategy::Offset(pb::OffsetPagination {
                limit: 3,
                offset_field: "from".into(),
            })),
        }),
        ..request("/offset")
    };
    let items: Vec<String> = (0..OFFSET_RECORDS)
        .map(|i| format!(r#"{{"i": {i}}}"#))
        .collect();
    assert_frame_eq(
        &read(&mut client, offset).await?,
        &polars_json(&format!("[{}]", items.join(","))),
    );
    let cursor = pb::RestApiRequest {
        pagination: Some(pb::PaginationConfig {
            strategy: Some(Strategy::Cursor(pb::CursorPagination {
                cursor_field: "meta.next".into(),
                cursor_param: "after".into(),
            })),
        }),
        records_path: Some("items".into()),
        ..request("/cursor")
    };
    assert_frame_eq(
        &read(&mut client, cursor).await?,
        &polars_json(r#"[{"page": 0}, {"page": 1}, {"page": 2}]"#),
    );
    let linked = pb::RestApiRequest {
        pagination: Some(pb::PaginationConfig {
            strategy: Some(Strategy::LinkHeader(pb::LinkHeaderPagination {
                rel: String::new(),
            })),
        }),
        ..request("/linked")
    };
    assert_frame_eq(
        &read(&mut client, linked).await?,
        &concat_pages(&[json_page(1), json_page(2), json_page(3)]),
    );
    let sized = pb::RestApiRequest {
        pagination: Some(pb::PaginationConfig {
            strategy: Some(Strategy::PageNumber(pb::PageNumberPagination {
                page_size: 2,
                page_param: String::new(),
            })),
        }),
        ..request("/sized")
    };
    assert_frame_eq(
        &read(&mut client, sized).await?,
        &concat_pages(&[json_page(1), r#"[{"page": 2}]"#.to_owned()]),
    );
    let endless = |max_pages| pb::RestApiRequest {
        pagination: Some(pb::PaginationConfig {
            strategy: Some(Strategy::Cursor(pb::CursorPagination {
                cursor_field: "next".into(),
                cursor_param: String::new(),
            })),
        }),
        records_path: Some("items".into()),
        max_pages,
        ..request("/endless")
    };
    // More pages than the worker reads is an error; fewer asked for, the end.
    fails(
        &mut client,
        endless(None),
        Code::ResourceExhausted,
        "more than 20 pages (max_rest_pages)",
    )
    .await;
    assert_eq!(read(&mut client, endless(Some(4))).await?.height(), 4);
    fails(
        &mut client,
        endless(Some(MAX_PAGES + 1)),
        Code::ResourceExhausted,
        "over the worker's max_rest_pages",
    )
    .await;

    fails(&mut client, request("/broken"), Code::Unavailable, "500").await;
    fails(
        &mut client,
        request("/text"),
        Code::InvalidArgument,
        "is not JSON",
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
        format: 99,
        ..request("/rows")
    };
    fails(
        &mut client,
        unknown_format,
        Code::InvalidArgument,
        "unknown MessageFormat 99",
    )
    .await;
    let protobuf = pb::RestApiRequest {
        format: pb::MessageFormat::Protobuf as i32,
        ..request("/rows")
    };
    fails(&mut client, protobuf, Code::Unimplemented, "PROTOBUF").await;
    let both_formats = pb::RestApiRequest {
        format: pb::MessageFormat::Json as i32,
        ..text(pb::RestTextFormat::Csv, request("/csv"))
    };
    fails(
        &mut client,
        both_formats,
        Code::InvalidArgument,
        "format (8) JSON and text_format (11) REST_TEXT_FORMAT_CSV",
    )
    .await;
    let path_with_csv = pb::RestApiRequest {
        records_path: Some("data".into()),
        ..text(pb::RestTextFormat::Csv, request("/csv"))
    };
    fails(
        &mut client,
        path_with_csv,
        Code::InvalidArgument,
        "JSON format only",
    )
    .await;
    let other_header = text(
        pb::RestTextFormat::Csv,
        paged(request("/csv-other-header"), 1, 3),
    );
    fails(
        &mut client,
        other_header,
        Code::InvalidArgument,
        "header differs",
    )
    .await;
    let slow_and_fast = pb::RestApiRequest {
        rate_limit: Some(pb::RateLimitConfig {
            requests_per_second: 5,
            burst_size: 0,
        }),
        min_request_interval_ms: Some(100),
        ..request("/rows")
    };
    fails(
        &mut client,
        slow_and_fast,
        Code::InvalidArgument,
        "rate_limit (7) and min_request_interval_ms (18)",
    )
    .await;
    let too_slow = pb::RestApiRequest {
        min_request_interval_ms: Some(61_000),
        ..request("/rows")
    };
    fails(&mut client, too_slow, Code::InvalidArgument, "over 60 s").await;
    fails(
        &mut client,
        paged(request("/pages"), 1, 0),
        Code::InvalidArgument,
        "max_pages (12) must be positive",
    )
    .await;
    let polling = pb::RestApiRequest {
        poll_interval_ms: Some(100),
        ..request("/rows")
    };
    fails(
        &mut client,
        polling,
        Code::InvalidArgument,
        "StreamRestApi only",
    )
    .await;
    let stray = pb::RestApiRequest {
        limit_param: Some("n".into()),
        ..paged(request("/pages"), 1, 2)
    };
    fails(
        &mut client,
        stray,
        Code::InvalidArgument,
        "limit_param (15)",
    )
    .await;
    for (schema, says) in [
        (r#"{"id": "NoSuchType"}"#, "NoSuchType"),
        ("{not json", "schema_json (6): not JSON"),
        ("[]", "names no columns"),
    ] {
        let bad_schema = pb::RestApiRequest {
            schema_json: schema.into(),
            ..request("/rows")
        };
        fails(&mut client, bad_schema, Code::InvalidArgument, says).await;
    }
    let bad_header = pb::RestApiRequest {
        headers: [("bad header".to_owned(), "x".to_owned())].into(),
        ..request("/rows")
    };
    fails(
        &mut client,
        bad_header,
        Code::InvalidArgument,
        "bad header name",
    )
    .await;
    // What the remote answered, as the caller should read it.
    fails(&mut client, request("/missing"), Code::NotFound, "HTTP 404").await;
    fails(
        &mut client,
        request("/forbidden"),
        Code::PermissionDenied,
        "HTTP 403",
    )
    .await;
    fails(
        &mut client,
        request("/teapot"),
        Code::FailedPrecondition,
        "HTTP 418",
    )
    .await;
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
