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

/// Runs `redis-cli -p port args…`; its output, trimmed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (Debian's redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// A key as [`keyspace`] found it: its name, type, milliseconds to live (-1: none) and
/// content (members, fields and values, list items, the string, stream entries' fields and
/// values).
pub struct Key {
    pub name: String,
    pub kind: String,
    pub ttl_ms: i64,
    pub content: Vec<String>,
}

const DUMP: &str = r"
local out, cursor = {}, '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = r[1]
  for _, key in ipairs(r[2]) do
    local t = redis.call('TYPE', key).ok
    out[#out + 1] = 'K ' .. t .. ' ' .. redis.call('PTTL', key) .. ' ' .. key
    local items = {}
    if t == 'zset' then items = redis.call('ZRANGE', key, 0, -1)
    elseif t == 'set' then items = redis.call('SMEMBERS', key)
    elseif t == 'list' then items = redis.call('LRANGE', key, 0, -1)
    elseif t == 'hash' then items = redis.call('HGETALL', key)
    elseif t == 'string' then items = {redis.call('GET', key)}
    elseif t == 'stream' then
      for _, entry in ipairs(redis.call('XRANGE', key, '-', '+')) do
        for _, v in ipairs(entry[2]) do items[#items + 1] = v end
      end
    end
    for _, item in ipairs(items) do out[#out + 1] = 'V ' .. item end
  end
until cursor == '0'
return table.concat(out, '\n')
";

/// Every key matching `pattern`, read in one script.
pub fn keyspace(port: u16, pattern: &str) -> Vec<Key> {
    let dump = cli(port, &["EVAL", DUMP, "0", pattern]);
    let mut keys: Vec<Key> = Vec::new();
    for line in dump.lines() {
        if let Some(head) = line.strip_prefix("K ") {
            let mut parts = head.splitn(3, ' ');
            let (kind, ttl, name) = (parts.next(), parts.next(), parts.next());
            keys.push(Key {
                kind: kind.unwrap_or_default().to_owned(),
                ttl_ms: ttl.and_then(|t| t.parse().ok()).unwrap_or(-1),
                name: name.unwrap_or_default().to_owned(),
                content: Vec::new(),
            });
        } else if let Some(value) = line.strip_prefix("V ") {
            keys.last_mut().expect("a key before its content").content.push(value.to_owned());
        } else if let Some(key) = keys.last_mut() {
            // A value spanning lines.
            key.content.push(line.to_owned());
        }
    }
    keys
}
