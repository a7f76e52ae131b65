//! The deterministic simulation of issue 14 (STYLE.md, "The store and the
//! cluster"): the takeover, link and reaper state machines of several nodes,
//! a model of the store, and a network that drops, delays, duplicates and
//! reorders, all driven by one seed. After every step it checks one
//! connection per client id, generations that only grow, no acknowledged
//! message lost, each will at most once, and the routes of clean sessions;
//! at the end of a quiet phase, that every acknowledged message arrived.
//!
//! - `SHARDMQ_SIM_SEED=<n>` replays one seed (and prints its trace);
//! - `SHARDMQ_SIM_SEEDS=<n>` runs that many seeds instead of [`SEEDS`].
//!
//! A failing seed, once fixed, goes into [`REGRESSIONS`] with what it found.

mod node;
mod rng;
mod store;
mod world;

use std::time::Instant;

use crate::cluster::takeover::Breaks;
use world::World;

/// Seeds a `cargo test` run goes through.
const SEEDS: u64 = 2000;

/// Every seed that ever failed, and what it found. They run first.
const REGRESSIONS: &[(u64, &str)] = &[];

fn run(seed: u64, breaks: Breaks) -> Result<world::Stats, String> {
    World::new(seed, breaks).run()
}


fn seeds() -> u64 {
    std::env::var("SHARDMQ_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS)
}

fn fail(seed: u64, e: &str) -> ! {
    panic!(
        "simulation seed {seed} failed: {e}\n\
         replay: SHARDMQ_SIM_SEED={seed} cargo test --lib cluster::sim::replay -- --nocapture"
    )
}

#[test]
fn regressions() {
    for (seed, _what) in REGRESSIONS {
        if let Err(e) = run(*seed, Breaks::default()) {
            fail(*seed, &e);
        }
    }
}

#[test]
fn seeded_runs() {
    let started = Instant::now();
    let n = seeds();
    let mut total = world::Stats::default();
    for seed in 0..n {
        match run(seed, Breaks::default()) {
            Ok(s) => {
                total.steps += s.steps;
                total.acked += s.acked;
                total.excused += s.excused;
                total.kills += s.kills;
                total.wills += s.wills;
                total.stale_refused += s.stale_refused;
            }
            Err(e) => fail(seed, &e),
        }
    }
    eprintln!("{n} seeds in {:?}: {total:?}", started.elapsed());
}

#[test]
fn replay() {
    let Some(seed) = std::env::var("SHARDMQ_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    match run(seed, Breaks::default()) {
        Ok(s) => eprintln!("seed {seed} passes: {s:?}"),
        Err(e) => fail(seed, &e),
    }
}

/// Each deliberate break makes some seed fail with the message expected
/// (TESTING.md, "Deliberate breaks (issue 14, simulation)"); the first
/// failure is printed.
fn caught(mut world: impl FnMut(u64) -> World, breaks: Breaks, expect: &str) {
    for seed in 0..seeds() {
        if let Err(e) = world(seed).run() {
            let first = e.lines().next().unwrap_or("").to_owned();
            assert!(
                first.contains(expect),
                "{breaks:?}: seed {seed} failed otherwise: {first}"
            );
            eprintln!("{breaks:?}: seed {seed}: {first}");
            return;
        }
    }
    panic!("no seed of {} caught {breaks:?}", seeds());
}

#[test]
fn break_keep_client_is_caught() {
    let breaks = Breaks {
        keep_client: true,
        ..Breaks::default()
    };
    caught(|s| World::new(s, breaks), breaks, "is connected twice");
}

#[test]
fn break_no_forwarding_is_caught() {
    let breaks = Breaks {
        no_forwarding: true,
        ..Breaks::default()
    };
    caught(
        |s| World::new(s, breaks),
        breaks,
        "into a session it handed over",
    );
    // And by the loss check alone.
    caught(
        |s| World::without_node_checks(s, breaks),
        breaks,
        "acknowledged messages lost",
    );
}

#[test]
fn break_accept_stale_is_caught() {
    let breaks = Breaks {
        accept_stale: true,
        ..Breaks::default()
    };
    caught(|s| World::new(s, breaks), breaks, "went from generation");
}

#[test]
fn break_skip_takeover_is_caught() {
    let breaks = Breaks {
        skip_takeover: true,
        ..Breaks::default()
    };
    caught(|s| World::new(s, breaks), breaks, "is connected twice");
}
