//! The final figures: a table on stdout and, with `--json`, a JSON file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

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
    /// Publishes sent in the measured window.
    pub sent: u64,
    /// Of those, acknowledged (QoS 1).
    pub acked: u64,
    /// Deliveries received in the measured window, over every subscriber.
    pub received: u64,
    /// Deliveries expected for `sent` (each message times its subscribers).
    pub expected: u64,
    /// Sequence gaps found in the measured window and never filled.
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub sent_per_sec: f64,
    pub received_per_sec: f64,
    /// From the intended send time to receipt.
    pub latency_us: Latency,
    /// Connection refusals, drops and protocol errors.
    pub errors: u64,
    /// `errors` by reason (stage and reason code).
    pub error_reasons: BTreeMap<String, u64>,
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

impl Latency {
    pub fn of(stats: &Stats) -> Latency {
        let h = &stats.latency;
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
        let rows: [(&str, String); 14] = [
            ("sent", self.sent.to_string()),
            ("acked", self.acked.to_string()),
            (
                "received",
                format!("{} of {} expected", self.received, self.expected),
            ),
            ("lost", self.lost.to_string()),
            ("duplicated", self.duplicated.to_string()),
            ("reordered", self.reordered.to_string()),
            ("sent/s", format!("{:.0}", self.sent_per_sec)),
            ("received/s", format!("{:.0}", self.received_per_sec)),
            ("latency p50", format!("{} µs", self.latency_us.p50)),
            ("latency p90", format!("{} µs", self.latency_us.p90)),
            ("latency p99", format!("{} µs", self.latency_us.p99)),
            ("latency p99.9", format!("{} µs", self.latency_us.p999)),
            ("latency max", format!("{} µs", self.latency_us.max)),
            ("errors", self.errors.to_string()),
        ];
        for (name, value) in rows {
            let _ = writeln!(t, "  {name:<14} {value}");
        }
        for (reason, n) in &self.error_reasons {
            let _ = writeln!(t, "    {n:>8}  {reason}");
        }
        t
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}
