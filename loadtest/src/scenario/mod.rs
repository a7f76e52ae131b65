//! Scenarios as plans: which connections to open, what each one does.

mod conn_storm;
mod fan_in;
mod fan_out;
mod idle;
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
}

impl Plan {
    fn new(roles: Vec<Role>) -> Plan {
        let publishers = roles
            .iter()
            .filter(|r| matches!(r, Role::Publisher { .. }))
            .count() as u32;
        let subscribers = roles
            .iter()
            .filter(|r| matches!(r, Role::Subscriber { .. }))
            .count() as u32;
        Plan {
            roles,
            publishers,
            subscribers,
        }
    }
}

/// The plan for `args.scenario`, or why it cannot run.
pub fn plan(args: &Args) -> anyhow::Result<Plan> {
    let publishers = args.publishers.unwrap_or(args.clients);
    Ok(match args.scenario {
        Scenario::P2p => p2p::plan(publishers),
        Scenario::FanOut => fan_out::plan(
            args.publishers.unwrap_or(1),
            args.subscribers.unwrap_or(args.clients),
        ),
        Scenario::FanIn => fan_in::plan(publishers),
        Scenario::Idle => idle::plan(args.clients),
        Scenario::ConnStorm => conn_storm::plan(args.clients),
        Scenario::Mixed => bail!(
            "scenario `{}` is not implemented yet; p2p, fan-out, fan-in, conn-storm and idle are",
            args.scenario
        ),
    })
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s.to_owned()).expect("load-test topics are valid")
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s.to_owned()).expect("load-test filters are valid")
}
