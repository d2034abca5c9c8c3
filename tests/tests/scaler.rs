//! KEDA's external scaler on a real cluster: the load KEDA reads from the coordinator's
//! gRPC port (calls in flight on the workers, calls that found no worker), behind the
//! same authentication as every admin call.

use std::collections::BTreeMap;
use std::time::Duration;

use polaroid_auth::{Role, new_token};
use polaroid_proto::externalscaler as keda;
use polaroid_proto::externalscaler::external_scaler_client::ExternalScalerClient;
use polaroid_proto::v1 as pb;
use polaroid_tests::*;
use tonic::Code;
use tonic::transport::Channel;

const SECRET: &str = "scaler-test-cluster-secret-0123456789";

fn scaled_object() -> keda::ScaledObjectRef {
    keda::ScaledObjectRef {
        name: "polaroid-worker".into(),
        namespace: "data".into(),
        scaler_metadata: BTreeMap::from([
            ("scalerAddress".to_owned(), "polaroid:50051".to_owned()),
            ("targetLoadPerWorker".to_owned(), "1".to_owned()),
        ]),
    }
}

async fn load(scaler: &mut ExternalScalerClient<Channel>, admin: &str) -> anyhow::Result<f64> {
    let request = keda::GetMetricsRequest {
        scaled_object_ref: Some(scaled_object()),
        metric_name: "s0-polaroid-load".into(),
    };
    let answer = scaler
        .get_metrics(with_token(request, admin))
        .await?
        .into_inner();
    Ok(answer.metric_values[0].metric_value_float)
}

async fn active(scaler: &mut ExternalScalerClient<Channel>, admin: &str) -> anyhow::Result<bool> {
    let answer = scaler.is_active(with_token(scaled_object(), admin)).await?;
    Ok(answer.into_inner().result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keda_scales_on_calls_in_flight_and_on_calls_no_worker_took() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    let (user, admin) = (new_token(), new_token());
    write_tokens(
        &tokens,
        &[
            (&user, "tenant-a", Role::User, "alice"),
            (&admin, "ops", Role::Admin, ""),
        ],
    )?;
    let env = vec![
        (
            "POLAROID_AUTH_TOKENS_FILE".to_owned(),
            tokens.to_string_lossy().into_owned(),
        ),
        ("POLAROID_AUTH_CLUSTER_SECRET".to_owned(), SECRET.to_owned()),
        // The slow REST peer below is on loopback, which workers refuse by default.
        (
            "POLAROID_REST_ALLOW_PRIVATE_NETWORKS".to_owned(),
            "true".to_owned(),
        ),
        // As the chart sets it for a pool KEDA may scale to zero.
        (
            "POLAROID_READY_WITHOUT_WORKERS".to_owned(),
            "true".to_owned(),
        ),
    ];
    let mut cluster = TestCluster::start_with_env(1, &[], &[], env, Some(admin.clone())).await?;
    let mut scaler = ExternalScalerClient::new(cluster.channel().await?);

    // An admin call: a tenant's token is refused, and so is no token.
    let as_user = scaler
        .get_metric_spec(with_token(scaled_object(), &user))
        .await;
    assert_eq!(code_of(as_user), Code::PermissionDenied);
    assert_eq!(
        code_of(scaler.get_metric_spec(scaled_object()).await),
        Code::Unauthenticated
    );
    let spec = scaler
        .get_metric_spec(with_token(scaled_object(), &admin))
        .await?
        .into_inner();
    assert_eq!(spec.metric_specs[0].metric_name, "polaroid-load");
    assert_eq!(spec.metric_specs[0].target_size_float, 1.0);

    eventually("an idle load", Duration::from_secs(10), || {
        let (mut scaler, admin) = (scaler.clone(), admin.clone());
        async move { Ok(load(&mut scaler, &admin).await? == 0.0) }
    })
    .await?;
    assert!(!active(&mut scaler, &admin).await?);

    // A call that stays in flight on the worker: a REST source that never answers.
    let peer = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/never", peer.local_addr()?);
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = peer.accept().await {
            connections.push(connection);
        }
    });
    let mut client = cluster.client().await?;
    let slow = tokio::spawn(async move {
        let request = pb::RestApiRequest {
            url,
            ..pb::RestApiRequest::default()
        };
        client.read_rest_api(with_token(request, &user)).await
    });
    eventually(
        "the call in flight in the load",
        Duration::from_secs(10),
        || {
            let (mut scaler, admin) = (scaler.clone(), admin.clone());
            async move { Ok(load(&mut scaler, &admin).await? >= 1.0) }
        },
    )
    .await?;
    assert!(active(&mut scaler, &admin).await?);
    slow.abort();
    eventually("the load back to idle", Duration::from_secs(10), || {
        let (mut scaler, admin) = (scaler.clone(), admin.clone());
        async move { Ok(load(&mut scaler, &admin).await? == 0.0) }
    })
    .await?;

    // No worker at all: the coordinator stays ready, a call finds no worker, and that is
    // the load that brings one back.
    cluster.kill_worker(0)?;
    cluster.wait_for_workers(0).await?;
    http_get(cluster.coordinator.http_address, "/readyz").await?;
    let mut client = cluster.client().await?;
    let frame = polars::df!("a" => [1i64])?;
    let request = pb::CreateFromArrowRequest {
        arrow_ipc: to_ipc(&frame).into(),
        ..pb::CreateFromArrowRequest::default()
    };
    let unserved = client.create_from_arrow(with_token(request, &admin)).await;
    assert_eq!(code_of(unserved), Code::Unavailable);
    assert_eq!(load(&mut scaler, &admin).await?, 1.0);
    assert!(active(&mut scaler, &admin).await?);
    held.abort();
    Ok(())
}
