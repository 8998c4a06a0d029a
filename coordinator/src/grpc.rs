//! The coordinator's gRPC services: the catalog (over any [`Catalog`]),
//! cluster membership and the control plane (over a [`CoordinatorNode`]).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use spoor_common::TenantId;
use spoor_common::catalog::{Catalog, CatalogError};
use spoor_common::catalog_client::{convert, error_to_status};
use spoor_common::control::{Heartbeat, control_convert as cc};
use spoor_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::CoordinatorNode;
use crate::control_state::ControlOp;
use crate::guard::{GrpcGuard, audited, caller, may_manage_tokens, require_cluster, token_scope};

/// A service behind its credential guard.
pub type Guarded<S> = tonic::service::interceptor::InterceptedService<S, GrpcGuard>;
use crate::raft_types::Command;

/// Changes sent per catalog read while a watcher catches up.
const WATCH_PAGE: usize = 256;
/// How often a watch re-reads when the catalog gives no change signal.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// Serves `spoor.v1.CatalogService` from a catalog.
#[derive(Clone)]
pub struct CatalogGrpc {
    catalog: Arc<dyn Catalog>,
    changed: Option<tokio::sync::watch::Receiver<u64>>,
    stopping: Option<tokio::sync::watch::Receiver<bool>>,
}

impl CatalogGrpc {
    /// The service over `catalog`; watches poll it.
    pub fn new(catalog: Arc<dyn Catalog>) -> Self {
        CatalogGrpc {
            catalog,
            changed: None,
            stopping: None,
        }
    }

    /// The service over a coordinator node; watches wake when it applies entries.
    pub fn for_node(node: CoordinatorNode) -> Self {
        CatalogGrpc {
            changed: Some(node.applied()),
            stopping: Some(node.stopping()),
            catalog: Arc::new(node),
        }
    }

    /// As a tonic service behind `guard`, ready to add to a server.
    pub fn into_server(
        self,
        guard: GrpcGuard,
    ) -> Guarded<pb::catalog_service_server::CatalogServiceServer<Self>> {
        Guarded::new(
            pb::catalog_service_server::CatalogServiceServer::new(self),
            guard,
        )
    }
}

fn status(e: CatalogError) -> Status {
    error_to_status(&e)
}

fn tenant(name: String) -> Result<TenantId, Status> {
    TenantId::new(name).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A server stream fed by a channel.
type ChannelStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

fn channel_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<Result<T, Status>>,
) -> ChannelStream<T> {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Sends each tenant's changes after its cursor, then waits for the catalog
/// to change; ends when the watcher goes away or on an error a retry cannot
/// mend (sent to the watcher).
async fn feed_watch(
    catalog: Arc<dyn Catalog>,
    mut changed: Option<tokio::sync::watch::Receiver<u64>>,
    mut stopping: Option<tokio::sync::watch::Receiver<bool>>,
    mut cursors: Vec<(TenantId, u64)>,
    tx: tokio::sync::mpsc::Sender<Result<pb::CatalogChange, Status>>,
) {
    let stopped = async |stopping: &mut Option<tokio::sync::watch::Receiver<bool>>| match stopping {
        Some(rx) => {
            let _ = rx.wait_for(|s| *s).await;
        }
        None => std::future::pending().await,
    };
    loop {
        if let Some(rx) = changed.as_mut() {
            // Mark the current state seen before reading it, so an entry
            // applied during the read wakes the wait below.
            rx.borrow_and_update();
        }
        let mut progressed = false;
        for (tenant, cursor) in &mut cursors {
            match catalog.changes_since(tenant, *cursor, WATCH_PAGE).await {
                Ok(page) => {
                    for change in page.changes {
                        *cursor = change.last_sequence;
                        progressed = true;
                        if tx.send(Ok(convert::change_to_pb(&change))).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(status(e))).await;
                    return;
                }
            }
        }
        if progressed {
            continue;
        }
        let shutting_down = || {
            Err(Status::unavailable(
                "the coordinator is shutting down; reconnect",
            ))
        };
        match changed.as_mut() {
            Some(rx) => tokio::select! {
                r = rx.changed() => if r.is_err() {
                    let _ = tx.send(shutting_down()).await;
                    return;
                },
                () = stopped(&mut stopping) => {
                    let _ = tx.send(shutting_down()).await;
                    return;
                },
                () = tx.closed() => return,
            },
            None => tokio::select! {
                () = tokio::time::sleep(WATCH_POLL) => {},
                () = tx.closed() => return,
            },
        }
    }
}

#[tonic::async_trait]
impl pb::catalog_service_server::CatalogService for CatalogGrpc {
    type WatchStream = ChannelStream<pb::CatalogChange>;

    async fn replace_files(
        &self,
        request: Request<pb::ReplaceFilesRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let swap = convert::swap_from_pb(request.into_inner()).map_err(status)?;
        let out = self.catalog.replace_files(swap).await.map_err(status)?;
        Ok(Response::new(convert::outcome_to_pb(&out)))
    }

    async fn remove_files(
        &self,
        request: Request<pb::RemoveFilesRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let removal = convert::removal_from_pb(request.into_inner()).map_err(status)?;
        let out = self.catalog.remove_files(removal).await.map_err(status)?;
        Ok(Response::new(convert::outcome_to_pb(&out)))
    }

    async fn changes_since(
        &self,
        request: Request<pb::ChangesSinceRequest>,
    ) -> Result<Response<pb::ChangesSinceResponse>, Status> {
        let req = request.into_inner();
        let limit = (req.limit as usize).clamp(1, 10_000);
        let page = self
            .catalog
            .changes_since(&tenant(req.tenant)?, req.after_sequence, limit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ChangesSinceResponse {
            changes: page.changes.iter().map(convert::change_to_pb).collect(),
            last_sequence: page.last_sequence,
        }))
    }

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let req = request.into_inner();
        if req.cursors.is_empty() {
            return Err(Status::invalid_argument(
                "watch needs at least one tenant cursor",
            ));
        }
        let mut cursors = Vec::with_capacity(req.cursors.len());
        for c in req.cursors {
            let t = tenant(c.tenant)?;
            // Refuse a cursor older than the kept history now, not mid-stream.
            self.catalog
                .changes_since(&t, c.after_sequence, 1)
                .await
                .map_err(status)?;
            cursors.push((t, c.after_sequence));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_PAGE);
        tokio::spawn(feed_watch(
            self.catalog.clone(),
            self.changed.clone(),
            self.stopping.clone(),
            cursors,
            tx,
        ));
        Ok(Response::new(channel_stream(rx)))
    }

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
        let req = request.into_inner();
        let linearizable = req.linearizable;
        let query = convert::query_from_pb(req).map_err(status)?;
        let (files, info) = self
            .catalog
            .list_files_as_of(query, linearizable)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListFilesResponse {
            files: files.iter().map(convert::catalog_file_to_pb).collect(),
            consistency: info.consistency,
            served_by: info.served_by,
            applied_index: info.applied_index,
            as_of_sequence: info.as_of_sequence,
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
            let service = CatalogGrpc::new(Arc::new(MemoryCatalog::new()))
                .into_server(crate::GrpcGuard::nodes_only(None));
            tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(
                        crate::incoming(listener, Default::default()).expect("listen"),
                    )
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

    /// As a tonic service behind `guard`.
    pub fn into_server(
        self,
        guard: GrpcGuard,
    ) -> Guarded<pb::cluster_service_server::ClusterServiceServer<Self>> {
        Guarded::new(
            pb::cluster_service_server::ClusterServiceServer::new(self),
            guard,
        )
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
        require_cluster(&request, "add coordinators")?;
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
        require_cluster(&request, "remove coordinators")?;
        let m = self
            .node
            .remove_node(request.into_inner().node_id)
            .await
            .map_err(|e| error_to_status(&e))?;
        Ok(membership_reply(m))
    }

    async fn membership(
        &self,
        request: Request<pb::MembershipRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        require_cluster(&request, "read the membership")?;
        Ok(membership_reply(self.node.membership()))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        require_cluster(&request, "move the leadership")?;
        let m = self
            .node
            .transfer_leader(request.into_inner().node_id)
            .await
            .map_err(status)?;
        Ok(membership_reply(m))
    }

    async fn propose(
        &self,
        request: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::ProposeReply>, Status> {
        require_cluster(&request, "propose commands")?;
        let command: Command = serde_json::from_slice(&request.into_inner().command)
            .map_err(|e| Status::invalid_argument(format!("malformed forwarded command: {e}")))?;
        // A forwarded command is not forwarded again: if leadership moved
        // meanwhile, the caller retries (its client moves between coordinators).
        let reply = match self.node.propose_local(command).await {
            Ok(outcome) => crate::raft_types::Reply(Ok(outcome)),
            Err(crate::node::Forward::Failed(e)) => crate::raft_types::Reply(Err(e)),
            Err(crate::node::Forward::To(leader, _)) => {
                crate::raft_types::Reply(Err(CatalogError::Unavailable {
                    reason: format!(
                        "node {} is no longer the leader (leader now: {leader:?}); retry",
                        self.node.id()
                    ),
                }))
            }
        };
        let reply = serde_json::to_vec(&reply)
            .map_err(|e| Status::internal(format!("encoding the reply: {e}")))?;
        Ok(Response::new(pb::ProposeReply { reply }))
    }

    async fn hold_elections(
        &self,
        request: Request<pb::HoldElectionsRequest>,
    ) -> Result<Response<pb::HoldElectionsReply>, Status> {
        require_cluster(&request, "hold elections")?;
        self.node
            .hold_elections(Duration::from_millis(request.into_inner().hold_ms));
        Ok(Response::new(pb::HoldElectionsReply {}))
    }

    async fn elect(
        &self,
        request: Request<pb::ElectRequest>,
    ) -> Result<Response<pb::ElectReply>, Status> {
        require_cluster(&request, "start elections")?;
        self.node.elect().await.map_err(status)?;
        Ok(Response::new(pb::ElectReply {}))
    }
}

/// A token made by a tenant-admin may not outlive the tenant-admin's own
/// token: an expiring tenant-admin cannot leave tokens behind that never
/// expire.
fn outlives_its_maker(
    who: &crate::GrpcCaller,
    new: &spoor_common::control::TokenRecord,
) -> Result<(), Status> {
    let crate::GrpcCaller::Token(maker) = who else {
        return Ok(());
    };
    match (maker.expires_at_micros, new.expires_at_micros) {
        (Some(limit), None) => Err(Status::permission_denied(format!(
            "this token expires at {}: a token it creates must expire by then (--expires-in)",
            spoor_common::time::rfc3339(limit)
        ))),
        (Some(limit), Some(at)) if at > limit => Err(Status::permission_denied(format!(
            "this token expires at {}: a token it creates must expire by then, not at {}",
            spoor_common::time::rfc3339(limit),
            spoor_common::time::rfc3339(at)
        ))),
        _ => Ok(()),
    }
}

/// Serves `spoor.v1.ControlService` (members, tenants, tokens, rule sets,
/// shards) for a coordinator.
#[derive(Clone)]
pub struct ControlGrpc {
    node: CoordinatorNode,
    audit: spoor_common::audit::AuditLog,
}

impl ControlGrpc {
    /// The service for `node`.
    pub fn new(node: CoordinatorNode) -> Self {
        ControlGrpc {
            node,
            audit: Default::default(),
        }
    }

    /// The same service, recording token and tenant changes in `audit`.
    pub fn with_audit(mut self, audit: spoor_common::audit::AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// As a tonic service behind `guard`.
    pub fn into_server(
        self,
        guard: GrpcGuard,
    ) -> Guarded<pb::control_service_server::ControlServiceServer<Self>> {
        Guarded::new(
            pb::control_service_server::ControlServiceServer::new(self),
            guard,
        )
    }
}

#[tonic::async_trait]
impl pb::control_service_server::ControlService for ControlGrpc {
    type BackupCatalogStream = ChannelStream<pb::BackupChunk>;

    async fn backup_catalog(
        &self,
        request: Request<pb::BackupCatalogRequest>,
    ) -> Result<Response<Self::BackupCatalogStream>, Status> {
        require_cluster(&request, "back up the catalog")?;
        let who = caller(&request)?.clone();
        let (bytes, header) = self.node.backup().await.map_err(status)?;
        self.audit.record(spoor_common::audit::AuditRecord {
            detail: Some(format!(
                "{} bytes; last applied index {}; {} files, {} tenants, {} source checkpoints",
                bytes.len(),
                header.last_applied.map_or(0, |l| l.index),
                header.summary.files,
                header.summary.tenants,
                header.summary.checkpoints
            )),
            ..who.audit("catalog_backup")
        });
        let chunks: Vec<Result<pb::BackupChunk, Status>> = bytes
            .chunks(crate::backup::CHUNK_BYTES)
            .map(|c| Ok(pb::BackupChunk { data: c.to_vec() }))
            .collect();
        let stream: Self::BackupCatalogStream = Box::pin(futures::stream::iter(chunks));
        Ok(Response::new(stream))
    }

    async fn restore_catalog(
        &self,
        request: Request<tonic::Streaming<pb::RestoreChunk>>,
    ) -> Result<Response<pb::RestoreCatalogReply>, Status> {
        require_cluster(&request, "restore the catalog")?;
        let who = caller(&request)?.clone();
        let forwarded = request.metadata().contains_key(crate::backup::FORWARDED);
        let mut chunks = request.into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks.message().await? {
            if bytes.len() + chunk.data.len() > crate::backup::MAX_BACKUP_BYTES {
                return Err(Status::resource_exhausted(
                    crate::backup::BackupError::TooLarge.to_string(),
                ));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        let out = self.node.restore(&bytes, forwarded).await.map_err(status)?;
        // Recorded where the caller called, with the caller's token; the
        // leader a follower forwarded it to does not record it again.
        if !out.already_applied && !forwarded {
            self.audit.record(spoor_common::audit::AuditRecord {
                detail: serde_json::to_string(&out).ok(),
                ..who.audit("catalog_restored")
            });
        }
        Ok(Response::new(crate::backup::outcome_to_pb(&out)))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        require_cluster(&request, "register members")?;
        let req = request.into_inner();
        let member = req
            .member
            .ok_or_else(|| Status::invalid_argument("heartbeat without its member"))?;
        let hb = Heartbeat {
            member: cc::member_info_from_pb(member).map_err(status)?,
            shard_loads: req
                .shard_loads
                .into_iter()
                .map(|l| Ok((cc::shard_id_from_pb(l.shard)?, l.events_per_second)))
                .collect::<Result<_, CatalogError>>()
                .map_err(status)?,
        };
        let reply = self.node.heartbeat(hb).await.map_err(status)?;
        Ok(Response::new(pb::HeartbeatReply {
            leader_id: reply.leader_id,
            leases: reply
                .leases
                .iter()
                .map(|l| pb::ShardLease {
                    shard: Some(cc::shard_id_to_pb(&l.shard)),
                    epoch: l.epoch,
                    checkpoint: l.checkpoint.as_ref().map(cc::shard_checkpoint_to_pb),
                })
                .collect(),
            member_timeout_ms: reply.member_timeout.as_millis() as u64,
        }))
    }

    async fn put_tenant(
        &self,
        request: Request<pb::Tenant>,
    ) -> Result<Response<pb::PutTenantReply>, Status> {
        require_cluster(&request, "manage tenants")?;
        let who = caller(&request)?.clone();
        let request = request.into_inner();
        let read = request.expected_fingerprint.clone();
        let t = cc::tenant_from_pb(request).map_err(status)?;
        // Refused when the change brings the problem; a tenant stored with
        // it before this check existed can still be updated otherwise.
        if let Some(problem) = t.retention_problem() {
            let current = self.node.tenants().map_err(status)?;
            let had_it = current.iter().any(|c| {
                c.id == t.id
                    && c.retention_days == t.retention_days
                    && c.table_retention_days == t.table_retention_days
            });
            if !had_it {
                return Err(Status::invalid_argument(problem));
            }
        }
        let op = match read {
            Some(read) => ControlOp::PutTenantOver {
                record: t.clone(),
                read,
            },
            None => ControlOp::PutTenant(t.clone()),
        };
        let out = self.node.control(op).await.map_err(status)?;
        if !out.already_applied {
            self.audit.record(spoor_common::audit::AuditRecord {
                tenants: vec![t.id.to_string()],
                target: Some(t.id.to_string()),
                detail: serde_json::to_string(&t).ok(),
                ..who.audit("tenant_changed")
            });
        }
        Ok(Response::new(pb::PutTenantReply {}))
    }

    async fn create_token(
        &self,
        request: Request<pb::TokenRecord>,
    ) -> Result<Response<pb::CreateTokenReply>, Status> {
        let who = caller(&request)?.clone();
        let t = cc::token_from_pb(request.into_inner()).map_err(status)?;
        may_manage_tokens(&who, &t.tenants, t.role)
            .and_then(|()| outlives_its_maker(&who, &t))
            .map_err(|s| audited(&self.audit, &who, s))?;
        let out = self
            .node
            .control(ControlOp::CreateToken(t.clone()))
            .await
            .map_err(status)?;
        if !out.already_applied {
            self.audit.record(spoor_common::audit::AuditRecord {
                tenants: t.tenants.iter().map(ToString::to_string).collect(),
                target: Some(t.token_id.clone()),
                detail: Some(format!(
                    "role {}; expires {}; {}",
                    t.role,
                    t.expires_at_micros
                        .map_or("never".to_string(), spoor_common::time::rfc3339),
                    t.description
                )),
                ..who.audit("token_created")
            });
        }
        Ok(Response::new(pb::CreateTokenReply {}))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenReply>, Status> {
        let who = caller(&request)?.clone();
        let token_id = request.into_inner().token_id;
        let scoped = token_scope(&who)
            .map_err(|s| audited(&self.audit, &who, s))?
            .is_some();
        // Someone else's token is "not found", not "forbidden": the answer
        // must not tell which tokens other tenants have.
        let theirs = self.node.tokens().map_err(status)?.into_iter().any(|t| {
            t.token_id == token_id
                && (!scoped || may_manage_tokens(&who, &t.tenants, t.role).is_ok())
        });
        if !theirs {
            return Err(Status::not_found(if scoped {
                format!("no token with id {token_id} among the tokens of this token's tenants")
            } else {
                format!("no token with id {token_id}")
            }));
        }
        let out = self
            .node
            .control(ControlOp::RevokeToken {
                token_id: token_id.clone(),
            })
            .await
            .map_err(status)?;
        if !out.already_applied {
            self.audit.record(spoor_common::audit::AuditRecord {
                target: Some(token_id),
                ..who.audit("token_revoked")
            });
        }
        Ok(Response::new(pb::RevokeTokenReply {}))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensReply>, Status> {
        let who = caller(&request)?.clone();
        let req = request.into_inner();
        let only = if req.tenant.is_empty() {
            None
        } else {
            Some(tenant(req.tenant)?)
        };
        let scoped = token_scope(&who)
            .map_err(|s| audited(&self.audit, &who, s))?
            .is_some();
        let tokens = self
            .node
            .tokens()
            .map_err(status)?
            .into_iter()
            .filter(|t| only.as_ref().is_none_or(|o| t.tenants.contains(o)))
            // A tenant-admin sees the tokens bound to its tenants only, not
            // an operator's token that also names another tenant.
            .filter(|t| !scoped || may_manage_tokens(&who, &t.tenants, t.role).is_ok())
            .map(|mut t| {
                t.secret_sha256.clear();
                cc::token_to_pb(&t)
            })
            .collect();
        Ok(Response::new(pb::ListTokensReply { tokens }))
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::TokenRecord>, Status> {
        require_cluster(&request, "check tokens")?;
        match self.node.authenticate(&request.into_inner().token) {
            Ok(record) => Ok(Response::new(cc::token_to_pb(&record))),
            Err(CatalogError::Conflict { reason }) => Err(Status::unauthenticated(reason)),
            Err(e) => Err(status(e)),
        }
    }

    async fn put_rule_set(
        &self,
        request: Request<pb::PutRuleSetRequest>,
    ) -> Result<Response<pb::RuleSet>, Status> {
        require_cluster(&request, "write rule sets directly")?;
        let req = request.into_inner();
        let out = self
            .node
            .control(ControlOp::PutRuleSet {
                tenant: tenant(req.tenant)?,
                name: req.name,
                content: req.content,
                enabled: !req.disabled,
                expected_version: req.expected_version,
            })
            .await
            .map_err(status)?;
        let stored = out
            .rule_set
            .ok_or_else(|| Status::internal("rule set change without the stored set"))?;
        Ok(Response::new(cc::rule_set_to_pb(&stored)))
    }

    async fn list_rule_sets(
        &self,
        request: Request<pb::ListRuleSetsRequest>,
    ) -> Result<Response<pb::ListRuleSetsReply>, Status> {
        require_cluster(&request, "read rule sets directly")?;
        let t = tenant(request.into_inner().tenant)?;
        let sets = self.node.rule_sets(&t).map_err(status)?;
        Ok(Response::new(pb::ListRuleSetsReply {
            rule_sets: sets.iter().map(cc::rule_set_to_pb).collect(),
        }))
    }

    async fn define_shards(
        &self,
        request: Request<pb::DefineShardsRequest>,
    ) -> Result<Response<pb::DefineShardsReply>, Status> {
        require_cluster(&request, "define shards")?;
        let req = request.into_inner();
        self.node
            .control(ControlOp::DefineShards {
                tenant: tenant(req.tenant)?,
                rule_group: req.rule_group,
                buckets: req.buckets,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DefineShardsReply {}))
    }

    async fn commit_shard(
        &self,
        request: Request<pb::ShardCommitRequest>,
    ) -> Result<Response<pb::CommitBatchResponse>, Status> {
        require_cluster(&request, "commit shards")?;
        let (commit, batch) = cc::shard_commit_from_pb(request.into_inner()).map_err(status)?;
        let out = self
            .node
            .commit_shard(commit, batch)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CommitBatchResponse {
            sequences: out.sequences,
            already_committed: out.already_committed,
        }))
    }

    async fn cluster_status(
        &self,
        request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusReply>, Status> {
        require_cluster(&request, "read the cluster status")?;
        let include_usage = request.get_ref().include_usage;
        let s = self
            .node
            .cluster_status(include_usage)
            .await
            .map_err(status)?;
        Ok(Response::new(spoor_common::control::cluster_status_to_pb(
            &s,
        )))
    }
}

#[cfg(test)]
mod token_lifetime_tests {
    use super::*;
    use spoor_common::control::{TokenRecord, TokenRole};

    fn record(expires: Option<i64>) -> TokenRecord {
        TokenRecord {
            token_id: "0123456789abcdef".into(),
            tenants: vec![spoor_common::TenantId::new("acme").expect("tenant")],
            role: TokenRole::TenantAdmin,
            secret_sha256: String::new(),
            description: String::new(),
            revoked: false,
            expires_at_micros: expires,
        }
    }

    #[test]
    fn a_token_never_outlives_the_token_that_made_it() {
        let maker = crate::GrpcCaller::Token(record(Some(1_000)));
        assert!(outlives_its_maker(&maker, &record(Some(999))).is_ok());
        assert!(outlives_its_maker(&maker, &record(Some(1_001))).is_err());
        assert!(outlives_its_maker(&maker, &record(None)).is_err());
        let forever = crate::GrpcCaller::Token(record(None));
        assert!(outlives_its_maker(&forever, &record(None)).is_ok());
        assert!(outlives_its_maker(&crate::GrpcCaller::Node, &record(None)).is_ok());
    }
}
