#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod config;
mod connection;
pub mod events;
mod handshake;
mod inbound;
mod router;

use std::sync::Arc;

use streamgate_core::{Hub, Transport};

pub use config::{SocketIoConfig, SocketIoConfigError};

/// The Socket.IO transport; see the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct SocketIoTransport {
    config: Arc<SocketIoConfig>,
}

impl SocketIoTransport {
    /// A transport with a validated configuration.
    ///
    /// ```
    /// use streamgate_socketio::{SocketIoConfig, SocketIoTransport};
    ///
    /// let transport = SocketIoTransport::new(SocketIoConfig::default())?;
    /// assert_eq!(transport.config().namespace, "/streaming");
    /// assert!(SocketIoTransport::new(SocketIoConfig::default().buffer_size(0)).is_err());
    /// # Ok::<(), streamgate_socketio::SocketIoConfigError>(())
    /// ```
    pub fn new(config: SocketIoConfig) -> Result<Self, SocketIoConfigError> {
        config.check()?;
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SocketIoConfig {
        &self.config
    }
}

impl Transport for SocketIoTransport {
    fn name(&self) -> &'static str {
        "socketio"
    }

    fn router(&self, hub: Hub) -> axum::Router {
        router::build(hub, &self.config)
    }
}
