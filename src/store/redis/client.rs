//! The handle a shard issues commands through, and the state it shares with
//! its connection's driver task.

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use ::redis::{Cmd, Pipeline, Value};
use tracing::{info, warn};

use super::queue::{Queue, Slot};
use super::reply::{GroupReply, Reply, Waiting};
use super::script::{eval_of_evalsha, ScriptCall};
use super::{driver, RedisError, RedisUrl};
use crate::connection::Notify;

/// Where Redis is, and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: RedisUrl,
    /// How long a command may wait for its reply, from the moment it is
    /// issued. Also bounds a connect with its handshake. A shard must never
    /// wait on Redis for longer.
    pub timeout: Duration,
    /// The wait after the first failed connect; it doubles with each
    /// failure after that...
    pub backoff_first: Duration,
    /// ...up to this, which is also how long a restarted Redis may go
    /// unnoticed.
    pub backoff_cap: Duration,
}

impl RedisConfig {
    pub fn new(url: RedisUrl) -> RedisConfig {
        RedisConfig {
            url,
            timeout: Duration::from_secs(2),
            backoff_first: Duration::from_millis(50),
            backoff_cap: Duration::from_secs(1),
        }
    }
}

/// Whether commands can reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Connected, logged in, database selected.
    Up,
    /// The first connect, or the first one after a connection broke, is in
    /// progress: commands are queued for it, within their timeout.
    Connecting,
    /// The last connect failed, for this reason; the driver tries again
    /// after a back-off. Commands fail at once with [`RedisError::Down`].
    Down(String),
}

/// One Redis connection of a shard, auto-pipelined: the commands issued
/// since the last write go out in one write, and their replies come back in
/// order. Cheap to clone; `!Send`: it belongs to the shard that started it.
/// The connection closes when the last clone is dropped, or on
/// [`RedisClient::close`].
#[derive(Debug, Clone)]
pub struct RedisClient {
    handle: Rc<Handle>,
}

/// Closes the client when its last clone goes (the driver task holds
/// [`Shared`], not this).
#[derive(Debug)]
struct Handle {
    shared: Rc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl RedisClient {
    /// Starts the connection's driver task and returns at once: the client
    /// is [`Status::Connecting`] until the first connect is done.
    ///
    /// # Panics
    /// Outside a glommio executor.
    pub fn start(config: RedisConfig) -> RedisClient {
        let shared = Rc::new(Shared {
            config,
            state: RefCell::new(State {
                status: Status::Connecting,
                closed: false,
                queue: Queue::default(),
                evaluated: HashSet::new(),
            }),
            output: Notify::default(),
            closing: Notify::default(),
            status_waiters: RefCell::new(Vec::new()),
        });
        glommio::spawn_local(driver::drive(shared.clone())).detach();
        RedisClient {
            handle: Rc::new(Handle { shared }),
        }
    }

    /// Queues `cmd` now (commands go out in the order of these calls) and
    /// returns its reply. A server error reply is [`RedisError::Server`].
    pub fn cmd(&self, cmd: &Cmd) -> Reply {
        Reply(self.shared().queue(1, |out| cmd.write_packed_command(out)))
    }

    /// Queues the commands of `pipeline` now, back to back (in `MULTI` ...
    /// `EXEC` if it is atomic), and returns all their values in order, or
    /// the first error reply among them. Commands marked `ignore()` still
    /// have their values in the list.
    pub fn group(&self, pipeline: &Pipeline) -> GroupReply {
        if pipeline.is_empty() {
            return GroupReply {
                waiting: Waiting::Queued(Rc::new(Slot::ready(Vec::new()))),
                atomic: false,
            };
        }
        let atomic = pipeline.is_transaction();
        let replies = pipeline.len() + if atomic { 2 } else { 0 };
        let waiting = self.shared().queue(replies, |out| {
            if atomic {
                ::redis::cmd("MULTI").write_packed_command(out);
            }
            for cmd in pipeline.cmd_iter() {
                cmd.write_packed_command(out);
            }
            if atomic {
                ::redis::cmd("EXEC").write_packed_command(out);
            }
        });
        GroupReply { waiting, atomic }
    }

    /// Runs a script, queued now. The first call of a script on a
    /// connection sends its code (`EVAL`, which also loads it), later ones
    /// only its hash (`EVALSHA`). If Redis has lost it since (`SCRIPT
    /// FLUSH`, a failover), the `NOSCRIPT` is answered by an `EVAL`, sent
    /// then: only in that case does the call run after commands issued
    /// after it.
    pub fn eval(&self, call: &ScriptCall<'_>) -> impl Future<Output = Result<Value, RedisError>> {
        let script = call.script();
        let shared = self.shared();
        let known = shared.state.borrow().evaluated.contains(script.sha());
        let (reply, retry) = if known {
            let evalsha = call.evalsha_cmd();
            let reply = self.cmd(&evalsha);
            (reply, Some((self.clone(), evalsha, script.code())))
        } else {
            let reply = self.cmd(&call.eval_cmd());
            if matches!(reply.0, Waiting::Queued(_)) {
                shared
                    .state
                    .borrow_mut()
                    .evaluated
                    .insert(script.sha().to_owned());
            }
            (reply, None)
        };
        async move {
            match (reply.await, retry) {
                (Err(e), Some((client, evalsha, code))) if e.server_code() == Some("NOSCRIPT") => {
                    client.cmd(&eval_of_evalsha(&evalsha, code)).await
                }
                (result, _) => result,
            }
        }
    }

    pub fn status(&self) -> Status {
        self.shared().state.borrow().status.clone()
    }

    /// Waits until the client is [`Status::Up`], for `within` at most.
    /// Whether it is.
    pub async fn wait_up(&self, within: Duration) -> bool {
        let shared = self.shared().clone();
        let up = poll_fn(move |cx| {
            if shared.state.borrow().status == Status::Up {
                Poll::Ready(Ok(()))
            } else {
                shared.status_waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        });
        if within.is_zero() {
            return self.status() == Status::Up;
        }
        glommio::timer::timeout(within, up).await.is_ok()
    }

    /// Stops the driver and closes the connection. Commands still waiting
    /// fail, and later ones fail at once, with [`RedisError::Down`].
    pub fn close(&self) {
        self.shared().close();
    }

    fn shared(&self) -> &Rc<Shared> {
        &self.handle.shared
    }
}

/// What the client handles and the driver task share, on one shard.
#[derive(Debug)]
pub(super) struct Shared {
    pub config: RedisConfig,
    pub state: RefCell<State>,
    /// Wakes the driver: output was queued, or the client closed.
    pub output: Notify,
    /// Wakes the driver out of its back-off when the client closes.
    pub closing: Notify,
    /// Tasks in [`RedisClient::wait_up`].
    status_waiters: RefCell<Vec<Waker>>,
}

#[derive(Debug)]
pub(super) struct State {
    pub status: Status,
    pub closed: bool,
    pub queue: Queue,
    /// Scripts sent with their code (`EVAL`) on the current connection, or
    /// queued for the next one: Redis has them, so `EVALSHA` will do.
    pub evaluated: HashSet<String>,
}

impl Shared {
    fn queue(&self, replies: usize, encode: impl FnOnce(&mut Vec<u8>)) -> Waiting {
        let mut state = self.state.borrow_mut();
        if let Status::Down(cause) = &state.status {
            return Waiting::Refused(Some(RedisError::Down(cause.clone())));
        }
        let deadline = Instant::now() + self.config.timeout;
        let slot = state.queue.push(replies, deadline, encode);
        drop(state);
        self.output.notify();
        Waiting::Queued(slot)
    }

    pub fn is_closed(&self) -> bool {
        self.state.borrow().closed
    }

    /// A connection is ready: what was queued for it and has waited too
    /// long fails, the rest goes out.
    pub fn up(&self) {
        let timeout = RedisError::Timeout(self.config.timeout);
        let mut state = self.state.borrow_mut();
        state.queue.expire_unsent(Instant::now(), &timeout);
        if state.status != Status::Up {
            info!(url = ?self.config.url, "Redis is up");
        }
        drop(state);
        self.set_status(Status::Up);
    }

    /// The connection broke: everything on it fails with `cause`, and the
    /// driver connects again at once.
    pub fn lost(&self, cause: RedisError) {
        warn!(url = ?self.config.url, error = %cause, "Redis connection lost");
        let mut state = self.state.borrow_mut();
        state.queue.fail_all(&cause);
        state.evaluated.clear();
        drop(state);
        self.set_status(Status::Connecting);
    }

    /// A connect failed: commands fail fast until one works.
    pub fn down(&self, cause: String) {
        let mut state = self.state.borrow_mut();
        if state.status != Status::Down(cause.clone()) {
            warn!(url = ?self.config.url, %cause, "Redis is down");
        }
        state.queue.fail_all(&RedisError::Down(cause.clone()));
        state.evaluated.clear();
        drop(state);
        self.set_status(Status::Down(cause));
    }

    fn close(&self) {
        let cause = "the Redis client was closed".to_owned();
        let mut state = self.state.borrow_mut();
        state.closed = true;
        state.queue.fail_all(&RedisError::Down(cause.clone()));
        state.evaluated.clear();
        drop(state);
        self.set_status(Status::Down(cause));
        self.closing.notify();
        self.output.notify();
    }

    fn set_status(&self, status: Status) {
        self.state.borrow_mut().status = status;
        for waker in self.status_waiters.take() {
            waker.wake();
        }
    }
}
