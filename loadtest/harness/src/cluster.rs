//! The processes under test: a shared redis-server the harness owns, and clusters of either
//! implementation started through `scripts/cluster.sh` (so the benchmark runs exactly what
//! developers and k6 run), plus what /proc says about a server process.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Impl {
    Switchboard,
    Node,
}

impl Impl {
    pub fn name(self) -> &'static str {
        match self {
            Impl::Switchboard => "switchboard",
            Impl::Node => "node",
        }
    }
}

/// switchboard's `AUTH`: open (v1, every event to everyone) or token (bearer tokens, each
/// event to its audience). The Node baseline knows only open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    Open,
    Token,
}

/// The `AUTH_SECRET` of token-mode clusters (HS256 needs at least 32 bytes).
pub const AUTH_SECRET: &str = "switchboard-bench-secret-of-at-least-32-bytes";

/// How to start clusters; shared by every scenario.
#[derive(Clone, Debug)]
pub struct Launcher {
    pub script: PathBuf,
    pub dir: PathBuf,
    pub bin: Option<PathBuf>,
    pub baseline: Option<PathBuf>,
    pub redis_url: String,
    pub server_cpus: Option<String>,
    pub base_port: u16,
    pub lb_port: u16,
}

/// A running cluster; stopped (by `cluster.sh down`) when dropped, even on an error path.
pub struct Cluster {
    pub replicas: Vec<Replica>,
    pub lb_url: Option<String>,
    script: PathBuf,
    dir: PathBuf,
}

/// One replica: where it listens and which process it is.
#[derive(Clone, Debug)]
pub struct Replica {
    pub url: String,
    pub port: u16,
    pub pid: u32,
}

impl Launcher {
    /// Starts `replicas` replicas of `imp` (with nginx in front when `lb` is set) and waits
    /// until `cluster.sh` reports every one ready.
    pub fn up(&self, imp: Impl, replicas: usize, lb: bool) -> Result<Cluster, String> {
        self.up_with(imp, Auth::Open, replicas, lb)
    }

    /// [`up`](Self::up) in the given auth mode: `AUTH` and `AUTH_SECRET` reach the replicas
    /// through cluster.sh's environment.
    pub fn up_with(&self, imp: Impl, auth: Auth, replicas: usize, lb: bool) -> Result<Cluster, String> {
        self.up_env(imp, auth, replicas, lb, &[])
    }

    /// [`up_with`](Self::up_with), with `env` added to cluster.sh's environment, which its
    /// replicas inherit (e.g. L6's `CALL_RING_TIMEOUT`). `CALL_RING_TIMEOUT` is removed unless
    /// given, so that a value in the harness's own environment does not reach other scenarios.
    pub fn up_env(
        &self,
        imp: Impl,
        auth: Auth,
        replicas: usize,
        lb: bool,
        env: &[(&str, &str)],
    ) -> Result<Cluster, String> {
        let dir = match auth {
            Auth::Open => self.dir.join(format!("cluster-{}", imp.name())),
            Auth::Token => self.dir.join(format!("cluster-{}-token", imp.name())),
        };
        let mut cmd = Command::new(&self.script);
        match auth {
            Auth::Open => cmd.env_remove("AUTH").env_remove("AUTH_SECRET"),
            Auth::Token => cmd.env("AUTH", "token").env("AUTH_SECRET", AUTH_SECRET),
        };
        cmd.env_remove("CALL_RING_TIMEOUT").envs(env.iter().copied());
        cmd.arg("up")
            .args(["--impl", imp.name(), "--replicas", &replicas.to_string()])
            .arg("--dir")
            .arg(&dir)
            .args(["--redis-url", &self.redis_url])
            .args(["--namespace", &format!("bench-{}", imp.name())])
            .args(["--base-port", &self.base_port.to_string()])
            .args(["--lb", "sticky"])
            .args(["--lb-port", &if lb { self.lb_port } else { 0 }.to_string()]);
        if let Some(cpus) = &self.server_cpus {
            cmd.args(["--cpus", cpus]);
        }
        if let (Impl::Switchboard, Some(bin)) = (imp, &self.bin) {
            cmd.arg("--bin").arg(bin);
        }
        if let (Impl::Node, Some(baseline)) = (imp, &self.baseline) {
            cmd.arg("--baseline").arg(baseline);
        }
        let out =
            cmd.stderr(Stdio::inherit()).output().map_err(|e| format!("running {}: {e}", self.script.display()))?;
        let mut cluster = Cluster { replicas: Vec::new(), lb_url: None, script: self.script.clone(), dir: dir.clone() };
        if !out.status.success() {
            return Err(format!("cluster.sh up --impl {} failed", imp.name()));
        }
        let env = read_env(&dir.join("env"))?;
        for i in 1..=replicas {
            let url = env_var(&env, &format!("REPLICA_{i}_URL"))?;
            let port =
                url.rsplit(':').next().and_then(|p| p.parse().ok()).ok_or_else(|| format!("bad replica URL {url}"))?;
            let pid = env_var(&env, &format!("REPLICA_{i}_PID"))?.parse().map_err(|e| format!("bad pid: {e}"))?;
            cluster.replicas.push(Replica { url, port, pid });
        }
        cluster.lb_url = env.get("LB_URL").filter(|u| !u.is_empty()).cloned();
        Ok(cluster)
    }
}

impl Cluster {
    /// Sends `signal` (TERM or KILL) to replica `index` (0-based) through `cluster.sh`.
    pub fn kill_replica(&self, index: usize, signal: &str) -> Result<(), String> {
        let status = Command::new(&self.script)
            .arg("kill-replica")
            .arg((index + 1).to_string())
            .arg("--dir")
            .arg(&self.dir)
            .args(["--signal", signal])
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cluster.sh kill-replica: {e}"))?;
        status.success().then_some(()).ok_or_else(|| "cluster.sh kill-replica failed".into())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.script).arg("down").arg("--dir").arg(&self.dir).stderr(Stdio::null()).status();
    }
}

fn read_env(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect())
}

fn env_var(env: &HashMap<String, String>, key: &str) -> Result<String, String> {
    env.get(key).cloned().ok_or_else(|| format!("cluster env has no {key}"))
}

/// The redis-server every cluster of one benchmark run shares; killed when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    /// Starts redis-server on `port` (pinned to `cpus` when given, away from the servers).
    pub fn start(port: u16, cpus: Option<&str>, dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut cmd = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus, "redis-server"]);
                c
            }
            None => Command::new("redis-server"),
        };
        let child = cmd
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--maxclients", "10000"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting redis-server: {e}"))?;
        let redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.command("PING").is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not answer PING".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Empties Redis between implementations, so neither sees the other's data.
    pub fn flush_all(&self) -> Result<(), String> {
        self.command("FLUSHALL")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One inline command that answers `+OK`/`+PONG`: no Redis client crate needed.
    fn command(&self, cmd: &str) -> Result<(), String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        match buf.get(..n) {
            Some(reply) if reply.starts_with(b"+") => Ok(()),
            reply => Err(format!("redis {cmd}: {reply:?}")),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) a process has used so far, all threads included.
pub fn cpu_time(pid: u32) -> Result<Duration, String> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64, String> {
        fields.get(i).and_then(|f| f.parse().ok()).ok_or_else(|| "malformed stat".to_string())
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / clock_ticks() as f64))
}

/// Summed CPU time of several processes.
pub fn cpu_time_all(pids: &[u32]) -> Result<Duration, String> {
    pids.iter().map(|&p| cpu_time(p)).sum()
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Resident memory of a process (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS for {pid}"))
}

/// Established TCP connections whose local port is `port` (from /proc/net/tcp{,6}): which
/// replica behind the load balancer holds the clients.
pub fn established_on_port(port: u16) -> usize {
    let hex = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|text| {
            text.lines()
                .skip(1)
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[1].ends_with(&hex) && f[3] == "01"
                })
                .count()
        })
        .sum()
}
