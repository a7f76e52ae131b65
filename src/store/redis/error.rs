//! What a Redis command can end with, other than a reply.

use std::time::Duration;

/// Why a command got no value. `Clone`: one broken connection fails every
/// command that was waiting on it with the same cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// The connection failed while the command was on it (reset, closed by
    /// Redis, a failed write). The command may or may not have run.
    #[error("Redis connection: {0}")]
    Io(String),
    /// No reply within the client's timeout. The connection was dropped
    /// (pipelined replies cannot be skipped); the command may or may not
    /// have run.
    #[error("no reply from Redis within {0:?}")]
    Timeout(Duration),
    /// Redis was unreachable when the command was issued (or the client was
    /// closed): the command was never sent. The cause is human-readable.
    #[error("Redis is down: {0}")]
    Down(String),
    /// Redis answered with an error: `code` is its first word
    /// (`WRONGTYPE`, `NOSCRIPT`, or a script's own, such as `STALE`).
    #[error("Redis error {code}: {message}")]
    Server { code: String, message: String },
    /// Redis sent bytes that are not RESP, or a reply nobody asked for.
    #[error("Redis protocol: {0}")]
    Protocol(String),
}

impl RedisError {
    /// The code of a server error reply, such as `"NOSCRIPT"`.
    pub fn server_code(&self) -> Option<&str> {
        match self {
            RedisError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(super) fn server(e: &::redis::ServerError) -> RedisError {
        RedisError::Server {
            code: e.code().to_owned(),
            message: e.details().unwrap_or_default().to_owned(),
        }
    }
}
