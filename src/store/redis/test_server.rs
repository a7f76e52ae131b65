//! A real `redis-server` for tests, on a free loopback port, stopped by its
//! PID when dropped.
//!
//! The binary is `$SHARDMQ_REDIS_SERVER`, else `redis-server` on the PATH. A
//! test that needs it fails without it, never skips (`.ci/run` installs it).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::RedisUrl;

/// How long a started server may take to answer its first `PING`.
const START: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    /// The extra arguments it was started with, to restart it the same way.
    args: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts it with extra `redis-server` arguments (`--requirepass`, ...).
    pub fn start_with(args: &[&str]) -> RedisServer {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        // Another process may take the free port between our look and
        // Redis's bind: try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                child: None,
                port,
                args: args.clone(),
            };
            if server.launch() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// `redis://127.0.0.1:port` with no credentials, database 0.
    pub fn url(&self) -> RedisUrl {
        self.url_with("", 0)
    }

    /// `redis://{credentials}127.0.0.1:port/db`, e.g. `url_with("alice:pw@", 2)`.
    pub fn url_with(&self, credentials: &str, db: u32) -> RedisUrl {
        let url = format!("redis://{credentials}127.0.0.1:{}/{db}", self.port);
        RedisUrl::parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    /// SIGKILL by PID, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.launch(),
            "redis-server did not restart on {}",
            self.port
        );
    }

    /// Spawns the server and waits for its `PING`; `false` if it exited
    /// (the port was taken).
    fn launch(&mut self) -> bool {
        let binary =
            std::env::var("SHARDMQ_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let dir = std::env::temp_dir();
        let child = Command::new(&binary)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(&dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => panic!(
                "cannot run {binary}: {e}. Install redis-server (apt-get install redis-server) \
                 or set SHARDMQ_REDIS_SERVER to its path"
            ),
        };
        self.child = Some(child);
        let deadline = Instant::now() + START;
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            if answers_ping(self.port) {
                return true;
            }
            sleep(Duration::from_millis(10));
        }
        self.kill();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nothing listens on (as far as anyone can tell).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"));
    match listener.local_addr() {
        Ok(addr) => addr.port(),
        Err(e) => panic!("no free port on 127.0.0.1: {e}"),
    }
}

/// Whether Redis answers an inline `PING` (any reply: a server started
/// with `--requirepass` answers `-NOAUTH`, and is up all the same).
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 64];
    stream.write_all(b"PING\r\n").is_ok() && matches!(stream.read(&mut reply), Ok(n) if n > 0)
}
