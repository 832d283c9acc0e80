//! The local cluster of `scripts/cluster.sh` (Redis, replicas of the built binary, nginx in
//! front): clients through the load balancer hear events caused on any replica, a browser
//! on another origin keeps its session through cookie affinity, and a replica terminated
//! under load drains without losing a request.

use crate::support::{Api, Mode, SioClient, WAIT, eventually};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

struct LocalCluster {
    dir: PathBuf,
    env: HashMap<String, String>,
}

impl LocalCluster {
    /// Starts `replicas` replicas behind nginx on free loopback ports.
    fn up(replicas: u16, lb: &str, drain_period_s: u32) -> Self {
        Self::up_with(replicas, lb, drain_period_s, &[])
    }

    /// As `up`, with more `cluster.sh up` options.
    fn up_with(replicas: u16, lb: &str, drain_period_s: u32, options: &[&str]) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cluster-{}", uuid::Uuid::new_v4()));
        let ports = free_ports(replicas + 2);
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"))
            .arg("up")
            .args(["--replicas", &replicas.to_string(), "--lb", lb, "--drain-period", &drain_period_s.to_string()])
            .args(["--bin", env!("CARGO_BIN_EXE_switchboard"), "--dir", dir.to_str().unwrap_or_default()])
            .args(["--redis-port", &ports.to_string(), "--lb-port", &(ports + 1).to_string()])
            .args(["--base-port", &(ports + 2).to_string()])
            .args(options)
            .output()
            .expect("cluster.sh runs");
        let mut cluster = Self { dir: dir.clone(), env: HashMap::new() };
        assert!(out.status.success(), "cluster.sh up failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let env = std::fs::read_to_string(dir.join("env")).expect("cluster env");
        cluster.env = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        cluster
    }

    fn lb(&self) -> String {
        self.env["LB_URL"].clone()
    }

    fn replica(&self, i: usize) -> String {
        self.env["REPLICA_URLS"].split_whitespace().nth(i).expect("replica url").to_owned()
    }

    /// nginx's error log, for failure messages.
    fn lb_errors(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/nginx-error.log")).unwrap_or_default()
    }

    fn script(&self, args: &[&str]) {
        let dir = self.dir.to_str().unwrap_or_default();
        let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"))
            .args(args)
            .args(["--dir", dir])
            .status()
            .expect("cluster.sh runs");
        assert!(status.success(), "cluster.sh {args:?} failed");
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"))
            .args(["down", "--dir", self.dir.to_str().unwrap_or_default()])
            .status();
    }
}

/// `n` consecutive free loopback ports, below the kernel's ephemeral range (32768 and up)
/// so that no outgoing connection takes one between this check and the bind.
fn free_ports(n: u16) -> u16 {
    let seed = std::process::id() as u16 ^ uuid::Uuid::new_v4().as_u128() as u16;
    (0..1000u16)
        .map(|i| 20000 + (seed.wrapping_add(i.wrapping_mul(37)) % 12000))
        .find(|&base| (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()))
        .expect("free ports below the ephemeral range")
}

#[tokio::test]
async fn clients_behind_nginx_hear_events_caused_on_another_replica() {
    let cluster = LocalCluster::up(3, "sticky", 0);
    let mut polling = SioClient::connect(&cluster.lb(), Mode::Polling).await;
    let mut websocket = SioClient::connect(&cluster.lb(), Mode::Websocket).await;
    for replica in 0..3 {
        let name = format!("from-replica-{replica}");
        let id = Api::new(&cluster.replica(replica)).user(&name).await;
        for client in [&mut polling, &mut websocket] {
            let (event, arg) = client.next_event().await;
            assert_eq!((event.as_str(), &arg), ("user.registered", &json!({ "data": { "id": id, "name": name } })));
        }
    }
}

/// Frontends are served from their own origin and reach the replicas through an ingress whose
/// affinity is a cookie. The browser keeps and sends that cookie on cross-origin requests only
/// when the replicas allow the origin with credentials; without it the polling requests of
/// one session land on different replicas. The driver (tests/browser/cross_origin.mjs) runs
/// headless Chromium for a minute against three replicas.
#[test]
fn a_browser_on_another_origin_keeps_its_session_through_cookie_affinity() {
    const CHROMIUM: &str = "/usr/bin/chromium";
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} not found: install Debian's chromium (scripts/install-deps.sh installs it)"
    );
    // The replicas must know the page's origin before they start; holding its port keeps the
    // cluster from taking it.
    let origin_port = free_ports(1);
    let hold = TcpListener::bind(("127.0.0.1", origin_port)).expect("the page's port is free");
    let origin = format!("http://127.0.0.1:{origin_port}");
    let cluster = LocalCluster::up_with(3, "cookie", 0, &["--cors-origins", &origin]);
    drop(hold);
    let out = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/cross_origin.mjs"))
        .args([cluster.lb(), origin_port.to_string()])
        .args((0..3).map(|i| cluster.replica(i)))
        .output()
        .expect("node runs (scripts/install-deps.sh installs Node.js 20 or newer)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the browser did not keep one session:\n{stdout}{stderr}\nnginx errors:\n{}",
        cluster.lb_errors()
    );
    println!("{stdout}");
}

#[tokio::test]
async fn terminating_a_replica_under_load_loses_no_request_and_its_clients_reconnect() {
    let cluster = LocalCluster::up(3, "roundrobin", 1);
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(SioClient::connect(&cluster.lb(), Mode::Websocket).await);
    }
    // Steady load through the load balancer until told to stop; every answer is kept.
    let stop = Arc::new(AtomicBool::new(false));
    let load = (0..4).map(|worker| {
        // A connection per request: a keep-alive connection to an nginx worker that retires on
        // reload can break under a POST, which no client may retry blindly.
        let (api, stop) = (Api::unpooled(&cluster.lb()), stop.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                statuses.push(api.post("/users", json!({ "name": format!("load-{worker}-{i}") })).await.0);
            }
            statuses
        })
    });
    let load: Vec<_> = load.collect();
    let api = Api::new(&cluster.lb());
    eventually("load to flow", || async {
        api.get("/users?limit=1000").await.1.as_array().is_some_and(|u| u.len() > 40)
    })
    .await;

    // As Kubernetes does: the endpoint leaves the load balancer, then the pod gets SIGTERM.
    cluster.script(&["drain-replica", "1"]);
    let client = reqwest::Client::new();
    eventually("the terminated replica to stop listening", || async {
        client.get(format!("{}/healthz", cluster.replica(0))).send().await.is_err()
    })
    .await;
    let before = api.get("/users?limit=1000").await.1.as_array().map_or(0, Vec::len);
    eventually("load to flow on the other replicas", || async {
        api.get("/users?limit=1000").await.1.as_array().is_some_and(|u| u.len() > before + 40)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for worker in load {
        for status in worker.await.expect("load task") {
            assert_eq!(status, StatusCode::CREATED, "a request was lost during the drain:\n{}", cluster.lb_errors());
            answered += 1;
        }
    }
    assert!(answered > 80, "the load ran ({answered} requests)");

    // Every client hears events published after the drain: the drained replica's clients
    // reconnected (each in its own time, so markers keep coming until all have heard one).
    let markers = {
        let (api, stop) = (api.clone(), Arc::new(AtomicBool::new(false)));
        let task_stop = stop.clone();
        let task = tokio::spawn(async move {
            while !task_stop.load(Ordering::Relaxed) {
                api.user("after-the-drain").await;
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        });
        (task, stop)
    };
    let mut reconnected = 0;
    for client in &mut clients {
        loop {
            let line = client.next_line_within(WAIT).await;
            if line["type"] == "disconnect" {
                reconnected += 1;
            }
            if line["type"] == "event" && line["args"][0]["data"]["name"] == "after-the-drain" {
                break;
            }
        }
    }
    markers.1.store(true, Ordering::Relaxed);
    markers.0.await.expect("marker task");
    assert!(reconnected > 0, "the terminated replica held some of the clients");
}
