//! Which affinity key a call routes by, read from its first request message.
//!
//! Every polaroid.v1 call that works on an existing handle carries it in field 1 (the
//! left input, for joins); SQL names its inputs in a map. In Arrow Flight a ticket is a
//! handle and a descriptor names one. Anything else starts a new pipeline and gets a
//! fresh key, which the worker stamps on the handle it creates.

use std::borrow::Cow;

use polaroid_proto::flight::{FlightDescriptor, Ticket};
use polaroid_proto::v1::SqlRequest;
use polaroid_store::{AffinityKey, Handle};
use prost::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKey {
    /// The key of an existing handle: the call goes where its pipeline lives.
    Pipeline(AffinityKey),
    /// A new pipeline: the call goes where this new key hashes, and the handle it
    /// creates carries the key.
    Fresh(AffinityKey),
}

impl RouteKey {
    pub fn affinity(self) -> AffinityKey {
        match self {
            Self::Pipeline(key) | Self::Fresh(key) => key,
        }
    }
}

/// A forwarded service: its gRPC name and how its calls route.
pub trait Routes: 'static {
    const NAME: &'static str;

    /// The route of a call to `method` whose first request message is `first`.
    fn route_key(method: &str, first: Option<&[u8]>) -> RouteKey;

    /// Whether `method` is a bidirectional stream, whose client may wait for an answer
    /// before it sends more: its messages are forwarded as they come, never read ahead.
    fn converses(_method: &str) -> bool {
        false
    }

    /// Whether `method` streams a source as its data arrives, which may be long after the
    /// call starts: its answer goes to the client from its head on, rather than after its
    /// first message.
    fn streams_a_source(_method: &str) -> bool {
        false
    }
}

pub struct DataFrameRoutes;

impl Routes for DataFrameRoutes {
    const NAME: &'static str = "polaroid.v1.DataFrameService";

    fn route_key(method: &str, first: Option<&[u8]>) -> RouteKey {
        route_key(method, first)
    }

    fn streams_a_source(method: &str) -> bool {
        // A capture reads a source too, and may wait as long for its first message.
        matches!(
            method,
            "StreamRestApi"
                | "StreamMessageQueue"
                | "StreamWebSocket"
                | "StreamGrpc"
                | "CaptureStream"
        )
    }
}

pub struct FlightRoutes;

impl Routes for FlightRoutes {
    const NAME: &'static str = "arrow.flight.protocol.FlightService";

    fn route_key(method: &str, first: Option<&[u8]>) -> RouteKey {
        // What names no handle goes anywhere: the worker there says what is wrong.
        let handle: Option<String> = first.and_then(|message| match method {
            "DoGet" => Some(Ticket::decode(message).ok()?.handle().ok()?.to_owned()),
            "GetFlightInfo" | "GetSchema" | "PollFlightInfo" => Some(
                FlightDescriptor::decode(message)
                    .ok()?
                    .handle()
                    .ok()?
                    .to_owned(),
            ),
            // DoPut uploads a new frame; the rest are answered by any worker.
            _ => None,
        });
        pipeline_or_fresh(handle.as_deref())
    }

    fn converses(method: &str) -> bool {
        matches!(method, "Handshake" | "DoExchange")
    }
}

fn pipeline_or_fresh(handle: Option<&str>) -> RouteKey {
    match handle.and_then(|h| Handle::parse(h).ok()) {
        Some(handle) => RouteKey::Pipeline(handle.affinity()),
        None => RouteKey::Fresh(AffinityKey::random()),
    }
}

/// The route of a polaroid.v1 call to `method` whose first request message is `first`.
pub fn route_key(method: &str, first: Option<&[u8]>) -> RouteKey {
    let handle: Option<Cow<'_, str>> = first.and_then(|message| {
        if method == "Sql" {
            // Tables are decoded in name order; the worker's first input is the first name.
            let request = SqlRequest::decode(message).ok()?;
            request.tables.into_values().next().map(Cow::Owned)
        } else {
            std::str::from_utf8(first_string_field(message)?)
                .ok()
                .map(Cow::Borrowed)
        }
    });
    pipeline_or_fresh(handle.as_deref())
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The bytes of the first occurrence of field 1 when it is length-delimited (a string).
/// Malformed input is `None`: the worker, not the router, reports it.
fn first_string_field(mut message: &[u8]) -> Option<&[u8]> {
    while !message.is_empty() {
        let tag = read_varint(&mut message)?;
        let (field, wire_type) = (tag >> 3, tag & 7);
        match wire_type {
            0 => {
                read_varint(&mut message)?;
            }
            1 => message = message.get(8..)?,
            2 => {
                let len = usize::try_from(read_varint(&mut message)?).ok()?;
                let value = message.get(..len)?;
                message = &message[len..];
                if field == 1 {
                    return Some(value);
                }
            }
            5 => message = message.get(4..)?,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use polaroid_proto::v1 as pb;
    use polaroid_store::TenantId;
    use proptest::prelude::*;

    fn handle() -> Handle {
        Handle::new(TenantId::from_name("t"), AffinityKey::random())
    }

    #[test]
    fn calls_on_a_handle_route_by_its_key() {
        let parent = handle();
        let select = pb::SelectRequest {
            handle: parent.to_string(),
            columns: vec!["a".into()],
            ..Default::default()
        };
        assert_eq!(
            route_key("Select", Some(&select.encode_to_vec())),
            RouteKey::Pipeline(parent.affinity())
        );
        let right = handle();
        let join = pb::JoinRequest {
            left_handle: parent.to_string(),
            right_handle: right.to_string(),
            ..Default::default()
        };
        assert_eq!(
            route_key("Join", Some(&join.encode_to_vec())),
            RouteKey::Pipeline(parent.affinity()),
            "joins go where the left input lives"
        );
        let cross = pb::CrossRequest {
            left_handle: parent.to_string(),
            right_handle: right.to_string(),
            suffix: None,
        };
        assert_eq!(
            route_key("Cross", Some(&cross.encode_to_vec())),
            RouteKey::Pipeline(parent.affinity()),
            "the contract's left_handle is field 1"
        );
        let heartbeat = pb::HeartbeatRequest {
            handles: vec![parent.to_string(), right.to_string()],
        };
        assert_eq!(
            route_key("Heartbeat", Some(&heartbeat.encode_to_vec())),
            RouteKey::Pipeline(parent.affinity())
        );
    }

    #[test]
    fn sql_routes_by_its_first_table() {
        let (a, b) = (handle(), handle());
        let sql = pb::SqlRequest {
            query: "select 1".into(),
            tables: [
                ("zz".to_owned(), a.to_string()),
                ("aa".to_owned(), b.to_string()),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            route_key("Sql", Some(&sql.encode_to_vec())),
            RouteKey::Pipeline(b.affinity())
        );
    }

    #[test]
    fn sources_and_junk_get_fresh_keys() {
        let read = pb::ReadParquetRequest {
            path: "data.parquet".into(),
            ..Default::default()
        };
        let first = route_key("ReadParquet", Some(&read.encode_to_vec()));
        let second = route_key("ReadParquet", Some(&read.encode_to_vec()));
        assert!(matches!(first, RouteKey::Fresh(_)));
        assert_ne!(first, second, "each new pipeline gets its own key");
        assert!(matches!(route_key("Select", None), RouteKey::Fresh(_)));
        assert!(matches!(
            route_key("Select", Some(&[0x0a, 0xff])),
            RouteKey::Fresh(_)
        ));
    }

    #[test]
    fn a_capture_makes_a_new_pipeline_whatever_its_name() {
        // Its field 1 is a number (max_rows): a name that looks like a handle, or a
        // source's URL, is never read as the handle to route by.
        let capture = pb::CaptureStreamRequest {
            max_rows: Some(10),
            name: Some(handle().to_string()),
            source: Some(pb::capture_stream_request::Source::RestApi(
                pb::RestApiRequest {
                    url: handle().to_string(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        for request in [
            capture.clone(),
            pb::CaptureStreamRequest {
                max_rows: None,
                ..capture
            },
        ] {
            assert!(matches!(
                route_key("CaptureStream", Some(&request.encode_to_vec())),
                RouteKey::Fresh(_)
            ));
        }
        assert!(DataFrameRoutes::streams_a_source("CaptureStream"));
    }

    #[test]
    fn flight_tickets_and_descriptors_route_by_their_handle() {
        use polaroid_proto::flight::{self as fl, flight_descriptor::DescriptorType};
        let owned = handle();
        let expected = RouteKey::Pipeline(owned.affinity());
        let ticket = fl::Ticket {
            ticket: owned.to_string().into(),
        };
        assert_eq!(
            FlightRoutes::route_key("DoGet", Some(&ticket.encode_to_vec())),
            expected
        );
        let by_path = fl::FlightDescriptor {
            r#type: DescriptorType::Path as i32,
            path: vec![owned.to_string()],
            ..Default::default()
        };
        let by_command = fl::FlightDescriptor {
            r#type: DescriptorType::Cmd as i32,
            cmd: owned.to_string().into(),
            ..Default::default()
        };
        for method in ["GetFlightInfo", "GetSchema"] {
            for descriptor in [&by_path, &by_command] {
                assert_eq!(
                    FlightRoutes::route_key(method, Some(&descriptor.encode_to_vec())),
                    expected,
                    "{method} {descriptor:?}"
                );
            }
        }
        // Uploads and junk start new pipelines.
        let put = fl::FlightData {
            flight_descriptor: Some(by_path.clone()),
            ..Default::default()
        };
        assert!(matches!(
            FlightRoutes::route_key("DoPut", Some(&put.encode_to_vec())),
            RouteKey::Fresh(_)
        ));
        assert!(matches!(
            FlightRoutes::route_key("DoGet", Some(&[0x0a, 0xff])),
            RouteKey::Fresh(_)
        ));
        // A path of two elements names no handle, as the worker reads it too.
        let two = fl::FlightDescriptor {
            path: vec![owned.to_string(), owned.to_string()],
            ..by_path.clone()
        };
        assert!(matches!(
            FlightRoutes::route_key("GetSchema", Some(&two.encode_to_vec())),
            RouteKey::Fresh(_)
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = route_key("Select", Some(&bytes));
            let _ = route_key("Sql", Some(&bytes));
            let _ = FlightRoutes::route_key("DoGet", Some(&bytes));
            let _ = FlightRoutes::route_key("GetFlightInfo", Some(&bytes));
        }
    }
}
