//! Which affinity key a call routes by, read from its first request message.
//!
//! Every polaroid.v1 call that works on an existing handle carries it in field 1 (the
//! left input, for joins); SQL names its inputs in a map. Anything else starts a new
//! pipeline and gets a fresh key, which the worker stamps on the handle it creates.

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

/// The route of a call to `method` whose first request message is `first`.
pub fn route_key(method: &str, first: Option<&[u8]>) -> RouteKey {
    let input = first.and_then(|message| {
        if method == "Sql" {
            // Tables are decoded in name order; the worker's first input is the first name.
            let request = SqlRequest::decode(message).ok()?;
            let handle = request.tables.into_values().next()?;
            Handle::parse(&handle).ok()
        } else {
            let field = first_string_field(message)?;
            Handle::parse(std::str::from_utf8(field).ok()?).ok()
        }
    });
    match input {
        Some(handle) => RouteKey::Pipeline(handle.affinity()),
        None => RouteKey::Fresh(AffinityKey::random()),
    }
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
            handle: parent.to_string(),
            right: right.to_string(),
            ..Default::default()
        };
        assert_eq!(
            route_key("Join", Some(&join.encode_to_vec())),
            RouteKey::Pipeline(parent.affinity()),
            "joins go where the left input lives"
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

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = route_key("Select", Some(&bytes));
            let _ = route_key("Sql", Some(&bytes));
        }
    }
}
