//! The tower layer: the HTTP face of the limiter, keyed by client address.

use std::{
    future::{Ready, ready},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    task::{Context, Poll},
};

use axum::{
    body::Body,
    extract::ConnectInfo,
    response::{IntoResponse, Response},
};
use futures_util::future::Either;
use governor::clock::{Clock, DefaultClock};
use http::{HeaderValue, Request, StatusCode, header};
use streamgate_protocol::{ErrorBody, ErrorCode};

use crate::KeyedRateLimiter;

/// A tower [`Layer`](tower_layer::Layer) that limits requests per client address with the
/// limiter's [`http_per_address`](crate::RateLimitConfig::http_per_address) quota. A refused
/// request gets `429 Too Many Requests`, a `Retry-After` header (whole seconds, rounded up)
/// and the protocol's error body:
/// `{"error":{"code":"RATE_LIMITED","message":…,"recoverable":true,"retry_after_ms":N}}`.
///
/// The address comes from axum's `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`); requests without it share one
/// budget. Behind a reverse proxy, set `ConnectInfo` from the proxy's trusted header in an
/// outer layer.
///
/// ```
/// use axum::{Router, routing::get};
/// use streamgate_ratelimit::{KeyedRateLimiter, Rate, RateLimitConfig};
///
/// let limiter = KeyedRateLimiter::new(
///     RateLimitConfig::default().http_per_address(Rate::per_minute(30)),
/// )?;
/// let app: Router = Router::new()
///     .route("/api/messages", get(|| async { "[]" }))
///     .route_layer(limiter.http_layer());
/// # Ok::<(), streamgate_ratelimit::ConfigError>(())
/// ```
pub struct HttpRateLimitLayer<C: Clock + Clone = DefaultClock> {
    limiter: KeyedRateLimiter<C>,
}

impl<C: Clock + Clone> Clone for HttpRateLimitLayer<C> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
        }
    }
}

impl<C: Clock + Clone> std::fmt::Debug for HttpRateLimitLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRateLimitLayer").finish_non_exhaustive()
    }
}

impl<C: Clock + Clone> KeyedRateLimiter<C> {
    /// A tower layer for HTTP routes that shares this limiter (and its sweeping); see
    /// [`HttpRateLimitLayer`].
    ///
    /// ```
    /// use streamgate_ratelimit::{KeyedRateLimiter, RateLimitConfig};
    ///
    /// let limiter = KeyedRateLimiter::new(RateLimitConfig::default())?;
    /// let layer = limiter.http_layer();
    /// # Ok::<(), streamgate_ratelimit::ConfigError>(())
    /// ```
    #[must_use]
    pub fn http_layer(&self) -> HttpRateLimitLayer<C> {
        HttpRateLimitLayer {
            limiter: self.clone(),
        }
    }
}

impl<S, C: Clock + Clone> tower_layer::Layer<S> for HttpRateLimitLayer<C> {
    type Service = HttpRateLimit<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpRateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The service made by [`HttpRateLimitLayer`].
///
/// ```
/// use axum::{Router, routing::get};
/// use streamgate_ratelimit::{HttpRateLimit, KeyedRateLimiter, RateLimitConfig};
/// use tower_layer::Layer;
///
/// let limiter = KeyedRateLimiter::new(RateLimitConfig::default())?;
/// let service: HttpRateLimit<Router> = limiter.http_layer().layer(Router::new());
/// # Ok::<(), streamgate_ratelimit::ConfigError>(())
/// ```
pub struct HttpRateLimit<S, C: Clock + Clone = DefaultClock> {
    inner: S,
    limiter: KeyedRateLimiter<C>,
}

impl<S: Clone, C: Clock + Clone> Clone for HttpRateLimit<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

impl<S, C: Clock + Clone> std::fmt::Debug for HttpRateLimit<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRateLimit").finish_non_exhaustive()
    }
}

impl<S, C, B> tower_service::Service<Request<B>> for HttpRateLimit<S, C>
where
    S: tower_service::Service<Request<B>, Response = Response>,
    C: Clock + Clone,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let address = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        match self.limiter.check_address(address) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(wait) => Either::Right(ready(Ok(too_many_requests(wait)))),
        }
    }
}

fn too_many_requests(wait: std::time::Duration) -> Response {
    let ms = u64::try_from(wait.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1);
    let error = ErrorBody::new(ErrorCode::RateLimited, "too many requests; retry later")
        .with_retry_after_ms(ms);
    let body = serde_json::json!({ "error": error }).to_string();
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Body::from(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000)));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

    use axum::{Router, routing::get};
    use tower::ServiceExt as _;

    use crate::{Rate, RateLimitConfig};

    use super::*;

    fn request(ip: [u8; 4]) -> Request<Body> {
        let mut request = Request::get("/x").body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 4000))));
        request
    }

    #[tokio::test]
    async fn over_quota_gets_429_with_the_protocol_error_and_retry_after() {
        let limiter =
            KeyedRateLimiter::new(RateLimitConfig::default().http_per_address(Rate::per_minute(2)))
                .unwrap();
        let app = Router::new()
            .route("/x", get(|| async { "ok" }))
            .route_layer(limiter.http_layer());
        for _ in 0..2 {
            let response = app.clone().oneshot(request([10, 0, 0, 1])).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let response = app.clone().oneshot(request([10, 0, 0, 1])).await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = response.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&retry_after), "{retry_after}");
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "RATE_LIMITED");
        let ms = json["error"]["retry_after_ms"].as_u64().unwrap();
        assert!(ms > 0 && ms <= 30_000, "{ms}");
        // Another address is unaffected.
        let response = app.oneshot(request([10, 0, 0, 2])).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
