//! End to end: each scenario for about a second against the real broker, started
//! in-process on 127.0.0.1 port 0 (in a child process for idle memory). No speed
//! assertions: only that messages flow and none are lost, and a bound on idle memory.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use shardmq::config::Config;

/// The broker on a free port of 127.0.0.1.
fn start_broker() -> Broker {
    let mut config = Config::embedded_default().expect("default config");
    config.set_bind("127.0.0.1:0".parse().unwrap());
    config.http.bind = "127.0.0.1:0".parse().unwrap();
    let server =
        shardmq::start(&config, shards::ShutdownHandle::new(), false).expect("broker starts");
    Broker(Some(server))
}

/// An in-process broker that is stopped when dropped. A `Server` dropped without its
/// shutdown triggered waits for its shards forever, so a failed assertion (which
/// drops it while unwinding) hung the test instead of failing it.
struct Broker(Option<shardmq::Server>);

impl std::ops::Deref for Broker {
    type Target = shardmq::Server;

    fn deref(&self) -> &shardmq::Server {
        self.0.as_ref().expect("stopped only on drop")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(server) = self.0.take() {
            server.shutdown_handle().trigger();
            let joined = server.join();
            if !std::thread::panicking() {
                joined.expect("broker stops cleanly");
            }
        }
    }
}

fn stop(server: Broker) {
    drop(server);
}

/// `loadtest --broker ADDR ARGS...`, run to the end.
fn run(server: &shardmq::Server, args: &[&str]) -> loadtest::Report {
    let addr = server.local_addrs()[0].to_string();
    let mut argv = vec!["loadtest", "--broker", &addr];
    argv.extend_from_slice(args);
    let args = loadtest::Args::try_parse_from(argv).unwrap();
    loadtest::execute(&args, false).unwrap()
}

/// `loadtest --broker ADDR ARGS...` against a broker at `addr`, run to the end.
fn run_at(addr: SocketAddr, args: &[&str]) -> loadtest::Report {
    let addr = addr.to_string();
    let mut argv = vec!["loadtest", "--broker", &addr];
    argv.extend_from_slice(args);
    let args = loadtest::Args::try_parse_from(argv).unwrap();
    loadtest::execute(&args, false).unwrap()
}

/// Set in the environment of the child process that runs [`broker_process`].
const BROKER_CHILD: &str = "LOADTEST_TEST_BROKER_CHILD";
/// What [`broker_process`] prints before its address.
const LISTENING: &str = "broker listening on ";

/// The broker in a child process: this test binary again, running only
/// [`broker_process`]. `--broker-pid` then reads the broker's RSS alone; in this
/// process it would also count the load tester's own executors and clients (about
/// 14 MB for 50 idle connections, 290 KB per connection).
struct BrokerProcess {
    child: Child,
    addr: SocketAddr,
}

impl BrokerProcess {
    fn start() -> BrokerProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "broker_process", "--ignored", "--nocapture"])
            .env(BROKER_CHILD, "1")
            // A stall's backtrace would add 100 MB to what is measured.
            .env(shards::NO_STALL_DETECTION, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        // Reads on to the end: the child's test harness still prints when it ends.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix(LISTENING) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.parse::<SocketAddr>().ok());
                    }
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30));
        let Ok(Some(addr)) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the broker process printed no address: {addr:?}");
        };
        BrokerProcess { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BrokerProcess {
    /// Closes the child's stdin, which stops its broker; kills it (by PID) if it has
    /// not exited within 10 s.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child side of [`BrokerProcess`]: a broker until stdin closes. Ignored, and a
/// no-op unless [`BROKER_CHILD`] is set, so a plain run of the suite skips it.
#[test]
#[ignore = "the broker process of BrokerProcess::start, not a test of its own"]
fn broker_process() {
    if std::env::var_os(BROKER_CHILD).is_none() {
        return;
    }
    let server = start_broker();
    println!("{LISTENING}{}", server.local_addrs()[0]);
    // Until the parent closes our stdin, or dies.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    stop(server);
}

fn p2p(addr: std::net::SocketAddr, qos: &str, version: &str) -> loadtest::Report {
    let args = loadtest::Args::try_parse_from([
        "loadtest",
        "--broker",
        &addr.to_string(),
        "--scenario",
        "p2p",
        "--clients",
        "2",
        "--qos",
        qos,
        "--mqtt-version",
        version,
        "--rate",
        "2000",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
    ])
    .unwrap();
    loadtest::execute(&args, false).unwrap()
}

#[test]
fn p2p_against_the_real_broker_loses_nothing_at_qos1_and_2() {
    let server = start_broker();
    let addr = server.local_addrs()[0];
    for (qos, version) in [("1", "3.1.1"), ("1", "5"), ("2", "5")] {
        let report = p2p(addr, qos, version);
        assert!(report.sent > 0, "QoS {qos}, MQTT {version}: {report:?}");
        // Every one, not only no gap: `lost` misses what was dropped after the last
        // arrival (a broker that acks everything and delivers only the first).
        assert_eq!(
            report.received, report.expected,
            "QoS {qos}, MQTT {version}: {report:?}"
        );
        assert_eq!(
            report.expected, report.sent,
            "QoS {qos}, MQTT {version}: {report:?}"
        );
        assert_eq!(report.missing(), 0, "QoS {qos}, MQTT {version}: {report:?}");
        assert_eq!(
            report.duplicated, 0,
            "QoS {qos}, MQTT {version}: {report:?}"
        );
        assert_eq!(report.errors, 0, "QoS {qos}, MQTT {version}: {report:?}");
        assert_eq!(
            report.acked, report.sent,
            "QoS {qos}, MQTT {version}: {report:?}"
        );
    }
    stop(server);
}

/// Idle connections the memory test holds: enough that the broker's fixed costs
/// (first-use allocations, allocator growth) are small per connection.
const IDLE_CLIENTS: u32 = 1_000;

/// What one idle connection may cost the broker, bytes of RSS: a regression bound,
/// not the goal. This test (a debug build, 1,000 connections) saw 2,961-3,518 B in
/// 17 runs on the 2-core VM (2026-12-06); the bound is about 1.5x that. Release
/// builds at 10k connections measured ~2.6 KB, and ~2.2 KB since a writer task runs only
/// while it has output (benchmarks.md). Below the lower end
/// the figure is not a measurement (sampled before the connections were up).
const IDLE_BYTES_PER_CONNECTION: std::ops::RangeInclusive<f64> = 1_000.0..=5_000.0;

#[test]
fn idle_holds_every_connection_and_reads_the_broker_rss() {
    let broker = BrokerProcess::start();
    let clients = IDLE_CLIENTS.to_string();
    let report = run_at(
        broker.addr,
        &[
            "--scenario",
            "idle",
            "--clients",
            &clients,
            "--duration",
            "400ms",
            "--warmup",
            "100ms",
            "--broker-pid",
            &broker.pid().to_string(),
        ],
    );
    assert_eq!(report.connections, u64::from(IDLE_CLIENTS), "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(report.broker_rss_kib_before.is_some(), "{report:?}");
    assert!(report.broker_rss_kib_connected.is_some(), "{report:?}");
    let per_connection = report.broker_rss_bytes_per_connection.unwrap_or(0.0);
    assert!(
        IDLE_BYTES_PER_CONNECTION.contains(&per_connection),
        "broker RSS {per_connection} B per idle connection, outside \
         {IDLE_BYTES_PER_CONNECTION:?}: {report:?}"
    );
}

#[test]
fn conn_storm_completes_its_handshakes() {
    let server = start_broker();
    let addr = server.local_addrs()[0].to_string();
    let args = loadtest::Args::try_parse_from([
        "loadtest",
        "--broker",
        &addr,
        "--scenario",
        "conn-storm",
        "--clients",
        "10",
        "--rate",
        "200",
        "--duration",
        "500ms",
        "--warmup",
        "100ms",
        "--mqtt-version",
        "5",
    ])
    .unwrap();
    let report = loadtest::execute(&args, false).unwrap();
    assert!(report.sent > 0, "{report:?}");
    assert_eq!(report.received, report.sent, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    stop(server);
}

#[test]
fn fan_out_delivers_every_message_to_every_subscriber() {
    let server = start_broker();
    let fan_out = |rate: &str| {
        let args = [
            "--scenario",
            "fan-out",
            "--publishers",
            "2",
            "--subscribers",
            "20",
            "--rate",
            rate,
            "--duration",
            "700ms",
            "--warmup",
            "200ms",
        ];
        run(&server, &args)
    };
    let report = fan_out("400");
    assert!(report.sent > 0, "{report:?}");
    assert_eq!(report.expected, report.sent * 20, "{report:?}");
    assert_eq!(report.received, report.expected, "{report:?}");
    assert_eq!((report.missing(), report.duplicated), (0, 0), "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    // Regression: at --rate max the publisher's kernel buffer held 25 s of a 1→1000
    // fan-out, so nothing sent in the measured window arrived (received 0, errors 0).
    // The broker may still be overloaded (and drop): the figures must show it.
    let report = fan_out("max");
    assert!(report.sent > 0, "{report:?}");
    assert!(report.received > 0, "{report:?}");
    assert!(report.received_in_window > 0, "{report:?}");
    // Under --rate max the in-window part of a gap that straddles the warm-up is
    // estimated from its neighbours' send times, so received + lost may exceed
    // expected a little (seen in CI: by 1 %); each alone may not.
    assert!(report.received <= report.expected, "{report:?}");
    assert!(report.lost <= report.expected, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    stop(server);
}

#[test]
fn fan_in_to_a_share_group_is_checked_over_the_group() {
    let server = start_broker();
    let report = run(
        &server,
        &[
            "--scenario",
            "fan-in",
            "--clients",
            "6",
            "--share-group",
            "workers",
            "--subscribers",
            "3",
            "--qos",
            "1",
            "--rate",
            "1200",
            "--duration",
            "800ms",
            "--warmup",
            "200ms",
        ],
    );
    assert_eq!(
        (report.publishers, report.subscribers),
        (6, 3),
        "{report:?}"
    );
    assert!(report.sent > 0, "{report:?}");
    // Each message reaches one member, so per-member sequences have gaps: only the
    // group's view says nothing was lost.
    assert_eq!(report.received, report.sent, "{report:?}");
    assert_eq!(report.expected, report.sent, "{report:?}");
    assert_eq!((report.missing(), report.duplicated), (0, 0), "{report:?}");
    assert_eq!(report.acked, report.sent, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    stop(server);
}

#[test]
fn mixed_clients_publish_and_receive_on_persistent_sessions() {
    let server = start_broker();
    for version in ["3.1.1", "5"] {
        let report = run(
            &server,
            &[
                "--scenario",
                "mixed",
                "--clients",
                "8",
                "--rate",
                "400",
                "--duration",
                "800ms",
                "--warmup",
                "200ms",
                "--mqtt-version",
                version,
                "--client-id",
                &format!("mixed-{version}-{{n}}"),
            ],
        );
        assert_eq!(
            (report.publishers, report.subscribers),
            (8, 8),
            "{report:?}"
        );
        assert_eq!(report.qos, 1, "{report:?}");
        assert!(report.sent > 0, "MQTT {version}: {report:?}");
        assert_eq!(report.received, report.sent, "MQTT {version}: {report:?}");
        assert_eq!(report.acked, report.sent, "MQTT {version}: {report:?}");
        assert_eq!(
            (report.missing(), report.duplicated),
            (0, 0),
            "MQTT {version}: {report:?}"
        );
        assert_eq!(report.errors, 0, "MQTT {version}: {report:?}");
        assert_eq!(report.connections, 8, "MQTT {version}: {report:?}");
    }
    stop(server);
}

/// Issue 15: 2,000 fleet clients on both shards of the default config (a broker
/// process of its own, so --broker-pid reads its CPU and RSS alone), a fifth of them
/// leaving for a second mid-run. Whatever was queued for them while away must arrive:
/// nothing lost, nothing missing, every session still there.
#[test]
fn fleet_loses_nothing_across_a_reconnect_storm() {
    let broker = BrokerProcess::start();
    let report = run_at(
        broker.addr,
        &[
            "--scenario",
            "fleet",
            "--clients",
            "2000",
            "--rate",
            "2000",
            "--duration",
            "4s",
            "--warmup",
            "1s",
            "--reconnect-fraction",
            "0.2",
            "--reconnect-at",
            "1s",
            "--reconnect-offline",
            "1s",
            "--cores",
            "0,1",
            "--broker-pid",
            &broker.pid().to_string(),
        ],
    );
    assert_eq!(report.connections, 2000, "{report:?}");
    assert_eq!(report.errors, 0, "{:?}", report.error_reasons);
    assert_eq!(report.reconnects, 400, "{report:?}");
    // About 2,000 msgs/s for 4 s; each client at its own rate, so not exactly.
    assert!(report.sent > 6_000, "{report:?}");
    assert_eq!(report.acked, report.sent, "{report:?}");
    assert_eq!(report.expected, report.sent, "{report:?}");
    assert_eq!(
        (report.lost, report.missing()),
        (0, 0),
        "lost across the reconnect: {report:?}"
    );
    assert_eq!(
        report.received,
        report.sent + report.duplicated,
        "{report:?}"
    );
    // Messages for the 400 away for 1 s waited for them: the tail shows it.
    assert!(report.latency_us.max > 500_000, "{:?}", report.latency_us);
    assert!(report.broker_cpu_percent.is_some(), "{report:?}");
    assert!(report.broker_rss_kib_connected.is_some(), "{report:?}");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn bind_ips_connect_from_each_source_address() {
    let server = start_broker();
    let report = run(
        &server,
        &[
            "--scenario",
            "p2p",
            "--clients",
            "2",
            "--rate",
            "400",
            "--duration",
            "500ms",
            "--warmup",
            "100ms",
            "--bind-ips",
            "127.0.0.2,127.0.0.3",
        ],
    );
    assert_eq!(report.connections, 4, "{report:?}");
    assert!(report.sent > 0, "{report:?}");
    assert_eq!(report.received, report.expected, "{report:?}");
    assert_eq!((report.missing(), report.errors), (0, 0), "{report:?}");
    stop(server);
}

#[test]
fn a_run_plots_its_percentiles_and_saved_runs_overlay() {
    let server = start_broker();
    let dir = std::env::temp_dir().join(format!("loadtest-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut jsons = Vec::new();
    for qos in ["0", "1"] {
        let report = run(
            &server,
            &[
                "--scenario",
                "p2p",
                "--qos",
                qos,
                "--rate",
                "2000",
                "--duration",
                "500ms",
                "--warmup",
                "100ms",
            ],
        );
        assert!(!report.percentiles.is_empty(), "{report:?}");
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        let last = json["percentiles"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["percentile"], 100.0);
        assert_eq!(last["latency_us"], report.latency_us.max);
        let path = dir.join(format!("p2p-qos{qos}.json"));
        std::fs::write(&path, report.json()).unwrap();
        jsons.push(path);
    }
    stop(server);
    let runs: Vec<_> = jsons
        .iter()
        .map(|p| loadtest::plot::Run::load(p).unwrap().0)
        .collect();
    assert_eq!(runs[1].label, "p2p-qos1");
    let png = dir.join("overlay.png");
    loadtest::plot::draw(&runs, &png, "p2p: latency by percentile").unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.len() > 1000, "{} bytes", bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let _ = std::fs::remove_dir_all(&dir);
}
