//! Every metric the service exports, declared in one place: names with units, help
//! texts, explicit buckets, and labels of bounded cardinality only (never ids).

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Duration;

const HTTP_REQUESTS: &str = "switchboard_http_requests_total";
const HTTP_DURATION: &str = "switchboard_http_request_duration_seconds";
const HTTP_IN_FLIGHT: &str = "switchboard_http_requests_in_flight";
const SOCKETS: &str = "switchboard_socketio_clients";
const TRACKED: &str = "switchboard_socketio_tracked_connections";
const CATCHING_UP: &str = "switchboard_socketio_catching_up";
const EVENTS_PUBLISHED: &str = "switchboard_events_published_total";
const CONNECTIONS_REFUSED: &str = "switchboard_connections_refused_total";
const EVENTS_EMITTED: &str = "switchboard_events_emitted_total";
const EVENTS_DROPPED: &str = "switchboard_events_dropped_total";
const RELAY_GAPS: &str = "switchboard_relay_gaps_total";
const RELAY_DELAY: &str = "switchboard_relay_delay_seconds";
const REDIS_DURATION: &str = "switchboard_redis_command_duration_seconds";
const REDIS_ERRORS: &str = "switchboard_redis_errors_total";
const REDIS_CONNECTED: &str = "switchboard_redis_connected";
const READY: &str = "switchboard_ready";
const CALLS_STARTED: &str = "switchboard_calls_started_total";
const CALLS_ENDED: &str = "switchboard_calls_ended_total";
const CALLS_ACCEPTED: &str = "switchboard_calls_accepted_total";
const CALL_RING: &str = "switchboard_call_ring_seconds";
const CALL_DURATION: &str = "switchboard_call_duration_seconds";
const TIMERS_FIRED: &str = "switchboard_call_timers_fired_total";
const TIMER_LATENESS: &str = "switchboard_call_timer_lateness_seconds";
const WEBHOOKS: &str = "switchboard_livekit_webhooks_total";
const ROOMS_CREATED: &str = "switchboard_rooms_created_total";
const ROOM_JOINS: &str = "switchboard_room_joins_total";
const USERS_REGISTERED: &str = "switchboard_users_registered_total";
const TOKENS_ISSUED: &str = "switchboard_livekit_tokens_issued_total";
const USERS_ERASED: &str = "switchboard_users_erased_total";
const RETENTION_DELETED: &str = "switchboard_retention_deleted_total";
const STORE_CORRUPT: &str = "switchboard_store_corrupt_total";
const DEVICES_REMOVED: &str = "switchboard_push_devices_removed_total";
const BUILD_INFO: &str = "switchboard_build_info";

/// Request latencies: from half a millisecond to ten seconds.
const HTTP_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Redis round trips and relay hops: from 100 µs to a second.
const FAST_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// Time a call rang until answered: up to the longest sensible ring timeout.
const RING_BUCKETS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0];
/// Answered calls' durations: seconds to hours.
const DURATION_BUCKETS: &[f64] = &[5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0];
/// How late a timer fired; the contract allows 2 s.
const LATENESS_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// Installs the process-wide recorder once (tests run many apps in one process) and
/// returns the handle `/metrics` renders.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RELAY_DELAY.into()), FAST_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(REDIS_DURATION.into()), FAST_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(CALL_RING.into()), RING_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(CALL_DURATION.into()), DURATION_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(TIMER_LATENESS.into()), LATENESS_BUCKETS))
                .expect("bucket lists are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            let _ = HOT.set(zero());
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "commit" => option_env!("SWITCHBOARD_COMMIT").unwrap_or("unknown")).set(1.0);
            let upkeep = handle.clone();
            std::thread::spawn(move || loop {
                // Histograms and summaries drain on upkeep; without it they grow without bound.
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            });
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests served, by method, route template and status");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request duration, by method, route template and status");
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being served now");
    describe_gauge!(SOCKETS, "Socket.IO clients connected to this replica, by current transport");
    describe_gauge!(TRACKED, "AUTH=token: connections this replica delivers to (admitted or connected)");
    describe_gauge!(CATCHING_UP, "AUTH=token: connections holding live events while they catch up");
    describe_counter!(EVENTS_PUBLISHED, "Events this replica published with their change, by event name");
    describe_counter!(CONNECTIONS_REFUSED, "Connections refused at once because the replica was at MAX_CONNECTIONS");
    describe_counter!(EVENTS_EMITTED, "Events this replica emitted to its local sockets, by event name");
    describe_counter!(
        EVENTS_DROPPED,
        "Events lost: this replica's relay fell behind the bus, or a socket's send buffer was full"
    );
    describe_counter!(
        RELAY_GAPS,
        "Gaps in this replica's event subscription: closed from the event log, or lost (the log no longer had them)"
    );
    describe_histogram!(RELAY_DELAY, Unit::Seconds, "Time from publish on any replica to emit on this one");
    describe_histogram!(REDIS_DURATION, Unit::Seconds, "Redis round-trip time, by operation");
    describe_counter!(REDIS_ERRORS, "Redis operations that failed or timed out, by operation");
    describe_gauge!(REDIS_CONNECTED, "1 while the Redis client is connected, by client (data, subscriber)");
    describe_gauge!(
        READY,
        "1 while this replica is ready (store reachable, relay subscribed and not stuck behind a gap)"
    );
    describe_counter!(CALLS_STARTED, "Calls started");
    describe_counter!(CALLS_ENDED, "Calls ended, by end reason");
    describe_counter!(CALLS_ACCEPTED, "Calls the callee answered");
    describe_histogram!(CALL_RING, Unit::Seconds, "How long answered calls rang, from startTime to answerTime");
    describe_histogram!(CALL_DURATION, Unit::Seconds, "How long answered calls lasted, from answerTime to endTime");
    describe_counter!(TIMERS_FIRED, "Call deadlines this replica fired, by kind (missed, expired)");
    describe_histogram!(TIMER_LATENESS, Unit::Seconds, "How long after its deadline a call timer fired");
    describe_counter!(WEBHOOKS, "LiveKit webhooks received, by type and outcome");
    describe_counter!(ROOMS_CREATED, "Rooms created");
    describe_counter!(ROOM_JOINS, "Successful room joins (repeat joins included)");
    describe_counter!(USERS_REGISTERED, "Users registered");
    describe_counter!(TOKENS_ISSUED, "LiveKit access tokens issued");
    describe_counter!(USERS_ERASED, "Users erased (DELETE /users/:id)");
    describe_counter!(
        DEVICES_REMOVED,
        "Devices leaving a user, by platform and reason (evicted past PUSH_MAX_DEVICES, deleted, moved to another user)"
    );
    describe_counter!(RETENTION_DELETED, "Ended calls and inactive rooms deleted by retention, by kind (call, room)");
    describe_counter!(
        STORE_CORRUPT,
        "Stored values that could not be decoded (documents, deadline entries), and deadlines without a document"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the labels carry the version and commit");
}

/// Handles of the metrics every request or event records, registered once with the
/// recorder: `counter!` and its siblings build a key and look it up in the registry on each
/// call, about 500 instructions, seven times per `POST /users` (callgrind).
struct Hot {
    in_flight: Gauge,
    relay_delay: Histogram,
    /// By event name.
    published: HashMap<&'static str, Counter>,
    emitted: HashMap<&'static str, Counter>,
    /// By Redis operation.
    redis: HashMap<&'static str, Histogram>,
}

/// Set by [`install`]; without a recorder nothing is recorded anyway.
static HOT: OnceLock<Hot> = OnceLock::new();

/// Creates every counter with bounded labels at zero, so that `rate()` and alerts see a
/// series before its first increment, and keeps the handles of the hot ones.
fn zero() -> Hot {
    let zeroed = |c: Counter| {
        c.absolute(0);
        c
    };
    let by_event = |name: &'static str| -> HashMap<_, _> {
        crate::domain::Event::NAMES.into_iter().map(|event| (event, zeroed(counter!(name, "event" => event)))).collect()
    };
    let hot = Hot {
        in_flight: gauge!(HTTP_IN_FLIGHT),
        relay_delay: histogram!(RELAY_DELAY),
        published: by_event(EVENTS_PUBLISHED),
        emitted: by_event(EVENTS_EMITTED),
        redis: crate::store::REDIS_OPS.into_iter().map(|op| (op, histogram!(REDIS_DURATION, "op" => op))).collect(),
    };
    for op in crate::store::REDIS_OPS {
        counter!(REDIS_ERRORS, "op" => op).absolute(0);
    }
    for reason in crate::domain::EndReason::ALL {
        counter!(CALLS_ENDED, "reason" => reason.as_str()).absolute(0);
    }
    for kind in ["missed", "expired"] {
        counter!(TIMERS_FIRED, "kind" => kind).absolute(0);
    }
    for outcome in ["closed", "lost"] {
        counter!(RELAY_GAPS, "outcome" => outcome).absolute(0);
    }
    for kind in ["call", "room"] {
        counter!(RETENTION_DELETED, "kind" => kind).absolute(0);
    }
    for name in [
        CONNECTIONS_REFUSED,
        EVENTS_DROPPED,
        CALLS_STARTED,
        CALLS_ACCEPTED,
        ROOMS_CREATED,
        ROOM_JOINS,
        USERS_REGISTERED,
        TOKENS_ISSUED,
        USERS_ERASED,
        STORE_CORRUPT,
    ] {
        counter!(name).absolute(0);
    }
    socket_clients(0, 0);
    hot.in_flight.set(0.0);
    hot
}

/// The request counter and duration histogram of one (method, route template, status).
struct HttpSeries {
    requests: Counter,
    duration: Histogram,
}

/// Series are registered once per label set and then found here, so that a request does
/// not build owned labels and a registry key (the label sets are bounded: route templates,
/// methods, statuses).
type HttpKey = (&'static str, &'static str, u16);

static HTTP_SERIES: LazyLock<RwLock<HashMap<HttpKey, HttpSeries>>> = LazyLock::new(Default::default);

pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    {
        let series = HTTP_SERIES.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(s) = series.get(&(method, route, status)) {
            s.requests.increment(1);
            s.duration.record(seconds);
            return;
        }
    }
    let labels = [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
    let s = HttpSeries { requests: counter!(HTTP_REQUESTS, &labels), duration: histogram!(HTTP_DURATION, &labels) };
    s.requests.increment(1);
    s.duration.record(seconds);
    // Leaked once per label set: a handful of bytes for each route × method × status seen.
    let key: HttpKey = (Box::leak(method.into()), Box::leak(route.into()), status);
    HTTP_SERIES.write().unwrap_or_else(|poisoned| poisoned.into_inner()).entry(key).or_insert(s);
}

/// A connection refused because the replica was at MAX_CONNECTIONS.
pub fn connection_refused() {
    counter!(CONNECTIONS_REFUSED).increment(1);
}

pub fn http_in_flight(delta: f64) {
    if let Some(hot) = HOT.get() {
        hot.in_flight.increment(delta);
    }
}

pub fn socket_clients(polling: usize, websocket: usize) {
    gauge!(SOCKETS, "transport" => "polling").set(polling as f64);
    gauge!(SOCKETS, "transport" => "websocket").set(websocket as f64);
}

/// `AUTH=token`: the connections the replica tracks, and those catching up.
pub fn tracked_connections(connections: usize, catching_up: usize) {
    gauge!(TRACKED).set(connections as f64);
    gauge!(CATCHING_UP).set(catching_up as f64);
}

/// `event` is one of the contract's names.
pub fn event_published(event: &'static str) {
    if let Some(counter) = HOT.get().and_then(|hot| hot.published.get(event)) {
        counter.increment(1);
    }
}

/// `event` is one of the contract's names (the relay drops any other).
pub fn event_emitted(event: &'static str, delay: Duration) {
    if let Some(hot) = HOT.get() {
        if let Some(counter) = hot.emitted.get(event) {
            counter.increment(1);
        }
        hot.relay_delay.record(delay.as_secs_f64());
    }
}

/// A gap in the relay's subscription, closed from the event log or not (`lost`).
pub fn relay_gap(closed: bool) {
    counter!(RELAY_GAPS, "outcome" => if closed { "closed" } else { "lost" }).increment(1);
}

pub fn events_dropped(n: u64) {
    counter!(EVENTS_DROPPED).increment(n);
}

pub fn redis_command(op: &'static str, elapsed: Duration, ok: bool) {
    match HOT.get().and_then(|hot| hot.redis.get(op)) {
        Some(histogram) => histogram.record(elapsed.as_secs_f64()),
        None => histogram!(REDIS_DURATION, "op" => op).record(elapsed.as_secs_f64()),
    }
    if !ok {
        redis_failed(op);
    }
}

/// An operation that failed without a round trip (a `WAIT` skipped while replicas lag).
pub fn redis_failed(op: &'static str) {
    counter!(REDIS_ERRORS, "op" => op).increment(1);
}

pub fn redis_connected(client: &'static str, connected: bool) {
    gauge!(REDIS_CONNECTED, "client" => client).set(if connected { 1.0 } else { 0.0 });
}

pub fn ready(ready: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

pub fn call_started() {
    counter!(CALLS_STARTED).increment(1);
}

/// A call was answered after ringing for `ring`.
pub fn call_accepted(ring: Duration) {
    counter!(CALLS_ACCEPTED).increment(1);
    histogram!(CALL_RING).record(ring.as_secs_f64());
}

/// A call ended for `reason`; `lasted` is its duration when it had been answered.
pub fn call_ended(reason: &'static str, lasted: Option<Duration>) {
    counter!(CALLS_ENDED, "reason" => reason).increment(1);
    if let Some(lasted) = lasted {
        histogram!(CALL_DURATION).record(lasted.as_secs_f64());
    }
}

/// A call deadline fired `late` after it was due.
pub fn timer_fired(kind: &'static str, late: Duration) {
    counter!(TIMERS_FIRED, "kind" => kind).increment(1);
    histogram!(TIMER_LATENESS).record(late.as_secs_f64());
}

/// A LiveKit webhook of `kind` (a bounded label) and what came of it.
pub fn webhook(kind: &'static str, outcome: &'static str) {
    counter!(WEBHOOKS, "type" => kind, "outcome" => outcome).increment(1);
}

pub fn room_created() {
    counter!(ROOMS_CREATED).increment(1);
}

pub fn room_joined() {
    counter!(ROOM_JOINS).increment(1);
}

pub fn user_registered() {
    counter!(USERS_REGISTERED).increment(1);
}

pub fn token_issued() {
    counter!(TOKENS_ISSUED).increment(1);
}

/// A device left its user (`reason`: evicted, deleted, moved).
pub fn device_removed(platform: &'static str, reason: &'static str) {
    counter!(DEVICES_REMOVED, "platform" => platform, "reason" => reason).increment(1);
}

pub fn user_erased() {
    counter!(USERS_ERASED).increment(1);
}

/// Retention deleted a call or a room (`kind`).
pub fn retention_deleted(kind: &'static str) {
    counter!(RETENTION_DELETED, "kind" => kind).increment(1);
}

/// A stored value could not be decoded, or a deadline had no document.
pub fn store_corrupt() {
    counter!(STORE_CORRUPT).increment(1);
}
