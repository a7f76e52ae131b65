//! The ACL file's line syntax: keywords, access words, filters with their
//! substitutions, labels. Each function returns the problem as text; the
//! caller adds the file name and line number ([`AclError::Syntax`]).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use super::rule::{FieldOf, Level, Piece, Rule, Sub};

/// Why an ACL file cannot be used. The old rules stay in force on a reload.
#[derive(Debug, Error)]
pub enum AclError {
    /// A line that does not parse: `<origin>:<line>: <what is wrong>`, so an
    /// operator can jump to it.
    #[error("{origin}:{line}: {what}")]
    Syntax {
        origin: String,
        line: usize,
        what: String,
    },
    /// The file cannot be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read the ACL file: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
}

/// Which keyword a rule line starts with (after any `deny`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `topic`: plain filter; for everyone before the first `user` line, else
    /// for that user.
    Topic,
    /// `pattern`: `%c`, `%u`, `%m` substitutions; for everyone.
    Pattern,
    /// `token`: as `pattern`, plus `%(c|u, D, N)` fields and `%(j, claim)`.
    Token,
}

impl Kind {
    fn keyword(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Pattern => "pattern",
            Kind::Token => "token",
        }
    }
}

/// What one line of the file says.
#[derive(Debug)]
pub(crate) enum Line {
    /// Blank or a comment.
    Nothing,
    /// `user <name>`: the following `topic` lines are this user's.
    User(Box<str>),
    Rule(Kind, Rule),
}

/// Parses one line of an ACL file.
///
/// Comments take a whole line (first non-blank character `#`): a `#` later
/// in a line may be a filter (`topic #`), so it is not a comment there.
pub(crate) fn parse_line(line: &str) -> Result<Line, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(Line::Nothing);
    }
    if line.split_whitespace().next() == Some("user") {
        // The rest of the line, so a username may hold spaces (as in mosquitto).
        let name = line["user".len()..].trim();
        if name.is_empty() {
            return Err("user needs a name: user <name>".to_owned());
        }
        return Ok(Line::User(name.into()));
    }
    let tokens = tokens(line)?;
    let mut words = tokens.iter().copied();
    let mut keyword = words.next().unwrap_or_default();
    let deny = keyword == "deny";
    if deny {
        keyword = words.next().unwrap_or_default();
    }
    let kind = match keyword {
        "topic" => Kind::Topic,
        "pattern" => Kind::Pattern,
        "token" => Kind::Token,
        "user" => {
            return Err("deny applies to topic, pattern and token rules, not to user".to_owned())
        }
        "" => {
            return Err(
                "deny needs a rule: deny topic|pattern|token [read|write] <filter>".to_owned(),
            )
        }
        other if deny => {
            return Err(format!(
                "unknown keyword \"{other}\" after deny; use deny topic, deny pattern or deny token"
            ))
        }
        other => {
            return Err(format!(
            "unknown keyword \"{other}\"; a line starts with topic, user, pattern, token or deny"
        ))
        }
    };
    let usage = format!("{} [read|write] <filter> [label <name>]", kind.keyword());
    let mut words = words.peekable();
    // No access word: the rule decides both. `readwrite` as in mosquitto.
    let access = match words.peek().copied() {
        Some("read") => Some((true, false)),
        Some("write") => Some((false, true)),
        Some("readwrite") => Some((true, true)),
        _ => None,
    };
    if access.is_some() {
        words.next();
    }
    let (read, write) = access.unwrap_or((true, true));
    let pattern = match words.next() {
        None | Some("label") => return Err(format!("missing filter: {usage}")),
        Some(filter) => filter,
    };
    let label = match words.next() {
        None => None,
        Some("label") => match words.next() {
            Some(name) => Some(Arc::<str>::from(name)),
            None => return Err(format!("label needs a name: {usage}")),
        },
        Some(other) => return Err(unexpected(other, pattern, &usage)),
    };
    if let Some(other) = words.next() {
        return Err(unexpected(other, pattern, &usage));
    }
    Ok(Line::Rule(
        kind,
        Rule {
            deny,
            read,
            write,
            levels: parse_filter(pattern, kind)?,
            label,
            pattern: pattern.into(),
        },
    ))
}

fn unexpected(word: &str, filter: &str, usage: &str) -> String {
    let hint = if word.starts_with('#') {
        " (a comment must be on a line of its own)"
    } else if filter == "deny" {
        " (deny goes first: deny topic <filter>)"
    } else {
        ""
    };
    format!("unexpected \"{word}\" after the filter \"{filter}\"; expected {usage}{hint}")
}

/// Splits a line on whitespace, but keeps a `%( c , : , 3 )` field in its
/// token: spaces are allowed inside the parentheses.
fn tokens(line: &str) -> Result<Vec<&str>, String> {
    let mut tokens = Vec::new();
    let mut start = None;
    let mut in_field = false;
    for (i, c) in line.char_indices() {
        if in_field {
            in_field = c != ')';
        } else if c.is_whitespace() {
            if let Some(start) = start.take() {
                tokens.push(&line[start..i]);
            }
        } else {
            start.get_or_insert(i);
            in_field = c == '(' && line[..i].ends_with('%');
        }
    }
    if let Some(start) = start {
        if in_field {
            return Err(format!(
                "unclosed \"%(\" in \"{}\"; a token field looks like %(c, :, 3)",
                &line[start..]
            ));
        }
        tokens.push(&line[start..]);
    }
    Ok(tokens)
}

/// Parses and checks a rule's filter: wildcards only as whole levels, `#`
/// last, substitutions only where the rule kind allows them.
fn parse_filter(filter: &str, kind: Kind) -> Result<Vec<Level>, String> {
    let raw_levels = split_levels(filter, kind == Kind::Token);
    let last = raw_levels.len() - 1;
    let mut levels = Vec::with_capacity(raw_levels.len());
    for (i, raw) in raw_levels.into_iter().enumerate() {
        let level = match raw {
            "#" if i != last => {
                return Err(format!(
                    "\"#\" must be the last level of a filter: \"{filter}\""
                ))
            }
            "#" => Level::Multi,
            "+" => Level::Single,
            _ if kind == Kind::Topic => {
                check_no_wildcard(raw, filter)?;
                Level::Literal(raw.into())
            }
            _ => {
                let pieces = parse_pieces(raw, filter, kind)?;
                for piece in &pieces {
                    if let Piece::Text(text) = piece {
                        check_no_wildcard(text, filter)?;
                    }
                }
                match &pieces[..] {
                    [] => Level::Literal("".into()),
                    [Piece::Text(text)] => Level::Literal(text.clone()),
                    _ => Level::Template(pieces.into()),
                }
            }
        };
        levels.push(level);
    }
    Ok(levels)
}

fn check_no_wildcard(text: &str, filter: &str) -> Result<(), String> {
    if text.contains(['+', '#']) {
        return Err(format!(
            "\"+\" and \"#\" must each be a whole level of a filter: \"{filter}\""
        ));
    }
    Ok(())
}

/// Splits a filter on `/`, except inside a token rule's `%(...)` (a claim
/// name may hold one).
fn split_levels(filter: &str, fields: bool) -> Vec<&str> {
    let mut levels = Vec::new();
    let mut start = 0;
    let mut in_field = false;
    for (i, c) in filter.char_indices() {
        match c {
            '(' if fields && filter[..i].ends_with('%') => in_field = true,
            ')' => in_field = false,
            '/' if !in_field => {
                levels.push(&filter[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    levels.push(&filter[start..]);
    levels
}

/// Splits a `pattern` or `token` level into text and substitutions.
///
/// `%m`, the mountpoint, is always the empty string: shardmq has no
/// mountpoints (VerneMQ's default mountpoint is also empty).
fn parse_pieces(raw: &str, filter: &str, kind: Kind) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = raw;
    while let Some(at) = rest.find('%') {
        text.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (sub, used) = match after.chars().next() {
            Some('c') => (Some(Sub::ClientId), 1),
            Some('u') => (Some(Sub::Username), 1),
            Some('m') => (None, 1),
            Some('(') if kind == Kind::Token => {
                // `tokens` and `split_levels` keep a field whole, so `)` is here.
                let close = after.find(')').ok_or_else(|| {
                    format!("unclosed \"%(\" in \"{filter}\"; a token field looks like %(c, :, 3)")
                })?;
                let written = &after[..=close];
                (Some(parse_field(written)?), close + 1)
            }
            Some('(') => {
                return Err(format!(
                    "%(...) fields need a token rule, not {}: token [read|write] {filter}",
                    kind.keyword()
                ))
            }
            next => {
                let shown: String = next.into_iter().collect();
                let token_hint = if kind == Kind::Token {
                    ", %(c, :, N), %(u, :, N) or %(j, claim)"
                } else {
                    ""
                };
                return Err(format!(
                    "unknown substitution \"%{shown}\" in \"{filter}\"; use %c, %u, %m{token_hint}"
                ));
            }
        };
        if let Some(sub) = sub {
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text).into()));
            }
            pieces.push(Piece::Sub(sub));
        }
        rest = &after[used..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text.into()));
    }
    Ok(pieces)
}

/// Parses `(c, :, 3)`, `(u, -, 1)` or `(j, claim)`, spaces allowed around
/// each part.
fn parse_field(written: &str) -> Result<Sub, String> {
    let inner = &written[1..written.len() - 1];
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    let shown = format!("%{written}");
    let of = match parts[0] {
        "c" => FieldOf::ClientId,
        "u" => FieldOf::Username,
        "j" => {
            return match parts[..] {
                [_, claim] if !claim.is_empty() => Ok(Sub::Claim(claim.into())),
                _ => Err(format!(
                    "{shown} needs a claim name: %(j, <claim>), e.g. %(j, sub)"
                )),
            }
        }
        other => {
            return Err(format!(
                "unknown token field \"{other}\" in {shown}; use c, u or j"
            ))
        }
    };
    let [_, delimiter, number] = parts[..] else {
        return Err(format!(
            "{shown} needs three parts: %({src}, <delimiter>, <field number>), e.g. %({src}, :, 3)",
            src = parts[0]
        ));
    };
    let delimiter = match delimiter {
        ":" => ':',
        "-" => '-',
        "|" => '|',
        other => {
            return Err(format!(
                "bad delimiter \"{other}\" in {shown}; use :, - or |"
            ))
        }
    };
    let index = match number.parse::<usize>() {
        Ok(n) if n >= 1 => n - 1,
        _ => {
            return Err(format!(
                "bad field number \"{number}\" in {shown}; fields count from 1"
            ))
        }
    };
    Ok(Sub::Field {
        of,
        delimiter,
        index,
    })
}
