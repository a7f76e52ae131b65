//! The authorization decision point: may this client publish to a topic, or
//! subscribe to a filter.
//!
//! The broker asks its [`Authorizer`] for each PUBLISH it receives and each
//! filter of a SUBSCRIBE. The default, [`AllowAll`], allows everything;
//! [`AclFile`] decides by a VerneMQ-syntax ACL file, reloaded while running.
//! When [`AclFile::generation`] changes, the broker checks its granted
//! subscriptions again with [`Authorizer::subscribe`].
//!
//! # The file
//! One rule per line; a line whose first non-blank character is `#` is a
//! comment (a `#` later in a line is a filter wildcard, as in `topic a/#`).
//! Keywords are case-sensitive.
//! ```text
//! topic [read|write] <filter> [label <name>]      # everyone, or the user above
//! user <name>                                     # following topic lines: this user's
//! pattern [read|write] <filter> [label <name>]    # %c client id, %u username, %m mountpoint
//! token [read|write] <filter> [label <name>]      # also %(c, :, 3), %(u, -, 1), %(j, claim)
//! deny topic|pattern|token ...                    # a match denies instead of granting
//! ```
//! Without `read` or `write` a rule decides both (`readwrite` also works, as
//! in mosquitto). `%m` is always empty: shardmq has no mountpoints. A token
//! field `%(c, D, N)` is the N-th (from 1) field of the client id split on D,
//! one of `:`, `-`, `|`; `%(j, claim)` is a verified JWT claim. A level may
//! mix text and substitutions (`dev-%c`). See `configs/example.acl`.
//!
//! # Precedence
//! The first rule that matches decides (grant, or deny for `deny` rules); no
//! match denies. Rules are tried in this order, each group in file order:
//! 1. `topic` rules before the first `user` line (everyone's);
//! 2. the client's own `topic` rules (after `user <its username>`);
//! 3. `pattern` and `token` rules.
//!
//! This is VerneMQ's order. VerneMQ has no deny rules, so for its files "first
//! match" and "any match" grant the same.
//!
//! # Matching
//! - PUBLISH (write): the rule's filter matches the topic name, with MQTT
//!   wildcard semantics.
//! - SUBSCRIBE (read): the rule must cover the subscribed filter (without any
//!   `$share/<group>/`): a rule `+` covers one level, `+` included; a rule `#`
//!   covers the rest, `#` included; a literal level covers only itself. So
//!   `a/+` is covered by `a/+` and `a/#`, not by `a/b`.
//! - `$`-topics (`$SYS/...`) are not matched by a leading rule wildcard, only
//!   by rules spelling out the `$` level.
//!
//! # Why substituted values are literal
//! Client ids and usernames are chosen by clients. A substituted value that is
//! missing, empty, or contains `+`, `#` or `/` makes its rule not match, and a
//! substituted level is never a wildcard: a client named `#` must not turn
//! `pattern %c/#` into `#/#`. A value substituted at the start of the first
//! level must not start with `$` either (client `$SYS` and `pattern %c/#`).

use std::sync::Arc;

use crate::auth::Identity;
use crate::topic::{TopicFilter, TopicName};

mod file;
mod parse;
mod rule;
mod rules;
#[cfg(test)]
mod tests;

pub use file::AclFile;
pub use parse::AclError;
pub use rule::Access;
pub use rules::AclRules;

/// Decides what a client may publish and subscribe to.
pub trait Authorizer {
    /// Whether `who` may publish to `topic`. A denied PUBLISH is dropped.
    fn publish(&self, who: &Identity, topic: &TopicName) -> Decision;
    /// Whether `who` may subscribe to `filter`. A denied filter gets SUBACK
    /// 0x80 (MQTT 3) or 0x87 not authorized (MQTT 5).
    fn subscribe(&self, who: &Identity, filter: &TopicFilter) -> Decision;
}

/// An ACL decision, and the label and filter of the rule that made it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// The deciding rule's `label <name>`: travels into events and metrics
    /// (DESIGN section 4), and keys per-label rate limits later. Shared, so
    /// passing it along copies no string.
    pub label: Option<Arc<str>>,
    /// The deciding rule's filter as written, for events' `MatchedACL.pattern`.
    pub pattern: Option<Arc<str>>,
}

impl Decision {
    pub fn allow() -> Decision {
        Decision {
            allow: true,
            label: None,
            pattern: None,
        }
    }

    pub fn deny() -> Decision {
        Decision {
            allow: false,
            label: None,
            pattern: None,
        }
    }

    pub fn labelled(self, label: impl Into<Arc<str>>) -> Decision {
        Decision {
            label: Some(label.into()),
            ..self
        }
    }

    pub fn with_pattern(self, pattern: impl Into<Arc<str>>) -> Decision {
        Decision {
            pattern: Some(pattern.into()),
            ..self
        }
    }
}

/// Allows every publish and subscription (today's behaviour, no ACL file).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn publish(&self, _: &Identity, _: &TopicName) -> Decision {
        Decision::allow()
    }

    fn subscribe(&self, _: &Identity, _: &TopicFilter) -> Decision {
        Decision::allow()
    }
}
