//! The final figures: a table on stdout and, with `--json`, a JSON file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::Stats;

/// Every figure of a run. The top-level key names are an interface (the load-testing
/// issue lists them); add keys, never rename.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub broker: String,
    pub mqtt_version: String,
    pub qos: u8,
    pub payload: usize,
    /// Target aggregate rate (msgs/s) or "max".
    pub rate: String,
    pub publishers: u32,
    pub subscribers: u32,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// `--drain`: how long subscribers could still receive after the window.
    pub drain_s: f64,
    /// Publishes sent in the measured window.
    pub sent: u64,
    /// Of those, acknowledged (QoS 1).
    pub acked: u64,
    /// Deliveries received in the measured window, over every subscriber; a
    /// duplicate counts each time it arrives.
    pub received: u64,
    /// Deliveries expected for `sent` (each message times its subscribers).
    pub expected: u64,
    /// Of `expected`, neither received nor known lost when the subscribers left
    /// (`--drain` after the window): still queued in an overloaded broker, or dropped
    /// after the last message that arrived, so no gap showed. A broker that acks
    /// everything and delivers nothing after the first message shows here, not in
    /// `lost`. See [`Report::missing`].
    pub not_arrived: u64,
    /// Sequence gaps found in the measured window and never filled: messages known
    /// lost because a later one from the same publisher arrived. Only gaps: losses
    /// after the last arrival are in `not_arrived`, since the load tester cannot tell
    /// them from messages an overloaded broker still holds. Kept to gaps so that
    /// `--json` files (and `compare.sh`'s lost column) mean what they always meant.
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub sent_per_sec: f64,
    pub received_per_sec: f64,
    /// Deliveries that arrived while the measured window was open, whatever their
    /// intended send time: the broker's delivery rate even when it is working
    /// through a backlog (overload under `--rate max`), when `received` can be 0.
    pub received_in_window: u64,
    pub received_in_window_per_sec: f64,
    /// From the intended send time to receipt.
    pub latency_us: Latency,
    /// Connections that completed their handshake.
    pub connections: u64,
    /// With `--broker-pid`: the broker's RSS before connecting...
    pub broker_rss_kib_before: Option<u64>,
    /// ...and halfway through the measured window.
    pub broker_rss_kib_connected: Option<u64>,
    /// The difference per connection (idle: what one idle connection costs).
    pub broker_rss_bytes_per_connection: Option<f64>,
    /// Connection refusals, drops and protocol errors.
    /// The broker's CPU use over the measured window (less 0.5 s at each end), % of
    /// one CPU; with --broker-pid.
    pub broker_cpu_percent: Option<f64>,
    /// The broker's CPU time over that window per message received in it, µs.
    pub broker_cpu_us_per_message: Option<f64>,
    /// fleet: reconnects made in the reconnect storm.
    pub reconnects: u64,
    /// fleet: their times, connect to CONNACK.
    pub reconnect_us: Option<Reconnects>,
    pub errors: u64,
    /// `errors` by reason (stage and reason code).
    pub error_reasons: BTreeMap<String, u64>,
    /// What may make the figures wrong, found before the run (see
    /// `lib::warnings`).
    pub warnings: Vec<String>,
    /// Latency by percentile, from the median out to the maximum in ever finer
    /// steps (HdrHistogram's percentile iteration, 5 ticks per halving): what
    /// `loadtest plot` draws.
    pub percentiles: Vec<Percentile>,
    /// The latency percentile distribution for `--hdr`.
    #[serde(skip)]
    pub distribution: Distribution,
}

/// The latency percentile distribution in HdrHistogram's text format (`.hgrm`, values in
/// µs), which HdrHistogram's plotter and most tooling read.
#[derive(Clone, Default)]
pub struct Distribution(pub String);

impl std::fmt::Debug for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Distribution({} lines)", self.0.lines().count())
    }
}

impl Distribution {
    pub fn of(h: &Histogram<u64>) -> Distribution {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        let mut total = 0;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let inverse = if q < 1.0 {
                format!("{:>14.2}", 1.0 / (1.0 - q))
            } else {
                format!("{:>14}", "inf")
            };
            let _ = writeln!(
                out,
                "{:>12.3} {:>14.12} {:>10} {inverse}",
                v.value_iterated_to() as f64,
                q,
                total
            );
        }
        let _ = writeln!(
            out,
            "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
            h.mean(),
            h.stdev()
        );
        let _ = writeln!(
            out,
            "#[Max     = {:>12.3}, Total count    = {:>12}]",
            h.max() as f64,
            h.len()
        );
        let _ = writeln!(
            out,
            "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
            h.buckets(),
            h.distinct_values()
        );
        Distribution(out)
    }
}

/// One point of the latency distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Percentile {
    /// 0 to 100.
    pub percentile: f64,
    /// The highest latency of that share of messages, µs.
    pub latency_us: u64,
}

impl Percentile {
    /// The distribution of `h`, empty if nothing was recorded.
    pub fn all(h: &Histogram<u64>) -> Vec<Percentile> {
        if h.is_empty() {
            return Vec::new();
        }
        let mut points: Vec<Percentile> = h
            .iter_quantiles(5)
            .map(|v| Percentile {
                percentile: v.quantile_iterated_to() * 100.0,
                latency_us: h.highest_equivalent(v.value_iterated_to()),
            })
            .collect();
        // One point per percentile: the iteration repeats the last one.
        points.dedup_by(|b, a| a.percentile == b.percentile);
        points
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// fleet: the reconnect storm's reconnect times, µs.
#[derive(Debug, Clone, Serialize)]
pub struct Reconnects {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Reconnects {
    pub fn of(h: &Histogram<u64>) -> Reconnects {
        Reconnects {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

impl Latency {
    pub fn of(stats: &Stats) -> Latency {
        let h = stats.latency.histogram();
        let q = |q| h.value_at_quantile(q);
        Latency {
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max(),
        }
    }
}

impl Report {
    /// Of `expected`, deliveries that did not arrive: `lost` (gaps) plus
    /// `not_arrived` (after the last arrival, or still on their way at the end of
    /// `--drain`). What to check when the scenario should deliver everything: `lost`
    /// alone misses a broker that drops everything after some point.
    pub fn missing(&self) -> u64 {
        self.lost + self.not_arrived
    }

    /// The final table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "scenario {} | broker {} | MQTT {} | QoS {} | payload {} B | rate {} | {} pub, {} sub | {}s (+{}s warm-up)",
            self.scenario,
            self.broker,
            self.mqtt_version,
            self.qos,
            self.payload,
            self.rate,
            self.publishers,
            self.subscribers,
            self.duration_s,
            self.warmup_s
        );
        let rows: [(&str, String); 18] = [
            ("sent", self.sent.to_string()),
            ("acked", self.acked.to_string()),
            (
                "received",
                format!("{} of {} expected", self.received, self.expected),
            ),
            (
                "missing",
                format!("{} (lost + not arrived)", self.missing()),
            ),
            ("lost", format!("{} (gaps)", self.lost)),
            (
                "not arrived",
                format!(
                    "{} (after the last arrival, by the end of --drain)",
                    self.not_arrived
                ),
            ),
            ("duplicated", self.duplicated.to_string()),
            ("reordered", self.reordered.to_string()),
            ("sent/s", format!("{:.0}", self.sent_per_sec)),
            ("received/s", format!("{:.0}", self.received_per_sec)),
            (
                "arrived/s",
                format!(
                    "{:.0} (whenever sent; {} in the window)",
                    self.received_in_window_per_sec, self.received_in_window
                ),
            ),
            ("latency p50", format!("{} µs", self.latency_us.p50)),
            ("latency p90", format!("{} µs", self.latency_us.p90)),
            ("latency p99", format!("{} µs", self.latency_us.p99)),
            ("latency p99.9", format!("{} µs", self.latency_us.p999)),
            ("latency max", format!("{} µs", self.latency_us.max)),
            ("connections", self.connections.to_string()),
            ("errors", self.errors.to_string()),
        ];
        for (name, value) in rows {
            let _ = writeln!(t, "  {name:<14} {value}");
        }
        if let Some(b) = self.broker_rss_bytes_per_connection {
            let _ = writeln!(
                t,
                "  {:<14} {b:.0} B per connection ({} KiB before, {} KiB connected)",
                "broker RSS",
                self.broker_rss_kib_before.unwrap_or(0),
                self.broker_rss_kib_connected.unwrap_or(0)
            );
        }
        if let Some(cpu) = self.broker_cpu_percent {
            let _ = writeln!(
                t,
                "  {:<14} {cpu:.1} % of a CPU, {} µs per message received",
                "broker CPU",
                self.broker_cpu_us_per_message
                    .map_or("-".into(), |us| format!("{us:.1}"))
            );
        }
        if let Some(r) = &self.reconnect_us {
            let _ = writeln!(
                t,
                "  {:<14} {} reconnected: p50 {} µs, p99 {} µs, max {} µs (connect to CONNACK)",
                "reconnects", self.reconnects, r.p50, r.p99, r.max
            );
        }
        for (reason, n) in &self.error_reasons {
            let _ = writeln!(t, "    {n:>8}  {reason}");
        }
        for warning in &self.warnings {
            let _ = writeln!(t, "  warning: {warning}");
        }
        t
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_is_hgrm_text() {
        let mut h = crate::stats::latency_histogram();
        for us in 1..=100 {
            h.record(us).unwrap();
        }
        let text = Distribution::of(&h).0;
        let first = text.lines().nth(2).unwrap();
        assert!(
            first.trim_start().starts_with("1.000 0.000000000000"),
            "{text}"
        );
        let last = text.lines().rev().find(|l| !l.starts_with('#')).unwrap();
        assert!(last.contains("100.000 1.000000000000        100"), "{text}");
        assert!(
            text.contains("#[Max     =      100.000, Total count    =          100]"),
            "{text}"
        );
    }

    #[test]
    fn percentiles_climb_to_the_maximum() {
        let mut h = crate::stats::latency_histogram();
        for us in 1..=10_000 {
            h.record(us).unwrap();
        }
        let points = Percentile::all(&h);
        assert!(points.len() > 20, "{points:?}");
        assert!(points
            .windows(2)
            .all(|w| w[0].percentile < w[1].percentile && w[0].latency_us <= w[1].latency_us));
        let last = points.last().unwrap();
        assert_eq!(last.percentile, 100.0);
        assert_eq!(last.latency_us, h.highest_equivalent(10_000));
        let median = points.iter().find(|p| p.percentile >= 50.0).unwrap();
        assert!((4_990..=5_010).contains(&median.latency_us), "{median:?}");
        assert!(Percentile::all(&crate::stats::latency_histogram()).is_empty());
    }
}
