//! idle: N connections that connect and stay silent, to measure what an idle
//! connection costs the broker (its RSS, with `--broker-pid`).

use super::{Plan, Role};

pub fn plan(clients: u32) -> Plan {
    Plan::new((0..clients).map(|_| Role::Idle).collect())
}
