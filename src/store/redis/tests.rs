//! The client against a real `redis-server` (see `test_server`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ::redis::{cmd, Value};
use shards::test_executor;

use super::test_server::{free_port, RedisServer};
use super::*;

fn bulk(s: impl AsRef<[u8]>) -> Value {
    Value::BulkString(s.as_ref().to_vec())
}

/// A client that is up, or the test fails saying how it is not.
async fn up(config: RedisConfig) -> RedisClient {
    let client = RedisClient::start(config);
    assert!(
        client.wait_up(Duration::from_secs(5)).await,
        "not up: {:?}",
        client.status()
    );
    client
}

/// Waits for a status that `want` accepts, for `within` at most.
async fn status_where(
    client: &RedisClient,
    within: Duration,
    want: impl Fn(&Status) -> bool,
) -> Status {
    let deadline = Instant::now() + within;
    loop {
        let status = client.status();
        if want(&status) || Instant::now() >= deadline {
            return status;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

fn wrongtype(e: &RedisError) -> bool {
    e.server_code() == Some("WRONGTYPE")
}

#[test]
fn pipelined_replies_match_their_commands_in_order() {
    let server = RedisServer::start();
    let url = server.url();
    test_executor(move || async move {
        let c = up(RedisConfig::new(url)).await;
        // 3000 commands issued before any reply is awaited.
        let mut replies = Vec::new();
        for i in 0..1000 {
            replies.push(c.cmd(cmd("SET").arg(format!("k{i}")).arg(format!("v{i}"))));
            replies.push(c.cmd(cmd("GET").arg(format!("k{i}"))));
            replies.push(c.cmd(cmd("INCR").arg("counter")));
        }
        let mut values = Vec::new();
        for reply in replies {
            values.push(reply.await);
        }
        for (i, v) in values.chunks(3).enumerate() {
            assert_eq!(v[0], Ok(Value::Okay), "SET k{i}");
            assert_eq!(v[1], Ok(bulk(format!("v{i}"))), "GET k{i}");
            assert_eq!(v[2], Ok(Value::Int(i as i64 + 1)), "INCR #{i}");
        }
    });
    drop(server);
}

#[test]
fn dropped_replies_leave_later_ones_matched() {
    let server = RedisServer::start();
    let url = server.url();
    test_executor(move || async move {
        let c = up(RedisConfig::new(url)).await;
        let mut kept = Vec::new();
        for i in 0..200 {
            let mut reply = c.cmd(cmd("INCR").arg("n"));
            if i % 2 == 1 {
                kept.push(reply);
            } else if i % 4 == 0 {
                // Dropped while waiting, not just before its first poll.
                assert!(futures_lite::future::poll_once(&mut reply).await.is_none());
            }
        }
        for (j, reply) in kept.into_iter().enumerate() {
            assert_eq!(reply.await, Ok(Value::Int(2 * j as i64 + 2)));
        }
        assert_eq!(c.cmd(cmd("GET").arg("n")).await, Ok(bulk("200")));
    });
    drop(server);
}

#[test]
fn a_reply_larger_than_many_reads_comes_whole() {
    let server = RedisServer::start();
    let url = server.url();
    test_executor(move || async move {
        let c = up(RedisConfig::new(url)).await;
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(
            c.cmd(cmd("SET").arg("big").arg(&big[..])).await,
            Ok(Value::Okay)
        );
        let gets: Vec<_> = (0..3).map(|_| c.cmd(cmd("GET").arg("big"))).collect();
        let after = c.cmd(cmd("STRLEN").arg("big"));
        for get in gets {
            assert!(get.await == Ok(bulk(&big)), "GET big came back different");
        }
        assert_eq!(after.await, Ok(Value::Int(1_000_000)));
    });
    drop(server);
}

#[test]
fn auth_with_user_and_password_and_select_isolates_keys() {
    let server = RedisServer::start_with(&[
        "--requirepass",
        "topsecret",
        "--user",
        "alice",
        "on",
        ">alicepw",
        "~*",
        "+@all",
    ]);
    let alice_db2 = server.url_with("alice:alicepw@", 2);
    let default_db0 = server.url_with(":topsecret@", 0);
    let default_db2 = server.url_with(":topsecret@", 2);
    let nobody = server.url();
    test_executor(move || async move {
        let alice = up(RedisConfig::new(alice_db2)).await;
        assert_eq!(alice.cmd(cmd("ACL").arg("WHOAMI")).await, Ok(bulk("alice")));
        assert_eq!(
            alice.cmd(cmd("SET").arg("k").arg("in 2")).await,
            Ok(Value::Okay)
        );

        let db0 = up(RedisConfig::new(default_db0)).await;
        assert_eq!(db0.cmd(cmd("ACL").arg("WHOAMI")).await, Ok(bulk("default")));
        assert_eq!(db0.cmd(cmd("GET").arg("k")).await, Ok(Value::Nil));

        let db2 = up(RedisConfig::new(default_db2)).await;
        assert_eq!(db2.cmd(cmd("GET").arg("k")).await, Ok(bulk("in 2")));

        // No password: the handshake's PING is refused, and says why.
        let c = RedisClient::start(RedisConfig::new(nobody));
        let status =
            status_where(&c, Duration::from_secs(5), |s| matches!(s, Status::Down(_))).await;
        match status {
            Status::Down(cause) => assert!(cause.contains("NOAUTH"), "{cause}"),
            other => panic!("not down: {other:?}"),
        }
    });
    drop(server);
}

#[test]
fn a_wrong_password_is_down_with_the_refusal_as_cause() {
    let server = RedisServer::start_with(&["--user", "alice", "on", ">alicepw", "~*", "+@all"]);
    let url = server.url_with("alice:wrong@", 0);
    test_executor(move || async move {
        let c = RedisClient::start(RedisConfig::new(url));
        assert!(!c.wait_up(Duration::from_millis(500)).await);
        let cause = match status_where(&c, Duration::from_secs(5), |s| matches!(s, Status::Down(_)))
            .await
        {
            Status::Down(cause) => cause,
            other => panic!("not down: {other:?}"),
        };
        assert!(
            cause.starts_with("Redis refused AUTH: WRONGPASS"),
            "{cause}"
        );
        let started = Instant::now();
        assert_eq!(c.cmd(&cmd("PING")).await, Err(RedisError::Down(cause)));
        assert!(started.elapsed() < Duration::from_millis(50));
    });
    drop(server);
}

#[test]
fn a_killed_redis_fails_commands_fast_and_a_restarted_one_is_found_again() {
    let mut server = RedisServer::start();
    let url = server.url();
    let address = url.address();
    test_executor(move || async move {
        let c = up(RedisConfig::new(url)).await;
        assert_eq!(c.cmd(cmd("SET").arg("a").arg(1)).await, Ok(Value::Okay));

        server.kill();
        // Issued before the client can know: it fails with the connection,
        // long before its 2 s timeout.
        let started = Instant::now();
        let in_flight = c.cmd(cmd("GET").arg("a")).await;
        assert!(
            matches!(in_flight, Err(RedisError::Io(_) | RedisError::Down(_))),
            "{in_flight:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(500));

        let cause = match status_where(&c, Duration::from_secs(2), |s| matches!(s, Status::Down(_)))
            .await
        {
            Status::Down(cause) => cause,
            other => panic!("not down: {other:?}"),
        };
        assert!(
            cause.starts_with(&format!("connect to {address}: Connection refused")),
            "{cause}"
        );
        // Let the back-off grow to its cap: a command issued now would wait
        // up to a second for the next connect, if it were queued at all.
        glommio::timer::sleep(Duration::from_millis(1500)).await;
        assert!(matches!(c.status(), Status::Down(_)), "{:?}", c.status());
        for _ in 0..3 {
            let started = Instant::now();
            let r = c.cmd(cmd("GET").arg("a")).await;
            assert!(matches!(r, Err(RedisError::Down(_))), "{r:?}");
            let waited = started.elapsed();
            assert!(waited < Duration::from_millis(20), "{waited:?}");
        }

        server.restart();
        assert!(
            c.wait_up(Duration::from_millis(2500)).await,
            "not up again: {:?}",
            c.status()
        );
        assert_eq!(c.cmd(cmd("SET").arg("a").arg(2)).await, Ok(Value::Okay));
        assert_eq!(c.cmd(cmd("GET").arg("a")).await, Ok(bulk("2")));
        drop(server);
    });
}

#[test]
fn a_reply_later_than_the_timeout_fails_and_the_client_recovers() {
    let server = RedisServer::start();
    let url = server.url();
    test_executor(move || async move {
        let mut config = RedisConfig::new(url);
        config.timeout = Duration::from_millis(200);
        let c = up(config).await;
        let started = Instant::now();
        let sleep = c.cmd(cmd("DEBUG").arg("SLEEP").arg(1));
        let behind = c.cmd(cmd("SET").arg("x").arg(1));
        let timeout = Err(RedisError::Timeout(Duration::from_millis(200)));
        assert_eq!(sleep.await, timeout);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_millis(950),
            "{waited:?}"
        );
        assert_eq!(behind.await, timeout);
        assert!(
            c.wait_up(Duration::from_secs(5)).await,
            "not up again: {:?}",
            c.status()
        );
        assert_eq!(
            c.cmd(&cmd("PING")).await,
            Ok(Value::SimpleString("PONG".into()))
        );
    });
    drop(server);
}

#[test]
fn scripts_run_by_hash_and_survive_a_script_flush() {
    let server = RedisServer::start();
    let url = server.url();
    test_executor(move || async move {
        let c = up(RedisConfig::new(url)).await;
        let add = Script::new("add", "return redis.call('INCRBY', KEYS[1], ARGV[1])");
        assert_eq!(c.eval(&add.call().key("n").arg(5)).await, Ok(Value::Int(5)));
        assert_eq!(c.eval(&add.call().key("n").arg(1)).await, Ok(Value::Int(6)));
        assert_eq!(
            c.cmd(cmd("SCRIPT").arg("EXISTS").arg(add.sha())).await,
            Ok(Value::Array(vec![Value::Int(1)]))
        );
        assert_eq!(c.cmd(cmd("SCRIPT").arg("FLUSH")).await, Ok(Value::Okay));
        // EVALSHA gets NOSCRIPT; the client sends the code and it runs.
        assert_eq!(
            c.eval(&add.call().key("n").arg(4)).await,
            Ok(Value::Int(10))
        );
        assert_eq!(
            c.eval(&add.call().key("n").arg(1)).await,
            Ok(Value::Int(11))
        );
        assert_eq!(
            c.cmd(cmd("SCRIPT").arg("EXISTS").arg(add.sha())).await,
            Ok(Value::Array(vec![Value::Int(1)]))
        );

        let stale = Script::new(
            "stale",
            "return redis.error_reply('STALE generation ' .. ARGV[1])",
        );
        let e = c.eval(&stale.call().arg(3)).await;
        assert_eq!(
            e,
            Err(RedisError::Server {
                code: "STALE".into(),
                message: "generation 3".into()
            })
        );
        assert_eq!(
            c.eval(&stale.call().arg(4))
                .await
                .map_err(|e| e.to_string()),
            Err("Redis error STALE: generation 4".to_owned())
        );
    });
    drop(server);
}

#[test]
fn an_error_reply_is_a_server_error_and_later_replies_stay_matched() {
    let server = RedisServer::start();
    let url = server.url();
    test_executor(move || async move {
        let c = up(RedisConfig::new(url)).await;
        assert_eq!(c.cmd(cmd("SET").arg("s").arg("str")).await, Ok(Value::Okay));
        let r1 = c.cmd(cmd("GET").arg("s"));
        let r2 = c.cmd(cmd("LPUSH").arg("s").arg("x"));
        let r3 = c.cmd(cmd("INCR").arg("n"));
        let r4 = c.cmd(cmd("HGET").arg("s").arg("f"));
        let r5 = c.cmd(cmd("GET").arg("s"));
        assert_eq!(r1.await, Ok(bulk("str")));
        let e = r2.await.unwrap_err();
        assert!(wrongtype(&e), "{e:?}");
        assert!(
            matches!(&e, RedisError::Server { message, .. } if message.starts_with("Operation against a key")),
            "{e:?}"
        );
        assert_eq!(r3.await, Ok(Value::Int(1)));
        assert!(wrongtype(&r4.await.unwrap_err()));
        assert_eq!(r5.await, Ok(bulk("str")));
    });
    drop(server);
}

#[test]
fn groups_return_their_values_or_their_first_error() {
    let server = RedisServer::start();
    let url = server.url();
    test_executor(move || async move {
        let c = up(RedisConfig::new(url)).await;
        let mut p = ::redis::pipe();
        p.cmd("SET")
            .arg("g")
            .arg(1)
            .cmd("INCR")
            .arg("g")
            .cmd("GET")
            .arg("g");
        let plain = c.group(&p);
        p.atomic();
        let atomic = c.group(&p);
        let after = c.cmd(cmd("GET").arg("g"));
        assert_eq!(plain.await, Ok(vec![Value::Okay, Value::Int(2), bulk("2")]));
        assert_eq!(
            atomic.await,
            Ok(vec![Value::Okay, Value::Int(2), bulk("2")])
        );
        assert_eq!(after.await, Ok(bulk("2")));

        let mut bad = ::redis::pipe();
        bad.cmd("SET")
            .arg("s")
            .arg("x")
            .cmd("LPUSH")
            .arg("s")
            .arg("y")
            .cmd("GET")
            .arg("s");
        let failed = c.group(&bad);
        let after = c.cmd(cmd("GET").arg("s"));
        assert!(wrongtype(&failed.await.unwrap_err()));
        assert_eq!(after.await, Ok(bulk("x")));
        assert_eq!(c.group(&::redis::pipe()).await, Ok(vec![]));
    });
    drop(server);
}

#[test]
fn close_fails_what_waits_and_what_comes() {
    let server = RedisServer::start();
    let url = server.url();
    test_executor(move || async move {
        let c = up(RedisConfig::new(url)).await;
        let waiting = c.cmd(cmd("DEBUG").arg("SLEEP").arg("0.2"));
        c.close();
        assert!(matches!(waiting.await, Err(RedisError::Down(_))));
        assert!(matches!(
            c.cmd(&cmd("PING")).await,
            Err(RedisError::Down(_))
        ));
        assert!(matches!(c.status(), Status::Down(_)));
    });
    drop(server);
}

#[test]
fn nothing_listening_is_down_with_the_connect_error() {
    let port = free_port();
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    test_executor(move || async move {
        let c = RedisClient::start(RedisConfig::new(url));
        match status_where(&c, Duration::from_secs(2), |s| matches!(s, Status::Down(_))).await {
            Status::Down(cause) => assert!(
                cause.starts_with(&format!("connect to 127.0.0.1:{port}: Connection refused")),
                "{cause}"
            ),
            other => panic!("not down: {other:?}"),
        }
        assert!(matches!(
            c.cmd(&cmd("PING")).await,
            Err(RedisError::Down(_))
        ));
    });
}

#[test]
fn commands_issued_while_connecting_go_out_once_connected_to_a_name() {
    let server = RedisServer::start();
    // A name: looked up off the executor thread.
    let url = RedisUrl::parse(&format!("redis://localhost:{}/1", server.port)).unwrap();
    test_executor(move || async move {
        let c = RedisClient::start(RedisConfig::new(url));
        assert_eq!(c.status(), Status::Connecting);
        let set = c.cmd(cmd("SET").arg("early").arg("bird"));
        let get = c.cmd(cmd("GET").arg("early"));
        assert_eq!(set.await, Ok(Value::Okay));
        assert_eq!(get.await, Ok(bulk("bird")));
        assert_eq!(c.status(), Status::Up);
    });
    drop(server);
}

#[test]
fn the_first_address_that_takes_the_connection_is_used() {
    let server = RedisServer::start();
    let refused = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let live = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port));
    test_executor(move || async move {
        let deadline = Instant::now() + Duration::from_secs(2);
        let stream = driver::connect_first(&[refused, live], deadline).await;
        assert_eq!(
            stream.map(|s| s.peer_addr().ok()).ok().flatten(),
            Some(live)
        );
        let e = driver::connect_first(&[refused], deadline).await.err();
        assert_eq!(
            e.map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
    });
    drop(server);
}
