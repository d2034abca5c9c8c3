//! Test harness: boots real workers on ephemeral loopback ports and talks to them through
//! a real tonic client, plus helpers to move frames in and out as Arrow IPC.

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let mut config = WorkerConfig {
            bind_address: address,
            data_roots: vec![data_root.path().to_path_buf()],
            ..Default::default()
        };
        adjust(&mut config);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(polaroid_worker::run(config, listener, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            address,
            data_root,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        let channel = Channel::from_shared(format!("http://{}", self.address))?
            .connect()
            .await?;
        Ok(DataFrameServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
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
        arrow_ipc: to_ipc(df),
        name: None,
    };
    Ok(client.create_from_arrow(request).await?.into_inner().handle)
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

/// Asserts two frames are equal, nulls included, with a readable message.
#[track_caller]
pub fn assert_frame_eq(actual: &DataFrame, expected: &DataFrame) {
    assert!(
        actual.equals_missing(expected),
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
