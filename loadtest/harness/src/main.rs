//! switchboard-bench: runs the L1–L5 scenarios (and L4b) against switchboard and the Node.js baseline
//! on one Redis, in one run, and prints both with their ratios (and writes them as JSON), and L6
//! (the call lifecycle: accept, decline, cancel, missed) against switchboard alone.
//! It drives what k6 cannot do well: thousands of idle websockets, cross-replica fan-out
//! delay, memory per connection and reconnection after a replica dies.

mod cluster;
mod eio;
/// The tests' TCP proxy: L7 cuts one replica off from Redis with it.
#[path = "../../../tests/integration/support/proxy.rs"]
mod proxy;
mod report;
mod scenarios;

use clap::Parser;
use cluster::{Auth, Impl, Launcher, Redis};
use report::{ImplResult, Machine, Report, SCENARIOS, ScenarioResult};
use scenarios::Sizes;
use std::path::PathBuf;
use std::process::ExitCode;

/// Benchmark switchboard against the Node.js baseline (run from the repository root).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Every scenario with tiny numbers, one run, in seconds: checks that each scenario runs
    /// and produces numbers, never how fast.
    #[arg(long)]
    smoke: bool,
    /// Implementations to compare.
    #[arg(long, value_delimiter = ',', default_value = "switchboard,node")]
    impls: Vec<Impl>,
    /// switchboard's auth modes to run (`AUTH`): `token` runs L1–L3 again with bearer tokens
    /// (L3 as L3t: each event to its 2 users among many sockets); the baseline runs open only.
    #[arg(long, value_delimiter = ',', default_value = "open,token")]
    auth: Vec<Auth>,
    /// Scenarios to run (L6 and L7 against switchboard only: the baseline has no call
    /// lifecycle and no resuming; L7 in token mode only).
    #[arg(long, value_delimiter = ',', default_value = "L1,L2,L3,L4,L4b,L5,L6,L7")]
    only: Vec<String>,
    /// Runs per scenario (the table shows medians).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Runs of L5 (each restarts its cluster and connects every client again).
    #[arg(long, default_value_t = 1)]
    l5_runs: usize,
    /// switchboard binary (cluster.sh picks target/release, else target/debug, when unset).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Node baseline sources (cluster.sh's default when unset).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The cluster script.
    #[arg(long, default_value = "scripts/cluster.sh")]
    cluster_script: PathBuf,
    /// Working directory for clusters and Redis.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// CPUs the servers are pinned to (taskset list); empty = not pinned.
    #[arg(long, default_value = "0")]
    server_cpus: String,
    /// CPUs redis-server is pinned to (with the harness, away from the servers).
    #[arg(long, default_value = "1")]
    redis_cpus: String,
    #[arg(long, default_value_t = 6395)]
    redis_port: u16,
    #[arg(long, default_value_t = 3311)]
    base_port: u16,
    #[arg(long, default_value_t = 3310)]
    lb_port: u16,
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    #[arg(long, default_value_t = 64)]
    l1_concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    l1_secs: f64,
    /// Clients on replica B in L2 (issue 12's latency target is set at 100).
    #[arg(long, default_value_t = 100)]
    l2_clients: usize,
    /// Calls per second in L2.
    #[arg(long, default_value_t = 100)]
    l2_rate: u32,
    #[arg(long, default_value_t = 10.0)]
    l2_secs: f64,
    #[arg(long, default_value_t = 250)]
    l3_clients_per_replica: usize,
    #[arg(long, default_value_t = 16)]
    l3_publishers: usize,
    #[arg(long, default_value_t = 10.0)]
    l3_secs: f64,
    /// L3 in token mode (L3t): clients per replica, each its own user.
    #[arg(long, default_value_t = 1000)]
    l3t_clients_per_replica: usize,
    #[arg(long, default_value_t = 10_000)]
    l4_connections: usize,
    /// Idle polling sessions in L4b.
    #[arg(long, default_value_t = 2_000)]
    l4b_sessions: usize,
    #[arg(long, default_value_t = 10_000)]
    l5_clients: usize,
    /// L6: closed-loop workers, each with its own caller and callee, running call journeys.
    #[arg(long, default_value_t = 64)]
    l6_concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    l6_secs: f64,
    /// L6: calls left ringing afterwards, each of which must end as `missed`.
    #[arg(long, default_value_t = 100)]
    l6_missed: usize,
    /// L7: token-mode connections on the replica whose subscription to the events is cut.
    #[arg(long, default_value_t = 10_000)]
    l7_clients: usize,
}

impl Args {
    fn sizes(&self) -> Sizes {
        if self.smoke {
            return Sizes {
                warmup_secs: 0.3,
                l1_concurrency: 4,
                l1_secs: 1.0,
                l2_clients: 20,
                l2_rate: 50,
                l2_secs: 1.0,
                l3_clients_per_replica: 10,
                l3_publishers: 2,
                l3_secs: 1.0,
                l3t_clients_per_replica: 20,
                l4_connections: 50,
                l4b_sessions: 20,
                l5_clients: 50,
                l5_observe_secs: 15.0,
                l6_concurrency: 3,
                l6_secs: 1.0,
                l6_missed: 5,
                l7_clients: 40,
            };
        }
        Sizes {
            warmup_secs: self.warmup_secs,
            l1_concurrency: self.l1_concurrency,
            l1_secs: self.l1_secs,
            l2_clients: self.l2_clients,
            l2_rate: self.l2_rate,
            l2_secs: self.l2_secs,
            l3_clients_per_replica: self.l3_clients_per_replica,
            l3_publishers: self.l3_publishers,
            l3_secs: self.l3_secs,
            l3t_clients_per_replica: self.l3t_clients_per_replica,
            l4_connections: self.l4_connections,
            l4b_sessions: self.l4b_sessions,
            l5_clients: self.l5_clients,
            l5_observe_secs: 20.0,
            l6_concurrency: self.l6_concurrency,
            l6_secs: self.l6_secs,
            l6_missed: self.l6_missed,
            l7_clients: self.l7_clients,
        }
    }

    fn wants(&self, id: &str) -> bool {
        self.only.iter().any(|s| s.eq_ignore_ascii_case(id))
    }
}

/// Runs L1–L3 and L7 against switchboard with `AUTH=token`; results land in `results`
/// (indexed like `SCENARIOS`; the other scenarios do not depend on the auth mode and stay
/// empty).
async fn bench_token(args: &Args, sizes: &Sizes, launcher: &Launcher, redis: &Redis, results: &mut [ImplResult]) {
    let runs = if args.smoke { 1 } else { args.runs.max(1) };
    let [l1, l2, l3, .., l7] = results else { unreachable!("one result per scenario") };
    eprintln!("bench: switchboard, AUTH=token ...");
    let imp = Impl::Switchboard;
    if args.wants("L7") {
        // The replica whose connection to Redis is cut, through a proxy, and one beside it.
        let proxy = proxy::Proxy::start(redis.port).await;
        let through_proxy = Launcher {
            redis_url: proxy.url(),
            dir: launcher.dir.join("l7"),
            base_port: launcher.base_port + 5,
            ..launcher.clone()
        };
        let cut_off = through_proxy.up_with(imp, Auth::Token, 1, false);
        match (cut_off, launcher.up_with(imp, Auth::Token, 1, false)) {
            (Ok(a), Ok(b)) => {
                for _ in 0..runs {
                    l7.record(scenarios::l7(&a.replicas[0], &b.replicas[0], &proxy, redis, sizes).await);
                }
            }
            (Err(e), _) | (_, Err(e)) => l7.record(Err(e)),
        }
    }
    if args.wants("L1") && !args.smoke {
        match launcher.up_with(imp, Auth::Token, 1, false) {
            Ok(c) => {
                for _ in 0..runs {
                    l1.record(scenarios::l1(&c.replicas[0], sizes, Auth::Token).await);
                }
            }
            Err(e) => l1.record(Err(e)),
        }
    }
    if args.wants("L1") && args.smoke || args.wants("L2") || args.wants("L3") {
        match launcher.up_with(imp, Auth::Token, 2, false) {
            Ok(c) => {
                for _ in 0..runs {
                    if args.smoke {
                        l1.record(scenarios::l1(&c.replicas[0], sizes, Auth::Token).await);
                    }
                    if args.wants("L2") {
                        l2.record(scenarios::l2(&c.replicas[0], &c.replicas[1], sizes, Auth::Token).await);
                    }
                    if args.wants("L3") {
                        l3.record(scenarios::l3t(&c.replicas, sizes).await);
                    }
                }
            }
            Err(e) => {
                if args.smoke {
                    l1.record(Err(e.clone()));
                }
                l2.record(Err(e.clone()));
                l3.record(Err(e));
            }
        }
    }
}

/// Runs every wanted scenario against one implementation; results land in `results`
/// (indexed like `SCENARIOS`). Clusters are stopped as each phase ends.
async fn bench_impl(imp: Impl, args: &Args, sizes: &Sizes, launcher: &Launcher, results: &mut [ImplResult]) {
    let runs = args.runs.max(1);
    let [l1, l2, l3, l4, l4b, l5, l6, _] = results else { unreachable!("one result per scenario") };
    eprintln!("bench: {} ...", imp.name());
    if imp == Impl::Node && args.wants("L6") {
        eprintln!("bench: node: L6 n/a (the Node baseline has no call lifecycle)");
    }
    // L6's replica runs with a short ring timeout, which would also end other scenarios'
    // ringing calls: its own cluster, before any scenario that leaves calls ringing (L2).
    let l6_runs = if args.smoke { 1 } else { runs };
    if imp == Impl::Switchboard && args.wants("L6") {
        let ring = scenarios::L6_RING_TIMEOUT_S.to_string();
        match launcher.up_env(imp, Auth::Open, 1, false, &[("CALL_RING_TIMEOUT", &ring)]) {
            Ok(c) => {
                for _ in 0..l6_runs {
                    l6.record(scenarios::l6(&c.replicas[0], sizes).await);
                }
            }
            Err(e) => l6.record(Err(e)),
        }
    }
    if args.smoke {
        // One cluster for everything: smoke runs check that scenarios work, not how well,
        // and each start-up costs seconds. L5 kills a replica, so it goes last.
        match launcher.up(imp, 2, true) {
            Ok(c) => {
                l4.record(scenarios::l4(&c.replicas[0], sizes).await);
                l4b.record(scenarios::l4b(&c.replicas[0], sizes).await);
                l1.record(scenarios::l1(&c.replicas[0], sizes, Auth::Open).await);
                l2.record(scenarios::l2(&c.replicas[0], &c.replicas[1], sizes, Auth::Open).await);
                l3.record(scenarios::l3(&c.replicas, sizes).await);
                l5.record(scenarios::l5(&c, sizes).await);
            }
            Err(e) => [l1, l2, l3, l4, l4b, l5].into_iter().for_each(|r| r.record(Err(e.clone()))),
        }
        return;
    }
    // L4 and L4b first and on fresh replicas: memory freed by earlier load would otherwise
    // be reused by the new connections and hide their cost.
    if args.wants("L4") {
        for _ in 0..runs {
            match launcher.up(imp, 1, false) {
                Ok(c) => l4.record(scenarios::l4(&c.replicas[0], sizes).await),
                Err(e) => l4.record(Err(e)),
            }
        }
    }
    if args.wants("L4b") {
        for _ in 0..runs {
            match launcher.up(imp, 1, false) {
                Ok(c) => l4b.record(scenarios::l4b(&c.replicas[0], sizes).await),
                Err(e) => l4b.record(Err(e)),
            }
        }
    }
    if args.wants("L1") {
        match launcher.up(imp, 1, false) {
            Ok(c) => {
                for _ in 0..runs {
                    l1.record(scenarios::l1(&c.replicas[0], sizes, Auth::Open).await);
                }
            }
            Err(e) => l1.record(Err(e)),
        }
    }
    if args.wants("L2") || args.wants("L3") {
        match launcher.up(imp, 2, false) {
            Ok(c) => {
                for _ in 0..runs {
                    if args.wants("L2") {
                        l2.record(scenarios::l2(&c.replicas[0], &c.replicas[1], sizes, Auth::Open).await);
                    }
                    if args.wants("L3") {
                        l3.record(scenarios::l3(&c.replicas, sizes).await);
                    }
                }
            }
            Err(e) => {
                l2.record(Err(e.clone()));
                l3.record(Err(e));
            }
        }
    }
    if args.wants("L5") {
        for _ in 0..args.l5_runs.max(1) {
            match launcher.up(imp, 2, true) {
                Ok(c) => l5.record(scenarios::l5(&c, sizes).await),
                Err(e) => l5.record(Err(e)),
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let sizes = args.sizes();
    let pin = |cpus: &str| Some(cpus.to_string()).filter(|c| !c.is_empty());
    let redis = match Redis::start(args.redis_port, pin(&args.redis_cpus).as_deref(), &args.work_dir.join("redis")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let launcher = Launcher {
        script: args.cluster_script.clone(),
        dir: args.work_dir.clone(),
        bin: args.bin.clone(),
        baseline: args.baseline.clone(),
        redis_url: redis.url(),
        server_cpus: pin(&args.server_cpus),
        base_port: args.base_port,
        lb_port: args.lb_port,
    };

    // per_impl[i][s]: implementation (and auth mode) i, scenario s. The baseline and
    // switchboard open run every scenario, switchboard token L1–L3.
    let mut per_impl: Vec<Vec<ImplResult>> = Vec::new();
    for &imp in &args.impls {
        let modes = match imp {
            Impl::Switchboard => args.auth.clone(),
            Impl::Node => vec![Auth::Open],
        };
        for auth in modes {
            if let Err(e) = redis.flush_all() {
                eprintln!("bench: {e}");
                return ExitCode::FAILURE;
            }
            let mut results: Vec<ImplResult> = SCENARIOS.iter().map(|_| ImplResult::new(imp, auth)).collect();
            match auth {
                Auth::Open => bench_impl(imp, &args, &sizes, &launcher, &mut results).await,
                Auth::Token => bench_token(&args, &sizes, &launcher, &redis, &mut results).await,
            }
            per_impl.push(results);
        }
    }
    drop(redis);

    let mut scenarios = Vec::new();
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        if !args.wants(scenario.id) {
            continue;
        }
        let results = per_impl
            .iter_mut()
            .map(|r| std::mem::replace(&mut r[s], ImplResult::new(Impl::Node, Auth::Open)))
            .filter(|r| !r.runs.is_empty() || r.error.is_some()) // token mode skips L4, L4b, L5
            .collect();
        scenarios.push(ScenarioResult::new(*scenario, results, !args.smoke));
    }
    let report = Report {
        smoke: args.smoke,
        machine: Machine::read(),
        runs_per_scenario: if args.smoke { 1 } else { args.runs },
        server_cpus: pin(&args.server_cpus),
        harness_note: "servers pinned to server_cpus, harness and redis elsewhere; \
                       per-core figures divide by the servers' utime+stime",
        sizes,
        scenarios,
    };
    println!("{}", report.table());
    let json = match serde_json::to_string_pretty(&report) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(dir) = args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&args.out, json) {
        eprintln!("bench: writing {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("bench: results in {}", args.out.display());
    if report.complete(args.smoke) {
        ExitCode::SUCCESS
    } else {
        eprintln!("bench: a scenario failed, produced no numbers or (smoke) had failed requests");
        ExitCode::FAILURE
    }
}
