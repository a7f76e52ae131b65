//! fan-in: N publishers to one subscriber, or to the members of a `$share` group (each
//! publisher on its own topic level, one `+` filter).

use super::{filter, topic, Plan, Role};

/// `group`: the share group's name and its number of members.
pub fn plan(publishers: u32, group: Option<(&str, u32)>) -> Plan {
    let subs: Vec<Role> = match group {
        None => vec![Role::Subscriber {
            filter: filter("loadtest/fan-in/+"),
            shared: false,
        }],
        Some((name, members)) => (0..members)
            .map(|_| Role::Subscriber {
                filter: filter(&format!("$share/{name}/loadtest/fan-in/+")),
                shared: true,
            })
            .collect(),
    };
    let pubs = (0..publishers).map(|id| Role::Publisher {
        id,
        topic: topic(&format!("loadtest/fan-in/{id}")),
    });
    Plan::new(subs.into_iter().chain(pubs).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_group_has_its_members_first() {
        let plan = plan(3, Some(("g", 2)));
        assert_eq!((plan.publishers, plan.subscribers), (3, 2));
        assert!(matches!(
            &plan.roles[1],
            Role::Subscriber { filter, shared: true } if filter.as_str() == "$share/g/loadtest/fan-in/+"
        ));
        assert!(matches!(plan.roles[2], Role::Publisher { id: 0, .. }));
    }
}
