//! `ReadRestApi` against a real local HTTP server started by the test.

use axum::Json;
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use polaroid_proto::v1 as pb;
use polaroid_tests::{TestWorker, assert_frame_eq, collect};
use polars::prelude::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use tonic::Code;

async fn serve() -> anyhow::Result<String> {
    let app = axum::Router::new()
        .route(
            "/rows",
            get(|| async { Json(json!([{"id": 1, "name": "ann"}, {"id": 2, "name": null}])) }),
        )
        .route(
            "/nested",
            get(|| async { Json(json!({"data": {"items": [{"v": 1.5}, {"v": 2.5}]}})) }),
        )
        .route(
            "/secure",
            get(|headers: HeaderMap| async move {
                let ok = headers.get("authorization").and_then(|v| v.to_str().ok())
                    == Some("Bearer t0k");
                Json(json!([{ "authorized": ok }]))
            }),
        )
        .route(
            "/echo",
            post(|Json(body): Json<Value>| async move { Json(json!([body])) }),
        )
        .route(
            "/pages",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let page: i64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
                if page > 3 {
                    Json(json!([]))
                } else {
                    Json(json!([{"page": page}, {"page": page}]))
                }
            }),
        )
        .route(
            "/broken",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/text", get(|| async { "not json" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_rest_api_from_a_local_server() -> anyhow::Result<()> {
    let base_url = serve().await?;
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let request = |path: &str| pb::RestApiRequest {
        url: format!("{base_url}{path}"),
        method: "GET".into(),
        ..Default::default()
    };

    let handle = client
        .read_rest_api(request("/rows"))
        .await?
        .into_inner()
        .handle;
    assert_frame_eq(
        &collect(&mut client, &handle).await?,
        &df!("id" => [1i64, 2], "name" => [Some("ann"), None])?,
    );

    let nested = pb::RestApiRequest {
        records_path: Some("data.items".into()),
        ..request("/nested")
    };
    let handle = client.read_rest_api(nested).await?.into_inner().handle;
    assert_frame_eq(
        &collect(&mut client, &handle).await?,
        &df!("v" => [1.5f64, 2.5])?,
    );

    let secure = pb::RestApiRequest {
        headers: [("authorization".to_owned(), "Bearer t0k".to_owned())].into(),
        ..request("/secure")
    };
    let handle = client.read_rest_api(secure).await?.into_inner().handle;
    assert_frame_eq(
        &collect(&mut client, &handle).await?,
        &df!("authorized" => [true])?,
    );

    let echo = pb::RestApiRequest {
        method: "POST".into(),
        headers: [("content-type".to_owned(), "application/json".to_owned())].into(),
        body: Some(r#"{"q": "hello", "n": 3}"#.into()),
        schema: vec![pb::Field {
            name: "n".into(),
            data_type: "Int32".into(),
        }],
        ..request("/echo")
    };
    let handle = client.read_rest_api(echo).await?.into_inner().handle;
    assert_frame_eq(
        &collect(&mut client, &handle).await?,
        &df!("q" => ["hello"], "n" => [3i32])?,
    );

    let paged = pb::RestApiRequest {
        pagination: Some(pb::RestPagination {
            page_param: "page".into(),
            start_page: 1,
            max_pages: 10,
            ..Default::default()
        }),
        rate_limit: Some(pb::RestRateLimit {
            requests_per_second: 200.0,
        }),
        ..request("/pages")
    };
    let handle = client.read_rest_api(paged).await?.into_inner().handle;
    assert_frame_eq(
        &collect(&mut client, &handle).await?,
        &df!("page" => [1i64, 1, 2, 2, 3, 3])?,
    );

    let status = client.read_rest_api(request("/broken")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    let status = client.read_rest_api(request("/text")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    let status = client
        .read_rest_api(pb::RestApiRequest {
            url: "file:///etc/passwd".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    let status = client
        .read_rest_api(pb::RestApiRequest {
            records_path: Some("data.nothing".into()),
            ..request("/nested")
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    worker.stop().await
}
