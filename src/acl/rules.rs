//! A parsed ACL file, indexed so a decision looks only at rules that can match.

use std::path::Path;

use crate::auth::Identity;
use crate::hash::HashMap;
use crate::topic::{TopicFilter, TopicName};

use super::file::read;
use super::parse::{parse_line, AclError, Kind, Line};
use super::rule::{Access, Rule};
use super::{Authorizer, Decision};

/// The rules of one ACL file, in decision order (see the module doc).
///
/// Immutable once parsed: a reload builds a new one and swaps it in whole
/// ([`super::AclFile`]).
#[derive(Debug, Default)]
pub struct AclRules {
    /// `topic` rules before the first `user` line: checked first, for everyone.
    everyone: RuleSet,
    /// Each user's `topic` rules (those after `user <name>`), checked second.
    users: HashMap<Box<str>, RuleSet>,
    /// `pattern` and `token` rules, in file order, checked last.
    templates: RuleSet,
}

impl AclRules {
    /// Parses the text of an ACL file. `origin` (usually the path) starts
    /// every error message: `<origin>:<line>: <what is wrong>`.
    pub fn parse(text: &str, origin: &str) -> Result<AclRules, AclError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = AclRules::default();
        let mut user: Option<Box<str>> = None;
        for (i, line) in text.lines().enumerate() {
            let parsed = parse_line(line).map_err(|what| AclError::Syntax {
                origin: origin.to_owned(),
                line: i + 1,
                what,
            })?;
            match parsed {
                Line::Nothing => {}
                Line::User(name) => user = Some(name),
                Line::Rule(Kind::Topic, rule) => match &user {
                    None => rules.everyone.push(rule),
                    Some(name) => rules.users.entry(name.clone()).or_default().push(rule),
                },
                Line::Rule(Kind::Pattern | Kind::Token, rule) => rules.templates.push(rule),
            }
        }
        Ok(rules)
    }

    /// Reads and parses the ACL file at `path`.
    ///
    /// Blocking file I/O: call it at start-up or from the reload thread,
    /// never on a shard.
    pub fn load(path: &Path) -> Result<AclRules, AclError> {
        AclRules::parse(&read(path)?, &path.display().to_string())
    }

    /// Whether `who` may publish to (Write) the topic name, or subscribe to
    /// (Read) the filter, `subject`. The first matching rule decides, with
    /// its label and filter; no match denies, with neither.
    pub fn check(&self, who: &Identity, access: Access, subject: &str) -> Decision {
        let user_rules = who.username.as_deref().and_then(|u| self.users.get(u));
        self.everyone
            .decide(who, access, subject)
            .or_else(|| user_rules.and_then(|rules| rules.decide(who, access, subject)))
            .or_else(|| self.templates.decide(who, access, subject))
            .unwrap_or_else(Decision::deny)
    }

    /// How many rules the file holds (for the "loaded" log line).
    pub fn len(&self) -> usize {
        self.everyone.rules.len()
            + self
                .users
                .values()
                .map(|set| set.rules.len())
                .sum::<usize>()
            + self.templates.rules.len()
    }

    /// Whether the file holds no rule at all (so everything is denied).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A subscription is checked without its `$share/<group>/` prefix: the
/// rules are about the topics it receives, whatever the group.
impl Authorizer for AclRules {
    fn publish(&self, who: &Identity, topic: &TopicName) -> Decision {
        self.check(who, Access::Write, topic.as_str())
    }

    fn subscribe(&self, who: &Identity, filter: &TopicFilter) -> Decision {
        self.check(who, Access::Read, filter.filter())
    }
}

/// One group of rules in file order, indexed by first level.
#[derive(Debug, Default)]
struct RuleSet {
    rules: Vec<Rule>,
    /// Rules whose first level is plain text, by that text: a topic
    /// `devices/...` only looks at rules starting with `devices`.
    by_first_level: HashMap<Box<str>, Vec<usize>>,
    /// Rules whose first level is a wildcard or a substitution: candidates
    /// for every subject.
    unindexed: Vec<usize>,
}

impl RuleSet {
    fn push(&mut self, rule: Rule) {
        let index = self.rules.len();
        match rule.first_literal() {
            Some(first) => self
                .by_first_level
                .entry(first.into())
                .or_default()
                .push(index),
            None => self.unindexed.push(index),
        }
        self.rules.push(rule);
    }

    /// The decision of the first rule (in file order) that applies, if any.
    fn decide(&self, who: &Identity, access: Access, subject: &str) -> Option<Decision> {
        let first = subject.split('/').next().unwrap_or_default();
        let indexed = self
            .by_first_level
            .get(first)
            .map_or(&[][..], Vec::as_slice);
        let rule = merged(indexed, &self.unindexed)
            .map(|i| &self.rules[i])
            .find(|rule| rule.applies(who, access, subject))?;
        let decision = if rule.deny {
            Decision::deny()
        } else {
            Decision::allow()
        };
        Some(Decision {
            label: rule.label.clone(),
            pattern: Some(rule.pattern.clone()),
            ..decision
        })
    }
}

/// The indices of two ascending lists, merged in ascending (file) order.
fn merged<'a>(mut a: &'a [usize], mut b: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
    std::iter::from_fn(move || {
        let (next, rest_a, rest_b) = match (a.split_first(), b.split_first()) {
            (Some((&x, ra)), Some((&y, _))) if x < y => (x, ra, b),
            (_, Some((&y, rb))) => (y, a, rb),
            (Some((&x, ra)), None) => (x, ra, b),
            (None, None) => return None,
        };
        a = rest_a;
        b = rest_b;
        Some(next)
    })
}

#[cfg(test)]
mod tests {
    use super::merged;

    #[test]
    fn merged_keeps_file_order() {
        let cases: &[(&[usize], &[usize], &[usize])] = &[
            (&[], &[], &[]),
            (&[0, 3], &[], &[0, 3]),
            (&[], &[1, 2], &[1, 2]),
            (&[0, 3, 4], &[1, 2, 5], &[0, 1, 2, 3, 4, 5]),
            (&[5], &[0, 1], &[0, 1, 5]),
        ];
        for (a, b, want) in cases {
            assert_eq!(merged(a, b).collect::<Vec<_>>(), *want, "{a:?} + {b:?}");
        }
    }
}
