//! The detection engine and correlation worker runtime (DESIGN.md,
//! Correlation): Sigma and Sigma correlation rules compiled to vectorized
//! predicates over Arrow batches, keyed window state, alerts.
//!
//! Built so far: [`sigma`], Sigma rules read and validated into a model
//! (`spoor rules check`). Not yet: evaluation, correlation, the worker
//! runtime; `spoor worker` refuses to start, saying so.

pub mod sigma;
