//! Arrow Flight on a worker: a ticket is a handle, `DoGet` streams its rows as Arrow IPC
//! messages, `GetFlightInfo` names this worker as the place to fetch them, and `DoPut`
//! uploads rows as a new handle. Errors take the same mapping as `DataFrameService`.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use polaroid_proto::flight::{self as pb, flight_service_server::FlightService};
use tonic::{Request, Response, Status, Streaming};

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};
use crate::ipc;
use crate::service::{status, store_finished_upload, stream_from_blocking, tenant};
use polaroid_store::TenantId;

/// Flight's location for "the service that answered GetFlightInfo": a client that cannot
/// reach the owning worker fetches through the coordinator it asked.
pub const REUSE_CONNECTION: &str = "arrow-flight-reuse-connection://?";

type Reply<T> = Result<Response<T>, Status>;
pub(crate) type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct FlightServer {
    engine: Arc<Engine>,
    /// Where clients fetch from: this worker (`grpc+tcp://`, or `grpc+tls://` when it
    /// serves TLS, and its advertised address, unless that is a wildcard no client can
    /// dial), then whoever answered.
    locations: Vec<String>,
    max_message_bytes: usize,
    max_upload_bytes: usize,
}

impl FlightServer {
    pub fn new(
        engine: Arc<Engine>,
        address: &str,
        tls: bool,
        config: &crate::WorkerConfig,
    ) -> Self {
        Self {
            engine,
            locations: locations(address, tls),
            max_message_bytes: config.result_payload_bytes(),
            max_upload_bytes: config.max_upload_bytes,
        }
    }

    /// DoGet's messages for `ticket`: the schema, then the rows in batches that each fit
    /// in a message, encoded off the runtime's threads as the client takes them.
    pub(crate) async fn fetch(
        &self,
        tenant: TenantId,
        ticket: &pb::Ticket,
    ) -> Result<ReplyStream<pb::FlightData>, Status> {
        let handle = ticket_handle(ticket).map_err(status)?;
        let df = self
            .engine
            .collect_frame(tenant, handle)
            .await
            .map_err(status)?;
        let max_bytes = self.max_message_bytes;
        Ok(stream_from_blocking("DoGet", move |emit| {
            let data = |message: ipc::FlightMessage| {
                pb::FlightData::with_aligned_body(message.header, message.body)
            };
            let schema = ipc::FlightMessage {
                header: ipc::schema_message(df.schema()),
                body: Bytes::new(),
            };
            if !emit(data(schema)) {
                return Ok(());
            }
            ipc::encode_flight_batches(&df, max_bytes, usize::MAX, &mut |message| {
                emit(data(message))
            })
        }))
    }
}

fn locations(address: &str, tls: bool) -> Vec<String> {
    let wildcard = address
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_unspecified());
    let mut locations = Vec::new();
    if !wildcard {
        let scheme = if tls { "grpc+tls" } else { "grpc+tcp" };
        locations.push(format!("{scheme}://{address}"));
    }
    locations.push(REUSE_CONNECTION.to_owned());
    locations
}

/// The handle a ticket carries (its UTF-8 text).
fn ticket_handle(ticket: &pb::Ticket) -> EngineResult<&str> {
    ticket.handle().map_err(not_a_handle)
}

/// The handle a descriptor names: a path of one element, or a command that is the handle.
fn descriptor_handle(descriptor: &pb::FlightDescriptor) -> EngineResult<String> {
    descriptor.handle().map(str::to_owned).map_err(not_a_handle)
}

fn not_a_handle(reason: pb::NotAHandle) -> EngineError {
    EngineError::invalid(reason.to_string())
}

fn unimplemented(message: &str) -> Status {
    status(EngineError::Unimplemented(message.to_owned()))
}

#[tonic::async_trait]
impl FlightService for FlightServer {
    type HandshakeStream = ReplyStream<pb::HandshakeResponse>;

    /// Not needed (there is no session to open: every call carries its token), but
    /// answered for clients that start with it: a caller the authentication layer let
    /// through gets its bearer header back, which is what such clients send next.
    async fn handshake(
        &self,
        request: Request<Streaming<pb::HandshakeRequest>>,
    ) -> Reply<Self::HandshakeStream> {
        let authorization = request.metadata().get("authorization").cloned();
        let reply = pb::HandshakeResponse {
            protocol_version: 0,
            payload: Bytes::new(),
        };
        let mut response =
            Response::new(Box::pin(tokio_stream::iter([Ok(reply)])) as Self::HandshakeStream);
        if let Some(authorization) = authorization {
            response
                .metadata_mut()
                .insert("authorization", authorization);
        }
        Ok(response)
    }

    type ListFlightsStream = ReplyStream<pb::FlightInfo>;

    async fn list_flights(&self, _: Request<pb::Criteria>) -> Reply<Self::ListFlightsStream> {
        Err(unimplemented(
            "ListFlights: handles are not listed; GetFlightInfo takes a descriptor naming one",
        ))
    }

    async fn get_flight_info(
        &self,
        request: Request<pb::FlightDescriptor>,
    ) -> Reply<pb::FlightInfo> {
        let tenant = tenant(&request)?;
        let descriptor = request.into_inner();
        let handle = descriptor_handle(&descriptor).map_err(status)?;
        let (schema, size) = self
            .engine
            .schema_and_known_size(tenant, &handle)
            .await
            .map_err(status)?;
        // Known when the result is computed already; finding out otherwise is the fetch's
        // work. The bytes are the result's size in memory, near what DoGet sends.
        let (total_records, total_bytes) =
            size.map_or((-1, -1), |(rows, bytes)| (rows as i64, bytes as i64));
        Ok(Response::new(pb::FlightInfo {
            schema: ipc::encapsulated_schema(&schema),
            flight_descriptor: Some(descriptor),
            endpoint: vec![pb::FlightEndpoint {
                ticket: Some(pb::Ticket {
                    ticket: Bytes::from(handle),
                }),
                location: self
                    .locations
                    .iter()
                    .map(|uri| pb::Location { uri: uri.clone() })
                    .collect(),
                app_metadata: Bytes::new(),
            }],
            total_records,
            total_bytes,
            ordered: true,
            app_metadata: Bytes::new(),
        }))
    }

    async fn poll_flight_info(&self, _: Request<pb::FlightDescriptor>) -> Reply<pb::PollInfo> {
        Err(unimplemented(
            "PollFlightInfo: results are computed by the fetch; use GetFlightInfo",
        ))
    }

    async fn get_schema(&self, request: Request<pb::FlightDescriptor>) -> Reply<pb::SchemaResult> {
        let tenant = tenant(&request)?;
        let handle = descriptor_handle(request.get_ref()).map_err(status)?;
        let schema = self.engine.schema(tenant, &handle).await.map_err(status)?;
        Ok(Response::new(pb::SchemaResult {
            schema: ipc::encapsulated_schema(&schema),
        }))
    }

    type DoGetStream = ReplyStream<pb::FlightData>;

    async fn do_get(&self, request: Request<pb::Ticket>) -> Reply<Self::DoGetStream> {
        // Served by `flight_frames` unless the request is compressed.
        self.fetch(tenant(&request)?, request.get_ref())
            .await
            .map(Response::new)
    }

    type DoPutStream = ReplyStream<pb::PutResult>;

    async fn do_put(
        &self,
        request: Request<Streaming<pb::FlightData>>,
    ) -> Reply<Self::DoPutStream> {
        let tenant = tenant(&request)?;
        let mut messages = request.into_inner();
        let mut stream = ipc::StreamBuilder::new(self.max_upload_bytes);
        let mut name = None;
        while let Some(message) = messages.message().await? {
            // The descriptor's one path element or command names the upload.
            if let Some(descriptor) = &message.flight_descriptor
                && name.is_none()
            {
                name = descriptor_handle(descriptor).ok();
            }
            stream
                .push(&message.data_header, &message.data_body)
                .map_err(status)?;
        }
        let bytes = stream.finish().map_err(status)?;
        let handle = store_finished_upload(&self.engine, tenant, bytes, name)
            .await
            .map_err(status)?;
        let result = pb::PutResult {
            app_metadata: Bytes::from(handle.to_string()),
        };
        Ok(Response::new(Box::pin(tokio_stream::iter([Ok(result)]))))
    }

    type DoExchangeStream = ReplyStream<pb::FlightData>;

    async fn do_exchange(
        &self,
        _: Request<Streaming<pb::FlightData>>,
    ) -> Reply<Self::DoExchangeStream> {
        Err(unimplemented(
            "DoExchange: use DoPut to upload and DoGet to fetch",
        ))
    }

    type DoActionStream = ReplyStream<pb::Result>;

    async fn do_action(&self, request: Request<pb::Action>) -> Reply<Self::DoActionStream> {
        Err(unimplemented(&format!(
            "DoAction {:?}: Polaroid's Flight service offers no actions; \
             polaroid.v1.DataFrameService has the DataFrame calls",
            request.get_ref().r#type
        )))
    }

    type ListActionsStream = ReplyStream<pb::ActionType>;

    async fn list_actions(&self, _: Request<pb::Empty>) -> Reply<Self::ListActionsStream> {
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(r#type: i32, cmd: &[u8], path: &[&str]) -> pb::FlightDescriptor {
        pb::FlightDescriptor {
            r#type,
            cmd: Bytes::copy_from_slice(cmd),
            path: path.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn wildcard_addresses_are_not_offered_as_locations() {
        assert_eq!(
            locations("10.0.0.7:50051", false),
            ["grpc+tcp://10.0.0.7:50051", REUSE_CONNECTION]
        );
        assert_eq!(
            locations("10.0.0.7:50051", true),
            ["grpc+tls://10.0.0.7:50051", REUSE_CONNECTION]
        );
        assert_eq!(locations("worker-3.pool:50051", false).len(), 2);
        assert_eq!(locations("0.0.0.0:50051", true), [REUSE_CONNECTION]);
        assert_eq!(locations("[::]:50051", false), [REUSE_CONNECTION]);
    }

    #[test]
    fn descriptors_name_one_handle() {
        assert_eq!(descriptor_handle(&descriptor(1, b"", &["h"])).unwrap(), "h");
        assert_eq!(descriptor_handle(&descriptor(2, b"h", &[])).unwrap(), "h");
        for bad in [
            descriptor(1, b"", &[]),
            descriptor(1, b"", &["a", "b"]),
            descriptor(2, &[0xff, 0xfe], &[]),
            descriptor(0, b"h", &["h"]),
            descriptor(9, b"h", &["h"]),
        ] {
            assert!(
                matches!(
                    descriptor_handle(&bad),
                    Err(EngineError::InvalidArgument(_))
                ),
                "{bad:?}"
            );
        }
    }
}
