//! The polaroid.v1 wire contract: generated messages and services, and the one table
//! that maps Polaroid's error codes to gRPC and HTTP status codes.

pub mod v1 {
    #![allow(clippy::all, clippy::unwrap_used, missing_docs)]
    tonic::include_proto!("polaroid.v1");
}

mod error_code;

pub use error_code::ErrorCode;
