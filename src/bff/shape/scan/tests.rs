//! Tests of the scanner: against serde_json and tree shaping on random and damaged documents.

use serde_json::Value;

use super::super::Shape;
use super::super::text::tests::both;

/// A small deterministic generator (xorshift), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const KEYS: [&str; 5] = ["a", "b", "c", "d", "k\\\"ey"];

/// Random JSON text with unique keys per object, ASCII strings and every number form.
fn doc(r: &mut Rng, depth: u32, out: &mut String) {
    let ws = |r: &mut Rng, out: &mut String| {
        if r.below(4) == 0 {
            out.push_str([" ", "\n", "\t ", "\r\n"][r.below(4) as usize]);
        }
    };
    ws(r, out);
    match r.below(if depth > 4 { 4 } else { 6 }) {
        0 => out.push_str(["true", "false", "null"][r.below(3) as usize]),
        1 => out.push_str(["0", "-12", "3.25", "1e3", "-0.5E-2", "120.0e+1"][r.below(6) as usize]),
        2 | 3 => {
            out.push('"');
            for _ in 0..r.below(6) {
                out.push_str(
                    ["g", "h z", "\\n", "\\u00e9", "\\\"", "é", "\\\\"][r.below(7) as usize],
                );
            }
            out.push('"');
        }
        4 => {
            out.push('{');
            let mut keys: Vec<&str> = KEYS.iter().copied().filter(|_| r.below(2) == 0).collect();
            for i in (1..keys.len()).rev() {
                keys.swap(i, r.below(i as u64 + 1) as usize);
            }
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(r, out);
                out.push_str(&format!("\"{k}\""));
                ws(r, out);
                out.push(':');
                doc(r, depth + 1, out);
            }
            ws(r, out);
            out.push('}');
        }
        _ => {
            out.push('[');
            for i in 0..r.below(5) {
                if i > 0 {
                    out.push(',');
                }
                doc(r, depth + 1, out);
            }
            ws(r, out);
            out.push(']');
        }
    }
    ws(r, out);
}

fn shapes() -> Vec<Shape> {
    let s =
        |f: Option<&[&str]>, max, renames: &[(&str, &str)]| Shape::new(f, max, renames).unwrap();
    vec![
        s(Some(&["a", "b.c", "d[].a", "d[].b"]), None, &[]),
        s(
            Some(&["a", "b.c", "d[].a", "d[].b"]),
            Some(2),
            &[("b.c", "x"), ("a", "y")],
        ),
        s(Some(&["[].a", "[].k\\\"ey"]), Some(3), &[]),
        s(Some(&["b", "c[][].d"]), Some(1), &[]),
        s(Some(&[]), None, &[]),
        s(None, Some(2), &[]),
        s(None, None, &[]),
    ]
}

#[test]
fn random_documents_shape_as_text_exactly_as_trees() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let shapes = shapes();
    for _ in 0..3000 {
        let mut raw = String::new();
        doc(&mut r, 0, &mut raw);
        for shape in &shapes {
            both(shape, &raw);
        }
    }
}

#[test]
fn damaged_documents_are_rejected_exactly_when_serde_json_rejects_them() {
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let shape = &shapes()[0];
    let alphabet = b"{}[],:\"\\ 1-.tn";
    for _ in 0..6000 {
        let mut raw = String::new();
        doc(&mut r, 0, &mut raw);
        let mut bytes = raw.into_bytes();
        for _ in 0..1 + r.below(2) {
            let at = r.below(bytes.len() as u64 + 1) as usize;
            let c = alphabet[r.below(alphabet.len() as u64) as usize];
            match r.below(3) {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 if at < bytes.len() => bytes[at] = c,
                _ => bytes.insert(at, c),
            }
        }
        // Only damage that keeps the text UTF-8 (a cut `é` is a different question).
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let oracle = serde_json::from_str::<Value>(text).is_ok();
        let ours = shape.parse_answer(text.as_bytes()).is_ok();
        assert_eq!(
            ours, oracle,
            "accepted by serde_json: {oracle}, by the scanner: {ours}: {text}"
        );
    }
}

#[test]
fn edge_cases_of_the_grammar() {
    let shape = &shapes()[0];
    for bad in [
        "",
        " ",
        "{",
        "}",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "1e+",
        "+1",
        "tru",
        "nul",
        "\"a",
        "\"\\x\"",
        "\"\\u12g4\"",
        "\"\u{1}\"",
        "[1 2]",
        "{\"a\":1}{}",
        "nan",
        "[-]",
        "\"\\u123\"",
        // Past the first eight bytes of a string (the bulk search).
        "\"abcdefghijklmnop\u{1}q\"",
        "\"abcdefghijklmnopq\\x\"",
        "\"abcdefghijklmnopq",
    ] {
        assert!(
            shape.parse_answer(bad.as_bytes()).is_err(),
            "accepted {bad:?}"
        );
        assert!(
            serde_json::from_str::<Value>(bad).is_err(),
            "serde_json accepts {bad:?}"
        );
    }
    for good in [
        "\"abcdefghijklmnopqrstuvwxyz é 0123456789\\n and more\"",
        "0",
        "-0",
        "[]",
        "{}",
        " [ ] ",
        "1E5",
        "\"\\/\"",
        "[[[]]]",
        "{\"a\":{}}",
    ] {
        assert!(
            shape.parse_answer(good.as_bytes()).is_ok(),
            "rejected {good:?}"
        );
    }
    // Nesting: 128 levels are fine, 129 are not (as serde_json).
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(shape.parse_answer(nest(128).as_bytes()).is_ok());
    assert!(shape.parse_answer(nest(129).as_bytes()).is_err());
    assert!(serde_json::from_str::<Value>(&nest(129)).is_err());
    // Invalid UTF-8 in a kept value is an error; in a skipped one it is not looked at.
    assert!(shape.parse_answer(b"{\"a\": \"\xff\"}").is_err());
    assert!(shape.parse_answer(b"{\"z\": \"\xff\", \"a\": 1}").is_ok());
}

#[test]
fn reads_found_by_the_scanner_equal_the_projected_parse() {
    use super::super::{Node, project, reads_of};
    let nodes = [
        Node::Object(Box::new([("a".into(), Node::All)])),
        Node::Object(Box::new([
            (
                "b".into(),
                Node::Object(Box::new([("c".into(), Node::All)])),
            ),
            ("d".into(), Node::Each(Box::new(Node::All))),
            ("k\"ey".into(), Node::All),
        ])),
        Node::Object(Box::new([])),
    ];
    let same = |node: &Node, raw: &str| {
        assert_eq!(
            reads_of(node, raw.as_bytes()).unwrap(),
            project(node, None, raw.as_bytes()).unwrap(),
            "{raw}"
        );
    };
    let mut r = Rng(0x5851_f42d_4c95_7f2d);
    for _ in 0..3000 {
        let mut raw = String::new();
        doc(&mut r, 0, &mut raw);
        for node in &nodes {
            same(node, &raw);
        }
    }
    // A duplicated key ends with its last value; a root of another type reads as null.
    for raw in [
        "{\"a\":1,\"b\":{},\"a\":[2]}",
        "[{\"a\":1}]",
        "\"a\"",
        " { } ",
    ] {
        for node in &nodes {
            same(node, raw);
        }
    }
}
