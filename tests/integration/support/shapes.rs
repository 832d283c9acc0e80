//! The Redis deployments operators run (Cluster, Sentinel, TLS), started for real by
//! `scripts/redis-shapes.sh`: once per test process for the contract suite (tests share
//! them under namespaces of their own), or privately for a test that breaks them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// A Redis deployment shape other than a standalone server.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Three primaries with a replica each (`redis-cluster://`).
    Cluster,
    /// A primary and a replica behind three sentinels (`redis-sentinel://`).
    Sentinel,
    /// A standalone server over TLS, its certificate signed by a local CA (`rediss://`).
    Tls,
}

impl Shape {
    /// The `REDIS_URL` (and CA file) of the shared deployment of this shape.
    pub fn url(self) -> (String, Option<String>) {
        static SHARED: OnceLock<Shapes> = OnceLock::new();
        SHARED.get_or_init(|| Shapes::up("shared")).url(self)
    }
}

/// One set of deployments; the private ones stop when dropped, the shared one when the
/// test process exits (the script's watchdog sees it go).
pub struct Shapes {
    dir: PathBuf,
    pub env: HashMap<String, String>,
    private: bool,
}

impl Shapes {
    /// A set of its own, for a test that fails nodes over.
    pub fn private() -> Self {
        let mut shapes = Self::up(&format!("private-{}", uuid::Uuid::new_v4()));
        shapes.private = true;
        shapes
    }

    fn up(name: &str) -> Self {
        let dir =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-shapes-{}-{name}", std::process::id()));
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis-shapes.sh"))
            .args(["up", "--dir", dir.to_str().unwrap_or_default()])
            .args(["--owner-pid", &std::process::id().to_string()])
            .output()
            .expect("scripts/redis-shapes.sh runs");
        assert!(out.status.success(), "redis-shapes.sh up failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let env = std::fs::read_to_string(dir.join("env")).expect("the shapes' env file");
        let env = env.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Self { dir, env, private: false }
    }

    pub fn url(&self, shape: Shape) -> (String, Option<String>) {
        match shape {
            Shape::Cluster => (self.env["REDIS_CLUSTER_URL"].clone(), None),
            Shape::Sentinel => (self.env["REDIS_SENTINEL_URL"].clone(), None),
            Shape::Tls => (self.env["REDIS_TLS_URL"].clone(), Some(self.env["REDIS_TLS_CA_FILE"].clone())),
        }
    }

    /// Freezes (`true`) or resumes one server of the set (`replica`, `cluster-1`, …): its
    /// connections stay open but it does nothing meanwhile.
    pub fn freeze(&self, server: &str, frozen: bool) {
        let pid = std::fs::read_to_string(self.dir.join(format!("pids/{server}.pid"))).expect("a recorded pid");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, pid.trim()]).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {server}");
    }

    /// SIGKILLs one server of the set (`primary`, `cluster-3`, …), as a crashed machine.
    pub fn kill(&self, server: &str) {
        self.script(&["kill", "--server", server]);
    }

    /// Starts a killed server again as it was started; its data is gone, so it rejoins as
    /// a replica.
    pub fn revive(&self, server: &str) {
        self.script(&["revive", "--server", server]);
    }

    fn script(&self, args: &[&str]) {
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis-shapes.sh"))
            .args(args)
            .args(["--dir", self.dir.to_str().unwrap_or_default()])
            .output()
            .expect("scripts/redis-shapes.sh runs");
        assert!(out.status.success(), "redis-shapes.sh {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Ports listed under `key` (space-separated).
    pub fn ports(&self, key: &str) -> Vec<u16> {
        self.env[key].split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }
}

impl Drop for Shapes {
    fn drop(&mut self) {
        if self.private {
            let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis-shapes.sh"))
                .args(["down", "--dir", self.dir.to_str().unwrap_or_default()])
                .status();
        }
    }
}
