//! One parsed ACL rule and how it matches a topic (PUBLISH) or covers a filter
//! (SUBSCRIBE).
//!
//! Substitutions (`%c`, `%u`, `%(c, :, 3)`, `%(j, claim)`) are expanded level by
//! level while matching, without allocating: each piece of a level is compared
//! as a prefix of the subject's level. A substituted value is literal text; a
//! value that is missing, empty or contains `+`, `#` or `/` makes the rule not
//! match, so a client id such as `#` can never turn a rule into a wildcard.

use std::sync::Arc;

use crate::auth::Identity;

/// What a client asks to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// SUBSCRIBE: the subject is a filter, which the rule must cover.
    Read,
    /// PUBLISH: the subject is a topic name, which the rule must match.
    Write,
}

/// A parsed `topic`, `pattern` or `token` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    /// `deny ...`: a match denies instead of granting.
    pub deny: bool,
    /// Whether the rule decides SUBSCRIBE (`read`, or no access word).
    pub read: bool,
    /// Whether the rule decides PUBLISH (`write`, or no access word).
    pub write: bool,
    /// The filter's levels, substitutions parsed.
    pub levels: Vec<Level>,
    /// `label <name>`: travels with the decision into events, metrics and the
    /// per-label rate limits.
    pub label: Option<Arc<str>>,
    /// The filter as written in the file, for events' `MatchedACL.pattern`.
    pub pattern: Arc<str>,
}

/// One level of a rule's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Level {
    /// Plain text: matches exactly this level (also the empty level).
    Literal(Box<str>),
    /// `+`: any one level.
    Single,
    /// `#`: this level and everything below it, or nothing (`a/#` matches `a`).
    Multi,
    /// Text mixed with substitutions, e.g. `dev-%c` or `%(c, :, 3)`; compared
    /// literally once expanded, never a wildcard.
    Template(Box<[Piece]>),
}

/// A part of a [`Level::Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(Box<str>),
    Sub(Sub),
}

/// A value taken from the client's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sub {
    /// `%c`.
    ClientId,
    /// `%u`; a client without a username never matches.
    Username,
    /// `%(c, D, N)` or `%(u, D, N)`: the `index`-th (0-based here) field.
    Field {
        of: FieldOf,
        delimiter: char,
        index: usize,
    },
    /// `%(j, claim)`: a verified JWT claim.
    Claim(Box<str>),
}

/// Which identity string a `%(x, D, N)` field is cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldOf {
    ClientId,
    Username,
}

impl Rule {
    /// Whether this rule decides `access` to `subject` for `who`: a topic name
    /// the rule matches (Write), or a filter the rule covers (Read).
    ///
    /// Covering is VerneMQ's: a rule `+` covers one subscribed level, `+`
    /// included, but not `#`; a rule `#` covers the rest, `#` included; a
    /// literal or substituted level covers only the same literal text.
    /// A subject starting with `$` is never matched by a leading wildcard
    /// [MQTT-4.7.2-1], only by a rule spelling out its first level.
    pub fn applies(&self, who: &Identity, access: Access, subject: &str) -> bool {
        let wanted = match access {
            Access::Read => self.read,
            Access::Write => self.write,
        };
        if !wanted {
            return false;
        }
        let system = subject.starts_with('$');
        let mut subject_levels = subject.split('/');
        for (i, level) in self.levels.iter().enumerate() {
            let first = i == 0;
            let got = subject_levels.next();
            match level {
                Level::Multi => return !(first && system),
                Level::Single => match got {
                    None => return false,
                    Some(_) if first && system => return false,
                    Some("#") if access == Access::Read => return false,
                    Some(_) => {}
                },
                Level::Literal(text) => {
                    if got != Some(&**text) {
                        return false;
                    }
                }
                Level::Template(pieces) => match got {
                    Some(got) if template_matches(pieces, who, got, first) => {}
                    _ => return false,
                },
            }
        }
        subject_levels.next().is_none()
    }

    /// The first level, when it is plain text: the key the rule is indexed by.
    pub fn first_literal(&self) -> Option<&str> {
        match self.levels.first() {
            Some(Level::Literal(text)) => Some(text),
            _ => None,
        }
    }
}

/// Whether the expanded `pieces` equal `level` exactly.
///
/// In the first level a value substituted at the start must not begin with
/// `$`: a client id `$SYS` must not gain the server's `$SYS/...` topics
/// through a rule `%c/#`.
fn template_matches(pieces: &[Piece], who: &Identity, level: &str, first_level: bool) -> bool {
    let mut rest = level;
    for (i, piece) in pieces.iter().enumerate() {
        let value = match piece {
            Piece::Text(text) => &**text,
            Piece::Sub(sub) => match sub.value(who) {
                Some(value) if !(first_level && i == 0 && value.starts_with('$')) => value,
                _ => return false,
            },
        };
        match rest.strip_prefix(value) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

impl Sub {
    /// The substituted text, or `None` when the rule must not match: the
    /// value is missing, empty, or holds `+`, `#` or `/` (which would
    /// otherwise read as wildcards or extra levels).
    fn value<'a>(&self, who: &'a Identity) -> Option<&'a str> {
        let value = match self {
            Sub::ClientId => &*who.client_id,
            Sub::Username => who.username.as_deref()?,
            Sub::Field {
                of,
                delimiter,
                index,
            } => {
                let whole = match of {
                    FieldOf::ClientId => &*who.client_id,
                    FieldOf::Username => who.username.as_deref()?,
                };
                whole.split(*delimiter).nth(*index)?
            }
            Sub::Claim(name) => who.claims.as_deref()?.get(&**name)?.as_str(),
        };
        literal(value)
    }
}

/// `value` if it is safe to compare as one literal topic level.
fn literal(value: &str) -> Option<&str> {
    let unsafe_byte = |b: &u8| matches!(b, b'+' | b'#' | b'/');
    (!value.is_empty() && !value.as_bytes().iter().any(unsafe_byte)).then_some(value)
}
