//! Reading the reply values the store and the cluster get back.

use ::redis::Value;
use bytestring::ByteString;

/// The bytes of a bulk string.
pub fn bulk(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

/// A bulk or simple string, as UTF-8 text.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// A `SCAN`-family reply, `[cursor, [member, ...]]`: the next cursor (0 at
/// the end) and the members that are UTF-8.
pub fn scan(reply: &Value) -> Option<(u64, Vec<ByteString>)> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let [cursor, Value::Array(members)] = &parts[..] else {
        return None;
    };
    let cursor = std::str::from_utf8(bulk(cursor)?).ok()?.parse().ok()?;
    let members = members
        .iter()
        .filter_map(|m| String::from_utf8(bulk(m)?.to_vec()).ok())
        .map(ByteString::from)
        .collect();
    Some((cursor, members))
}
