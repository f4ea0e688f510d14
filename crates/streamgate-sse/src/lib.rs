#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod commands;
mod config;
mod cursor;
mod events;
mod registry;
mod request;
mod routes;

use std::sync::Arc;

use streamgate_core::{Hub, Transport};

pub use config::{SseConfig, SseConfigError};
pub use cursor::{Cursor, CursorError, MAX_CURSOR_LEN, MAX_CURSOR_ROOMS};

/// The Server-Sent Events transport; see the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct SseTransport {
    config: Arc<SseConfig>,
}

impl SseTransport {
    /// A transport with a checked configuration.
    ///
    /// ```
    /// use streamgate_sse::{SseConfig, SseTransport};
    ///
    /// assert!(SseTransport::new(SseConfig::default()).is_ok());
    /// assert!(SseTransport::new(SseConfig::default().commands_path("/sse")).is_err());
    /// ```
    pub fn new(config: SseConfig) -> Result<Self, SseConfigError> {
        config.check()?;
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SseConfig {
        &self.config
    }
}

impl Transport for SseTransport {
    fn name(&self) -> &'static str {
        "sse"
    }

    /// `GET {path}` (the event stream) and `POST {commands_path}` (commands), bound to `hub`.
    /// Each router keeps its own table of live sessions.
    fn router(&self, hub: Hub) -> axum::Router {
        routes::router(hub, &self.config)
    }
}
