//! End to end: p2p for about a second against the real broker, started in-process on
//! 127.0.0.1 port 0. No speed assertions: only that messages flow and none are lost.

use clap::Parser;
use shardmq::config::Config;

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
