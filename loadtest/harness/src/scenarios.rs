//! The scenarios (L1–L7, and L4b). Each drives one running cluster and returns its numbers;
//! none of them judges the numbers (that is the report's job), so smoke runs can reuse them.

use crate::cluster::{self, Auth, Cluster, Replica};
use crate::eio::{self, Client, End, Polling};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// The sizes of one benchmark run (tiny ones in smoke mode).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sizes {
    /// Seconds of load before any measurement starts (connection pools, JIT, caches).
    pub warmup_secs: f64,
    pub l1_concurrency: usize,
    pub l1_secs: f64,
    pub l2_clients: usize,
    pub l2_rate: u32,
    pub l2_secs: f64,
    pub l3_clients_per_replica: usize,
    pub l3_publishers: usize,
    pub l3_secs: f64,
    /// L3 in token mode: clients per replica, each its own user.
    pub l3t_clients_per_replica: usize,
    pub l4_connections: usize,
    pub l4b_sessions: usize,
    pub l5_clients: usize,
    /// How long L5 waits for reconnections after the kill (the target is 10 s).
    pub l5_observe_secs: f64,
    /// L6: closed-loop workers (each its own caller and callee), measured seconds, and calls
    /// left ringing to be missed.
    pub l6_concurrency: usize,
    pub l6_secs: f64,
    pub l6_missed: usize,
    /// L7: token-mode connections on the replica whose subscription is cut.
    pub l7_clients: usize,
}

/// One named number of a scenario run; units are in the name.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
}

pub type Metrics = Vec<Metric>;

fn metric(name: &'static str, value: f64) -> Metric {
    Metric { name, value }
}

/// Simultaneous websocket handshakes while connecting thousands of clients.
const CONNECT_CONCURRENCY: usize = 256;

fn http_client(pool: usize) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("http client: {e}"))
}

/// POSTs a JSON body (as the bearer of `token`, if any) and returns the JSON answer.
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: String,
    token: Option<&str>,
) -> Result<serde_json::Value, String> {
    let mut req = http.post(url).header("content-type", "application/json").body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("POST {url}: {status}"));
    }
    resp.json().await.map_err(|e| format!("POST {url}: {e}"))
}

/// A registered user: its id and, with `AUTH=token`, its token.
#[derive(Clone, Debug)]
struct User {
    id: String,
    token: Option<String>,
}

/// Registers `n` users on `base` (16 at a time) and returns them, in order.
async fn register_users(http: &reqwest::Client, base: &str, n: usize) -> Result<Vec<User>, String> {
    let sem = Arc::new(Semaphore::new(16));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (http, url, sem) = (http.clone(), format!("{base}/users"), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.map_err(|e| e.to_string())?;
            let user = post_json(&http, &url, format!(r#"{{"name":"bench-user-{i}"}}"#), None).await?;
            let id = user["id"].as_str().map(str::to_owned).ok_or_else(|| "POST /users: no id".to_string())?;
            Ok::<_, String>(User { id, token: user["token"].as_str().map(str::to_owned) })
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.push(t.await.map_err(|e| e.to_string())??);
    }
    Ok(ids)
}

/// POSTs /users back to back until `until`, counting successes into `done`; returns the
/// latencies (µs) and the number of failed requests.
async fn post_users_until(
    http: reqwest::Client,
    base: String,
    until: Instant,
    worker: usize,
    done: Arc<AtomicU64>,
) -> (Vec<u32>, u64) {
    post_until(http, format!("{base}/users"), None, until, worker, done).await
}

/// POSTs `{"name": …}` to `url` back to back until `until` (as the bearer of `token`, if
/// any), counting successes into `done`; returns the latencies (µs) and the number of
/// failed requests.
async fn post_until(
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    until: Instant,
    worker: usize,
    done: Arc<AtomicU64>,
) -> (Vec<u32>, u64) {
    let (mut latencies, mut errors) = (Vec::new(), 0);
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        let t = Instant::now();
        match post_json(&http, &url, format!(r#"{{"name":"load-{worker}-{i}"}}"#), token.as_deref()).await {
            Ok(_) => {
                latencies.push(t.elapsed().as_micros() as u32);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => errors += 1,
        }
    }
    (latencies, errors)
}

/// What a connected client does with each event packet; handed back when the client stops.
pub trait Listener: Send + 'static {
    fn on_event(&mut self, body: &str);
}

impl Listener for () {
    fn on_event(&mut self, _: &str) {}
}

/// Counts every event into a shared counter.
struct Counter(Arc<AtomicU64>);

impl Listener for Counter {
    fn on_event(&mut self, _: &str) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Connects `n` clients to `base`, each then listening until `stop` fires, and returns once
/// every one is connected (or one failed).
async fn spawn_clients<L: Listener>(
    base: &str,
    n: usize,
    stop: &watch::Receiver<bool>,
    listener: impl FnMut(usize) -> L,
) -> Result<Vec<JoinHandle<L>>, String> {
    spawn_clients_as(base, n, stop, |_| None, listener).await
}

/// [`spawn_clients`], client `i` connecting with the token `token(i)` (`AUTH=token`).
async fn spawn_clients_as<L: Listener>(
    base: &str,
    n: usize,
    stop: &watch::Receiver<bool>,
    mut token: impl FnMut(usize) -> Option<String>,
    mut listener: impl FnMut(usize) -> L,
) -> Result<Vec<JoinHandle<L>>, String> {
    let sem = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let (ready_tx, ready_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (base, sem, ready, mut stop) = (base.to_owned(), sem.clone(), ready_tx.clone(), stop.clone());
        let (mut l, token) = (listener(i), token(i));
        handles.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let connected = Client::connect(&base, token.as_deref()).await;
            drop(permit);
            match connected {
                Ok(mut client) => {
                    let _ = ready.send(Ok(()));
                    if client.run(&mut stop, |body| l.on_event(body)).await == End::Stopped {
                        client.close().await;
                    }
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
            l
        }));
    }
    drop(ready_tx);
    all_ready(ready_rx, n, "Socket.IO client").await?;
    Ok(handles)
}

/// Waits until `n` spawned clients have said they connected, or one failed.
async fn all_ready(mut ready: mpsc::UnboundedReceiver<Result<(), String>>, n: usize, what: &str) -> Result<(), String> {
    for _ in 0..n {
        match ready.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(format!("a {what} failed to connect: {e}")),
            None => return Err(format!("{what} tasks ended early")),
        }
    }
    Ok(())
}

fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let idx = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len()) - 1;
    sorted_us[idx] as f64 / 1000.0
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// One closed-loop measurement: how many requests, in what wall and server CPU time, their
/// sorted latencies (µs) and the failures.
struct Closed {
    done: f64,
    wall: Duration,
    cpu: Duration,
    latencies: Vec<u32>,
    errors: u64,
}

/// `POST {path}` with `{"name": …}` from `s.l1_concurrency` closed-loop workers (as the
/// bearer of `token`, if any): a warm-up, then `s.l1_secs` measured.
async fn closed_loop(
    http: &reqwest::Client,
    replica: &Replica,
    s: &Sizes,
    path: &str,
    token: Option<&str>,
) -> Result<Closed, String> {
    let url = format!("{}{path}", replica.url);
    let phase = |len: f64| {
        let until = Instant::now() + secs(len);
        let done = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..s.l1_concurrency)
            .map(|w| {
                let (http, url, token) = (http.clone(), url.clone(), token.map(str::to_owned));
                tokio::spawn(post_until(http, url, token, until, w, done.clone()))
            })
            .collect();
        async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            for w in workers {
                let (l, e) = w.await.map_err(|e| e.to_string())?;
                latencies.extend(l);
                errors += e;
            }
            Ok::<_, String>((latencies, errors))
        }
    };
    phase(s.warmup_secs).await?;
    let (cpu0, t0) = (cluster::cpu_time(replica.pid)?, Instant::now());
    let (mut latencies, errors) = phase(s.l1_secs).await?;
    let (cpu, wall) = (cluster::cpu_time(replica.pid)? - cpu0, t0.elapsed());
    latencies.sort_unstable();
    Ok(Closed { done: latencies.len() as f64, wall, cpu, latencies, errors })
}

/// L1: `POST /users` at fixed concurrency against one replica (with `AUTH=token` it also
/// mints the new user's token), then `POST /rooms` the same way, which with `AUTH=token`
/// is authenticated: one JWT verified and the token's user read from the store per request.
pub async fn l1(replica: &Replica, s: &Sizes, auth: Auth) -> Result<Metrics, String> {
    let http = http_client(s.l1_concurrency)?;
    let actor = register_users(&http, &replica.url, 1).await?.remove(0);
    if auth == Auth::Token && actor.token.is_none() {
        return Err("POST /users answered no token: is the replica in AUTH=token mode?".into());
    }
    let users = closed_loop(&http, replica, s, "/users", None).await?;
    let rooms = closed_loop(&http, replica, s, "/rooms", actor.token.as_deref()).await?;
    Ok(vec![
        metric("req_per_s", users.done / users.wall.as_secs_f64()),
        metric("req_per_cpu_s", users.done / users.cpu.as_secs_f64()),
        metric("p50_ms", percentile_ms(&users.latencies, 0.50)),
        metric("p99_ms", percentile_ms(&users.latencies, 0.99)),
        metric("server_cores", users.cpu.as_secs_f64() / users.wall.as_secs_f64()),
        metric("errors", users.errors as f64),
        metric("rooms_req_per_s", rooms.done / rooms.wall.as_secs_f64()),
        metric("rooms_req_per_cpu_s", rooms.done / rooms.cpu.as_secs_f64()),
        metric("rooms_p50_ms", percentile_ms(&rooms.latencies, 0.50)),
        metric("rooms_p99_ms", percentile_ms(&rooms.latencies, 0.99)),
        metric("rooms_errors", rooms.errors as f64),
    ])
}

/// State every L2 client reads: which call a `fromUserId` stands for and when it was sent.
struct FanOut {
    call_of_caller: HashMap<String, usize>,
    sent_us: Vec<AtomicU64>,
    warmup_calls: usize,
    epoch: Instant,
    received: AtomicU64,
}

/// An L2 client: the delay (µs) of every measured `call.started` it receives.
struct DelaySamples {
    shared: Arc<FanOut>,
    samples: Vec<u32>,
}

impl Listener for DelaySamples {
    fn on_event(&mut self, body: &str) {
        if eio::event_name(body) != Some("call.started") {
            return;
        }
        let now = self.shared.epoch.elapsed().as_micros() as u64;
        let Some(&call) = eio::string_field(body, "fromUserId").and_then(|from| self.shared.call_of_caller.get(from))
        else {
            return;
        };
        let sent = self.shared.sent_us[call].load(Ordering::Relaxed);
        if call >= self.shared.warmup_calls && sent > 0 {
            self.samples.push(now.saturating_sub(sent) as u32);
            self.shared.received.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// L2: POST /calls on replica A at a fixed rate (open model); the delay until each
/// `call.started` reaches each client on replica B. Every call has its own caller, so the
/// event's `fromUserId` names the call without waiting for the REST response.
///
/// With `AUTH=token` the clients on B are users, each with its own token, and call `i` (by
/// its own caller, with the caller's token) rings client `i mod clients`: each
/// `call.started` reaches one socket of B, the callee's, among all of B's.
pub async fn l2(a: &Replica, b: &Replica, s: &Sizes, auth: Auth) -> Result<Metrics, String> {
    let warmup_calls = (s.l2_rate as f64 * s.warmup_secs) as usize;
    let measured = (s.l2_rate as f64 * s.l2_secs) as usize;
    let total = warmup_calls + measured;
    let http = http_client(64)?;
    let extra = match auth {
        Auth::Open => 1,
        Auth::Token => s.l2_clients,
    };
    let users = register_users(&http, &a.url, total + extra).await?;
    let listeners = &users[total..];
    let shared = Arc::new(FanOut {
        call_of_caller: users[..total].iter().enumerate().map(|(i, u)| (u.id.clone(), i)).collect(),
        sent_us: (0..total).map(|_| AtomicU64::new(0)).collect(),
        warmup_calls,
        epoch: Instant::now(),
        received: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let token = |i: usize| match auth {
        Auth::Open => None,
        Auth::Token => listeners[i].token.clone(),
    };
    let clients = spawn_clients_as(&b.url, s.l2_clients, &stop_rx, token, |_| DelaySamples {
        shared: shared.clone(),
        samples: Vec::new(),
    })
    .await?;

    let errors = Arc::new(AtomicU64::new(0));
    let cpu0 = cluster::cpu_time_all(&[a.pid, b.pid])?;
    let own0 = cluster::cpu_time(std::process::id())?;
    let t0 = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / s.l2_rate as f64));
    let mut requests = Vec::with_capacity(total);
    for call in 0..total {
        ticker.tick().await;
        let (http, shared, errors) = (http.clone(), shared.clone(), errors.clone());
        let url = format!("{}/calls", a.url);
        let (body, token) = match auth {
            Auth::Open => {
                (format!(r#"{{"fromUserId":"{}","toUserId":"{}"}}"#, users[call].id, users[call + 1].id), None)
            }
            Auth::Token => {
                (format!(r#"{{"toUserId":"{}"}}"#, listeners[call % listeners.len()].id), users[call].token.clone())
            }
        };
        shared.sent_us[call].store(shared.epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
        requests.push(tokio::spawn(async move {
            if post_json(&http, &url, body, token.as_deref()).await.is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for r in requests {
        r.await.map_err(|e| e.to_string())?;
    }
    let per_call = match auth {
        Auth::Open => s.l2_clients,
        Auth::Token => 1,
    };
    let expected = (measured * per_call) as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    while shared.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (cpu, wall) = (cluster::cpu_time_all(&[a.pid, b.pid])? - cpu0, t0.elapsed());
    let own = cluster::cpu_time(std::process::id())? - own0;
    let _ = stop_tx.send(true);
    let mut samples = Vec::with_capacity(expected as usize);
    for c in clients {
        samples.extend(c.await.map_err(|e| e.to_string())?.samples);
    }
    samples.sort_unstable();
    Ok(vec![
        metric("p50_ms", percentile_ms(&samples, 0.50)),
        metric("p99_ms", percentile_ms(&samples, 0.99)),
        metric("max_ms", percentile_ms(&samples, 1.0)),
        metric("delivered_pct", 100.0 * samples.len() as f64 / expected as f64),
        metric("deliveries_per_call", per_call as f64),
        metric("server_cores", cpu.as_secs_f64() / wall.as_secs_f64()),
        metric("harness_cores", own.as_secs_f64() / wall.as_secs_f64()),
        metric("call_errors", errors.load(Ordering::Relaxed) as f64),
    ])
}

/// What an L3 run measured over its window, turned into metrics.
struct Saturation {
    delivered: f64,
    requests: f64,
    wall: Duration,
    cpu: Duration,
    own: Duration,
    delivered_pct: f64,
    errors: u64,
}

impl Saturation {
    fn metrics(&self) -> Metrics {
        let (wall, cpu) = (self.wall.as_secs_f64(), self.cpu.as_secs_f64());
        vec![
            metric("events_per_s", self.delivered / wall),
            metric("events_per_cpu_s", self.delivered / cpu),
            metric("rest_req_per_s", self.requests / wall),
            metric("rest_req_per_cpu_s", self.requests / cpu),
            metric("events_per_request", self.delivered / self.requests.max(1.0)),
            metric("server_cores", cpu / wall),
            // Near 1.0 when pinned to one CPU: then the harness may be what limits events_per_s.
            metric("harness_cores", self.own.as_secs_f64() / wall),
            metric("delivered_pct", self.delivered_pct),
            metric("errors", self.errors as f64),
        ]
    }
}

/// Runs `publishers` (closed-loop load that counts its successful requests into the
/// counter it is given) for a warm-up plus `s.l3_secs`, and measures the window after the
/// warm-up: events the clients counted into `received`, requests, server and own CPU.
/// Then lets queued events arrive and stops the clients.
async fn saturate(
    replicas: &[Replica],
    s: &Sizes,
    received: &AtomicU64,
    publishers: impl FnOnce(Instant, Arc<AtomicU64>) -> Vec<JoinHandle<(Vec<u32>, u64)>>,
    deliveries_per_request: u64,
    stop_tx: watch::Sender<bool>,
    clients: Vec<JoinHandle<Counter>>,
) -> Result<Saturation, String> {
    let posted = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + secs(s.warmup_secs + s.l3_secs);
    let publishers = publishers(until, posted.clone());
    let pids: Vec<u32> = replicas.iter().map(|r| r.pid).collect();
    tokio::time::sleep(secs(s.warmup_secs)).await;
    let (recv0, posted0) = (received.load(Ordering::Relaxed), posted.load(Ordering::Relaxed));
    let (cpu0, t0) = (cluster::cpu_time_all(&pids)?, Instant::now());
    let own0 = cluster::cpu_time(std::process::id())?;
    tokio::time::sleep(secs(s.l3_secs)).await;
    let own = cluster::cpu_time(std::process::id())? - own0;
    let (recv1, posted1) = (received.load(Ordering::Relaxed), posted.load(Ordering::Relaxed));
    let (cpu, wall) = (cluster::cpu_time_all(&pids)? - cpu0, t0.elapsed());
    let mut errors = 0;
    for p in publishers {
        errors += p.await.map_err(|e| e.to_string())?.1;
    }
    // Let what was queued arrive, then compare with what should have.
    let mut last = received.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = received.load(Ordering::Relaxed);
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let _ = stop_tx.send(true);
    for c in clients {
        c.await.map_err(|e| e.to_string())?;
    }
    let expected = posted.load(Ordering::Relaxed) * deliveries_per_request;
    Ok(Saturation {
        delivered: (recv1 - recv0) as f64,
        requests: (posted1 - posted0) as f64,
        wall,
        cpu,
        own,
        delivered_pct: 100.0 * received.load(Ordering::Relaxed) as f64 / expected.max(1) as f64,
        errors,
    })
}

/// L3: as many events as the replicas will deliver: clients on both replicas, POST /users
/// back to back on both, events counted on arrival; each POST is one event for every client.
pub async fn l3(replicas: &[Replica], s: &Sizes) -> Result<Metrics, String> {
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients = Vec::new();
    for r in replicas {
        clients.extend(spawn_clients(&r.url, s.l3_clients_per_replica, &stop_rx, |_| Counter(received.clone())).await?);
    }
    let n_clients = (s.l3_clients_per_replica * replicas.len()) as u64;
    let http = http_client(s.l3_publishers)?;
    let publishers = |until: Instant, posted: Arc<AtomicU64>| {
        (0..s.l3_publishers)
            .map(|w| {
                let url = replicas[w % replicas.len()].url.clone();
                tokio::spawn(post_users_until(http.clone(), url, until, w, posted.clone()))
            })
            .collect()
    };
    Ok(saturate(replicas, s, &received, publishers, n_clients, stop_tx, clients).await?.metrics())
}

/// Starts and ends calls back to back until `until`, cycling through `pairs` (caller,
/// callee), each request as the caller; counts successful requests into `done`.
async fn calls_until(
    http: reqwest::Client,
    base: String,
    pairs: Vec<(User, User)>,
    until: Instant,
    done: Arc<AtomicU64>,
) -> (Vec<u32>, u64) {
    let (url, mut errors) = (format!("{base}/calls"), 0);
    for (caller, callee) in pairs.iter().cycle() {
        if Instant::now() >= until || pairs.is_empty() {
            break;
        }
        let token = caller.token.as_deref();
        let body = format!(r#"{{"toUserId":"{}"}}"#, callee.id);
        let call = match post_json(&http, &url, body, token).await {
            Ok(call) => call,
            Err(_) => {
                errors += 1;
                continue;
            }
        };
        done.fetch_add(1, Ordering::Relaxed);
        let Some(id) = call["id"].as_str() else {
            errors += 1;
            continue;
        };
        match post_json(&http, &format!("{url}/{id}/end"), "{}".into(), token).await {
            Ok(_) => done.fetch_add(1, Ordering::Relaxed),
            Err(_) => {
                errors += 1;
                continue;
            }
        };
    }
    (Vec::new(), errors)
}

/// L3 with `AUTH=token` (L3t): targeted delivery among many sockets. Each of
/// `s.l3t_clients_per_replica` clients per replica is its own user, connected with its
/// token; publishers start a call (as the caller) and end it, back to back, between a user
/// on one replica and a user on the other, each pair used by one publisher at a time. Each
/// request is one event (`call.started`, `call.ended`) for its 2 users' sockets only, so
/// what a replica spends on it should not grow with the sockets it holds.
pub async fn l3t(replicas: &[Replica], s: &Sizes) -> Result<Metrics, String> {
    let per_replica = s.l3t_clients_per_replica;
    let http = http_client(s.l3_publishers.max(16))?;
    let users = register_users(&http, &replicas[0].url, per_replica * replicas.len()).await?;
    if users.iter().any(|u| u.token.is_none()) {
        return Err("POST /users answered no token: is the replica in AUTH=token mode?".into());
    }
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        let mine = &users[r * per_replica..(r + 1) * per_replica];
        let token = |i: usize| mine[i].token.clone();
        clients
            .extend(spawn_clients_as(&replica.url, per_replica, &stop_rx, token, |_| Counter(received.clone())).await?);
    }
    // Pair i: user i calls the user in the same place on the next replica, so that every
    // event reaches one socket on each of two replicas. A user is the caller of one pair
    // and the callee of another; two calls of one user may overlap (no busy check).
    let pairs: Vec<(User, User)> = (0..per_replica * replicas.len())
        .map(|i| (users[i].clone(), users[(i + per_replica) % users.len()].clone()))
        .collect();
    let publishers = |until: Instant, posted: Arc<AtomicU64>| {
        (0..s.l3_publishers)
            .map(|w| {
                let mine: Vec<(User, User)> = pairs.iter().skip(w).step_by(s.l3_publishers).cloned().collect();
                let url = replicas[w % replicas.len()].url.clone();
                tokio::spawn(calls_until(http.clone(), url, mine, until, posted.clone()))
            })
            .collect()
    };
    Ok(saturate(replicas, s, &received, publishers, 2, stop_tx, clients).await?.metrics())
}

/// L4: resident memory per idle websocket connection on one replica.
pub async fn l4(replica: &Replica, s: &Sizes) -> Result<Metrics, String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // A few connections first, so one-off allocations (buffers, pools) are not charged
    // to the measured ones.
    let warm = spawn_clients(&replica.url, 10, &stop_rx, |_| ()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cluster::rss_kib(replica.pid)?;
    let t0 = Instant::now();
    let clients = spawn_clients(&replica.url, s.l4_connections, &stop_rx, |_| ()).await?;
    let connect_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = cluster::rss_kib(replica.pid)?;
    let _ = stop_tx.send(true);
    for c in warm.into_iter().chain(clients) {
        c.await.map_err(|e| e.to_string())?;
    }
    let n = s.l4_connections as f64;
    Ok(vec![
        metric("connections", n),
        metric("kib_per_conn", after.saturating_sub(before) as f64 / n),
        metric("rss_before_mib", before as f64 / 1024.0),
        metric("rss_after_mib", after as f64 / 1024.0),
        metric("connect_s", connect_s),
    ])
}

/// Opens `n` polling sessions on `base` (256 handshakes at a time), each then polling until
/// `stop` fires and closing its session, and returns once every one is connected.
async fn spawn_polling(
    http: &reqwest::Client,
    base: &str,
    n: usize,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let sem = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let (ready_tx, ready_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (http, base, sem, ready, mut stop) =
            (http.clone(), base.to_owned(), sem.clone(), ready_tx.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let connected = Polling::connect(&http, &base).await;
            drop(permit);
            match connected {
                Ok(session) => {
                    let _ = ready.send(Ok(()));
                    if session.run(&mut stop).await == End::Stopped {
                        session.close().await;
                    }
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        }));
    }
    drop(ready_tx);
    all_ready(ready_rx, n, "polling client").await?;
    Ok(handles)
}

/// L4b: resident memory per idle polling session on one replica. Each session keeps one
/// long-polling GET pending (one connection); requests share one pool whose idle
/// connections close after 1 s, so that what is measured, after a 3 s settle, is the
/// sessions and their pending polls, not the handshakes' spare connections.
pub async fn l4b(replica: &Replica, s: &Sizes) -> Result<Metrics, String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(1))
        // Longer than any server's ping interval (25 s by default): a poll waits that long.
        .timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let warm = spawn_polling(&http, &replica.url, 10, &stop_rx).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cluster::rss_kib(replica.pid)?;
    let t0 = Instant::now();
    let sessions = spawn_polling(&http, &replica.url, s.l4b_sessions, &stop_rx).await?;
    let connect_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = cluster::rss_kib(replica.pid)?;
    let connections = cluster::established_on_port(replica.port);
    let _ = stop_tx.send(true);
    for c in warm.into_iter().chain(sessions) {
        c.await.map_err(|e| e.to_string())?;
    }
    let n = s.l4b_sessions as f64;
    Ok(vec![
        metric("sessions", n),
        metric("kib_per_session", after.saturating_sub(before) as f64 / n),
        metric("rss_before_mib", before as f64 / 1024.0),
        metric("rss_after_mib", after as f64 / 1024.0),
        // Open TCP connections to the replica when RSS was read (sessions + 10 warm-up).
        metric("server_connections", connections as f64),
        metric("connect_s", connect_s),
    ])
}

/// Shared state of the L5 clients.
struct Reconnects {
    connected: AtomicUsize,
    disconnected: AtomicUsize,
    /// µs after `epoch` at which each client was connected again; 0 = not (yet).
    back_at_us: Vec<AtomicU64>,
    epoch: Instant,
}

/// socket.io-client's default schedule: 1 s doubling to 5 s, ±50 % jitter.
fn backoff(attempt: u32, seed: &mut u64) -> Duration {
    // xorshift: jitter needs no cryptographic randomness, nor a crate.
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let base = (1000u64 << attempt.saturating_sub(1).min(3)).min(5000) as f64;
    let jitter = (*seed % 1000) as f64 / 1000.0; // [0, 1)
    Duration::from_millis((base * (0.5 + jitter)) as u64)
}

/// One L5 client: connect through the load balancer, and after a drop reconnect with
/// socket.io-client's backoff until connected again. `pace` limits simultaneous first
/// connects, so the initial stampede does not time out.
async fn reconnecting_client(
    lb: String,
    index: usize,
    shared: Arc<Reconnects>,
    mut stop: watch::Receiver<bool>,
    pace: Arc<Semaphore>,
) {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (index as u64 + 1);
    let mut first = pace.acquire_owned().await.ok();
    let mut dropped = false;
    let mut attempt = 0;
    while !*stop.borrow() {
        let connected = Client::connect(&lb, None).await;
        drop(first.take()); // the pacing permit covers the first connect only
        match connected {
            Ok(mut client) => {
                attempt = 0;
                if dropped {
                    let at = shared.epoch.elapsed().as_micros() as u64;
                    shared.back_at_us[index].store(at.max(1), Ordering::Relaxed);
                } else {
                    shared.connected.fetch_add(1, Ordering::Relaxed);
                }
                if client.run(&mut stop, |_| {}).await == End::Stopped {
                    client.close().await;
                    return;
                }
                if !dropped {
                    dropped = true;
                    shared.disconnected.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) if !dropped && attempt > 5 => return, // never got in: L5 reports it
            Err(_) => {}
        }
        attempt += 1;
        tokio::select! {
            _ = tokio::time::sleep(backoff(attempt, &mut seed)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// L5: clients behind the load balancer (sticky: all on one replica), that replica killed
/// with SIGKILL, time until every client is connected again (to the survivor).
pub async fn l5(cluster: &Cluster, s: &Sizes) -> Result<Metrics, String> {
    let lb = cluster.lb_url.clone().ok_or("L5 needs the load balancer")?;
    let shared = Arc::new(Reconnects {
        connected: AtomicUsize::new(0),
        disconnected: AtomicUsize::new(0),
        back_at_us: (0..s.l5_clients).map(|_| AtomicU64::new(0)).collect(),
        epoch: Instant::now(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let pace = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let tasks: Vec<_> = (0..s.l5_clients)
        .map(|i| tokio::spawn(reconnecting_client(lb.clone(), i, shared.clone(), stop_rx.clone(), pace.clone())))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    while shared.connected.load(Ordering::Relaxed) < s.l5_clients {
        if Instant::now() > deadline {
            let _ = stop_tx.send(true);
            return Err(format!(
                "only {} of {} clients connected through the load balancer",
                shared.connected.load(Ordering::Relaxed),
                s.l5_clients
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held: Vec<usize> = cluster.replicas.iter().map(|r| cluster::established_on_port(r.port)).collect();
    let victim = (0..held.len()).max_by_key(|&i| held[i]).ok_or("no replicas")?;
    let killed_at = shared.epoch.elapsed();
    cluster.kill_replica(victim, "KILL")?;
    // The clients on the victim (the count may include a few of nginx's own keep-alive
    // connections, hence the cap).
    let expect_dropped = held[victim].clamp(1, s.l5_clients);
    let observe_until = Instant::now() + secs(s.l5_observe_secs);
    loop {
        let dropped = shared.disconnected.load(Ordering::Relaxed);
        let back = shared.back_at_us.iter().filter(|t| t.load(Ordering::Relaxed) > 0).count();
        if (dropped >= expect_dropped && back >= dropped) || Instant::now() > observe_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let dropped = shared.disconnected.load(Ordering::Relaxed);
    let mut delays: Vec<u32> = shared
        .back_at_us
        .iter()
        .map(|t| t.load(Ordering::Relaxed))
        .filter(|&t| t > 0)
        .map(|t| t.saturating_sub(killed_at.as_micros() as u64) as u32)
        .collect();
    delays.sort_unstable();
    let within_10s = delays.iter().filter(|&&us| us <= 10_000_000).count();
    let all_back = delays.len() >= dropped && dropped > 0;
    Ok(vec![
        metric("clients", s.l5_clients as f64),
        metric("on_killed_replica", held[victim] as f64),
        metric("disconnected", dropped as f64),
        metric("reconnected_10s_pct", 100.0 * within_10s as f64 / dropped.max(1) as f64),
        metric("p50_s", percentile_ms(&delays, 0.50) / 1000.0),
        metric("p99_s", percentile_ms(&delays, 0.99) / 1000.0),
        metric("all_back_s", if all_back { percentile_ms(&delays, 1.0) / 1000.0 } else { f64::NAN }),
    ])
}

/// The ring timeout (seconds) L6's replica runs with (`CALL_RING_TIMEOUT`), so that the
/// calls it leaves ringing end as `missed` within seconds.
pub const L6_RING_TIMEOUT_S: u64 = 1;

/// How long L6 waits, after its last ringing call was placed, for every one to end as
/// `missed` (the contract: within 2 s of the deadline).
const L6_MISSED_WAIT: Duration = Duration::from_secs(10);

/// The ways an L6 journey goes, in the order a worker cycles through them.
#[derive(Clone, Copy, Debug)]
enum Journey {
    /// call, accept (callee), end (caller): `completed`.
    Completed,
    /// call, decline (callee, `busy`): `busy`.
    Declined,
    /// call, end (caller) while it rings: `cancelled`.
    Cancelled,
}

const JOURNEYS: [Journey; 3] = [Journey::Completed, Journey::Declined, Journey::Cancelled];

/// A call as answered must have this `status` and `endReason` (`None`: null).
fn expect_call(call: &serde_json::Value, step: &str, status: &str, end_reason: Option<&str>) -> Result<(), String> {
    let (got_status, got_reason) = (call["status"].as_str(), call["endReason"].as_str());
    if got_status == Some(status) && got_reason == end_reason {
        Ok(())
    } else {
        Err(format!("{step}: status {got_status:?}, endReason {got_reason:?} (expected {status:?}, {end_reason:?})"))
    }
}

/// Places a call from `caller` to `callee` and checks that it rings; returns its id.
async fn place_call(http: &reqwest::Client, base: &str, caller: &str, callee: &str) -> Result<String, String> {
    let body = format!(r#"{{"fromUserId":"{caller}","toUserId":"{callee}"}}"#);
    let call = post_json(http, &format!("{base}/calls"), body, None).await?;
    expect_call(&call, "POST /calls", "initiated", None)?;
    call["id"].as_str().map(str::to_owned).ok_or_else(|| "POST /calls: no id".into())
}

/// One call journey between `caller` and `callee`, every answer checked; returns the number
/// of requests it made.
async fn journey(http: &reqwest::Client, base: &str, caller: &str, callee: &str, kind: Journey) -> Result<u64, String> {
    let id = place_call(http, base, caller, callee).await?;
    let url = format!("{base}/calls/{id}");
    let as_user = |user: &str| format!(r#"{{"userId":"{user}"}}"#);
    match kind {
        Journey::Completed => {
            let accepted = post_json(http, &format!("{url}/accept"), as_user(callee), None).await?;
            expect_call(&accepted, "accept", "accepted", None)?;
            let ended = post_json(http, &format!("{url}/end"), as_user(caller), None).await?;
            expect_call(&ended, "end (accepted)", "ended", Some("completed"))?;
            Ok(3)
        }
        Journey::Declined => {
            let body = format!(r#"{{"userId":"{callee}","reason":"busy"}}"#);
            let declined = post_json(http, &format!("{url}/decline"), body, None).await?;
            expect_call(&declined, "decline", "ended", Some("busy"))?;
            Ok(2)
        }
        Journey::Cancelled => {
            let ended = post_json(http, &format!("{url}/end"), as_user(caller), None).await?;
            expect_call(&ended, "end (ringing)", "ended", Some("cancelled"))?;
            Ok(2)
        }
    }
}

/// Runs journeys between `caller` and `callee` back to back until `until`, cycling through
/// [`JOURNEYS`] (worker `w` starting at the `w`-th); counts the requests of correct
/// journeys into `requests`. Returns their latencies (µs) and the number of failed or
/// wrong ones (the first of which is printed).
async fn journeys_until(
    http: reqwest::Client,
    base: String,
    (caller, callee): (User, User),
    worker: usize,
    until: Instant,
    requests: Arc<AtomicU64>,
) -> (Vec<u32>, u64) {
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for kind in JOURNEYS.iter().cycle().skip(worker % JOURNEYS.len()) {
        if Instant::now() >= until {
            break;
        }
        let t = Instant::now();
        match journey(&http, &base, &caller.id, &callee.id, *kind).await {
            Ok(n) => {
                latencies.push(t.elapsed().as_micros() as u32);
                requests.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                if errors == 0 {
                    eprintln!("bench: L6 worker {worker}: {kind:?} journey: {e}");
                }
                errors += 1;
            }
        }
    }
    (latencies, errors)
}

/// Leaves `n` calls ringing (between the `pairs`, round-robin) and waits until every one
/// has ended as `missed`, polling `GET /calls/:id`. Returns how many did, how many ended
/// otherwise or answered wrongly (errors), and the latest any was ended after its deadline,
/// in seconds by the server's own `startTime` and `endTime`. Fails when a call still rings
/// [`L6_MISSED_WAIT`] after the last one was placed.
async fn missed_batch(
    http: &reqwest::Client,
    base: &str,
    pairs: &[(User, User)],
    n: usize,
) -> Result<(usize, u64, f64), String> {
    let mut pending = Vec::with_capacity(n);
    let mut errors = 0;
    for (caller, callee) in pairs.iter().cycle().take(n) {
        match place_call(http, base, &caller.id, &callee.id).await {
            Ok(id) => pending.push(id),
            Err(e) => {
                eprintln!("bench: L6 ringing call: {e}");
                errors += 1;
            }
        }
    }
    let deadline = Instant::now() + L6_MISSED_WAIT;
    let (mut confirmed, mut late_max) = (0, 0.0f64);
    tokio::time::sleep(Duration::from_secs(L6_RING_TIMEOUT_S)).await;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let url = format!("{base}/calls/{id}");
            let call: serde_json::Value = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => r.json().await.map_err(|e| format!("GET {url}: {e}"))?,
                Ok(r) => return Err(format!("GET {url}: {}", r.status())),
                Err(e) => return Err(format!("GET {url}: {e}")),
            };
            match (call["status"].as_str(), call["endReason"].as_str()) {
                (Some("initiated"), None) => still.push(id),
                (Some("ended"), Some("missed")) => {
                    confirmed += 1;
                    let at = |field: &str| call[field].as_str().and_then(time_of_day_s);
                    if let (Some(start), Some(end)) = (at("startTime"), at("endTime")) {
                        late_max = late_max.max((end - start).rem_euclid(86_400.0) - L6_RING_TIMEOUT_S as f64);
                    }
                }
                (status, reason) => {
                    eprintln!("bench: L6 ringing call {id}: status {status:?}, endReason {reason:?} (expected missed)");
                    errors += 1;
                }
            }
        }
        pending = still;
        if !pending.is_empty() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} of {n} calls still ringing {} s after the last was placed (ring timeout \
                     {L6_RING_TIMEOUT_S} s: does the replica run with CALL_RING_TIMEOUT={L6_RING_TIMEOUT_S}?)",
                    pending.len(),
                    L6_MISSED_WAIT.as_secs(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok((confirmed, errors, late_max))
}

/// Seconds since midnight of an RFC 3339 UTC timestamp (`2026-11-28T11:47:04.957Z`).
fn time_of_day_s(ts: &str) -> Option<f64> {
    let (_, time) = ts.split_once('T')?;
    let mut hms = time.trim_end_matches('Z').split(':').map(|f| f.parse::<f64>().ok());
    Some(hms.next()?? * 3600.0 + hms.next()?? * 60.0 + hms.next()??)
}

/// L6: the call lifecycle on one replica (switchboard only: the baseline has none), which
/// must run with `CALL_RING_TIMEOUT` = [`L6_RING_TIMEOUT_S`]. `s.l6_concurrency` closed-loop
/// workers, each with its own caller and callee, run journeys back to back (a warm-up, then
/// `s.l6_secs` measured), cycling through completed (call, accept, end), declined (call,
/// decline `busy`) and cancelled (call, end); every answer's `status` and `endReason` is
/// checked, and a wrong one counts as an error. Then `s.l6_missed` calls are left ringing
/// and must all end as `missed`.
pub async fn l6(replica: &Replica, s: &Sizes) -> Result<Metrics, String> {
    let http = http_client(s.l6_concurrency.max(16))?;
    let users = register_users(&http, &replica.url, 2 * s.l6_concurrency.max(1)).await?;
    let pairs: Vec<(User, User)> = users.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect();
    let phase = |len: f64| {
        let until = Instant::now() + secs(len);
        let requests = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = pairs
            .iter()
            .enumerate()
            .map(|(w, pair)| {
                let (http, base) = (http.clone(), replica.url.clone());
                tokio::spawn(journeys_until(http, base, pair.clone(), w, until, requests.clone()))
            })
            .collect();
        async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            for w in workers {
                let (l, e) = w.await.map_err(|e| e.to_string())?;
                latencies.extend(l);
                errors += e;
            }
            Ok::<_, String>((latencies, errors, requests.load(Ordering::Relaxed)))
        }
    };
    let (_, warmup_errors, _) = phase(s.warmup_secs).await?;
    let (cpu0, t0) = (cluster::cpu_time(replica.pid)?, Instant::now());
    let (mut latencies, errors, requests) = phase(s.l6_secs).await?;
    let (cpu, wall) = ((cluster::cpu_time(replica.pid)? - cpu0).as_secs_f64(), t0.elapsed().as_secs_f64());
    latencies.sort_unstable();
    let (missed, missed_errors, late_max) = missed_batch(&http, &replica.url, &pairs, s.l6_missed).await?;
    let journeys = latencies.len() as f64;
    Ok(vec![
        metric("journeys_per_s", journeys / wall),
        metric("journeys_per_cpu_s", journeys / cpu),
        metric("req_per_cpu_s", requests as f64 / cpu),
        metric("p50_ms", percentile_ms(&latencies, 0.50)),
        metric("p99_ms", percentile_ms(&latencies, 0.99)),
        metric("server_cores", cpu / wall),
        metric("journeys", journeys),
        metric("missed_calls", s.l6_missed as f64),
        metric("missed_confirmed", missed as f64),
        // How long after its deadline (startTime + ring timeout) the server ended a missed
        // call, at worst (its own timestamps; the contract says within 2 s).
        metric("missed_late_max_s", if missed > 0 { late_max } else { f64::NAN }),
        // Failed requests and wrong answers: journeys (warm-up included) and ringing calls.
        metric("errors", (warmup_errors + errors + missed_errors) as f64),
    ])
}

/// What L7's connections heard: per connection, the `call.started` events and when it had
/// what it was owed (µs after `base`, 0 while not yet; the connections not called are owed
/// nothing), and whether it got `session.resync`.
struct CatchUp {
    base: Instant,
    started: Vec<AtomicUsize>,
    done_at_us: Vec<AtomicU64>,
    resynced: Vec<AtomicUsize>,
    /// Connections `0..readers` have an offset before the gap; the others have none.
    readers: usize,
}

impl CatchUp {
    fn done(&self, i: usize) -> bool {
        self.done_at_us[i].load(Ordering::Relaxed) > 0
    }
}

struct CatchUpListener {
    i: usize,
    state: Arc<CatchUp>,
}

impl Listener for CatchUpListener {
    fn on_event(&mut self, body: &str) {
        let st = &self.state;
        let now = st.base.elapsed().as_micros().max(1) as u64;
        if body.starts_with(r#"["call.started""#) {
            // A reader is owed its second call.started: the one published during the gap.
            if st.started[self.i].fetch_add(1, Ordering::Relaxed) + 1 >= 2 && self.i < st.readers {
                let _ = st.done_at_us[self.i].compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            }
        } else if body.starts_with(r#"["session.resync""#) {
            st.resynced[self.i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// User `2k` calls user `2k + 1` for every pair in `users` (16 requests at a time), and ends
/// the call when `end`; every user hears `call.started` (and `call.ended`).
async fn call_pairs(http: &reqwest::Client, base: &str, users: &[User], end: bool) -> Result<(), String> {
    let sem = Arc::new(Semaphore::new(16));
    let mut tasks = Vec::new();
    for pair in users.chunks_exact(2) {
        let (http, base, sem) = (http.clone(), base.to_owned(), sem.clone());
        let (caller, callee) = (pair[0].clone(), pair[1].clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.map_err(|e| e.to_string())?;
            let body = format!(r#"{{"toUserId":"{}"}}"#, callee.id);
            let call = post_json(&http, &format!("{base}/calls"), body, caller.token.as_deref()).await?;
            let id = call["id"].as_str().ok_or_else(|| "POST /calls: no id".to_string())?;
            if end {
                post_json(&http, &format!("{base}/calls/{id}/end"), "{}".into(), caller.token.as_deref()).await?;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Polls `GET /readyz` until it answers 200 (`true`) or 503 (`false`), within 30 s.
async fn wait_readiness(http: &reqwest::Client, base: &str, ready: bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = http.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16());
        if status.is_ok_and(|s| (s == 200) == ready) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("/readyz did not turn {}", if ready { "ready" } else { "unready" }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// L7 (`AUTH=token`): replica `cut_off` reaches Redis through `proxy`; its connection is cut
/// while a call is placed (through `direct`, another replica) to half of `cut_off`'s
/// `s.l7_clients` connections (the readers), then restored. The replica reads what it missed
/// from the event log and delivers it: nothing is owed as `session.resync`. From the moment
/// `cut_off` is ready again (`/readyz` 200): until every reader has its call, Redis's CPU at
/// its peak (100 ms windows), how many readers were left behind after 60 s, and how many
/// connections got a `session.resync` (none should).
pub async fn l7(
    cut_off: &Replica,
    direct: &Replica,
    proxy: &crate::proxy::Proxy,
    redis: &cluster::Redis,
    s: &Sizes,
) -> Result<Metrics, String> {
    let n = (s.l7_clients / 4).max(1) * 4;
    let readers = n / 2;
    let http = http_client(16)?;
    let users = register_users(&http, &direct.url, n).await?;
    let state = Arc::new(CatchUp {
        base: Instant::now(),
        started: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        done_at_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
        resynced: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        readers,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let token = |i: usize| users[i].token.clone();
    let clients =
        spawn_clients_as(&cut_off.url, n, &stop_rx, token, |i| CatchUpListener { i, state: state.clone() }).await?;
    // Before the gap: every reader hears a call (and its end), and so has an offset.
    call_pairs(&http, &direct.url, &users[..readers], true).await?;
    let heard = || (0..readers).all(|i| state.started[i].load(Ordering::Relaxed) >= 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !heard() {
        if Instant::now() > deadline {
            let heard = (0..readers).filter(|&i| state.started[i].load(Ordering::Relaxed) >= 1).count();
            return Err(format!("{heard} of {readers} readers heard their first call within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    proxy.cut();
    let gap = async {
        wait_readiness(&http, &cut_off.url, false).await?;
        call_pairs(&http, &direct.url, &users[..readers], false).await
    }
    .await;
    proxy.restore();
    gap?;
    wait_readiness(&http, &cut_off.url, true).await?;
    let t0 = state.base.elapsed().as_micros() as u64;

    let (redis_pid, sampling) = (redis.pid(), Arc::new(AtomicBool::new(true)));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = Duration::ZERO;
            while sampling.load(Ordering::Relaxed) {
                let before = cluster::cpu_time(redis_pid).unwrap_or_default();
                tokio::time::sleep(Duration::from_millis(100)).await;
                peak = peak.max(cluster::cpu_time(redis_pid).unwrap_or_default().saturating_sub(before));
            }
            peak
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(0..readers).all(|i| state.done(i)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler.await.map_err(|e| e.to_string())?;
    let _ = stop_tx.send(true);
    for c in clients {
        let _ = c.await;
    }

    let after = |i: usize| state.done_at_us[i].load(Ordering::Relaxed).saturating_sub(t0) as f64 / 1e6;
    Ok(vec![
        metric("connections", n as f64),
        metric("all caught up, s", (0..readers).filter(|&i| state.done(i)).map(after).fold(0.0, f64::max)),
        metric("Redis CPU peak, %", peak.as_secs_f64() / 0.1 * 100.0),
        metric("left behind", (0..readers).filter(|&i| !state.done(i)).count() as f64),
        metric("resynced", (0..n).filter(|&i| state.resynced[i].load(Ordering::Relaxed) > 0).count() as f64),
    ])
}
