//! The deterministic simulation of issue 14 (STYLE.md, "The store and the
//! cluster"): the takeover, link and reaper state machines of several nodes,
//! a model of the store, and a network that drops, delays, duplicates and
//! reorders, all driven by one seed. After every step it checks one
//! connection per client id, generations that only grow, no acknowledged
//! message lost, each will at most once, and the routes of clean sessions;
//! at the end of a quiet phase, that every acknowledged message arrived.
//!
//! - `SHARDMQ_SIM_SEED=<n>` replays one seed (and prints its trace);
//! - `SHARDMQ_SIM_SEEDS=<n>` runs that many seeds instead of [`SEEDS`],
//!   from `SHARDMQ_SIM_FIRST` (default 0).
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

/// Every seed that ever failed, and what it found (with the simulation as it
/// was then; the schedule a seed draws changes when the simulation does, so
/// these are kept as seeds that once mattered, and `seeded_runs` covers them
/// too).
const REGRESSIONS: &[(u64, &str)] = &[
    (1, "two claims of one node waited on each other through a peer: a node may not claim again while it still passes a session on"),
    (0, "a Claiming node that won against a stale takeover left its requester waiting: stale takeovers are answered with done"),
    (0, "a hand-over whose predecessor's own claim was unfinished when it died stranded a live holder: a dead predecessor means asking every live node"),
    (23, "the quiet phase ended while hand-overs were unfinished (simulation bug)"),
    (36, "a handed-over node re-aimed at a newer claim left the first taker waiting: it answers newer takeovers with done"),
    (39, "a restored hand-over was judged by a stale clean session of the node (simulation bug)"),
    (133, "messages accepted into a session older than a clean start were counted (simulation bookkeeping by generation)"),
    (159, "an adoption's reply after a newer claim of the same node lowered its generation: adoptions older than what is held are ignored"),
    (329, "a handed-over node whose taker died forwarded into the void: it re-aims at the newest claim that asked"),
    (82, "an adoption over an outdated claim of the node left its CONNECT waiting forever: it is refused"),
    (119, "an adoption replaced a hand-over still being passed on, and its taker waited forever: it is released"),
    (901, "a Claiming node kept only the newest takeover and dropped an older one unanswered"),
    (1904, "a restarted node's life, not listed yet, was taken for dead: two connections of one id"),
    (259, "a life that died before this node's first listing was presumed alive forever: two listings prove it dead"),
    (2015, "a claim whose reply named this node, from an adoption whose reply was not in yet, asked no one: two connections"),
    (2634, "the quiet phase ended before killed leases ran out (simulation bug)"),
    (2292, "with the wills' end check: a late adoption reply rewrote a newer session's generation in the node (simulation bug)"),
    (7240, "a claim between an adoption (reply not in yet) and this one asked only its live predecessor, and a node holding the client from before the dead claim kept it: a claim after an unsettled predecessor asks everyone"),
    (1346, "a node just started, with no lease listing yet, asked no one: no CONNECT before the first listing"),
    (2334, "an unsettled predecessor that joined after this node's listing was not asked: it is, whatever the listing"),
    (3192, "the resend copy of a hand-over the peer had received counted as held, so a kill did not excuse what died with the peer (simulation bug)"),
    (3705, "a late adoption reply after a clean session ended here made the node the owner at an older generation: ended ids are remembered a while"),
    (96243, "a hand-over forwarded around a chain came back to its owner while it claimed again, and was dropped: a Claiming node holding the session restores it"),
];

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
    // A long soak run starts past the seeds CI runs.
    let first: u64 = std::env::var("SHARDMQ_SIM_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut total = world::Stats::default();
    for seed in first..first + n {
        match run(seed, Breaks::default()) {
            Ok(s) => {
                total.steps += s.steps;
                total.acked += s.acked;
                total.excused += s.excused;
                total.kills += s.kills;
                total.wills += s.wills;
                total.wills_lost += s.wills_lost;
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
