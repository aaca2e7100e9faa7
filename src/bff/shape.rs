//! Shaping a part's answer for the client: `fields` allow-list, `max_items`, `rename`.
//!
//! Field paths are compiled once into a tree; shaping moves values out of the parsed answer
//! (no copies). Unexpected shapes never fail: a missing field is omitted, a field of the wrong
//! type (an object where an array was expected, ...) is omitted.

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
            return Err(bad("use `name[]` for arrays; other brackets and wildcards are not supported"));
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
            fields,
            max_items,
            renames: compiled.into(),
        })
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

fn keep(node: &Node, value: Value, max: Option<usize>) -> Option<Value> {
    match (node, value) {
        (Node::All, mut v) => {
            if let Some(max) = max {
                cap_all(&mut v, max);
            }
            Some(v)
        }
        (Node::Object(children), Value::Object(mut map)) => {
            let mut out = Map::new();
            for (key, child) in children.iter() {
                if let Some(v) = map.remove(&**key).and_then(|v| keep(child, v, max)) {
                    out.insert(key.to_string(), v);
                }
            }
            Some(Value::Object(out))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(fields: &[&str], max: Option<usize>, renames: &[(&str, &str)]) -> Shape {
        Shape::new(Some(fields), max, renames).unwrap()
    }

    #[test]
    fn allow_list_with_nested_paths_and_arrays() {
        let s = shape(&["id", "address.city", "items[].id", "items[].status"], None, &[]);
        let v = json!({
            "id": 1, "secret": "x",
            "address": {"city": "London", "postcode": "N1"},
            "items": [{"id": "a", "status": "ok", "total": 3}, {"id": "b"}, 7]
        });
        assert_eq!(
            s.apply(v).unwrap(),
            json!({"id": 1, "address": {"city": "London"},
                   "items": [{"id": "a", "status": "ok"}, {"id": "b"}]})
        );
    }

    #[test]
    fn wrong_shapes_are_omitted_not_fatal() {
        let s = shape(&["id", "items[].id", "address.city"], None, &[]);
        let v = json!({"id": 1, "items": {"id": "not an array"}, "address": "flat"});
        assert_eq!(s.apply(v).unwrap(), json!({"id": 1}));
        assert_eq!(s.apply(json!([1, 2])), None);
        assert_eq!(s.apply(json!("text")), None);
        let root = shape(&["[].id"], None, &[]);
        assert_eq!(
            root.apply(json!([{"id": 1, "x": 2}, null])).unwrap(),
            json!([{"id": 1}])
        );
    }

    #[test]
    fn max_items_caps_every_array() {
        let s = shape(&["items[].id", "tags"], Some(2), &[]);
        let v = json!({"items": [{"id": 1}, {"id": 2}, {"id": 3}], "tags": ["a", "b", "c"]});
        assert_eq!(
            s.apply(v).unwrap(),
            json!({"items": [{"id": 1}, {"id": 2}], "tags": ["a", "b"]})
        );
        let whole = Shape::new(None, Some(1), &[]).unwrap();
        assert_eq!(
            whole.apply(json!({"a": [1, 2], "b": {"c": [3, 4]}})).unwrap(),
            json!({"a": [1], "b": {"c": [3]}})
        );
    }

    #[test]
    fn renames_at_any_depth() {
        let s = shape(
            &["avatar_url", "items[].status"],
            None,
            &[("avatar_url", "avatar"), ("items[].status", "state"), ("nope.x", "y")],
        );
        let v = json!({"avatar_url": "u", "items": [{"status": "s"}]});
        assert_eq!(
            s.apply(v).unwrap(),
            json!({"avatar": "u", "items": [{"state": "s"}]})
        );
    }

    #[test]
    fn a_whole_field_absorbs_paths_below_it() {
        let s = shape(&["address.city", "address"], None, &[]);
        let v = json!({"address": {"city": "L", "country": "GB"}});
        assert_eq!(s.apply(v.clone()).unwrap(), v);
    }

    #[test]
    fn bad_paths_are_rejected() {
        assert!(Shape::new(Some(&["a..b"]), None, &[]).is_err());
        assert!(Shape::new(Some(&["a[0]"]), None, &[]).is_err());
        assert!(Shape::new(Some(&["a[].b", "a.c"]), None, &[]).is_err());
        assert!(Shape::new(Some(&["[].a", "b"]), None, &[]).is_err());
        assert!(Shape::new(None, None, &[("a[]", "b")]).is_err());
        assert!(Shape::new(None, None, &[("a", "b.c")]).is_err());
        assert!(Shape::new(None, None, &[]).unwrap().is_identity());
    }
}
