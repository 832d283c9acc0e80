//! W3C trace context across the edges of a replica: incoming HTTP headers, and the
//! `traceparent` carried inside relayed events so that an emit on one replica joins the
//! trace of the request that caused it on another.

use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether spans are exported (an OTLP endpoint is configured). Without an exporter there
/// is no trace to continue or to carry: every function here then returns at once instead
/// of asking the propagator and OpenTelemetry's span context, per request and per event.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Set once at start-up by [`super::init`].
pub(super) fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// One `traceparent` value, as found in a relayed event.
struct Traceparent<'a>(&'a str);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

struct Carrier(HashMap<String, String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// Makes `span` a child of the caller's trace, if the request carries one.
pub fn continue_from_headers(span: &Span, headers: &axum::http::HeaderMap) {
    if !exporting() {
        return;
    }
    let parent = global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Makes `span` a child of the span that published an event.
pub fn continue_from(span: &Span, traceparent: &str) {
    if !exporting() {
        return;
    }
    let parent = global::get_text_map_propagator(|p| p.extract(&Traceparent(traceparent)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The current span's context as a `traceparent` value, if it belongs to a trace.
pub fn current_traceparent() -> Option<String> {
    if !exporting() {
        return None;
    }
    let cx = Span::current().context();
    let mut carrier = Carrier(HashMap::new());
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.0.remove("traceparent")
}

/// The trace id of `span`, for log lines; `None` outside a trace.
pub fn trace_id(span: &Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
