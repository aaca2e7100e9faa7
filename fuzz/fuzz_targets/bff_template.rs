//! BFF templates and JSON projection: any template text parses or is refused, renders without
//! panicking; any field list compiles or is refused, and any answer is projected and shaped;
//! the projected parse keeps whatever the shape keeps from a full parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico::bff::shape::Shape;
use portico::bff::template::{Inputs, Kind, Scope, Template};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Input: "TEMPLATE\nFIELD;FIELD;...\nJSON".
    let mut lines = text.splitn(3, '\n');
    let template = lines.next().unwrap_or("");
    let fields = lines.next().unwrap_or("");
    let answer = lines.next().unwrap_or("");

    let captures: [Box<str>; 1] = ["id".into()];
    let scope = Scope {
        captures: &captures,
        parts: &["profile"],
    };
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"sub":"u/1?&#","n":7,"a":[1,{"b":null}]}"#).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-k", http::HeaderValue::from_static("v%2F"));
    let body: serde_json::Value = serde_json::from_str(answer).unwrap_or_default();
    let parts = [serde_json::from_str(answer).ok()];
    let inputs = Inputs {
        claims: Some(&claims),
        path: "/users/42/x",
        captures: &[(7, 9)],
        query: Some("q=%2e%2e&x=1"),
        headers: &headers,
        body: Some(&body),
        parts: &parts,
    };
    for kind in [Kind::Path, Kind::Text] {
        if let Ok(t) = Template::parse(template, kind, &scope) {
            let _ = t.sample();
            let _ = t.resolve_whole(&inputs);
            if let (Ok(out), Kind::Path) = (t.render(&inputs), kind) {
                // A rendered path never carries a raw dot-segment from an input.
                let path = out.split('?').next().unwrap_or("");
                let literal = template.split('?').next().unwrap_or("");
                if !literal.contains("..") {
                    assert!(!path.split('/').any(|s| s == ".."), "{template:?} -> {out:?}");
                }
            }
        }
    }

    let list: Vec<&str> = fields.split(';').filter(|f| !f.is_empty()).collect();
    let Ok(shape) = Shape::new(Some(&list), Some(3), &[]) else {
        return;
    };
    let projected = shape.parse(answer.as_bytes());
    let full: Result<serde_json::Value, _> = serde_json::from_str(answer);
    match (projected, full) {
        (Ok(p), Ok(f)) => {
            assert_eq!(shape.apply(p), shape.apply(f), "projection disagrees with full parse");
        }
        (Err(_), Err(_)) | (Ok(_), Err(_)) | (Err(_), Ok(_)) => {}
    }
});
