//! conn-storm: --clients workers that connect, subscribe and disconnect at the target
//! aggregate rate (--rate, in connections per second).

use super::{Plan, Role};

pub fn plan(workers: u32) -> Plan {
    Plan::new((0..workers).map(|worker| Role::Storm { worker }).collect())
}
