//! HTTP errors: a status and the protocol's error body, as JSON.

use axum::{
    Json,
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use streamgate::{ErrorCode, PublishError};
use streamgate_protocol::ErrorBody;
use utoipa::ToSchema;

/// An API error: `{"error": {"code", "message", "recoverable", "retry_after_ms"}}`.
///
/// ```
/// use axum::{http::StatusCode, response::IntoResponse};
/// use streamgate::ErrorCode;
/// use streamgate_server::error::ApiError;
///
/// let response = ApiError::new(StatusCode::FORBIDDEN, ErrorCode::RoomAccessDenied, "not yours")
///     .into_response();
/// assert_eq!(response.status(), StatusCode::FORBIDDEN);
/// ```
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

/// The JSON shape of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The protocol's error code (`AUTH_FAILED`, `VALIDATION_FAILED`, `ROOM_ACCESS_DENIED`,
    /// `FRAME_TOO_LARGE`, `RATE_LIMITED`, `SERVER_OVERLOADED`, `SHUTTING_DOWN` …).
    #[schema(example = "VALIDATION_FAILED")]
    pub code: String,
    /// For people; never internal detail.
    pub message: String,
    /// Whether retrying later can succeed.
    pub recoverable: bool,
    /// For `RATE_LIMITED` and `SERVER_OVERLOADED`: wait this long before retrying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    /// An error with `code`'s fixed `recoverable` flag.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody::new(code, message),
        }
    }

    /// `400 VALIDATION_FAILED`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationFailed,
            message,
        )
    }

    /// `404 VALIDATION_FAILED`: the named thing does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::ValidationFailed, message)
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ShuttingDown,
                "the server is shutting down; retry on another node or after the restart",
            ),
            other => Self::invalid(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::FrameTooLarge,
                "the request body is larger than server.max_body_bytes",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::ValidationFailed,
                "send the body as JSON with Content-Type: application/json",
            ),
            _ => Self::invalid(format!("invalid request body: {}", rejection.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid(format!("invalid query: {}", rejection.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::invalid(format!("invalid path: {}", rejection.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.body.retry_after_ms;
        let body = ErrorResponse {
            error: ErrorDetail {
                code: self.body.code.to_string(),
                message: self.body.message,
                recoverable: self.body.recoverable,
                retry_after_ms: retry,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(ms) = retry
            && let Ok(value) = HeaderValue::from_str(&ms.div_ceil(1000).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"streamgate\""),
            );
        }
        response
    }
}
