//! The catalog gRPC service, served by coordinators over any [`Catalog`].

use std::sync::Arc;

use spoor_common::catalog::Catalog;
use spoor_common::catalog_client::{convert, error_to_status};
use spoor_proto::v1 as pb;
use tonic::{Request, Response, Status};

/// Serves `spoor.v1.CatalogService` from a catalog.
#[derive(Clone)]
pub struct CatalogGrpc {
    catalog: Arc<dyn Catalog>,
}

impl CatalogGrpc {
    /// The service over `catalog`.
    pub fn new(catalog: Arc<dyn Catalog>) -> Self {
        CatalogGrpc { catalog }
    }

    /// As a tonic service, ready to add to a server.
    pub fn into_server(self) -> pb::catalog_service_server::CatalogServiceServer<Self> {
        pb::catalog_service_server::CatalogServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::catalog_service_server::CatalogService for CatalogGrpc {
    async fn commit_batch(
        &self,
        request: Request<pb::CommitBatchRequest>,
    ) -> Result<Response<pb::CommitBatchResponse>, Status> {
        let batch =
            convert::batch_from_pb(request.into_inner()).map_err(|e| error_to_status(&e))?;
        let out = self
            .catalog
            .commit_batch(batch)
            .await
            .map_err(|e| error_to_status(&e))?;
        Ok(Response::new(pb::CommitBatchResponse {
            sequences: out.sequences,
            already_committed: out.already_committed,
        }))
    }

    async fn list_files(
        &self,
        request: Request<pb::ListFilesRequest>,
    ) -> Result<Response<pb::ListFilesResponse>, Status> {
        let query =
            convert::query_from_pb(request.into_inner()).map_err(|e| error_to_status(&e))?;
        let files = self
            .catalog
            .list_files(query)
            .await
            .map_err(|e| error_to_status(&e))?;
        Ok(Response::new(pb::ListFilesResponse {
            files: files.iter().map(convert::catalog_file_to_pb).collect(),
        }))
    }

    async fn get_checkpoints(
        &self,
        request: Request<pb::GetCheckpointsRequest>,
    ) -> Result<Response<pb::GetCheckpointsResponse>, Status> {
        let req = request.into_inner();
        let cps = self
            .catalog
            .checkpoints(&req.source_id, &req.topic)
            .await
            .map_err(|e| error_to_status(&e))?;
        Ok(Response::new(pb::GetCheckpointsResponse {
            checkpoints: cps.iter().map(convert::checkpoint_to_pb).collect(),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self
            .catalog
            .status()
            .await
            .map_err(|e| error_to_status(&e))?;
        Ok(Response::new(convert::status_to_pb(&status)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoor_common::catalog::{MemoryCatalog, conformance};
    use spoor_common::catalog_client::GrpcCatalog;
    use std::time::Duration;

    /// The gRPC client and server together pass the catalog conformance suite.
    #[tokio::test]
    async fn grpc_catalog_conforms() {
        conformance::run_all(|| async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let service = CatalogGrpc::new(Arc::new(MemoryCatalog::new())).into_server();
            tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(crate::incoming(listener))
                    .await
            });
            GrpcCatalog::connect_lazy(&format!("http://{addr}"), Duration::from_secs(5))
                .expect("client")
        })
        .await;
    }
}

/// Serves `spoor.v1.ClusterService` (membership changes) for a coordinator.
#[derive(Clone)]
pub struct ClusterGrpc {
    node: crate::CoordinatorNode,
}

impl ClusterGrpc {
    /// The service for `node`.
    pub fn new(node: crate::CoordinatorNode) -> Self {
        ClusterGrpc { node }
    }

    /// As a tonic service.
    pub fn into_server(self) -> pb::cluster_service_server::ClusterServiceServer<Self> {
        pb::cluster_service_server::ClusterServiceServer::new(self)
    }
}

fn membership_reply(m: crate::node::Membership) -> Response<pb::MembershipReply> {
    Response::new(pb::MembershipReply {
        voters: m.voters,
        learners: m.learners,
        leader_id: m.leader_id,
    })
}

#[tonic::async_trait]
impl pb::cluster_service_server::ClusterService for ClusterGrpc {
    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let req = request.into_inner();
        if !req.url.starts_with("http://") && !req.url.starts_with("https://") {
            return Err(Status::invalid_argument(format!(
                "url {:?} must start with http:// or https://",
                req.url
            )));
        }
        let m = self
            .node
            .add_node(req.node_id, req.url)
            .await
            .map_err(|e| error_to_status(&e))?;
        Ok(membership_reply(m))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let m = self
            .node
            .remove_node(request.into_inner().node_id)
            .await
            .map_err(|e| error_to_status(&e))?;
        Ok(membership_reply(m))
    }

    async fn membership(
        &self,
        _request: Request<pb::MembershipRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        Ok(membership_reply(self.node.membership()))
    }
}
