//! `portico check` as a report: every unknown key in every file, no follow-on errors, "did you
//! mean", errors sorted by file and line, warnings with `--strict`, and `portico routes` notes.

use crate::support;

use std::path::{Path, PathBuf};

use support::*;

/// gateway.toml with a typo on three routes, a policy and a provider that fail (each used
/// twice), misspelt references, and a profile folder with errors of its own.
const GATEWAY: &str = r#"[server]
listen = "127.0.0.1:0"
admin_listen = ""

[upstreams.app]
endpoints = ["127.0.0.1:9"]

[auth.providers.main]
issuer = "https://issuer.example"
audiences = ["api"]
algorithms = ["HS256"]
secret_file = "missing-secret.txt"

[rate_limits.slow]
rate = "ten per second"
key = "ip"

[[routes]]
id = "one"
match = { path_prefix = "/one" }
upstream = "app"
timout = "1s"
auth = { provider = "main" }

[[routes]]
id = "two"
match = { path_prefix = "/two" }
upstream = "app"
timout = "1s"
rate_limit = "slow"

[[routes]]
id = "three"
match = { path_prefix = "/three", method = ["GET"] }
upstream = "ap"
timout = "1s"
auth = { provider = "mian" }
rate_limit = "slow"
"#;

const WEB: &str = r#"name = "web"
mount = "/web"
deadlin = "500ms"

[[endpoints]]
method = "GET"
path = "/home"

  [[endpoints.parts]]
  name = "user"
  upstream = "apps"
  path = "/users/1"
"#;

const IOT: &str = r#"name = "iot"
mount = "/iot"

[[endpoints]]
method = "GET"
path = "/home"
cache_ttl = "1s"

  [[endpoints.parts]]
  name = "user"
  upstream = "app"
  path = "/users/1"
"#;

fn folder(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        write(dir.path(), name, text);
    }
    let path = dir.path().join("gateway.toml");
    (dir, path)
}

fn run(args: &[&str], config: &Path) -> (i32, String, String) {
    let mut all = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    portico_cli(&all)
}

#[test]
fn every_error_of_every_file_once_sorted_with_suggestions() {
    let (dir, path) = folder(&[
        ("gateway.toml", GATEWAY),
        ("bff/web.toml", WEB),
        ("bff/iot.toml", IOT),
    ]);
    let (code, out, err) = run(&["check"], &path);
    assert_eq!(code, 1, "{out}{err}");
    let root = dir.path().display().to_string();
    let shown = err.replace(&root, "DIR");
    let expected = r#"DIR/gateway.toml:12:15: auth.providers.main.secret_file: cannot read DIR/missing-secret.txt: No such file or directory (os error 2)
DIR/gateway.toml:15:8: rate_limits.slow.rate: bad rate "ten per second": expected COUNT/UNIT such as "100/s", "20/m" or "1000/h"
DIR/gateway.toml:22:1: routes[0].timout: unknown field `timout`; did you mean `timeout`?
DIR/gateway.toml:29:1: routes[1].timout: unknown field `timout`; did you mean `timeout`?
DIR/gateway.toml:34:35: routes[2].match.method: unknown field `method`; did you mean `methods`?
DIR/gateway.toml:35:12: routes[2].upstream: unknown upstream `ap` in route `three`; did you mean `app`?
DIR/gateway.toml:36:1: routes[2].timout: unknown field `timout`; did you mean `timeout`?
DIR/gateway.toml:37:21: routes[2].auth: unknown auth provider `mian`; did you mean `main`?
DIR/bff/iot.toml:7:1: endpoints[0].cache_ttl: unknown field `cache_ttl`; expected one of `method`, `path`, `deadline`, `auth`, `rate_limit`, `ip_list`, `cors`, `cache_control`, `scripts`, `parts`, `saga`, `steps`
DIR/bff/web.toml:3:1: deadlin: unknown field `deadlin`; did you mean `deadline`?
DIR/bff/web.toml:11:14: endpoints[0].parts[0].upstream: unknown upstream `apps`; did you mean `app`? (upstreams in gateway.toml: app)
11 problem(s) found
"#;
    assert_eq!(shown, expected);
}

/// Routes for the warning tests: `b` is hidden by `a` (same path, `a` takes every method).
fn shadowing() -> String {
    config()
        .admin_unset()
        .upstream("app", &["127.0.0.1:9"])
        .toml(
            r#"[[routes]]
id = "a"
match = { path_prefix = "/a" }
upstream = "app"

[[routes]]
id = "b"
match = { path_prefix = "/a", methods = ["GET"] }
upstream = "app"

[[routes]]
id = "c"
match = { path_prefix = "/a", methods = ["GET"], host = "api.example.com" }
upstream = "app"

[[routes]]
id = "star"
match = { path_prefix = "/files/*" }
upstream = "app""#,
        )
        .build()
}

#[test]
fn shadowed_route_and_literal_star_are_warnings() {
    let text = shadowing();
    let (dir, path) = folder(&[("gateway.toml", &text)]);
    let (code, out, err) = run(&["check"], &path);
    assert_eq!(code, 0, "{out}{err}");
    let shown = err.replace(&dir.path().display().to_string(), "DIR");
    let b = line_of(&text, "id = \"b\"");
    let a = line_of(&text, "id = \"a\"");
    let star = line_of(&text, "/files/*");
    let expected = format!(
        "DIR/gateway.toml:{b}:6: warning: routes[1]: route `b` never matches: route `a` (line {a}) takes every request it would\n\
         DIR/gateway.toml:{star}:25: warning: routes[3].match.path_prefix: `*` is taken literally here; a prefix already takes everything under it (write \"/files\")\n\
         2 warning(s)\n"
    );
    assert_eq!(shown, expected);

    let (code, _, err) = run(&["check", "--strict"], &path);
    assert_eq!(code, 1, "--strict fails on warnings: {err}");

    // The host-bound route `c` is not hidden: `a` has no host, and a host match comes first.
    let (code, out, _) = run(&["routes"], &path);
    assert_eq!(code, 0);
    let row = |id: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{id}\t")))
            .unwrap_or_else(|| panic!("no row {id} in {out}"))
            .to_string()
    };
    assert!(row("b").ends_with("\tnever matches (after a)"), "{out}");
    assert!(row("a").ends_with("\t-"), "{out}");
    assert!(row("c").ends_with("\t-"), "{out}");
    assert!(out.starts_with("# "), "legend first: {out}");
}

#[test]
fn clean_config_passes_strict() {
    let text = config()
        .admin_unset()
        .upstream("app", &["127.0.0.1:9"])
        .toml("[[routes]]\nid = \"a\"\nmatch = { path_prefix = \"/a\" }\nupstream = \"app\"")
        .build();
    let (_dir, path) = folder(&[("gateway.toml", &text)]);
    let (code, out, err) = run(&["check", "--strict"], &path);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err, "");
}

#[test]
fn open_admin_and_unset_secret_env_are_warnings() {
    let text = config()
        .admin_unset()
        .upstream("app", &["127.0.0.1:9"])
        .toml(
            r#"[auth.providers.dev]
issuer = "https://issuer.example"
audiences = ["api"]
algorithms = ["HS256"]
secret_env = "PORTICO_TEST_SURELY_UNSET_SECRET"

[[routes]]
id = "a"
match = { path_prefix = "/a" }
upstream = "app"
auth = { provider = "dev" }"#,
        )
        .build()
        .replace("[server]\n", "[server]\nadmin_listen = \"0.0.0.0:0\"\n");
    let (_dir, path) = folder(&[("gateway.toml", &text)]);
    let (code, out, err) = run(&["check"], &path);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(
            "gateway.toml:2:16: warning: server.admin_listen: the admin API listens on 0.0.0.0:0"
        ),
        "{err}"
    );
    let env_line = line_of(&text, "secret_env");
    assert!(
        err.contains(&format!(
            "gateway.toml:{env_line}:14: warning: auth.providers.dev.secret_env: environment variable PORTICO_TEST_SURELY_UNSET_SECRET is not set"
        )),
        "{err}"
    );
    assert!(err.ends_with("2 warning(s)\n"), "{err}");
}

/// 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn certificate_expiring_within_14_days_is_a_warning() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["api.test".to_string()]).unwrap();
    let days = unix_now().div_euclid(86_400);
    let (y, m, d) = portico::config::units::civil_from_days(days + 5);
    params.not_before = rcgen::date_time_ymd(2001, 1, 1);
    params.not_after = rcgen::date_time_ymd(y as i32, m as u8, d as u8);
    let cert = params.self_signed(&key).unwrap();
    let text = config()
        .admin_unset()
        .upstream("app", &["127.0.0.1:9"])
        .route("a", "/a", "app")
        .toml(
            "[server.tls]\nlisten = \"127.0.0.1:0\"\ncertificates = [{ cert = \"soon.pem\", key = \"soon.key\" }]",
        )
        .build();
    let (_dir, path) = folder(&[
        ("gateway.toml", &text),
        ("soon.pem", &cert.pem()),
        ("soon.key", &key.serialize_pem()),
    ]);
    let (code, out, err) = run(&["check"], &path);
    assert_eq!(code, 0, "{out}{err}");
    let line = line_of(&text, "soon.pem");
    let want =
        format!("gateway.toml:{line}:26: warning: server.tls.certificates[0].cert: certificate");
    assert!(err.contains(&want), "{want} in {err}");
    assert!(
        err.contains("expires in 4 days") || err.contains("expires in 5 days"),
        "{err}"
    );
    let (code, _, _) = run(&["check", "--strict"], &path);
    assert_eq!(code, 1);
}
