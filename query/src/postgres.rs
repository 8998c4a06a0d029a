//! The PostgreSQL wire protocol (pgwire), so `psql`, Grafana, Metabase and
//! Superset connect to the query layer.
//!
//! Log in with any user name and a token as the password (cleartext
//! password authentication: put the listener behind TLS termination or keep
//! it on a trusted network). The token is checked at login and again (from
//! the verifier's 30-second cache) at every statement, so a revoked token
//! stops working on open connections too. With `query.auth = "none"` no
//! password is asked and every statement reads the default tenant.
//!
//! Both the simple and the extended protocol run read-only DataFusion SQL
//! (statements without parameters). A few session settings that drivers send
//! when they connect (`SET application_name`, `SET extra_float_digits`, ...)
//! are acknowledged and ignored; every other `SET` is refused like on HTTP.

use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, AsArray, BinaryArray, BooleanArray, LargeBinaryArray, RecordBatch,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    Schema, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::access::{Access, AccessError};
use crate::audit::Scope;
use crate::engine::{QueryEngine, QueryError};

/// Client settings drivers send at connect time that change nothing here.
const IGNORED_SETTINGS: &[&str] = &[
    "application_name",
    "extra_float_digits",
    "datestyle",
    "client_encoding",
    "client_min_messages",
    "intervalstyle",
    "statement_timeout",
    "bytea_output",
];

/// The token a connection logged in with.
#[derive(Default)]
struct SessionToken(OnceLock<String>);

/// The PostgreSQL protocol handlers over a query engine.
pub struct PgHandlers {
    engine: QueryEngine,
    access: Arc<Access>,
    parser: Arc<SqlText>,
    /// With TLS configured, a client that did not negotiate it is refused
    /// before it can send a token in the clear.
    require_tls: bool,
}

impl Debug for PgHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHandlers").finish_non_exhaustive()
    }
}

impl PgHandlers {
    /// Handlers answering from `engine` for callers `access` admits.
    pub fn new(engine: QueryEngine, access: Access, require_tls: bool) -> Arc<Self> {
        Arc::new(PgHandlers {
            engine,
            access: Arc::new(access),
            parser: Arc::new(SqlText),
            require_tls,
        })
    }

    async fn scope<C: ClientInfo>(&self, client: &C) -> PgWireResult<Scope> {
        let token = client
            .session_extensions()
            .get_or_insert_with(SessionToken::default);
        self.access
            .scope_via("postgres", token.0.get().map(String::as_str))
            .await
            .map_err(|e| access_error(&e))
    }

    async fn run<C: ClientInfo>(
        &self,
        client: &C,
        sql: &str,
        format: &Format,
    ) -> PgWireResult<Response> {
        if let Some(tag) = ignored_setting(sql) {
            return Ok(Response::Execution(Tag::new(tag)));
        }
        let scope = self.scope(client).await?;
        let rows = self
            .engine
            .execute_stream(&scope, "postgres", sql)
            .await
            .map_err(|e| query_error(&e))?;
        let fields = Arc::new(fields(&rows.schema, format));
        let encoder_fields = fields.clone();
        let data = rows
            .batches
            .map(move |batch| match batch {
                Ok(batch) => encode_batch(&batch, &encoder_fields),
                Err(e) => vec![Err(query_error(&e))],
            })
            .flat_map(futures::stream::iter);
        Ok(Response::Query(QueryResponse::new(fields, data)))
    }

    async fn describe<C: ClientInfo>(
        &self,
        client: &C,
        sql: &str,
        format: &Format,
    ) -> PgWireResult<Vec<FieldInfo>> {
        if ignored_setting(sql).is_some() {
            return Ok(Vec::new());
        }
        let scope = self.scope(client).await?;
        let schema = self
            .engine
            .schema_of(&scope, sql)
            .await
            .map_err(|e| query_error(&e))?;
        Ok(fields(&schema, format))
    }
}

/// `Some(tag)` when `sql` is `SET <a harmless client setting> ...`.
fn ignored_setting(sql: &str) -> Option<&'static str> {
    let mut words = sql.split_whitespace();
    let first = words.next()?;
    if !first.eq_ignore_ascii_case("set") {
        return None;
    }
    let mut name = words.next()?.to_ascii_lowercase();
    if name == "session" || name == "local" {
        name = words.next()?.to_ascii_lowercase();
    }
    let name = name.split(['=', ';']).next().unwrap_or_default();
    IGNORED_SETTINGS.contains(&name).then_some("SET")
}

fn error(severity: &str, code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_string(),
        code.to_string(),
        message,
    )))
}

fn access_error(e: &AccessError) -> PgWireError {
    // 28000 invalid_authorization_specification; 28P01 invalid_password.
    let code = match e {
        AccessError::Auth(spoor_common::auth::AuthError::Invalid(_)) => "28P01",
        _ => "28000",
    };
    error("FATAL", code, e.to_string())
}

fn query_error(e: &QueryError) -> PgWireError {
    // SQLSTATE classes: 42601 syntax_error_or_access_rule_violation, 57014
    // query_canceled, 53200 out_of_memory, 53300 too_many_connections,
    // 58000 system_error.
    let code = match e {
        QueryError::InvalidSql(_) | QueryError::TooLarge { .. } => "42601",
        QueryError::Timeout(_) | QueryError::Cancelled => "57014",
        QueryError::MemoryLimit(_) => "53200",
        // configuration_limit_exceeded
        QueryError::ScanLimit { .. } => "53400",
        QueryError::TooManyQueries { .. } => "53300",
        _ => "58000",
    };
    error("ERROR", code, e.to_string())
}

/// The PostgreSQL type a column is sent as; anything without a natural
/// match goes as text in Arrow's display form.
fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Date32 => Type::DATE,
        DataType::Binary | DataType::LargeBinary => Type::BYTEA,
        _ => Type::TEXT,
    }
}

fn fields(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                format.format_for(i),
            )
        })
        .collect()
}

/// Encodes one cell of `column` at `row`.
fn encode_cell(encoder: &mut DataRowEncoder, column: &dyn Array, row: usize) -> PgWireResult<()> {
    if column.is_null(row) {
        return encoder.encode_field(&None::<i32>);
    }
    match column.data_type() {
        DataType::Boolean => {
            let a: &BooleanArray = column.as_boolean();
            encoder.encode_field(&a.value(row))
        }
        DataType::Int8 => {
            encoder.encode_field(&i16::from(column.as_primitive::<Int8Type>().value(row)))
        }
        DataType::Int16 => encoder.encode_field(&column.as_primitive::<Int16Type>().value(row)),
        DataType::UInt8 => {
            encoder.encode_field(&i16::from(column.as_primitive::<UInt8Type>().value(row)))
        }
        DataType::Int32 => encoder.encode_field(&column.as_primitive::<Int32Type>().value(row)),
        DataType::UInt16 => {
            encoder.encode_field(&i32::from(column.as_primitive::<UInt16Type>().value(row)))
        }
        DataType::Int64 => encoder.encode_field(&column.as_primitive::<Int64Type>().value(row)),
        DataType::UInt32 => {
            encoder.encode_field(&i64::from(column.as_primitive::<UInt32Type>().value(row)))
        }
        DataType::UInt64 => {
            let v = column.as_primitive::<UInt64Type>().value(row);
            let v = i64::try_from(v).map_err(|_| {
                error(
                    "ERROR",
                    "22003",
                    format!("{v} does not fit a PostgreSQL bigint"),
                )
            })?;
            encoder.encode_field(&v)
        }
        DataType::Float32 => encoder.encode_field(&column.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => encoder.encode_field(&column.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => {
            let micros = column
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .map(|a| a.value(row))
                .unwrap_or_default();
            let t = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros).ok_or_else(
                || {
                    error(
                        "ERROR",
                        "22008",
                        format!("timestamp {micros} µs is out of range"),
                    )
                },
            )?;
            encoder.encode_field(&t)
        }
        DataType::Date32 => {
            let days = column.as_primitive::<Date32Type>().value(row);
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|epoch| {
                    epoch.checked_add_signed(chrono::TimeDelta::days(i64::from(days)))
                })
                .ok_or_else(|| error("ERROR", "22008", format!("date {days} is out of range")))?;
            encoder.encode_field(&date)
        }
        DataType::Utf8 => encoder.encode_field(&column.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => encoder.encode_field(&column.as_string::<i64>().value(row)),
        DataType::Utf8View => encoder.encode_field(&column.as_string_view().value(row)),
        DataType::Binary => {
            let a = column.as_any().downcast_ref::<BinaryArray>();
            encoder.encode_field(&a.map(|a| a.value(row)).unwrap_or_default())
        }
        DataType::LargeBinary => {
            let a = column.as_any().downcast_ref::<LargeBinaryArray>();
            encoder.encode_field(&a.map(|a| a.value(row)).unwrap_or_default())
        }
        _ => {
            let formatter = ArrayFormatter::try_new(column, &FormatOptions::default())
                .map_err(|e| error("ERROR", "58000", format!("encoding a value: {e}")))?;
            encoder.encode_field(&formatter.value(row).to_string())
        }
    }
}

/// One batch's rows, encoded.
fn encode_batch(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> Vec<PgWireResult<DataRow>> {
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut encoded = Ok(());
        for column in batch.columns() {
            encoded = encode_cell(&mut encoder, column.as_ref(), row);
            if encoded.is_err() {
                break;
            }
        }
        match encoded {
            Ok(()) => rows.push(Ok(encoder.take_row())),
            Err(e) => {
                rows.push(Err(e));
                break;
            }
        }
    }
    rows
}

#[async_trait]
impl StartupHandler for PgHandlers {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let parameters = server_parameters();
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if self.require_tls && !client.is_secure() {
                    // As PostgreSQL answers when pg_hba.conf has only
                    // hostssl lines.
                    return Err(error(
                        "FATAL",
                        "28000",
                        "this server requires TLS: connect with sslmode=require (or verify-full \
                         with the cluster's CA as sslrootcert)"
                            .into(),
                    ));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.access.requires_token() {
                    client.set_state(PgWireConnectionState::AuthenticationInProgress);
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::CleartextPassword,
                        ))
                        .await?;
                } else {
                    finish_authentication(client, &parameters).await?;
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let token = password.into_password()?.password;
                self.access
                    .scope_via("postgres", Some(&token))
                    .await
                    .map_err(|e| access_error(&e))?;
                let _ = client
                    .session_extensions()
                    .get_or_insert_with(SessionToken::default)
                    .0
                    .set(token);
                finish_authentication(client, &parameters).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    // Drivers parse server_version; say which PostgreSQL the protocol is.
    parameters.server_version = format!("14.0 (Spoor {})", env!("CARGO_PKG_VERSION"));
    parameters
}

#[async_trait]
impl SimpleQueryHandler for PgHandlers {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if query.trim().trim_end_matches(';').trim().is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        Ok(vec![self.run(client, query, &Format::UnifiedText).await?])
    }
}

/// Keeps a statement's SQL text; DataFusion parses it when it is run.
#[derive(Debug, Default)]
pub struct SqlText;

#[async_trait]
impl QueryParser for SqlText {
    type Statement = String;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        Ok(Some(sql.to_string()))
    }

    fn get_parameter_types(&self, _stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(Vec::new())
    }

    fn get_result_schema(
        &self,
        _stmt: &Self::Statement,
        _column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        // Not used: describing needs the caller's scope (see do_describe_*).
        Ok(Vec::new())
    }
}

#[async_trait]
impl ExtendedQueryHandler for PgHandlers {
    type Statement = String;
    type QueryParser = SqlText;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = self
            .describe(client, &target.statement, &Format::UnifiedBinary)
            .await?;
        Ok(DescribeStatementResponse::new(Vec::new(), fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        target: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = self
            .describe(
                client,
                &target.statement.statement,
                &target.result_column_format,
            )
            .await?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if portal.parameter_len() > 0 {
            return Err(error(
                "ERROR",
                "0A000",
                "statements with parameters ($1, ...) are not supported; put the values in the SQL"
                    .into(),
            ));
        }
        self.run(
            client,
            &portal.statement.statement,
            &portal.result_column_format,
        )
        .await
    }
}

/// Serves [`PgHandlers`] for every connection.
#[derive(Debug, Clone)]
pub struct PgServer(Arc<PgHandlers>);

impl PgWireServerHandlers for PgServer {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.0.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.0.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.0.clone()
    }
}

/// Accepts PostgreSQL connections on `listener` until `stop`. A connection
/// that breaks the protocol is closed alone. With `tls` serving a
/// certificate, clients negotiate TLS (SSLRequest, or PostgreSQL 17's
/// direct TLS) and a client that does not is refused; each connection
/// gets the certificate of the latest reload.
pub async fn serve(
    engine: QueryEngine,
    access: Access,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<spoor_common::tls::Tls>>,
    stop: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    use spoor_common::tls::Listener;
    let require_tls = tls.as_ref().is_some_and(|t| t.serves());
    let server = PgServer(PgHandlers::new(engine, access, require_tls));
    tokio::pin!(stop);
    loop {
        let (socket, peer) = tokio::select! {
            () = &mut stop => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a PostgreSQL connection");
                    continue;
                }
            },
        };
        let server = server.clone();
        let acceptor = tls
            .as_ref()
            .and_then(|t| t.server(Listener::Postgres))
            .map(pgwire::tokio::TlsAcceptor::from);
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, acceptor, server).await {
                tracing::debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harmless_client_settings_are_ignored() {
        assert_eq!(
            ignored_setting("SET application_name = 'psql'"),
            Some("SET")
        );
        assert_eq!(ignored_setting("set extra_float_digits=3"), Some("SET"));
        assert_eq!(ignored_setting("SET SESSION DateStyle TO ISO"), Some("SET"));
        assert_eq!(
            ignored_setting("SET datafusion.catalog.default_schema = 'x'"),
            None
        );
        assert_eq!(ignored_setting("SET search_path = globex"), None);
        assert_eq!(ignored_setting("SELECT 1"), None);
    }
}
