//! etcd's JSON gateway, the parts discovery reads: `/v3/kv/range` and `/v3/watch` bodies and
//! answers (keys and values base64, 64-bit numbers as strings).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// The key just past every key under `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The `/v3/kv/range` body listing every key under `prefix`.
pub fn range_body(prefix: &str) -> String {
    json!({
        "key": B64.encode(prefix),
        "range_end": B64.encode(prefix_end(prefix.as_bytes())),
    })
    .to_string()
}

/// The `/v3/watch` body watching `prefix` from `revision`.
pub fn watch_body(prefix: &str, revision: i64) -> String {
    json!({"create_request": {
        "key": B64.encode(prefix),
        "range_end": B64.encode(prefix_end(prefix.as_bytes())),
        "start_revision": revision.to_string(),
    }})
    .to_string()
}

/// A 64-bit number etcd writes as a string (or, from some versions, a number).
fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// A key as text and its raw value.
pub type Pair = (String, Vec<u8>);

/// A key-value pair: the key as text and the raw value.
fn kv(v: &Value) -> Option<Pair> {
    let key = B64.decode(v.get("key")?.as_str()?).ok()?;
    let value = match v.get("value").and_then(Value::as_str) {
        Some(s) => B64.decode(s).ok()?,
        None => Vec::new(),
    };
    Some((String::from_utf8_lossy(&key).into_owned(), value))
}

/// A range answer -> the pairs and the store's revision.
pub fn range_answer(v: &Value) -> Result<(Vec<Pair>, i64), String> {
    if let Some(e) = v.get("error").or_else(|| v.get("message")) {
        return Err(format!("etcd: {e}"));
    }
    let rev = int(v.pointer("/header/revision")).ok_or("etcd: a range answer without revision")?;
    let kvs = match v.get("kvs").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(kv).collect(),
        None => Vec::new(),
    };
    Ok((kvs, rev))
}

/// One change a watch reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A key was written.
    Put(String, Vec<u8>),
    /// A key was deleted.
    Delete(String),
}

/// One watch message.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// Changes (possibly none: the creation answer, progress notices).
    Events(Vec<Event>),
    /// The watch ended: compacted past its revision, or canceled by the server.
    Canceled(String),
}

/// A watch stream message (`{"result": {...}}`).
pub fn watch_message(v: &Value) -> Result<WatchMessage, String> {
    if let Some(e) = v.get("error") {
        return Err(format!("etcd watch: {e}"));
    }
    let r = v
        .get("result")
        .ok_or("etcd watch: a message without result")?;
    if r.get("canceled").and_then(Value::as_bool) == Some(true) {
        let why = match int(r.get("compact_revision")) {
            Some(c) if c > 0 => format!("compacted at revision {c}"),
            _ => r
                .get("cancel_reason")
                .and_then(Value::as_str)
                .unwrap_or("canceled")
                .to_owned(),
        };
        return Ok(WatchMessage::Canceled(why));
    }
    let mut out = Vec::new();
    for e in r
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some((key, value)) = e.get("kv").and_then(kv) else {
            continue;
        };
        match e.get("type").and_then(Value::as_str) {
            Some("DELETE") => out.push(Event::Delete(key)),
            _ => out.push(Event::Put(key, value)),
        }
    }
    Ok(WatchMessage::Events(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_and_messages() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        let put = json!({"result": {"header": {"revision": "7"}, "events": [
            {"kv": {"key": B64.encode("/s/a"), "value": B64.encode("{}")}},
            {"type": "DELETE", "kv": {"key": B64.encode("/s/b")}}
        ]}});
        assert_eq!(
            watch_message(&put).unwrap(),
            WatchMessage::Events(vec![
                Event::Put("/s/a".into(), b"{}".to_vec()),
                Event::Delete("/s/b".into())
            ])
        );
        let gone = json!({"result": {"canceled": true, "compact_revision": "5"}});
        assert_eq!(
            watch_message(&gone).unwrap(),
            WatchMessage::Canceled("compacted at revision 5".into())
        );
        let list = json!({"header": {"revision": "9"}, "kvs": [{"key": B64.encode("/s/a"), "value": B64.encode("x")}]});
        assert_eq!(
            range_answer(&list).unwrap(),
            (vec![("/s/a".to_owned(), b"x".to_vec())], 9)
        );
    }
}
