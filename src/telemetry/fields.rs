//! Span fields for the JSON log format, written straight into the span's buffer.
//!
//! Every request and every relayed event opens a span, and the fmt layer formats its fields
//! when the span opens, whether or not a line is ever logged in it. tracing-subscriber's
//! `JsonFields` collects them into a map of `serde_json::Value`s and serializes that through
//! an io-to-fmt adaptor that re-checks UTF-8 on every token: about 4,000 instructions per
//! span, a tenth of the user-space work of a `POST /users` (callgrind, `loadtest/README.md`).
//! This writes the same JSON object directly.

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::Writer;

/// A [`FormatFields`] producing one JSON object per span, as the JSON event format expects.
#[derive(Debug, Default)]
pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    /// Written into a local buffer first and handed over in one piece: the span's buffer
    /// starts empty, and growing it field by field reallocates it several times.
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut text = String::with_capacity(256);
        let mut buffer = Writer::new(&mut text);
        let mut object = Object { out: &mut buffer, empty: true, result: Ok(()) };
        fields.record(&mut object);
        object.close()?;
        writer.write_str(&text)
    }

    /// Fields recorded later are appended to the object. A name recorded twice appears
    /// twice; the event format parses the object, and the last value wins.
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // Reopen the object: without its closing brace, or from nothing when it is empty.
        let empty = matches!(current.fields.as_str(), "" | "{}");
        if empty {
            current.fields.clear();
        } else if current.fields.ends_with('}') {
            current.fields.pop();
        }
        current.fields.reserve(64);
        let mut writer = current.as_writer();
        let mut object = Object { out: &mut writer, empty, result: Ok(()) };
        fields.record(&mut object);
        object.close()
    }
}

/// Writes `"name":value` pairs; `{` before the first, `}` on [`Object::close`].
struct Object<'a, 'w> {
    out: &'a mut Writer<'w>,
    empty: bool,
    result: fmt::Result,
}

impl Object<'_, '_> {
    /// Starts the pair named `field`.
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.out.write_str(if std::mem::take(&mut self.empty) { "{\"" } else { ",\"" })?;
        Escaped(&mut *self.out).write_str(field.name())?;
        self.out.write_str("\":")
    }

    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.out));
        }
    }

    /// A string value, written by `write` through the escaping writer.
    fn string(&mut self, field: &Field, write: impl FnOnce(&mut Escaped<'_, Writer<'_>>) -> fmt::Result) {
        self.pair(field, |out| {
            out.write_char('"')?;
            write(&mut Escaped(&mut *out))?;
            out.write_char('"')
        });
    }

    fn close(self) -> fmt::Result {
        self.result?;
        self.out.write_str(if self.empty { "{}" } else { "}" })
    }
}

impl Visit for Object<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, |out| out.write_str(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.string(field, |out| write!(out, "{value:?}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.string(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    /// JSON has no NaN or infinity: those are `null`, as serde_json writes them.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.pair(field, |out| if value.is_finite() { write!(out, "{value}") } else { out.write_str("null") });
    }
}

/// Escapes what it is given as the inside of a JSON string.
struct Escaped<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The `span` object of the one line logged inside `open`'s span.
    fn span_of(open: impl FnOnce() -> tracing::Span) -> serde_json::Value {
        let lines = Lines::default();
        let writer = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(JsonSpanFields)
            .with_writer(move || writer.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            open().in_scope(|| tracing::info!("inside"));
        });
        let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        line["span"].clone()
    }

    #[test]
    fn fields_of_every_kind_are_one_json_object() {
        let span = span_of(|| {
            tracing::info_span!(
                "request",
                http.route = "/users/{id}",
                method = %"POST",
                quoted = "a \"b\" \\ c\n\u{1}",
                n = 42u64,
                neg = -7i64,
                ok = true,
                ratio = 0.5,
                nan = f64::NAN,
                debug = ?Some(1),
            )
        });
        assert_eq!(
            span,
            serde_json::json!({
                "name": "request",
                "http.route": "/users/{id}",
                "method": "POST",
                "quoted": "a \"b\" \\ c\n\u{1}",
                "n": 42,
                "neg": -7,
                "ok": true,
                "ratio": 0.5,
                "nan": null,
                "debug": "Some(1)",
            })
        );
    }

    #[test]
    fn fields_recorded_later_join_the_object_and_the_last_value_wins() {
        let span = span_of(|| {
            let span =
                tracing::info_span!("request", id = "a", status = tracing::field::Empty, late = tracing::field::Empty);
            span.record("status", 201u64);
            span.record("id", "b");
            span
        });
        assert_eq!(span, serde_json::json!({"name": "request", "id": "b", "status": 201}));
    }

    #[test]
    fn a_span_without_fields_is_an_empty_object_until_one_is_recorded() {
        assert_eq!(span_of(|| tracing::info_span!("relay")), serde_json::json!({"name": "relay"}));
        let span = span_of(|| {
            let span = tracing::info_span!("relay", event = tracing::field::Empty);
            span.record("event", "call.started");
            span
        });
        assert_eq!(span, serde_json::json!({"name": "relay", "event": "call.started"}));
    }
}
