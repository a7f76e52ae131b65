//! mixed: Courier-like. Every client holds a persistent session, subscribes to a topic
//! of its own and publishes, at a small rate, to the next client's topic: a ring, so
//! each client is both a publisher and a subscriber and receives from exactly one
//! publisher (whose sequence numbers it checks).

use super::{filter, topic, Plan, Role};

/// The topic of client `n`.
pub fn client_topic(n: u32) -> String {
    format!("loadtest/mixed/{n}")
}

pub fn plan(clients: u32) -> Plan {
    let roles = (0..clients)
        .map(|id| Role::Mixed {
            id,
            own: filter(&client_topic(id)),
            peer: topic(&client_topic((id + 1) % clients)),
        })
        .collect();
    Plan::new(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_form_a_ring() {
        let plan = plan(3);
        assert_eq!((plan.publishers, plan.subscribers), (3, 3));
        let Role::Mixed { id, own, peer } = &plan.roles[2] else {
            panic!("{:?}", plan.roles[2]);
        };
        assert_eq!(*id, 2);
        assert_eq!(own.as_str(), "loadtest/mixed/2");
        assert_eq!(peer.as_str(), "loadtest/mixed/0");
    }
}
