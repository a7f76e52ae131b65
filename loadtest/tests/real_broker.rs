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
