//! `portico check` on bad edge policies: each error names file:line:col and the key.

use crate::support;

use support::*;

const BAD: &str = r#"[server]
listen = "127.0.0.1:0"
admin_listen = ""
admin_ip_list = "nowhere"

[upstreams.echo]
endpoints = ["127.0.0.1:9"]

[ip_lists.office]
allow = ["10.0.0.0/8", "10.0.0.1/8", "300.1.2.3", "2001:db8::/129"]

[ip_lists.both]
allow = ["10.0.0.0/8"]
deny = ["10.0.0.0/8"]

[cors.web]
origins = ["*", "https://app.example.com/path", "https://a.*.example.com"]
credentials = true
max_age = "soon"
headers = ["bad header"]
methods = ["G E T"]

[[routes]]
id = "a"
match = { path_prefix = "/a" }
upstream = "echo"
ip_list = "offise"
cors = "webb"
"#;

#[test]
fn every_bad_edge_policy_is_reported_where_it_is() {
    let (code, _, err) = check_config(BAD, &[]);
    assert_eq!(code, 1, "{err}");
    assert_errors_at(
        &err,
        &[
            ("4:17", "server.admin_ip_list", "unknown IP list `nowhere`"),
            ("10:24", "ip_lists.office.allow[1]", "host bits set"),
            (
                "10:38",
                "ip_lists.office.allow[2]",
                "bad address \"300.1.2.3\"",
            ),
            ("10:51", "ip_lists.office.allow[3]", "bad address"),
            ("14:8", "ip_lists.both", "`allow` or `deny`, not both"),
            (
                "17:12",
                "cors.web.origins[0]",
                "cannot be used with `credentials = true`",
            ),
            ("17:17", "cors.web.origins[1]", "bad origin"),
            ("17:49", "cors.web.origins[2]", "bad origin"),
            ("19:11", "cors.web.max_age", ""),
            ("20:12", "cors.web.headers[0]", "bad header name"),
            ("21:12", "cors.web.methods[0]", ""),
            ("27:11", "routes[0].ip_list", "unknown IP list `offise`"),
            ("28:8", "routes[0].cors", "unknown CORS policy `webb`"),
        ],
    );
}

#[test]
fn a_declared_but_broken_policy_is_reported_once() {
    let text = r#"[server]
listen = "127.0.0.1:0"

[upstreams.echo]
endpoints = ["127.0.0.1:9"]

[ip_lists.office]
allow = ["nope"]

[[routes]]
id = "a"
match = { path_prefix = "/a" }
upstream = "echo"
ip_list = "office"
"#;
    let (code, _, err) = check_config(text, &[]);
    assert_eq!(code, 1, "{err}");
    assert_errors_at(&err, &[("8:10", "ip_lists.office.allow[0]", "bad address")]);
    assert!(!err.contains("routes[0].ip_list"), "{err}");
}

#[test]
fn bad_bff_edge_keys_point_into_the_profile() {
    let g =
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[upstreams.echo]\nendpoints = [\"127.0.0.1:9\"]\n";
    let p = "mount = \"/web\"\ncors = \"nope\"\n[[endpoints]]\npath = \"/home\"\nip_list = \"gone\"\ncache_control = \"\"\n  [[endpoints.parts]]\n  name = \"p\"\n  upstream = \"echo\"\n  path = \"/x\"\n";
    let (code, _, err) = check_config(g, &[("bff/web.toml", p)]);
    assert_eq!(code, 1, "{err}");
    for want in [
        "web.toml:2:8: cors: unknown CORS policy `nope`",
        "web.toml:5:11: endpoints[0].ip_list: unknown IP list `gone`",
        "web.toml:6:17: endpoints[0].cache_control: cache_control must not be empty",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}

#[test]
fn bad_api_key_providers_and_key_files() {
    let g = r#"[server]
listen = "127.0.0.1:0"

[auth.providers.partners]
kind = "api_key"
keys_file = "keys.txt"
issuer = "https://x.test"
header = "host"

[auth.providers.other]
kind = "apikey"

[auth.providers.nofile]
kind = "api_key"
"#;
    let keys = "acme key-1\nglobex sha256:1234\nbroken\nacme2 key-1\n";
    let (code, _, err) = check_config(g, &[("keys.txt", keys)]);
    assert_eq!(code, 1, "{err}");
    assert_errors_at(
        &err,
        &[
            ("7:10", "auth.providers.partners.issuer", "is a JWT key"),
            (
                "8:10",
                "auth.providers.partners.header",
                "`host` cannot be used",
            ),
            ("11:8", "auth.providers.other.kind", "unknown provider kind"),
            ("13:17", "auth.providers.nofile", "needs `keys_file"),
        ],
    );
    for want in [
        "keys.txt:2:8: auth.providers.partners.keys_file: expected sha256: and 64 hex digits",
        "keys.txt:3:1: auth.providers.partners.keys_file: expected `CONSUMER KEY`",
        "keys.txt:4:7: auth.providers.partners.keys_file: this key is already given to consumer \"acme\"",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    assert!(
        !err.contains("key-1"),
        "a key never appears in a message:\n{err}"
    );
}
