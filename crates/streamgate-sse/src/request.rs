//! What both endpoints read from a request — credentials, query parameters, the origin — and
//! how they refuse one.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use streamgate_core::{Credentials, Hub, Principal, decode_query_component};
use streamgate_protocol::{ErrorBody, ErrorCode};

use crate::SseConfig;

/// A request refused with an HTTP status and the JSON body `{"error": {…}}`, the shape the
/// WebSocket transport uses for refused upgrades.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    error: ErrorBody,
    /// Already counted in the hub's error metrics (by the hub itself, as `Hub::admit` does).
    counted: bool,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::with(status, ErrorBody::new(code, message))
    }

    /// A refusal with a ready error body.
    pub(crate) fn with(status: StatusCode, error: ErrorBody) -> Self {
        Self {
            status,
            error,
            counted: false,
        }
    }

    /// Marks the refusal as counted in the error metrics already, so it is not counted again.
    pub(crate) fn counted(mut self) -> Self {
        self.counted = true;
        self
    }

    /// Whether the refusal still has to be counted in the error metrics.
    pub(crate) fn uncounted(&self) -> bool {
        !self.counted
    }

    /// `400` with `VALIDATION_FAILED`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationFailed,
            message,
        )
    }

    pub(crate) fn code(&self) -> ErrorCode {
        self.error.code
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error }).to_string();
        let mut response = (
            self.status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response();
        if let Some(ms) = self.error.retry_after_ms {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000)));
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

/// The query parameters the transport reads; others (cache busters …) are ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Params {
    /// Items of every `rooms` parameter (comma-separated), decoded, not validated yet.
    pub(crate) rooms: Vec<String>,
    pub(crate) token: Option<String>,
    pub(crate) last_event_id: Option<String>,
}

/// Parses `rooms`, `token` and `last_event_id`. `rooms` may repeat; the others may not.
pub(crate) fn params(query: Option<&str>) -> Result<Params, Refusal> {
    let mut params = Params::default();
    for pair in query.unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let once = |slot: &mut Option<String>, name: &str| {
            if slot.replace(decode_query_component(value)).is_some() {
                return Err(Refusal::invalid(format!("`{name}` is given twice")));
            }
            Ok(())
        };
        match decode_query_component(key).as_str() {
            "rooms" => {
                let value = decode_query_component(value);
                if !value.is_empty() {
                    params.rooms.extend(value.split(',').map(str::to_owned));
                }
            }
            "token" => once(&mut params.token, "token")?,
            "last_event_id" => once(&mut params.last_event_id, "last_event_id")?,
            _ => {}
        }
    }
    Ok(params)
}

/// The bearer token: from `Authorization: Bearer`, else the `token` query parameter, else the
/// cookie.
pub(crate) fn token(
    headers: &HeaderMap,
    query_token: Option<String>,
    cookie_name: &str,
) -> Option<String> {
    bearer(headers)
        .or(query_token.filter(|t| !t.is_empty()))
        .or_else(|| cookie(headers, cookie_name))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The value of cookie `name` (RFC 6265 `Cookie` header syntax; one pair of quotes stripped).
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            if key.trim() != name {
                return None;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            (!value.is_empty()).then(|| value.to_owned())
        })
}

/// Authenticates through the hub; a failure is `401` with the failure's code.
pub(crate) async fn authenticate(
    hub: &Hub,
    credentials: &Credentials,
) -> Result<Principal, Refusal> {
    hub.authenticate(credentials)
        .await
        .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string()))
}

/// Checks the `Origin` against the allow-list. `Ok(Some(origin))` when the response must carry
/// CORS headers for it, `Ok(None)` when no CORS applies (no list, or no `Origin` header).
pub(crate) fn origin(
    config: &SseConfig,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, Refusal> {
    let (Some(allowed), Some(origin)) = (&config.allowed_origins, headers.get(header::ORIGIN))
    else {
        return Ok(None);
    };
    if origin
        .to_str()
        .is_ok_and(|o| allowed.iter().any(|a| a == o))
    {
        Ok(Some(origin.clone()))
    } else {
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            ErrorCode::PermissionDenied,
            "origin not allowed",
        ))
    }
}

/// Adds the CORS headers for an allowed origin (credentials included: cookies and
/// `withCredentials`), and `Vary: Origin` whenever an allow-list is configured.
pub(crate) fn with_cors(
    config: &SseConfig,
    mut response: Response,
    origin: Option<HeaderValue>,
) -> Response {
    let headers = response.headers_mut();
    if config.allowed_origins.is_some() {
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let value = HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            map.append(name.clone(), value);
        }
        map
    }

    #[test]
    fn params_are_read() -> Result<(), Refusal> {
        let p = params(Some(
            "rooms=execution%3A7,org:acme&token=t%2B1&rooms=user:u1&_=1&last_event_id=1%3Bx%3Ay~1~2",
        ))?;
        assert_eq!(p.rooms, ["execution:7", "org:acme", "user:u1"]);
        assert_eq!(p.token.as_deref(), Some("t+1"));
        assert_eq!(p.last_event_id.as_deref(), Some("1;x:y~1~2"));
        assert_eq!(params(None)?, Params::default());
        assert_eq!(params(Some("rooms=&&"))?, Params::default());
        assert_eq!(params(Some("rooms=a,,b"))?.rooms, ["a", "", "b"]);
        assert!(params(Some("token=a&token=b")).is_err());
        assert!(params(Some("last_event_id=1&last_event_id=1")).is_err());
        Ok(())
    }

    #[test]
    fn the_token_comes_from_header_then_query_then_cookie() {
        let cookie = (
            header::COOKIE,
            "theme=dark; streamgate_token=from-cookie; x=1",
        );
        let all = headers(&[
            (header::AUTHORIZATION, "Bearer from-header"),
            cookie.clone(),
        ]);
        let from =
            |h: &HeaderMap, q: Option<&str>| token(h, q.map(str::to_owned), "streamgate_token");
        assert_eq!(from(&all, Some("q")).as_deref(), Some("from-header"));
        let cookie_only = headers(std::slice::from_ref(&cookie));
        assert_eq!(from(&cookie_only, Some("q")).as_deref(), Some("q"));
        assert_eq!(from(&cookie_only, None).as_deref(), Some("from-cookie"));
        assert_eq!(from(&cookie_only, Some("")).as_deref(), Some("from-cookie"));
        // Another scheme is not a bearer token; the other sources still count.
        let basic = headers(&[(header::AUTHORIZATION, "Basic abc"), cookie]);
        assert_eq!(from(&basic, None).as_deref(), Some("from-cookie"));
        let lower = headers(&[(header::AUTHORIZATION, "bearer  t ")]);
        assert_eq!(from(&lower, None).as_deref(), Some("t"));
        assert_eq!(from(&HeaderMap::new(), None), None);
        let quoted = headers(&[
            (header::COOKIE, "a=1"),
            (header::COOKIE, "streamgate_token=\"q\""),
        ]);
        assert_eq!(from(&quoted, None).as_deref(), Some("q"));
        let prefix = headers(&[(header::COOKIE, "xstreamgate_token=a; streamgate_token=")]);
        assert_eq!(from(&prefix, None), None);
    }

    #[test]
    fn origins_are_checked_against_the_list() {
        let open = SseConfig::default();
        let listed = SseConfig::default().allowed_origins(["https://app.test"]);
        let from = |o: &str| headers(&[(header::ORIGIN, o)]);
        assert!(matches!(
            origin(&open, &from("https://evil.test")),
            Ok(None)
        ));
        assert!(matches!(origin(&listed, &HeaderMap::new()), Ok(None)));
        assert!(matches!(
            origin(&listed, &from("https://app.test")),
            Ok(Some(_))
        ));
        assert!(matches!(
            origin(&listed, &from("https://evil.test")),
            Err(r) if r.code() == ErrorCode::PermissionDenied
        ));
    }
}
