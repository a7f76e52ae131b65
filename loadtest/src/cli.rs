//! The command line, exactly as the load-testing issue names it (scripts depend on
//! these names).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::payload::HEADER_LEN;

/// Open-loop MQTT load tester: latency from the intended send time, carried in each
/// payload, so a stalled generator shows up as latency rather than as a lower rate.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadtest",
    version,
    after_help = "Plot saved runs on one chart: loadtest plot RUN.json... --out FILE.png \
                  (see `loadtest plot --help`)."
)]
pub struct Args {
    /// The broker to load, as HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: String,

    /// Where the subscribers connect instead of --broker: another node of a
    /// cluster, to measure what crosses between nodes (p2p, fan-out, fan-in).
    #[arg(long = "subscriber-broker", value_name = "HOST:PORT")]
    pub subscriber_broker: Option<String>,

    /// What to run. p2p: N publishers each paired with its own subscriber on its own
    /// topic; fan-out: P publishers to S subscribers on one topic; fan-in: N
    /// publishers to one subscriber, or to the --subscribers members of a
    /// --share-group; idle: --clients silent connections held for the duration (with
    /// --broker-pid, the broker's RSS per connection); conn-storm: --clients workers
    /// connect, subscribe and disconnect at --rate connections per second (latency:
    /// intended start to SUBACK); mixed: --clients persistent sessions (default 1000,
    /// QoS 1), each subscribed to its own topic loadtest/mixed/N and publishing to the
    /// next client's topic (a ring), so every client both publishes and receives;
    /// --rate is the total over all of them (default: 1 msg/s per client); fleet:
    /// as mixed, on one socket per client (loadtest/fleet/N), each client at a slow
    /// rate of its own (0.5 to 1.5 times the average, a random start, each message
    /// jittered by up to a quarter period), with an optional reconnect storm
    /// (--reconnect-fraction).
    #[arg(long, value_enum)]
    pub scenario: Scenario,

    /// fleet only: this fraction (0 to 1) of the clients disconnects at
    /// --reconnect-at, stays away for --reconnect-offline and reconnects to its
    /// persistent session (without subscribing again). Messages queued for them
    /// meanwhile must arrive: lost and duplicated count across the reconnect, and
    /// the report gives the reconnect time (connect to CONNACK).
    #[arg(long = "reconnect-fraction", value_name = "F", value_parser = parse_fraction)]
    pub reconnect_fraction: Option<f64>,

    /// fleet: when the reconnect storm starts, counted from the start of the
    /// measured window (default: a third of --duration).
    #[arg(long = "reconnect-at", value_name = "DURATION", value_parser = parse_duration)]
    pub reconnect_at: Option<Duration>,

    /// fleet: how long reconnecting clients stay disconnected.
    #[arg(long = "reconnect-offline", value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub reconnect_offline: Duration,

    /// Number of clients: the pairs of p2p, the publishers of fan-in, the sessions of
    /// mixed, the connections of idle, the workers of conn-storm; the default for
    /// --publishers and --subscribers when they are not given. Default 1 (mixed:
    /// 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub clients: Option<u32>,

    /// Publishers (fan-out, fan-in and p2p pairs); defaults to --clients, except
    /// fan-out, where it defaults to 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub publishers: Option<u32>,

    /// Subscribers: of fan-out (default --clients), or the members of fan-in's
    /// --share-group (default 2). p2p has one per publisher; plain fan-in has one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub subscribers: Option<u32>,

    /// fan-in only: subscribe as members of the shared subscription
    /// $share/NAME/loadtest/fan-in/+, so the broker spreads the publishers' messages
    /// over --subscribers members. Loss and duplicates are counted over the group;
    /// reordered counts what one member saw out of order.
    #[arg(long = "share-group", value_name = "NAME", value_parser = parse_share_group)]
    pub share_group: Option<String>,

    /// QoS of publishes and subscriptions. Default 0 (mixed: 1).
    #[arg(long, value_name = "0|1|2", value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: Option<u8>,

    /// Payload size in bytes; at least 20 (publisher id, sequence number and intended
    /// send time).
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = parse_payload)]
    pub payload: usize,

    /// Target aggregate rate over all publishers, in messages per second (conn-storm:
    /// connections per second over all workers), or `max` to go as fast as the socket
    /// (QoS 0) or the inflight window (QoS 1 and 2, at most 1,024 or the broker's
    /// Receive Maximum) allows. Under `max`, messages are stamped when written and
    /// each publisher's kernel send buffer is kept small (at most 64 KiB over all
    /// publishers' 4 MiB), so the figures measure the broker, not our queues; a
    /// publisher still blocked by the broker when the window ends just stops.
    #[arg(long, value_name = "MSGS_PER_SEC|max", default_value = "1000")]
    pub rate: Rate,

    /// How long to measure, after the warm-up (humantime: 10s, 1m, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// How long to publish before measuring; messages intended in the warm-up are left
    /// out of every figure.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// After the window, how long subscribers wait for messages still on their way
    /// (they leave sooner once nothing has arrived for 200 ms). An overloaded broker
    /// can take longer than this to deliver what was sent in the window: the report
    /// counts those as not arrived, with any dropped after the last message that
    /// arrived (lost counts only gaps; missing is both).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub drain: Duration,

    /// MQTT protocol version of every client.
    #[arg(long = "mqtt-version", value_name = "3.1.1|5", default_value = "3.1.1")]
    pub mqtt_version: MqttVersion,

    /// Sessions: clean (a new session per connection, dropped at disconnect) or
    /// persistent (clean session 0; MQTT 5: clean start 0 with --session-expiry), kept
    /// by the broker after the run. Default clean (mixed: persistent).
    #[arg(long, value_enum, value_name = "clean|persistent")]
    pub session: Option<SessionKind>,

    /// MQTT 5 persistent sessions: the Session Expiry Interval sent in CONNECT.
    #[arg(long = "session-expiry", value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub session_expiry: Duration,

    /// Client id of each connection; `{i}` is replaced by the connection's index
    /// (0, 1, ...; conn-storm: the worker's) and `{pid}` by this process's id. Must
    /// contain `{i}` when more than one client connects. Default
    /// `loadtest-{pid}-{i}` (conn-storm: one new id per connection).
    #[arg(long = "client-id", value_name = "PATTERN")]
    pub client_id: Option<String>,

    /// Username of each connection; `{i}` and `{pid}` as in --client-id.
    #[arg(long, value_name = "PATTERN")]
    pub username: Option<String>,

    /// Password of every connection (or set LOADTEST_PASSWORD, which keeps it out of
    /// the process list). Not with --jwt-secret.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "LOADTEST_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<Secret>,

    /// Send an HS256 JWT signed with SECRET as each client's password, with the
    /// claims `rid` = that client's username (so --username is required), `iat` and
    /// `exp` = now + --jwt-ttl. Or set LOADTEST_JWT_SECRET.
    #[arg(
        long = "jwt-secret",
        value_name = "SECRET",
        env = "LOADTEST_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<Secret>,

    /// How long each generated JWT is valid (its `exp` claim).
    #[arg(long = "jwt-ttl", value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub jwt_ttl: Duration,

    /// Source addresses for the connections, used round-robin (each is bound before
    /// connecting). One address reaches about 28k connections to one broker port
    /// (the ephemeral port range); on Linux every 127.x.y.z works for loopback.
    /// Default: the kernel picks, except that more than 25,000 connections to a
    /// 127.x broker spread over 127.0.0.1, 127.0.0.2, ... (25,000 each).
    #[arg(long = "bind-ips", value_name = "IP,IP,...", value_delimiter = ',')]
    pub bind_ips: Vec<IpAddr>,

    /// CPUs to run the load generator on, one pinned executor each, connections
    /// spread round-robin (default: every online CPU). An executor was measured
    /// receiving correctly on 19,000 connections (fleet); past that the run warns.
    #[arg(long, value_name = "0,1", value_delimiter = ',')]
    pub cores: Vec<usize>,

    /// The broker's process id, for idle: its RSS (/proc/PID/status) is read before
    /// connecting and once every connection is up.
    #[arg(long = "broker-pid", value_name = "PID")]
    pub broker_pid: Option<u32>,

    /// Also write every figure as JSON to FILE (with the latency percentiles, which
    /// `loadtest plot` reads).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Also write the latency percentile distribution (HdrHistogram `.hgrm` text,
    /// µs) to FILE.
    #[arg(long, value_name = "FILE")]
    pub hdr: Option<PathBuf>,

    /// Also draw this run's latency by percentile to FILE.png. To overlay several
    /// runs, save each with --json and use `loadtest plot`.
    #[arg(long, value_name = "FILE.png", value_parser = parse_png)]
    pub plot: Option<PathBuf>,
}

/// `loadtest plot`: several runs' latency percentiles on one chart.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest plot", version)]
pub struct PlotArgs {
    /// JSON files written by `loadtest --json`, one line each. The legend names each
    /// run by its file name, without `.json`.
    #[arg(value_name = "RUN.json", required = true)]
    pub runs: Vec<PathBuf>,

    /// The PNG to write.
    #[arg(long, value_name = "FILE.png", value_parser = parse_png)]
    pub out: PathBuf,

    /// Chart title (default: the scenario of the first run, or "latency").
    #[arg(long)]
    pub title: Option<String>,
}

/// A password or signing key: kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("is empty".into());
        }
        Ok(Secret(s.to_owned()))
    }
}

/// `--session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SessionKind {
    Clean,
    Persistent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    P2p,
    FanOut,
    FanIn,
    ConnStorm,
    Idle,
    Mixed,
    Fleet,
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

fn parse_share_group(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(['/', '+', '#']) {
        return Err(format!(
            "`{s}` cannot name a share group: use a non-empty name without `/`, `+` or `#`"
        ));
    }
    // The filter the members subscribe to must be valid too (the plan relies on it).
    shardmq::topic::TopicFilter::new(format!("$share/{s}/loadtest/fan-in/+"))
        .map_err(|e| format!("`{s}` cannot name a share group: {e}"))?;
    Ok(s.to_owned())
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "`{s}` is not a fraction of the clients: give 0 to 1, e.g. 0.1"
        )),
    }
}

fn parse_png(s: &str) -> Result<PathBuf, String> {
    if !s.to_ascii_lowercase().ends_with(".png") {
        return Err(format!(
            "`{s}`: the plot is a PNG; give a file name ending in .png"
        ));
    }
    Ok(PathBuf::from(s))
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
        assert_eq!((args.qos, args.payload), (Some(1), 128));
    }

    #[test]
    fn identity_session_and_source_options_parse() {
        let args = parse(&[
            "--scenario",
            "fan-in",
            "--share-group",
            "g1",
            "--subscribers",
            "3",
            "--session",
            "persistent",
            "--session-expiry",
            "1h",
            "--client-id",
            "c-{i}",
            "--username",
            "u-{n}",
            "--jwt-secret",
            "k",
            "--jwt-ttl",
            "10m",
            "--bind-ips",
            "127.0.0.1,127.0.0.2",
            "--plot",
            "out.png",
        ])
        .unwrap();
        assert_eq!(args.share_group.as_deref(), Some("g1"));
        assert_eq!(args.session, Some(SessionKind::Persistent));
        assert_eq!(args.session_expiry, Duration::from_secs(3600));
        assert_eq!(args.bind_ips.len(), 2);
        assert_eq!(args.jwt_secret.as_ref().map(Secret::expose), Some("k"));
        // Secrets stay out of Debug output.
        assert!(!format!("{args:?}").contains("\"k\""), "{args:?}");
        let plot =
            PlotArgs::try_parse_from(["plot", "a.json", "b.json", "--out", "x.png"]).unwrap();
        assert_eq!(plot.runs.len(), 2);
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
            (
                &["--scenario", "fan-in", "--share-group", "a/b"],
                "without `/`",
            ),
            (
                &["--scenario", "p2p", "--bind-ips", "127.0.0.300"],
                "invalid IP address",
            ),
            (&["--scenario", "p2p", "--plot", "x.svg"], "ending in .png"),
            (&["--scenario", "p2p", "--session", "sticky"], "persistent"),
            (&["--scenario", "p2p", "--password", ""], "is empty"),
            (
                &["--scenario", "fleet", "--reconnect-fraction", "1.5"],
                "0 to 1",
            ),
        ];
        for (args, expect) in cases {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(expect), "{args:?}: {err}");
        }
    }
}
