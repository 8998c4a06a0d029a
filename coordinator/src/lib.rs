//! The coordinator role: an openraft group whose state machine is the
//! catalog, served over gRPC (`spoor.v1.CatalogService`).
//!
//! Other roles never depend on this crate; they reach it through the gRPC
//! client in `spoor-common`, or, inside `spoor standalone`, through the
//! [`spoor_common::Catalog`] trait that [`CoordinatorNode`] implements.

pub mod backup;
pub mod control_state;
pub mod grpc;
pub mod guard;
pub mod log_store;
pub mod network;
pub mod node;
pub mod raft_types;
pub mod scheduler;
pub mod state_machine;

pub use grpc::{CatalogGrpc, ClusterGrpc, ControlGrpc};
pub use guard::{GrpcCaller, GrpcGuard};
pub use network::NetworkFaults;
pub use node::{CoordinatorError, CoordinatorNode, Membership};

/// Accepted connections of a bound listener as a stream, for tonic's
/// `serve_with_incoming` (lets callers bind port 0 and learn the address first).
/// Every gRPC service of a coordinator (catalog, Raft, membership,
/// control), each behind its guard: the catalog and Raft take only the
/// cluster `secret`; membership and control also API tokens.
/// Refused calls, token and tenant changes go to `audit`.
pub fn services(
    node: &CoordinatorNode,
    secret: Option<spoor_common::auth::ClusterSecrets>,
    audit: spoor_common::audit::AuditLog,
) -> tonic::service::Routes {
    let nodes_only = GrpcGuard::nodes_only(secret.clone()).with_audit(audit.clone());
    let with_tokens = GrpcGuard::with_tokens(secret, node.clone()).with_audit(audit.clone());
    tonic::service::Routes::new(CatalogGrpc::for_node(node.clone()).into_server(nodes_only.clone()))
        .add_service(node.raft_service().into_server(nodes_only))
        .add_service(ClusterGrpc::new(node.clone()).into_server(with_tokens.clone()))
        .add_service(
            ControlGrpc::new(node.clone())
                .with_audit(audit)
                .into_server(with_tokens),
        )
}

/// The connections of `listener` as `spoor coordinator` serves them
/// (plaintext, TCP_NODELAY: [`spoor_common::tls::Incoming`]), until `stop`.
pub fn incoming(
    listener: tokio::net::TcpListener,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<impl futures::Stream<Item = std::io::Result<spoor_common::tls::Conn>>> {
    spoor_common::tls::Incoming::new(listener, None, spoor_common::tls::Listener::Grpc, stop)
        .map(spoor_common::tls::Incoming::into_stream)
}
