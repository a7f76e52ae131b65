//! [`ConfigError`]: everything that can be wrong with a config file, said so that a
//! user can fix it without reading the source: where (file, line, column, key), what,
//! what is allowed, and what to do.

use std::fmt;
use std::io;
use std::ops::Range;

/// A config that cannot be used. Each variant's message is complete on its own:
/// print it with `{}` (or through anyhow with `{:#}`). The location is boxed to keep
/// `Result<Config, ConfigError>` small.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },

    /// The text is not TOML.
    #[error(
        "{at}: not valid TOML: {message}\n  \
         fix: correct the syntax at that spot; `shardmq --print-default-config` shows \
         well-formed examples of every setting"
    )]
    Syntax { at: Box<Location>, message: String },

    /// A top-level key that is not one of the sections.
    #[error(
        "{at}: unknown section {section}\n  \
         valid sections: {valid}\n  \
         fix: {fix}"
    )]
    UnknownSection {
        at: Box<Location>,
        /// `[name]` for a table, `` `name` `` for a plain top-level key.
        section: String,
        valid: String,
        fix: String,
    },

    /// A key that its section does not have.
    #[error(
        "{at}: unknown key `{key}` in section {section}\n  \
         valid keys in {section}: {valid}\n  \
         fix: {fix}"
    )]
    UnknownKey {
        at: Box<Location>,
        /// The section as the file writes it: `[mqtt]`, `[[listeners]] (entry 2)`.
        section: String,
        key: String,
        valid: String,
        fix: String,
    },

    /// A value of the wrong type, out of range, or in conflict with another setting.
    #[error(
        "{at}: {key}: {problem}\n  \
         allowed: {allowed}\n  \
         fix: {fix}"
    )]
    Invalid {
        at: Box<Location>,
        /// Full path of the key: `mqtt.max-inflight`, `listeners[0].bind`.
        key: String,
        problem: String,
        allowed: String,
        fix: String,
    },
}

impl ConfigError {
    /// Where the error is, when it comes from a file or string.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownSection { at, .. }
            | ConfigError::UnknownKey { at, .. }
            | ConfigError::Invalid { at, .. } => Some(at.as_ref()),
        }
    }
}

/// Where in which config a problem is: `configs/x.toml:12:5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file's path as the user gave it, or a name such as `<built-in default>`.
    pub origin: String,
    /// 1-based line and column, when the problem is tied to a spot in the text.
    pub line_col: Option<(usize, usize)>,
}

impl Location {
    /// The spot of byte offset `span.start` in `text`.
    pub fn at(origin: &str, text: &str, span: Option<Range<usize>>) -> Location {
        Location {
            origin: origin.to_owned(),
            line_col: span.map(|s| line_col(text, s.start)),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col {
            Some((line, col)) => write!(f, "{}:{line}:{col}", self.origin),
            None => f.write_str(&self.origin),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn byte_offset_to_line_and_column() {
        let text = "a = 1\n[mqtt]\nmax-é = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 4), (1, 5));
        assert_eq!(line_col(text, 6), (2, 1));
        let eq = text.find(" = 2").unwrap();
        assert_eq!(
            line_col(text, eq),
            (3, 6),
            "columns count characters, not bytes"
        );
        assert_eq!(line_col(text, 10_000), (4, 1), "past the end clamps");
    }
}
