//! Arrow Flight SQL: the query layer for ADBC/JDBC Flight SQL drivers and
//! pyarrow.
//!
//! Authentication: a Flight handshake with HTTP Basic credentials whose
//! password is the token (the user name is ignored) answers with
//! `authorization: Bearer <token>`, which the client sends on every call;
//! clients may also send that header directly. With `query.auth = "none"`
//! every call reads the default tenant.
//!
//! Tickets and prepared-statement handles carry only the SQL text. Every
//! call derives its scope from its own token, so a ticket or handle passed
//! to another tenant's client runs against that client's tenants, never the
//! issuer's: they are not capabilities.

use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use base64::Engine;
use futures::{Stream, TryStreamExt};
use prost::Message;
use spoor_common::auth::{AuthError, bearer_value};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status, Streaming};

use crate::access::{Access, AccessError};
use crate::audit::Scope;
use crate::engine::{QueryEngine, QueryError, catalog_tables, schema_name};

/// The catalog name every session has.
const CATALOG: &str = "spoor";

type FlightStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Flight SQL service over a query engine.
#[derive(Clone)]
pub struct SpoorFlightSql {
    engine: QueryEngine,
    access: Arc<Access>,
    sql_info: Arc<SqlInfoData>,
}

impl std::fmt::Debug for SpoorFlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoorFlightSql").finish_non_exhaustive()
    }
}

impl SpoorFlightSql {
    /// The service; `Err` only if the static server description cannot be built.
    pub fn new(engine: QueryEngine, access: Access) -> Result<Self, String> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "Spoor");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0_i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        let sql_info = info.build().map_err(|e| e.to_string())?;
        Ok(SpoorFlightSql {
            engine,
            access: Arc::new(access),
            sql_info: Arc::new(sql_info),
        })
    }

    /// The gRPC service to serve.
    pub fn into_server(self) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self)
    }

    async fn scope(&self, metadata: &MetadataMap) -> Result<Scope, Status> {
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_value);
        self.access
            .scope_via("flight_sql", token)
            .await
            .map_err(|e| access_status(&e))
    }

    /// The FlightInfo of a statement: its schema, planned in the caller's scope.
    async fn statement_info(
        &self,
        sql: &str,
        request: Request<FlightDescriptor>,
        ticket: Vec<u8>,
    ) -> Result<Response<FlightInfo>, Status> {
        let scope = self.scope(request.metadata()).await?;
        let schema = self
            .engine
            .schema_of(&scope, sql)
            .await
            .map_err(query_status)?;
        flight_info(request.into_inner(), &schema, ticket)
    }

    /// The FlightInfo of a metadata call, for a caller with a scope.
    async fn metadata_info(
        &self,
        request: Request<FlightDescriptor>,
        schema: &Schema,
        command: Vec<u8>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.scope(request.metadata()).await?;
        flight_info(request.into_inner(), schema, command)
    }

    async fn rows(
        &self,
        scope: &Scope,
        sql: &str,
    ) -> Result<FlightStream<arrow_flight::FlightData>, Status> {
        let rows = self
            .engine
            .execute_stream(scope, "flight_sql", sql)
            .await
            .map_err(query_status)?;
        let batches = rows
            .batches
            .map_err(|e| FlightError::Tonic(Box::new(query_status(e))));
        Ok(encode(rows.schema, batches))
    }
}

fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> FlightStream<arrow_flight::FlightData> {
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from),
    )
}

fn one_batch<E: std::fmt::Display>(
    batch: Result<RecordBatch, E>,
) -> Result<FlightStream<arrow_flight::FlightData>, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    Ok(encode(
        batch.schema(),
        futures::stream::once(async { Ok(batch) }),
    ))
}

fn access_status(e: &AccessError) -> Status {
    match e {
        AccessError::Auth(AuthError::Missing) => Status::unauthenticated(e.to_string()),
        AccessError::Auth(AuthError::Invalid(_)) => Status::unauthenticated(e.to_string()),
        AccessError::Auth(AuthError::Unavailable(_)) => Status::unavailable(e.to_string()),
        AccessError::Auth(AuthError::WrongRole { .. }) | AccessError::NoTenants => {
            Status::permission_denied(e.to_string())
        }
    }
}

fn query_status(e: QueryError) -> Status {
    let message = e.to_string();
    match e {
        QueryError::InvalidSql(_) | QueryError::TooLarge { .. } => {
            Status::invalid_argument(message)
        }
        QueryError::Timeout(_) => Status::deadline_exceeded(message),
        QueryError::MemoryLimit(_)
        | QueryError::TooManyQueries { .. }
        | QueryError::ScanLimit { .. } => Status::resource_exhausted(message),
        QueryError::Cancelled => Status::cancelled(message),
        QueryError::Catalog(c) if c.is_retryable() => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

fn sql_text(bytes: &[u8], what: &str) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Status::invalid_argument(format!("{what} is not UTF-8 SQL text")))
}

/// A FlightInfo whose one endpoint's ticket is `ticket`.
fn flight_info(
    descriptor: FlightDescriptor,
    schema: &Schema,
    ticket: Vec<u8>,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

#[tonic::async_trait]
impl FlightSqlService for SpoorFlightSql {
    type FlightService = SpoorFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<FlightStream<HandshakeResponse>>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim()
            .to_string();
        let token = if let Some(basic) = header.strip_prefix("Basic ") {
            // Padded or not: clients differ (the Go ADBC driver leaves it out).
            let basic = basic.trim().trim_end_matches('=');
            let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(basic)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(basic))
                .map_err(|_| Status::invalid_argument("Basic credentials are not base64"))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| Status::invalid_argument("Basic credentials are not UTF-8"))?;
            // user:password, the password being the token.
            text.split_once(':')
                .map(|(_, password)| password.to_string())
                .ok_or_else(|| Status::invalid_argument("Basic credentials need user:password"))?
        } else if let Some(token) = bearer_value(&header) {
            token.to_string()
        } else if self.access.requires_token() {
            return Err(Status::unauthenticated(
                "a token is required: Basic credentials with the token as password, or Bearer <token>",
            ));
        } else {
            String::new()
        };
        if self.access.requires_token() {
            self.access
                .scope_via("flight_sql", Some(&token))
                .await
                .map_err(|e| access_status(&e))?;
        }
        let output = futures::stream::iter([Ok(HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        })]);
        let mut response: Response<FlightStream<HandshakeResponse>> =
            Response::new(Box::pin(output));
        if !token.is_empty()
            && let Ok(value) = MetadataValue::try_from(format!("Bearer {token}"))
        {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = TicketStatementQuery {
            statement_handle: query.query.clone().into_bytes().into(),
        };
        self.statement_info(&query.query, request, ticket.as_any().encode_to_vec())
            .await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let sql = sql_text(
            &query.prepared_statement_handle,
            "the prepared statement handle",
        )?;
        self.statement_info(&sql, request, query.as_any().encode_to_vec())
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let scope = self.scope(request.metadata()).await?;
        let sql = sql_text(&ticket.statement_handle, "the ticket")?;
        Ok(Response::new(self.rows(&scope, &sql).await?))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let scope = self.scope(request.metadata()).await?;
        let sql = sql_text(
            &query.prepared_statement_handle,
            "the prepared statement handle",
        )?;
        Ok(Response::new(self.rows(&scope, &sql).await?))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let scope = self.scope(request.metadata()).await?;
        let schema = self
            .engine
            .schema_of(&scope, &query.query)
            .await
            .map_err(query_status)?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles hold no server state; closing only checks the caller.
        self.scope(request.metadata()).await.map(|_| ())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(request, &schema, query.as_any().encode_to_vec())
            .await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.scope(request.metadata()).await?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        Ok(Response::new(one_batch(builder.build())?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(request, &schema, query.as_any().encode_to_vec())
            .await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let scope = self.scope(request.metadata()).await?;
        let mut builder = query.into_builder();
        builder.append(CATALOG, schema_name(&scope));
        Ok(Response::new(one_batch(builder.build())?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(request, &schema, query.as_any().encode_to_vec())
            .await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let scope = self.scope(request.metadata()).await?;
        let mut builder = query.into_builder();
        for (table, kind, schema) in catalog_tables() {
            builder
                .append(CATALOG, schema_name(&scope), table, kind, &schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(Response::new(one_batch(builder.build())?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = table_types()?.schema();
        self.metadata_info(request, &schema, query.as_any().encode_to_vec())
            .await
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.scope(request.metadata()).await?;
        Ok(Response::new(one_batch(Ok::<_, Status>(table_types()?))?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.metadata_info(request, &schema, query.as_any().encode_to_vec())
            .await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.scope(request.metadata()).await?;
        Ok(Response::new(one_batch(
            query.into_builder(&self.sql_info).build(),
        )?))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The table types a session has.
fn table_types() -> Result<RecordBatch, Status> {
    let schema = Arc::new(Schema::new(vec![arrow::datatypes::Field::new(
        "table_type",
        arrow::datatypes::DataType::Utf8,
        false,
    )]));
    RecordBatch::try_new(
        schema,
        vec![Arc::new(arrow::array::StringArray::from(vec![
            "TABLE", "VIEW",
        ]))],
    )
    .map_err(|e| Status::internal(e.to_string()))
}

/// Decodes a ticket's SQL for tests and tools: the statement a ticket runs.
pub fn ticket_sql(ticket: &[u8]) -> Option<String> {
    let any = arrow_flight::sql::Any::decode(ticket).ok()?;
    let statement: TicketStatementQuery = any.unpack().ok()??;
    String::from_utf8(statement.statement_handle.to_vec()).ok()
}

/// Runs the Flight SQL server on `incoming` (plain or TLS) until `stop`.
pub async fn serve(
    service: SpoorFlightSql,
    incoming: spoor_common::tls::Incoming,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(incoming.into_stream(), stop)
        .await
}
