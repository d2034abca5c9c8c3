//! The polaroid.v1 wire contract: generated messages and services, and the one table
//! that maps Polaroid's error codes to gRPC and HTTP status codes.

pub mod v1 {
    #![allow(clippy::all, clippy::unwrap_used, missing_docs)]
    tonic::include_proto!("polaroid.v1");
    pub use crate::arrow_batch::ArrowBatch;
    pub use crate::window_expr::WindowExpr;
}

/// Arrow Flight (`arrow.flight.protocol.FlightService`), served beside polaroid.v1: a
/// ticket is a handle, and its rows come as Arrow IPC messages.
pub mod flight {
    #![allow(clippy::all, clippy::unwrap_used, missing_docs)]
    tonic::include_proto!("arrow.flight.protocol");
    pub use crate::flight_data::MessageTooLarge;
    pub use crate::flight_handle::NotAHandle;
}

/// KEDA's external-scaler interface (`externalscaler.ExternalScaler`), which coordinators
/// serve to KEDA.
pub mod externalscaler {
    #![allow(clippy::all, clippy::unwrap_used, missing_docs)]
    tonic::include_proto!("externalscaler");
}

/// The encoded `FileDescriptorSet` of every polaroid.v1 file and of Arrow Flight, for
/// gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/polaroid_descriptor.bin"));

/// Metadata a coordinator sets on a call that creates a new pipeline: the affinity key
/// (16 lowercase hex digits) the new handle must carry, so that it routes back here.
pub const AFFINITY_METADATA: &str = "x-polaroid-affinity";

/// The compressed flag and the length before every gRPC message.
pub const GRPC_PREFIX_BYTES: usize = 5;

/// Response metadata naming the worker that served a call.
pub const WORKER_METADATA: &str = "x-polaroid-worker";

mod arrow_batch;
pub mod codec;
mod error_code;
mod flight_data;
mod flight_handle;
pub mod fuzz_corpus;
pub mod retry;
pub mod tenant;
mod window_expr;

pub use error_code::{
    ErrorCode, Excerpt, MAX_EXCERPT_CHARS, MAX_STATUS_MESSAGE_BYTES, bounded_message, excerpt,
};

/// Where the bytes of the first length-delimited field `tag` start in an encoded message
/// whose fields are all length-delimited, read field by field (tests of hand-placed
/// payloads).
#[cfg(test)]
fn field_start(encoded: &[u8], tag: u32) -> usize {
    let mut rest = encoded;
    loop {
        let key = prost::encoding::decode_varint(&mut rest).expect("key");
        let length = prost::encoding::decode_varint(&mut rest).expect("length") as usize;
        if key >> 3 == u64::from(tag) {
            return encoded.len() - rest.len();
        }
        rest = &rest[length..];
    }
}
