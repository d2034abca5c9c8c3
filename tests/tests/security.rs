//! Authentication and tenancy against real processes: a coordinator and two workers on
//! loopback with tokens for three tenants, tried as a hostile client would.

use std::time::Duration;

use polaroid_auth::{Role, new_token, token_line};
use polaroid_proto::flight::{self as fl, flight_service_client::FlightServiceClient};
use polaroid_proto::v1 as pb;
use polaroid_proto::v1::cluster_service_client::ClusterServiceClient;
use polaroid_tests::*;
use polars::prelude::*;
use tonic::Code;

/// Tokens of the test cluster: two users of their own tenants, and an admin.
struct Tokens {
    a: String,
    b: String,
    admin: String,
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

const SECRET: &str = "a-cluster-secret-for-these-tests-only";

fn tokens() -> anyhow::Result<Tokens> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tokens");
    let (a, b, admin) = (new_token(), new_token(), new_token());
    write_tokens(
        &file,
        &[
            (&a, "tenant-a", Role::User, "alice"),
            (&b, "tenant-b", Role::User, "bob"),
            (&admin, "ops", Role::Admin, ""),
        ],
    )?;
    Ok(Tokens {
        a,
        b,
        admin,
        file,
        _dir: dir,
    })
}

fn auth_env(tokens: &Tokens, reload_secs: &str) -> Vec<(String, String)> {
    vec![
        (
            "POLAROID_AUTH_TOKENS_FILE".into(),
            tokens.file.to_string_lossy().into_owned(),
        ),
        ("POLAROID_AUTH_CLUSTER_SECRET".into(), SECRET.into()),
        (
            "POLAROID_AUTH_TOKENS_RELOAD_SECS".into(),
            reload_secs.into(),
        ),
    ]
}

async fn secured_cluster(tokens: &Tokens, reload_secs: &str) -> anyhow::Result<TestCluster> {
    TestCluster::start_with_env(
        2,
        &[],
        &[],
        auth_env(tokens, reload_secs),
        Some(tokens.admin.clone()),
    )
    .await
}

fn sales() -> DataFrame {
    df!("id" => [1i64, 2, 3], "amount" => [10.0f64, 20.5, 3.25]).expect("frame")
}

async fn collect_as(
    client: &mut Client,
    token: &str,
    handle: &str,
) -> Result<DataFrame, tonic::Status> {
    let request = pb::CollectRequest {
        handle: handle.into(),
        limit: None,
    };
    let mut stream = client
        .collect(with_token(request, token))
        .await?
        .into_inner();
    let mut frames = Vec::new();
    while let Some(batch) = stream.message().await? {
        frames.push(from_ipc(&batch.arrow_ipc));
    }
    Ok(stack(&frames))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_make_internal_calls_or_see_the_cluster() -> anyhow::Result<()> {
    let tokens = tokens()?;
    let cluster = secured_cluster(&tokens, "2").await?;
    let before = cluster.live_workers().await?;
    assert_eq!(before.len(), 2);
    let mut members =
        ClusterServiceClient::connect(format!("http://{}", cluster.coordinator.address)).await?;

    // A rogue worker address and the removal of a live worker, with a user's token, an
    // admin's token and no token at all: each refused, the ring unchanged.
    let rogue = || pb::LoadReport {
        worker_id: "rogue".into(),
        address: "127.0.0.1:1".into(),
        load: None,
    };
    let leave = || pb::LeaveRequest {
        worker_id: before[0].worker_id.clone(),
    };
    for token in [&tokens.a, &tokens.admin] {
        let code = code_of(members.report_load(with_token(rogue(), token)).await);
        assert_eq!(code, Code::PermissionDenied);
        let code = code_of(members.leave(with_token(leave(), token)).await);
        assert_eq!(code, Code::PermissionDenied);
    }
    assert_eq!(
        code_of(members.report_load(rogue()).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(members.leave(leave()).await),
        Code::PermissionDenied
    );
    // A guessed cluster credential is refused as such.
    let mut guessed = tonic::Request::new(rogue());
    guessed.metadata_mut().insert(
        "x-polaroid-cluster-credential",
        "guessed-secret-0000000".parse()?,
    );
    assert_eq!(
        code_of(members.report_load(guessed).await),
        Code::Unauthenticated
    );
    // The ring is as it was, including after a membership refresh.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut after = cluster.live_workers().await?;
    after.sort_by(|x, y| x.worker_id.cmp(&y.worker_id));
    let mut expected = before.clone();
    expected.sort_by(|x, y| x.worker_id.cmp(&y.worker_id));
    assert_eq!(
        after.iter().map(|w| &w.address).collect::<Vec<_>>(),
        expected.iter().map(|w| &w.address).collect::<Vec<_>>()
    );

    // Listing workers is for admins.
    let listed = members
        .list_workers(with_token(pb::ListWorkersRequest {}, &tokens.a))
        .await;
    assert_eq!(code_of(listed), Code::PermissionDenied);
    let listed = members.list_workers(pb::ListWorkersRequest {}).await;
    assert_eq!(code_of(listed), Code::Unauthenticated);

    // Job validation on a worker is internal too.
    use polaroid_proto::v1::job_validation_service_client::JobValidationServiceClient;
    let worker = cluster.workers[0].as_ref().expect("worker").address;
    let mut validation = JobValidationServiceClient::connect(format!("http://{worker}")).await?;
    let request = with_token(pb::ValidateJobRequest { spec: None }, &tokens.a);
    assert_eq!(
        code_of(validation.validate_job(request).await),
        Code::PermissionDenied
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_reach_another_tenants_handles() -> anyhow::Result<()> {
    let tokens = tokens()?;
    let cluster = secured_cluster(&tokens, "2").await?;
    let mut client = cluster.client().await?;
    let theirs = upload_as(&mut client, &tokens.a, &sales()).await?;
    let ours = upload_as(&mut client, &tokens.b, &sales()).await?;
    let b = tokens.b.as_str();
    let handle = || theirs.clone();

    // Every call that names a handle, as tenant B on tenant A's handle: not found, as a
    // handle that never existed.
    let not_found = [
        (
            "collect",
            code_of(collect_as(&mut client, b, &theirs).await),
        ),
        (
            "schema",
            code_of(
                client
                    .get_schema(with_token(pb::GetSchemaRequest { handle: handle() }, b))
                    .await,
            ),
        ),
        (
            "shape",
            code_of(
                client
                    .get_shape(with_token(pb::GetShapeRequest { handle: handle() }, b))
                    .await,
            ),
        ),
        (
            "describe",
            code_of(
                client
                    .describe(with_token(
                        pb::DescribeRequest {
                            handle: handle(),
                            ..Default::default()
                        },
                        b,
                    ))
                    .await,
            ),
        ),
        (
            "head",
            code_of(
                client
                    .head(with_token(
                        pb::HeadRequest {
                            handle: handle(),
                            n: 1,
                        },
                        b,
                    ))
                    .await,
            ),
        ),
        (
            "clone",
            code_of(
                pb::data_frame_service_client::DataFrameServiceClient::clone(
                    &mut client,
                    with_token(pb::CloneRequest { handle: handle() }, b),
                )
                .await,
            ),
        ),
        (
            "join",
            code_of(
                client
                    .join(with_token(
                        pb::JoinRequest {
                            left_handle: ours.clone(),
                            right_handle: handle(),
                            on: Some(pb::JoinOn {
                                columns: vec!["id".into()],
                            }),
                            ..Default::default()
                        },
                        b,
                    ))
                    .await,
            ),
        ),
        (
            "sql",
            code_of(
                client
                    .sql(with_token(
                        pb::SqlRequest {
                            query: "SELECT * FROM t".into(),
                            tables: [("t".to_owned(), handle())].into(),
                        },
                        b,
                    ))
                    .await,
            ),
        ),
        (
            "pin",
            code_of(
                client
                    .pin(with_token(pb::PinRequest { handle: handle() }, b))
                    .await,
            ),
        ),
        (
            "unpin",
            code_of(
                client
                    .unpin(with_token(pb::PinRequest { handle: handle() }, b))
                    .await,
            ),
        ),
        (
            "persist",
            code_of(
                client
                    .persist(with_token(pb::PersistRequest { handle: handle() }, b))
                    .await,
            ),
        ),
        (
            "info",
            code_of(
                client
                    .get_handle_info(with_token(pb::HandleInfoRequest { handle: handle() }, b))
                    .await,
            ),
        ),
        (
            "write",
            code_of(
                client
                    .write_parquet(with_token(
                        pb::WriteParquetRequest {
                            handle: handle(),
                            path: "stolen.parquet".into(),
                            ..Default::default()
                        },
                        b,
                    ))
                    .await,
            ),
        ),
    ];
    for (call, code) in not_found {
        assert_eq!(code, Code::NotFound, "{call}");
    }
    assert!(!cluster.path("stolen.parquet").exists());
    // Dropping and heartbeating it from B does nothing to it.
    let dropped = client
        .drop_handle(with_token(pb::DropHandleRequest { handle: handle() }, b))
        .await?
        .into_inner();
    assert!(!dropped.success);
    let alive = client
        .heartbeat(with_token(
            pb::HeartbeatRequest {
                handles: vec![handle()],
            },
            b,
        ))
        .await?
        .into_inner()
        .alive;
    assert_eq!(alive.get(&theirs), Some(&false));

    // Over Flight, straight from each worker, as tenant B: not found either; as A: the rows.
    for worker in cluster.workers.iter().flatten() {
        let mut flight = FlightServiceClient::connect(format!("http://{}", worker.address)).await?;
        let ticket = || fl::Ticket {
            ticket: theirs.clone().into_bytes().into(),
        };
        let fetched = match flight.do_get(with_token(ticket(), b)).await {
            Ok(response) => response.into_inner().message().await.map(|_| ()),
            Err(status) => Err(status),
        };
        assert_eq!(code_of(fetched), Code::NotFound);
        let no_token = flight.do_get(ticket()).await.map(|_| ());
        assert_eq!(code_of(no_token), Code::Unauthenticated);
        let mut stream = flight
            .do_get(with_token(ticket(), &tokens.a))
            .await?
            .into_inner();
        assert!(stream.message().await?.is_some(), "A reads its own rows");
    }

    // A still has its rows, untouched.
    assert_frame_eq(
        &collect_as(&mut client, &tokens.a, &theirs).await?,
        &sales(),
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_missing_unknown_forged_revoked_and_rotated() -> anyhow::Result<()> {
    let tokens = tokens()?;
    // Reload on SIGHUP only (the interval is an hour), so rotation is what the signal does.
    let cluster = secured_cluster(&tokens, "3600").await?;
    let mut client = cluster.client().await?;
    let frame = pb::CreateFromArrowRequest {
        arrow_ipc: to_ipc(&sales()).into(),
        name: None,
    };

    let refused = client.create_from_arrow(frame.clone()).await;
    let status = refused.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("Bearer"), "{}", status.message());
    let unknown = client
        .create_from_arrow(with_token(frame.clone(), &new_token()))
        .await;
    assert_eq!(code_of(unknown), Code::Unauthenticated);
    let mut basic = tonic::Request::new(frame.clone());
    basic
        .metadata_mut()
        .insert("authorization", format!("Basic {}", tokens.a).parse()?);
    assert_eq!(
        code_of(client.create_from_arrow(basic).await),
        Code::Unauthenticated
    );

    // A forged tenant header, to the coordinator and straight to a worker: refused, even
    // with a valid token.
    let worker = cluster.workers[0].as_ref().expect("worker").address;
    for address in [cluster.coordinator.address, worker] {
        let mut target = client_at(address).await?;
        let mut forged = with_token(frame.clone(), &tokens.a);
        forged
            .metadata_mut()
            .insert("x-polaroid-tenant", "tenant-b".parse()?);
        assert_eq!(
            code_of(target.create_from_arrow(forged).await),
            Code::PermissionDenied
        );
    }

    // Rotation: A's token is replaced by a new one, and B's revoked, without a restart.
    let handle = upload_as(&mut client, &tokens.a, &sales()).await?;
    let rotated = new_token();
    std::fs::write(
        &tokens.file,
        format!(
            "{}\n{}\n",
            token_line(&rotated, "tenant-a", Role::User, "alice"),
            token_line(&tokens.admin, "ops", Role::Admin, ""),
        ),
    )?;
    let mut pids = vec![cluster.coordinator.pid()];
    pids.extend(cluster.workers.iter().flatten().map(WorkerProcess::pid));
    for pid in pids {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -HUP {pid}");
    }
    let address = cluster.coordinator.address;
    let (old, revoked) = (tokens.a.clone(), tokens.b.clone());
    eventually(
        "the old tokens to be refused",
        Duration::from_secs(10),
        || {
            let (old, revoked) = (old.clone(), revoked.clone());
            async move {
                let mut client = client_at(address).await?;
                let frame = pb::CreateFromArrowRequest {
                    arrow_ipc: to_ipc(&sales()).into(),
                    name: None,
                };
                let old = client
                    .create_from_arrow(with_token(frame.clone(), &old))
                    .await;
                let revoked = client.create_from_arrow(with_token(frame, &revoked)).await;
                Ok(old.is_err_and(|s| s.code() == Code::Unauthenticated)
                    && revoked.is_err_and(|s| s.code() == Code::Unauthenticated))
            }
        },
    )
    .await?;
    // The new token is the same tenant: its handles are still there.
    assert_frame_eq(&collect_as(&mut client, &rotated, &handle).await?, &sales());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_prints_a_token_the_servers_accept() -> anyhow::Result<()> {
    let tokens = tokens()?;
    let cluster = secured_cluster(&tokens, "0.2").await?;
    let output = std::process::Command::new(polaroid_binary()?)
        .args([
            "token",
            "create",
            "--tenant",
            "tenant-c",
            "--name",
            "carol",
            "--append-to",
        ])
        .arg(&tokens.file)
        .output()?;
    anyhow::ensure!(output.status.success(), "token create: {output:?}");
    let stdout = String::from_utf8(output.stdout)?;
    let token = stdout
        .lines()
        .find_map(|line| line.strip_prefix("token: "))
        .ok_or_else(|| anyhow::anyhow!("no token in {stdout:?}"))?
        .to_owned();
    let file = std::fs::read_to_string(&tokens.file)?;
    assert!(!file.contains(&token), "the file keeps only the hash");
    assert!(file.lines().any(|l| l.ends_with(" tenant-c user carol")));

    let address = cluster.coordinator.address;
    eventually(
        "the new token to be accepted",
        Duration::from_secs(10),
        || {
            let token = token.clone();
            async move {
                let mut client = client_at(address).await?;
                Ok(upload_as(&mut client, &token, &sales()).await.is_ok())
            }
        },
    )
    .await?;

    let refused = std::process::Command::new(polaroid_binary()?)
        .args(["token", "create", "--tenant", "../etc"])
        .output()?;
    assert!(!refused.status.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_address_without_tokens_refuses_to_start() -> anyhow::Result<()> {
    for role in ["worker", "coordinator", "standalone"] {
        let output = std::process::Command::new(polaroid_binary()?)
            .args([role, "--bind", "0.0.0.0:0", "--http-address", "127.0.0.1:0"])
            .env_remove("POLAROID_AUTH_TOKENS_FILE")
            .env_remove("POLAROID_AUTH_ALLOW_UNAUTHENTICATED")
            .output()?;
        assert!(!output.status.success(), "{role} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("tokens_file") && stderr.contains("allow_unauthenticated"),
            "{role}: {stderr}"
        );
    }
    // Allowed explicitly, it still needs a cluster secret: without one, anyone could
    // register a worker address or remove a worker.
    let output = std::process::Command::new(polaroid_binary()?)
        .args([
            "coordinator",
            "--bind",
            "0.0.0.0:0",
            "--http-address",
            "127.0.0.1:0",
        ])
        .env("POLAROID_AUTH_ALLOW_UNAUTHENTICATED", "true")
        .env_remove("POLAROID_AUTH_CLUSTER_SECRET")
        .output()?;
    assert!(!output.status.success(), "started without a cluster secret");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cluster secret"));
    // With both, it starts.
    let worker = WorkerProcess::spawn(
        &["--bind", "0.0.0.0:0"],
        &[
            ("POLAROID_AUTH_ALLOW_UNAUTHENTICATED".into(), "true".into()),
            ("POLAROID_AUTH_CLUSTER_SECRET".into(), SECRET.into()),
        ],
    )?;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], worker.address.port()));
    let mut client = client_at(address).await?;
    upload(&mut client, &sales()).await?;
    Ok(())
}

/// A job of tenant `a`'s that reads `handle` and keeps its result as a handle.
fn job_over(handle: &str, key: &str) -> pb::JobSpec {
    use polaroid_proto::v1::{job_input, plan_step::Op};
    pb::JobSpec {
        name: "head".into(),
        idempotency_key: key.into(),
        plan: Some(pb::JobPlan {
            steps: vec![pb::JobStep {
                step: Some(pb::PlanStep {
                    op: Some(Op::Head(pb::HeadRequest {
                        handle: String::new(),
                        n: 2,
                    })),
                }),
                inputs: vec![pb::JobInput {
                    input: Some(job_input::Input::Handle(handle.into())),
                }],
            }],
        }),
        sink: Some(pb::JobSink {
            keep_handle: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_their_tenants() -> anyhow::Result<()> {
    use polaroid_proto::v1::job_service_client::JobServiceClient;
    let redis = redis_server().await?;
    let url = redis.redis_url();
    let tokens = tokens()?;
    let cluster = TestCluster::start_with_env(
        1,
        &["--redis-url", &url],
        &["--redis-url", &url],
        auth_env(&tokens, "2"),
        Some(tokens.admin.clone()),
    )
    .await?;
    let mut client = cluster.client().await?;
    let mut jobs =
        JobServiceClient::connect(format!("http://{}", cluster.coordinator.address)).await?;
    let (a, b) = (tokens.a.as_str(), tokens.b.as_str());
    let theirs = upload_as(&mut client, a, &sales()).await?;

    // B cannot run a job over A's handle: validated as B, the handle is not found.
    let submitted = jobs
        .submit_job(with_token(
            pb::SubmitJobRequest {
                spec: Some(job_over(&theirs, "k")),
            },
            b,
        ))
        .await;
    assert_eq!(code_of(submitted), Code::NotFound);

    // A's job runs as A, and its result is A's handle.
    let job = jobs
        .submit_job(with_token(
            pb::SubmitJobRequest {
                spec: Some(job_over(&theirs, "k")),
            },
            a,
        ))
        .await?
        .into_inner()
        .job
        .unwrap_or_default();
    assert_eq!(job.tenant, "tenant-a");
    let id = job.id.clone();
    eventually("A's job to succeed", Duration::from_secs(60), || {
        let (mut jobs, id) = (jobs.clone(), id.clone());
        async move {
            let job = jobs
                .get_job(with_token(pb::GetJobRequest { job_id: id }, a))
                .await?
                .into_inner();
            anyhow::ensure!(
                job.state() != pb::JobState::Failed,
                "job failed: {}",
                job.error
            );
            Ok(job.state() == pb::JobState::Succeeded)
        }
    })
    .await?;
    let done = jobs
        .get_job(with_token(pb::GetJobRequest { job_id: id.clone() }, a))
        .await?
        .into_inner();
    let result = done.result.unwrap_or_default().handle;
    assert_frame_eq(
        &collect_as(&mut client, a, &result).await?,
        &sales().head(Some(2)),
    );
    assert_eq!(
        code_of(collect_as(&mut client, b, &result).await),
        Code::NotFound
    );

    // B does not see A's job by id, in its listing, or by A's idempotency key.
    let job_id = || pb::GetJobRequest { job_id: id.clone() };
    assert_eq!(
        code_of(jobs.get_job(with_token(job_id(), b)).await),
        Code::NotFound
    );
    let cancel = pb::CancelJobRequest { job_id: id.clone() };
    assert_eq!(
        code_of(jobs.cancel_job(with_token(cancel, b)).await),
        Code::NotFound
    );
    let watch = pb::WatchJobRequest { job_id: id.clone() };
    assert_eq!(
        code_of(jobs.watch_job(with_token(watch, b)).await.map(|_| ())),
        Code::NotFound
    );
    let listed = |all_tenants| pb::ListJobsRequest {
        all_tenants,
        ..Default::default()
    };
    let theirs_listed = jobs
        .list_jobs(with_token(listed(false), b))
        .await?
        .into_inner();
    assert!(theirs_listed.jobs.is_empty(), "B lists no job of A's");
    let all = jobs.list_jobs(with_token(listed(true), b)).await;
    assert_eq!(code_of(all), Code::PermissionDenied);
    // The same idempotency key in B is B's own job, not A's.
    let ours = upload_as(&mut client, b, &sales()).await?;
    let again = jobs
        .submit_job(with_token(
            pb::SubmitJobRequest {
                spec: Some(job_over(&ours, "k")),
            },
            b,
        ))
        .await?
        .into_inner();
    assert!(again.created);
    assert_ne!(again.job.unwrap_or_default().id, id);

    // An admin lists every tenant's jobs when asked to, and only then.
    let admin = tokens.admin.as_str();
    let everything = jobs
        .list_jobs(with_token(listed(true), admin))
        .await?
        .into_inner();
    let tenants: std::collections::BTreeSet<_> = everything
        .jobs
        .iter()
        .map(|job| job.tenant.as_str())
        .collect();
    assert_eq!(tenants, ["tenant-a", "tenant-b"].into());
    let own = jobs
        .list_jobs(with_token(listed(false), admin))
        .await?
        .into_inner();
    assert!(own.jobs.is_empty(), "the admin's own tenant has no jobs");
    Ok(())
}

/// A local HTTP server that counts its requests: `/allowed/data` answers rows,
/// `/allowed/out` redirects out of `/allowed`, `/other` answers rows.
async fn counting_server()
-> anyhow::Result<(String, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = |hits: std::sync::Arc<AtomicUsize>| {
        axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                hits.fetch_add(1, Ordering::SeqCst);
                next.run(request)
            },
        )
    };
    let rows = || async { r#"[{"a": 1}, {"a": 2}]"# };
    let app = axum::Router::new()
        .route("/allowed/data", get(rows))
        .route("/other", get(rows))
        .route(
            "/allowed/out",
            get(|| async { axum::response::Redirect::temporary("/other") }),
        )
        .layer(counted(hits.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://127.0.0.1:{}", address.port()), hits))
}

async fn read_rest(client: &mut Client, url: &str) -> Result<String, tonic::Status> {
    let request = pb::RestApiRequest {
        url: url.into(),
        method: "GET".into(),
        ..Default::default()
    };
    Ok(client.read_rest_api(request).await?.into_inner().handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_sources_reach_public_addresses_or_allowed_prefixes_only() -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    let (base, hits) = counting_server().await?;
    let port = base.rsplit(':').next().unwrap_or_default().to_owned();

    // By default: loopback (as an address and as a name), the metadata address, private
    // and unique-local ranges are refused, and nothing reaches the local server.
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    for url in [
        format!("{base}/other"),
        format!("http://localhost:{port}/other"),
        format!("http://[::ffff:127.0.0.1]:{port}/other"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.0.1/".to_owned(),
        "http://[fd00::1]/".to_owned(),
    ] {
        let status = read_rest(&mut client, &url).await.expect_err(&url);
        assert_eq!(status.code(), Code::PermissionDenied, "{url}: {status:?}");
        assert!(
            status.message().contains("rest_allowed_url_prefixes"),
            "{url}: {}",
            status.message()
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no refused request reached the server"
    );

    // With a prefix, only URLs under it, and redirects that stay under it.
    let prefix = format!("{base}/allowed");
    let allowed = TestWorker::start_with(|c| c.rest_allowed_url_prefixes = vec![prefix]).await?;
    let mut client = allowed.client().await?;
    let handle = read_rest(&mut client, &format!("{base}/allowed/data")).await?;
    assert_eq!(collect(&mut client, &handle).await?.height(), 2);
    let before = hits.load(Ordering::SeqCst);
    let outside = read_rest(&mut client, &format!("{base}/other")).await;
    assert_eq!(code_of(outside), Code::PermissionDenied);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "refused before any request"
    );
    let redirected = read_rest(&mut client, &format!("{base}/allowed/out")).await;
    assert_eq!(code_of(redirected), Code::PermissionDenied);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before + 1,
        "the redirect itself was fetched, its target was not"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_read_or_overwrite_another_tenants_files() -> anyhow::Result<()> {
    let tokens = tokens()?;
    let cluster = secured_cluster(&tokens, "2").await?;
    let mut client = cluster.client().await?;
    let (a, b) = (tokens.a.as_str(), tokens.b.as_str());
    let write = |handle: String, path: &str| pb::WriteParquetRequest {
        handle,
        path: path.into(),
        ..Default::default()
    };
    let read = |path: &str| pb::ReadParquetRequest {
        path: path.into(),
        ..Default::default()
    };

    // A writes a file; it lands in A's own directory of the data root.
    let theirs = upload_as(&mut client, a, &sales()).await?;
    client
        .write_parquet(with_token(write(theirs, "report.parquet"), a))
        .await?;
    let written: Vec<_> = files_under(cluster.data_root.path())
        .into_iter()
        .filter(|(path, _)| path.ends_with("report.parquet"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let absolute = written[0].0.to_string_lossy().into_owned();
    assert!(absolute.contains("/tenants/"), "{absolute}");

    // B asks for the same name: its own directory has none. B names A's file whole:
    // outside B's roots.
    let same_name = client
        .read_parquet(with_token(read("report.parquet"), b))
        .await;
    assert_eq!(code_of(same_name), Code::NotFound);
    let whole = client.read_parquet(with_token(read(&absolute), b)).await;
    assert_eq!(code_of(whole), Code::PermissionDenied);
    // B writes the same name: its own file, A's is untouched.
    let ours = upload_as(&mut client, b, &sales().head(Some(1))).await?;
    client
        .write_parquet(with_token(write(ours, "report.parquet"), b))
        .await?;
    let overwrite = upload_as(&mut client, b, &sales().head(Some(1))).await?;
    let overwritten = client
        .write_parquet(with_token(write(overwrite, &absolute), b))
        .await;
    assert_eq!(code_of(overwritten), Code::PermissionDenied);

    // A reads its own file back, whole.
    let reread = client
        .read_parquet(with_token(read("report.parquet"), a))
        .await?
        .into_inner()
        .handle;
    assert_frame_eq(&collect_as(&mut client, a, &reread).await?, &sales());
    Ok(())
}

/// A REST source that answers one row after `delay`, and the most requests it had at once.
async fn slow_server(
    delay: Duration,
) -> anyhow::Result<(String, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (running, most) = (
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicUsize::new(0)),
    );
    let slow = {
        let (running, most) = (running.clone(), most.clone());
        move || {
            let (running, most) = (running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                running.fetch_sub(1, Ordering::SeqCst);
                r#"[{"a": 1}]"#
            }
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/slow", listener.local_addr()?);
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().route("/slow", get(slow))).await
    });
    Ok((url, most))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_at_its_limit_sheds_calls_at_once() -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    let (url, most) = slow_server(Duration::from_millis(300)).await?;
    let worker = TestWorker::start_with(|c| {
        c.max_concurrent_calls = 4;
        c.rest_allow_private_networks = true;
    })
    .await?;
    let calls = (0..64).map(|i| {
        let url = format!("{url}?call={i}");
        let address = worker.address;
        tokio::spawn(async move {
            let mut client = client_at(address).await?;
            anyhow::Ok(read_rest(&mut client, &url).await.map(|_| ()))
        })
    });
    let (mut served, mut shed) = (0, 0);
    for call in futures::future::join_all(calls).await {
        match call?? {
            Ok(()) => served += 1,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    status.message().contains("limit of 4"),
                    "{}",
                    status.message()
                );
                assert!(status.metadata().contains_key("grpc-retry-pushback-ms"));
                shed += 1;
            }
            Err(status) => anyhow::bail!("neither served nor shed: {status:?}"),
        }
    }
    assert_eq!(served + shed, 64);
    assert!(served >= 4 && shed > 0, "served {served}, shed {shed}");
    assert!(
        most.load(Ordering::SeqCst) <= 4,
        "{} at once",
        most.load(Ordering::SeqCst)
    );
    // Still serving, at once.
    let mut client = worker.client().await?;
    read_rest(&mut client, &format!("{url}?after")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_requests_get_the_codes_grpc_clients_expect() -> anyhow::Result<()> {
    use polaroid_tests::e::{binary, col, int};
    let worker = TestWorker::start_with(|c| c.max_request_message_bytes = 64 * 1024).await?;
    let mut client = worker.client().await?;
    let handle = upload(&mut client, &sales()).await?;

    // Over the message limit: RESOURCE_EXHAUSTED (tonic says OUT_OF_RANGE).
    let large = df!("x" => vec![1i64; 100_000])?;
    let status = upload(&mut client, &large)
        .await
        .expect_err("over the limit");
    let status = status
        .downcast::<tonic::Status>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // An expression nested past the decoder's recursion limit: INVALID_ARGUMENT (tonic
    // says INTERNAL), and the worker goes on serving.
    let nested = |depth: usize| {
        (0..depth).fold(col("id"), |inner, _| {
            binary(inner, pb::BinaryOperator::Plus, int(1))
        })
    };
    let filter = |depth: usize| pb::FilterRequest {
        handle: handle.clone(),
        predicate: Some(binary(nested(depth), pb::BinaryOperator::Gt, int(0))),
    };
    let deep = client.filter(filter(1_000)).await;
    assert_eq!(code_of(deep), Code::InvalidArgument);
    // Within the decoder's limit (48 levels of `+` make the predicate 100 messages deep)
    // but past the engine's (90): its handle's record, 3 levels deeper, would not decode.
    let status = client
        .filter(filter(48))
        .await
        .expect_err("past the engine's bound");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("90 protobuf messages"),
        "{status:?}"
    );
    // A modest depth works, and so does the deepest the engine takes.
    let shallow = client.filter(filter(20)).await?.into_inner().handle;
    assert_eq!(collect(&mut client, &shallow).await?.height(), 3);
    let deepest = client.filter(filter(43)).await?.into_inner().handle;
    assert_eq!(collect(&mut client, &deepest).await?.height(), 3);
    Ok(())
}

/// Quotas of the test cluster: tenant-a's stored bytes and tenant-b's calls and jobs are
/// held tight; the admin's tenant has the defaults.
fn quota_config(dir: &std::path::Path, stored_bytes: usize) -> anyhow::Result<String> {
    let path = dir.join("quotas.toml");
    std::fs::write(
        &path,
        format!(
            "[quotas]\nconcurrent_calls = 0\n\n\
             [quotas.tenants.tenant-a]\nstored_bytes = {stored_bytes}\n\n\
             [quotas.tenants.tenant-b]\nconcurrent_calls = 2\nactive_jobs = 1\n"
        ),
    )?;
    Ok(path.to_string_lossy().into_owned())
}

/// A frame of `rows` rows whose values start at `first`: same size, other content.
fn numbers(first: i64, rows: i64) -> DataFrame {
    df!("n" => (first..first + rows).collect::<Vec<_>>()).expect("frame")
}

/// A REST source read as `token` on a connection of its own.
async fn read_rest_as(
    address: std::net::SocketAddr,
    url: String,
    token: String,
) -> anyhow::Result<Result<(), tonic::Status>> {
    let mut client = client_at(address).await?;
    let request = pb::RestApiRequest {
        url,
        method: "GET".into(),
        ..Default::default()
    };
    Ok(client
        .read_rest_api(with_token(request, &token))
        .await
        .map(|_| ()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_quotas_hold_exactly_at_their_limits() -> anyhow::Result<()> {
    use polaroid_proto::v1::job_service_client::JobServiceClient;
    use std::sync::atomic::Ordering;
    let tokens = tokens()?;
    let (a, b, admin) = (tokens.a.as_str(), tokens.b.as_str(), tokens.admin.as_str());
    let upload_bytes = to_ipc(&numbers(0, 1000)).len();
    let dir = tempfile::tempdir()?;
    let config = quota_config(dir.path(), 2 * upload_bytes)?;
    // Jobs wait in the queue (the worker runs none), so they stay active.
    let redis = redis_server().await?;
    let url = redis.redis_url();
    let mut env = auth_env(&tokens, "2");
    env.push(("POLAROID_REST_ALLOW_PRIVATE_NETWORKS".into(), "true".into()));
    let cluster = TestCluster::start_with_env(
        1,
        &["--config", &config, "--redis-url", &url],
        &["--config", &config],
        env,
        Some(tokens.admin.clone()),
    )
    .await?;
    let mut client = cluster.client().await?;

    // Stored bytes: two uploads fill tenant-a's quota to the byte; a third is refused,
    // and names the quota and the use. The same bytes again take no more room.
    upload_as(&mut client, a, &numbers(0, 1000)).await?;
    upload_as(&mut client, a, &numbers(1000, 1000)).await?;
    let refused = upload_as(&mut client, a, &numbers(2000, 1000))
        .await
        .expect_err("over the stored-bytes quota");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let used = format!(
        "{} bytes in use of its limit of {}",
        2 * upload_bytes,
        2 * upload_bytes
    );
    assert!(
        refused.message().contains("stored_bytes") && refused.message().contains(&used),
        "{}",
        refused.message()
    );
    assert!(
        !refused.metadata().contains_key("grpc-retry-pushback-ms"),
        "waiting does not free stored bytes"
    );
    upload_as(&mut client, a, &numbers(0, 1000)).await?;
    // tenant-b has no stored-bytes limit.
    for first in 0..3 {
        upload_as(&mut client, b, &numbers(first * 1000, 1000)).await?;
    }

    // Concurrent calls: of six slow calls of tenant-b at once, at most two run; the others
    // are refused at once, while another tenant's call goes through.
    let (slow, most) = slow_server(Duration::from_millis(400)).await?;
    let address = cluster.coordinator.address;
    let calls =
        (0..6).map(|i| tokio::spawn(read_rest_as(address, format!("{slow}?b={i}"), b.to_owned())));
    let theirs = tokio::spawn({
        let (url, token) = (format!("{slow}?ops"), admin.to_owned());
        async move {
            // Started while tenant-b's calls hold its quota.
            tokio::time::sleep(Duration::from_millis(100)).await;
            read_rest_as(address, url, token).await
        }
    });
    let (mut served, mut refused) = (0, 0);
    for call in futures::future::join_all(calls).await {
        match call?? {
            Ok(()) => served += 1,
            Err(status) if status.code() == Code::ResourceExhausted => {
                let message = status.message();
                assert!(message.contains("concurrent_calls"), "{message}");
                assert!(message.contains("limit of 2"), "{message}");
                // Waiting lifts it: the client is told how long.
                assert!(status.metadata().contains_key("grpc-retry-pushback-ms"));
                refused += 1;
            }
            Err(status) => anyhow::bail!("neither served nor refused: {status:?}"),
        }
    }
    theirs
        .await??
        .map_err(|status| anyhow::anyhow!("another tenant was refused: {status:?}"))?;
    assert!(
        served >= 2 && refused >= 1 && served + refused == 6,
        "served {served}, refused {refused}"
    );
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= 3,
        "{most} at once: tenant-b's two and another's one at most"
    );

    // Active jobs: tenant-b's first job waits in the queue; its second is refused.
    let mut jobs = JobServiceClient::connect(format!("http://{address}")).await?;
    let handle = upload_as(&mut client, b, &numbers(0, 1000)).await?;
    let submit = |key: &str| {
        with_token(
            pb::SubmitJobRequest {
                spec: Some(job_over(&handle, key)),
            },
            b,
        )
    };
    jobs.submit_job(submit("first")).await?;
    let refused = jobs
        .submit_job(submit("second"))
        .await
        .expect_err("over the active-jobs quota");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let message = refused.message();
    assert!(message.contains("active_jobs"), "{message}");
    assert!(message.contains("1 in use of its limit of 1"), "{message}");
    // Submitting the first again is the same job, not a second one.
    let again = jobs.submit_job(submit("first")).await?.into_inner();
    assert!(!again.created);

    // Usage and limits per tenant, on the processes that enforce them.
    let worker = cluster.workers[0].as_ref().expect("a worker");
    let worker_metrics = http_get(worker.http_address, "/metrics").await?;
    let tenant_a = [("tenant", "tenant-a")];
    let stored_limit = metric_sum(
        &worker_metrics,
        "polaroid_quota_stored_limit_bytes",
        &tenant_a,
    );
    assert_eq!(stored_limit, (2 * upload_bytes) as f64);
    let stored = metric_sum(&worker_metrics, "polaroid_quota_stored_bytes", &tenant_a);
    assert_eq!(stored, (2 * upload_bytes) as f64);
    let coordinator_metrics = http_get(cluster.coordinator.http_address, "/metrics").await?;
    let tenant_b = [("tenant", "tenant-b")];
    let calls_limit = metric_sum(
        &coordinator_metrics,
        "polaroid_quota_calls_limit",
        &tenant_b,
    );
    assert_eq!(calls_limit, 2.0);
    let refusals = metric_sum(
        &coordinator_metrics,
        "polaroid_quota_refusals_total",
        &tenant_b,
    );
    assert!(refusals >= 2.0, "{refusals}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_calls_count_on_every_coordinator() -> anyhow::Result<()> {
    let tokens = tokens()?;
    let b = tokens.b.as_str();
    let dir = tempfile::tempdir()?;
    let config = quota_config(dir.path(), 0)?;
    let redis = redis_server().await?;
    let url = redis.redis_url();
    let mut env = auth_env(&tokens, "2");
    env.push(("POLAROID_REST_ALLOW_PRIVATE_NETWORKS".into(), "true".into()));
    let coordinator_args = ["--config", &config, "--redis-url", &url];
    let cluster = TestCluster::start_with_env(
        1,
        &coordinator_args,
        &["--config", &config],
        env.clone(),
        Some(tokens.admin.clone()),
    )
    .await?;
    // A second coordinator on the same Redis: it sees the worker through membership.
    let mut args = coordinator_args.to_vec();
    args.extend(["--membership-refresh-secs", "0.2"]);
    let second = WorkerProcess::spawn_role("coordinator", &args, &env)?;
    eventually(
        "the second coordinator to see the worker",
        Duration::from_secs(20),
        || async { Ok(http_get(second.http_address, "/readyz").await.is_ok()) },
    )
    .await?;

    // Tenant-b's two calls in flight on the first coordinator fill its quota of two ...
    let (slow, _) = slow_server(Duration::from_secs(2)).await?;
    let first = cluster.coordinator.address;
    let held: Vec<_> = (0..2)
        .map(|i| {
            tokio::spawn(read_rest_as(
                first,
                format!("{slow}?held={i}"),
                b.to_owned(),
            ))
        })
        .collect();
    eventually(
        "the second coordinator to learn of them",
        Duration::from_secs(10),
        || async {
            let metrics = http_get(second.http_address, "/metrics").await?;
            let elsewhere = [("tenant", "tenant-b")];
            Ok(metric_sum(&metrics, "polaroid_quota_calls_elsewhere", &elsewhere) == 2.0)
        },
    )
    .await?;
    // ... so the second coordinator refuses a third, naming the cluster-wide use.
    let (fast, _) = slow_server(Duration::from_millis(1)).await?;
    let refused = read_rest_as(second.address, format!("{fast}?third"), b.to_owned())
        .await?
        .expect_err("the quota is full across the coordinators");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("2 in use of its limit of 2"),
        "{}",
        refused.message()
    );
    for call in held {
        call.await??
            .map_err(|status| anyhow::anyhow!("a held call failed: {status:?}"))?;
    }
    // Once they end, the second coordinator admits the tenant again.
    eventually("room again", Duration::from_secs(10), || async {
        Ok(
            read_rest_as(second.address, format!("{fast}?later"), b.to_owned())
                .await?
                .is_ok(),
        )
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_end_at_the_clients_deadline_or_the_servers_maximum() -> anyhow::Result<()> {
    let (slow, _) = slow_server(Duration::from_secs(3)).await?;
    let worker = TestWorker::start_with(|c| {
        c.rest_allow_private_networks = true;
        c.max_call_secs = 0.3;
    })
    .await?;
    let mut client = worker.client().await?;
    let started = std::time::Instant::now();
    let ended = read_rest(&mut client, &format!("{slow}?server")).await;
    let status = ended.expect_err("past the maximum call time");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("max_call_secs"),
        "{}",
        status.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "ended before the source answered"
    );

    // The client's own deadline, nearer than the server's, is the one that counts. Sent
    // by hand: a gRPC library's client would end the call itself at the same moment.
    let request = pb::RestApiRequest {
        url: format!("{slow}?client"),
        method: "GET".into(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let answer = raw_grpc_call(
        worker.address,
        "/polaroid.v1.DataFrameService/ReadRestApi",
        &[("grpc-timeout", "100m")],
        grpc_frame(false, &prost::Message::encode_to_vec(&request)),
    )
    .await?;
    assert_eq!(answer.code, Code::DeadlineExceeded, "{}", answer.message);
    assert!(
        answer
            .message
            .contains("within 100 ms (the client's grpc-timeout)"),
        "{}",
        answer.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The worker serves on.
    upload(&mut client, &sales()).await?;
    Ok(())
}
