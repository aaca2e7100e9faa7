//! BFF profile validation (`portico check` with file:line:col) and request building: write
//! bodies, passed and templated headers, encoding of values into backend paths.

use crate::support;

use std::time::Duration;

use serde_json::json;
use support::*;

/// One upstream `users`; `[bff] default_profile` names a profile that does not exist (line 9).
fn gateway() -> String {
    config()
        .upstream("users", &["127.0.0.1:1"])
        .toml("[bff]\ndefault_profile = \"nobody\"")
        .build()
}

/// Parts that depend on each other in a cycle (line 8), a reference to an unknown part (line
/// 18) and an unknown upstream (line 21).
fn bad_profile() -> String {
    profile("/bad")
        .keys("name = \"bad\"")
        .endpoint("/cycle")
        .part("a", "users", "/a/{b.id}", "")
        .part("b", "users", "/b/{a.id}", "")
        .endpoint("/refs")
        .part("a", "users", "/a?x={ghost.id}", "")
        .part("b", "billing", "/b", "")
        .build()
}

#[test]
fn check_rejects_a_cycle_an_unknown_part_reference_and_an_unknown_upstream() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "gateway.toml", &gateway());
    write(dir.path(), "bff/bad.toml", &bad_profile());
    let config = dir.path().join("gateway.toml");
    let (code, out, err) = portico_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let file = dir.path().join("bff/bad.toml");
    let at = |line: u32, col: u32| format!("{}:{line}:{col}: ", file.display());
    let expect = [
        format!(
            "{}endpoints[0].parts[0].path: parts depend on each other in a cycle: a -> b -> a",
            at(8, 10)
        ),
        format!(
            "{}endpoints[1].parts[0].path: `ghost.id`: unknown part `ghost`",
            at(18, 10)
        ),
        format!(
            "{}endpoints[1].parts[1].upstream: unknown upstream `billing` (upstreams in gateway.toml: users)",
            at(21, 14)
        ),
    ];
    for e in &expect {
        assert!(err.contains(e.as_str()), "missing `{e}` in:\n{err}");
    }
    // The unknown default profile is reported against gateway.toml in the same pass.
    assert!(
        err.contains("gateway.toml:9:19: bff.default_profile: unknown profile `nobody`"),
        "{err}"
    );
    assert!(err.contains("4 problem(s) found"), "{err}");
}

#[test]
fn profile_mistakes_are_reported_with_their_keys() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "auth = { provider = \"dev\" }",
            "auth",
            "unknown auth provider `dev`",
        ),
        (
            "rate_limit = \"per_user\"",
            "rate_limit",
            "unknown rate-limit policy `per_user`",
        ),
        ("mount = \"/\"", "mount", "bad mount"),
        ("deadline = \"soon\"", "deadline", "bad duration"),
        ("colour = \"blue\"", "colour", "unknown field"),
    ];
    for (line, key, message) in cases {
        let profile = format!(
            "{line}\n[[endpoints]]\npath = \"/x\"\n  [[endpoints.parts]]\n  name = \"p\"\n  upstream = \"users\"\n  path = \"/p\"\n"
        );
        let errs = load_errors(&profile);
        assert!(
            errs.contains("x.toml:1:") && errs.contains(key) && errs.contains(message),
            "{line}: {errs}"
        );
    }
    let part_cases: &[(&str, &str)] = &[
        ("name = \"path\"", "reserved"),
        ("name = \"_x\"", "reserved"),
        ("required = true\ndefault = {}", "cannot have a default"),
        ("headers = [\"authorization\"]", "forward_auth = true"),
        ("headers = [\"host\"]", "set by the gateway"),
        (
            "set_headers = { \"portico-budget-ms\" = \"9\" }",
            "set by the gateway",
        ),
        ("fields = [\"items[0]\"]", "bad field path"),
        ("fields = [\"a[].b\", \"a.c\"]", "both an array"),
        ("rename = { \"a\" = \"b.c\" }", "plain field name"),
        ("max_items = -1", "between 0 and"),
        ("timeout = \"0\"", "more than 0"),
        ("method = \"BREW\"", "unknown method"),
        ("path = \"/p/{path.id}\"", "no `{id}` capture"),
        ("path = \"p\"", "must start with '/'"),
        ("path = \"/p/{query.q\"", "unclosed"),
    ];
    for (extra, message) in part_cases {
        let mut profile = String::from(
            "[[endpoints]]\npath = \"/x\"\n  [[endpoints.parts]]\n  name = \"p\"\n  upstream = \"users\"\n  path = \"/p\"\n",
        );
        for l in extra.lines() {
            let key = l.split('=').next().unwrap().trim();
            let prefix = format!("  {key} =");
            if let Some(pos) = profile.find(&prefix) {
                let end = profile[pos..].find('\n').unwrap() + pos;
                profile.replace_range(pos..end, &format!("  {l}"));
            } else {
                profile.push_str(&format!("  {l}\n"));
            }
        }
        let errs = load_errors(&profile);
        assert!(
            errs.contains("endpoints[0].parts[0]") || errs.contains("endpoints[].parts"),
            "{extra}: {errs}"
        );
        assert!(errs.contains(message), "{extra}: {errs}");
    }
}

/// Loads a gateway with one profile `bff/x.toml`; returns the errors as text.
fn load_errors(profile: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "gateway.toml",
        "[upstreams.users]\nendpoints = [\"127.0.0.1:1\"]\n",
    );
    write(dir.path(), "bff/x.toml", profile);
    match portico::runtime::load(&dir.path().join("gateway.toml"), None) {
        Ok(_) => String::from("loaded without errors"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn duplicate_names_and_mounts_across_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "gateway.toml",
        "[upstreams.users]\nendpoints = [\"127.0.0.1:1\"]\n[bff]\ndir = \"clients\"\n",
    );
    let p = "mount = \"/m\"\n[[endpoints]]\npath = \"/x\"\n  [[endpoints.parts]]\n  name = \"p\"\n  upstream = \"users\"\n  path = \"/p\"\n";
    write(
        dir.path(),
        "clients/a.toml",
        &format!("name = \"same\"\n{p}"),
    );
    write(
        dir.path(),
        "clients/b.toml",
        &format!("name = \"same\"\n{}", p.replace("/m", "/n")),
    );
    write(dir.path(), "clients/c.toml", p);
    write(dir.path(), "clients/notes.txt", "not a profile");
    let err = load_errors_in(dir.path());
    assert!(
        err.contains("b.toml:1:8: name: profile `same` is already defined in"),
        "{err}"
    );
    assert!(
        err.contains("c.toml:1:9: mount: mount \"/m\" is already used by profile `same`"),
        "{err}"
    );
    // A `dir` that does not exist is an error at the key.
    write(dir.path(), "gateway.toml", "[bff]\ndir = \"missing\"\n");
    let err = load_errors_in(dir.path());
    assert!(
        err.contains("gateway.toml:2:7: bff.dir: cannot read the profiles folder"),
        "{err}"
    );
}

#[tokio::test]
async fn write_bodies_headers_and_encoded_values_reach_the_backend() {
    let echo = RawBackend::start("echo", Fault::Delay(Duration::ZERO)).await;
    let gateway = config()
        .server("encoded_slashes = \"keep\"")
        .upstream("echo", &[echo.addr])
        .build();
    let profile = r#"
mount = "/w"
[[endpoints]]
method = "POST"
path = "/carts/{cart}/items"
  [[endpoints.parts]]
  name = "added"
  upstream = "echo"
  method = "PUT"
  path = "/carts/{path.cart}/items?sku={body.sku}"
  body = { sku = "{body.sku}", qty = "{body.qty}", note = "cart {path.cart}", source = "web", tags = ["{body.sku}", 1] }
  headers = ["accept-language"]
  forward_auth = true
  set_headers = { "x-cart" = "{path.cart}", "x-lang" = "{header.accept-language|'en'}" }
  fields = ["method", "path", "query", "body", "headers.accept-language", "headers.authorization", "headers.x-cart", "headers.x-lang", "headers.content-type", "headers.cookie"]
"#;
    let gw = TestGateway::start_with_files(&gateway, &[("bff/w.toml", profile)]).await;
    let req = http::Request::post(gw.url("/w/carts/c%2F1/items"))
        .header("accept-language", "fr")
        .header("authorization", "Bearer t")
        .header("cookie", "session=1")
        .body(http_body_util::Full::from(r#"{"sku": "A B&C", "qty": 2}"#))
        .unwrap();
    let ans = send(req).await;
    assert_eq!(ans.status, 200, "{:?}", ans.body);
    let v = &ans.json()["added"];
    assert_eq!(v["method"], "PUT");
    assert_eq!(
        v["path"], "/carts/c%2F1/items",
        "one segment, still encoded (%2F needs encoded_slashes = \"keep\"; a dot-segment between\n         encoded slashes is refused at the edge)"
    );
    assert_eq!(v["query"], "sku=A%20B%26C");
    assert_eq!(
        v["body"],
        json!({"sku": "A B&C", "qty": 2, "note": "cart c/1", "source": "web", "tags": ["A B&C", 1]})
    );
    assert_eq!(
        v["headers"],
        json!({"accept-language": "fr", "authorization": "Bearer t", "x-cart": "c/1",
               "x-lang": "fr", "content-type": "application/json"}),
        "cookie is not passed unless listed"
    );

    // A body that is not JSON is the client's mistake.
    let bad = send(
        http::Request::post(gw.url("/w/carts/1/items"))
            .body(http_body_util::Full::from("sku=1"))
            .unwrap(),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["detail"], "The request body must be JSON.");
    // A body without a value the required-by-template part needs: the optional part is skipped.
    let partial = send(
        http::Request::post(gw.url("/w/carts/1/items"))
            .body(http_body_util::Full::from(r#"{"qty": 1}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(partial.status, 200);
    assert_eq!(
        partial.header("portico-partial"),
        Some("added;reason=missing-input")
    );
    assert_eq!(
        echo.requests().len(),
        1,
        "no call was made without its inputs"
    );
}
