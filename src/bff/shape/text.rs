//! Shaping while parsing: a part's kept fields are copied straight from the backend's bytes
//! into the client's JSON text, so no tree is built, moved or serialized again.
//!
//! Same rules as shaping a tree (`fields`, `max_items`, `rename`): a missing field is omitted,
//! a field of the wrong type is omitted, an array element of the wrong type is dropped, and
//! only a root of the wrong type leaves nothing. Differences a client can see: keys come in
//! the backend's order instead of sorted, a duplicated key keeps its first value instead of
//! its last, and kept leaves are copied as written (numbers are not reformatted); whitespace
//! outside strings is dropped either way.

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{Node, Rename, Step};

/// What the writer keeps of a value: the `fields` tree with `rename` folded into its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TextNode {
    /// Everything (capped at `max_items` per array, if set).
    All,
    /// These keys of an object, at most 64 (one bit each marks a key already written).
    Object(Box<[Child]>),
    /// Every element of an array, shaped by the inner node.
    Each(Box<TextNode>),
}

/// One kept key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Child {
    /// The key in the backend's answer.
    name: Box<str>,
    /// The key as written for the client, quoted and followed by `:` (`"avatar":`).
    key: Box<[u8]>,
    /// The name it is written as (differs from `name` after a rename).
    out: Box<str>,
    node: TextNode,
}

/// Compiles `fields` and `rename` into a writer tree. `None` when a rule needs the tree
/// (a rename inside a field kept whole, a rename onto a kept sibling's name, a rename of a
/// renamed key, more than 64 keys in one object): those parts are shaped as trees.
pub(super) fn compile(fields: Option<&Node>, renames: &[Rename]) -> Option<TextNode> {
    let mut root = match fields {
        None if renames.is_empty() => return Some(TextNode::All),
        None => return None,
        Some(node) => from_node(node)?,
    };
    for r in renames {
        apply_rename(&mut root, &r.path, &r.from, &r.to)?;
    }
    Some(root)
}

fn from_node(node: &Node) -> Option<TextNode> {
    Some(match node {
        Node::All => TextNode::All,
        Node::Each(inner) => TextNode::Each(Box::new(from_node(inner)?)),
        Node::Object(children) if children.len() > 64 => return None,
        Node::Object(children) => TextNode::Object(
            children
                .iter()
                .map(|(name, node)| {
                    Some(Child {
                        key: key_json(name),
                        name: name.clone(),
                        out: name.clone(),
                        node: from_node(node)?,
                    })
                })
                .collect::<Option<_>>()?,
        ),
    })
}

/// `"name":` with the name escaped as a JSON string.
fn key_json(name: &str) -> Box<[u8]> {
    let mut key = serde_json::to_vec(name).expect("a string always serializes");
    key.push(b':');
    key.into()
}

/// Folds one rename into the tree; `Some(())` also when it cannot match anything (the tree
/// shaper would find nothing to rename either), `None` when only a tree can apply it.
fn apply_rename(node: &mut TextNode, path: &[Step], from: &str, to: &str) -> Option<()> {
    match (path.split_first(), node) {
        (_, TextNode::All) => None,
        (None, TextNode::Object(children)) => {
            let Some(i) = children.iter().position(|c| &*c.name == from) else {
                // A rename of a renamed key (`a` to `b`, then `b` to `c`) needs the tree.
                return (!children.iter().any(|c| &*c.out == from)).then_some(());
            };
            let clash = children[i].name != children[i].out
                || children.iter().any(|c| &*c.name == to || &*c.out == to);
            if clash {
                return None;
            }
            children[i].out = to.into();
            children[i].key = key_json(to);
            Some(())
        }
        (Some((Step::Key(k), rest)), TextNode::Object(children)) => {
            match children.iter_mut().find(|c| c.name == *k) {
                Some(c) => apply_rename(&mut c.node, rest, from, to),
                None => Some(()),
            }
        }
        (Some((Step::Each, rest)), TextNode::Each(inner)) => apply_rename(inner, rest, from, to),
        // The path crosses an array where an object is kept, or the reverse: nothing matches.
        _ => Some(()),
    }
}

/// Writes the shaped answer of `bytes` to `out`. `Ok(false)` when the root has the wrong type
/// (nothing of the expected shape); invalid JSON is an error, as it is for the tree parser.
pub(super) fn write(
    node: &TextNode,
    cap: Option<usize>,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> serde_json::Result<bool> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let kept = Write { node, cap, out }.deserialize(&mut de)?;
    de.end()?;
    Ok(kept)
}

/// Writes what `node` keeps of one value; `false` (and possibly partial output, which the
/// caller cuts off) when the value has the wrong type for the node.
struct Write<'a> {
    node: &'a TextNode,
    cap: Option<usize>,
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Write<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        match (self.node, self.cap) {
            // A whole value with no array to cap: its text, as the parser saw it.
            (TextNode::All, None) => {
                let raw = <&RawValue>::deserialize(d)?;
                push_compact(self.out, raw.get().as_bytes());
                Ok(true)
            }
            _ => d.deserialize_any(self),
        }
    }
}

/// Copies JSON text without the whitespace outside its strings.
fn push_compact(out: &mut Vec<u8>, text: &[u8]) {
    if !text
        .iter()
        .any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
    {
        out.extend_from_slice(text);
        return;
    }
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            continue;
        } else if b == b'"' {
            in_string = true;
        }
        out.push(b);
    }
}

/// Matches an object key against a node's children without allocating.
struct KeyIndex<'a>(&'a [Child]);

impl<'de> DeserializeSeed<'de> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        // As bytes: a key is only compared with names that are valid UTF-8, so checking
        // every key of the answer for UTF-8 (a third of the parse) buys nothing.
        d.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_bytes<E>(self, key: &[u8]) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|c| c.name.as_bytes() == key))
    }
}

/// Writes an object key as it comes (for fields kept whole under `max_items`).
struct KeyCopy<'a>(&'a mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for KeyCopy<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyCopy<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<(), E> {
        push_scalar(self.0, &key);
        self.0.push(b':');
        Ok(())
    }
}

/// Serializes a scalar the parser has already decoded (only for fields kept whole under
/// `max_items`, where the writer walks the value instead of copying it).
fn push_scalar<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing a bool, number or string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

impl<'de> Visitor<'de> for Write<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let out = self.out;
        match self.node {
            TextNode::Object(children) => {
                out.push(b'{');
                let mut written: u64 = 0;
                while let Some(found) = map.next_key_seed(KeyIndex(children))? {
                    let Some(i) = found.filter(|&i| written & (1 << i) == 0) else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    let mark = out.len();
                    if written != 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&children[i].key);
                    let seed = Write {
                        node: &children[i].node,
                        cap: self.cap,
                        out: &mut *out,
                    };
                    if map.next_value_seed(seed)? {
                        written |= 1 << i;
                    } else {
                        out.truncate(mark);
                    }
                }
                out.push(b'}');
                Ok(true)
            }
            TextNode::All => {
                out.push(b'{');
                let mut first = true;
                loop {
                    // The comma goes out before the key it precedes, and is taken back when
                    // there is no next key.
                    let mark = out.len();
                    if !first {
                        out.push(b',');
                    }
                    if map.next_key_seed(KeyCopy(&mut *out))?.is_none() {
                        out.truncate(mark);
                        break;
                    }
                    first = false;
                    let seed = Write {
                        node: &TextNode::All,
                        cap: self.cap,
                        out: &mut *out,
                    };
                    map.next_value_seed(seed)?;
                }
                out.push(b'}');
                Ok(true)
            }
            TextNode::Each(_) => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(false)
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let inner = match self.node {
            TextNode::Each(inner) => &**inner,
            TextNode::All => &TextNode::All,
            TextNode::Object(_) => {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(false);
            }
        };
        let out = self.out;
        out.push(b'[');
        let (mut seen, mut wrote) = (0usize, false);
        while seen < self.cap.unwrap_or(usize::MAX) {
            let mark = out.len();
            if wrote {
                out.push(b',');
            }
            let seed = Write {
                node: inner,
                cap: self.cap,
                out: &mut *out,
            };
            match seq.next_element_seed(seed)? {
                Some(true) => wrote = true,
                Some(false) => out.truncate(mark),
                None => {
                    out.truncate(mark);
                    out.push(b']');
                    return Ok(true);
                }
            }
            seen += 1;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        out.push(b']');
        Ok(true)
    }

    fn visit_bool<E>(self, v: bool) -> Result<bool, E> {
        Ok(self.scalar(&v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<bool, E> {
        Ok(self.scalar(&v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<bool, E> {
        Ok(self.scalar(&v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<bool, E> {
        Ok(self.scalar(&v))
    }
    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(self.scalar(v))
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(self.scalar(&()))
    }
}

impl Write<'_> {
    /// A scalar is kept only where the node keeps everything.
    fn scalar<T: serde::Serialize + ?Sized>(self, v: &T) -> bool {
        let keep = matches!(self.node, TextNode::All);
        if keep {
            push_scalar(self.out, v);
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::{Answer, Shape};

    /// The text a shape writes for `raw`, checked against shaping the tree (same JSON value).
    fn both(shape: &Shape, raw: &str) -> Option<Value> {
        let Answer::Text { text, .. } = shape.parse_answer(raw.as_bytes()).unwrap() else {
            panic!("expected shaping while parsing for {shape:?}");
        };
        let text = text.map(|t| {
            let s = std::str::from_utf8(&t).unwrap().to_owned();
            assert!(!s.contains([' ', '\n']) || s.contains('"'), "compact: {s}");
            serde_json::from_str::<Value>(&s).unwrap_or_else(|e| panic!("{e}: {s}"))
        });
        let tree = shape.apply(serde_json::from_str(raw).unwrap());
        assert_eq!(text, tree, "text and tree shaping agree on {raw}");
        text
    }

    fn shape(fields: Option<&[&str]>, max: Option<usize>, renames: &[(&str, &str)]) -> Shape {
        Shape::new(fields, max, renames).unwrap()
    }

    #[test]
    fn text_shaping_keeps_the_same_fields_as_tree_shaping() {
        let s = shape(
            Some(&["id", "address.city", "items[].id", "items[].status"]),
            None,
            &[],
        );
        let raw = r#"{"id": 1, "secret": "x", "address": {"city": "Lon\"don", "postcode": "N1"},
            "items": [{"id": "a", "status": "ok", "total": 3}, {"id": "b"}, 7, [1]]}"#;
        assert_eq!(
            both(&s, raw).unwrap(),
            json!({"id": 1, "address": {"city": "Lon\"don"},
                   "items": [{"id": "a", "status": "ok"}, {"id": "b"}]})
        );
        // Wrong types: omitted below the root, nothing at the root.
        both(&s, r#"{"id": 1, "items": {"id": "x"}, "address": "flat"}"#);
        assert_eq!(both(&s, "[1, 2]"), None);
        assert_eq!(both(&s, r#""text""#), None);
        assert_eq!(both(&s, "null"), None);
        let root = shape(Some(&["[].id"]), None, &[]);
        assert_eq!(
            both(&root, r#"[{"id": 1, "x": 2}, null, {"y": 1}]"#).unwrap(),
            json!([{"id": 1}, {}])
        );
        // Invalid JSON is an error, even in the skipped parts.
        assert!(s.parse_answer(br#"{"id": 1"#).is_err());
        assert!(s.parse_answer(br#"{"id": 1} trailing"#).is_err());
        assert!(s.parse_answer(br#"{"id": 1, "secret": [1, }"#).is_err());
    }

    #[test]
    fn text_is_compact_and_leaves_are_copied_as_written() {
        let s = shape(Some(&["a", "b"]), None, &[]);
        let Answer::Text { text, .. } = s
            .parse_answer(b"{ \"a\" : { \"x\" : [ 1 , 2.50 ] , \"s\" : \"two  spaces\\\" \" } ,\n\t\"b\": 1e3 }")
            .unwrap()
        else {
            panic!("text expected");
        };
        assert_eq!(
            &*text.unwrap(),
            br#"{"a":{"x":[1,2.50],"s":"two  spaces\" "},"b":1e3}"#
        );
    }

    #[test]
    fn max_items_caps_arrays_kept_whole_and_each_lists() {
        let s = shape(Some(&["items[].id", "tags", "deep"]), Some(2), &[]);
        let raw = r#"{"items": [{"id": 1}, 5, {"id": 3}], "tags": ["a", "b", "c"],
            "deep": {"x": [[1, 2, 3], {"k": [true, false, null]}, 3], "n": -1.5, "e": "\u00e9"}}"#;
        assert_eq!(
            both(&s, raw).unwrap(),
            json!({"items": [{"id": 1}], "tags": ["a", "b"],
                   "deep": {"x": [[1, 2], {"k": [true, false]}], "n": -1.5, "e": "é"}})
        );
        let whole = shape(None, Some(1), &[]);
        both(&whole, r#"{"a": [1, 2], "b": {"c": [3, 4]}, "d": {}}"#);
        both(&whole, r#"[]"#);
    }

    #[test]
    fn renames_fold_into_the_written_keys() {
        let s = shape(
            Some(&["avatar_url", "items[].status"]),
            None,
            &[
                ("avatar_url", "avatar"),
                ("items[].status", "state"),
                ("nope.x", "y"),
            ],
        );
        assert_eq!(
            both(&s, r#"{"avatar_url": "u", "items": [{"status": "s"}]}"#).unwrap(),
            json!({"avatar": "u", "items": [{"state": "s"}]})
        );
        // Renames only a tree can apply: inside a field kept whole, onto a kept name, chains.
        for (fields, renames) in [
            (&["address"][..], &[("address.city", "town")][..]),
            (&["a", "b"][..], &[("a", "b")][..]),
            (&["a"][..], &[("a", "b"), ("b", "c")][..]),
            (&["a"][..], &[("a", "b"), ("a", "c")][..]),
        ] {
            let s = shape(Some(fields), None, renames);
            assert!(
                matches!(s.parse_answer(b"{}").unwrap(), Answer::Tree(_)),
                "{renames:?}"
            );
        }
        let s = shape(None, None, &[("a", "b")]);
        assert!(matches!(s.parse_answer(b"{}").unwrap(), Answer::Tree(_)));
        // Two renames in one object are independent.
        let s = shape(Some(&["a", "b"]), None, &[("a", "x"), ("b", "y")]);
        assert_eq!(
            both(&s, r#"{"a": 1, "b": 2}"#).unwrap(),
            json!({"x": 1, "y": 2})
        );
    }

    #[test]
    fn a_duplicated_key_is_written_once() {
        let s = shape(Some(&["a"]), None, &[]);
        let Answer::Text { text, .. } = s.parse_answer(br#"{"a": 1, "a": 2}"#).unwrap() else {
            panic!("text expected");
        };
        assert_eq!(&*text.unwrap(), br#"{"a":1}"#);
    }

    #[test]
    fn template_reads_are_parsed_beside_the_text() {
        let mut s = shape(Some(&["id"]), Some(1), &[]);
        let seg: Box<[Box<str>]> = Box::new(["segment".into()]);
        let lines: Box<[Box<str>]> = Box::new(["lines".into(), "1".into()]);
        s.keep_for_templates(&[&seg, &lines]);
        let raw = br#"{"id": 7, "segment": "gold", "lines": [1, 2, 3], "x": 0}"#;
        let answer = s.parse_answer(raw).unwrap();
        assert_eq!(
            answer.reads(),
            &json!({"segment": "gold", "lines": [1, 2, 3]}),
            "reads are not capped: templates may index past max_items"
        );
        let Answer::Text { text, .. } = answer else {
            panic!("text expected");
        };
        assert_eq!(&*text.unwrap(), br#"{"id":7}"#);
        // A template reading the whole answer gets all of it.
        let mut whole = shape(Some(&["id"]), None, &[]);
        whole.keep_for_templates(&[&[]]);
        assert_eq!(whole.parse_answer(raw).unwrap().reads()["x"], json!(0));
        // No template reads: nothing is built.
        assert_eq!(
            shape(Some(&["id"]), None, &[])
                .parse_answer(raw)
                .unwrap()
                .reads(),
            &Value::Null
        );
    }
}
