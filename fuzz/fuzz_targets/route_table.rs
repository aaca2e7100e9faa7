//! The route table: any host, method and path finds a route that really takes them, or none.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portico::runtime::Runtime;
use portico::route::{HostPattern, PathPattern, prefix_matches};

const CONFIG: &str = r#"[server]
listen = "127.0.0.1:0"
admin_listen = ""
[upstreams.a]
endpoints = ["127.0.0.1:9"]
[[routes]]
id = "root"
match = { path_prefix = "/" , methods = ["GET"] }
upstream = "a"
[[routes]]
id = "api"
match = { path_prefix = "/api/users", methods = ["GET", "POST"] }
upstream = "a"
[[routes]]
id = "exact"
match = { path = "/api/users/me" }
upstream = "a"
[[routes]]
id = "host"
match = { host = "api.example.com", path_prefix = "/v1" }
upstream = "a"
[[routes]]
id = "wild"
match = { host = "*.example.com", path_prefix = "/v1/x", headers = { "x-beta" = "1" } }
upstream = "a"
[[routes]]
id = "deep"
match = { path_prefix = "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r" }
upstream = "a"
"#;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<(tempfile::TempDir, Runtime)> = OnceLock::new();
    &RT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, CONFIG).unwrap();
        let rt = portico::runtime::load(&path, None).unwrap();
        (dir, rt)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Input: "METHOD HOST PATH [beta]".
    let mut it = text.split(' ');
    let (Some(method), Some(host), Some(path)) = (it.next(), it.next(), it.next()) else {
        return;
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    if it.next() == Some("beta") {
        headers.insert("x-beta", http::HeaderValue::from_static("1"));
    }
    let host = (!host.is_empty()).then_some(host);
    if let Ok(route) = runtime().routes.find(host, &method, path, &headers) {
        let path_ok = match &route.path {
            PathPattern::Exact(p) => **p == *path,
            PathPattern::Prefix(p) => prefix_matches(p, path),
        };
        assert!(path_ok, "{path:?} matched {}", route.id);
        let host_ok = match (&route.host, host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Exact(h), Some(req)) => **h == *req,
            (HostPattern::Wildcard(s), Some(req)) => req.ends_with(&format!(".{s}")),
            (_, None) => false,
        };
        assert!(host_ok, "{host:?} matched {}", route.id);
        assert!(route.methods.as_ref().is_none_or(|m| m.contains(&method)));
    }
});
