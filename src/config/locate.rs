//! Where each key and value of a config text is: an index from key paths
//! (`mqtt.max-inflight`, `listeners[1].bind`, `shards.cores[2]`) to byte spans, built
//! with `toml_edit`, which keeps spans for every key (dotted keys included).
//!
//! The loader uses it both ways: a serde error's span gives the key path, and a
//! validation error's key path gives the line.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, TomlError, Value};

/// One key, array element or `[[table]]` entry of the document.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// Full path: `mqtt.max-inflight`, `listeners[1]`, `shards.cores[0]`.
    pub path: String,
    /// Path of the table or array holding it; `""` for the top level.
    pub parent: String,
    /// The key itself; `None` for array elements and `[[table]]` entries.
    pub key: Option<String>,
    pub key_span: Option<Range<usize>>,
    pub value_span: Option<Range<usize>>,
    /// Whether the value is a table (`[x]`, `x = { .. }` or dotted `x.y = ..`).
    pub is_table: bool,
}

impl Entry {
    /// Where to point for this entry: its key if it has one, else its value.
    pub fn span(&self) -> Option<Range<usize>> {
        self.key_span.clone().or_else(|| self.value_span.clone())
    }

    fn spans(&self) -> impl Iterator<Item = &Range<usize>> {
        self.key_span.iter().chain(self.value_span.iter())
    }
}

/// Every entry of one document, in document order.
#[derive(Debug)]
pub(super) struct Index {
    entries: Vec<Entry>,
}

impl Index {
    /// Parses `text`; a syntax error comes back as toml_edit's error, with its span.
    pub fn parse(text: &str) -> Result<Index, TomlError> {
        let doc = ImDocument::parse(text)?;
        let mut entries = Vec::new();
        walk_table(doc.as_table(), "", &mut entries);
        entries.sort_by_key(|e| e.span().map_or(usize::MAX, |s| s.start));
        Ok(Index { entries })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// The span to report for `path`: its value if present, else its key, else the
    /// nearest enclosing entry that is in the text (a default is in no text).
    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut path = path;
        loop {
            if let Some(e) = self.get(path) {
                if let Some(span) = e.value_span.clone().or_else(|| e.key_span.clone()) {
                    return Some(span);
                }
            }
            path = parent_path(path)?;
        }
    }

    /// The innermost entry whose key or value contains byte `offset`.
    pub fn path_at(&self, offset: usize) -> Option<&str> {
        self.entries
            .iter()
            .filter_map(|e| {
                e.spans()
                    .filter(|s| s.contains(&offset) || s.start == offset)
                    .map(|s| s.len())
                    .min()
                    .map(|len| (len, e))
            })
            .min_by_key(|(len, _)| *len)
            .map(|(_, e)| e.path.as_str())
    }
}

/// `mqtt.max-inflight` → `mqtt`, `listeners[1].bind` → `listeners[1]`,
/// `shards.cores[2]` → `shards.cores`, `mqtt` → `""`, `""` → `None`.
pub(super) fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        if let Some(i) = path.rfind('[') {
            return Some(&path[..i]);
        }
    }
    Some(path.rfind('.').map_or("", |i| &path[..i]))
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn walk_table(table: &Table, parent: &str, out: &mut Vec<Entry>) {
    for (key, item) in table.iter() {
        let path = child_path(parent, key);
        out.push(Entry {
            path: path.clone(),
            parent: parent.to_owned(),
            key: Some(key.to_owned()),
            key_span: table.key(key).and_then(|k| k.span()),
            value_span: item.span(),
            is_table: item.is_table_like(),
        });
        walk_item(item, &path, out);
    }
}

fn walk_item(item: &Item, path: &str, out: &mut Vec<Entry>) {
    match item {
        Item::None => {}
        Item::Value(value) => walk_value(value, path, out),
        Item::Table(table) => walk_table(table, path, out),
        Item::ArrayOfTables(array) => {
            for (i, table) in array.iter().enumerate() {
                let element = format!("{path}[{i}]");
                out.push(Entry {
                    path: element.clone(),
                    parent: path.to_owned(),
                    key: None,
                    key_span: None,
                    value_span: table.span(),
                    is_table: true,
                });
                walk_table(table, &element, out);
            }
        }
    }
}

fn walk_value(value: &Value, path: &str, out: &mut Vec<Entry>) {
    match value {
        Value::Array(array) => {
            for (i, v) in array.iter().enumerate() {
                let element = format!("{path}[{i}]");
                out.push(Entry {
                    path: element.clone(),
                    parent: path.to_owned(),
                    key: None,
                    key_span: None,
                    value_span: v.span(),
                    is_table: v.is_inline_table(),
                });
                walk_value(v, &element, out);
            }
        }
        Value::InlineTable(table) => {
            for (key, v) in table.iter() {
                let child = child_path(path, key);
                out.push(Entry {
                    path: child.clone(),
                    parent: path.to_owned(),
                    key: Some(key.to_owned()),
                    key_span: table.key(key).and_then(|k| k.span()),
                    value_span: v.span(),
                    is_table: v.is_inline_table(),
                });
                walk_value(v, &child, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::{parent_path, Index};
    use crate::config::error::line_col;

    const TEXT: &str = "\
mqtt.max-inflight = 5
[shards]
cores = [0, 1, 1]
[[listeners]]
bind = \"127.0.0.1:1\"
[[listeners]]
bind = \"127.0.0.1:2\"
[http]
x = { y = 1 }
";

    fn line_of(index: &Index, path: &str) -> usize {
        let span = index
            .span_of(path)
            .unwrap_or_else(|| panic!("no span for {path}"));
        line_col(TEXT, span.start).0
    }

    #[test]
    fn every_kind_of_key_has_a_line() {
        let index = Index::parse(TEXT).unwrap();
        assert_eq!(line_of(&index, "mqtt.max-inflight"), 1, "dotted key");
        assert_eq!(line_of(&index, "shards.cores"), 3);
        assert_eq!(line_of(&index, "shards.cores[2]"), 3);
        assert_eq!(line_of(&index, "listeners[1].bind"), 7);
        assert_eq!(line_of(&index, "listeners[1]"), 6);
        assert_eq!(line_of(&index, "http.x.y"), 9, "inline table");
        assert_eq!(
            line_of(&index, "listeners[1].protocol"),
            6,
            "a key not in the text points at its table"
        );
    }

    #[test]
    fn offsets_map_back_to_the_innermost_path() {
        let index = Index::parse(TEXT).unwrap();
        let at = |needle: &str| index.path_at(TEXT.find(needle).unwrap()).map(str::to_owned);
        assert_eq!(at("5\n").as_deref(), Some("mqtt.max-inflight"));
        assert_eq!(at("1]").as_deref(), Some("shards.cores[2]"));
        assert_eq!(at("\"127.0.0.1:2\"").as_deref(), Some("listeners[1].bind"));
    }

    #[test]
    fn parents() {
        assert_eq!(parent_path("mqtt.max-inflight"), Some("mqtt"));
        assert_eq!(parent_path("listeners[1].bind"), Some("listeners[1]"));
        assert_eq!(parent_path("listeners[1]"), Some("listeners"));
        assert_eq!(parent_path("mqtt"), Some(""));
        assert_eq!(parent_path(""), None);
    }
}
