//! A real `redis-server` for the tests that need one: never a mock, since the
//! store's fencing and expiry live in Redis scripts and TTLs that only a real
//! server runs.
//!
//! Each [`RedisServer`] is a process of its own on a free loopback port, with
//! no persistence (`--save "" --appendonly no`) and its files in a temp dir,
//! so tests run in parallel without sharing state. A missing binary fails the
//! test with a message saying how to get one: the tests never skip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::broker_process::free_port;

/// How long a starting `redis-server` may take to answer PING.
const START: Duration = Duration::from_secs(10);

/// A `redis-server` process, stopped (SIGKILL, by PID) on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// Its working directory (`--dir`) and log: removed on drop.
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` (`SHARDMQ_REDIS_SERVER`, else
    /// /usr/bin/redis-server) on a free port and waits until it answers PING.
    /// A port taken between choosing it and binding it is retried on another.
    pub fn start() -> RedisServer {
        redis_server(); // fails now, with how to get one, if it is missing
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("shardmq-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the redis temp dir");
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
        };
        for _ in 0..3 {
            server.port = free_port();
            server.spawn();
            if server.await_ping() {
                return server;
            }
            server.kill();
        }
        panic!("redis-server did not start on any of 3 free ports (its log follows)");
    }

    /// `redis://127.0.0.1:PORT/0`, for `[store] redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL, by PID, and reaps it: an outage, with
    /// no chance to flush or close connections politely.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is saved).
    /// Panics if it does not answer PING within [`START`].
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        assert!(
            self.await_ping(),
            "redis-server did not restart on port {}; its log:\n{}",
            self.port,
            log_of(&self.dir)
        );
    }

    /// Runs `redis-cli -p PORT args...` and returns its standard output
    /// (raw: one value per line, as redis-cli prints when not on a terminal).
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(redis_cli())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", redis_cli().display()));
        assert!(
            output.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned()
    }

    /// Sends `commands` through `redis-cli --pipe`: many writes at once, for
    /// filling the store as a past life of a node left it.
    pub fn pipe(&self, commands: &[Vec<Vec<u8>>]) {
        let mut resp = Vec::new();
        for args in commands {
            resp.extend(format!("*{}\r\n", args.len()).into_bytes());
            for a in args {
                resp.extend(format!("${}\r\n", a.len()).into_bytes());
                resp.extend(a);
                resp.extend(b"\r\n");
            }
        }
        let mut child = Command::new(redis_cli())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--pipe"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", redis_cli().display()));
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin.write_all(&resp).expect("write to redis-cli --pipe");
        }
        let output = child.wait_with_output().expect("redis-cli --pipe");
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && out.contains("errors: 0"),
            "redis-cli --pipe failed: {out}"
        );
    }

    /// The keys matching `pattern`, sorted, found with SCAN (never KEYS,
    /// which production code must not use either).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let out = self.cli(&["--scan", "--pattern", pattern]);
        let mut keys: Vec<String> = out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys.dedup(); // SCAN may return a key twice
        keys
    }

    fn spawn(&mut self) {
        let binary = redis_server();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .expect("open the redis log");
        let child = Command::new(&binary)
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        self.child = Some(child);
    }

    /// Waits until PING gets PONG: `false` if the process exits first or
    /// [`START`] passes.
    fn await_ping(&mut self) -> bool {
        let deadline = Instant::now() + START;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server log (port {}) ---\n{}",
                self.port,
                log_of(&self.dir)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PING in RESP over a fresh connection.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
        && s.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// The server binary: `SHARDMQ_REDIS_SERVER`, else /usr/bin/redis-server,
/// which must exist.
fn redis_server() -> PathBuf {
    let path = std::env::var_os("SHARDMQ_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"));
    assert!(
        path.exists(),
        "no redis-server at {}: install it (`apt-get install redis-server`; bash .ci/run \
         does) or set SHARDMQ_REDIS_SERVER. Tests that need Redis fail without it.",
        path.display()
    );
    path
}

/// `redis-cli`, installed beside the server.
fn redis_cli() -> PathBuf {
    let cli = redis_server().with_file_name("redis-cli");
    assert!(
        cli.exists(),
        "no redis-cli beside the server at {}: it comes with redis-server (redis-tools)",
        cli.display()
    );
    cli
}

/// The last lines of the server's log.
fn log_of(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
