//! The HTTP API under `/api/v1`: what backends in any language call to publish, stream, and
//! manage the gateway. Every route but the OpenAPI document needs an API key
//! (`Authorization: Bearer <key>` or `X-API-Key: <key>`).

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State},
    http::{StatusCode, request::Parts},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use streamgate::{
    ErrorCode, Payload, Position, Principal, Priority, Publish, PublishOutcome, RoomId,
    StreamHandle, Target,
};
use utoipa::{IntoParams, ToSchema};

use crate::{app::AppState, error::ApiError};

/// Shared state of the handlers.
type AppRef = State<Arc<AppState>>;

/// A verified API key's principal.
#[derive(Debug)]
pub struct ApiCaller(pub Principal);

impl FromRequestParts<Arc<AppState>> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let key = header("x-api-key").map(str::trim).or_else(|| {
            header("authorization")
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, key)| key.trim())
        });
        let refused =
            |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::AuthFailed, message);
        let Some(key) = key else {
            return Err(refused(
                "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>",
            ));
        };
        state
            .api_keys
            .verify(key)
            .map(ApiCaller)
            .map_err(|_| refused("the API key is not valid"))
    }
}

/// A JSON body whose rejections are API errors.
struct Body<T>(T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Self(v))
            .map_err(ApiError::from)
    }
}

/// An optional JSON body: empty is the default value.
pub(crate) fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::FrameTooLarge,
                "the request body is larger than server.max_body_bytes",
            )
        } else {
            ApiError::invalid(format!("invalid request body: {}", rejection.body_text()))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

impl ApiCaller {
    /// Parses `raw` and checks that the room's kind is configured and that a key bound to a
    /// tenant only reaches that tenant's rooms.
    fn room(&self, state: &AppState, raw: &str) -> Result<RoomId, ApiError> {
        let room: RoomId = raw
            .parse()
            .map_err(|e| ApiError::invalid(format!("`{raw}` is not a room id: {e}")))?;
        if !state.knows_kind(room.kind()) {
            return Err(ApiError::invalid(format!(
                "unknown room kind `{}`: configure [rooms.{}]",
                room.kind(),
                room.kind()
            )));
        }
        if self.0.tenant.is_some() && !state.policy.may_reach(&self.0, &room) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::RoomAccessDenied,
                format!("this API key may not reach `{room}`"),
            ));
        }
        Ok(room)
    }
}

fn payload(data: &Value) -> Result<Payload, ApiError> {
    Payload::json(data).map_err(|e| ApiError::invalid(format!("data: {e}")))
}

fn check_event(event: &str) -> Result<(), ApiError> {
    if event.is_empty() || event.len() > 128 {
        return Err(ApiError::invalid("event: 1 to 128 characters"));
    }
    Ok(())
}

/// `POST /api/v1/publish`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The room, `kind:name`.
    #[schema(example = "conversation:acme.42")]
    pub room: String,
    /// The event name clients see.
    #[schema(example = "message.created")]
    pub event: String,
    /// Any JSON.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub data: Value,
    /// Your id for the publication (echoed to clients).
    #[serde(default)]
    pub id: Option<String>,
    /// `low`, `normal` (default), `high` or `critical`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "normal")]
    pub priority: Option<Priority>,
    /// Ask recipients to acknowledge; unacknowledged deliveries are retried.
    #[serde(default)]
    pub ack: bool,
    /// Live only: not logged, not resumable, dropped for slow clients.
    #[serde(default)]
    pub volatile: bool,
    /// Deliver only to these users' sessions (and queue it for those offline).
    #[serde(default)]
    pub to_users: Vec<String>,
}

/// What a publication did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    /// The room.
    pub room: String,
    /// The room's epoch.
    pub epoch: u64,
    /// The publication's offset (0 when volatile).
    pub offset: u64,
    /// Sessions it was queued for.
    pub delivered: usize,
    /// Sessions that dropped it (volatile, full queue).
    pub dropped: usize,
    /// Targeted users for whom it waits in their offline queue.
    pub offline: usize,
}

impl Published {
    fn new(room: &RoomId, outcome: PublishOutcome) -> Self {
        Self {
            room: room.to_string(),
            epoch: outcome.position.epoch,
            offset: outcome.position.offset,
            delivered: outcome.delivered,
            dropped: outcome.dropped,
            offline: outcome.offline,
        }
    }
}

fn build_publish(
    event: &str,
    data: &Value,
    id: Option<&String>,
    priority: Option<Priority>,
) -> Result<Publish, ApiError> {
    check_event(event)?;
    let mut publish = Publish::new(event, payload(data)?);
    if let Some(id) = id {
        if id.is_empty() || id.len() > 128 {
            return Err(ApiError::invalid("id: 1 to 128 characters"));
        }
        publish = publish.id(id.clone());
    }
    if let Some(priority) = priority {
        publish = publish.priority(priority);
    }
    Ok(publish)
}

/// Publishes one event into a room.
#[utoipa::path(
    post, path = "/api/v1/publish", tag = "publish",
    request_body = PublishRequest,
    responses(
        (status = 200, description = "Published", body = Published),
        (status = 400, description = "Invalid body, room or unknown room kind", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = crate::error::ErrorResponse),
        (status = 403, description = "The key's tenant may not reach the room", body = crate::error::ErrorResponse),
        (status = 413, description = "Body larger than server.max_body_bytes", body = crate::error::ErrorResponse),
        (status = 415, description = "Body is not JSON", body = crate::error::ErrorResponse),
        (status = 503, description = "Shutting down", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn publish(
    State(state): AppRef,
    caller: ApiCaller,
    Body(req): Body<PublishRequest>,
) -> Result<Json<Published>, ApiError> {
    let room = caller.room(&state, &req.room)?;
    let mut publish = build_publish(&req.event, &req.data, req.id.as_ref(), req.priority)?;
    if req.ack {
        publish = publish.ack();
    }
    if req.volatile {
        publish = publish.volatile();
    }
    if !req.to_users.is_empty() {
        if req.to_users.len() > 1000 || req.to_users.iter().any(|u| u.is_empty()) {
            return Err(ApiError::invalid("to_users: 1 to 1000 non-empty user ids"));
        }
        publish = publish.to(Target {
            users: req.to_users,
            sessions: Vec::new(),
        });
    }
    let outcome = state.gateway.publish_with(&room, publish)?;
    Ok(Json(Published::new(&room, outcome)))
}

/// `POST /api/v1/broadcast`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    /// The rooms (1 to 100).
    pub rooms: Vec<String>,
    /// The event name.
    pub event: String,
    /// Any JSON.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub data: Value,
    /// `low`, `normal`, `high` or `critical`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub priority: Option<Priority>,
}

/// One result per room, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Broadcasted {
    /// Per room.
    pub results: Vec<Published>,
}

/// Publishes the same event into several rooms (encoded once per room).
#[utoipa::path(
    post, path = "/api/v1/broadcast", tag = "publish",
    request_body = BroadcastRequest,
    responses(
        (status = 200, description = "Published to every room", body = Broadcasted),
        (status = 400, description = "Invalid body, room or unknown room kind", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = crate::error::ErrorResponse),
        (status = 403, description = "The key's tenant may not reach a room", body = crate::error::ErrorResponse),
        (status = 413, description = "Body too large", body = crate::error::ErrorResponse),
        (status = 415, description = "Body is not JSON", body = crate::error::ErrorResponse),
        (status = 503, description = "Shutting down", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn broadcast(
    State(state): AppRef,
    caller: ApiCaller,
    Body(req): Body<BroadcastRequest>,
) -> Result<Json<Broadcasted>, ApiError> {
    if req.rooms.is_empty() || req.rooms.len() > 100 {
        return Err(ApiError::invalid("rooms: 1 to 100 rooms"));
    }
    // Every room is checked before anything is published: all or nothing.
    let rooms = req
        .rooms
        .iter()
        .map(|r| caller.room(&state, r))
        .collect::<Result<Vec<_>, _>>()?;
    let publish = build_publish(&req.event, &req.data, None, req.priority)?;
    let mut results = Vec::with_capacity(rooms.len());
    for room in &rooms {
        let outcome = state.gateway.publish_with(room, publish.clone())?;
        results.push(Published::new(room, outcome));
    }
    Ok(Json(Broadcasted { results }))
}

/// `POST /api/v1/streams`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenStream {
    /// The room of the run, usually `execution:{id}`.
    #[schema(example = "execution:run-7")]
    pub room: String,
}

/// A stream's position.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamState {
    /// The room.
    pub room: String,
    /// The room's epoch.
    pub epoch: u64,
    /// The last offset published in the room.
    pub offset: u64,
    /// A viewer pressed Stop: end the run and close the stream with `cancelled`.
    pub cancelled: bool,
}

impl StreamState {
    fn new(room: &RoomId, position: Position, cancelled: bool) -> Self {
        Self {
            room: room.to_string(),
            epoch: position.epoch,
            offset: position.offset,
            cancelled,
        }
    }
}

/// Opens a stream in a room (idempotent: an open stream stays as it is).
#[utoipa::path(
    post, path = "/api/v1/streams", tag = "streams",
    request_body = OpenStream,
    responses(
        (status = 200, description = "The stream is open", body = StreamState),
        (status = 400, description = "Invalid room or unknown room kind", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = crate::error::ErrorResponse),
        (status = 403, description = "The key's tenant may not reach the room", body = crate::error::ErrorResponse),
        (status = 413, description = "Body too large", body = crate::error::ErrorResponse),
        (status = 415, description = "Body is not JSON", body = crate::error::ErrorResponse),
        (status = 503, description = "Shutting down", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn open_stream(
    State(state): AppRef,
    caller: ApiCaller,
    Body(req): Body<OpenStream>,
) -> Result<Json<StreamState>, ApiError> {
    let room = caller.room(&state, &req.room)?;
    if state.gateway.hub().is_shutting_down() {
        return Err(streamgate::PublishError::ShuttingDown.into());
    }
    let mut streams = state.streams.lock();
    let stream = streams
        .entry(room.clone())
        .or_insert_with(|| state.gateway.stream(room.clone()));
    let cancelled = stream.is_cancelled();
    let position = state.gateway.hub().position(&room);
    Ok(Json(StreamState::new(&room, position, cancelled)))
}

/// One update of a stream.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum StreamUpdateRequest {
    /// Text of the answer (`stream.token`).
    Token {
        /// The text.
        text: String,
    },
    /// A workflow event (`stream.event`): `node.start`, `tool.call` …
    Event {
        /// The event's name.
        name: String,
        /// Any JSON.
        #[serde(default)]
        #[schema(value_type = Value)]
        data: Value,
    },
    /// Progress (`stream.progress`), 0 to 1.
    Progress {
        /// 0.0 to 1.0.
        value: f32,
        /// The stage.
        #[serde(default)]
        stage: Option<String>,
        /// A message.
        #[serde(default)]
        message: Option<String>,
    },
}

/// `POST /api/v1/streams/{room}/updates`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendUpdates {
    /// 1 to 1000 updates, published in order.
    pub updates: Vec<StreamUpdateRequest>,
}

fn no_stream(room: &RoomId) -> ApiError {
    ApiError::not_found(format!(
        "no open stream in `{room}`: POST /api/v1/streams first (streams do not survive a restart)"
    ))
}

fn append_one(stream: &StreamHandle, update: StreamUpdateRequest) -> Result<Position, ApiError> {
    let position = match update {
        StreamUpdateRequest::Token { text } => stream.token(text)?,
        StreamUpdateRequest::Event { name, data } => {
            if name.is_empty() || name.len() > 128 {
                return Err(ApiError::invalid("event name: 1 to 128 characters"));
            }
            stream.event(&name, data)?
        }
        StreamUpdateRequest::Progress {
            value,
            stage,
            message,
        } => {
            if !(0.0..=1.0).contains(&value) {
                return Err(ApiError::invalid("progress value: 0.0 to 1.0"));
            }
            stream.progress(value, stage.as_deref(), message.as_deref())?
        }
    };
    Ok(position)
}

/// Appends updates to an open stream, in order.
#[utoipa::path(
    post, path = "/api/v1/streams/{room}/updates", tag = "streams",
    params(("room" = String, Path, description = "The stream's room", example = "execution:run-7")),
    request_body = AppendUpdates,
    responses(
        (status = 200, description = "Published; `cancelled` tells that a viewer pressed Stop", body = StreamState),
        (status = 400, description = "Invalid update or room", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = crate::error::ErrorResponse),
        (status = 403, description = "The key's tenant may not reach the room", body = crate::error::ErrorResponse),
        (status = 404, description = "No open stream in the room", body = crate::error::ErrorResponse),
        (status = 413, description = "Body too large", body = crate::error::ErrorResponse),
        (status = 415, description = "Body is not JSON", body = crate::error::ErrorResponse),
        (status = 503, description = "Shutting down", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn append_stream(
    State(state): AppRef,
    caller: ApiCaller,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Body(req): Body<AppendUpdates>,
) -> Result<Json<StreamState>, ApiError> {
    let Path(raw) = path?;
    let room = caller.room(&state, &raw)?;
    if req.updates.is_empty() || req.updates.len() > 1000 {
        return Err(ApiError::invalid("updates: 1 to 1000 updates"));
    }
    let streams = state.streams.lock();
    let stream = streams.get(&room).ok_or_else(|| no_stream(&room))?;
    let mut position = state.gateway.hub().position(&room);
    for update in req.updates {
        position = append_one(stream, update)?;
    }
    Ok(Json(StreamState::new(
        &room,
        position,
        stream.is_cancelled(),
    )))
}

/// How a stream ends.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum CloseStream {
    /// Success (`stream.complete`) with the run's result.
    Complete {
        /// Any JSON.
        #[serde(default)]
        #[schema(value_type = Value)]
        result: Value,
    },
    /// Failure (`stream.error`).
    Error {
        /// A protocol error code (default `STREAM_ABORTED`).
        #[serde(default)]
        #[schema(value_type = Option<String>, example = "STREAM_ABORTED")]
        code: Option<ErrorCode>,
        /// For people.
        message: String,
    },
    /// Ended after a Stop (`stream.cancelled`) with what was produced so far.
    Cancelled {
        /// Any JSON.
        #[serde(default)]
        #[schema(value_type = Value)]
        result: Value,
    },
}

/// Ends a stream with exactly one terminal update.
#[utoipa::path(
    post, path = "/api/v1/streams/{room}/close", tag = "streams",
    params(("room" = String, Path, description = "The stream's room", example = "execution:run-7")),
    request_body = CloseStream,
    responses(
        (status = 200, description = "Closed", body = StreamState),
        (status = 400, description = "Invalid body or room", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = crate::error::ErrorResponse),
        (status = 403, description = "The key's tenant may not reach the room", body = crate::error::ErrorResponse),
        (status = 404, description = "No open stream in the room", body = crate::error::ErrorResponse),
        (status = 413, description = "Body too large", body = crate::error::ErrorResponse),
        (status = 415, description = "Body is not JSON", body = crate::error::ErrorResponse),
        (status = 503, description = "Shutting down", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn close_stream(
    State(state): AppRef,
    caller: ApiCaller,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Body(req): Body<CloseStream>,
) -> Result<Json<StreamState>, ApiError> {
    let Path(raw) = path?;
    let room = caller.room(&state, &raw)?;
    if let CloseStream::Error { message, .. } = &req
        && (message.is_empty() || message.len() > 1024)
    {
        return Err(ApiError::invalid("message: 1 to 1024 characters"));
    }
    let stream = state
        .streams
        .lock()
        .remove(&room)
        .ok_or_else(|| no_stream(&room))?;
    let cancelled = stream.is_cancelled();
    let position = match req {
        CloseStream::Complete { result } => stream.complete(result)?,
        CloseStream::Error { code, message } => {
            stream.error(code.unwrap_or(ErrorCode::StreamAborted), message)?
        }
        CloseStream::Cancelled { result } => stream.end_cancelled(result)?,
    };
    Ok(Json(StreamState::new(&room, position, cancelled)))
}

/// Who is in a room.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomPresence {
    /// The room.
    pub room: String,
    /// Present users, sorted, with `state` `online` or `away`.
    #[schema(value_type = Vec<Object>)]
    pub users: Vec<streamgate_protocol::PresenceEntry>,
}

/// Lists the users present in a room (for kinds with presence).
#[utoipa::path(
    get, path = "/api/v1/rooms/{room}/presence", tag = "rooms",
    params(("room" = String, Path, description = "The room", example = "conversation:acme.42")),
    responses(
        (status = 200, description = "Present users", body = RoomPresence),
        (status = 400, description = "Invalid room or unknown room kind", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = crate::error::ErrorResponse),
        (status = 403, description = "The key's tenant may not reach the room", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn presence(
    State(state): AppRef,
    caller: ApiCaller,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RoomPresence>, ApiError> {
    let Path(raw) = path?;
    let room = caller.room(&state, &raw)?;
    let users = state.gateway.hub().presence(&room);
    Ok(Json(RoomPresence {
        room: room.to_string(),
        users,
    }))
}

/// `GET /api/v1/rooms/{room}/history` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Publications after this offset (default 0: all that are kept).
    #[serde(default)]
    pub since: u64,
    /// The epoch the offset belongs to; a different epoch answers `recovered: false`.
    #[serde(default)]
    pub epoch: Option<u64>,
    /// At most this many, the oldest first (default and maximum 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// One logged publication.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItem {
    /// Offset in the room.
    pub offset: u64,
    /// The publication's id.
    pub id: String,
    /// The event name.
    pub event: String,
    /// The data.
    #[schema(value_type = Value)]
    pub data: Value,
    /// Publication time, ms since the Unix epoch.
    pub ts: u64,
}

/// A room's history since a position.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomHistory {
    /// The room.
    pub room: String,
    /// The room's epoch.
    pub epoch: u64,
    /// The room's latest offset.
    pub offset: u64,
    /// Whether `publications` holds every publication after `since` (up to `limit`).
    pub recovered: bool,
    /// The publications, oldest first.
    pub publications: Vec<HistoryItem>,
    /// More follow: ask again with `since` = the last offset.
    pub truncated: bool,
}

/// Reads a room's logged publications after an offset.
#[utoipa::path(
    get, path = "/api/v1/rooms/{room}/history", tag = "rooms",
    params(("room" = String, Path, description = "The room", example = "execution:run-7"), HistoryQuery),
    responses(
        (status = 200, description = "The history", body = RoomHistory),
        (status = 400, description = "Invalid room, query or unknown room kind", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = crate::error::ErrorResponse),
        (status = 403, description = "The key's tenant may not reach the room", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn history(
    State(state): AppRef,
    caller: ApiCaller,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RoomHistory>, ApiError> {
    let Path(raw) = path?;
    let Query(query) = query?;
    let room = caller.room(&state, &raw)?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit: 1 to 1000"));
    }
    let recovery = state.gateway.hub().history(&room, query.since, query.epoch);
    let truncated = recovery.frames.len() > limit;
    let publications = recovery
        .frames
        .iter()
        .filter_map(|f| f.publication())
        .take(limit)
        .map(|p| HistoryItem {
            offset: p.offset,
            id: p.id.clone(),
            event: p.event.clone(),
            data: serde_json::from_str(p.data.as_str()).unwrap_or(Value::Null),
            ts: p.ts,
        })
        .collect();
    Ok(Json(RoomHistory {
        room: room.to_string(),
        epoch: recovery.position.epoch,
        offset: recovery.position.offset,
        recovered: recovery.recovered,
        publications,
        truncated,
    }))
}

/// `POST /api/v1/users/{user}/disconnect`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisconnectRequest {
    /// Told to the clients (default "disconnected by the server").
    #[serde(default)]
    pub reason: Option<String>,
}

/// How many sessions were closed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Disconnected {
    /// The user.
    pub user: String,
    /// Sessions closed, on every transport.
    pub closed: usize,
}

/// Closes every session of a user (`PERMISSION_DENIED`, not recoverable: the client should not
/// reconnect with the same credentials).
#[utoipa::path(
    post, path = "/api/v1/users/{user}/disconnect", tag = "users",
    params(("user" = String, Path, description = "The user id", example = "alice")),
    request_body(content = DisconnectRequest, description = "Optional", content_type = "application/json"),
    responses(
        (status = 200, description = "Sessions closed", body = Disconnected),
        (status = 400, description = "Invalid body", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = crate::error::ErrorResponse),
        (status = 403, description = "Tenant-bound keys may not disconnect users", body = crate::error::ErrorResponse),
        (status = 413, description = "Body too large", body = crate::error::ErrorResponse),
        (status = 415, description = "Body is not JSON", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn disconnect(
    State(state): AppRef,
    caller: ApiCaller,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Disconnected>, ApiError> {
    let Path(user) = path?;
    if caller.0.tenant.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::PermissionDenied,
            "only keys without a tenant may disconnect users",
        ));
    }
    if user.is_empty() || user.len() > 256 {
        return Err(ApiError::invalid("user: 1 to 256 characters"));
    }
    let request = optional_json::<DisconnectRequest>(body)?;
    let reason = request
        .reason
        .unwrap_or_else(|| "disconnected by the server".into());
    if reason.len() > 256 {
        return Err(ApiError::invalid("reason: at most 256 characters"));
    }
    let closed = state
        .gateway
        .hub()
        .disconnect_user(&user, ErrorCode::PermissionDenied, &reason);
    Ok(Json(Disconnected { user, closed }))
}

/// Gateway statistics.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// Open sessions.
    pub sessions: usize,
    /// Rooms known to the hub.
    pub rooms: usize,
    /// Rooms with history.
    pub logged_rooms: usize,
    /// Frames waiting in session queues.
    pub queued: usize,
    /// Users with an offline queue.
    pub offline_users: usize,
    /// Frames waiting in offline queues.
    pub offline_queued: usize,
    /// Streams open (API and in-process).
    pub active_streams: i64,
    /// Client frames received.
    pub messages_in: u64,
    /// Frames queued to sessions.
    pub messages_out: u64,
    /// Volatile frames dropped.
    pub dropped: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
}

/// Sizes and counters of this node.
#[utoipa::path(
    get, path = "/api/v1/stats", tag = "operations",
    responses(
        (status = 200, description = "Statistics", body = Stats),
        (status = 401, description = "Missing or invalid API key", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn stats(State(state): AppRef, _caller: ApiCaller) -> Json<Stats> {
    let hub = state.gateway.hub();
    let s = hub.stats();
    let m = hub.metrics().snapshot();
    Json(Stats {
        sessions: s.sessions,
        rooms: s.rooms,
        logged_rooms: s.logged_rooms,
        queued: s.queued,
        offline_users: s.offline_users,
        offline_queued: s.offline_queued,
        active_streams: m.active_streams,
        messages_in: m.messages_in,
        messages_out: m.messages_out,
        dropped: m.dropped,
        uptime_secs: state.started.elapsed().as_secs(),
    })
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such API route; see /api/v1/openapi.json")
}

/// The `/api/v1` routes, with the body limit of `server.max_body_bytes`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.server.max_body_bytes;
    let api = Router::new()
        .route("/publish", post(publish))
        .route("/broadcast", post(broadcast))
        .route("/streams", post(open_stream))
        .route("/streams/{room}/updates", post(append_stream))
        .route("/streams/{room}/close", post(close_stream))
        .route("/rooms/{room}/presence", get(presence))
        .route("/rooms/{room}/history", get(history))
        .route("/users/{user}/disconnect", post(disconnect))
        .route("/stats", get(stats))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state);
    Router::new().nest("/api/v1", api)
}

/// The OpenAPI document of these routes, generated from the handlers' annotations so that it
/// cannot drift from them.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "streamgate HTTP API",
        version = "1",
        description = "Publish, stream and manage a streamgate gateway from any backend. Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`. Errors are `{\"error\": {\"code\", \"message\", \"recoverable\"}}` with the protocol's error codes."
    ),
    paths(publish, broadcast, open_stream, append_stream, close_stream, presence, history, disconnect, stats),
    components(schemas(crate::error::ErrorResponse, crate::error::ErrorDetail)),
    modifiers(&Security),
    tags(
        (name = "publish", description = "Publications into rooms"),
        (name = "streams", description = "Streams of runs (LLM tokens, events, progress) for producers that are not Rust"),
        (name = "rooms", description = "Presence and history"),
        (name = "users", description = "Sessions of a user"),
        (name = "operations", description = "Statistics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// The OpenAPI 3.1 document served at `/api/v1/openapi.json`.
///
/// ```
/// let doc = streamgate_server::api::document();
/// assert!(doc.paths.paths.contains_key("/api/v1/publish"));
/// ```
#[must_use]
pub fn document() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}
