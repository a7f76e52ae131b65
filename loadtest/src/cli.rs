//! The command line, exactly as the load-testing issue names it (scripts depend on
//! these names).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::payload::HEADER_LEN;

/// Open-loop MQTT load tester: latency from the intended send time, carried in each
/// payload, so a stalled generator shows up as latency rather than as a lower rate.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest", version)]
pub struct Args {
    /// The broker to load, as HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: String,

    /// What to run. p2p: N publishers each paired with its own subscriber on its own
    /// topic; fan-out: P publishers to S subscribers on one topic; fan-in: N
    /// publishers to one subscriber; idle: --clients silent connections held for the
    /// duration (with --broker-pid, the broker's RSS per connection); conn-storm:
    /// --clients workers connect, subscribe and disconnect at --rate connections per
    /// second (latency: intended start to SUBACK). mixed is not implemented yet.
    #[arg(long, value_enum)]
    pub scenario: Scenario,

    /// Number of clients: the pairs of p2p, the publishers of fan-in; the default for
    /// --publishers and --subscribers when they are not given.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub clients: u32,

    /// Publishers (fan-out, fan-in and p2p pairs); defaults to --clients, except
    /// fan-out, where it defaults to 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub publishers: Option<u32>,

    /// Subscribers (fan-out); defaults to --clients. p2p has one per publisher and
    /// fan-in has one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub subscribers: Option<u32>,

    /// QoS of publishes and subscriptions.
    #[arg(long, value_name = "0|1|2", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// Payload size in bytes; at least 20 (publisher id, sequence number and intended
    /// send time).
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = parse_payload)]
    pub payload: usize,

    /// Target aggregate rate over all publishers, in messages per second (conn-storm:
    /// connections per second over all workers), or `max` to go as fast as the socket
    /// (QoS 0) or the inflight window (QoS 1 and 2, at most 1,024 or the broker's
    /// Receive Maximum) allows.
    #[arg(long, value_name = "MSGS_PER_SEC|max", default_value = "1000")]
    pub rate: Rate,

    /// How long to measure, after the warm-up (humantime: 10s, 1m, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// How long to publish before measuring; messages intended in the warm-up are left
    /// out of every figure.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// MQTT protocol version of every client.
    #[arg(long = "mqtt-version", value_name = "3.1.1|5", default_value = "3.1.1")]
    pub mqtt_version: MqttVersion,

    /// CPUs to run the load generator on, one pinned executor each, connections
    /// spread round-robin (default: every online CPU).
    #[arg(long, value_name = "0,1", value_delimiter = ',')]
    pub cores: Vec<usize>,

    /// The broker's process id, for idle: its RSS (/proc/PID/status) is read before
    /// connecting and once every connection is up.
    #[arg(long = "broker-pid", value_name = "PID")]
    pub broker_pid: Option<u32>,

    /// Also write every figure as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,

    /// Also write the latency percentile distribution (HdrHistogram `.hgrm` text,
    /// µs) to FILE.
    #[arg(long, value_name = "FILE")]
    pub hdr: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    P2p,
    FanOut,
    FanIn,
    ConnStorm,
    Idle,
    Mixed,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.to_possible_value().expect("no skipped variants");
        f.write_str(name.get_name())
    }
}

/// `--rate`: a target aggregate rate, or as fast as possible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSec(f64),
    Max,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::PerSec(r)),
            _ => Err(format!(
                "`{s}` is not a rate: give messages per second above 0 (e.g. 10000) or `max`"
            )),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::PerSec(r) => write!(f, "{r}"),
            Rate::Max => f.write_str("max"),
        }
    }
}

/// `--mqtt-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    V311,
    V5,
}

impl MqttVersion {
    pub fn codec(self) -> shardmq::protocol::Version {
        match self {
            MqttVersion::V311 => shardmq::protocol::Version::V3_1_1,
            MqttVersion::V5 => shardmq::protocol::Version::V5,
        }
    }
}

impl FromStr for MqttVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "3.1.1" | "4" => Ok(MqttVersion::V311),
            "5" | "5.0" => Ok(MqttVersion::V5),
            _ => Err(format!(
                "`{s}` is not a supported MQTT version: use 3.1.1 or 5"
            )),
        }
    }
}

impl fmt::Display for MqttVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MqttVersion::V311 => "3.1.1",
            MqttVersion::V5 => "5",
        })
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}): write e.g. 10s, 500ms or 1m"))
}

fn parse_payload(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of bytes"))?;
    if n < HEADER_LEN {
        return Err(format!(
            "{n} bytes is too small: the payload carries a {HEADER_LEN}-byte header \
             (publisher id, sequence number, intended send time); use at least {HEADER_LEN}"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let mut all = vec!["loadtest", "--broker", "127.0.0.1:1883"];
        all.extend_from_slice(args);
        Args::try_parse_from(all)
    }

    #[test]
    fn every_interface_option_parses() {
        let args = parse(&[
            "--scenario",
            "fan-out",
            "--clients",
            "3",
            "--publishers",
            "2",
            "--subscribers",
            "5",
            "--qos",
            "1",
            "--payload",
            "128",
            "--rate",
            "max",
            "--duration",
            "1s",
            "--warmup",
            "500ms",
            "--mqtt-version",
            "5",
            "--cores",
            "0,1",
            "--json",
            "out.json",
        ])
        .unwrap();
        assert_eq!(args.scenario, Scenario::FanOut);
        assert_eq!(args.rate, Rate::Max);
        assert_eq!(args.mqtt_version, MqttVersion::V5);
        assert_eq!(args.cores, vec![0, 1]);
        assert_eq!(args.warmup, Duration::from_millis(500));
        assert_eq!((args.qos, args.payload), (1, 128));
    }

    #[test]
    fn bad_arguments_say_what_to_write() {
        let cases: &[(&[&str], &str)] = &[
            (&["--scenario", "p2p", "--qos", "3"], "0..=2"),
            (&["--scenario", "p2p", "--rate", "fast"], "or `max`"),
            (&["--scenario", "p2p", "--duration", "ten"], "10s"),
            (&["--scenario", "p2p", "--payload", "8"], "at least 20"),
            (
                &["--scenario", "p2p", "--mqtt-version", "4.0"],
                "3.1.1 or 5",
            ),
            (&["--scenario", "storm"], "conn-storm"),
        ];
        for (args, expect) in cases {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(expect), "{args:?}: {err}");
        }
    }
}
