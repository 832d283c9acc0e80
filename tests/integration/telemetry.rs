//! What SREs see: a Prometheus scrape that lints clean, OTLP traces that follow an event
//! from the replica that caused it to the replica that emitted it, JSON log lines that
//! name their request and trace, and no secret anywhere.

use crate::lifecycle::{post_webhook, webhook_body};
use crate::support::{API_SECRET, Api, Mode, RedisServer, SioClient, WAIT, eventually, sign_webhook, spawn_binary};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// A replica of its own (the metrics recorder is per process; in-process replicas of other
/// tests would count too): each series of what was done here counts exactly that, not just
/// exists (most exist at zero from the start).
#[tokio::test]
async fn the_metrics_scrape_lints_clean_and_covers_what_sres_watch() {
    let redis = RedisServer::start();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("CALL_RING_TIMEOUT", "1"),
        ("LIVEKIT_API_KEY", crate::support::API_KEY),
        ("LIVEKIT_API_SECRET", API_SECRET),
    ];
    let (_replica, api) = spawn_binary(&env).await;
    let mut client = SioClient::connect(api.base(), Mode::Websocket).await;
    let (ana, ben) = (api.user("Ana").await, api.user("Ben").await);
    let (_, call) = api.post("/calls", json!({ "fromUserId": ana, "toUserId": ben })).await;
    api.post("/livekit/token", json!({ "roomName": call["roomName"], "userId": ben })).await;
    api.post(&format!("/calls/{}/end", call["id"].as_str().unwrap_or("")), json!({})).await;
    let (_, room) = api.post("/rooms", json!({ "name": "R" })).await;
    api.post(&format!("/rooms/{}/join", room["id"].as_str().unwrap_or("")), json!({ "userId": ana })).await;
    api.get("/users/nobody").await;
    // Webhooks of every outcome, and a call left to ring until its timer fires.
    let (_, unanswered) = api.post("/calls", json!({ "fromUserId": ana, "toUserId": ben })).await;
    let (_, answered_by_webhook) = api.post("/calls", json!({ "fromUserId": ana, "toUserId": ben })).await;
    let joined = webhook_body("participant_joined", "EV_metrics", &answered_by_webhook["roomName"], Some(&ben));
    post_webhook(&api, &joined, Some(sign_webhook(&joined, API_SECRET))).await;
    post_webhook(&api, &joined, Some(sign_webhook(&joined, API_SECRET))).await;
    post_webhook(&api, &joined, Some(sign_webhook("{}", API_SECRET))).await;
    post_webhook(&api, "not json", Some(sign_webhook("not json", API_SECRET))).await;
    let answered = answered_by_webhook["id"].as_str().unwrap_or("");
    api.post(&format!("/calls/{answered}/end"), json!({})).await;
    let missed = unanswered["id"].clone();
    client.events_until(|name, arg| name == "call.ended" && arg["data"]["callId"] == missed).await;
    eventually("the clients gauge to count the websocket client", || async {
        api.metric("switchboard_socketio_clients{transport=\"websocket\"}").await == Some(1.0)
    })
    .await;
    // What this test did, series by series.
    for (series, expected) in [
        (
            "switchboard_http_request_duration_seconds_count{method=\"POST\",route=\"/calls/{id}/end\",status=\"200\"}",
            2.0,
        ),
        ("switchboard_http_requests_total{method=\"GET\",route=\"/users/{id}\",status=\"404\"}", 1.0),
        ("switchboard_events_published_total{event=\"room.joined\"}", 1.0),
        ("switchboard_events_emitted_total{event=\"call.started\"}", 3.0),
        ("switchboard_calls_started_total", 3.0),
        ("switchboard_calls_ended_total{reason=\"missed\"}", 1.0),
        // The callee's LiveKit token answered the first call, the webhook the third.
        ("switchboard_calls_accepted_total", 2.0),
        ("switchboard_calls_ended_total{reason=\"completed\"}", 2.0),
        ("switchboard_call_ring_seconds_count", 2.0),
        ("switchboard_call_duration_seconds_count", 2.0),
        ("switchboard_call_timer_lateness_seconds_count", 1.0),
        ("switchboard_call_timers_fired_total{kind=\"missed\"}", 1.0),
        ("switchboard_livekit_webhooks_total{type=\"participant_joined\",outcome=\"duplicate\"}", 1.0),
        ("switchboard_livekit_webhooks_total{type=\"other\",outcome=\"invalid_signature\"}", 1.0),
        // One to each caller, one to the first callee, one to the room's joiner.
        ("switchboard_livekit_tokens_issued_total", 5.0),
        ("switchboard_redis_connected{client=\"subscriber\"}", 1.0),
        ("switchboard_rooms_created_total", 1.0),
        ("switchboard_users_registered_total", 2.0),
    ] {
        assert_eq!(api.metric(series).await, Some(expected), "{series}");
    }
    for series in [
        "switchboard_relay_delay_seconds_count",
        "switchboard_redis_command_duration_seconds_count{op=\"update_call\"}",
        "switchboard_livekit_webhooks_total{type=\"other\",outcome=\"failed\"}",
    ] {
        assert!(api.metric(series).await.is_some_and(|v| v > 0.0), "{series} counted nothing");
    }
    let text = api.raw(Method::GET, "/metrics").send().await.expect("sent").text().await.expect("text");
    for needle in [
        "switchboard_http_request_duration_seconds_bucket{method=\"POST\",route=\"/calls/{id}/end\",status=\"200\",le=\"0.005\"}",
        "switchboard_redis_errors_total{op=\"insert_call\"}",
        "switchboard_build_info{version=\"",
        "# HELP switchboard_relay_delay_seconds",
    ] {
        assert!(text.contains(needle), "the scrape lacks {needle}:\n{text}");
    }
    // `promtool check metrics` parses the exposition and lints names, units and help texts.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (the README's test command installs it)");
    let mut stdin = promtool.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, text.as_bytes()).await.expect("write");
    drop(stdin);
    let out = promtool.wait_with_output().await.expect("promtool ran");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool: {report}");
    // The dashboard and alert checks of the test command read this scrape.
    std::fs::write(concat!(env!("CARGO_TARGET_TMPDIR"), "/metrics-scrape.txt"), &text).expect("saved");
}

/// A minimal OTLP/gRPC collector that keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[derive(Clone, Debug)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut spans = self.0.lock().expect("lock");
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(AnyValue::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Span {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    fn spans(&self) -> Vec<Span> {
        self.0.lock().expect("lock").clone()
    }
}

/// The built binary as a replica, exporting traces and logging JSON lines.
async fn replica(redis: &RedisServer, otlp: &str, service: &str) -> (Child, Api) {
    let url = redis.url();
    spawn_binary(&[
        ("REDIS_URL", url.as_str()),
        ("REDIS_NAMESPACE", "traces"),
        ("LIVEKIT_API_SECRET", "never-printed-secret"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info,switchboard=debug"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp),
        ("OTEL_SERVICE_NAME", service),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await
}

#[tokio::test]
async fn one_trace_follows_a_call_from_the_replica_that_started_it_to_the_one_that_emitted_it() {
    let redis = RedisServer::start();
    let collector = Collector::default();
    let otlp = collector.start().await;
    let (mut a, api_a) = replica(&redis, &otlp, "replica-a").await;
    let (b, api_b) = replica(&redis, &otlp, "replica-b").await;
    let mut client = SioClient::connect(api_b.base(), Mode::Websocket).await;
    let (ana, ben) = (api_a.user("Ana").await, api_a.user("Ben").await);
    client.next_event().await;
    client.next_event().await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let res = api_a
        .raw(Method::POST, "/calls")
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({ "fromUserId": ana, "toUserId": ben }))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::CREATED);
    let request_id = res.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    let (name, _) = client.next_event().await;
    assert_eq!(name, "call.started");

    let in_trace = |service: &str, name: &str| {
        collector.spans().into_iter().find(|s| s.trace_id == trace_id && s.service == service && s.name == name)
    };
    eventually("the spans of both replicas", || async {
        in_trace("replica-a", "POST /calls").is_some()
            && in_trace("replica-a", "insert_call").is_some()
            && in_trace("replica-b", "emit call.started").is_some()
    })
    .await;
    let request = in_trace("replica-a", "POST /calls").expect("request span");
    assert_eq!(request.parent_span_id, caller_span, "the request continues the caller's trace");
    assert_eq!(in_trace("replica-a", "insert_call").expect("redis span").parent_span_id, request.span_id);
    let emit = in_trace("replica-b", "emit call.started").expect("emit span");
    assert_eq!(emit.parent_span_id, request.span_id, "the emit on B is a child of the request on A");

    // The JSON log line of that request names its request id and trace id; no secret leaks.
    let _ = Command::new("kill").args(["-TERM", &a.id().expect("running").to_string()]).status().await;
    let status = tokio::time::timeout(WAIT, a.wait()).await.expect("exits").expect("status");
    assert_eq!(status.code(), Some(0));
    let mut logs = String::new();
    a.stdout.take().expect("stdout").read_to_string(&mut logs).await.expect("logs");
    a.stderr.take().expect("stderr").read_to_string(&mut logs).await.expect("logs");
    let served = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "request served" && l["span"]["request_id"] == request_id.as_str())
        .unwrap_or_else(|| panic!("no JSON line for request {request_id}:\n{logs}"));
    assert_eq!(served["span"]["trace_id"], trace_id);
    assert_eq!(served["span"]["http.route"], "/calls");
    assert!(!logs.contains("never-printed-secret"));
    drop(b);
}
