//! Socket.IO: the layer clients connect to, and the relay task, the only code that emits
//! to sockets. Every event reaches a replica's sockets through the bus, its own included,
//! so each client hears each event exactly once whichever replica caused it.

use crate::audience::Audiences;
use crate::domain::Event;
use crate::events::{self, Delivery, Feed, Incoming};
use crate::http::ApiError;
use crate::service::Service;
use crate::telemetry::{metrics, trace};
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderName, HeaderValue, Request, Response, Uri, header};
use axum::response::IntoResponse;
use futures::future::MapOk;
use futures::{FutureExt, StreamExt, TryFutureExt};
use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::layer::SocketIoLayer;
use socketioxide::service::SocketIoService;
use socketioxide::{SocketIo, TransportType, extract::SocketRef};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// The largest Engine.IO payload a client may send (`maxPayload`, advertised in the
/// handshake): polling enforces it with a 413, websocket by closing the socket, and no
/// connection buffers more than this.
const MAX_PAYLOAD: usize = 100_000;

/// The Socket.IO layer (path `/socket.io/`) and the handle that emits to its sockets.
pub fn layer() -> (Layer, SocketIo) {
    let (layer, io) = SocketIo::builder()
        .max_payload(MAX_PAYLOAD as u64)
        .ws_max_message_size(MAX_PAYLOAD)
        .ws_max_frame_size(MAX_PAYLOAD)
        // Clients only listen: what they send is pings and acks, a few bytes. The codec's
        // 4 KiB default read buffer is most of an idle socket's cost (L4: 26.6 → 22.7 KiB).
        .ws_read_buffer_size(256)
        .build_layer();
    (Layer(layer), io)
}

/// Serves the default namespace: anyone connects and hears every event (`AUTH=open`), or
/// only authenticated connections, each hearing its audiences (`AUTH=token`). It must
/// exist before anything emits to it.
pub fn serve(io: &SocketIo, audiences: Option<(&Arc<Audiences>, Arc<Service>)>) {
    match audiences {
        Some((audiences, service)) => audiences.serve(io, service),
        // Clients only listen.
        None => io.ns("/", async |_: SocketRef| {}),
    }
}

/// The headers Engine.IO reads while it handles a request: the websocket key of an upgrade
/// and the content type of a polling POST. No handler reads any other (credentials come in
/// the connect packet's `auth`).
fn kept_headers() -> [HeaderName; 2] {
    [header::SEC_WEBSOCKET_KEY, header::CONTENT_TYPE]
}

/// The Socket.IO layer behind a step that hands it an owned copy of each Engine.IO
/// request's head. Engine.IO keeps the head of the request that opened a session for the
/// session's whole life; hyper's header values and URI are slices of the connection's
/// read buffer (8 KiB), so keeping them kept that whole buffer alive for every socket.
#[derive(Clone)]
pub struct Layer(SocketIoLayer);

impl<S: Clone> tower::Layer<S> for Layer {
    type Service = OwnedHead<SocketIoService<S>>;

    fn layer(&self, inner: S) -> Self::Service {
        OwnedHead(self.0.layer(inner))
    }
}

/// See [`Layer`].
#[derive(Clone)]
pub struct OwnedHead<S>(S);

impl<S, B, R> tower::Service<Request<B>> for OwnedHead<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    R: HttpBody<Data = Bytes> + Send + 'static,
    R::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future = MapOk<S::Future, fn(Response<R>) -> axum::response::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let answer: fn(Response<R>) -> axum::response::Response = match is_engine_io(&req) {
            true => problem_for_refusal,
            false => |response| response.map(Body::new),
        };
        self.0.call(owned_head(req)).map_ok(answer)
    }
}

fn is_engine_io<B>(req: &Request<B>) -> bool {
    req.uri().path().starts_with("/socket.io/")
}

/// Engine.IO's own refusals (an unknown session, a polling payload over maxPayload, a bad
/// handshake) become problem documents like every other error of the API, with what
/// Engine.IO said as the detail. Its bodies are in memory, so reading one never waits.
fn problem_for_refusal<R>(response: Response<R>) -> axum::response::Response
where
    R: HttpBody<Data = Bytes> + Send + 'static,
    R::Error: Into<axum::BoxError>,
{
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response.map(Body::new);
    }
    let said = axum::body::to_bytes(Body::new(response.into_body()), 1024)
        .now_or_never()
        .and_then(Result::ok)
        .unwrap_or_default();
    let code = match status.as_u16() {
        400 => "bad_request",
        403 => "forbidden",
        404 => "not_found",
        413 => "payload_too_large",
        _ => "protocol_error",
    };
    ApiError::new(status, code, String::from_utf8_lossy(&said)).into_response()
}

/// An Engine.IO request rebuilt from copies: method, version, URI, the [`kept_headers`], and
/// of the extensions only hyper's upgrade handle (what axum and the middleware added
/// there, such as the original URI, points into the read buffer too). Anything else is
/// returned as it is.
fn owned_head<B>(req: Request<B>) -> Request<B> {
    if !is_engine_io(&req) {
        return req;
    }
    let (mut parts, body) = req.into_parts();
    let mut owned = Request::new(body);
    *owned.method_mut() = parts.method;
    *owned.version_mut() = parts.version;
    *owned.uri_mut() = Uri::try_from(parts.uri.to_string()).unwrap_or(parts.uri);
    // Sized to what is kept: a map grown by `insert` reserves six entries (~600 bytes).
    let kept = kept_headers().into_iter().filter(|name| parts.headers.contains_key(name)).count();
    let headers = owned.headers_mut();
    headers.reserve(kept);
    for name in kept_headers() {
        if let Some(value) = parts.headers.get(&name).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
            headers.insert(name, value);
        }
    }
    if let Some(upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
        owned.extensions_mut().insert(upgrade);
    }
    owned
}

/// Keeps the connected-clients gauge current, by each socket's transport now (a
/// polling client that upgraded counts as websocket), and with `AUTH=token` the gauges of
/// the connections the audiences track.
pub async fn count_clients(io: SocketIo, audiences: Option<Arc<Audiences>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        // Gone once the replica has closed its sockets at shutdown.
        let Some(sockets) = io.of("/").map(|ns| ns.sockets()) else { return };
        let websocket = sockets.iter().filter(|s| s.transport_type() == TransportType::Websocket).count();
        metrics::socket_clients(sockets.len() - websocket, websocket);
        if let Some(tracked) = audiences.as_ref().map(|a| a.tracked()) {
            metrics::tracked_connections(tracked.connections, tracked.catching_up);
        }
    }
}

/// The one argument of every emitted event.
#[derive(Serialize)]
struct Payload<'a> {
    data: &'a RawValue,
}

/// Subscribes to the feed now, then emits each message to this replica's sockets: to all
/// of them, or with `AUTH=token` an addressed event to its audiences.
pub fn spawn_relay(feed: &Feed, io: SocketIo, audiences: Option<Arc<Audiences>>) -> JoinHandle<()> {
    let mut deliveries = feed.subscribe();
    tokio::spawn(async move {
        while let Some(delivery) = deliveries.next().await {
            match delivery {
                Delivery::Message(text) => emit(&io, &text, audiences.as_ref()).await,
                // With AUTH=token every connection catches up from its user's history (what
                // it kept); with AUTH=open nothing can be recovered (the feed said so).
                Delivery::Lost => {
                    if let Some(audiences) = &audiences {
                        audiences.catch_up_all();
                    }
                }
            }
        }
    })
}

async fn emit(io: &SocketIo, text: &str, audiences: Option<&Arc<Audiences>>) {
    let incoming: Incoming<'_> = match serde_json::from_str(text) {
        Ok(incoming) => incoming,
        Err(e) => return tracing::warn!(error = %e, "ignoring an undecodable bus message"),
    };
    let Some(name) = Event::known_name(incoming.event) else {
        return tracing::warn!(event = incoming.event, "ignoring an unknown event");
    };
    let span = if trace::exporting() {
        let span = tracing::info_span!("relay", otel.name = %format_args!("emit {name}"), otel.kind = "consumer", event = name);
        if let Some(traceparent) = incoming.traceparent {
            trace::continue_from(&span, traceparent);
        }
        span
    } else {
        // No span: it would only label log lines, and the ones below name the event.
        tracing::Span::none()
    };
    // With AUTH=token each connection of the event's audience gets it in turn, with its
    // offset; else one broadcast.
    if let Some(audiences) = audiences {
        span.in_scope(|| audiences.deliver(name, &incoming));
    } else if let Err(e) = io.emit(name, &Payload { data: incoming.data }).instrument(span).await {
        // A socket whose buffer is full (a client that does not keep up) misses the event.
        if let socketioxide::BroadcastError::Socket(missed) = &e {
            metrics::events_dropped(missed.len() as u64);
        }
        tracing::warn!(event = name, error = %e, "emitting to local sockets failed");
    }
    let delay = events::now_us().saturating_sub(incoming.sent_at_us);
    metrics::event_emitted(name, Duration::from_micros(delay));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_io_head_keeps_only_what_engine_io_reads() {
        let req = Request::get("/socket.io/?EIO=4&transport=websocket")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .header(header::COOKIE, "a=b")
            .extension(42u32)
            .body(())
            .expect("request");
        let owned = owned_head(req);
        assert_eq!(owned.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(owned.headers().len(), 1);
        assert_eq!(owned.headers()[header::SEC_WEBSOCKET_KEY], "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(owned.extensions().get::<u32>().is_none());
    }

    #[test]
    fn other_requests_pass_untouched() {
        let req = Request::get("/users").header(header::COOKIE, "a=b").extension(42u32).body(()).expect("request");
        let req = owned_head(req);
        assert_eq!((req.headers().len(), req.extensions().get::<u32>()), (1, Some(&42)));
    }
}
