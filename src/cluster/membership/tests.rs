use std::time::Duration;

use redis::Value;
use shards::test_executor;

use super::*;
use crate::store::layout::Keys;
use crate::store::redis::test_server::RedisServer;
use crate::store::redis::{RedisClient, RedisConfig, Script};

fn member(node: &str, boot: &str, lease_end: u64) -> Member {
    Member {
        node: node.into(),
        boot: boot.into(),
        addr: format!("127.0.0.1:7{node}"),
        lease_end,
    }
}

#[test]
fn a_view_reports_joins_restarts_and_ended_leases() {
    let mut view = View::default();
    let a1 = member("1", "a1", 1_300);
    let b1 = member("2", "b1", 1_300);
    assert_eq!(
        view.apply(1_000, &[a1.clone(), b1.clone()]),
        [Change::Joined(a1.clone()), Change::Joined(b1.clone())]
    );
    assert_eq!(view.apply(1_100, &[a1.clone(), b1.clone()]), []);
    // Node 1 restarted (a new boot), node 2's lease ran out.
    let a2 = member("1", "a2", 1_600);
    assert_eq!(
        view.apply(1_300, &[a2.clone(), b1]),
        [
            Change::Died {
                node: "1".into(),
                boot: "a1".into()
            },
            Change::Died {
                node: "2".into(),
                boot: "b1".into()
            },
            Change::Joined(a2.clone()),
        ]
    );
    assert_eq!(view.alive().collect::<Vec<_>>(), [&a2]);
}

#[test]
fn replies_parse_or_are_refused() {
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    assert_eq!(
        Members::parse(Value::Array(vec![bulk("superseded"), bulk("b2|x")])),
        Ok(Members::Superseded { by: "b2|x".into() })
    );
    let listed = Value::Array(vec![
        bulk("ok"),
        Value::Int(1_000),
        Value::Nil,
        Value::Array(vec![bulk("n1"), bulk("1300"), bulk("b1|127.0.0.1:7000")]),
    ]);
    assert_eq!(
        Members::parse(listed),
        Ok(Members::Listed {
            now: 1_000,
            previous: None,
            members: vec![Member {
                node: "n1".into(),
                boot: "b1".into(),
                addr: "127.0.0.1:7000".into(),
                lease_end: 1_300
            }],
            lost: false,
        })
    );
    for bad in [
        Value::Nil,
        Value::Array(vec![bulk("ok"), Value::Int(1), Value::Nil]),
        Value::Array(vec![
            bulk("ok"),
            Value::Int(1),
            Value::Nil,
            Value::Array(vec![bulk("n1"), bulk("1300"), bulk("no separator")]),
        ]),
    ] {
        assert!(Members::parse(bad).is_err());
    }
}

/// The lease the test's nodes hold.
const LEASE_MS: u64 = 1_000;

/// One life of a node: its lease call.
struct Life<'a> {
    script: &'a Script,
    keys: &'a Keys,
    node: &'static str,
    boot: &'static str,
}

impl Life<'_> {
    async fn lease(&self, client: &RedisClient, join: bool) -> Members {
        let call = self
            .script
            .call()
            .key(self.keys.leases())
            .key(self.keys.nodes())
            .arg(self.node)
            .arg(self.boot)
            .arg(format!("127.0.0.1:7{}", self.node))
            .arg(LEASE_MS)
            .arg(if join { "1" } else { "0" });
        let reply = client.eval(&call).await.expect("the lease script runs");
        Members::parse(reply).expect("a lease reply")
    }
}

fn listed(m: Members) -> (u64, Option<String>, Vec<Member>) {
    match m {
        Members::Listed {
            now,
            previous,
            members,
            ..
        } => (now, previous, members),
        other => panic!("not a listing: {other:?}"),
    }
}

/// Against real Redis: leases timed by Redis's clock; a node that stops
/// renewing is dead to the others within one lease; a new life of a node
/// replaces the old one at once, and the old one learns it was superseded.
#[test]
fn leases_in_redis_tell_joins_deaths_and_new_lives() {
    let server = RedisServer::start();
    test_executor(move || async move {
        let client = RedisClient::start(RedisConfig::new(server.url()));
        assert!(client.wait_up(Duration::from_secs(5)).await);
        let script = Script::new("lease", LEASE);
        let keys = Keys::new("t:");
        let a1 = Life {
            script: &script,
            keys: &keys,
            node: "1",
            boot: "a1",
        };
        let b1 = Life {
            script: &script,
            keys: &keys,
            node: "2",
            boot: "b1",
        };
        let a2 = Life {
            script: &script,
            keys: &keys,
            node: "1",
            boot: "a2",
        };

        listed(a1.lease(&client, true).await);
        let (now, previous, members) = listed(b1.lease(&client, true).await);
        assert_eq!(previous, None);
        let mut view = View::default();
        let joined = view.apply(now, &members);
        assert_eq!(joined.len(), 2, "both alive: {joined:?}");

        // Node 1 stops renewing; node 2 renews within node 1's lease (a
        // generous margin on a busy machine), then past it (later only makes
        // it more so).
        glommio::timer::sleep(Duration::from_millis(300)).await;
        let (now, _, members) = listed(b1.lease(&client, false).await);
        assert_eq!(
            view.apply(now, &members),
            [],
            "node 1 still within its lease"
        );
        glommio::timer::sleep(Duration::from_millis(LEASE_MS)).await;
        let (now, _, members) = listed(b1.lease(&client, false).await);
        assert_eq!(
            view.apply(now, &members),
            [Change::Died {
                node: "1".into(),
                boot: "a1".into()
            }]
        );

        // A new life of node 1 joins at once and names the one it replaces;
        // the old life, renewing, is told it was superseded.
        let (_, previous, _) = listed(a2.lease(&client, true).await);
        assert_eq!(previous.as_deref(), Some("a1|127.0.0.1:71"));
        assert_eq!(
            a1.lease(&client, false).await,
            Members::Superseded {
                by: "a2|127.0.0.1:71".into()
            }
        );
        let (now, _, members) = listed(b1.lease(&client, false).await);
        assert!(
            matches!(&view.apply(now, &members)[..], [Change::Joined(m)] if m.boot == "a2"),
            "the new life joined"
        );
    });
}
