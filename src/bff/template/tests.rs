//! Template parsing and rendering, case by case.

use super::*;
use serde_json::json;

fn scope() -> (Vec<Box<str>>, Vec<&'static str>) {
    (vec!["id".into()], vec!["profile", "orders"])
}

fn parse(text: &str, kind: Kind) -> Result<Template, String> {
    let (caps, parts) = scope();
    Template::parse(
        text,
        kind,
        &Scope {
            captures: &caps,
            parts: &parts,
        },
    )
}

struct Fixture {
    claims: Map<String, Value>,
    headers: HeaderMap,
    parts: Vec<Option<Value>>,
    body: Value,
}

fn fixture() -> Fixture {
    let claims = json!({"sub": "u 1/2", "org": {"id": 7}, "empty": ""});
    let mut headers = HeaderMap::new();
    headers.insert("accept-language", "en-GB".parse().unwrap());
    Fixture {
        claims: claims.as_object().unwrap().clone(),
        headers,
        parts: vec![
            Some(json!({"segment": "gold", "id": 42, "items": [{"id": "a"}]})),
            None,
        ],
        body: json!({"items": [1, 2], "note": "hi"}),
    }
}

fn inputs<'a>(f: &'a Fixture, path: &'a str, caps: &'a [(usize, usize)]) -> Inputs<'a> {
    Inputs {
        claims: Some(&f.claims),
        path,
        captures: caps,
        query: Some("q=a+b%26c&limit=5&flag"),
        headers: &f.headers,
        body: Some(&f.body),
        parts: &f.parts,
    }
}

#[test]
fn renders_every_source_with_the_right_encoding() {
    let f = fixture();
    let path = "/orders/x%20y";
    let caps = [(8, 13)];
    let i = inputs(&f, path, &caps);
    let t = parse(
        "/users/{claims.sub}/o/{path.id}?q={query.q}&seg={profile.segment}&org={claims.org.id}&l={header.accept-language}",
        Kind::Path,
    )
    .unwrap();
    assert_eq!(
        t.render(&i).unwrap(),
        "/users/u%201%2F2/o/x%20y?q=a%20b%26c&seg=gold&org=7&l=en-GB"
    );
    let t = parse("{profile.items.0.id}-{query.flag}-{{x}}", Kind::Text).unwrap();
    assert_eq!(t.render(&i).unwrap(), "a--{x}");
}

#[test]
fn fallbacks_and_literals() {
    let f = fixture();
    let i = inputs(&f, "/", &[]);
    let t = parse("/u/{claims.nope|query.limit}", Kind::Path).unwrap();
    assert_eq!(t.render(&i).unwrap(), "/u/5");
    let t = parse("/u/{orders.x|'none'}", Kind::Path).unwrap();
    assert_eq!(t.render(&i).unwrap(), "/u/none");
    // An empty value never makes an empty path segment; the fallback is used instead.
    let t = parse("/u/{claims.empty|'anon'}", Kind::Path).unwrap();
    assert_eq!(t.render(&i).unwrap(), "/u/anon");
    assert!(parse("{'a'|query.x}", Kind::Text).is_err());
}

#[test]
fn dots_cannot_climb_the_backend_path() {
    let mut f = fixture();
    f.claims.insert("sub".into(), json!(".."));
    let i = inputs(&f, "/", &[]);
    let t = parse("/users/{claims.sub}/orders", Kind::Path).unwrap();
    assert_eq!(t.render(&i).unwrap(), "/users/%2E%2E/orders");
    let t = parse("/users?x={claims.sub}", Kind::Path).unwrap();
    assert_eq!(t.render(&i).unwrap(), "/users?x=..");
}

#[test]
fn missing_values_say_who_is_to_blame() {
    let f = fixture();
    let mut i = inputs(&f, "/", &[]);
    i.claims = None;
    let t = parse("/u/{claims.sub|query.user}", Kind::Path).unwrap();
    let m = t.render(&i).unwrap_err();
    assert_eq!(&*m.placeholder, "{claims.sub|query.user}");
    assert!(m.from_client);
    let t = parse("/r?s={orders.segment}", Kind::Path).unwrap();
    assert!(!t.render(&i).unwrap_err().from_client);
    // Objects do not turn into text.
    let t = parse("/r/{profile.items}", Kind::Path).unwrap();
    assert!(t.render(&i).is_err());
}

#[test]
fn whole_placeholders_keep_json_types() {
    let f = fixture();
    let i = inputs(&f, "/", &[]);
    let t = parse("{body.items}", Kind::Text).unwrap();
    assert_eq!(t.resolve_whole(&i).unwrap().unwrap(), json!([1, 2]));
    let t = parse("x{body.note}", Kind::Text).unwrap();
    assert!(t.resolve_whole(&i).is_none());
}

#[test]
fn bad_templates_are_explained() {
    let e = parse("/u/{nope.id}", Kind::Path).unwrap_err();
    assert!(
        e.contains("unknown part `nope`") && e.contains("profile, orders"),
        "{e}"
    );
    let e = parse("/u/{path.user}", Kind::Path).unwrap_err();
    assert!(e.contains("no `{user}` capture"), "{e}");
    assert!(parse("/u/{claims}", Kind::Path).is_err());
    assert!(parse("/u/{query.a.b}", Kind::Path).is_err());
    assert!(parse("/u/{header.bad header}", Kind::Path).is_err());
    assert!(
        parse("/u/{claims.sub", Kind::Path)
            .unwrap_err()
            .contains("unclosed")
    );
    assert!(parse("/u/}", Kind::Path).unwrap_err().contains("unmatched"));
    assert!(parse("/u/{}", Kind::Path).is_err());
    let t = parse("/u/{orders.id}/{profile}", Kind::Path).unwrap();
    let parts: Vec<_> = t
        .vars()
        .filter_map(|v| match v.source {
            Source::Part(i) => Some(i),
            _ => None,
        })
        .collect();
    assert_eq!(parts, [1, 0]);
    assert_eq!(t.sample(), "/u/x/x");
}
