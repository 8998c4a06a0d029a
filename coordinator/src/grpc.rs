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
