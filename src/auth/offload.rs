//! Authentication work too slow for a shard's thread, handed to another one.
//!
//! An argon2 password check takes about 15 ms and an RS or ES signature 125 to
//! 200 µs; on the shard's thread each would stall every other client of the
//! shard. So the connection asks [`Authenticator::prepare`] for the slow part
//! as a [`Preparation`], runs it on glommio's blocking thread while the shard
//! goes on serving, and gives the [`Prepared`] outcome back to
//! [`Authenticator::absorb`] right before [`Authenticator::authenticate`],
//! which then finds the answer instead of computing it.
//!
//! The job works only on shared, immutable state (the password file, the
//! keys); the shard's caches are touched on the shard, in `absorb`.
//!
//! [`Authenticator::prepare`]: super::Authenticator::prepare
//! [`Authenticator::absorb`]: super::Authenticator::absorb
//! [`Authenticator::authenticate`]: super::Authenticator::authenticate

use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use super::jwt::{TokenChecked, TokenJob};
use super::password::{PasswordChecked, PasswordJob};

/// The slow part of one authentication, to run off the shard with
/// [`Preparation::run`].
pub struct Preparation(pub(super) Job);

pub(super) enum Job {
    Token(TokenJob),
    Password(PasswordJob),
}

/// What a [`Preparation`] found.
pub struct Prepared(pub(super) Outcome);

pub(super) enum Outcome {
    Token(TokenChecked),
    Password(PasswordChecked),
    /// The job panicked. `authenticate` then does the work itself, as it
    /// would have without the hop.
    Panicked,
}

impl Preparation {
    /// Does the work: meant for a blocking thread, not the shard's.
    ///
    /// A panic is caught: it would kill the shard's only blocking thread, and
    /// every later CONNECT that needs it would wait forever.
    pub fn run(self) -> Prepared {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| match self.0 {
            Job::Token(job) => Outcome::Token(job.run()),
            Job::Password(job) => Outcome::Password(job.run()),
        }));
        Prepared(outcome.unwrap_or(Outcome::Panicked))
    }
}

impl Outcome {
    pub(super) fn token(self) -> Option<TokenChecked> {
        match self {
            Outcome::Token(checked) => Some(checked),
            _ => None,
        }
    }

    pub(super) fn password(self) -> Option<PasswordChecked> {
        match self {
            Outcome::Password(checked) => Some(checked),
            _ => None,
        }
    }
}

impl fmt::Debug for Outcome {
    /// The kind only: claims and password hashes stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Token(_) => "Token",
            Outcome::Password(_) => "Password",
            Outcome::Panicked => "Panicked",
        })
    }
}
