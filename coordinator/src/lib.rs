//! The coordinator role: an openraft group whose state machine is the
//! catalog, served over gRPC (`spoor.v1.CatalogService`).
//!
//! Other roles never depend on this crate; they reach it through the gRPC
//! client in `spoor-common`, or, inside `spoor standalone`, through the
//! [`spoor_common::Catalog`] trait that [`CoordinatorNode`] implements.

pub mod control_state;
pub mod grpc;
pub mod log_store;
pub mod network;
pub mod node;
pub mod raft_types;
pub mod scheduler;
pub mod state_machine;

pub use grpc::{CatalogGrpc, ClusterGrpc, ControlGrpc};
pub use network::NetworkFaults;
pub use node::{CoordinatorError, CoordinatorNode, Membership};

/// Accepted connections of a bound listener as a stream, for tonic's
/// `serve_with_incoming` (lets callers bind port 0 and learn the address first).
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures::stream::unfold(listener, |l| async move {
        let next = l.accept().await.and_then(|(s, _)| {
            // Replies are small: without TCP_NODELAY, Nagle's algorithm holds
            // them for the peer's delayed ACK (~40 ms tails in the commit
            // benchmark). tonic's own nodelay setting does not reach sockets
            // handed to `serve_with_incoming`.
            s.set_nodelay(true)?;
            Ok(s)
        });
        Some((next, l))
    })
}
