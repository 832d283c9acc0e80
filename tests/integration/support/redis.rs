//! A throw-away `redis-server` on a free loopback port, stopped when dropped.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Where a durable server keeps its append-only file across restarts.
    dir: Option<std::path::PathBuf>,
}

impl RedisServer {
    /// A server that keeps nothing across restarts.
    pub fn start() -> Self {
        Self::start_in(None)
    }

    /// A server that writes every change to its append-only file before answering, so a
    /// restart, even after SIGKILL, comes back with every write it acknowledged.
    pub fn start_durable() -> Self {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a directory for the append-only file");
        Self::start_in(Some(dir))
    }

    fn start_in(dir: Option<std::path::PathBuf>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let mut server = Self { port, child: None, dir };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut args = vec!["--port".to_owned(), self.port.to_string(), "--bind".into(), "127.0.0.1".into()];
        args.extend(["--save", ""].map(String::from));
        match &self.dir {
            Some(dir) => args.extend(
                ["--appendonly", "yes", "--appendfsync", "always", "--dir", &dir.to_string_lossy()].map(String::from),
            ),
            None => args.extend(["--appendonly", "no"].map(String::from)),
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the README's test command installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Freezes (`true`) or resumes the server: connections stay open but nothing is
    /// answered meanwhile, as with a stalled primary.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &pid]).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Kills the server at once, as a crash or a network cut would look to the replicas.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
