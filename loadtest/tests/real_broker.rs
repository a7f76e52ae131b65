//! End to end: each scenario for about a second against the real broker, started
//! in-process on 127.0.0.1 port 0. No speed assertions: only that messages flow and
//! none are lost.

use clap::Parser;
use shardmq::config::Config;

/// The broker on a free port of 127.0.0.1.
fn start_broker() -> shardmq::Server {
    let mut config = Config::embedded_default().expect("default config");
    config.set_bind("127.0.0.1:0".parse().unwrap());
    config.http.bind = "127.0.0.1:0".parse().unwrap();
    shardmq::start(&config, shards::ShutdownHandle::new(), false).expect("broker starts")
}

fn stop(server: shardmq::Server) {
    server.shutdown_handle().trigger();
    server.join().expect("broker stops cleanly");
}

/// `loadtest --broker ADDR ARGS...`, run to the end.
fn run(server: &shardmq::Server, args: &[&str]) -> loadtest::Report {
    let addr = server.local_addrs()[0].to_string();
    let mut argv = vec!["loadtest", "--broker", &addr];
    argv.extend_from_slice(args);
    let args = loadtest::Args::try_parse_from(argv).unwrap();
    loadtest::execute(&args, false).unwrap()
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
    let mut config = Config::embedded_default().expect("default config");
    config.set_bind("127.0.0.1:0".parse().unwrap());
    config.http.bind = "127.0.0.1:0".parse().unwrap();
    let server =
        shardmq::start(&config, shards::ShutdownHandle::new(), false).expect("broker starts");
    let addr = server.local_addrs()[0];
    for (qos, version) in [("1", "3.1.1"), ("1", "5"), ("2", "5")] {
        let report = p2p(addr, qos, version);
        assert!(report.received > 0, "QoS {qos}, MQTT {version}: {report:?}");
        assert_eq!(report.lost, 0, "QoS {qos}, MQTT {version}: {report:?}");
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
    server.shutdown_handle().trigger();
    server.join().expect("broker stops cleanly");
}

#[test]
fn idle_holds_every_connection_and_reads_the_broker_rss() {
    let mut config = Config::embedded_default().expect("default config");
    config.set_bind("127.0.0.1:0".parse().unwrap());
    config.http.bind = "127.0.0.1:0".parse().unwrap();
    let server =
        shardmq::start(&config, shards::ShutdownHandle::new(), false).expect("broker starts");
    let addr = server.local_addrs()[0].to_string();
    // The broker runs in this process, so its RSS is ours.
    let pid = std::process::id().to_string();
    let args = loadtest::Args::try_parse_from([
        "loadtest",
        "--broker",
        &addr,
        "--scenario",
        "idle",
        "--clients",
        "50",
        "--duration",
        "400ms",
        "--warmup",
        "100ms",
        "--broker-pid",
        &pid,
    ])
    .unwrap();
    let report = loadtest::execute(&args, false).unwrap();
    assert_eq!(report.connections, 50, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(report.broker_rss_kib_before.is_some(), "{report:?}");
    assert!(report.broker_rss_kib_connected.is_some(), "{report:?}");
    assert!(
        report.broker_rss_bytes_per_connection.is_some(),
        "{report:?}"
    );
    server.shutdown_handle().trigger();
    server.join().expect("broker stops cleanly");
}

#[test]
fn conn_storm_completes_its_handshakes() {
    let mut config = Config::embedded_default().expect("default config");
    config.set_bind("127.0.0.1:0".parse().unwrap());
    config.http.bind = "127.0.0.1:0".parse().unwrap();
    let server =
        shardmq::start(&config, shards::ShutdownHandle::new(), false).expect("broker starts");
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
    server.shutdown_handle().trigger();
    server.join().expect("broker stops cleanly");
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
    assert_eq!((report.lost, report.duplicated), (0, 0), "{report:?}");
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
    assert_eq!((report.lost, report.duplicated), (0, 0), "{report:?}");
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
            (report.lost, report.duplicated),
            (0, 0),
            "MQTT {version}: {report:?}"
        );
        assert_eq!(report.errors, 0, "MQTT {version}: {report:?}");
        assert_eq!(report.connections, 8, "MQTT {version}: {report:?}");
    }
    stop(server);
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
    assert!(report.received > 0, "{report:?}");
    assert_eq!((report.lost, report.errors), (0, 0), "{report:?}");
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
