//! The query role: tenant-scoped, read-only DataFusion SQL over the files the
//! catalog lists, served over HTTP.

pub mod engine;
pub mod functions;
pub mod http;

pub use engine::{QueryEngine, QueryError, QueryOutput, QueryStream};
