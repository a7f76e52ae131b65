//! The session scripts ([`super::layout`]) against a real `redis-server`:
//! the queue of `durability = "messages"`, fencing and expiry.

use std::time::Duration;

use ::redis::{cmd, Value};
use shards::test_executor;

use super::layout::{Keys, CLAIM, RELEASE, WRITE};
use super::redis::test_server::RedisServer;
use super::redis::{RedisClient, RedisConfig, Script};

struct Scripts {
    client: RedisClient,
    keys: Keys,
    claim: Script,
    write: Script,
}

impl Scripts {
    async fn start(server: &RedisServer) -> Scripts {
        let client = RedisClient::start(RedisConfig::new(server.url()));
        assert!(
            client.wait_up(Duration::from_secs(5)).await,
            "{:?}",
            client.status()
        );
        Scripts {
            client,
            keys: Keys::new("t:"),
            claim: Script::new("claim", CLAIM),
            write: Script::new("write", WRITE),
        }
    }

    /// Claims `id` for a CONNECT; returns the reply.
    async fn claim(&self, id: &str, clean: bool) -> Vec<Value> {
        self.claim_as(id, "n1#1", clean).await
    }

    /// Claims `id` for a CONNECT by `owner`.
    async fn claim_as(&self, id: &str, owner: &str, clean: bool) -> Vec<Value> {
        let call = self
            .claim
            .call()
            .key(self.keys.session(id))
            .key(self.keys.subscriptions(id))
            .key(self.keys.queue(id))
            .key(
                self.keys
                    .node_sessions(owner.split('#').next().unwrap_or(owner)),
            )
            .arg(owner)
            .arg(if clean { "1" } else { "0" })
            .arg("")
            .arg("1")
            .arg(id);
        match self.client.eval(&call).await {
            Ok(Value::Array(parts)) => parts,
            other => panic!("claim: {other:?}"),
        }
    }

    /// One WRITE call of one operation: `[op, generation, args...]`.
    async fn write(&self, id: &str, op: &[&str]) -> Result<Value, String> {
        self.write_all(id, op[1], &[(op[0], &op[2..])]).await
    }

    /// One WRITE call of several operations.
    async fn write_all(
        &self,
        id: &str,
        generation: &str,
        ops: &[(&str, &[&str])],
    ) -> Result<Value, String> {
        let mut call = self
            .write
            .call()
            .key(self.keys.session(id))
            .key(self.keys.subscriptions(id))
            .key(self.keys.queue(id))
            .arg(generation);
        for (op, args) in ops {
            call = call.arg(*op).arg(args.len()).arg(*args);
        }
        self.client.eval(&call).await.map_err(|e| e.to_string())
    }

    async fn run(&self, c: &mut ::redis::Cmd) -> Value {
        self.client.cmd(c).await.expect("command")
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

#[test]
fn the_queue_is_fenced_trimmed_expired_and_returned_by_the_claim() {
    let server = RedisServer::start();
    test_executor(move || async move {
        let s = Scripts::start(&server).await;
        let q = s.keys.queue("c");
        let g = int(&s.claim("c", false).await[0]).to_string();
        assert_eq!(s.write("c", &["online", &g, "60"]).await, Ok(Value::Int(1)));
        s.write("c", &["queue", &g, "1", "first", "9"])
            .await
            .unwrap();
        s.write("c", &["queue", &g, "2", "second"]).await.unwrap();
        s.write("c", &["sent", &g, "2", "10"]).await.unwrap();
        s.write("c", &["queue", &g, "3", "third"]).await.unwrap();
        s.write("c", &["trim", &g, "1"]).await.unwrap();
        let fields = s.run(cmd("HGETALL").arg(&q)).await;
        let Value::Array(fields) = fields else {
            panic!("{fields:?}")
        };
        assert_eq!(fields.len(), 6, "2 and its packet id, 3: {fields:?}");
        // PUBREC of 2: marked released; the trim takes the mark too.
        s.write("c", &["released", &g, "2"]).await.unwrap();
        assert_eq!(
            s.run(cmd("HGET").arg(&q).arg("r2")).await,
            Value::BulkString(b"1".to_vec())
        );

        // Emptied, the queue key goes; offline with a 2 s expiry, a message
        // queued then makes a new one, which expires with the session.
        s.write("c", &["trim", &g, "2"]).await.unwrap();
        s.write("c", &["trim", &g, "3"]).await.unwrap();
        assert_eq!(
            int(&s.run(cmd("EXISTS").arg(&q)).await),
            0,
            "{:?}",
            s.run(cmd("HGETALL").arg(&q)).await
        );
        s.write("c", &["offline", &g, "2000"]).await.unwrap();
        s.write("c", &["queue", &g, "4", "fourth"]).await.unwrap();
        let ttl = int(&s.run(cmd("PTTL").arg(&q)).await);
        assert!((1..=2000).contains(&ttl), "queue TTL {ttl}");

        // A new claim takes the TTL off and returns the queue; the old
        // generation's writes are refused.
        let reply = s.claim("c", false).await;
        let g2 = int(&reply[0]).to_string();
        let Value::Array(queue) = &reply[6] else {
            panic!("{reply:?}")
        };
        assert_eq!(queue.len(), 2, "4 only: {queue:?}");
        assert_eq!(int(&s.run(cmd("PTTL").arg(&q)).await), -1);
        let stale = s.write("c", &["queue", &g, "5", "stale"]).await;
        assert!(
            stale.is_err_and(|e| e.contains("STALE")),
            "a stale queue write"
        );
        let stale = s.write("c", &["trim", &g, "2"]).await;
        assert!(stale.is_err_and(|e| e.contains("STALE")), "a stale trim");

        // A clean start empties it; a removal deletes it.
        s.write("c", &["queue", &g2, "5", "fifth"]).await.unwrap();
        let reply = s.claim("c", true).await;
        assert_eq!(int(&s.run(cmd("EXISTS").arg(&q)).await), 0, "{reply:?}");
        let g3 = int(&reply[0]).to_string();
        s.write("c", &["online", &g3, "60"]).await.unwrap();
        s.write("c", &["queue", &g3, "1", "again"]).await.unwrap();
        s.write("c", &["remove", &g3]).await.unwrap();
        assert_eq!(int(&s.run(cmd("EXISTS").arg(&q)).await), 0);
    });
}

#[test]
fn an_orphan_will_stays_until_its_claimer_says_it_went_out() {
    let server = RedisServer::start();
    test_executor(move || async move {
        let s = Scripts::start(&server).await;
        let g = int(&s.claim_as("w", "a#1", false).await[0]).to_string();
        s.write("w", &["online", &g, "60", "the will"])
            .await
            .unwrap();
        // a#1 died; b#2 claims: the will is an orphan, handed over and kept.
        let reply = s.claim_as("w", "b#2", false).await;
        assert_eq!(reply[4], Value::BulkString(b"the will".to_vec()));
        // b#2 died before publishing it: c#3 gets it again.
        let reply = s.claim_as("w", "c#3", false).await;
        assert_eq!(
            reply[4],
            Value::BulkString(b"the will".to_vec()),
            "lost with b#2"
        );
        // c#3 published it and says so: nobody gets it again.
        let g = int(&reply[0]).to_string();
        s.write("w", &["willgone", &g]).await.unwrap();
        let reply = s.claim_as("w", "d#4", false).await;
        assert_eq!(reply[4], Value::Nil, "published twice");
    });
}

/// The sessions sets reaping reads: a CONNECT's claim puts the id in its
/// node's set at once (a node that dies before the reply is still reaped);
/// an adoption finding another owner names it; RELEASE takes the id out of
/// the old node's set only while the caller still owns the session.
#[test]
fn claims_fill_the_sessions_sets_that_reaping_and_release_empty() {
    let server = RedisServer::start();
    test_executor(move || async move {
        let s = Scripts::start(&server).await;
        let members = |node: &str| {
            let mut c = cmd("SMEMBERS");
            c.arg(s.keys.node_sessions(node));
            c
        };
        s.claim_as("r", "a#1", false).await;
        assert_eq!(
            s.run(&mut members("a")).await,
            Value::Array(vec![Value::BulkString(b"r".to_vec())]),
            "in a's set before a wrote anything"
        );
        s.claim_as("r", "b#1", false).await;
        // An adoption of a#1's session finds b#1's.
        let adopt = s
            .claim
            .call()
            .key(s.keys.session("r"))
            .key(s.keys.subscriptions("r"))
            .key(s.keys.queue("r"))
            .key(s.keys.node_sessions("c"))
            .arg("c#1")
            .arg("0")
            .arg("a#1")
            .arg("1")
            .arg("r");
        assert_eq!(
            s.client.eval(&adopt).await.expect("adopt"),
            Value::BulkString(b"b#1".to_vec())
        );
        let script = Script::new("release", RELEASE);
        let release = |owner: &'static str| {
            script
                .call()
                .key(s.keys.session("r"))
                .key(s.keys.node_sessions("a"))
                .arg(owner)
                .arg("r")
        };
        // Not the owner: the set keeps it. The owner: it goes.
        let not_owner = release("c#1");
        assert_eq!(
            s.client.eval(&not_owner).await.expect("release"),
            Value::Int(0)
        );
        let owner = release("b#1");
        assert_eq!(s.client.eval(&owner).await.expect("release"), Value::Int(1));
        assert_eq!(s.run(&mut members("a")).await, Value::Array(vec![]));
    });
}
