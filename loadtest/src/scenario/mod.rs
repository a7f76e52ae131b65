//! Scenarios as plans: which connections to open, what each one does.

mod conn_storm;
mod fan_in;
mod fan_out;
pub mod fleet;
mod idle;
mod mixed;
mod p2p;

use anyhow::bail;
use shardmq::topic::{TopicFilter, TopicName};

use crate::cli::{Args, Scenario};

/// What one connection does.
#[derive(Debug, Clone)]
pub enum Role {
    Publisher {
        /// Unique in the run; carried in every payload.
        id: u32,
        topic: TopicName,
    },
    Subscriber {
        filter: TopicFilter,
        /// A member of a share group: sequences are checked over the whole group.
        shared: bool,
    },
    /// Subscribes to `own`, then publishes to `peer` and receives on one connection.
    Mixed {
        /// As a publisher's.
        id: u32,
        own: TopicFilter,
        peer: TopicName,
    },
    /// fleet: like `Mixed`, on one socket and one task, at the client's own slow
    /// rate; `reconnects`: leaves and comes back mid-run (the reconnect storm).
    Fleet {
        id: u32,
        own: TopicFilter,
        peer: TopicName,
        reconnects: bool,
    },
    /// Connects and stays silent until the end.
    Idle,
    /// Connects, subscribes and disconnects, again and again, on the schedule.
    Storm {
        /// Index among the workers, for its share of the schedule.
        worker: u32,
    },
}

/// Every connection of a run, in the order they are spread over the executors.
#[derive(Debug, Clone)]
pub struct Plan {
    pub roles: Vec<Role>,
    pub publishers: u32,
    pub subscribers: u32,
    /// Deliveries one publish makes: every subscriber of fan-out, else 1.
    pub deliveries_per_message: u32,
}

impl Plan {
    fn new(roles: Vec<Role>) -> Plan {
        let publishers = roles
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Role::Publisher { .. } | Role::Mixed { .. } | Role::Fleet { .. }
                )
            })
            .count() as u32;
        let subscribers = roles
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Role::Subscriber { .. } | Role::Mixed { .. } | Role::Fleet { .. }
                )
            })
            .count() as u32;
        Plan {
            roles,
            publishers,
            subscribers,
            deliveries_per_message: 1,
        }
    }
}

/// Clients when --clients is not given.
pub fn default_clients(scenario: Scenario) -> u32 {
    match scenario {
        Scenario::Mixed | Scenario::Fleet => 1000,
        _ => 1,
    }
}

/// The plan for `args.scenario`, or why it cannot run.
pub fn plan(args: &Args) -> anyhow::Result<Plan> {
    let clients = args.clients.unwrap_or(default_clients(args.scenario));
    let publishers = args.publishers.unwrap_or(clients);
    if args.reconnect_fraction.is_some() && args.scenario != Scenario::Fleet {
        bail!("--reconnect-fraction is for fleet only");
    }
    if args.share_group.is_some() && args.scenario != Scenario::FanIn {
        bail!("--share-group is for fan-in only (N publishers to a $share group)");
    }
    Ok(match args.scenario {
        Scenario::P2p => p2p::plan(publishers),
        Scenario::FanOut => fan_out::plan(
            args.publishers.unwrap_or(1),
            args.subscribers.unwrap_or(clients),
        ),
        Scenario::FanIn => match (&args.share_group, args.subscribers) {
            (None, Some(n)) if n > 1 => bail!(
                "fan-in has one subscriber; to spread the messages over {n}, make them a \
                 share group with --share-group NAME"
            ),
            (None, _) => fan_in::plan(publishers, None),
            (Some(name), members) => {
                fan_in::plan(publishers, Some((name.as_str(), members.unwrap_or(2))))
            }
        },
        Scenario::Idle => idle::plan(clients),
        Scenario::ConnStorm => conn_storm::plan(clients),
        Scenario::Mixed => {
            if clients < 2 {
                bail!("mixed needs at least 2 --clients: each publishes to the next one's topic");
            }
            mixed::plan(clients)
        }
        Scenario::Fleet => {
            if clients < 2 {
                bail!("fleet needs at least 2 --clients: each publishes to the next one's topic");
            }
            let fraction = args.reconnect_fraction.unwrap_or(0.0);
            fleet::plan(clients, fleet::reconnecting(clients, fraction))
        }
    })
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s.to_owned()).expect("load-test topics are valid")
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s.to_owned()).expect("load-test filters are valid")
}
