//! fan-in: N publishers to one subscriber (each on its own topic level, one `+`
//! filter).

use super::{filter, topic, Plan, Role};

pub fn plan(publishers: u32) -> Plan {
    let sub = Role::Subscriber {
        filter: filter("loadtest/fan-in/+"),
    };
    let pubs = (0..publishers).map(|id| Role::Publisher {
        id,
        topic: topic(&format!("loadtest/fan-in/{id}")),
    });
    Plan::new(std::iter::once(sub).chain(pubs).collect())
}
