//! A real cluster (a coordinator and worker processes sharing a filesystem store):
//! failover under SIGKILL, draining on SIGTERM, affinity against round-robin, coordinator
//! restarts, Redis membership shared by two coordinators, health and reflection, and a
//! coordinator that keeps connections to the workers it routes to only.

use std::collections::HashMap;
use std::time::Duration;

use polaroid_proto::v1::{self as pb, BinaryOperator as Op};
use polaroid_tests::*;
use polars::prelude::*;

fn numbers(rows: i64) -> DataFrame {
    df!(
        "id" => (0..rows).collect::<Vec<i64>>(),
        "x" => (0..rows).map(|i| (i * 7) % 1000).collect::<Vec<i64>>(),
    )
    .expect("frame")
}

/// Worker id → index in the cluster's worker slots, from the coordinator's membership.
async fn worker_slots(cluster: &TestCluster) -> anyhow::Result<HashMap<String, usize>> {
    Ok(cluster
        .live_workers()
        .await?
        .into_iter()
        .filter_map(|w| Some((w.worker_id, cluster.index_of(&w.address)?)))
        .collect())
}

async fn with_column(
    client: &mut Client,
    handle: &str,
    step: i64,
) -> Result<tonic::Response<pb::DataFrameHandle>, tonic::Status> {
    client
        .with_column(pb::WithColumnRequest {
            handle: handle.to_owned(),
            name: format!("c{step}"),
            expr: Some(e::binary(e::col("x"), Op::Plus, e::int(step))),
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_survives_a_worker_killed_in_the_middle() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, &[], &[]).await?;
    let mut client = cluster.client().await?;
    let input = numbers(500);
    let mut handle = upload(&mut client, &input).await?;
    let mut expected = input.clone().lazy();
    let mut servers = Vec::new();
    for step in 0..20 {
        if step == 10 {
            // Kill the worker that owns the pipeline: every later call must still succeed.
            let owner = servers.last().cloned().unwrap_or_default();
            let slot = worker_slots(&cluster).await?[&owner];
            cluster.kill_worker(slot)?;
        }
        let response = if step % 5 == 4 {
            client
                .filter(pb::FilterRequest {
                    handle: handle.clone(),
                    predicate: Some(e::binary(e::col("x"), Op::Gte, e::int(step))),
                })
                .await?
        } else {
            with_column(&mut client, &handle, step).await?
        };
        expected = if step % 5 == 4 {
            expected.filter(col("x").gt_eq(lit(step)))
        } else {
            expected.with_column((col("x") + lit(step)).alias(format!("c{step}")))
        };
        servers.push(served_by(&response));
        handle = response.into_inner().handle;
    }
    let actual = collect(&mut client, &handle).await?;
    assert_frame_eq(&actual, &expected.collect()?);
    assert!(
        servers[..10].iter().all(|s| *s == servers[0]),
        "a pipeline stays on one worker: {servers:?}"
    );
    assert!(
        servers[10..]
            .iter()
            .all(|s| *s == servers[10] && *s != servers[0]),
        "after the kill, the next worker on the ring took the pipeline: {servers:?}"
    );
    let metrics = cluster.coordinator.metrics().await?;
    assert!(metric_sum(&metrics, "polaroid_coordinator_failovers_total", &[]) >= 1.0);

    // A replacement worker joins the ring and takes its share of new pipelines.
    let killed = (0..3)
        .find(|i| cluster.workers[*i].is_none())
        .expect("a killed slot");
    cluster.wait_for_workers(2).await?;
    cluster.restart_worker(killed)?;
    cluster.wait_for_workers(3).await?;
    let fresh = cluster.workers[killed]
        .as_ref()
        .expect("restarted")
        .address
        .to_string();
    let mut reached = false;
    for p in 0..40 {
        let response = client
            .create_from_arrow(pb::CreateFromArrowRequest {
                arrow_ipc: to_ipc(&numbers(3 + p)).into(),
                name: None,
            })
            .await?;
        let slots = worker_slots(&cluster).await?;
        if slots.get(&served_by(&response)) == Some(&killed) {
            reached = true;
            assert_eq!(cluster.index_of(&fresh), Some(killed));
            break;
        }
    }
    assert!(reached, "no new pipeline reached the restarted worker");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_finishes_its_collect_then_exits() -> anyhow::Result<()> {
    // Small messages: a long result is many of them, and flow control holds the worker.
    let mut cluster =
        TestCluster::start(3, &[], &["--max-response-message-bytes", "65536"]).await?;
    let mut client = cluster.client().await?;
    let input = numbers(4_000_000);
    let handle = upload(&mut client, &input).await?;
    let response = client
        .collect(pb::CollectRequest {
            handle: handle.clone(),
            limit: None,
        })
        .await?;
    let server = served_by(&response);
    let mut stream = response.into_inner();
    let first = stream.message().await?.expect("a first batch");
    let mut rows = from_ipc(&first.arrow_ipc).height();

    let slot = worker_slots(&cluster).await?[&server];
    let draining = cluster.workers[slot].as_ref().expect("running");
    draining.terminate()?;
    cluster.wait_for_workers(2).await?;
    assert!(
        cluster.workers[slot]
            .as_mut()
            .expect("running")
            .try_exit()?
            .is_none(),
        "the worker left the ring but waits for its collect"
    );

    let mut sum = from_ipc(&first.arrow_ipc)
        .column("x")?
        .i64()?
        .sum()
        .unwrap_or(0);
    while let Some(batch) = stream.message().await? {
        let frame = from_ipc(&batch.arrow_ipc);
        rows += frame.height();
        sum += frame.column("x")?.i64()?.sum().unwrap_or(0);
    }
    assert_eq!(rows, input.height());
    assert_eq!(Some(sum), input.column("x")?.i64()?.sum());

    let worker = cluster.workers[slot].as_mut().expect("running");
    let mut exit = None;
    eventually("the drained worker exits", Duration::from_secs(30), || {
        let status = worker.try_exit();
        let done = matches!(status, Ok(Some(_)));
        if let Ok(Some(status)) = status {
            exit = Some(status);
        }
        async move { Ok(done) }
    })
    .await?;
    assert!(
        exit.is_some_and(|s| s.success()),
        "drained cleanly: {exit:?}"
    );

    let shape = client
        .get_shape(pb::GetShapeRequest {
            handle: handle.clone(),
        })
        .await?;
    assert_ne!(served_by(&shape), server, "later calls go elsewhere");
    assert_eq!(shape.into_inner().rows, input.height() as i64);
    Ok(())
}

/// Runs 50 independent pipelines (upload, four steps, collect) through `cluster` and
/// returns the workers' own plan-cache hit ratio.
async fn plan_cache_hit_ratio(cluster: &TestCluster) -> anyhow::Result<f64> {
    let client = cluster.client().await?;
    let pipelines = (0..50).map(|p| {
        let mut client = client.clone();
        async move {
            let input = numbers(50 + p);
            let mut handle = upload(&mut client, &input).await?;
            for step in 0..4 {
                handle = with_column(&mut client, &handle, step)
                    .await?
                    .into_inner()
                    .handle;
            }
            let collected = collect(&mut client, &handle).await?;
            anyhow::ensure!(collected.height() == input.height());
            anyhow::Ok(())
        }
    });
    futures::stream::iter(pipelines)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    let (mut hits, mut misses) = (0.0, 0.0);
    for worker in cluster.workers.iter().flatten() {
        let text = worker.metrics().await?;
        hits += metric_sum(
            &text,
            "polaroid_worker_cache_hits_total",
            &[("cache", "plan")],
        );
        misses += metric_sum(
            &text,
            "polaroid_worker_cache_misses_total",
            &[("cache", "plan")],
        );
    }
    anyhow::ensure!(hits + misses >= 250.0, "every step resolved a handle");
    Ok(hits / (hits + misses))
}

use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_routing_hits_the_cache_round_robin_does_not() -> anyhow::Result<()> {
    let affinity = {
        let cluster = TestCluster::start(3, &["--routing", "affinity"], &[]).await?;
        plan_cache_hit_ratio(&cluster).await?
    };
    let round_robin = {
        let cluster = TestCluster::start(3, &["--routing", "round-robin"], &[]).await?;
        plan_cache_hit_ratio(&cluster).await?
    };
    println!("plan cache hit ratio: affinity {affinity:.3}, round-robin {round_robin:.3}");
    assert!(affinity >= 0.9, "affinity hit ratio {affinity:.3}");
    assert!(
        round_robin < affinity,
        "round-robin {round_robin:.3} vs affinity {affinity:.3}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_coordinator_loses_no_handle() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, &[], &[]).await?;
    let mut client = cluster.client().await?;
    let mut made = Vec::new();
    for p in 0..6 {
        let input = numbers(100 + p);
        let handle = upload(&mut client, &input).await?;
        let derived = with_column(&mut client, &handle, p)
            .await?
            .into_inner()
            .handle;
        let expected = input
            .clone()
            .lazy()
            .with_column((col("x") + lit(p)).alias(format!("c{p}")))
            .collect()?;
        made.push((handle, input));
        made.push((derived, expected));
    }
    cluster.restart_coordinator()?;
    cluster.wait_for_workers(3).await?;
    let mut client = cluster.client().await?;
    for (handle, expected) in &made {
        assert_frame_eq(&collect(&mut client, handle).await?, expected);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_on_redis_route_every_handle_alike() -> anyhow::Result<()> {
    let redis = redis_server().await?;
    let redis_url = format!("redis://127.0.0.1:{}/", redis.port);
    let prefix = format!("polaroid-test-{}", std::process::id());
    let coordinator_args = [
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        &prefix,
        "--worker-lease-secs",
        "2",
        "--membership-refresh-secs",
        "0.2",
    ];
    let a = WorkerProcess::spawn_role("coordinator", &coordinator_args, &[])?;
    let b = WorkerProcess::spawn_role("coordinator", &coordinator_args, &[])?;
    let state = tempfile::tempdir()?;
    let state_dir = state.path().to_string_lossy().into_owned();
    let mut workers = Vec::new();
    for (i, coordinator) in [&a, &a, &b].iter().enumerate() {
        // Workers report to either coordinator; Redis shares what they say.
        let url = format!("http://{}", coordinator.address);
        let id = format!("redis-worker-{i}");
        workers.push(WorkerProcess::spawn(
            &[
                "--coordinator-url",
                &url,
                "--worker-id",
                &id,
                "--load-report-interval-secs",
                "0.3",
                "--handle-store",
                "external",
                "--state-dir",
                &state_dir,
            ],
            &[],
        )?);
    }
    for coordinator in [&a, &b] {
        let address = coordinator.address;
        eventually(
            "3 workers on both coordinators",
            Duration::from_secs(30),
            || async move { Ok(list_workers(address).await?.len() == 3) },
        )
        .await?;
    }
    let (mut via_a, mut via_b) = (a.client().await?, b.client().await?);
    let mut servers = std::collections::HashSet::new();
    for p in 0..24 {
        // New pipelines through either coordinator.
        let creator = if p % 2 == 0 { &mut via_a } else { &mut via_b };
        let handle = upload(creator, &numbers(10 + p)).await?;
        let request = || pb::GetShapeRequest {
            handle: handle.clone(),
        };
        let (from_a, from_b) = (
            via_a.get_shape(request()).await?,
            via_b.get_shape(request()).await?,
        );
        assert_eq!(served_by(&from_a), served_by(&from_b), "handle {handle}");
        servers.insert(served_by(&from_a));
    }
    assert!(
        servers.len() >= 2,
        "pipelines spread over workers: {servers:?}"
    );
    drop(workers);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_membership_conforms() -> anyhow::Result<()> {
    let redis = redis_server().await?;
    let membership = polaroid_coordinator::RedisMembership::connect(
        &format!("redis://127.0.0.1:{}/", redis.port),
        "conformance",
    )
    .await?;
    polaroid_coordinator::membership::conformance::run_all(&membership).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_reflection_on_every_process() -> anyhow::Result<()> {
    let cluster = TestCluster::start(1, &[], &[]).await?;
    let worker = cluster.workers[0].as_ref().expect("running");
    for process in [&cluster.coordinator, worker] {
        assert_eq!(
            http_get(process.http_address, "/healthz").await?.trim(),
            "ok"
        );
        assert_eq!(
            http_get(process.http_address, "/readyz").await?.trim(),
            "ready"
        );
        let channel =
            tonic::transport::Channel::from_shared(format!("http://{}", process.address))?
                .connect()
                .await?;
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        for service in [
            "",
            "polaroid.v1.DataFrameService",
            "arrow.flight.protocol.FlightService",
        ] {
            let answer = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await?
                .into_inner();
            assert_eq!(
                answer.status(),
                tonic_health::pb::health_check_response::ServingStatus::Serving,
                "{service:?} on {}",
                process.address
            );
        }
        let services = reflected_services(channel).await?;
        for service in [
            "polaroid.v1.DataFrameService",
            "arrow.flight.protocol.FlightService",
        ] {
            assert!(services.iter().any(|s| s == service), "{services:?}");
        }
    }
    let mut client = cluster.client().await?;
    upload(&mut client, &numbers(5)).await?;
    let coordinator = cluster.coordinator.metrics().await?;
    for name in [
        "polaroid_grpc_requests_total",
        "polaroid_grpc_request_duration_seconds_bucket",
        "polaroid_coordinator_routed_calls_total",
        "polaroid_coordinator_workers_live",
    ] {
        assert!(
            metric_sum(&coordinator, name, &[]) > 0.0,
            "{name} in\n{coordinator}"
        );
    }
    assert!(
        metric_sum(
            &coordinator,
            "polaroid_grpc_requests_total",
            &[
                ("role", "coordinator"),
                ("method", "CreateFromArrow"),
                ("code", "Ok")
            ]
        ) >= 1.0
    );

    // A coordinator without workers is alive but not ready, and says why a call fails.
    let lonely = WorkerProcess::spawn_role("coordinator", &[], &[])?;
    let not_ready = http_get(lonely.http_address, "/readyz")
        .await
        .expect_err("no workers: not ready");
    assert!(not_ready.to_string().contains("503"), "{not_ready}");
    let status = lonely
        .client()
        .await?
        .get_shape(pb::GetShapeRequest {
            handle: "ph1_".into(),
        })
        .await
        .expect_err("no workers");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("no live worker"), "{status:?}");
    Ok(())
}

async fn reflected_services(channel: tonic::transport::Channel) -> anyhow::Result<Vec<String>> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let mut names = Vec::new();
    while let Some(answer) = answers.message().await? {
        if let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response {
            names.extend(list.service.into_iter().map(|s| s.name));
        }
    }
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_membership_reports_are_rejected() -> anyhow::Result<()> {
    use polaroid_proto::v1::cluster_service_client::ClusterServiceClient;
    let coordinator = WorkerProcess::spawn_role("coordinator", &[], &[])?;
    let mut client =
        ClusterServiceClient::connect(format!("http://{}", coordinator.address)).await?;
    for (worker_id, address) in [
        ("", "127.0.0.1:1"),
        ("../etc", "127.0.0.1:1"),
        ("w", "not an address"),
        ("w", "127.0.0.1:0"),
    ] {
        let status = client
            .report_load(pb::LoadReport {
                worker_id: worker_id.into(),
                address: address.into(),
                load: None,
            })
            .await
            .expect_err("rejected");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    assert!(
        list_workers(coordinator.address).await?.is_empty(),
        "nothing registered"
    );
    Ok(())
}

/// Files under every `artifacts` directory of the shared store.
fn stored_artifacts(root: &std::path::Path) -> usize {
    polaroid_tests::files_under(root)
        .iter()
        .filter(|(path, _)| {
            path.parent()
                .and_then(|directory| directory.file_name())
                .is_some_and(|name| name == "artifacts")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_the_client_is_its_error_and_stores_nothing() -> anyhow::Result<()> {
    let limit = 64 * 1024;
    let cluster =
        TestCluster::start(1, &["--max-request-message-bytes", &limit.to_string()], &[]).await?;
    let mut client = cluster.client().await?;
    // Each upload's first two chunks hold a whole Arrow stream but its end marker: the
    // worker must not store it when the client's stream fails after them. The client must
    // hear its own error, not UNAVAILABLE from the worker's stream being reset for it.
    for attempt in 0..5 {
        let ipc = to_ipc(&numbers(100 + attempt));
        let whole = &ipc[..ipc.len() - 8];
        let (first, second) = whole.split_at(whole.len() / 2);
        let [first, second, over] =
            [first.to_vec(), second.to_vec(), vec![0; limit + 1]].map(|data| {
                pb::UploadArrowChunk {
                    data: data.into(),
                    name: None,
                }
            });
        let (chunks, received) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let _ = chunks.send(first).await;
            let _ = chunks.send(second).await;
            // Time for the first chunks to reach the worker before the stream fails
            // (were they still queued at the coordinator, the reset would discard them).
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = chunks.send(over).await;
        });
        let refused = client
            .upload_arrow(tokio_stream::wrappers::ReceiverStream::new(received))
            .await;
        let status = refused.expect_err("the third chunk is over the coordinator's limit");
        // The client's own error (an oversized message: RESOURCE_EXHAUSTED, as gRPC
        // clients expect, where tonic says OUT_OF_RANGE), not UNAVAILABLE.
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("too large"), "{status:?}");
    }
    // The prefix the worker saw is a valid upload on its own.
    let ipc = to_ipc(&numbers(1000));
    let chunks = [ipc[..ipc.len() - 8].to_vec()].map(|data| pb::UploadArrowChunk {
        data: data.into(),
        name: None,
    });
    let handle = client
        .upload_arrow(tokio_stream::iter(chunks))
        .await?
        .into_inner()
        .handle;
    assert_frame_eq(&collect(&mut client, &handle).await?, &numbers(1000));
    assert_eq!(
        stored_artifacts(cluster.state.path()),
        1,
        "only the whole upload is stored"
    );
    Ok(())
}

/// A request whose message is empty (all fields default) is forwarded without an empty
/// DATA frame: h2 counts those as a flood and, after enough of them on one connection,
/// broke the coordinator's link to the worker (every call then failed with "no live
/// worker" until the next load report). It happened at the 200th such request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_requests_do_not_wear_out_the_link_to_a_worker() -> anyhow::Result<()> {
    let cluster = TestCluster::start(1, &[], &[]).await?;
    let mut client = cluster.client().await?;
    for i in 0..400 {
        client
            .heartbeat(pb::HeartbeatRequest::default())
            .await
            .map_err(|status| anyhow::anyhow!("empty heartbeat {i}: {status:?}"))?;
    }
    // Client-streaming calls of two messages or more are piped, and their stream to the
    // worker is ended after the last one.
    let ipc = to_ipc(&df!("a" => [1i64, 2, 3])?);
    let (head, tail) = ipc.split_at(ipc.len() / 2);
    for i in 0..150 {
        let chunks = [head, tail].map(|data| pb::UploadArrowChunk {
            data: data.to_vec().into(),
            name: None,
        });
        client
            .upload_arrow(tokio_stream::iter(chunks))
            .await
            .map_err(|status| anyhow::anyhow!("upload {i}: {status:?}"))?;
    }
    let handle = upload(&mut client, &df!("a" => [1i64, 2, 3])?).await?;
    assert_eq!(collect(&mut client, &handle).await?.height(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_calls_its_workers_through_their_stacks_not_sockets() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let root = tempfile::tempdir()?;
    let standalone = WorkerProcess::spawn_role(
        "standalone",
        &[
            "--state-dir",
            &state.path().to_string_lossy(),
            "--data-root",
            &root.path().to_string_lossy(),
        ],
        &[],
    )?;
    eventually("standalone ready", Duration::from_secs(30), || async {
        Ok(http_get(standalone.http_address, "/readyz")
            .await
            .is_ok_and(|r| r.trim() == "ready"))
    })
    .await?;
    let mut client = standalone.client().await?;
    let input = numbers(100);
    let handle = upload(&mut client, &input).await?;
    let derived = with_column(&mut client, &handle, 3)
        .await?
        .into_inner()
        .handle;
    let expected = input
        .lazy()
        .with_column((col("x") + lit(3i64)).alias("c3"))
        .collect()?;
    assert_frame_eq(&collect(&mut client, &derived).await?, &expected);
    // A failed call's status comes back as the worker gave it.
    client
        .drop_handle(pb::DropHandleRequest {
            handle: handle.clone(),
        })
        .await?;
    let dropped = collect(&mut client, &handle).await.err();
    assert_eq!(
        dropped.as_ref().map(tonic::Status::code),
        Some(tonic::Code::NotFound),
        "{dropped:?}"
    );

    let metrics = standalone.metrics().await?;
    let routed = metric_sum(&metrics, "polaroid_coordinator_routed_calls_total", &[]);
    let in_process = metric_sum(&metrics, "polaroid_coordinator_in_process_calls_total", &[]);
    assert!(routed >= 4.0, "{routed} calls routed");
    assert_eq!(
        in_process, routed,
        "every routed call went through the stacks"
    );
    Ok(())
}

/// The coordinator process's open sockets (its file descriptors that are sockets).
fn open_sockets(pid: u32) -> anyhow::Result<usize> {
    let mut sockets = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let target = std::fs::read_link(entry?.path()).unwrap_or_default();
        if target.to_string_lossy().starts_with("socket:") {
            sockets += 1;
        }
    }
    Ok(sockets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_come_and_go_and_the_coordinator_keeps_only_live_ones() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(1, &["--routing", "round-robin"], &[]).await?;
    let mut client = cluster.client().await?;
    let handle = upload(&mut client, &numbers(100)).await?;
    let coordinator = cluster.coordinator.pid();
    let metrics_at = cluster.coordinator.http_address;
    let links = || async move {
        let text = http_get(metrics_at, "/metrics").await?;
        anyhow::Ok(metric_sum(&text, "polaroid_coordinator_worker_links", &[]))
    };
    with_column(&mut client, &handle, 0).await?;
    let sockets_before = open_sockets(coordinator)?;
    cluster.workers.push(None);
    // Each round a new worker (a new address) joins, serves calls, and is killed.
    for round in 1..=12 {
        cluster.restart_worker(1)?;
        cluster.wait_for_workers(2).await?;
        for step in 0..4 {
            with_column(&mut client, &handle, round * 10 + step).await?;
        }
        // Round-robin sent the new worker calls: the coordinator holds a link to each.
        assert_eq!(links().await?, 2.0, "round {round}");
        cluster.kill_worker(1)?;
        cluster.wait_for_workers(1).await?;
    }
    eventually(
        "the coordinator to hold links to its one live worker only",
        Duration::from_secs(10),
        || async { Ok(links().await? == 1.0) },
    )
    .await?;
    let sockets_after = open_sockets(coordinator)?;
    assert!(
        sockets_after <= sockets_before + 2,
        "the coordinator's sockets went from {sockets_before} to {sockets_after} over 12 workers"
    );
    // Still serving.
    with_column(&mut client, &handle, 999).await?;
    Ok(())
}
