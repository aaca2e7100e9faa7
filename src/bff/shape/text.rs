//! Shaping while parsing: a part's kept fields are copied straight from the backend's bytes
//! into the client's JSON text (by [`super::scan`]), so no tree is built, moved or serialized
//! again. This module compiles the rules into the tree the scanner follows.
//!
//! Same rules as shaping a tree (`fields`, `max_items`, `rename`): a missing field is omitted,
//! a field of the wrong type is omitted, an array element of the wrong type is dropped, and
//! only a root of the wrong type leaves nothing. Differences a client can see: keys come in
//! the backend's order instead of sorted, a duplicated key keeps its first value instead of
//! its last, and kept leaves are copied as written (numbers are not reformatted); whitespace
//! outside strings is dropped either way.

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
    pub(super) name: Box<str>,
    /// The key as written for the client, quoted and followed by `:` (`"avatar":`).
    pub(super) key: Box<[u8]>,
    /// The name it is written as (differs from `name` after a rename).
    pub(super) out: Box<str>,
    /// What to keep of its value.
    pub(super) node: TextNode,
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
    super::scan::write(node, cap, bytes, out).map_err(|super::scan::Invalid(at)| {
        serde::de::Error::custom(format_args!("invalid JSON at byte {at}"))
    })
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::{Value, json};

    use super::super::{Answer, Shape};

    /// The text a shape writes for `raw`, checked against shaping the tree (same JSON value).
    pub(in crate::bff::shape) fn both(shape: &Shape, raw: &str) -> Option<Value> {
        let Answer::Text { text, .. } = shape.parse_answer(raw.as_bytes()).unwrap() else {
            panic!("expected shaping while parsing for {shape:?}");
        };
        let text = text.map(|t| {
            let s = std::str::from_utf8(&t).expect("the text is UTF-8");
            serde_json::from_str::<Value>(s).unwrap_or_else(|e| panic!("{e}: wrote {s}"))
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
