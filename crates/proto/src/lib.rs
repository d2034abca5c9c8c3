//! The polaroid.v1 wire contract: generated messages and services, and the one table
//! that maps Polaroid's error codes to gRPC and HTTP status codes.

pub mod v1 {
    #![allow(clippy::all, clippy::unwrap_used, missing_docs)]
    tonic::include_proto!("polaroid.v1");
}

/// The encoded `FileDescriptorSet` of every polaroid.v1 file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/polaroid_descriptor.bin"));

/// Metadata a coordinator sets on a call that creates a new pipeline: the affinity key
/// (16 lowercase hex digits) the new handle must carry, so that it routes back here.
pub const AFFINITY_METADATA: &str = "x-polaroid-affinity";

/// Request metadata of a `Collect` or `CollectStreaming` call: the largest message (in
/// bytes) the client accepts, so that a worker may send fewer, larger result messages.
/// Clients that do not send it get messages under the worker's configured size.
pub const MAX_MESSAGE_METADATA: &str = "x-polaroid-max-message-bytes";

/// Response metadata naming the worker that served a call.
pub const WORKER_METADATA: &str = "x-polaroid-worker";

mod error_code;

pub use error_code::ErrorCode;
