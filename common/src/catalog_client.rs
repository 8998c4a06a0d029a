//! The catalog over gRPC: conversions between the catalog types and their
//! protobuf messages, and [`GrpcCatalog`], the client every non-coordinator
//! role uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use spoor_proto::v1 as pb;
use tonic::transport::{Channel, Endpoint};

use crate::catalog::{
    Catalog, CatalogError, CatalogFile, CatalogStatus, CommitBatch, CommitOutcome, FileQuery,
    NewFile, SourceCheckpoint, SourceRange, TenantTotals,
};
use crate::schema::Table;
use crate::tenant::TenantId;

/// Maps a catalog error to a gRPC status (the one place this is decided).
pub fn error_to_status(err: &CatalogError) -> tonic::Status {
    match err {
        CatalogError::Invalid { .. } => tonic::Status::invalid_argument(err.to_string()),
        CatalogError::Conflict { .. } => tonic::Status::failed_precondition(err.to_string()),
        CatalogError::Unavailable { .. } => tonic::Status::unavailable(err.to_string()),
        CatalogError::Internal { .. } => tonic::Status::internal(err.to_string()),
    }
}

/// Maps a gRPC status back to a catalog error.
pub fn status_to_error(status: tonic::Status) -> CatalogError {
    let reason = status.message().to_string();
    match status.code() {
        tonic::Code::InvalidArgument => CatalogError::Invalid { reason },
        tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists => {
            CatalogError::Conflict { reason }
        }
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            CatalogError::Unavailable { reason }
        }
        _ => CatalogError::Internal {
            reason: format!("{:?}: {reason}", status.code()),
        },
    }
}

fn invalid(reason: String) -> CatalogError {
    CatalogError::Invalid { reason }
}

/// Protobuf ↔ catalog type conversions.
pub mod convert {
    use super::*;

    /// A checkpoint to protobuf.
    pub fn checkpoint_to_pb(c: &SourceCheckpoint) -> pb::SourceCheckpoint {
        pb::SourceCheckpoint {
            source_id: c.source_id.clone(),
            topic: c.topic.clone(),
            partition: c.partition,
            next_offset: c.next_offset,
        }
    }

    /// A checkpoint from protobuf.
    pub fn checkpoint_from_pb(c: pb::SourceCheckpoint) -> SourceCheckpoint {
        SourceCheckpoint {
            source_id: c.source_id,
            topic: c.topic,
            partition: c.partition,
            next_offset: c.next_offset,
        }
    }

    /// A new file to protobuf.
    pub fn file_to_pb(f: &NewFile) -> pb::NewFile {
        pb::NewFile {
            file_id: f.file_id.clone(),
            tenant: f.tenant.to_string(),
            table: f.table.name().to_string(),
            object_key: f.object_key.clone(),
            min_time_micros: f.min_time_micros,
            max_time_micros: f.max_time_micros,
            row_count: f.row_count as i64,
            byte_size: f.byte_size as i64,
            schema_version: f.schema_version,
            source: f.source.as_ref().map(|s| pb::SourceRange {
                source_id: s.source_id.clone(),
                topic: s.topic.clone(),
                partition: s.partition,
                first_offset: s.first_offset,
                last_offset: s.last_offset,
            }),
        }
    }

    /// A new file from protobuf, validating tenant and table.
    pub fn file_from_pb(f: pb::NewFile) -> Result<NewFile, CatalogError> {
        let tenant = TenantId::new(f.tenant).map_err(|e| invalid(e.to_string()))?;
        let table = Table::parse(&f.table)
            .ok_or_else(|| invalid(format!("unknown table {:?}", f.table)))?;
        let count = |name: &str, v: i64| {
            u64::try_from(v).map_err(|_| invalid(format!("{name} is negative")))
        };
        Ok(NewFile {
            file_id: f.file_id,
            tenant,
            table,
            object_key: f.object_key,
            min_time_micros: f.min_time_micros,
            max_time_micros: f.max_time_micros,
            row_count: count("row_count", f.row_count)?,
            byte_size: count("byte_size", f.byte_size)?,
            schema_version: f.schema_version,
            source: f.source.map(|s| SourceRange {
                source_id: s.source_id,
                topic: s.topic,
                partition: s.partition,
                first_offset: s.first_offset,
                last_offset: s.last_offset,
            }),
        })
    }

    /// A commit batch to protobuf.
    pub fn batch_to_pb(b: &CommitBatch) -> pb::CommitBatchRequest {
        pb::CommitBatchRequest {
            files: b.files.iter().map(file_to_pb).collect(),
            checkpoints: b.checkpoints.iter().map(checkpoint_to_pb).collect(),
        }
    }

    /// A commit batch from protobuf.
    pub fn batch_from_pb(b: pb::CommitBatchRequest) -> Result<CommitBatch, CatalogError> {
        Ok(CommitBatch {
            files: b
                .files
                .into_iter()
                .map(file_from_pb)
                .collect::<Result<_, _>>()?,
            checkpoints: b.checkpoints.into_iter().map(checkpoint_from_pb).collect(),
        })
    }

    /// A catalog file to protobuf.
    pub fn catalog_file_to_pb(f: &CatalogFile) -> pb::CatalogFile {
        pb::CatalogFile {
            file: Some(file_to_pb(&f.file)),
            sequence: f.sequence,
            committed_at_micros: f.committed_at_micros,
        }
    }

    /// A catalog file from protobuf.
    pub fn catalog_file_from_pb(f: pb::CatalogFile) -> Result<CatalogFile, CatalogError> {
        let file = f
            .file
            .ok_or_else(|| invalid("catalog file without its file".into()))?;
        Ok(CatalogFile {
            file: file_from_pb(file)?,
            sequence: f.sequence,
            committed_at_micros: f.committed_at_micros,
        })
    }

    /// A file query from protobuf.
    pub fn query_from_pb(q: pb::ListFilesRequest) -> Result<FileQuery, CatalogError> {
        Ok(FileQuery {
            tenant: TenantId::new(q.tenant).map_err(|e| invalid(e.to_string()))?,
            table: Table::parse(&q.table)
                .ok_or_else(|| invalid(format!("unknown table {:?}", q.table)))?,
            min_time_micros: q.min_time_micros,
            max_time_micros: q.max_time_micros,
        })
    }

    /// A status to protobuf.
    pub fn status_to_pb(s: &CatalogStatus) -> pb::StatusResponse {
        pb::StatusResponse {
            node_id: s.node_id,
            leader_id: s.leader_id,
            current_term: s.current_term,
            last_log_index: s.last_log_index,
            last_applied_index: s.last_applied_index,
            file_count: s.file_count,
            tenants: s
                .tenants
                .iter()
                .map(|t| pb::TenantStatus {
                    tenant: t.tenant.clone(),
                    last_sequence: t.last_sequence,
                    file_count: t.file_count,
                    row_count: t.row_count,
                    byte_size: t.byte_size,
                })
                .collect(),
        }
    }

    /// A status from protobuf.
    pub fn status_from_pb(s: pb::StatusResponse) -> CatalogStatus {
        CatalogStatus {
            node_id: s.node_id,
            leader_id: s.leader_id,
            current_term: s.current_term,
            last_log_index: s.last_log_index,
            last_applied_index: s.last_applied_index,
            file_count: s.file_count,
            tenants: s
                .tenants
                .into_iter()
                .map(|t| TenantTotals {
                    tenant: t.tenant,
                    last_sequence: t.last_sequence,
                    file_count: t.file_count,
                    row_count: t.row_count,
                    byte_size: t.byte_size,
                })
                .collect(),
        }
    }
}

/// The catalog reached over gRPC, through one or more coordinators. A call
/// that finds a coordinator unavailable moves on to the next; the last one
/// that answered is tried first. Retrying a commit elsewhere is safe: commits
/// are idempotent (file ids are derived from their source).
#[derive(Debug, Clone)]
pub struct GrpcCatalog {
    endpoints: Arc<
        Vec<(
            String,
            pb::catalog_service_client::CatalogServiceClient<Channel>,
        )>,
    >,
    current: Arc<AtomicUsize>,
}

impl GrpcCatalog {
    /// A client for the coordinators at `endpoints` (comma-separated URLs).
    /// Connects lazily, so coordinators that start later are found.
    pub fn connect_lazy(endpoints: &str, timeout: Duration) -> Result<Self, CatalogError> {
        let mut clients = Vec::new();
        for endpoint in endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let channel = Endpoint::from_shared(endpoint.to_string())
                .map_err(|e| {
                    invalid(format!(
                        "catalog endpoint {endpoint:?} is not a valid URI: {e}"
                    ))
                })?
                .connect_timeout(timeout)
                .timeout(timeout)
                .connect_lazy();
            clients.push((
                endpoint.to_string(),
                pb::catalog_service_client::CatalogServiceClient::new(channel),
            ));
        }
        if clients.is_empty() {
            return Err(invalid(format!("no catalog endpoint in {endpoints:?}")));
        }
        Ok(GrpcCatalog {
            endpoints: Arc::new(clients),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Runs `call` against the coordinators, starting with the last that
    /// answered, until one answers or all were unavailable.
    async fn call<T, F, Fut>(&self, name: &str, call: F) -> Result<T, CatalogError>
    where
        F: Fn(pb::catalog_service_client::CatalogServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for attempt in 0..n {
            let i = (start + attempt) % n;
            let (url, client) = &self.endpoints[i];
            match call(client.clone()).await {
                Ok(resp) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(resp.into_inner());
                }
                Err(status) => match status_to_error(status) {
                    CatalogError::Unavailable { reason } => {
                        failures.push(format!("{url}: {reason}"))
                    }
                    other => return Err(other),
                },
            }
        }
        Err(CatalogError::Unavailable {
            reason: format!("{name}: no coordinator answered ({})", failures.join("; ")),
        })
    }
}

#[async_trait]
impl Catalog for GrpcCatalog {
    async fn commit_batch(&self, batch: CommitBatch) -> Result<CommitOutcome, CatalogError> {
        let req = convert::batch_to_pb(&batch);
        let resp = self
            .call("CommitBatch", |mut c| {
                let req = req.clone();
                async move { c.commit_batch(req).await }
            })
            .await?;
        Ok(CommitOutcome {
            sequences: resp.sequences,
            already_committed: resp.already_committed,
        })
    }

    async fn list_files(&self, query: FileQuery) -> Result<Vec<CatalogFile>, CatalogError> {
        let req = pb::ListFilesRequest {
            tenant: query.tenant.to_string(),
            table: query.table.name().to_string(),
            min_time_micros: query.min_time_micros,
            max_time_micros: query.max_time_micros,
        };
        let resp = self
            .call("ListFiles", |mut c| {
                let req = req.clone();
                async move { c.list_files(req).await }
            })
            .await?;
        resp.files
            .into_iter()
            .map(convert::catalog_file_from_pb)
            .collect()
    }

    async fn checkpoints(
        &self,
        source_id: &str,
        topic: &str,
    ) -> Result<Vec<SourceCheckpoint>, CatalogError> {
        let req = pb::GetCheckpointsRequest {
            source_id: source_id.to_string(),
            topic: topic.to_string(),
        };
        let resp = self
            .call("GetCheckpoints", |mut c| {
                let req = req.clone();
                async move { c.get_checkpoints(req).await }
            })
            .await?;
        Ok(resp
            .checkpoints
            .into_iter()
            .map(convert::checkpoint_from_pb)
            .collect())
    }

    async fn status(&self) -> Result<CatalogStatus, CatalogError> {
        let resp = self
            .call("Status", |mut c| async move {
                c.status(pb::StatusRequest {}).await
            })
            .await?;
        Ok(convert::status_from_pb(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::conformance::kafka_file;

    #[test]
    fn files_round_trip_through_protobuf() {
        let f = kafka_file("acme", "t", 2, 5, 9);
        assert_eq!(
            convert::file_from_pb(convert::file_to_pb(&f)).expect("round trip"),
            f
        );
    }

    #[test]
    fn bad_protobuf_files_are_refused_naming_the_field() {
        let mut pbf = convert::file_to_pb(&kafka_file("acme", "t", 2, 5, 9));
        pbf.table = "secrets".into();
        assert!(
            convert::file_from_pb(pbf.clone())
                .expect_err("table")
                .to_string()
                .contains("secrets")
        );
        pbf.table = "events".into();
        pbf.row_count = -1;
        assert!(
            convert::file_from_pb(pbf)
                .expect_err("rows")
                .to_string()
                .contains("row_count")
        );
    }

    #[tokio::test]
    async fn endpoint_lists_are_checked() {
        assert!(
            GrpcCatalog::connect_lazy("http://a:1, http://b:2", Duration::from_secs(1)).is_ok()
        );
        assert!(
            GrpcCatalog::connect_lazy(" , ", Duration::from_secs(1))
                .expect_err("empty")
                .to_string()
                .contains("no catalog endpoint")
        );
        assert!(
            GrpcCatalog::connect_lazy("http://a:1,not a uri", Duration::from_secs(1))
                .expect_err("bad")
                .to_string()
                .contains("not a valid URI")
        );
    }

    /// A dead first endpoint is skipped; the call lands on the live one.
    #[tokio::test]
    async fn unavailable_endpoints_are_skipped() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead_addr = dead.local_addr().expect("addr");
        drop(dead);
        let client =
            GrpcCatalog::connect_lazy(&format!("http://{dead_addr}"), Duration::from_secs(2))
                .expect("client");
        let err = client.status().await.expect_err("nobody listens");
        assert!(
            err.is_retryable() && err.to_string().contains(&dead_addr.to_string()),
            "{err}"
        );
    }

    #[test]
    fn errors_keep_their_kind_over_grpc() {
        for err in [
            CatalogError::Invalid { reason: "a".into() },
            CatalogError::Conflict { reason: "b".into() },
            CatalogError::Unavailable { reason: "c".into() },
        ] {
            let back = status_to_error(error_to_status(&err));
            assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(&err));
        }
    }
}
