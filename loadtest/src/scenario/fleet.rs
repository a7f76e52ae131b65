//! fleet: a fleet of devices. Every client holds a persistent session, subscribes to
//! a topic of its own and publishes to the next client's topic, each at a slow rate of
//! its own with jitter (`Schedule::fleet`); optionally a fraction of them disconnect
//! mid-run and come back, and what was queued for them while they were away must
//! arrive.

use super::{filter, topic, Plan, Role};

/// The topic of client `n`.
pub fn client_topic(n: u32) -> String {
    format!("loadtest/fleet/{n}")
}

/// `clients` in a ring; the `reconnecting` of them that take part in the reconnect
/// storm are spread evenly over the indices, so over every executor and source
/// address alike.
pub fn plan(clients: u32, reconnecting: u32) -> Plan {
    let roles = (0..clients)
        .map(|id| Role::Fleet {
            id,
            own: filter(&client_topic(id)),
            peer: topic(&client_topic((id + 1) % clients)),
            reconnects: reconnects(id, clients, reconnecting),
        })
        .collect();
    Plan::new(roles)
}

/// The client that publishes to client `id`'s topic: the one before it in the ring.
pub fn source_of(id: u32, clients: u32) -> u32 {
    (id + clients - 1) % clients
}

/// How many of `clients` a reconnect `fraction` (0..=1) makes reconnect.
pub fn reconnecting(clients: u32, fraction: f64) -> u32 {
    ((f64::from(clients) * fraction).round() as u32).min(clients)
}

/// Whether client `id` is one of the `k` of `n` that reconnect: exactly `k` ids, one
/// every n/k.
fn reconnects(id: u32, n: u32, k: u32) -> bool {
    let (id, n, k) = (u64::from(id), u64::from(n), u64::from(k));
    (id + 1) * k / n > id * k / n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(plan: &Plan) -> Vec<u32> {
        plan.roles
            .iter()
            .filter_map(|r| match r {
                Role::Fleet {
                    id,
                    reconnects: true,
                    ..
                } => Some(*id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn clients_form_a_ring_of_their_own_topics() {
        let plan = plan(3, 0);
        assert_eq!((plan.publishers, plan.subscribers), (3, 3));
        let Role::Fleet { id, own, peer, .. } = &plan.roles[2] else {
            panic!("{:?}", plan.roles[2]);
        };
        assert_eq!(*id, 2);
        assert_eq!(own.as_str(), "loadtest/fleet/2");
        assert_eq!(peer.as_str(), "loadtest/fleet/0");
        assert!(chosen(&plan).is_empty());
        assert_eq!(source_of(0, 3), 2);
        assert_eq!(source_of(1, 3), 0);
    }

    #[test]
    fn the_reconnect_fraction_picks_exactly_that_many_spread_out() {
        assert_eq!(reconnecting(2000, 0.1), 200);
        assert_eq!(reconnecting(3, 1.0), 3);
        assert_eq!(reconnecting(10, 0.04), 0);
        let ten_percent = chosen(&plan(2000, 200));
        assert_eq!(ten_percent.len(), 200);
        // One in every ten: as many on even indices (executor 0 of 2) as on odd.
        assert!(
            ten_percent.windows(2).all(|w| w[1] - w[0] == 10),
            "{ten_percent:?}"
        );
        assert_eq!(chosen(&plan(7, 7)), (0..7).collect::<Vec<_>>());
        let third = chosen(&plan(100, 33));
        assert_eq!(third.len(), 33);
        let evens = third.iter().filter(|i| *i % 2 == 0).count();
        assert!((14..=19).contains(&evens), "{evens} of 33 on executor 0");
    }
}
