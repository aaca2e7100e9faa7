//! `portico check` and config diagnostics: every problem with file:line:col and key path.

use crate::support;

use support::*;

fn check_text(text: &str) -> (i32, String, String) {
    check_config(text, &[])
}

/// A valid config: `[server]` on lines 1-2, upstream `app` on 4-6, route `a` on 8-11.
fn good() -> String {
    config()
        .admin_unset()
        .upstream_with(
            "app",
            &["127.0.0.1:9", "http://localhost:10"],
            "timeout = \"250ms\"",
        )
        .toml(
            r#"[[routes]]
id = "a"
match = { path_prefix = "/a", methods = ["GET"] }
upstream = "app""#,
        )
        .build()
}

#[test]
fn good_config_passes() {
    let (code, out, err) = check_text(&good());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok (1 routes, 1 upstreams)"), "{out}");
}

#[test]
fn shipped_config_passes() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml");
    let (code, out, err) = portico_cli(&["check", "--config", shipped]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn unknown_upstream_names_route_file_line_col() {
    let text = good().replace("upstream = \"app\"", "upstream = \"nope\"");
    let (code, _, err) = check_text(&text);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "gateway.toml:11:12: routes[0].upstream: unknown upstream `nope` in route `a`"
        ),
        "{err}"
    );
}

#[test]
fn syntax_error_gives_its_line() {
    let text = good().replace("timeout = \"250ms\"", "timeout = \"250ms");
    let (code, _, err) = check_text(&text);
    assert_eq!(code, 1);
    assert!(err.contains("gateway.toml:6:"), "{err}");
}

#[test]
fn unknown_key_is_named() {
    let text = good().replace("listen = \"127.0.0.1:0\"", "listen_typo = \"127.0.0.1:0\"");
    let (code, _, err) = check_text(&text);
    assert_eq!(code, 1);
    assert!(
        err.contains("gateway.toml:2:1: server.listen_typo: unknown field `listen_typo`"),
        "{err}"
    );
}

#[test]
fn duplicate_id_and_every_other_error_in_one_pass() {
    let text = format!(
        "{}\n[[routes]]\nid = \"a\"\nmatch = {{ path_prefix = \"a\", methods = [\"GTE\"] }}\nupstream = \"app\"\ntimeout = \"5 sec\"\n",
        good()
    )
    .replace("listen = \"127.0.0.1:0\"", "listen = \"localhost\"")
    .replace("\"http://localhost:10\"", "\"http://localhost\"");
    let (code, _, err) = check_text(&text);
    assert_eq!(code, 1);
    for expected in [
        "gateway.toml:2:10: server.listen: bad address \"localhost\"",
        "gateway.toml:5:29: upstreams.app.endpoints[1]: bad address \"http://localhost\": a port is required",
        "gateway.toml:14:6: routes[1].id: duplicate route id `a` (first defined on line 9)",
        "gateway.toml:15:25: routes[1].match.path_prefix: bad path \"a\"",
        "gateway.toml:15:41: routes[1].match.methods[0]: unknown method \"GTE\"",
        "gateway.toml:17:11: routes[1].timeout: bad duration \"5 sec\"",
        "6 problem(s) found",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn routes_command_prints_the_table() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "gateway.toml", &good());
    let path = dir.path().join("gateway.toml");
    let (code, out, _) = portico_cli(&["routes", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("a\t*\t/a/*\tGET,HEAD\tapp")),
        "{out}"
    );
}

#[test]
fn missing_file_is_reported() {
    let (code, _, err) = portico_cli(&["check", "--config", "/nonexistent/gateway.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/gateway.toml: cannot read file"),
        "{err}"
    );
}
