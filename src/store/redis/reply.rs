//! The futures a caller awaits for its replies. The command is queued
//! before the future exists; the future only waits.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use ::redis::Value;

use super::queue::Slot;
use super::RedisError;

/// A queued command's slot, or why it was not queued.
#[derive(Debug)]
pub(super) enum Waiting {
    Queued(Rc<Slot>),
    Refused(Option<RedisError>),
}

impl Waiting {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Vec<Value>, RedisError>> {
        match self {
            Waiting::Queued(slot) => slot.poll(cx),
            Waiting::Refused(error) => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                RedisError::Protocol("a reply polled after it was ready".to_owned())
            }))),
        }
    }
}

/// The reply to one command. Dropping it does not take the command back: it
/// runs, and its reply is thrown away.
#[derive(Debug)]
#[must_use = "the command is sent anyway; await the reply to know how it went"]
pub struct Reply(pub(super) Waiting);

impl Future for Reply {
    type Output = Result<Value, RedisError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll(cx).map(|result| {
            let value = result?.pop().ok_or_else(|| {
                RedisError::Protocol("a command completed without a reply".to_owned())
            })?;
            match value {
                Value::ServerError(e) => Err(RedisError::server(&e)),
                value => Ok(value),
            }
        })
    }
}

/// The replies to a group of commands (a `redis::Pipeline`), in order; or
/// the first error among them.
#[derive(Debug)]
#[must_use = "the commands are sent anyway; await the replies to know how they went"]
pub struct GroupReply {
    pub(super) waiting: Waiting,
    /// Sent as `MULTI` ... `EXEC`: the values are those of the `EXEC`.
    pub(super) atomic: bool,
}

impl Future for GroupReply {
    type Output = Result<Vec<Value>, RedisError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let atomic = self.atomic;
        self.waiting
            .poll(cx)
            .map(|result| group_values(result?, atomic))
    }
}

fn group_values(mut replies: Vec<Value>, atomic: bool) -> Result<Vec<Value>, RedisError> {
    first_error(&replies)?;
    if !atomic {
        return Ok(replies);
    }
    match replies.pop() {
        Some(Value::Array(values)) => {
            first_error(&values)?;
            Ok(values)
        }
        // EXEC's nil: a WATCHed key changed, nothing ran.
        Some(Value::Nil) => Err(RedisError::Server {
            code: "EXECABORT".to_owned(),
            message: "the transaction did not run: a watched key changed".to_owned(),
        }),
        other => Err(RedisError::Protocol(format!(
            "EXEC replied {other:?}, not an array"
        ))),
    }
}

fn first_error(values: &[Value]) -> Result<(), RedisError> {
    match values.iter().find_map(|v| match v {
        Value::ServerError(e) => Some(e),
        _ => None,
    }) {
        Some(e) => Err(RedisError::server(e)),
        None => Ok(()),
    }
}
