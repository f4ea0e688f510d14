use streamgate_protocol::{ErrorCode, PayloadError};

/// A publication was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The data could not be serialized to JSON.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A field is out of range (progress outside `0..=1`, empty event name …).
    #[error("invalid publication: {0}")]
    Invalid(String),
    /// The stream already ended with a terminal update.
    #[error("the stream has already ended")]
    StreamEnded,
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    ShuttingDown,
}

impl PublishError {
    /// The protocol code for this failure.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Payload(_) | Self::Invalid(_) | Self::StreamEnded => ErrorCode::ValidationFailed,
            Self::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }
}
