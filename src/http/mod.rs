//! The REST API: one route table in the contract's order, thin handlers, and the
//! middleware every request passes through.

mod calls;
mod devices;
mod error;
mod extract;
mod livekit;
pub mod openapi;
mod ops;
mod page;
mod rooms;
mod users;

pub use error::ApiError;

use crate::service::Service;
use crate::telemetry::{metrics, trace};
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument;
use tracing::instrument::Instrumented;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub metrics: PrometheusHandle,
    pub body_limit: usize,
    /// Set on shutdown: `/readyz` answers 503 while the replica drains.
    pub draining: Arc<AtomicBool>,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// The route table.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/users", post(users::register).get(users::list))
        .route("/users/{id}", get(users::get).delete(users::erase))
        .route("/users/{id}/devices", post(devices::register).get(devices::list))
        .route("/users/{id}/devices/{device}", axum::routing::delete(devices::delete))
        .route("/push/config", get(devices::config))
        .route("/calls", post(calls::start).get(calls::list))
        .route("/calls/{id}", get(calls::get))
        .route("/calls/{id}/accept", post(calls::accept))
        .route("/calls/{id}/decline", post(calls::decline))
        .route("/calls/{id}/end", post(calls::end))
        .route("/rooms", post(rooms::create).get(rooms::list))
        .route("/rooms/{id}", get(rooms::get))
        .route("/rooms/{id}/join", post(rooms::join))
        .route("/livekit/token", post(livekit::token))
        .route("/livekit/webhook", post(livekit::webhook))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route_layer(tower::layer::layer_fn(Track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Traces, counts and times every routed request by its route template (never its ids).
/// The span continues the caller's W3C trace and names the request id and trace id, so
/// every log line of the request carries both. A tower service rather than axum's
/// `from_fn`, which clones the route's service and boxes two futures per request.
#[derive(Clone)]
struct Track<S>(S);

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let method = req.method().clone();
        let route = req.extensions().get::<MatchedPath>().cloned();
        let span = request_span(&req, &method, route.as_ref().map_or("", MatchedPath::as_str));
        metrics::http_in_flight(1.0);
        Tracked { inner: self.0.call(req).instrument(span.clone()), span, started, method, route }
    }
}

/// The request's span: with OpenTelemetry's fields when traces are exported.
fn request_span(req: &Request, method: &Method, route: &str) -> tracing::Span {
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !trace::exporting() {
        // Without an exporter the span only labels the request's log lines. The JSON log
        // format encodes every field of a span when it is created (and again on each
        // `record`): the OpenTelemetry-only fields cost ~9 % of a small request's CPU.
        return tracing::info_span!("request", http.request.method = method.as_str(), http.route = route, request_id);
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        request_id,
        trace_id = tracing::field::Empty,
    );
    trace::continue_from_headers(&span, req.headers());
    if let Some(id) = trace::trace_id(&span) {
        span.record("trace_id", id);
    }
    span
}

/// A routed request being served; counted in flight until it is dropped, answered or not.
struct Tracked<F> {
    inner: Instrumented<F>,
    span: tracing::Span,
    started: Instant,
    method: Method,
    route: Option<MatchedPath>,
}

impl<F: Future<Output = Result<Response, Infallible>> + Unpin> Future for Tracked<F> {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(response) = std::task::ready!(Pin::new(&mut self.inner).poll(cx));
        let status = response.status().as_u16();
        let route = self.route.as_ref().map_or("", MatchedPath::as_str);
        self.span.record("http.response.status_code", status);
        let elapsed = self.started.elapsed();
        metrics::http_request(self.method.as_str(), route, status, elapsed);
        let duration_ms = elapsed.as_secs_f64() * 1e3;
        self.span.in_scope(|| tracing::debug!(status, duration_ms, "request served"));
        Poll::Ready(Ok(response))
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        metrics::http_in_flight(-1.0);
    }
}

/// While draining, every response closes its connection: a load balancer then holds no
/// idle keep-alive connection to this replica that could break under a request when the
/// replica stops (a POST on such a connection cannot be retried safely).
pub fn close_when_draining(draining: &AtomicBool, mut response: Response) -> Response {
    if draining.load(Ordering::Acquire) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The ops port's routes: probes and metrics, nothing a client could flood.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
}
