//! Redis fails over under running replicas: a Cluster primary hands its slot to its
//! replica, the slot then moves to another primary, and a Sentinel promotes the replica.
//! Every acknowledged write survives with exactly one event, and the replicas carry on
//! without a restart (scripts are loaded again where they now run). A primary killed under
//! load takes the subscriptions down with it: every write that survived is still announced
//! once to every client, from the event log.

use crate::support::load::Writer;
use crate::support::{
    Api, Mode, Shape, Shapes, SioClient, TOKEN_MODE, TestApp, WAIT, eventually, eventually_within, spawn_binary,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

#[tokio::test]
async fn a_cluster_failover_and_a_resharding_lose_no_acknowledged_write() {
    let shapes = Shapes::private();
    let replica = TestApp::on_url(shapes.url(Shape::Cluster), "failover").await;
    let mut client = SioClient::connect(&replica.base, Mode::Websocket).await;
    let ports = shapes.ports("REDIS_CLUSTER_PORTS");
    let mut acknowledged = vec![write(&replica, &mut client, "before").await];

    // The replica of the primary that owns the namespace's slot takes over.
    let slot = cli(ports[0], &["cluster", "keyslot", "{failover}:"]).trim().to_owned();
    let owner = slot_owner(ports[0], &slot);
    let standby = cluster_nodes(ports[0]).into_iter().find(|n| n.primary.as_deref() == Some(owner.id.as_str()));
    let standby = standby.expect("the owner has a replica");
    assert_eq!(cli(standby.port, &["cluster", "failover"]).trim(), "OK");
    eventually("the replica to own the slot", || async { slot_owner(ports[0], &slot).id == standby.id }).await;
    acknowledged.push(write(&replica, &mut client, "after-failover").await);

    // The slot moves, with its keys, to another primary: all of its owner's slots do.
    let owner = slot_owner(ports[0], &slot);
    let target = cluster_nodes(ports[0]).into_iter().find(|n| n.primary.is_none() && n.id != owner.id);
    let target = target.expect("another primary");
    // (redis-cli has no timeout of its own.)
    let moved = Command::new("timeout")
        .args(["120", "redis-cli", "--cluster", "reshard", &format!("127.0.0.1:{}", ports[0])])
        .args(["--cluster-from", &owner.id, "--cluster-to", &target.id])
        .args(["--cluster-slots", &owner.slots.to_string(), "--cluster-yes"])
        .output()
        .expect("redis-cli runs");
    assert!(moved.status.success(), "reshard: {}", String::from_utf8_lossy(&moved.stderr));
    assert_eq!(slot_owner(ports[0], &slot).id, target.id);
    acknowledged.push(write(&replica, &mut client, "after-resharding").await);

    let (_, users) = replica.api.get("/users").await;
    assert_eq!(names(&users), acknowledged);
}

#[tokio::test]
async fn a_sentinel_failover_loses_no_acknowledged_write() {
    let shapes = Shapes::private();
    let replica = TestApp::on_url(shapes.url(Shape::Sentinel), "failover").await;
    let mut client = SioClient::connect(&replica.base, Mode::Websocket).await;
    let sentinel = shapes.ports("REDIS_SENTINEL_PORTS")[0];
    let primary = |port| cli(port, &["sentinel", "get-master-addr-by-name", "switchboard"]);
    let before = primary(sentinel);
    let mut acknowledged = vec![write(&replica, &mut client, "before").await];

    assert_eq!(cli(sentinel, &["sentinel", "failover", "switchboard"]).trim(), "OK");
    eventually("the sentinels to promote the replica", || async { primary(sentinel) != before }).await;
    acknowledged.push(write(&replica, &mut client, "after-failover").await);

    let (_, users) = replica.api.get("/users").await;
    assert_eq!(names(&users), acknowledged);
}

#[tokio::test]
async fn with_redis_wait_replicas_a_write_waits_for_a_replica_and_a_shortfall_is_counted() {
    let shapes = Shapes::private();
    let url = shapes.url(Shape::Sentinel).0;
    let env = [("REDIS_URL", url.as_str()), ("REDIS_WAIT_REPLICAS", "1"), ("REDIS_WAIT_TIMEOUT_MS", "300")];
    let (_replica, api) = spawn_binary(&env).await;
    let shortfalls =
        || async { api.metric(r#"switchboard_redis_errors_total{op="wait"}"#).await.expect("the wait error counter") };

    api.user("replicated").await;
    assert_eq!(shortfalls().await, 0.0, "the replica acknowledged the write");

    // With the replica stalled, the write still stands, after the wait, and is counted.
    shapes.freeze("replica", true);
    let (status, _) = api.post("/users", json!({ "name": "unreplicated" })).await;
    shapes.freeze("replica", false);
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(shortfalls().await, 1.0);
}

#[tokio::test]
async fn killed_sentinel_primaries_lose_no_event_of_a_surviving_write() {
    killed_primaries(Shape::Sentinel).await;
}

#[tokio::test]
async fn killed_cluster_primaries_lose_no_event_of_a_surviving_write() {
    killed_primaries(Shape::Cluster).await;
}

/// Replicas in both AUTH modes (two each, a namespace per mode, on the same Redis
/// primary), a client on every replica, users registered through each one after another;
/// the primary is SIGKILLed five times, each time revived as a replica once another took
/// over. Then every user stored was announced exactly once to every client, and none twice.
async fn killed_primaries(shape: Shape) {
    const KILLS: usize = 5;
    /// The bound on each step of a failover (detection, vote, resync): well above the
    /// shapes' 1 s (sentinels) and 2 s (cluster) failure detection on a busy machine.
    const FAILOVER: Duration = Duration::from_secs(60);
    let shapes = Shapes::private();
    let url = shapes.url(shape).0;
    let mut sides = Vec::new();
    for (namespace, flags) in namespaces(&shapes, shape).into_iter().zip([&[][..], &TOKEN_MODE[..]]) {
        sides.push(Side::start(&url, &namespace, flags).await);
    }
    for _ in 0..KILLS {
        let victim = primary(&shapes, shape);
        shapes.kill(&victim);
        // Promotion takes the sentinels' or the cluster's failure detection and a vote.
        let taken_over = || async { primary(&shapes, shape) != victim };
        eventually_within(FAILOVER, &format!("a primary to take over from {victim}"), taken_over).await;
        for side in &sides {
            side.writer.more(5, FAILOVER).await;
        }
        shapes.revive(&victim);
        let port = port_of(&shapes, &victim);
        let replicates = || async {
            let info = cli(port, &["info", "replication"]);
            info.contains("role:slave") && info.contains("master_link_status:up")
        };
        eventually_within(FAILOVER, &format!("{victim} to replicate the new primary"), replicates).await;
    }
    for side in sides {
        side.check().await;
    }
}

/// The replicas, clients and load of one AUTH mode.
struct Side {
    replicas: Vec<TestApp>,
    clients: Vec<SioClient>,
    writer: Writer,
    /// Reads `GET /users` (with a token in token mode).
    reader: Api,
}

impl Side {
    async fn start(url: &str, namespace: &str, flags: &[&str]) -> Self {
        let mut replicas = Vec::new();
        for _ in 0..2 {
            replicas.push(TestApp::on_url_with_flags(url.to_owned(), namespace, flags).await);
        }
        let (auth, reader) = if flags.is_empty() {
            (None, replicas[0].api.clone())
        } else {
            let (status, user) = replicas[0].api.post("/users", json!({ "name": "listener" })).await;
            assert_eq!(status, StatusCode::CREATED, "{user}");
            let token = user["token"].as_str().expect("a token");
            (Some(json!({ "token": token })), replicas[0].api.bearer(token))
        };
        let mut clients = Vec::new();
        for (replica, mode) in replicas.iter().zip([Mode::Websocket, Mode::Upgrade]) {
            clients.push(SioClient::connect_with(&replica.base, mode, auth.clone()).await);
        }
        let apis = replicas.iter().map(|r| r.api.clone()).collect();
        let writer = Writer::start(apis, namespace, Duration::from_millis(20));
        writer.more(5, WAIT).await;
        Self { replicas, clients, writer, reader }
    }

    async fn check(mut self) {
        let acknowledged = self.writer.stop().await;
        let last = self.replicas[0].api.user("last").await;
        let mut heard = Vec::new();
        for client in &mut self.clients {
            let events = client.events_until(|_, arg| arg["data"]["id"] == last.as_str()).await;
            let mut times: HashMap<String, usize> = HashMap::new();
            for (name, arg) in events {
                assert_eq!(name, "user.registered", "{arg}");
                *times.entry(arg["data"]["id"].as_str().expect("an id").to_owned()).or_default() += 1;
            }
            heard.push(times);
        }
        // What is stored of what was acknowledged or announced.
        let mut stored = Vec::new();
        for id in acknowledged.iter().chain(heard.iter().flat_map(|times| times.keys())) {
            if !stored.contains(id) && self.reader.get(&format!("/users/{id}")).await.0 == StatusCode::OK {
                stored.push(id.clone());
            }
        }
        let lost = acknowledged.iter().filter(|id| !stored.contains(id)).count();
        // Replication is asynchronous: a write acknowledged just before a kill may be gone.
        // Most must survive, or "every stored user was heard" would hold of almost nothing.
        assert!(lost * 10 <= acknowledged.len(), "{lost} of {} acknowledged writes were lost", acknowledged.len());
        for times in heard {
            let twice = times.values().filter(|&&n| n > 1).count();
            let missed = stored.iter().filter(|id| !times.contains_key(id.as_str())).count();
            assert_eq!((missed, twice), (0, 0), "of {} stored users: missed, heard twice", stored.len());
        }
    }
}

/// The namespaces of the two AUTH modes; in a Cluster, two whose slots the same primary owns.
fn namespaces(shapes: &Shapes, shape: Shape) -> Vec<String> {
    let open = "killed-open".to_owned();
    let Shape::Cluster = shape else { return vec![open, "killed-token".to_owned()] };
    let port = shapes.ports("REDIS_CLUSTER_PORTS")[0];
    let owner = |ns: &str| slot_owner(port, cli(port, &["cluster", "keyslot", &format!("{{{ns}}}:")]).trim()).id;
    let token = (0..).map(|i| format!("killed-token-{i}")).find(|ns| owner(ns) == owner(&open)).expect("a namespace");
    vec![open, token]
}

/// The server of the set that is the primary now: of the sentinels' service, or the owner
/// of the namespaces' slot.
fn primary(shapes: &Shapes, shape: Shape) -> String {
    match shape {
        Shape::Cluster => {
            let ports = shapes.ports("REDIS_CLUSTER_PORTS");
            // Any node that answers knows the owner.
            let alive = ports.iter().copied().find(|&p| cli(p, &["ping"]).trim() == "PONG").expect("a live node");
            let slot = cli(alive, &["cluster", "keyslot", "{killed-open}:"]);
            let owner = slot_owner(alive, slot.trim()).port;
            format!("cluster-{}", ports.iter().position(|&p| p == owner).expect("a node of the set") + 1)
        }
        _ => {
            let sentinel = shapes.ports("REDIS_SENTINEL_PORTS")[0];
            let addr = cli(sentinel, &["sentinel", "get-master-addr-by-name", "switchboard"]);
            let port: u16 = addr.lines().nth(1).and_then(|p| p.trim().parse().ok()).expect("the primary's port");
            let primary = shapes.ports("REDIS_SENTINEL_PRIMARY_PORT")[0];
            if port == primary { "primary" } else { "replica" }.to_owned()
        }
    }
}

fn port_of(shapes: &Shapes, server: &str) -> u16 {
    match server.strip_prefix("cluster-") {
        Some(n) => shapes.ports("REDIS_CLUSTER_PORTS")[n.parse::<usize>().expect("a node number") - 1],
        None if server == "primary" => shapes.ports("REDIS_SENTINEL_PRIMARY_PORT")[0],
        None => shapes.ports("REDIS_SENTINEL_REPLICA_PORT")[0],
    }
}

/// Registers a user as a careful client would through a failover: it retries after
/// `store_unavailable` (nothing was changed), and after `outcome_unknown` it first reads
/// whether the user exists. Then checks the user's event arrives, once.
async fn write(replica: &TestApp, client: &mut SioClient, name: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = replica.api.post("/users", json!({ "name": name })).await;
        if status == StatusCode::CREATED {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        if body["code"] == "outcome_unknown" {
            let (status, users) = replica.api.get("/users").await;
            if status == StatusCode::OK && names(&users).iter().any(|n| n == name) {
                break;
            }
        } else {
            assert_eq!(body["code"], "store_unavailable", "{body}");
        }
        assert!(tokio::time::Instant::now() < deadline, "writes did not recover: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (event, arg) = client.next_event().await;
    assert_eq!((event.as_str(), &arg["data"]["name"]), ("user.registered", &json!(name)));
    name.to_owned()
}

fn names(users: &Value) -> Vec<String> {
    users.as_array().into_iter().flatten().map(|u| u["name"].as_str().unwrap_or_default().to_owned()).collect()
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One line of `CLUSTER NODES`.
struct Node {
    id: String,
    port: u16,
    /// The primary's id, for a replica.
    primary: Option<String>,
    /// Slot ranges, for a primary.
    ranges: Vec<(u32, u32)>,
    slots: u32,
}

fn cluster_nodes(port: u16) -> Vec<Node> {
    cli(port, &["cluster", "nodes"])
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = f.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
            let primary = (f.get(3)? != &"-").then(|| f[3].to_owned());
            let ranges: Vec<(u32, u32)> = f[8.min(f.len())..]
                .iter()
                .filter_map(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect();
            let slots = ranges.iter().map(|(a, b)| b - a + 1).sum();
            Some(Node { id: f[0].to_owned(), port, primary, ranges, slots })
        })
        .collect()
}

fn slot_owner(port: u16, slot: &str) -> Node {
    let slot: u32 = slot.parse().expect("a slot number");
    let owner = cluster_nodes(port).into_iter().find(|n| n.ranges.iter().any(|&(a, b)| (a..=b).contains(&slot)));
    owner.expect("every slot has an owner")
}
