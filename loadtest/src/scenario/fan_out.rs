//! fan-out: P publishers to S subscribers, all on one topic.

use super::{filter, topic, Plan, Role};

const TOPIC: &str = "loadtest/fan-out";

/// Subscribers first, so each publisher's messages reach all of them.
pub fn plan(publishers: u32, subscribers: u32) -> Plan {
    let subs = (0..subscribers).map(|_| Role::Subscriber {
        filter: filter(TOPIC),
        shared: false,
    });
    let pubs = (0..publishers).map(|id| Role::Publisher {
        id,
        topic: topic(TOPIC),
    });
    Plan {
        deliveries_per_message: subscribers,
        ..Plan::new(subs.chain(pubs).collect())
    }
}
