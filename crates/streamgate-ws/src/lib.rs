#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod config;
mod connection;
mod handshake;

use std::sync::Arc;

use streamgate_core::{Hub, Transport};

pub use config::{WsConfig, WsConfigError};

/// The raw WebSocket transport; see the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct WebSocketTransport {
    config: Arc<WsConfig>,
}

impl WebSocketTransport {
    /// A transport with a validated configuration.
    pub fn new(config: WsConfig) -> Result<Self, WsConfigError> {
        config.check()?;
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &WsConfig {
        &self.config
    }
}

impl Transport for WebSocketTransport {
    fn name(&self) -> &'static str {
        "ws"
    }

    fn router(&self, hub: Hub) -> axum::Router {
        handshake::router(hub, Arc::clone(&self.config))
    }
}
