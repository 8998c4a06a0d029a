//! The detection engine and correlation worker runtime (DESIGN.md,
//! Correlation): Sigma and Sigma correlation rules compiled to vectorized
//! predicates over Arrow batches, keyed window state, alerts.
//!
//! Not in this release: the crate is part of the workspace layout so the
//! dependency rule (`scripts/check-crate-deps.py`) covers it from the start,
//! and `spoor worker` refuses to start, saying so.
