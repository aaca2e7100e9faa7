//! Tests of shaping: allow-lists, caps, renames and the parse projection.

use super::*;
use serde_json::json;

#[test]
fn parsing_keeps_fields_and_template_reads_only() {
    let mut s = shape(&["id", "items[].id"], None, &[]);
    let seg: Box<[Box<str>]> = Box::new(["segment".into()]);
    let sku: Box<[Box<str>]> = Box::new(["lines".into(), "0".into(), "sku".into()]);
    s.keep_for_templates(&[&seg, &sku]);
    let text = br#"{"id": 1, "secret": {"deep": [1, 2, {"x": "y"}]}, "segment": "gold",
        "items": [{"id": "a", "n": 1}, 5, {"id": "b"}], "lines": [{"sku": "s", "q": 1}],
        "items_count": 3}"#;
    let parsed = s.parse(text).unwrap();
    assert_eq!(
        parsed,
        json!({"id": 1, "segment": "gold", "items": [{"id": "a"}, null, {"id": "b"}],
               "lines": [{"sku": "s", "q": 1}]})
    );
    assert_eq!(
        s.apply(parsed).unwrap(),
        json!({"id": 1, "items": [{"id": "a"}, {"id": "b"}]}),
        "shaping drops what only templates needed"
    );
    // Wrong types at any level: null, then omitted; invalid JSON is still an error.
    assert_eq!(s.parse(br#"[1, 2]"#).unwrap(), Value::Null);
    assert_eq!(
        s.parse(br#"{"items": {"id": 1}}"#).unwrap(),
        json!({"items": null})
    );
    assert!(s.parse(br#"{"id": 1"#).is_err());
    assert!(s.parse(br#"{"id": 1} trailing"#).is_err());
    // Reading the whole answer turns the projection off.
    let mut whole = shape(&["id"], None, &[]);
    whole.keep_for_templates(&[&[]]);
    assert_eq!(
        whole.parse(br#"{"id": 1, "x": 2}"#).unwrap(),
        json!({"id": 1, "x": 2})
    );
}

fn shape(fields: &[&str], max: Option<usize>, renames: &[(&str, &str)]) -> Shape {
    Shape::new(Some(fields), max, renames).unwrap()
}

#[test]
fn allow_list_with_nested_paths_and_arrays() {
    let s = shape(
        &["id", "address.city", "items[].id", "items[].status"],
        None,
        &[],
    );
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
fn max_items_caps_arrays_while_parsing_unless_templates_read_the_answer() {
    let raw = br#"{"items": [{"id": 1}, {"id": 2, "x": 0}, 7, {"id": 4}], "n": 1}"#;
    let mut s = shape(&["items[].id"], Some(2), &[]);
    assert_eq!(
        s.parse(raw).unwrap(),
        json!({"items": [{"id": 1}, {"id": 2}]})
    );
    assert_eq!(
        s.apply(s.parse(raw).unwrap()).unwrap(),
        json!({"items": [{"id": 1}, {"id": 2}]})
    );
    let seg: Vec<Box<str>> = vec!["items".into()];
    s.keep_for_templates(&[&seg]);
    assert_eq!(s.parse(raw).unwrap()["items"].as_array().unwrap().len(), 4);
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
        whole
            .apply(json!({"a": [1, 2], "b": {"c": [3, 4]}}))
            .unwrap(),
        json!({"a": [1], "b": {"c": [3]}})
    );
}

#[test]
fn renames_at_any_depth() {
    let s = shape(
        &["avatar_url", "items[].status"],
        None,
        &[
            ("avatar_url", "avatar"),
            ("items[].status", "state"),
            ("nope.x", "y"),
        ],
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

#[test]
fn a_small_text_cut_from_a_large_answer_does_not_keep_the_answer_size() {
    let s = shape(&["id"], None, &[]);
    let big = format!(r#"{{"id": 1, "pad": "{}"}}"#, "x".repeat(100_000));
    let Answer::Text { text, .. } = s.parse_answer(big.as_bytes()).unwrap() else {
        panic!("text expected");
    };
    let text = text.unwrap();
    assert_eq!(&*text, br#"{"id":1}"#);
    // `Bytes` made from a Vec keeps the Vec's allocation; a shrunk Vec is converted whole.
    let vec: Vec<u8> = text.into();
    assert!(vec.capacity() < 1024, "capacity {}", vec.capacity());
}
