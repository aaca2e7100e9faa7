//! Shaping a part's answer for the client: `fields` allow-list, `max_items`, `rename`.
//!
//! Field paths are compiled once into a tree. Answers are parsed through a projection of that
//! tree (plus what other parts' templates read), so fields nobody needs are skipped by the
//! parser instead of being built and dropped; shaping then moves values out of the parsed
//! answer (no copies). Unexpected shapes never fail: a missing field is omitted, a field of the
//! wrong type (an object where an array was expected, ...) is omitted.

mod scan;
mod text;

use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(Box<str>),
    Each,
}

/// What to keep of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// Everything.
    All,
    /// These keys of an object.
    Object(Box<[(Box<str>, Node)]>),
    /// Every element of an array, shaped by the inner node.
    Each(Box<Node>),
}

/// A compiled rename: walk `path`, then rename key `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rename {
    path: Box<[Step]>,
    from: Box<str>,
    to: Box<str>,
}

/// The compiled shaping rules of one part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    fields: Option<Node>,
    max_items: Option<usize>,
    renames: Box<[Rename]>,
    /// What the parser keeps: `fields` plus the paths other parts read (`None`: everything).
    projection: Option<Node>,
    /// `max_items` applied while parsing (elements past it are skipped unbuilt); off when
    /// other parts' templates read this part's answer (they may index past the cap).
    parse_cap: Option<usize>,
    /// The rules as a text writer, when they can be applied while parsing (see [`Answer`]).
    text: Option<text::TextNode>,
    /// What other parts' templates read: `None` nothing, `Some(None)` the whole answer.
    reads: Option<Option<Node>>,
}

/// A part's parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A tree (projected), shaped when the client's answer is assembled.
    Tree(Value),
    /// Shaped while parsing: the kept fields copied from the backend's bytes.
    Text {
        /// The client's JSON text; `None` when the root had the wrong type.
        text: Option<Bytes>,
        /// What other parts' templates read of the answer (`Null` when they read nothing).
        reads: Value,
    },
}

impl Answer {
    /// What other parts' templates read.
    pub fn reads(&self) -> &Value {
        match self {
            Answer::Tree(v) => v,
            Answer::Text { reads, .. } => reads,
        }
    }
}

/// Parses `items[].id` into steps.
fn steps(path: &str) -> Result<Vec<Step>, String> {
    let bad = |why: &str| format!("bad field path \"{path}\": {why}");
    if path.is_empty() {
        return Err(bad("empty"));
    }
    let mut out = Vec::new();
    for (i, seg) in path.split('.').enumerate() {
        let mut name = seg;
        let mut arrays = 0;
        while let Some(n) = name.strip_suffix("[]") {
            name = n;
            arrays += 1;
        }
        if name.contains(['[', ']', '{', '}', '*']) {
            return Err(bad(
                "use `name[]` for arrays; other brackets and wildcards are not supported",
            ));
        }
        match (name.is_empty(), i, arrays) {
            (true, 0, 1..) => {}
            (true, _, _) => return Err(bad("empty name between dots")),
            (false, _, _) => out.push(Step::Key(name.into())),
        }
        out.extend(std::iter::repeat_n(Step::Each, arrays));
    }
    Ok(out)
}

/// Adds one path to a tree; `All` absorbs anything below it.
fn insert(node: &mut Node, steps: &[Step]) -> Result<(), String> {
    let Some((first, rest)) = steps.split_first() else {
        *node = Node::All;
        return Ok(());
    };
    match (first, &mut *node) {
        (_, Node::All) => Ok(()),
        (Step::Key(k), Node::Object(children)) => {
            let mut list = std::mem::take(children).into_vec();
            let result = match list.iter_mut().find(|(name, _)| name == k) {
                Some((_, child)) => insert(child, rest),
                None => {
                    let mut child = empty_for(rest);
                    let r = insert(&mut child, rest);
                    list.push((k.clone(), child));
                    r
                }
            };
            *children = list.into();
            result
        }
        (Step::Each, Node::Each(inner)) => insert(inner, rest),
        _ => Err("a path treats the same value as both an array (`[]`) and an object".into()),
    }
}

fn empty_for(steps: &[Step]) -> Node {
    match steps.first() {
        None => Node::All,
        Some(Step::Key(_)) => Node::Object(Box::new([])),
        Some(Step::Each) => Node::Each(Box::new(empty_for(&steps[1..]))),
    }
}

impl Shape {
    /// Compiles the rules; errors name the offending entry.
    pub fn new(
        fields: Option<&[&str]>,
        max_items: Option<usize>,
        renames: &[(&str, &str)],
    ) -> Result<Shape, String> {
        let fields = match fields {
            None => None,
            Some([]) => Some(Node::Object(Box::new([]))),
            Some(list) => {
                let parsed: Vec<Vec<Step>> =
                    list.iter().map(|p| steps(p)).collect::<Result<_, _>>()?;
                let mut root = empty_for(&parsed[0]);
                for (p, s) in list.iter().zip(&parsed) {
                    insert(&mut root, s).map_err(|e| format!("field \"{p}\": {e}"))?;
                }
                Some(root)
            }
        };
        let mut compiled = Vec::new();
        for (path, to) in renames {
            let mut s = steps(path)?;
            let Some(Step::Key(from)) = s.pop() else {
                return Err(format!(
                    "rename \"{path}\": the path must end in a field name"
                ));
            };
            if to.is_empty() || to.contains(['.', '[', ']']) {
                return Err(format!(
                    "rename \"{path}\" = \"{to}\": the new name must be a plain field name"
                ));
            }
            compiled.push(Rename {
                path: s.into(),
                from,
                to: (*to).into(),
            });
        }
        Ok(Shape {
            projection: fields.clone(),
            parse_cap: max_items,
            text: text::compile(fields.as_ref(), &compiled),
            reads: None,
            fields,
            max_items,
            renames: compiled.into(),
        })
    }

    /// Widens the parse projection with paths other parts' templates read from this part's
    /// raw answer (`segment`, `lines.0.sku`). An index keeps its whole array; a path the tree
    /// cannot hold, or the whole answer, turns the projection off.
    pub fn keep_for_templates(&mut self, reads: &[&[Box<str>]]) {
        if !reads.is_empty() {
            self.parse_cap = None;
            self.reads = Some(Some(Node::Object(Box::new([]))));
        }
        for path in reads {
            let steps: Vec<Step> = path
                .iter()
                .take_while(|seg| seg.parse::<usize>().is_err())
                .map(|seg| Step::Key(seg.clone()))
                .collect();
            for tree in [
                &mut self.projection,
                self.reads.as_mut().expect("set above"),
            ] {
                if let Some(node) = tree.as_mut() {
                    if steps.is_empty() || insert(node, &steps).is_err() {
                        *tree = None;
                    }
                }
            }
        }
    }

    /// Turns shaping while parsing off: the answer is kept as a tree (for `flatten`, whose
    /// keys are merged into the client's answer one by one).
    pub fn tree_only(&mut self) {
        self.text = None;
    }

    /// Parses an answer: into its shaped text when the rules allow (plus a tree of what
    /// templates read), else into a projected tree.
    pub fn parse_answer(&self, bytes: &[u8]) -> serde_json::Result<Answer> {
        let Some(node) = &self.text else {
            return self.parse(bytes).map(Answer::Tree);
        };
        // The text is at most about the answer's size; one allocation in the common case.
        let mut out = Vec::with_capacity(bytes.len());
        let kept = text::write(node, self.max_items, bytes, &mut out)?;
        // A large answer of which little is kept would otherwise hold its whole size for as
        // long as the text lives (in the part cache, up to `ttl + stale_if_error`).
        if out.capacity() > 4 * out.len() + 4096 {
            out.shrink_to_fit();
        }
        let reads = match &self.reads {
            None => Value::Null,
            Some(None) => serde_json::from_slice(bytes)?,
            Some(Some(node)) => reads_of(node, bytes)?,
        };
        Ok(Answer::Text {
            text: kept.then(|| Bytes::from(out)),
            reads,
        })
    }

    /// Parses an answer, building only what the projection keeps.
    pub fn parse(&self, bytes: &[u8]) -> serde_json::Result<Value> {
        match &self.projection {
            None => serde_json::from_slice(bytes),
            Some(node) => project(node, self.parse_cap, bytes),
        }
    }

    /// Whether shaping changes nothing (the answer is passed on whole).
    pub fn is_identity(&self) -> bool {
        self.fields.is_none() && self.max_items.is_none() && self.renames.is_empty()
    }

    /// Shapes an answer; `None` when nothing of the expected shape is left.
    pub fn apply(&self, value: Value) -> Option<Value> {
        let mut value = match &self.fields {
            None => {
                let mut v = value;
                if let Some(max) = self.max_items {
                    cap_all(&mut v, max);
                }
                v
            }
            Some(node) => keep(node, value, self.max_items)?,
        };
        for r in self.renames.iter() {
            rename(&mut value, &r.path, &r.from, &r.to);
        }
        Some(value)
    }
}

/// Parses `bytes` building only what `node` keeps (arrays capped at `cap` while parsing).
fn project(node: &Node, cap: Option<usize>, bytes: &[u8]) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Project(node, cap).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// What templates read of an answer already checked by the scanner: the root object's read
/// members are found by [`scan::members`], and only their values are parsed (as `project`
/// of the whole answer would, which built nothing else but still parsed every byte).
fn reads_of(node: &Node, bytes: &[u8]) -> serde_json::Result<Value> {
    let Node::Object(children) = node else {
        return project(node, None, bytes);
    };
    let found = match scan::members(children, bytes) {
        Ok(found) => found,
        // The scanner checked the answer already; this is a key it cannot decode (escapes
        // that are not UTF-8), which the parser compares as bytes: its answer, whatever it is.
        Err(_) => return project(node, None, bytes),
    };
    let Some(found) = found else {
        // Not an object: nothing of the expected shape, as `project` says.
        return Ok(Value::Null);
    };
    let mut out = Map::new();
    for (i, start, end) in found {
        let (key, child) = &children[i];
        // In document order, so a duplicated key ends with its last value, as in `project`.
        out.insert(
            String::from(&**key),
            project(child, None, &bytes[start..end])?,
        );
    }
    Ok(Value::Object(out))
}

fn keep(node: &Node, value: Value, max: Option<usize>) -> Option<Value> {
    match (node, value) {
        (Node::All, mut v) => {
            if let Some(max) = max {
                cap_all(&mut v, max);
            }
            Some(v)
        }
        (Node::Object(children), Value::Object(mut map)) => {
            // In place: the parser's projection already left (mostly) the kept keys, so the
            // map and its keys are reused instead of rebuilt (an object's keys are ordered by
            // name either way).
            map.retain(|k, v| match children.iter().find(|(key, _)| **key == **k) {
                Some((_, child)) => match keep(child, std::mem::take(v), max) {
                    Some(kept) => {
                        *v = kept;
                        true
                    }
                    None => false,
                },
                None => false,
            });
            Some(Value::Object(map))
        }
        (Node::Each(inner), Value::Array(mut items)) => {
            if let Some(max) = max {
                items.truncate(max);
            }
            Some(Value::Array(
                items
                    .into_iter()
                    .filter_map(|v| keep(inner, v, max))
                    .collect(),
            ))
        }
        _ => None,
    }
}

/// Caps every array at any depth.
fn cap_all(value: &mut Value, max: usize) {
    match value {
        Value::Array(items) => {
            items.truncate(max);
            items.iter_mut().for_each(|v| cap_all(v, max));
        }
        Value::Object(map) => map.values_mut().for_each(|v| cap_all(v, max)),
        _ => {}
    }
}

fn rename(value: &mut Value, path: &[Step], from: &str, to: &str) {
    match (path.split_first(), value) {
        (None, Value::Object(map)) => {
            if let Some(v) = map.remove(from) {
                map.insert(to.to_string(), v);
            }
        }
        (Some((Step::Key(k), rest)), Value::Object(map)) => {
            if let Some(v) = map.get_mut(&**k) {
                rename(v, rest, from, to);
            }
        }
        (Some((Step::Each, rest)), Value::Array(items)) => {
            for v in items {
                rename(v, rest, from, to);
            }
        }
        _ => {}
    }
}

/// Deserializes the parts of a value a node keeps; anything else is skipped unbuilt. A value
/// of the wrong type for its node becomes `null` (shaping then omits it).
/// The second field caps the arrays of `Each` nodes (`max_items`).
struct Project<'a>(&'a Node, Option<usize>);

impl<'de> DeserializeSeed<'de> for Project<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self.0 {
            Node::All => Value::deserialize(d),
            node => d.deserialize_any(ProjectVisitor(node, self.1)),
        }
    }
}

/// Matches an object key against a node's children without allocating.
struct KeyIndex<'a>(&'a [(Box<str>, Node)]);

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
        Ok(self.0.iter().position(|(k, _)| k.as_bytes() == key))
    }
}

struct ProjectVisitor<'a>(&'a Node, Option<usize>);

impl<'de> Visitor<'de> for ProjectVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Node::Object(children) = self.0 else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Value::Null);
        };
        let mut out = Map::new();
        while let Some(found) = map.next_key_seed(KeyIndex(children))? {
            match found {
                Some(i) => {
                    let (key, node) = &children[i];
                    let v = map.next_value_seed(Project(node, self.1))?;
                    // `String::from`, not `to_string`: on a `Box<str>` that goes through
                    // `Display` (a formatter per kept key).
                    out.insert(String::from(&**key), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let Node::Each(inner) = self.0 else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Value::Null);
        };
        let cap = self.1.unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64).min(cap));
        while out.len() < cap {
            match seq.next_element_seed(Project(inner, self.1))? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Array(out))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests;
