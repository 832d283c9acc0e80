//! How operators see a replica: logs (text or JSON lines), traces (OpenTelemetry, OTLP
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set) and metrics ([`metrics`]).

mod fields;
pub mod metrics;
pub mod trace;

use crate::config::LogFormat;
use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes pending spans.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(Err(e)) = self.provider.map(|p| p.shutdown()) {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

/// Installs the global log subscriber (`RUST_LOG` filters, default `info`) and tracer.
///
/// Tracing (trace ids in log lines, trace context in relayed events, OTLP export) is on
/// only when an OTLP endpoint is configured: building OpenTelemetry spans that nobody
/// collects cost a third of the throughput of a small request.
pub fn init(format: LogFormat) -> Telemetry {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = tracer_provider();
    trace::set_exporting(provider.is_some());
    let otel = provider.as_ref().map(|provider| {
        global::set_tracer_provider(provider.clone());
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("switchboard"))
            // Only our own spans: tracing the exporter's transport would feed back into itself.
            .with_filter(EnvFilter::new("switchboard=info"))
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(fields::JsonSpanFields)
            .boxed(),
    };
    if let Err(e) = tracing_subscriber::registry().with(otel).with(fmt.with_filter(filter)).try_init() {
        eprintln!("logging was already initialised: {e}");
    }
    Telemetry { provider }
}

/// A provider exporting over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces
/// variant) is set; the exporter reads the other standard `OTEL_*` variables itself.
fn tracer_provider() -> Option<SdkTracerProvider> {
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("switchboard");
    }
    let builder = SdkTracerProvider::builder().with_resource(resource.build());
    let configured = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    if !configured {
        return None;
    }
    match SpanExporter::builder().with_tonic().build() {
        Ok(exporter) => Some(builder.with_batch_exporter(exporter).build()),
        Err(e) => {
            eprintln!("OTLP exporter not started: {e}");
            None
        }
    }
}
