//! The integration tests, one binary (cargo's `tests/testsuite` pattern): one module per area,
//! all against real components (a real socket, the shared models, PostgreSQL, the built
//! binary). One binary links once instead of once per area. Run one area with its module
//! name as the filter: `cargo test --test testsuite parity::`.
//! `tests/compute_paths.rs` is the other binary: its own harness, every CPU kernel level.

mod common;

mod access;
mod api;
mod database_tls;
mod download;
mod errors;
mod grpc;
mod hostile;
mod lifecycle;
mod pairs;
mod parity;
mod prediction_log;
mod reload;
mod repository;
mod rerank;
mod token_classification;
mod tokenizer;
mod v2;
mod zero_shot;
