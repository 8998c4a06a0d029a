//! The catalog over gRPC: conversions between the catalog types and their
//! protobuf messages, and [`GrpcCatalog`], the client every non-coordinator
//! role uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use spoor_proto::v1 as pb;
use tonic::transport::Channel;

use crate::auth::{AuthChannel, Credential};

use crate::catalog::{
    Catalog, CatalogChange, CatalogError, CatalogFile, CatalogStatus, ChangeOutcome, ChangePage,
    CommitBatch, CommitOutcome, FileQuery, FileRemoval, FileSwap, ListingInfo, NewFile,
    RemovedFile, SourceCheckpoint, SourceRange, TenantTotals,
};
use crate::schema::Table;
use crate::tenant::TenantId;

/// How a [`CatalogError::Denied`] of a missing or wrong credential begins.
pub const UNAUTHENTICATED: &str = "unauthenticated: ";
/// How a [`CatalogError::Denied`] of a credential that may not begins.
pub const PERMISSION_DENIED: &str = "permission denied: ";
/// How a [`CatalogError::Invalid`] of a gRPC `NOT_FOUND` begins.
pub const NOT_FOUND: &str = "not found: ";

/// Maps a catalog error to a gRPC status (the one place this is decided).
pub fn error_to_status(err: &CatalogError) -> tonic::Status {
    match err {
        CatalogError::Invalid { .. } => tonic::Status::invalid_argument(err.to_string()),
        CatalogError::Conflict { .. } => tonic::Status::failed_precondition(err.to_string()),
        CatalogError::Unavailable { .. } => tonic::Status::unavailable(err.to_string()),
        CatalogError::HistoryCompacted { .. } => tonic::Status::out_of_range(err.to_string()),
        CatalogError::Internal { .. } => tonic::Status::internal(err.to_string()),
        CatalogError::Denied { reason } => match reason.strip_prefix(UNAUTHENTICATED) {
            Some(why) => tonic::Status::unauthenticated(why),
            None => tonic::Status::permission_denied(
                reason.strip_prefix(PERMISSION_DENIED).unwrap_or(reason),
            ),
        },
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
        tonic::Code::OutOfRange => CatalogError::HistoryCompacted { reason },
        tonic::Code::Unauthenticated => CatalogError::Denied {
            reason: format!("{UNAUTHENTICATED}{reason}"),
        },
        tonic::Code::PermissionDenied => CatalogError::Denied {
            reason: format!("{PERMISSION_DENIED}{reason}"),
        },
        tonic::Code::NotFound => CatalogError::Invalid {
            reason: format!("{NOT_FOUND}{reason}"),
        },
        // A connection broken mid-call (a coordinator killed or restarting)
        // reaches tonic as Internal/Unknown with the transport's words; the
        // call may or may not have applied, and every call is idempotent, so
        // it is retryable like an unreachable coordinator.
        tonic::Code::Internal | tonic::Code::Unknown if is_transport_failure(&reason) => {
            CatalogError::Unavailable { reason }
        }
        _ => CatalogError::Internal {
            reason: format!("{:?}: {reason}", status.code()),
        },
    }
}

/// Whether a status message is a broken connection rather than a server error.
fn is_transport_failure(message: &str) -> bool {
    [
        "h2 protocol error",
        "transport error",
        "connection reset",
        "connection closed",
        "broken pipe",
        "error trying to connect",
    ]
    .iter()
    .any(|m| message.contains(m))
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

    /// A tenant and table from their protobuf strings.
    fn tenant_table(tenant: String, table: &str) -> Result<(TenantId, Table), CatalogError> {
        Ok((
            TenantId::new(tenant).map_err(|e| invalid(e.to_string()))?,
            Table::parse(table).ok_or_else(|| invalid(format!("unknown table {table:?}")))?,
        ))
    }

    /// A swap to protobuf.
    pub fn swap_to_pb(s: &FileSwap) -> pb::ReplaceFilesRequest {
        pb::ReplaceFilesRequest {
            tenant: s.tenant.to_string(),
            table: s.table.name().to_string(),
            inputs: s.inputs.clone(),
            outputs: s.outputs.iter().map(file_to_pb).collect(),
        }
    }

    /// A swap from protobuf.
    pub fn swap_from_pb(s: pb::ReplaceFilesRequest) -> Result<FileSwap, CatalogError> {
        let (tenant, table) = tenant_table(s.tenant, &s.table)?;
        Ok(FileSwap {
            tenant,
            table,
            inputs: s.inputs,
            outputs: s
                .outputs
                .into_iter()
                .map(file_from_pb)
                .collect::<Result<_, _>>()?,
        })
    }

    /// A removal to protobuf.
    pub fn removal_to_pb(r: &FileRemoval) -> pb::RemoveFilesRequest {
        pb::RemoveFilesRequest {
            tenant: r.tenant.to_string(),
            file_ids: r.file_ids.clone(),
            reason: r.reason.clone(),
        }
    }

    /// A removal from protobuf.
    pub fn removal_from_pb(r: pb::RemoveFilesRequest) -> Result<FileRemoval, CatalogError> {
        Ok(FileRemoval {
            tenant: TenantId::new(r.tenant).map_err(|e| invalid(e.to_string()))?,
            file_ids: r.file_ids,
            reason: r.reason,
        })
    }

    /// A change outcome to protobuf.
    pub fn outcome_to_pb(o: &ChangeOutcome) -> pb::ChangeResponse {
        pb::ChangeResponse {
            sequence: o.sequence,
            added_sequences: o.added_sequences.clone(),
            removed: o.removed.iter().map(catalog_file_to_pb).collect(),
            already_committed: o.already_committed,
        }
    }

    /// A change outcome from protobuf.
    pub fn outcome_from_pb(o: pb::ChangeResponse) -> Result<ChangeOutcome, CatalogError> {
        Ok(ChangeOutcome {
            sequence: o.sequence,
            added_sequences: o.added_sequences,
            removed: o
                .removed
                .into_iter()
                .map(catalog_file_from_pb)
                .collect::<Result<_, _>>()?,
            already_committed: o.already_committed,
        })
    }

    /// A change to protobuf.
    pub fn change_to_pb(c: &CatalogChange) -> pb::CatalogChange {
        pb::CatalogChange {
            tenant: c.tenant.clone(),
            first_sequence: c.first_sequence,
            last_sequence: c.last_sequence,
            committed_at_micros: c.committed_at_micros,
            added: c.added.iter().map(catalog_file_to_pb).collect(),
            removed: c
                .removed
                .iter()
                .map(|r| pb::RemovedFile {
                    file_id: r.file_id.clone(),
                    table: r.table.name().to_string(),
                    object_key: r.object_key.clone(),
                    sequence: r.sequence,
                })
                .collect(),
        }
    }

    /// A change from protobuf.
    pub fn change_from_pb(c: pb::CatalogChange) -> Result<CatalogChange, CatalogError> {
        Ok(CatalogChange {
            tenant: c.tenant,
            first_sequence: c.first_sequence,
            last_sequence: c.last_sequence,
            committed_at_micros: c.committed_at_micros,
            added: c
                .added
                .into_iter()
                .map(catalog_file_from_pb)
                .collect::<Result<_, _>>()?,
            removed: c
                .removed
                .into_iter()
                .map(|r| {
                    Ok(RemovedFile {
                        table: Table::parse(&r.table)
                            .ok_or_else(|| invalid(format!("unknown table {:?}", r.table)))?,
                        file_id: r.file_id,
                        object_key: r.object_key,
                        sequence: r.sequence,
                    })
                })
                .collect::<Result<_, CatalogError>>()?,
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
            tenants: s.tenants.iter().map(tenant_totals_to_pb).collect(),
        }
    }

    /// A tenant's totals to protobuf.
    pub fn tenant_totals_to_pb(t: &TenantTotals) -> pb::TenantStatus {
        pb::TenantStatus {
            tenant: t.tenant.clone(),
            last_sequence: t.last_sequence,
            file_count: t.file_count,
            row_count: t.row_count,
            byte_size: t.byte_size,
            tables: t
                .tables
                .iter()
                .map(|x| pb::TableStatus {
                    table: x.table.clone(),
                    file_count: x.file_count,
                    row_count: x.row_count,
                    byte_size: x.byte_size,
                })
                .collect(),
        }
    }

    /// A tenant's totals from protobuf.
    pub fn tenant_totals_from_pb(t: pb::TenantStatus) -> TenantTotals {
        TenantTotals {
            tenant: t.tenant,
            last_sequence: t.last_sequence,
            file_count: t.file_count,
            row_count: t.row_count,
            byte_size: t.byte_size,
            tables: t
                .tables
                .into_iter()
                .map(|x| crate::catalog::TableTotals {
                    table: x.table,
                    file_count: x.file_count,
                    row_count: x.row_count,
                    byte_size: x.byte_size,
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
            tenants: s.tenants.into_iter().map(tenant_totals_from_pb).collect(),
        }
    }
}

/// The catalog reached over gRPC, through one or more coordinators. A call
/// that finds a coordinator unavailable moves on to the next; the last one
/// that answered is tried first. Retrying a commit elsewhere is safe: commits
/// are idempotent (file ids are derived from their source).
#[derive(Debug, Clone)]
pub struct GrpcCatalog {
    coordinators: Coordinators,
}

/// Lazily connected channels to a list of coordinators, tried in turn: the
/// failover every coordinator client (catalog, control) shares.
#[derive(Debug, Clone)]
pub struct Coordinators {
    endpoints: Arc<Vec<(String, Channel)>>,
    current: Arc<AtomicUsize>,
    /// Presented on every call (the cluster secret, or the CLI's token).
    credential: Credential,
}

impl Coordinators {
    /// Channels to the coordinators at `endpoints` (comma-separated URLs).
    /// Connects lazily, so coordinators that start later are found.
    pub fn connect_lazy(endpoints: &str, timeout: Duration) -> Result<Self, CatalogError> {
        Self::connect_lazy_with_tls(endpoints, timeout, None)
    }

    /// As [`Coordinators::connect_lazy`]; `https://` endpoints are reached
    /// with `tls`'s client configuration (trusted CAs, and this node's
    /// certificate where a coordinator demands one).
    pub fn connect_lazy_with_tls(
        endpoints: &str,
        timeout: Duration,
        tls: Option<&Arc<crate::tls::Tls>>,
    ) -> Result<Self, CatalogError> {
        let mut clients = Vec::new();
        for endpoint in endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let channel = crate::tls::lazy_channel(endpoint, timeout, tls)
                .map_err(|e| invalid(format!("catalog endpoint: {e}")))?;
            clients.push((endpoint.to_string(), channel));
        }
        if clients.is_empty() {
            return Err(invalid(format!("no catalog endpoint in {endpoints:?}")));
        }
        Ok(Coordinators {
            endpoints: Arc::new(clients),
            current: Arc::new(AtomicUsize::new(0)),
            credential: Credential::none(),
        })
    }

    /// The same coordinators, presenting `credential` on every call.
    pub fn with_credential(mut self, credential: Credential) -> Self {
        self.credential = credential;
        self
    }

    fn channel(&self, i: usize) -> AuthChannel {
        AuthChannel::new(self.endpoints[i].1.clone(), self.credential.clone())
    }

    /// How many coordinators there are.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Never true: construction refuses an empty list.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The `attempt`-th coordinator to try, starting from the last that answered.
    pub fn nth(&self, attempt: usize) -> (usize, &str, AuthChannel) {
        let i = (self.current.load(Ordering::Relaxed) + attempt) % self.endpoints.len();
        (i, &self.endpoints[i].0, self.channel(i))
    }

    /// Remembers that coordinator `i` answered.
    pub fn answered(&self, i: usize) {
        self.current.store(i, Ordering::Relaxed);
    }

    /// Runs `call` against the coordinators, starting with the last that
    /// answered, until one answers or all were unavailable.
    pub async fn call<T, F, Fut>(&self, name: &str, call: F) -> Result<T, CatalogError>
    where
        F: Fn(AuthChannel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for attempt in 0..n {
            let i = (start + attempt) % n;
            let url = &self.endpoints[i].0;
            match call(self.channel(i)).await {
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

type CatalogClient = pb::catalog_service_client::CatalogServiceClient<AuthChannel>;

impl GrpcCatalog {
    /// A client for the coordinators at `endpoints` (comma-separated URLs).
    /// Connects lazily, so coordinators that start later are found.
    pub fn connect_lazy(endpoints: &str, timeout: Duration) -> Result<Self, CatalogError> {
        Self::connect_lazy_with_tls(endpoints, timeout, None)
    }

    /// As [`GrpcCatalog::connect_lazy`], with TLS for `https://` endpoints.
    pub fn connect_lazy_with_tls(
        endpoints: &str,
        timeout: Duration,
        tls: Option<&Arc<crate::tls::Tls>>,
    ) -> Result<Self, CatalogError> {
        Ok(GrpcCatalog {
            coordinators: Coordinators::connect_lazy_with_tls(endpoints, timeout, tls)?,
        })
    }

    /// The same client, presenting `credential` (the cluster secret) on
    /// every call.
    pub fn with_credential(self, credential: Credential) -> Self {
        GrpcCatalog {
            coordinators: self.coordinators.with_credential(credential),
        }
    }

    async fn call<T, F, Fut>(&self, name: &str, call: F) -> Result<T, CatalogError>
    where
        F: Fn(CatalogClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.coordinators
            .call(name, |channel| call(CatalogClient::new(channel)))
            .await
    }

    /// Lists files with the listing's consistency and sequence (see
    /// `ListFilesResponse`): `linearizable` confirms leadership first.
    async fn list_files_as_of_impl(
        &self,
        query: FileQuery,
        linearizable: bool,
    ) -> Result<(Vec<CatalogFile>, ListingInfo), CatalogError> {
        let req = pb::ListFilesRequest {
            tenant: query.tenant.to_string(),
            table: query.table.name().to_string(),
            min_time_micros: query.min_time_micros,
            max_time_micros: query.max_time_micros,
            linearizable,
        };
        let resp = self
            .call("ListFiles", |mut c| {
                let req = req.clone();
                async move { c.list_files(req).await }
            })
            .await?;
        let info = ListingInfo {
            consistency: resp.consistency,
            served_by: resp.served_by,
            applied_index: resp.applied_index,
            as_of_sequence: resp.as_of_sequence,
        };
        let files = resp
            .files
            .into_iter()
            .map(convert::catalog_file_from_pb)
            .collect::<Result<_, _>>()?;
        Ok((files, info))
    }

    /// Follows the catalog changes of the tenants in `cursors` (tenant →
    /// last sequence seen), as they are applied. On a lost connection the
    /// stream reconnects, to the next coordinator if need be, and resumes
    /// after the last change it delivered: no gap, no duplicate. It ends with
    /// an error only for errors a retry cannot mend (a cursor older than the
    /// kept history, a bad tenant).
    pub fn watch(
        &self,
        cursors: std::collections::BTreeMap<TenantId, u64>,
    ) -> impl futures::Stream<Item = Result<CatalogChange, CatalogError>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let coordinators = self.coordinators.clone();
        tokio::spawn(watch_loop(coordinators, cursors, tx));
        ReceiverStream(rx)
    }
}

/// An mpsc receiver as a stream.
struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

async fn watch_loop(
    coordinators: Coordinators,
    mut cursors: std::collections::BTreeMap<TenantId, u64>,
    tx: tokio::sync::mpsc::Sender<Result<CatalogChange, CatalogError>>,
) {
    let mut attempt = 0usize;
    let mut backoff = Duration::from_millis(50);
    loop {
        let (i, url, channel) = coordinators.nth(attempt);
        let req = pb::WatchRequest {
            cursors: cursors
                .iter()
                .map(|(t, after)| pb::WatchCursor {
                    tenant: t.to_string(),
                    after_sequence: *after,
                })
                .collect(),
        };
        let failure = match CatalogClient::new(channel).watch(req).await {
            Ok(resp) => {
                let mut stream = resp.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(change)) => {
                            coordinators.answered(i);
                            backoff = Duration::from_millis(50);
                            let change = match convert::change_from_pb(change) {
                                Ok(c) => c,
                                Err(e) => {
                                    let _ = tx.send(Err(e)).await;
                                    return;
                                }
                            };
                            // A reconnect may replay what a slower node had
                            // not yet sent; never deliver a change twice.
                            let Ok(tenant) = TenantId::new(change.tenant.clone()) else {
                                continue;
                            };
                            let cursor = cursors.entry(tenant).or_insert(0);
                            if change.last_sequence <= *cursor {
                                continue;
                            }
                            *cursor = change.last_sequence;
                            if tx.send(Ok(change)).await.is_err() {
                                return; // the watcher went away
                            }
                        }
                        Ok(None) => {
                            break status_to_error(tonic::Status::unavailable(format!(
                                "{url}: watch stream ended"
                            )));
                        }
                        Err(status) => break status_to_error(status),
                    }
                }
            }
            Err(status) => status_to_error(status),
        };
        if !failure.is_retryable() {
            let _ = tx.send(Err(failure)).await;
            return;
        }
        if tx.is_closed() {
            return;
        }
        tracing::debug!(error = %failure, "catalog watch reconnecting");
        attempt += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
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
        Ok(self.list_files_as_of_impl(query, false).await?.0)
    }

    async fn list_files_as_of(
        &self,
        query: FileQuery,
        linearizable: bool,
    ) -> Result<(Vec<CatalogFile>, ListingInfo), CatalogError> {
        self.list_files_as_of_impl(query, linearizable).await
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

    async fn replace_files(&self, swap: FileSwap) -> Result<ChangeOutcome, CatalogError> {
        let req = convert::swap_to_pb(&swap);
        let resp = self
            .call("ReplaceFiles", |mut c| {
                let req = req.clone();
                async move { c.replace_files(req).await }
            })
            .await?;
        convert::outcome_from_pb(resp)
    }

    async fn remove_files(&self, removal: FileRemoval) -> Result<ChangeOutcome, CatalogError> {
        let req = convert::removal_to_pb(&removal);
        let resp = self
            .call("RemoveFiles", |mut c| {
                let req = req.clone();
                async move { c.remove_files(req).await }
            })
            .await?;
        convert::outcome_from_pb(resp)
    }

    async fn changes_since(
        &self,
        tenant: &TenantId,
        after_sequence: u64,
        limit: usize,
    ) -> Result<ChangePage, CatalogError> {
        let req = pb::ChangesSinceRequest {
            tenant: tenant.to_string(),
            after_sequence,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        let resp = self
            .call("ChangesSince", |mut c| {
                let req = req.clone();
                async move { c.changes_since(req).await }
            })
            .await?;
        Ok(ChangePage {
            changes: resp
                .changes
                .into_iter()
                .map(convert::change_from_pb)
                .collect::<Result<_, _>>()?,
            last_sequence: resp.last_sequence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_connections_are_retryable() {
        let e = status_to_error(tonic::Status::internal("h2 protocol error: http2 error"));
        assert!(e.is_retryable(), "{e}");
        let e = status_to_error(tonic::Status::unknown("transport error"));
        assert!(e.is_retryable(), "{e}");
        let e = status_to_error(tonic::Status::internal("redb: disk full"));
        assert!(!e.is_retryable(), "{e}");
    }
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
            CatalogError::HistoryCompacted { reason: "d".into() },
        ] {
            let back = status_to_error(error_to_status(&err));
            assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(&err));
        }
    }
}
