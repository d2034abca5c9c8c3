//! `StreamGrpc` against a Python gRPC server with reflection, started by the test on
//! loopback (its .proto compiled at start with grpcio-tools): replies become rows, in
//! order, every type of field in its column, with the request's metadata; the peer's
//! error midway and a peer that dies midway end the stream as docs/streams.md says;
//! a cancel resets the call (the peer sees it cancelled) and closes the connection;
//! caps; everything refused before the stream starts.

use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use polaroid_proto::v1 as pb;
use polaroid_tests::*;
use polars::prelude::*;
use prost::Message as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::Code;

type Batches = tonic::Streaming<pb::ArrowBatch>;

/// The peer's request message, encoded here by hand: the worker has no code for it.
#[derive(Clone, PartialEq, prost::Message)]
struct TickRequest {
    #[prost(string, tag = "1")]
    mode: String,
    #[prost(int32, tag = "2")]
    count: i32,
}

const PEER: &str = r#"
import os, sys, tempfile, time, importlib.resources
from concurrent import futures
import grpc
from grpc_tools import protoc

PROTO = '''
syntax = "proto3";
package peer.v1;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

enum Color { COLOR_UNSPECIFIED = 0; RED = 1; GREEN = 2; }
message Point { double x = 1; double y = 2; }
message Tree { string label = 1; repeated Tree children = 2; }
message TickRequest { string mode = 1; int32 count = 2; }
message Tick {
  int64 id = 1;
  string name = 2;
  optional double score = 3;
  bool odd = 4;
  Color color = 5;
  repeated int32 values = 6;
  Point point = 7;
  repeated Point path = 8;
  bytes raw = 9;
  google.protobuf.Timestamp at = 10;
  map<string, int64> counts = 11;
  uint32 small = 12;
  google.protobuf.StringValue note = 13;
  Tree tree = 14;
  oneof choice { string word = 15; int32 number = 16; }
}
service Ticker {
  rpc Ticks(TickRequest) returns (stream Tick);
  rpc One(TickRequest) returns (Tick);
}
'''

work = tempfile.mkdtemp()
with open(os.path.join(work, "peer.proto"), "w") as f:
    f.write(PROTO)
include = str(importlib.resources.files("grpc_tools") / "_proto")
if protoc.main(["protoc", "-I" + work, "-I" + include, "--python_out=" + work,
                "--grpc_python_out=" + work, "peer.proto"]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, work)
import peer_pb2, peer_pb2_grpc

def tick(i, token):
    t = peer_pb2.Tick(id=i, name=f"t{i}" + (f":{token}" if token else ""), odd=i % 2 == 1,
                      color=peer_pb2.RED if i % 2 else peer_pb2.GREEN,
                      values=list(range(i % 4)), raw=bytes([i % 256]), small=i)
    if i % 2 == 0:
        t.score = i / 2
        t.counts["b"] = -i
        t.counts["a"] = i
        t.word = f"w{i}"
    else:
        t.number = i
    if i != 1:
        t.point.SetInParent()
        t.point.x = i
        t.point.y = -i
    for j in range(i % 3):
        t.path.add(x=j, y=j * 10)
    t.at.seconds = 1_700_000_000 + i
    t.at.nanos = i * 1000
    if i % 3 == 0:
        t.note.value = f"n{i}"
    t.tree.label = "root"
    t.tree.children.add(label=f"c{i}")
    return t

class Ticker(peer_pb2_grpc.TickerServicer):
    def Ticks(self, request, context):
        done = {"ok": False}
        def ended():
            if not done["ok"]:
                print(f"cancelled {request.mode}", flush=True)
        context.add_callback(ended)
        token = dict(context.invocation_metadata()).get("x-token", "")
        mode = request.mode
        if mode == "denied":
            done["ok"] = True
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "no access")
        if mode == "endless":
            i = 0
            while context.is_active():
                yield tick(i, token)
                i += 1
                time.sleep(0.02)
            return
        for i in range(request.count):
            yield tick(i, token)
        if mode == "fail":
            time.sleep(0.2)
            done["ok"] = True
            context.abort(grpc.StatusCode.INTERNAL, f"ledger broke after {request.count}")
        if mode == "die":
            time.sleep(0.3)
            os._exit(1)
        done["ok"] = True

    def One(self, request, context):
        return tick(0, "")

server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
peer_pb2_grpc.add_TickerServicer_to_server(Ticker(), server)
if "--no-reflection" not in sys.argv:
    from grpc_reflection.v1alpha import reflection
    names = (peer_pb2.DESCRIPTOR.services_by_name["Ticker"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
if "--tls" in sys.argv:
    folder = sys.argv[sys.argv.index("--tls") + 1]
    read = lambda name: open(os.path.join(folder, name), "rb").read()
    credentials = grpc.ssl_server_credentials(
        [(read("server.key"), read("server.crt"))], root_certificates=read("ca.crt"),
        require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", credentials)
else:
    port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"#;

/// The Python peer: its port, and the lines it printed since (calls it saw cancelled).
struct Peer {
    child: std::process::Child,
    port: u16,
    said: Arc<Mutex<Vec<String>>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    async fn start(reflection: bool) -> anyhow::Result<Self> {
        Self::start_with(reflection, None).await
    }

    /// With `tls`, a folder holding `server.crt`, `server.key` and `ca.crt`: the peer
    /// serves TLS and asks for a client certificate `ca.crt` signed.
    async fn start_with(reflection: bool, tls: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let python = std::env::var_os("POLAROID_PYTHON")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| venv().join("bin/python"));
        let mut command = std::process::Command::new(python);
        command.args(["-c", PEER]);
        if !reflection {
            command.arg("--no-reflection");
        }
        if let Some(folder) = tls {
            command.arg("--tls").arg(folder);
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (port_sender, port) = tokio::sync::oneshot::channel();
        let said = Arc::new(Mutex::new(Vec::new()));
        let lines = said.clone();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stdout).lines();
            let first = reader.next().and_then(Result::ok).unwrap_or_default();
            let _ = port_sender.send(first);
            for line in reader.map_while(Result::ok) {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        });
        let line = tokio::time::timeout(Duration::from_secs(60), port).await??;
        let port = line.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "the gRPC peer did not start (are grpcio, grpcio-tools and grpcio-reflection in {}? ./scripts/test.sh installs them): `{line}`",
                venv().display()
            )
        })?;
        Ok(Self { child, port, said })
    }

    fn said(&self, line: &str) -> bool {
        self.said
            .lock()
            .map(|lines| lines.iter().any(|l| l == line))
            .unwrap_or(false)
    }

    fn request(&self, mode: &str, count: i32) -> pb::GrpcStreamRequest {
        pb::GrpcStreamRequest {
            endpoint: format!("http://127.0.0.1:{}", self.port),
            service: "peer.v1.Ticker".into(),
            method: "Ticks".into(),
            request_proto: TickRequest {
                mode: mode.into(),
                count,
            }
            .encode_to_vec()
            .into(),
            ..Default::default()
        }
    }
}

/// TCP connections the peer on `port` has open: [`open_connections`] over IPv4 and IPv6
/// (gRPC's Python server holds its IPv4 connections as IPv4-mapped IPv6 ones).
fn connections(port: u16) -> anyhow::Result<usize> {
    let local = format!(":{port:04X}");
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = std::fs::read_to_string(table) else {
            continue;
        };
        count += table
            .lines()
            .skip(1)
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3 && fields[1].ends_with(&local) && matches!(fields[3], "01" | "08")
            })
            .count();
    }
    Ok(count)
}

/// Every message until the stream ends: its frames and how it ended.
async fn drain(mut stream: Batches) -> (Vec<DataFrame>, Result<(), tonic::Status>) {
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
            Err(_) => return (frames, Err(tonic::Status::deadline_exceeded("no end"))),
            Ok(Ok(Some(batch))) => frames.push(from_ipc(&batch.arrow_ipc)),
            Ok(Ok(None)) => return (frames, Ok(())),
            Ok(Err(status)) => return (frames, Err(status)),
        }
    }
}

#[track_caller]
fn ended_with(result: Result<(), tonic::Status>, code: Code, says: &str) {
    let status = result.expect_err("should end with an error");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(says),
        "`{}` should say `{says}`",
        status.message()
    );
}

fn ids(df: &DataFrame) -> Vec<i64> {
    df.column("id")
        .expect("id")
        .i64()
        .expect("Int64")
        .iter()
        .flatten()
        .collect()
}

/// Row `row` of list column `name`, as a series.
fn list_at(df: &DataFrame, name: &str, row: usize) -> Series {
    df.column(name)
        .expect(name)
        .list()
        .expect("a list")
        .get_as_series(row)
        .expect("not null")
}

/// The floats of field `field` of a struct series.
fn floats(structs: &Series, field: &str) -> Vec<f64> {
    structs
        .struct_()
        .expect("structs")
        .field_by_name(field)
        .expect(field)
        .f64()
        .expect("Float64")
        .iter()
        .flatten()
        .collect()
}

/// Row `row` of `df` holds what the peer's `tick(i, token)` sent.
#[track_caller]
fn assert_tick(df: &DataFrame, row: usize, i: i64, token: &str) {
    let value = |name: &str| df.column(name).expect(name).get(row).expect("row");
    let null = |name: &str| df.column(name).expect(name).is_null().get(row) == Some(true);
    assert_eq!(value("id"), AnyValue::Int64(i));
    let name = if token.is_empty() {
        format!("t{i}")
    } else {
        format!("t{i}:{token}")
    };
    assert_eq!(value("name"), AnyValue::String(&name));
    let counts = list_at(df, "counts", row);
    let entries = counts.struct_().expect("entries");
    let keys: Vec<String> = entries
        .field_by_name("key")
        .expect("key")
        .str()
        .expect("String")
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    let counted: Vec<i64> = entries
        .field_by_name("value")
        .expect("value")
        .i64()
        .expect("Int64")
        .iter()
        .flatten()
        .collect();
    if i % 2 == 0 {
        assert_eq!(value("score"), AnyValue::Float64(i as f64 / 2.0));
        assert_eq!(value("word"), AnyValue::String(&format!("w{i}")));
        assert!(null("number"), "the oneof's other member is null");
        assert_eq!(keys, ["a", "b"], "map entries in key order");
        assert_eq!(counted, [i, -i]);
    } else {
        assert!(null("score"), "an unset optional is null");
        assert!(null("word"));
        assert_eq!(value("number"), AnyValue::Int32(i as i32));
        assert!(keys.is_empty());
    }
    assert_eq!(value("odd"), AnyValue::Boolean(i % 2 == 1));
    let color = if i % 2 == 1 { "RED" } else { "GREEN" };
    assert_eq!(value("color"), AnyValue::String(color));
    let values: Vec<i32> = list_at(df, "values", row)
        .i32()
        .expect("Int32")
        .iter()
        .flatten()
        .collect();
    assert_eq!(values, (0..(i % 4) as i32).collect::<Vec<_>>());
    if i == 1 {
        assert!(null("point"), "an unset message is null");
    } else {
        let point = df
            .column("point")
            .expect("point")
            .as_materialized_series()
            .slice(row as i64, 1);
        assert_eq!(floats(&point, "x"), [i as f64]);
        assert_eq!(floats(&point, "y"), [-i as f64]);
    }
    let path = list_at(df, "path", row);
    let steps: Vec<f64> = (0..i % 3).map(|j| j as f64).collect();
    assert_eq!(floats(&path, "x"), steps);
    assert_eq!(
        floats(&path, "y"),
        steps.iter().map(|j| j * 10.0).collect::<Vec<_>>()
    );
    assert_eq!(value("raw"), AnyValue::Binary(&[(i % 256) as u8]));
    let at = df
        .column("at")
        .expect("at")
        .cast(&DataType::Int64)
        .expect("micros");
    assert_eq!(
        at.i64().expect("Int64").get(row),
        Some((1_700_000_000 + i) * 1_000_000 + i)
    );
    assert_eq!(value("small"), AnyValue::UInt32(i as u32));
    if i % 3 == 0 {
        assert_eq!(value("note"), AnyValue::String(&format!("n{i}")));
    } else {
        assert!(null("note"), "an unset wrapper is null");
    }
    let tree = df.column("tree").expect("tree").struct_().expect("struct");
    let label = tree.field_by_name("label").expect("label");
    assert_eq!(label.get(row).expect("row"), AnyValue::String("root"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_become_rows_in_order() -> anyhow::Result<()> {
    let peer = Peer::start(true).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let request = pb::GrpcStreamRequest {
        metadata: [("x-token".to_owned(), "secret".to_owned())].into(),
        batch_rows: Some(3),
        ..peer.request("count", 8)
    };
    let (frames, end) = drain(client.stream_grpc(request).await?.into_inner()).await;
    end?;
    assert!(frames.iter().all(|f| f.height() <= 3), "batch_rows at most");
    let whole = stack(&frames);
    assert_eq!(
        ids(&whole),
        (0..8).collect::<Vec<i64>>(),
        "the peer's order"
    );
    for i in 0..8 {
        assert_tick(&whole, i as usize, i, "secret");
    }
    let positions: Vec<&str> = whole
        .column("_source_position")?
        .str()?
        .iter()
        .flatten()
        .collect();
    assert_eq!(positions, ["0", "1", "2", "3", "4", "5", "6", "7"]);

    // The columns come from the descriptor, in field order, whatever the replies set.
    let schema = whole.schema();
    let types: Vec<(String, String)> = schema
        .iter()
        .map(|(name, dtype)| (name.to_string(), dtype.to_string()))
        .collect();
    let expected: Vec<(&str, DataType)> = vec![
        ("id", DataType::Int64),
        ("name", DataType::String),
        ("score", DataType::Float64),
        ("odd", DataType::Boolean),
        ("color", DataType::String),
        ("values", DataType::List(Box::new(DataType::Int32))),
        (
            "point",
            DataType::Struct(vec![
                Field::new("x".into(), DataType::Float64),
                Field::new("y".into(), DataType::Float64),
            ]),
        ),
        (
            "path",
            DataType::List(Box::new(DataType::Struct(vec![
                Field::new("x".into(), DataType::Float64),
                Field::new("y".into(), DataType::Float64),
            ]))),
        ),
        ("raw", DataType::Binary),
        (
            "at",
            DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
        ),
        (
            "counts",
            DataType::List(Box::new(DataType::Struct(vec![
                Field::new("key".into(), DataType::String),
                Field::new("value".into(), DataType::Int64),
            ]))),
        ),
        ("small", DataType::UInt32),
        ("note", DataType::String),
        (
            "tree",
            DataType::Struct(vec![
                Field::new("label".into(), DataType::String),
                // Tree holds Trees: the recursion is sent encoded.
                Field::new(
                    "children".into(),
                    DataType::List(Box::new(DataType::Binary)),
                ),
            ]),
        ),
        ("word", DataType::String),
        ("number", DataType::Int32),
        (
            "_received_at",
            DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
        ),
        ("_source_position", DataType::String),
    ];
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(name, dtype)| (name.to_owned(), dtype.to_string()))
        .collect();
    assert_eq!(types, expected);
    for frame in &frames {
        assert_eq!(
            frame.schema(),
            whole.schema(),
            "every message the same columns"
        );
    }

    // No reply at all: one message without rows, with the columns.
    let (frames, end) = drain(
        client
            .stream_grpc(peer.request("count", 0))
            .await?
            .into_inner(),
    )
    .await;
    end?;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].height(), 0);
    assert_eq!(frames[0].width(), 18);
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peers_errors_end_the_stream() -> anyhow::Result<()> {
    let peer = Peer::start(true).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;

    // The peer's status midway: its code and message, after the rows it sent.
    let (frames, end) = drain(
        client
            .stream_grpc(peer.request("fail", 3))
            .await?
            .into_inner(),
    )
    .await;
    assert_eq!(ids(&stack(&frames)), [0, 1, 2]);
    ended_with(
        end,
        Code::Unavailable,
        "INTERNAL (13): ledger broke after 3",
    );

    // A refusal of the peer's own, before any reply, as the caller reads it.
    let (_, end) = drain(
        client
            .stream_grpc(peer.request("denied", 0))
            .await?
            .into_inner(),
    )
    .await;
    ended_with(
        end,
        Code::PermissionDenied,
        "PERMISSION_DENIED (7): no access",
    );

    // A peer that dies midway: UNAVAILABLE, after the rows it sent.
    let dying = Peer::start(true).await?;
    let (frames, end) = drain(
        client
            .stream_grpc(dying.request("die", 2))
            .await?
            .into_inner(),
    )
    .await;
    assert_eq!(ids(&stack(&frames)), [0, 1]);
    ended_with(end, Code::Unavailable, &format!("127.0.0.1:{}", dying.port));
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_resets_the_call_and_closes_the_connection() -> anyhow::Result<()> {
    let peer = Peer::start(true).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let mut stream = client
        .stream_grpc(pb::GrpcStreamRequest {
            batch_rows: Some(1),
            ..peer.request("endless", 0)
        })
        .await?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await??
        .ok_or_else(|| anyhow::anyhow!("no message"))?;
    assert_eq!(ids(&from_ipc(&first.arrow_ipc)), [0]);
    assert_eq!(connections(peer.port)?, 1);
    drop(stream);
    eventually(
        "the peer to see the call cancelled",
        Duration::from_secs(10),
        || async { Ok(peer.said("cancelled endless")) },
    )
    .await?;
    eventually(
        "the connection to close",
        Duration::from_secs(10),
        || async { Ok(connections(peer.port)? == 0) },
    )
    .await?;
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_end_the_stream() -> anyhow::Result<()> {
    let peer = Peer::start(true).await?;
    let worker = TestWorker::start_with(|c| {
        c.rest_allow_private_networks = true;
        c.stream_max_rows = 5;
    })
    .await?;
    let mut client = worker.client().await?;
    let (frames, end) = drain(
        client
            .stream_grpc(peer.request("endless", 0))
            .await?
            .into_inner(),
    )
    .await;
    assert_eq!(ids(&stack(&frames)), [0, 1, 2, 3, 4], "exactly the cap");
    ended_with(end, Code::ResourceExhausted, "stream_max_rows");
    eventually(
        "the peer to see the call cancelled",
        Duration::from_secs(10),
        || async { Ok(peer.said("cancelled endless")) },
    )
    .await?;
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_before_the_stream_starts() -> anyhow::Result<()> {
    let peer = Peer::start(true).await?;
    let blind = Peer::start(false).await?;

    // Loopback is refused unless the operator allows private networks.
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let refused = client
        .stream_grpc(peer.request("count", 1))
        .await
        .map(|_| ());
    ended_with(refused, Code::PermissionDenied, "loopback");
    worker.stop().await?;

    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let good = || peer.request("count", 1);
    for (bad, code, says) in [
        (
            pb::GrpcStreamRequest {
                endpoint: format!("ws://127.0.0.1:{}", peer.port),
                ..good()
            },
            Code::InvalidArgument,
            "endpoint (1)",
        ),
        (
            pb::GrpcStreamRequest {
                endpoint: format!("http://127.0.0.1:{}/x", peer.port),
                ..good()
            },
            Code::InvalidArgument,
            "endpoint (1)",
        ),
        (
            pb::GrpcStreamRequest {
                service: "peer.v1.Nope".into(),
                ..good()
            },
            Code::NotFound,
            "service (2)",
        ),
        (
            pb::GrpcStreamRequest {
                method: "Nope".into(),
                ..good()
            },
            Code::NotFound,
            "method (3) `Nope`",
        ),
        (
            pb::GrpcStreamRequest {
                method: "One".into(),
                ..good()
            },
            Code::InvalidArgument,
            "method (3) peer.v1.Ticker.One is unary",
        ),
        (
            pb::GrpcStreamRequest {
                request_proto: vec![0x0a, 0x05, b'a'].into(),
                ..good()
            },
            Code::InvalidArgument,
            "request_proto (4)",
        ),
        (
            pb::GrpcStreamRequest {
                metadata: [("bad name".to_owned(), "x".to_owned())].into(),
                ..good()
            },
            Code::InvalidArgument,
            "metadata (5)",
        ),
        (
            pb::GrpcStreamRequest {
                metadata: [("grpc-timeout".to_owned(), "1S".to_owned())].into(),
                ..good()
            },
            Code::InvalidArgument,
            "metadata (5)",
        ),
        (
            pb::GrpcStreamRequest {
                tls: Some(pb::TlsConfig {
                    enabled: false,
                    ca_cert: Some("-----BEGIN CERTIFICATE-----".into()),
                    ..Default::default()
                }),
                ..good()
            },
            Code::InvalidArgument,
            "tls (6)",
        ),
        (
            pb::GrpcStreamRequest {
                tls: Some(pb::TlsConfig {
                    enabled: true,
                    client_cert: Some("x".into()),
                    ..Default::default()
                }),
                ..good()
            },
            Code::InvalidArgument,
            "client_key (4)",
        ),
        (
            pb::GrpcStreamRequest {
                batch_rows: Some(0),
                ..good()
            },
            Code::InvalidArgument,
            "batch_rows (7)",
        ),
        (
            pb::GrpcStreamRequest {
                max_wait_ms: Some(0),
                ..good()
            },
            Code::InvalidArgument,
            "max_wait_ms (8)",
        ),
        (
            blind.request("count", 1),
            Code::FailedPrecondition,
            "serves no gRPC reflection",
        ),
        (
            pb::GrpcStreamRequest {
                endpoint: format!("http://127.0.0.1:{closed}"),
                ..good()
            },
            Code::Unavailable,
            &format!("127.0.0.1:{closed}"),
        ),
    ] {
        let refused = client.stream_grpc(bad).await.map(|_| ());
        ended_with(refused, code, says);
    }
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate() -> anyhow::Result<()> {
    let folder = tempfile::tempdir()?;
    let ca_params = {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "peer CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
    };
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let issue = |name: &str| -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &ca)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = issue("127.0.0.1")?;
    std::fs::write(folder.path().join("server.crt"), server_cert)?;
    std::fs::write(folder.path().join("server.key"), server_key)?;
    std::fs::write(folder.path().join("ca.crt"), ca.pem())?;
    let (client_cert, client_key) = issue("polaroid-worker")?;
    let peer = Peer::start_with(true, Some(folder.path())).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let secure = |tls: pb::TlsConfig| pb::GrpcStreamRequest {
        endpoint: format!("https://127.0.0.1:{}", peer.port),
        tls: Some(tls),
        ..peer.request("count", 3)
    };
    let (frames, end) = drain(
        client
            .stream_grpc(secure(pb::TlsConfig {
                enabled: true,
                ca_cert: Some(ca.pem()),
                client_cert: Some(client_cert.clone()),
                client_key: Some(client_key.clone()),
            }))
            .await?
            .into_inner(),
    )
    .await;
    end?;
    assert_eq!(ids(&stack(&frames)), [0, 1, 2]);

    // Without the client certificate the peer refuses the handshake; with the system's
    // roots the peer's certificate is not trusted: both before the stream starts.
    for tls in [
        pb::TlsConfig {
            enabled: true,
            ca_cert: Some(ca.pem()),
            ..Default::default()
        },
        pb::TlsConfig {
            enabled: true,
            client_cert: Some(client_cert.clone()),
            client_key: Some(client_key.clone()),
            ..Default::default()
        },
    ] {
        let refused = client.stream_grpc(secure(tls)).await.map(|_| ());
        ended_with(
            refused,
            Code::Unavailable,
            &format!("127.0.0.1:{}", peer.port),
        );
    }
    // Not PEM.
    let refused = client
        .stream_grpc(secure(pb::TlsConfig {
            enabled: true,
            ca_cert: Some("not a certificate".into()),
            ..Default::default()
        }))
        .await
        .map(|_| ());
    ended_with(refused, Code::InvalidArgument, "tls (6)");
    worker.stop().await
}
