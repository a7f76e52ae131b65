//! The built `shardmq` binary as a process of its own, for what the
//! in-process [`super::TestBroker`] cannot do: die by `kill -9`, exec again
//! on the same config file and ports, or run as a second node beside the
//! first.
//!
//! The ports are chosen free before the start (bind 127.0.0.1:0, read the
//! port, drop the socket) and written into the config, because a restart
//! must come back on the same address its clients reconnect to.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{http_get, WAIT};

/// A port free on 127.0.0.1 now. Another process may take it before it is
/// used; the odds are small and a failure then says "address in use".
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The `shardmq` binary running on a config file in a temp dir, killed on
/// drop. Its standard error (the log, at info) goes to a file, appended to
/// across restarts and printed when the test fails.
pub struct BrokerProcess {
    child: Option<Child>,
    /// Holds `shardmq.toml` and `broker.log`; kept when the test fails.
    dir: PathBuf,
    /// The MQTT listener.
    pub addr: SocketAddr,
    /// The `[http]` listener (`/health`, `/metrics`).
    pub http: SocketAddr,
    /// When the current process was exec'd: the start of "time to serve".
    started: Instant,
    /// How many times it was exec'd, to mark each life in the log.
    execs: usize,
}

impl BrokerProcess {
    /// Starts the binary on `sections`, TOML added to a base config that
    /// sets two shards (cores 0 and 1), the MQTT and HTTP listeners on free
    /// ports and the log level "info"; returns once the MQTT port accepts.
    pub fn start(name: &str, sections: &str) -> BrokerProcess {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("shardmq-broker-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the broker temp dir");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let config = format!(
            "[shards]\ncores = [0, 1]\n\n\
             [[listeners]]\nbind = \"{addr}\"\n\n\
             [http]\nbind = \"{http}\"\n\n\
             [log]\nlevel = \"info\"\n\n\
             {sections}\n"
        );
        std::fs::write(dir.join("shardmq.toml"), config).expect("write the config");
        let mut broker = BrokerProcess {
            child: None,
            dir,
            addr,
            http,
            started: Instant::now(),
            execs: 0,
        };
        broker.spawn();
        broker
    }

    /// Time since the current process was exec'd.
    pub fn since_exec(&self) -> Duration {
        self.started.elapsed()
    }

    /// `kill -9`: SIGKILL by PID, then reaps it. Nothing is flushed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`true`) or SIGCONT by PID: a node paused is, to the others,
    /// a node cut off (its lease lapses, its sockets stay open).
    pub fn pause(&self, stop: bool) {
        if let Some(child) = &self.child {
            let signal = if stop { "-STOP" } else { "-CONT" };
            let sent = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            assert!(sent.is_ok_and(|s| s.success()), "kill {signal}");
        }
    }

    /// SIGTERM by PID, and waits (bounded) for the process to exit.
    pub fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -TERM {}", child.id());
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("shardmq did not exit within {WAIT:?} of SIGTERM");
    }

    /// Execs the binary again on the same config file (same ports, same
    /// node id), killing the current process first if it still runs.
    ///
    /// A killed broker's listening sockets outlive its process for a moment
    /// (io_uring releases the files of its pending accepts after exit), and
    /// the broker refuses to start next to a listener: wait (bounded) until
    /// the port can be bound again, as the time to serve counts from exec.
    pub fn restart(&mut self) {
        self.kill();
        let killed = Instant::now();
        while TcpListener::bind(self.addr).is_err() {
            assert!(
                killed.elapsed() < WAIT,
                "{} still taken {WAIT:?} after the broker died",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        if killed.elapsed() > Duration::from_millis(20) {
            eprintln!("the port was free {:?} after the kill", killed.elapsed());
        }
        self.spawn();
    }

    /// Waits until `/health` answers 200: it says 503 while the broker starts.
    pub fn await_healthy(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = self.health();
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/health still {status} {body:?} after {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /health`: (status, body).
    pub fn health(&self) -> (u16, String) {
        http_get(self.http, "/health")
    }

    /// `GET /metrics`: the value of the sample `name` (no labels), if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(self.http, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// `GET /metrics`: the sum of every sample of `name`, whatever its
    /// labels (a per-shard counter summed over the shards).
    pub fn metric_sum(&self, name: &str) -> f64 {
        let (_, body) = http_get(self.http, "/metrics");
        body.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let value = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} ")?.1,
                    None => rest.strip_prefix(' ')?,
                };
                value.parse::<f64>().ok()
            })
            .sum()
    }

    /// The log so far, every life of the process.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    /// Execs the binary, its stderr appended to `broker.log`, and waits until
    /// the MQTT port accepts a TCP connection.
    fn spawn(&mut self) {
        self.execs += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .expect("open the broker log");
        use std::io::Write;
        let _ = writeln!(log, "===== test: exec {} =====", self.execs);
        self.started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
            .arg("--config")
            .arg(self.dir.join("shardmq.toml"))
            .env_remove("RUST_LOG")
            // A stall's backtrace costs seconds to symbolize on this machine.
            .env(shards::NO_STALL_DETECTION, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the shardmq binary");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "shardmq exited ({status}) before listening on {}",
                    self.addr
                );
            }
            assert!(
                Instant::now() < deadline,
                "shardmq not listening on {} within {WAIT:?}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- shardmq log, last 200 lines (whole: {}) ---\n{}",
                self.dir.join("broker.log").display(),
                lines[lines.len().saturating_sub(200)..].join("\n")
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
