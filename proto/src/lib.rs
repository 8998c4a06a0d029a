//! Protocol buffers and gRPC services shared by every Spoor role.
//!
//! Generated at build time from `proto/` with protox and tonic-prost-build; no
//! system `protoc` is involved.

#![allow(unreachable_pub, clippy::all)]

/// Version 1 of Spoor's internal and admin APIs.
pub mod v1 {
    tonic::include_proto!("spoor.v1");
}
