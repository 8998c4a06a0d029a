//! The query role: tenant-scoped, read-only DataFusion SQL over the files the
//! catalog lists, served over HTTP.

pub mod access;
pub mod audit;
pub mod console;
pub mod counting_store;
pub mod engine;
pub mod flight;
pub mod functions;
pub mod http;
pub mod intel;
pub mod postgres;
pub mod saved;
pub mod tenant_table;
pub mod triage;

pub use audit::Scope;
pub use engine::{QueryEngine, QueryError, QueryOutput, QueryStream};
