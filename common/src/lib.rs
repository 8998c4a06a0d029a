//! What every Spoor role shares: the event schema, tenant ids, configuration,
//! the lake layout and object store, the catalog trait with its in-memory
//! implementation and gRPC client, and telemetry.

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

pub use catalog::{Catalog, CatalogError};
pub use config::Config;
pub use tenant::TenantId;
