//! Test harness: boots real workers on ephemeral loopback ports and talks to them through
//! a real tonic client, plus helpers to move frames in and out as Arrow IPC.

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use polaroid_auth::tls::ClientTls;
use polaroid_proto::v1::{self as pb, data_frame_service_client::DataFrameServiceClient};
use polaroid_worker::{WorkerConfig, WorkerError};
use polars::prelude::*;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub type Client = DataFrameServiceClient<Channel>;

/// A worker running in this process through the same `run` as the binary, on an
/// ephemeral port, with a fresh data root. Shut down when dropped.
pub struct TestWorker {
    pub address: SocketAddr,
    pub http_address: SocketAddr,
    pub data_root: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), WorkerError>>>,
}

impl TestWorker {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts a worker whose config `adjust` may change (data roots default to a temp dir).
    pub async fn start_with(adjust: impl FnOnce(&mut WorkerConfig)) -> anyhow::Result<Self> {
        let data_root = tempfile::tempdir()?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let listeners = polaroid_observability::Listeners::bind(loopback, loopback).await?;
        let address = listeners.grpc.local_addr()?;
        let http_address = listeners.http.local_addr()?;
        let mut config = WorkerConfig {
            bind_address: address,
            data_roots: vec![data_root.path().to_path_buf()],
            // Spinning threads in every test would only slow the suite; the keep-warm
            // test turns them on.
            keep_warm_micros: 0,
            ..Default::default()
        };
        adjust(&mut config);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(polaroid_worker::run(config, listeners, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            address,
            http_address,
            data_root,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        client_at(self.address).await
    }

    /// A path inside the worker's data root.
    pub fn path(&self, name: &str) -> PathBuf {
        self.data_root.path().join(name)
    }

    /// Stops the worker and waits for it to finish serving.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A DataFrameService client of `address`, with no message-size limits of its own.
pub async fn client_at(address: SocketAddr) -> anyhow::Result<Client> {
    Ok(client_over(channel_to(address, None).await?))
}

/// A DataFrameService client over `channel`, with no message-size limits of its own.
pub fn client_over(channel: Channel) -> Client {
    DataFrameServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// A channel to `address`: plaintext, or TLS with `tls`.
pub async fn channel_to(address: SocketAddr, tls: Option<&ClientTls>) -> anyhow::Result<Channel> {
    let endpoint = match tls {
        None => Channel::from_shared(format!("http://{address}"))?,
        Some(tls) => tls.endpoint(Channel::from_shared(format!("https://{address}"))?)?,
    };
    Ok(endpoint.connect().await?)
}

/// Encodes a frame as an Arrow IPC stream, as clients upload it.
pub fn to_ipc(df: &DataFrame) -> Vec<u8> {
    let mut bytes = Vec::new();
    IpcStreamWriter::new(&mut bytes)
        .finish(&mut df.clone())
        .expect("encode arrow ipc");
    bytes
}

/// Decodes one Arrow IPC stream.
pub fn from_ipc(bytes: &[u8]) -> DataFrame {
    IpcStreamReader::new(Cursor::new(bytes))
        .finish()
        .expect("decode arrow ipc")
}

/// Uploads a frame and returns its handle.
pub async fn upload(client: &mut Client, df: &DataFrame) -> anyhow::Result<String> {
    let request = pb::CreateFromArrowRequest {
        arrow_ipc: to_ipc(df).into(),
        name: None,
    };
    Ok(client.create_from_arrow(request).await?.into_inner().handle)
}

/// Uploads a frame as the caller of `token` and returns its handle.
pub async fn upload_as(
    client: &mut Client,
    token: &str,
    df: &DataFrame,
) -> Result<String, tonic::Status> {
    let request = pb::CreateFromArrowRequest {
        arrow_ipc: to_ipc(df).into(),
        name: None,
    };
    Ok(client
        .create_from_arrow(with_token(request, token))
        .await?
        .into_inner()
        .handle)
}

/// The code of a call that must fail.
#[track_caller]
pub fn code_of<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> tonic::Code {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(status) => status.code(),
    }
}

/// Writes a tokens file (after a comment line) with a line per `(token, tenant, role,
/// name)`, as `polaroid token create` makes them.
pub fn write_tokens(
    path: &Path,
    grants: &[(&str, &str, polaroid_auth::Role, &str)],
) -> std::io::Result<()> {
    let mut text = String::from("# test tokens\n");
    for (token, tenant, role, name) in grants {
        text.push_str(&polaroid_auth::token_line(token, tenant, *role, name));
        text.push('\n');
    }
    std::fs::write(path, text)
}

/// Collects a handle: every `ArrowBatch` decoded on its own, then stacked.
pub async fn collect(client: &mut Client, handle: &str) -> Result<DataFrame, tonic::Status> {
    collect_batches(client, handle, None)
        .await
        .map(|batches| stack(&batches))
}

/// Collects a handle and returns the frames of its messages, in order.
pub async fn collect_batches(
    client: &mut Client,
    handle: &str,
    limit: Option<i64>,
) -> Result<Vec<DataFrame>, tonic::Status> {
    let mut stream = client
        .collect(pb::CollectRequest {
            handle: handle.to_owned(),
            limit,
        })
        .await?
        .into_inner();
    let mut frames = Vec::new();
    while let Some(batch) = stream.message().await? {
        assert!(
            batch.error.is_none(),
            "error field must be empty on success"
        );
        frames.push(from_ipc(&batch.arrow_ipc));
    }
    Ok(frames)
}

pub fn stack(frames: &[DataFrame]) -> DataFrame {
    let mut iter = frames.iter();
    let mut whole = iter.next().cloned().unwrap_or_default();
    for frame in iter {
        whole.vstack_mut(frame).expect("batches share a schema");
    }
    whole
}

/// Asserts two frames are equal: the same column names and types in the same order
/// (`equals_missing` alone lets numeric types differ), and the same values, nulls
/// included. The message shows both.
#[track_caller]
pub fn assert_frame_eq(actual: &DataFrame, expected: &DataFrame) {
    assert!(
        actual.schema() == expected.schema() && actual.equals_missing(expected),
        "frames differ\n--- actual {:?}\n{actual}\n--- expected {:?}\n{expected}",
        actual.schema(),
        expected.schema()
    );
}

/// Writes a frame as a Parquet file.
pub fn write_parquet(path: &Path, df: &DataFrame) {
    let file = std::fs::File::create(path).expect("create parquet file");
    ParquetWriter::new(file)
        .finish(&mut df.clone())
        .expect("write parquet");
}

/// Expression builders for tests, mirroring how clients build wire expressions.
pub mod e {
    use polaroid_proto::v1::{self as pb, expression::Kind, literal_expr::Value};

    pub fn col(name: &str) -> pb::Expression {
        pb::Expression {
            kind: Some(Kind::Column(pb::ColumnExpr { name: name.into() })),
        }
    }

    pub fn lit(value: Value) -> pb::Expression {
        pb::Expression {
            kind: Some(Kind::Literal(pb::LiteralExpr { value: Some(value) })),
        }
    }

    pub fn int(v: i64) -> pb::Expression {
        lit(Value::IntVal(v))
    }

    pub fn float(v: f64) -> pb::Expression {
        lit(Value::FloatVal(v))
    }

    pub fn string(v: &str) -> pb::Expression {
        lit(Value::StringVal(v.into()))
    }

    pub fn binary(
        left: pb::Expression,
        op: pb::BinaryOperator,
        right: pb::Expression,
    ) -> pb::Expression {
        pb::Expression {
            kind: Some(Kind::Binary(Box::new(pb::BinaryExpr {
                left: Some(Box::new(left)),
                op: op as i32,
                right: Some(Box::new(right)),
            }))),
        }
    }

    pub fn unary(op: pb::UnaryOperator, expr: pb::Expression) -> pb::Expression {
        pb::Expression {
            kind: Some(Kind::Unary(Box::new(pb::UnaryExpr {
                op: op as i32,
                expr: Some(Box::new(expr)),
            }))),
        }
    }

    pub fn func(name: &str, args: Vec<pb::Expression>) -> pb::Expression {
        pb::Expression {
            kind: Some(Kind::Function(pb::FunctionExpr {
                name: name.into(),
                args,
            })),
        }
    }

    pub fn alias(expr: pb::Expression, name: &str) -> pb::Expression {
        func("alias", vec![expr, string(name)])
    }

    pub fn agg(function: pb::AggregateFunction, expr: pb::Expression) -> pb::Expression {
        pb::Expression {
            kind: Some(Kind::Aggregation(Box::new(pb::AggregationExpr {
                function: function as i32,
                expr: Some(Box::new(expr)),
                quantile: None,
            }))),
        }
    }
}

/// A helper server (S3 or Azure emulator) run as a child process on a loopback port;
/// killed when dropped.
pub struct ExternalServer {
    child: std::process::Child,
    pub port: u16,
    _state: tempfile::TempDir,
    binary: PathBuf,
    args: Vec<std::ffi::OsString>,
    name: String,
}

impl ExternalServer {
    /// Runs `binary` with `args` (which make it listen on `port`) and waits until it does.
    async fn start(
        binary: &Path,
        args: &[std::ffi::OsString],
        port: u16,
        state: tempfile::TempDir,
        name: &str,
    ) -> anyhow::Result<Self> {
        let child = std::process::Command::new(binary)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let server = Self {
            child,
            port,
            _state: state,
            binary: binary.to_owned(),
            args: args.to_vec(),
            name: name.to_owned(),
        };
        wait_for_port(port, name).await?;
        Ok(server)
    }

    /// Stops the server with SIGTERM (a clean shutdown: Redis flushes its AOF), then starts
    /// it again on the same port with the same data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        self.child.wait()?;
        self.child = std::process::Command::new(&self.binary)
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        wait_for_port(self.port, &self.name).await
    }

    /// The server's URL, for Redis.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for ExternalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(".cache")
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts connections on `port`.
async fn wait_for_port(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on port {port} within 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

fn installed(variable: &str, default: PathBuf) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or(default);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: ./scripts/test.sh installs it (or set {variable})",
        path.display()
    );
    Ok(path)
}

/// The Python venv the test script installs (moto, azure-storage-blob).
pub fn venv() -> PathBuf {
    std::env::var_os("POLAROID_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("polaroid-venv"))
}

/// A real S3-compatible server (moto) with an empty bucket `bucket`.
pub async fn s3_server(bucket: &str) -> anyhow::Result<ExternalServer> {
    let binary = installed("POLAROID_MOTO_SERVER", venv().join("bin/moto_server"))?;
    let port = free_port()?;
    let args = [
        "-H".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string().into(),
    ];
    let server =
        ExternalServer::start(&binary, &args, port, tempfile::tempdir()?, "moto_server").await?;
    // moto accepts unsigned requests.
    let response = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{port}/{bucket}"))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "creating bucket {bucket}: HTTP {}",
        response.status()
    );
    Ok(server)
}

fn options<const N: usize>(pairs: [(&str, String); N]) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}

/// The object_store settings that reach an `s3_server`.
pub fn s3_options(server: &ExternalServer) -> Vec<(String, String)> {
    options([
        ("aws_endpoint", format!("http://127.0.0.1:{}", server.port)),
        ("aws_allow_http", "true".to_owned()),
        ("aws_access_key_id", "testing".to_owned()),
        ("aws_secret_access_key", "testing".to_owned()),
        ("aws_region", "us-east-1".to_owned()),
    ])
}

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A real Azure Blob emulator (Azurite) with an empty container `container`.
pub async fn azure_server(container: &str) -> anyhow::Result<ExternalServer> {
    let binary = installed(
        "POLAROID_AZURITE",
        cache_dir().join("polaroid-node/node_modules/.bin/azurite-blob"),
    )?;
    let port = free_port()?;
    let state = tempfile::tempdir()?;
    let args = [
        "--blobHost".into(),
        "127.0.0.1".into(),
        "--blobPort".into(),
        port.to_string().into(),
        "--skipApiVersionCheck".into(),
        "--silent".into(),
        "--location".into(),
        state.path().as_os_str().to_owned(),
    ];
    let server = ExternalServer::start(&binary, &args, port, state, "azurite").await?;
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    );
    let script = "import sys\nfrom azure.storage.blob import BlobServiceClient\nBlobServiceClient.from_connection_string(sys.argv[1]).create_container(sys.argv[2])";
    let status = std::process::Command::new(venv().join("bin/python"))
        .args(["-c", script, &connection, container])
        .status()?;
    anyhow::ensure!(status.success(), "creating container {container} failed");
    Ok(server)
}

/// The object_store settings that reach an `azure_server`.
pub fn azure_options(server: &ExternalServer) -> Vec<(String, String)> {
    options([
        ("azure_storage_account_name", AZURITE_ACCOUNT.to_owned()),
        ("azure_storage_account_key", AZURITE_KEY.to_owned()),
        (
            "azure_storage_endpoint",
            format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", server.port),
        ),
        ("azure_allow_http", "true".to_owned()),
    ])
}

/// The `polaroid` binary built beside the test executables (or `POLAROID_BIN`).
pub fn polaroid_binary() -> anyhow::Result<PathBuf> {
    if let Some(explicit) = std::env::var_os("POLAROID_BIN") {
        return Ok(PathBuf::from(explicit));
    }
    // Test executables live in target/<profile>/deps; the binary in target/<profile>.
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("no target dir"))?;
    let binary = profile_dir.join("polaroid");
    anyhow::ensure!(
        binary.exists(),
        "{} not built: cargo build --workspace --bins",
        binary.display()
    );
    Ok(binary)
}

/// A `polaroid` process (worker, coordinator or standalone), as deployed: killable with
/// SIGKILL, drainable with SIGTERM.
pub struct WorkerProcess {
    child: std::process::Child,
    pub address: SocketAddr,
    pub http_address: SocketAddr,
}

/// The address at the end of a `polaroid <role> … on <address>` line.
fn announced_address(line: &str) -> anyhow::Result<SocketAddr> {
    line.trim()
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("process did not start: {line:?}"))
}

impl WorkerProcess {
    /// Runs `polaroid worker --bind 127.0.0.1:0 <args>` with extra environment variables.
    pub fn spawn(args: &[&str], env: &[(String, String)]) -> anyhow::Result<Self> {
        Self::spawn_role("worker", args, env)
    }

    /// Runs `polaroid <role>` on ephemeral loopback ports (unless `args` name a `--bind`).
    pub fn spawn_role(role: &str, args: &[&str], env: &[(String, String)]) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let mut command = std::process::Command::new(polaroid_binary()?);
        command.arg(role);
        if !args.contains(&"--bind") {
            command.args(["--bind", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(["--http-address", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().cloned())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut reader = std::io::BufReader::new(stdout);
        let (mut grpc, mut http) = (String::new(), String::new());
        reader.read_line(&mut grpc)?;
        reader.read_line(&mut http)?;
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Ok(Self {
            child,
            address: announced_address(&grpc)?,
            http_address: announced_address(&http)?,
        })
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        client_at(self.address).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.kill_in_place()
    }

    fn kill_in_place(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM: the process drains and exits on its own.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(())
    }

    /// Whether the process has exited (and how), without waiting.
    pub fn try_exit(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// The process's `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        http_get(self.http_address, "/metrics").await
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `path` over HTTP from `address`; the body of a 2xx answer.
pub async fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    let response = reqwest::get(format!("http://{address}{path}")).await?;
    let status = response.status();
    let body = response.text().await?;
    anyhow::ensure!(status.is_success(), "GET {path}: {status}: {body}");
    Ok(body)
}

/// The sum of every sample of `name` whose labels contain all of `labels`, in
/// Prometheus text format.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A cluster as deployed, each process on its own: a coordinator and workers sharing a
/// filesystem store and a data root, on ephemeral loopback ports.
pub struct TestCluster {
    pub coordinator: WorkerProcess,
    /// `None` where a worker was killed or drained.
    pub workers: Vec<Option<WorkerProcess>>,
    coordinator_args: Vec<String>,
    worker_args: Vec<String>,
    /// Environment of every process of the cluster (authentication settings).
    env: Vec<(String, String)>,
    /// The token the harness lists workers with, when the cluster requires tokens.
    admin_token: Option<String>,
    /// How the harness dials the cluster's processes when they serve TLS (and workers
    /// then dial an `https://` coordinator).
    tls: Option<ClientTls>,
    pub state: tempfile::TempDir,
    pub data_root: tempfile::TempDir,
}

impl TestCluster {
    /// A coordinator with `coordinator_args` and `workers` workers with `worker_args`,
    /// waiting until every worker is on the ring.
    pub async fn start(
        workers: usize,
        coordinator_args: &[&str],
        worker_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_with_env(workers, coordinator_args, worker_args, Vec::new(), None).await
    }

    /// [`TestCluster::start`] with `env` for every process, and the admin token the
    /// harness lists workers with when the cluster requires tokens.
    pub async fn start_with_env(
        workers: usize,
        coordinator_args: &[&str],
        worker_args: &[&str],
        env: Vec<(String, String)>,
        admin_token: Option<String>,
    ) -> anyhow::Result<Self> {
        Self::start_with_tls(
            workers,
            coordinator_args,
            worker_args,
            env,
            admin_token,
            None,
        )
        .await
    }

    /// [`TestCluster::start_with_env`] for processes that serve TLS (set in `env`), which
    /// the harness dials with `tls`.
    pub async fn start_with_tls(
        workers: usize,
        coordinator_args: &[&str],
        worker_args: &[&str],
        env: Vec<(String, String)>,
        admin_token: Option<String>,
        tls: Option<ClientTls>,
    ) -> anyhow::Result<Self> {
        let state = tempfile::tempdir()?;
        let data_root = tempfile::tempdir()?;
        let coordinator_args: Vec<String> = [
            // Short leases and refreshes: membership changes show within a second.
            "--worker-lease-secs",
            "2",
            "--membership-refresh-secs",
            "0.2",
        ]
        .iter()
        .chain(coordinator_args)
        .map(|s| s.to_string())
        .collect();
        let args: Vec<&str> = coordinator_args.iter().map(String::as_str).collect();
        let coordinator = WorkerProcess::spawn_role("coordinator", &args, &env)?;
        let mut cluster = Self {
            coordinator,
            workers: Vec::new(),
            coordinator_args,
            worker_args: worker_args.iter().map(|s| s.to_string()).collect(),
            env,
            admin_token,
            tls,
            state,
            data_root,
        };
        for _ in 0..workers {
            let worker = cluster.spawn_worker(&cluster.coordinator.address)?;
            cluster.workers.push(Some(worker));
        }
        cluster.wait_for_workers(workers).await?;
        Ok(cluster)
    }

    fn spawn_worker(&self, coordinator: &SocketAddr) -> anyhow::Result<WorkerProcess> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let coordinator_url = format!("{scheme}://{coordinator}");
        let state = self.state.path().to_string_lossy().into_owned();
        let data_root = self.data_root.path().to_string_lossy().into_owned();
        let mut args = vec![
            "--coordinator-url",
            &coordinator_url,
            "--load-report-interval-secs",
            "0.3",
            "--handle-store",
            "external",
            "--state-dir",
            &state,
            "--data-root",
            &data_root,
        ];
        args.extend(self.worker_args.iter().map(String::as_str));
        WorkerProcess::spawn(&args, &self.env)
    }

    /// A client of the coordinator.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(client_over(self.channel().await?))
    }

    /// A channel to the coordinator, over TLS when the cluster serves it.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        channel_to(self.coordinator.address, self.tls.as_ref()).await
    }

    /// A path inside the shared data root.
    pub fn path(&self, name: &str) -> PathBuf {
        self.data_root.path().join(name)
    }

    /// The live workers the coordinator routes to.
    pub async fn live_workers(&self) -> anyhow::Result<Vec<pb::WorkerInfo>> {
        list_workers_over(self.channel().await?, self.admin_token.as_deref()).await
    }

    /// Waits until `count` workers are live on the coordinator.
    pub async fn wait_for_workers(&self, count: usize) -> anyhow::Result<()> {
        eventually(
            &format!("{count} live workers"),
            std::time::Duration::from_secs(30),
            || async move { Ok(self.live_workers().await?.len() == count) },
        )
        .await
    }

    /// The index of the worker serving at `address`.
    pub fn index_of(&self, address: &str) -> Option<usize> {
        self.workers
            .iter()
            .position(|w| w.as_ref().is_some_and(|w| w.address.to_string() == address))
    }

    /// SIGKILLs worker `index`.
    pub fn kill_worker(&mut self, index: usize) -> anyhow::Result<()> {
        let worker = self.workers[index]
            .take()
            .ok_or_else(|| anyhow::anyhow!("worker {index} is not running"))?;
        worker.kill()
    }

    /// Starts a new worker in slot `index` (after a kill or drain).
    pub fn restart_worker(&mut self, index: usize) -> anyhow::Result<()> {
        let worker = self.spawn_worker(&self.coordinator.address)?;
        self.workers[index] = Some(worker);
        Ok(())
    }

    /// SIGKILLs the coordinator and starts a new one on the same address.
    pub fn restart_coordinator(&mut self) -> anyhow::Result<()> {
        self.coordinator.kill_in_place()?;
        let address = self.coordinator.address.to_string();
        let mut args: Vec<&str> = self.coordinator_args.iter().map(String::as_str).collect();
        args.extend(["--bind", &address]);
        self.coordinator = WorkerProcess::spawn_role("coordinator", &args, &self.env)?;
        Ok(())
    }
}

/// The workers a coordinator at `address` routes to.
pub async fn list_workers(address: SocketAddr) -> anyhow::Result<Vec<pb::WorkerInfo>> {
    list_workers_as(address, None).await
}

/// [`list_workers`] with an (admin) token.
pub async fn list_workers_as(
    address: SocketAddr,
    token: Option<&str>,
) -> anyhow::Result<Vec<pb::WorkerInfo>> {
    list_workers_over(channel_to(address, None).await?, token).await
}

/// [`list_workers_as`] over `channel`.
pub async fn list_workers_over(
    channel: Channel,
    token: Option<&str>,
) -> anyhow::Result<Vec<pb::WorkerInfo>> {
    use polaroid_proto::v1::cluster_service_client::ClusterServiceClient;
    let mut client = ClusterServiceClient::new(channel);
    let request = match token {
        Some(token) => with_token(pb::ListWorkersRequest {}, token),
        None => tonic::Request::new(pb::ListWorkersRequest {}),
    };
    Ok(client.list_workers(request).await?.into_inner().workers)
}

/// A request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The worker that served a call, from the response metadata.
pub fn served_by<T>(response: &tonic::Response<T>) -> String {
    response
        .metadata()
        .get(polaroid_proto::WORKER_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A redis-server on a free loopback port, with its data in a temp dir (AOF on).
pub async fn redis_server() -> anyhow::Result<ExternalServer> {
    let binary = installed(
        "POLAROID_REDIS_SERVER",
        PathBuf::from("/usr/bin/redis-server"),
    )?;
    let state = tempfile::tempdir()?;
    let port = free_port()?;
    let args: Vec<std::ffi::OsString> = vec![
        "--port".into(),
        port.to_string().into(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--dir".into(),
        state.path().into(),
        "--appendonly".into(),
        "yes".into(),
        "--save".into(),
        "".into(),
    ];
    ExternalServer::start(&binary, &args, port, state, "redis-server").await
}

/// Polls `check` until it holds, failing after `timeout`: tests wait on conditions, not
/// on fixed sleeps.
pub async fn eventually<F, Fut>(
    what: &str,
    timeout: std::time::Duration,
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// What the store records of a handle.
pub async fn handle_info(
    client: &mut Client,
    handle: &str,
) -> Result<pb::HandleInfo, tonic::Status> {
    Ok(client
        .get_handle_info(pb::HandleInfoRequest {
            handle: handle.to_owned(),
        })
        .await?
        .into_inner())
}

/// Whether the worker says `handle` is alive (and so extends its TTL).
pub async fn heartbeat(client: &mut Client, handle: &str) -> Result<bool, tonic::Status> {
    let alive = client
        .heartbeat(pb::HeartbeatRequest {
            handles: vec![handle.to_owned()],
        })
        .await?
        .into_inner()
        .alive;
    Ok(alive.get(handle).copied().unwrap_or(false))
}

/// Every file under `root`, recursively, with its size. Files that vanish while the walk
/// runs (a store at work) are skipped, and so is the filesystem store's journal
/// (`.journal`: a few bounded files per open store, no object of anyone's).
pub fn files_under(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() && entry.file_name() == ".journal" => {}
                Ok(meta) if meta.is_dir() => pending.push(entry.path()),
                Ok(meta) => files.push((entry.path(), meta.len())),
                Err(_) => {}
            }
        }
    }
    files
}

/// What a hand-made gRPC call got back: its status, message, the data it carried, its
/// content type, and whether the status came in trailers (after data, or none) rather
/// than in the headers (a call that failed before answering).
pub struct RawAnswer {
    pub code: tonic::Code,
    pub message: String,
    pub data: Vec<u8>,
    pub content_type: Option<String>,
    pub in_trailers: bool,
}

/// A call to `path` (`/package.Service/Method`) with `body` sent as it is (gRPC frames
/// made by hand) and `headers` added, over a plain HTTP/2 connection: what a client that
/// is not a gRPC library sends, and what no client library's own timers interfere with.
pub async fn raw_grpc_call(
    address: std::net::SocketAddr,
    path: &str,
    headers: &[(&'static str, &'static str)],
    body: Vec<u8>,
) -> anyhow::Result<RawAnswer> {
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) = h2::client::handshake(tcp).await?;
    tokio::spawn(connection);
    let mut request = http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut send) = sender.send_request(request.body(())?, false)?;
    // This fails ("inactive stream") when the server has answered from the headers alone
    // and closed the stream already, as it may for a compressed request, which it refuses
    // unread; the answer is read below either way.
    let _ = send.send_data(bytes::Bytes::from(body), true);
    let (parts, mut received) = response.await?.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = received.data().await {
        let chunk = chunk?;
        let _ = received.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let content_type = parts
        .headers
        .get("content-type")
        .map(|v| v.to_str())
        .transpose()?;
    let content_type = content_type.map(str::to_owned);
    let trailers = received.trailers().await?;
    let in_trailers = trailers.is_some();
    let status = trailers.unwrap_or(parts.headers);
    let text = |name: &str| status.get(name).and_then(|v| v.to_str().ok());
    Ok(RawAnswer {
        code: tonic::Code::from(text("grpc-status").unwrap_or("2").parse::<i32>()?),
        message: percent_decoded(text("grpc-message").unwrap_or_default()),
        data,
        content_type,
        in_trailers,
    })
}

/// `grpc-message` as the text it encodes.
fn percent_decoded(text: &str) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if first == b'%' => {
                bytes.push(byte);
                rest = &tail[2..];
            }
            _ => {
                bytes.push(first);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `message` as one gRPC frame, with the compressed flag as given.
pub fn grpc_frame(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}
