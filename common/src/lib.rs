//! What every Spoor role shares: the event schema, tenant ids, configuration,
//! the lake layout and object store, the catalog trait with its in-memory
//! implementation and gRPC client, and telemetry.

pub mod audit;
pub mod auth;
pub mod catalog;
pub mod catalog_client;
pub mod config;
pub mod control;
pub mod lake_file;
pub mod layout;
pub mod matching;
pub mod schema;
pub mod storage;
pub mod telemetry;
pub mod tenant;
pub mod time;
pub mod tls;

/// An error with its chain of causes, `: `-separated: many libraries'
/// top-level messages (reqwest's, the evtx crate's) name only the place,
/// the causes say what is wrong.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub use catalog::{Catalog, CatalogError};
pub use config::Config;
pub use tenant::TenantId;
