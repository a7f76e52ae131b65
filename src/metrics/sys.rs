//! The `$SYS/broker/...` topics, named as Mosquitto names them so existing
//! dashboards and `mosquitto_sub -t '$SYS/#'` habits carry over.
//!
//! They are node-wide numbers from [`Metrics`] (each shard's last sample), sent
//! every `[sys] interval` as QoS 0, not retained.

use super::Metrics;

/// Every `$SYS` topic with its payload (decimal text, like Mosquitto's).
pub fn sys_messages(metrics: &Metrics) -> Vec<(&'static str, String)> {
    let t = metrics.totals();
    vec![
        (
            "$SYS/broker/version",
            concat!("shardmq ", env!("CARGO_PKG_VERSION")).to_owned(),
        ),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", metrics.uptime().as_secs()),
        ),
        ("$SYS/broker/clients/connected", t.connections.to_string()),
        // Mosquitto's "total": connected clients plus offline persistent sessions.
        ("$SYS/broker/clients/total", t.sessions.to_string()),
        // PUBLISH packets only (Mosquitto's messages/* also count other packets).
        ("$SYS/broker/messages/received", t.received.to_string()),
        ("$SYS/broker/messages/sent", t.sent.to_string()),
        ("$SYS/broker/messages/inflight", t.inflight.to_string()),
        ("$SYS/broker/messages/queued", t.queued.to_string()),
        (
            "$SYS/broker/publish/messages/dropped",
            t.dropped.to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count",
            t.subscriptions.to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            t.retained.to_string(),
        ),
    ]
}
