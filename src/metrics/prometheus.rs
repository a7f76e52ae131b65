//! The `/metrics` body: Prometheus text exposition format 0.0.4.
//!
//! Every name starts with `shardmq_`. Per-shard series carry a `shard` label
//! (the shard id, 0-based); sum over it for the node. Counters end in `_total`.

use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{DropKind, Metrics, ShardMetrics};
use crate::auth::Failure;
use crate::config::EVENT_HOOKS;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const QOS: [&str; 3] = ["0", "1", "2"];

/// Renders every metric.
pub fn render(metrics: &Metrics) -> String {
    let mut out = Text(String::with_capacity(8 * 1024));
    out.family(
        "shardmq_build_info",
        "gauge",
        "Always 1; the version label says which shardmq is running.",
    );
    out.sample(
        "shardmq_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.family(
        "shardmq_uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
    );
    out.sample(
        "shardmq_uptime_seconds",
        &[],
        metrics.uptime().as_secs_f64(),
    );
    out.family(
        "shardmq_max_connections",
        "gauge",
        "The [mqtt] max-connections limit of this node; 0 means no limit.",
    );
    out.sample("shardmq_max_connections", &[], metrics.max_connections());
    if metrics.store.enabled() {
        render_store(&mut out, metrics);
    }
    if metrics.cluster.enabled() {
        render_cluster(&mut out, metrics);
    }

    let shards = metrics.shards();
    let per_shard = |out: &mut Text, name, kind, help, field: fn(&ShardMetrics) -> &AtomicU64| {
        out.family(name, kind, help);
        for (id, shard) in shards.iter().enumerate() {
            let id = id.to_string();
            out.sample(name, &[("shard", &id)], field(shard).load(Relaxed));
        }
    };
    per_shard(
        &mut out,
        "shardmq_connections",
        "gauge",
        "Client connections past CONNECT, as counted against max-connections.",
        |s| &s.connections,
    );
    per_shard(
        &mut out,
        "shardmq_writer_tasks",
        "gauge",
        "Connections with a writer task: writing, or parked for at most 0.1 s after \
         their last output. An idle connection has none.",
        |s| &s.writers,
    );
    per_shard(
        &mut out,
        "shardmq_reader_tasks",
        "gauge",
        "Connections with a reader task: waiting for flow control or loading, or \
         with more input than one read takes. An idle connection has none.",
        |s| &s.readers,
    );
    per_shard(
        &mut out,
        "shardmq_sessions",
        "gauge",
        "Sessions held, online or offline.",
        |s| &s.sessions,
    );
    per_shard(
        &mut out,
        "shardmq_subscriptions",
        "gauge",
        "Subscriptions held; a share-group member counts once.",
        |s| &s.subscriptions,
    );
    per_shard(
        &mut out,
        "shardmq_retained_messages",
        "gauge",
        "Retained messages. Every shard holds a full copy: do not sum over shards.",
        |s| &s.retained,
    );
    per_shard(
        &mut out,
        "shardmq_queued_messages",
        "gauge",
        "Messages waiting in session queues (behind a full inflight window, or for \
         an offline session). Sampled every second.",
        |s| &s.queued,
    );
    per_shard(
        &mut out,
        "shardmq_inflight_messages",
        "gauge",
        "QoS 1 and 2 messages sent and not yet acknowledged. Sampled every second.",
        |s| &s.inflight,
    );
    per_shard(
        &mut out,
        "shardmq_connects_total",
        "counter",
        "CONNECTs accepted (CONNACK success), takeovers and reconnects included.",
        |s| &s.connects,
    );
    per_shard(
        &mut out,
        "shardmq_connections_refused_total",
        "counter",
        "Connections refused because max-connections was reached.",
        |s| &s.refused,
    );

    let by_qos = |out: &mut Text, name, help, field: fn(&ShardMetrics) -> &[AtomicU64; 3]| {
        out.family(name, "counter", help);
        for (id, shard) in shards.iter().enumerate() {
            let id = id.to_string();
            for (qos, count) in QOS.iter().zip(field(shard)) {
                out.sample(name, &[("shard", &id), ("qos", qos)], count.load(Relaxed));
            }
        }
    };
    by_qos(
        &mut out,
        "shardmq_messages_received_total",
        "PUBLISH packets received from clients, by QoS.",
        |s| &s.received,
    );
    by_qos(
        &mut out,
        "shardmq_messages_sent_total",
        "PUBLISH packets sent to clients, by QoS, retransmissions included.",
        |s| &s.sent,
    );

    let name = "shardmq_messages_dropped_total";
    out.family(
        name,
        "counter",
        "Deliveries dropped, by reason: queue_full (session queue or a slow reader's \
         output), expired (MQTT 5 message expiry), offline (QoS 0 or non-persistent \
         while offline), not_acked (non-retry messages unacknowledged at reconnect), \
         too_large (over the client's MQTT 5 maximum packet size).",
    );
    for (id, shard) in shards.iter().enumerate() {
        let id = id.to_string();
        for kind in DropKind::ALL {
            out.sample(
                name,
                &[("shard", &id), ("reason", kind.label())],
                shard.dropped(kind),
            );
        }
    }

    per_shard(
        &mut out,
        "shardmq_publishes_denied_total",
        "counter",
        "PUBLISH packets the ACL denied (dropped; MQTT 5 QoS 1/2 acked with 0x87).",
        |s| &s.publishes_denied,
    );
    per_shard(
        &mut out,
        "shardmq_publishes_rate_limited_total",
        "counter",
        "PUBLISH packets over their ACL label's [acl.rate-limit]: dropped (MQTT 3) or \
         answered with DISCONNECT 0x96 (MQTT 5).",
        |s| &s.publishes_rate_limited,
    );
    per_shard(
        &mut out,
        "shardmq_publishes_unstored_total",
        "counter",
        "QoS 1/2 PUBLISH packets whose message Redis could not store (durability = \"messages\"): \
         not acknowledged, the publisher disconnected (MQTT 5: 0x80).",
        |s| &s.publishes_unstored,
    );
    if metrics.cluster.enabled() {
        per_shard(
            &mut out,
            "shardmq_cluster_routes",
            "gauge",
            "Topic filters other nodes have subscribers for, as this shard's route index knows them (a filter counts once per node).",
            |s| &s.cluster_routes,
        );
    }
    per_shard(
        &mut out,
        "shardmq_acl_subscriptions_revoked_total",
        "counter",
        "Subscriptions removed because a reloaded ACL file denies them.",
        |s| &s.subscriptions_revoked,
    );
    let name = "shardmq_acl_rate_limited_total";
    out.family(
        name,
        "counter",
        "PUBLISH packets refused by [acl.rate-limit], node-wide, by the label of the ACL \
         rule that allowed them.",
    );
    for (label, count) in metrics.rate_limited() {
        out.sample(name, &[("label", &label)], count);
    }
    let name = "shardmq_auth_failures_total";
    out.family(
        name,
        "counter",
        "CONNECTs refused by authentication, by reason (as on_register_failed \
         reports it).",
    );
    for (id, shard) in shards.iter().enumerate() {
        let id = id.to_string();
        for failure in Failure::ALL {
            let count = shard.auth_failures[failure as usize].load(Relaxed);
            out.sample(name, &[("shard", &id), ("reason", failure.name())], count);
        }
    }

    render_event_sinks(&mut out, metrics);

    let name = "shardmq_event_loop_lag_seconds";
    out.family(
        name,
        "histogram",
        "How late each shard's 250 ms timer fired: how long a ready task waited for \
         the shard's event loop.",
    );
    for (id, shard) in shards.iter().enumerate() {
        let id = id.to_string();
        let lag = shard.lag.snapshot();
        let bucket = format!("{name}_bucket");
        for (le, count) in &lag.buckets {
            out.sample(&bucket, &[("shard", &id), ("le", &le.to_string())], count);
        }
        out.sample(&bucket, &[("shard", &id), ("le", "+Inf")], lag.count);
        out.sample(&format!("{name}_sum"), &[("shard", &id)], lag.sum);
        out.sample(&format!("{name}_count"), &[("shard", &id)], lag.count);
    }
    out.0
}

/// A metric family of the event sinks: name, type, help, and its value.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&super::EventSinkMetrics) -> u64,
);

/// The Redis store's health and how long start-up loading took.
fn render_store(out: &mut Text, metrics: &Metrics) {
    out.family(
        "shardmq_store_up",
        "gauge",
        "1 while every shard's Redis connection is up; /health names the cause when 0.",
    );
    out.sample(
        "shardmq_store_up",
        &[],
        u8::from(metrics.store.down().is_none()),
    );
    out.family(
        "shardmq_store_load_seconds",
        "gauge",
        "Seconds from start to every shard having loaded the sessions the node left; absent while loading.",
    );
    if let Some(took) = metrics.store.loaded_in() {
        out.sample("shardmq_store_load_seconds", &[], took.as_secs_f64());
    }
}

/// The node's lease and what it saw of the others.
fn render_cluster(out: &mut Text, metrics: &Metrics) {
    let c = &metrics.cluster;
    let families: [(&str, &str, &str, u64); 11] = [
        (
            "shardmq_cluster_lease",
            "gauge",
            "1 while the node holds its cluster lease; /health names the cause when 0.",
            u64::from(c.no_lease().is_none()),
        ),
        (
            "shardmq_cluster_peers",
            "gauge",
            "Other nodes with a live lease.",
            c.peers.load(Relaxed),
        ),
        (
            "shardmq_cluster_joins_total",
            "counter",
            "Lives of other nodes seen joining (a restarted node joins again).",
            c.joins.load(Relaxed),
        ),
        (
            "shardmq_cluster_deaths_total",
            "counter",
            "Lives of other nodes seen dying: lease lapsed, or replaced by a new life.",
            c.deaths.load(Relaxed),
        ),
        (
            "shardmq_cluster_links_up",
            "gauge",
            "Connections to and from other nodes that have finished their handshake (one per shard and peer each way).",
            c.links_up.load(Relaxed),
        ),
        (
            "shardmq_cluster_messages_out_total",
            "counter",
            "Messages sent to other nodes (forwarded publishes, barriers, answers; resends included).",
            c.messages_out.load(Relaxed),
        ),
        (
            "shardmq_cluster_bytes_out_total",
            "counter",
            "Bytes written to links to other nodes.",
            c.bytes_out.load(Relaxed),
        ),
        (
            "shardmq_cluster_messages_in_total",
            "counter",
            "Messages received from other nodes, each once.",
            c.messages_in.load(Relaxed),
        ),
        (
            "shardmq_cluster_link_drops_total",
            "counter",
            "Messages for another node dropped because its link buffer was full (the node unreachable for long).",
            c.link_drops.load(Relaxed),
        ),
        (
            "shardmq_cluster_reaps_total",
            "counter",
            "Dead lives of other nodes reaped here: their sessions adopted or left to others, then their routes removed.",
            c.reaps.load(Relaxed),
        ),
        (
            "shardmq_cluster_adopted_total",
            "counter",
            "Sessions of dead nodes adopted by this node.",
            c.adopted.load(Relaxed),
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        out.sample(name, &[], value);
    }
}

/// The `[[events.sinks]]` counters, node-wide, by sink (its address).
fn render_event_sinks(out: &mut Text, metrics: &Metrics) {
    let sinks = metrics.event_sinks();
    let families: [Family; 4] = [
        (
            "shardmq_events_sent_total",
            "counter",
            "Events written to the sink's consumer connections (replays count again).",
            |s| s.sent(),
        ),
        (
            "shardmq_events_connects_total",
            "counter",
            "Connections to the sink's consumer established.",
            |s| s.connects(),
        ),
        (
            "shardmq_events_disconnects_total",
            "counter",
            "Connections to the sink's consumer lost; each is retried with back-off.",
            |s| s.disconnects(),
        ),
        (
            "shardmq_events_buffered_bytes",
            "gauge",
            "Bytes held for the sink: batches not yet written, frames not yet acked.",
            |s| s.buffered(),
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        for sink in sinks {
            out.sample(name, &[("sink", &sink.name)], value(sink.as_ref()));
        }
    }
    let name = "shardmq_events_dropped_total";
    out.family(
        name,
        "counter",
        "Events dropped because the sink's buffer (buffer-bytes per shard) was full: \
         the consumer is slow or absent. By sink and hook.",
    );
    for sink in sinks {
        for &hook in &sink.hooks {
            out.sample(
                name,
                &[("sink", &sink.name), ("hook", EVENT_HOOKS[hook])],
                sink.dropped(hook),
            );
        }
    }
}

/// The text being built. Writing to a `String` cannot fail.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// One line. Label values are escaped: ACL labels come from the config.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.0.push_str("\\\\"),
                        '"' => self.0.push_str("\\\""),
                        '\n' => self.0.push_str("\\n"),
                        c => self.0.push(c),
                    }
                }
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}
