//! The bundled load tester: open-loop MQTT load on shardmq's own codec and runtime.
//!
//! # Layout
//! - `cli`: the command line ([`Args`]).
//! - `scenario`: p2p, fan-out, fan-in as [`scenario::Plan`]s of connections.
//! - `schedule`: the open-loop schedule of intended send times.
//! - `payload`: the header every message carries (publisher, sequence, intended time).
//! - `client`: a minimal MQTT client on a glommio socket.
//! - `publisher`, `subscriber`: what each connection does.
//! - `sequence`: loss, duplicate and reorder detection per publisher.
//! - `stats`: counters and HdrHistogram latency (µs); the live progress feed.
//! - `runner`: executors pinned per core, connections spread over them.
//! - `report`: the final table and the JSON.
//!
//! # Why open loop
//! Closed-loop tools wait for the broker before sending the next message, so a broker
//! stall lowers the send rate instead of showing as latency (coordinated omission).
//! Here each message's intended send time comes from the target rate alone and travels
//! in its payload; latency is receipt minus that time.

pub mod cli;
pub mod client;
mod idle;
pub mod payload;
mod publisher;
pub mod report;
pub mod rss;
pub mod runner;
pub mod scenario;
pub mod schedule;
pub mod sequence;
pub mod stats;
mod storm;
mod subscriber;

use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use shardmq::protocol::QoS;

pub use cli::Args;
pub use report::{Latency, Report};

use cli::{Rate, Scenario};
use runner::{Shared, Spec};

/// Checks `args`, runs the scenario and returns the figures. With `progress`, prints a
/// progress line to stderr once a second.
pub fn execute(args: &Args, progress: bool) -> anyhow::Result<Report> {
    let spec = spec(args)?;
    let rss_before = args.broker_pid.map(rss::rss_kib).transpose()?;
    let shared = Arc::new(Shared::default());
    let stop = Arc::new(AtomicBool::new(false));
    let rss_connected = args.broker_pid.map(|pid| {
        let (shared, stop) = (shared.clone(), stop.clone());
        // Halfway through the measured window: every connection is up and settled.
        let at = spec.warmup + spec.duration / 2;
        std::thread::spawn(move || sample_rss(pid, &shared, &stop, at))
    });
    let printer = progress.then(|| {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || print_progress(&shared, &stop))
    });
    let result = runner::run(spec.clone(), shared.clone());
    stop.store(true, Ordering::Release);
    if let Some(printer) = printer {
        let _ = printer.join();
    }
    let rss_connected = rss_connected.and_then(|t| t.join().ok().flatten());
    let stats = result?;
    let connections = shared.live.connected.load(Ordering::Relaxed);
    let per_connection = match (rss_before, rss_connected) {
        (Some(before), Some(after)) if connections > 0 => {
            Some((after as f64 - before as f64) * 1024.0 / connections as f64)
        }
        _ => None,
    };
    let secs = spec.duration.as_secs_f64();
    let per_message = match args.scenario {
        Scenario::FanOut => u64::from(spec.plan.subscribers),
        _ => 1,
    };
    Ok(Report {
        scenario: args.scenario.to_string(),
        broker: args.broker.clone(),
        mqtt_version: args.mqtt_version.to_string(),
        qos: args.qos,
        payload: args.payload,
        rate: args.rate.to_string(),
        publishers: spec.plan.publishers,
        subscribers: spec.plan.subscribers,
        duration_s: secs,
        warmup_s: spec.warmup.as_secs_f64(),
        sent: stats.sent,
        acked: stats.acked,
        received: stats.received,
        expected: stats.sent * per_message,
        lost: stats.lost,
        duplicated: stats.duplicated,
        reordered: stats.reordered,
        sent_per_sec: stats.sent as f64 / secs,
        received_per_sec: stats.received as f64 / secs,
        latency_us: Latency::of(&stats),
        distribution: report::Distribution::of(&stats.latency),
        connections,
        broker_rss_kib_before: rss_before,
        broker_rss_kib_connected: rss_connected,
        broker_rss_bytes_per_connection: per_connection.map(|b| b.round()),
        errors: stats.error_count(),
        error_reasons: stats.errors,
    })
}

fn spec(args: &Args) -> anyhow::Result<Spec> {
    let plan = scenario::plan(args)?;
    let broker = args
        .broker
        .to_socket_addrs()
        .with_context(|| format!("--broker {}: cannot resolve; give HOST:PORT", args.broker))?
        .next()
        .with_context(|| format!("--broker {}: resolves to no address", args.broker))?;
    let qos = match args.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => bail!("--qos {} is not a QoS; use 0, 1 or 2", args.qos),
    };
    if args.duration.is_zero() {
        bail!("--duration must be above 0");
    }
    let cores = if args.cores.is_empty() {
        shards::online_cpus()
            .context("cannot list online CPUs; give --cores")?
            .into_iter()
            .collect()
    } else {
        args.cores.clone()
    };
    if let Rate::PerSec(r) = args.rate {
        if r < f64::from(plan.publishers) / 3600.0 {
            bail!("--rate {r} is too low for {} publishers", plan.publishers);
        }
    }
    Ok(Spec {
        broker,
        plan,
        qos,
        version: args.mqtt_version.codec(),
        payload: args.payload,
        rate: args.rate,
        warmup: args.warmup,
        duration: args.duration,
        cores,
    })
}

/// The broker's RSS once the run has been going for `at`; `None` if the run ends
/// first or the process is gone.
fn sample_rss(pid: u32, shared: &Shared, stop: &AtomicBool, at: Duration) -> Option<u64> {
    let tick = Duration::from_millis(10);
    while !shared.started() {
        if stop.load(Ordering::Acquire) {
            return None;
        }
        std::thread::sleep(tick);
    }
    let due = std::time::Instant::now() + at;
    while std::time::Instant::now() < due {
        if stop.load(Ordering::Acquire) {
            return None;
        }
        std::thread::sleep(tick);
    }
    rss::rss_kib(pid).ok()
}

fn print_progress(shared: &Shared, stop: &AtomicBool) {
    let (mut sent, mut received) = (0, 0);
    let mut second = 0;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_secs(1));
        if stop.load(Ordering::Acquire) {
            break;
        }
        if !shared.started() {
            eprintln!("connecting...");
            continue;
        }
        second += 1;
        let live = &shared.live;
        let s = live.sent.load(Ordering::Relaxed);
        let r = live.received.load(Ordering::Relaxed);
        eprintln!(
            "[{second:>4}s] sent {:>9}/s  received {:>9}/s  p99 {:>7} µs  errors {}",
            s - sent,
            r - received,
            live.take_p99(),
            live.errors.load(Ordering::Relaxed)
        );
        (sent, received) = (s, r);
    }
}
