//! The detection engine and correlation worker runtime (DESIGN.md,
//! Correlation): Sigma and Sigma correlation rules compiled to vectorized
//! predicates over Arrow batches, keyed window state, alerts.
//!
//! - [`sigma`]: rule documents read and validated (`spoor rules check`).
//! - [`mapping`]: log sources and field mappings (data files).
//! - [`compile`]: rules to shared tests and boolean expressions.
//! - [`evaluate`]: tests answered per batch with shared work.
//! - [`engine`]: a compiled rule set.
//! - [`window`]: correlation rules over detection matches, in event time.
//! - [`sql`]: scheduled SQL rules.
//! - [`bundle`]: a rule set as the cluster stores it, and its compilation
//!   (the same for `spoor rules check` and for workers).
//! - [`worker`]: the worker runtime on the cluster: leased shards follow
//!   the catalog, evaluate, and commit alerts with their checkpoints.

pub mod bundle;
pub mod compile;
pub mod engine;
pub mod evaluate;
pub mod mapping;
pub mod sigma;
pub mod sql;
pub mod suppress;
pub mod window;
pub mod worker;

#[cfg(test)]
mod testing;
