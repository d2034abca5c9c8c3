//! TLS and mutual TLS against real processes: a coordinator and two workers on loopback
//! that serve TLS on every port, with certificates this test makes, and whose only cluster
//! credential is a client certificate from the cluster CA (no shared secret).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use polaroid_auth::tls::ClientTls;
use polaroid_auth::{Role, Tls, TlsConfig, new_token};
use polaroid_proto::flight::{self as fl, flight_service_client::FlightServiceClient};
use polaroid_proto::v1 as pb;
use polaroid_proto::v1::cluster_service_client::ClusterServiceClient;
use polaroid_tests::*;
use polars::prelude::*;
use tonic::Code;

/// The certificates of the test: the cluster CA, a component certificate it signed (for
/// `localhost` and 127.0.0.1, usable to serve and to dial), and another CA with a client
/// certificate of its own.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    component: (PathBuf, PathBuf),
    foreign_ca: PathBuf,
    foreign_client: (PathBuf, PathBuf),
}

use polaroid_tests::pki::{issue, new_ca};

fn pki() -> anyhow::Result<Pki> {
    let dir = tempfile::tempdir()?;
    let (cluster, foreign) = (new_ca("polaroid cluster CA")?, new_ca("someone else's CA")?);
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, cluster.pem())?;
    let foreign_ca = dir.path().join("foreign-ca.crt");
    std::fs::write(&foreign_ca, foreign.pem())?;
    let component = issue(
        &cluster,
        &["localhost", "127.0.0.1"],
        dir.path(),
        "component",
    )?;
    let foreign_client = issue(&foreign, &["localhost", "127.0.0.1"], dir.path(), "foreign")?;
    Ok(Pki {
        dir,
        ca,
        component,
        foreign_ca,
        foreign_client,
    })
}

fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Tokens of a user of `tenant-a` and of an admin, in a tokens file beside the PKI.
struct Tokens {
    user: String,
    admin: String,
    file: PathBuf,
}

fn tokens(pki: &Pki) -> anyhow::Result<Tokens> {
    let (user, admin) = (new_token(), new_token());
    let file = pki.dir.path().join("tokens");
    write_tokens(
        &file,
        &[
            (&user, "tenant-a", Role::User, "alice"),
            (&admin, "ops", Role::Admin, ""),
        ],
    )?;
    Ok(Tokens { user, admin, file })
}

/// Every process serves TLS with the component certificate, asks clients for a
/// certificate of the cluster CA, and dials the others over TLS presenting its own. No
/// cluster secret: the certificate is the cluster credential.
fn cluster_env(pki: &Pki, tokens: &Tokens) -> Vec<(String, String)> {
    vec![
        ("POLAROID_TLS_CERT_FILE".into(), path(&pki.component.0)),
        ("POLAROID_TLS_KEY_FILE".into(), path(&pki.component.1)),
        ("POLAROID_TLS_CLIENT_CA_FILE".into(), path(&pki.ca)),
        ("POLAROID_TLS_CA_FILE".into(), path(&pki.ca)),
        ("POLAROID_AUTH_TOKENS_FILE".into(), path(&tokens.file)),
    ]
}

/// A user's TLS: trusts the cluster CA, presents no certificate.
fn user_tls(pki: &Pki) -> anyhow::Result<ClientTls> {
    Ok(ClientTls::from_ca_file(Some(&pki.ca))?)
}

/// TLS that trusts `ca` and presents `certificate`, as a component would.
fn presenting(ca: &Path, certificate: &(PathBuf, PathBuf)) -> anyhow::Result<ClientTls> {
    let tls = Tls::load(&TlsConfig {
        ca_file: ca.to_owned(),
        client_cert_file: certificate.0.clone(),
        client_key_file: certificate.1.clone(),
        ..TlsConfig::default()
    })?;
    tls.dialing()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no dialing TLS"))
}

async fn tls_cluster(pki: &Pki, tokens: &Tokens, args: &[&str]) -> anyhow::Result<TestCluster> {
    TestCluster::start_with_tls(
        2,
        args,
        args,
        cluster_env(pki, tokens),
        Some(tokens.admin.clone()),
        Some(user_tls(pki)?),
    )
    .await
}

fn sales() -> DataFrame {
    df!("id" => [1i64, 2, 3], "amount" => [10.0f64, 20.5, 3.25]).expect("frame")
}

/// An upload to `address` over `tls` (plaintext without), as the caller of `token`.
async fn try_upload(
    address: std::net::SocketAddr,
    tls: Option<&ClientTls>,
    token: &str,
) -> anyhow::Result<String> {
    let mut client = client_over(channel_to(address, tls).await?);
    Ok(upload_as(&mut client, token, &sales()).await?)
}

/// GETs `https://<address><path>` trusting `ca`: the body of a 2xx answer.
async fn https_get(address: std::net::SocketAddr, path: &str, ca: &Path) -> anyhow::Result<String> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca)?)?;
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .build()?;
    let response = client
        .get(format!("https://{address}{path}"))
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    anyhow::ensure!(status.is_success(), "GET {path}: {status}: {body}");
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_reaches_the_workers_through_the_coordinator_over_mtls() -> anyhow::Result<()>
{
    let pki = pki()?;
    let tokens = tokens(&pki)?;
    let cluster = tls_cluster(&pki, &tokens, &[]).await?;
    let mut client = cluster.client().await?;

    // The coordinator forwards each call to a worker over its own TLS connection,
    // presenting its certificate: the worker takes the caller it names from that alone.
    let handle = upload_as(&mut client, &tokens.user, &sales()).await?;
    let request = pb::CollectRequest {
        handle: handle.clone(),
        limit: None,
    };
    let response = client.collect(with_token(request, &tokens.user)).await?;
    let worker = served_by(&response);
    assert!(worker.starts_with("worker-"), "served by {worker:?}");
    let mut stream = response.into_inner();
    let mut frames = Vec::new();
    while let Some(batch) = stream.message().await? {
        frames.push(from_ipc(&batch.arrow_ipc));
    }
    assert_frame_eq(&stack(&frames), &sales());
    // Another tenant's token reaches nothing of it, as without TLS.
    let request = pb::HandleInfoRequest {
        handle: handle.clone(),
    };
    let anonymous = client.get_handle_info(request.clone()).await;
    assert_eq!(code_of(anonymous), Code::Unauthenticated);

    // Flight names the owning worker's TLS port, and a client fetches there with its
    // token (no client certificate).
    let mut flight = FlightServiceClient::new(cluster.channel().await?);
    let descriptor = fl::FlightDescriptor {
        r#type: fl::flight_descriptor::DescriptorType::Path as i32,
        cmd: Bytes::new(),
        path: vec![handle.clone()],
    };
    let info = flight
        .get_flight_info(with_token(descriptor, &tokens.user))
        .await?
        .into_inner();
    let location = &info.endpoint[0].location[0].uri;
    let owner = location
        .strip_prefix("grpc+tls://")
        .ok_or_else(|| anyhow::anyhow!("not a TLS location: {location}"))?;
    let owner: std::net::SocketAddr = owner.parse()?;
    assert!(cluster.index_of(&owner.to_string()).is_some(), "{owner}");
    let mut direct = FlightServiceClient::new(channel_to(owner, Some(&user_tls(&pki)?)).await?);
    let ticket = fl::Ticket {
        ticket: Bytes::copy_from_slice(handle.as_bytes()),
    };
    let mut data = direct
        .do_get(with_token(ticket, &tokens.user))
        .await?
        .into_inner();
    let mut messages = 0;
    while data.message().await?.is_some() {
        messages += 1;
    }
    assert!(messages >= 2, "a schema and a batch: {messages}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_tls_or_trusting_another_ca_are_refused() -> anyhow::Result<()> {
    let pki = pki()?;
    let tokens = tokens(&pki)?;
    let cluster = tls_cluster(&pki, &tokens, &[]).await?;
    let address = cluster.coordinator.address;

    // Plaintext to a TLS port: no call gets through.
    let plaintext = try_upload(address, None, &tokens.user).await;
    assert!(plaintext.is_err(), "a plaintext call was answered");
    // A client that trusts another CA refuses the coordinator's certificate.
    let foreign = ClientTls::from_ca_file(Some(&pki.foreign_ca))?;
    assert!(channel_to(address, Some(&foreign)).await.is_err());
    // A client certificate from another CA fails the handshake: the server takes
    // certificates of the cluster CA only.
    let impostor = presenting(&pki.ca, &pki.foreign_client)?;
    let attempt = try_upload(address, Some(&impostor), &tokens.user).await;
    assert!(
        attempt.is_err(),
        "a foreign client certificate was accepted"
    );

    // The admin port serves TLS too, with the same certificate.
    let http = cluster.coordinator.http_address;
    let metrics = https_get(http, "/metrics", &pki.ca).await?;
    assert!(
        metrics.contains("polaroid_grpc_requests_total"),
        "{metrics}"
    );
    assert_eq!(https_get(http, "/healthz", &pki.ca).await?, "ok\n");
    assert!(
        http_get(http, "/healthz").await.is_err(),
        "plaintext HTTP answered"
    );
    assert!(https_get(http, "/healthz", &pki.foreign_ca).await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_calls_need_a_client_certificate_from_the_cluster_ca() -> anyhow::Result<()> {
    let pki = pki()?;
    let tokens = tokens(&pki)?;
    let cluster = tls_cluster(&pki, &tokens, &[]).await?;
    let before = cluster.live_workers().await?;
    assert_eq!(before.len(), 2);
    let rogue = || pb::LoadReport {
        worker_id: "rogue".into(),
        address: "127.0.0.1:1".into(),
        load: None,
    };
    let leave = |worker_id: &str| pb::LeaveRequest {
        worker_id: worker_id.into(),
    };

    // Over TLS without a client certificate (and without a secret), with any token or
    // none: refused, the ring unchanged.
    let mut members = ClusterServiceClient::new(cluster.channel().await?);
    for token in [&tokens.user, &tokens.admin] {
        let code = code_of(members.report_load(with_token(rogue(), token)).await);
        assert_eq!(code, Code::PermissionDenied);
        let code = code_of(
            members
                .leave(with_token(leave(&before[0].worker_id), token))
                .await,
        );
        assert_eq!(code, Code::PermissionDenied);
    }
    assert_eq!(
        code_of(members.report_load(rogue()).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(members.leave(leave(&before[0].worker_id)).await),
        Code::PermissionDenied
    );
    // With a certificate from another CA there is no connection at all.
    let impostor = presenting(&pki.ca, &pki.foreign_client)?;
    let attempt = async {
        let mut members = ClusterServiceClient::new(
            channel_to(cluster.coordinator.address, Some(&impostor)).await?,
        );
        Ok::<_, anyhow::Error>(members.report_load(rogue()).await?)
    };
    assert!(
        attempt.await.is_err(),
        "a foreign certificate registered a worker"
    );
    assert_eq!(cluster.live_workers().await?.len(), 2);

    // A certificate from the cluster CA is a component's: its report and its leaving
    // are taken, with no secret and no token.
    let component = presenting(&pki.ca, &pki.component)?;
    let mut members =
        ClusterServiceClient::new(channel_to(cluster.coordinator.address, Some(&component)).await?);
    members.report_load(rogue()).await?;
    cluster.wait_for_workers(3).await?;
    members.leave(leave("rogue")).await?;
    cluster.wait_for_workers(2).await?;

    // A worker checks the same way: job validation is internal.
    use polaroid_proto::v1::job_validation_service_client::JobValidationServiceClient;
    let worker = cluster.workers[0].as_ref().expect("worker").address;
    let mut validation =
        JobValidationServiceClient::new(channel_to(worker, Some(&user_tls(&pki)?)).await?);
    let request = with_token(pb::ValidateJobRequest { spec: None }, &tokens.user);
    assert_eq!(
        code_of(validation.validate_job(request).await),
        Code::PermissionDenied
    );

    let metrics = https_get(cluster.coordinator.http_address, "/metrics", &pki.ca).await?;
    let refused = metric_sum(
        &metrics,
        "polaroid_auth_refused_calls_total",
        &[("reason", "internal_call")],
    );
    assert!(refused >= 6.0, "{refused} refusals counted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_validated_over_mtls_and_the_cli_speaks_tls() -> anyhow::Result<()> {
    let redis = redis_server().await?;
    let pki = pki()?;
    let tokens = tokens(&pki)?;
    let redis_url = redis.redis_url();
    let cluster = tls_cluster(&pki, &tokens, &["--redis-url", &redis_url]).await?;
    let mut client = cluster.client().await?;
    let handle = upload_as(&mut client, &tokens.user, &sales()).await?;
    // The coordinator has a worker validate the job (a tonic call over TLS with its
    // certificate), then a worker runs it.
    let spec = format!(
        r#"{{"name": "head", "plan": {{"steps": [{{"step": {{"head": {{"n": 2}}}}, "inputs": [{{"handle": "{handle}"}}]}}]}}, "sink": {{"keepHandle": true}}}}"#
    );
    let spec_file = pki.dir.path().join("job.json");
    std::fs::write(&spec_file, spec)?;
    let coordinator = format!("https://{}", cluster.coordinator.address);
    let job = |args: &[&str], ca: Option<&Path>| {
        let mut command = std::process::Command::new(polaroid_binary()?);
        command
            .arg("job")
            .args(["--coordinator", &coordinator])
            .args(args)
            .env("POLAROID_TOKEN", &tokens.user)
            .env_remove("POLAROID_CA_FILE");
        if let Some(ca) = ca {
            command.env("POLAROID_CA_FILE", ca);
        }
        Ok::<_, anyhow::Error>(command.output()?)
    };
    let submitted = job(&["submit", &path(&spec_file), "--wait"], Some(&pki.ca))?;
    let stderr = String::from_utf8_lossy(&submitted.stderr);
    assert!(submitted.status.success(), "submit: {stderr}");
    assert!(stderr.contains("succeeded: 2 rows"), "{stderr}");
    let listed = job(&["list"], Some(&pki.ca))?;
    assert!(listed.status.success());
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1);
    // Without the CA, the coordinator's certificate is not trusted.
    let untrusted = job(&["list"], None)?;
    assert!(
        !untrusted.status.success(),
        "a certificate nobody vouched for was trusted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_serves_tls_and_reaches_its_workers_on_loopback() -> anyhow::Result<()> {
    // A certificate for a name only, as a laptop's would be: the workers inside reach the
    // coordinator by address, trusting exactly this certificate.
    let dir = tempfile::tempdir()?;
    let ca = new_ca("laptop CA")?;
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca.pem())?;
    let certificate = issue(&ca, &["localhost"], dir.path(), "laptop")?;
    let state = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    let env = vec![
        ("POLAROID_TLS_CERT_FILE".to_owned(), path(&certificate.0)),
        ("POLAROID_TLS_KEY_FILE".to_owned(), path(&certificate.1)),
        ("POLAROID_KEEP_WARM_MICROS".to_owned(), "0".to_owned()),
    ];
    let standalone = WorkerProcess::spawn_role(
        "standalone",
        &[
            "--workers",
            "2",
            "--state-dir",
            &path(state.path()),
            "--data-root",
            &path(data.path()),
        ],
        &env,
    )?;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(
            &ca_file,
        )?))
        .domain_name("localhost");
    let channel =
        tonic::transport::Channel::from_shared(format!("https://{}", standalone.address))?
            .tls_config(tls)?
            .connect()
            .await?;
    let mut client = client_over(channel);
    let upload = || {
        let mut client = client.clone();
        async move {
            let request = pb::CreateFromArrowRequest {
                arrow_ipc: to_ipc(&sales()).into(),
                name: None,
            };
            client
                .create_from_arrow(request)
                .await
                .map(|r| r.into_inner().handle)
        }
    };
    // Ready once its workers have reported to the TLS port.
    eventually("a worker on the ring", Duration::from_secs(30), || async {
        Ok(upload().await.is_ok())
    })
    .await?;
    let handle = upload().await?;
    assert_frame_eq(&collect(&mut client, &handle).await?, &sales());
    Ok(())
}
