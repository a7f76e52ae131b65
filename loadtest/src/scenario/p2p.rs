//! p2p: N publishers, each paired with one subscriber on a topic of their own.

use super::{filter, topic, Plan, Role};

/// Subscriber and publisher of a pair are adjacent, so with two or more executors
/// they land on different ones and every message crosses the broker's shards too.
pub fn plan(pairs: u32) -> Plan {
    let roles = (0..pairs)
        .flat_map(|id| {
            let name = format!("loadtest/p2p/{id}");
            [
                Role::Subscriber {
                    filter: filter(&name),
                    shared: false,
                },
                Role::Publisher {
                    id,
                    topic: topic(&name),
                },
            ]
        })
        .collect();
    Plan::new(roles)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pairs_alternate_subscriber_then_publisher() {
        let plan = super::plan(3);
        assert_eq!((plan.publishers, plan.subscribers), (3, 3));
        assert!(matches!(plan.roles[0], super::Role::Subscriber { .. }));
        assert!(matches!(
            plan.roles[5],
            super::Role::Publisher { id: 2, .. }
        ));
    }
}
