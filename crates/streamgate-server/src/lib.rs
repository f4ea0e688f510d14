//! `streamgate-server`: the standalone streamgate gateway.
//!
//! One binary serves every transport (WebSocket, Server-Sent Events, Socket.IO) on one port,
//! an HTTP API under `/api/v1` for backends in any language (publish, broadcast, streams,
//! presence, history, disconnect, stats; OpenAPI at `/api/v1/openapi.json`), operations
//! endpoints (`/healthz`, `/readyz`, `/metrics`) and a live demo page at `/`. It runs with no
//! configuration at all (development credentials are generated and printed) and with a TOML
//! file plus `STREAMGATE_*` environment overrides in production; see `docs/server.md`.
//!
//! ```no_run
//! use streamgate_server::{app::DevSecrets, config::ServerConfig, serve::serve};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let config = ServerConfig::load(None, std::env::vars())?;
//! serve(config.clone(), DevSecrets::for_config(&config)).await
//! # }
//! ```

pub mod api;
pub mod app;
pub mod client_publish;
pub mod config;
pub mod demo;
pub mod error;
pub mod ops;
pub mod serve;
pub mod token;
pub mod units;
