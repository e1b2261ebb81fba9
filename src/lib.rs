//! sentiment-server: a text-classification inference server.
//!
//! The data path, one module per stage:
//! HTTP request ([`http`]) → validation ([`http::predict`], or [`http::v2`] for the Open
//! Inference Protocol) → tokenization ([`tokenize`]) →
//! queue and dynamic batching ([`batcher`]) → model forward ([`model`]) →
//! post-processing ([`postprocess`]) → response, and the prediction log ([`predlog`]). [`engine`] wires the stages together and
//! [`server`] runs the lifecycle (listen, load, serve, drain), and [`reload`] swaps model
//! versions in and out of the repository while serving.

#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod auth;
pub mod batcher;
pub mod checkpoint;
pub mod config;
pub(crate) mod cors;
pub mod device;
pub mod download;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod healthcheck;
pub(crate) mod http;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod postprocess;
pub mod predlog;
pub(crate) mod reload;
pub(crate) mod repository;
pub mod server;
pub mod service;
pub(crate) mod state;
pub mod tokenize;
pub mod types;

pub use http::build_app;
pub use state::AppState;
