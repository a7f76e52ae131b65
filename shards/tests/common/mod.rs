//! Helpers shared by the integration tests (included with `mod common`).

#![allow(dead_code)]

use std::fmt;
use std::sync::mpsc;
use std::time::Duration;

use shards::{JoinError, Pool};

/// Generous bound for anything that should take milliseconds.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Joins `pool` on a helper thread, failing the test if it takes longer
/// than [`TIMEOUT`] (a hung shutdown must fail, not hang CI).
pub fn join_within<T, E>(pool: Pool<T, E>) -> Vec<Result<T, JoinError<E>>>
where
    T: Send + 'static,
    E: fmt::Debug + fmt::Display + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(pool.join_all());
    });
    rx.recv_timeout(TIMEOUT)
        .expect("pool.join() did not return in time")
}

/// `Ok` for shard futures that cannot fail.
pub type Never = std::convert::Infallible;
