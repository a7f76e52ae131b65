//! Debian's `mosquitto_pub` and `mosquitto_sub` exchange QoS 0, 1 and 2
//! messages and retained messages through the built `shardmq` binary, in
//! MQTT 3.1.1 and MQTT 5.
//!
//! The mosquitto clients are required (CI installs mosquitto-clients): if they
//! are missing the test fails, it never skips.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::lines_of;

const WAIT: Duration = Duration::from_secs(20);

/// Panics with the fix when a mosquitto client is not installed.
fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{tool}` is not installed: this test needs Debian's mosquitto clients \
         (`apt-get install mosquitto-clients`)"
    );
}

/// The built broker, started with `--bind 127.0.0.1:0` and killed on drop.
struct Broker {
    child: Child,
    addr: SocketAddr,
    config: std::path::PathBuf,
}

impl Broker {
    fn start() -> Broker {
        // The HTTP listener on a free port too, so tests can run side by side.
        let config = std::env::temp_dir().join(format!(
            "shardmq-mosquitto-{}-{:?}.toml",
            std::process::id(),
            thread::current().id()
        ));
        std::fs::write(
            &config,
            "[shards]\ncores = [0, 1]\n[http]\nbind = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
            .arg("--config")
            .arg(&config)
            .args(["--bind", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shardmq");
        let lines = lines_of(child.stderr.take().unwrap());
        let addr = loop {
            match lines.recv_timeout(WAIT) {
                Ok(line) => {
                    if let Some((_, addr)) = line.split_once("MQTT listener addr=") {
                        break addr.trim().parse().expect("listener address");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("shardmq did not log its MQTT listener");
                }
            }
        };
        Broker {
            child,
            addr,
            config,
        }
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// A running `mosquitto_sub`, killed on drop.
struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sub {
    /// Subscribes and waits for the SUBACK. Messages print as
    /// `topic|qos|retained|payload`.
    fn start(broker: &Broker, version: &str, topic: &str, qos: u8, count: usize) -> Sub {
        require("mosquitto_sub");
        // Line-buffered, so the SUBACK line is seen as soon as it is printed.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &broker.port(), "-V", version])
            .args([
                "-t",
                topic,
                "-q",
                &qos.to_string(),
                "-C",
                &count.to_string(),
            ])
            .args(["-W", "30", "-d", "-F", "MSG %t|%q|%r|%p"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto_sub");
        let lines = lines_of(child.stdout.take().unwrap());
        // Killed on drop from here on, even if the SUBACK never comes.
        let sub = Sub { child, lines };
        loop {
            let line = sub
                .lines
                .recv_timeout(WAIT)
                .expect("mosquitto_sub got no SUBACK");
            if line.contains("received SUBACK") {
                return sub;
            }
        }
    }

    /// The next `count` messages as `topic|qos|retained|payload`.
    fn messages(&mut self, count: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < count {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) => {
                    if let Some(m) = line.strip_prefix("MSG ") {
                        got.push(m.to_string());
                    }
                }
                Err(_) => panic!("mosquitto_sub: got {got:?}, expected {count} messages"),
            }
        }
        got
    }

    /// Waits for the subscriber to exit (after `-C` messages) successfully.
    fn finish(mut self) {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "mosquitto_sub exit status {status}");
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto_sub did not exit after its messages");
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn publish(broker: &Broker, version: &str, args: &[&str]) {
    require("mosquitto_pub");
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port(), "-V", version])
        .args(args)
        .output()
        .expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn exchange(version: &str) {
    let broker = Broker::start();
    // Subscribed at QoS 2: each message arrives at the QoS it was sent with.
    let mut sub = Sub::start(&broker, version, "mq/#", 2, 3);
    for qos in ["0", "1", "2"] {
        let topic = format!("mq/qos{qos}");
        let payload = format!("hello at {qos}");
        publish(&broker, version, &["-q", qos, "-t", &topic, "-m", &payload]);
    }
    let mut got = sub.messages(3);
    got.sort();
    assert_eq!(
        got,
        [
            "mq/qos0|0|0|hello at 0",
            "mq/qos1|1|0|hello at 1",
            "mq/qos2|2|0|hello at 2"
        ]
    );
    sub.finish();

    // Retained: set, delivered with the retained flag to a later subscriber.
    publish(
        &broker,
        version,
        &["-q", "1", "-r", "-t", "mq/kept", "-m", "remember me"],
    );
    let mut late = Sub::start(&broker, version, "mq/kept", 1, 1);
    assert_eq!(late.messages(1), ["mq/kept|1|1|remember me"]);
    late.finish();

    // Cleared with an empty retained message: the next subscriber gets the
    // next live message only.
    publish(&broker, version, &["-q", "1", "-r", "-n", "-t", "mq/kept"]);
    let mut after = Sub::start(&broker, version, "mq/kept", 1, 1);
    publish(
        &broker,
        version,
        &["-q", "1", "-t", "mq/kept", "-m", "live"],
    );
    assert_eq!(after.messages(1), ["mq/kept|1|0|live"]);
    after.finish();
}

#[test]
fn mosquitto_clients_mqtt_311() {
    exchange("mqttv311");
}

#[test]
fn mosquitto_clients_mqtt_5() {
    exchange("mqttv5");
}
