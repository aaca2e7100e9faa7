//! Hardening of request paths (issue 19): encoded and alternative separators and dot-segments
//! are refused; unreserved escapes are decoded; routing and forwarding see the same path.

use crate::support;

use std::time::Duration;

use support::attack::*;
use support::*;

const T: Duration = Duration::from_secs(5);

const STRIP_ROUTE: &str = r#"
[[routes]]
id = "pfx"
match = { path_prefix = "/pfx" }
upstream = "echo"
strip_prefix = "/pfx"
"#;

async fn status_and_path(gw: &TestGateway, target: &str) -> (u16, String) {
    let mut c = Raw::connect(gw.addr).await;
    c.send(format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n\r\n").as_bytes())
        .await;
    let r = c
        .response(T)
        .await
        .unwrap_or_else(|| panic!("no answer to {target}"));
    let path = r.json()["path"].as_str().unwrap_or("").to_string();
    (r.status, path)
}

#[tokio::test]
async fn encoded_separators_and_dot_segments_are_refused() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "", STRIP_ROUTE).await;
    for target in [
        "/echo/..%2fsecure",
        "/echo/..%2Fsecure",
        "/echo/%2e%2e%2fsecure",
        "/echo/..\\secure",
        "/echo/..%5csecure",
        "/echo/a%5Cb",
        "/echo/..;/secure",
        "/echo/..;jsessionid=1/secure",
        "/echo/.;x/secure",
        "/echo/%2E%2E/secure",
        "/echo/.%2e/secure",
        "/echo/%252e%252e/secure",
        "/echo/%252f",
        "/echo/a%00b",
        "/echo/%zz",
        "/echo/%4",
        "/echo/../secure",
        "/pfx/..;/secure",
    ] {
        let (status, _) = status_and_path(&gw, target).await;
        assert_eq!(status, 400, "{target}");
    }
    assert_eq!(backend.hits(), 0, "nothing reached the backend");
}

#[tokio::test]
async fn unreserved_escapes_are_decoded_for_routing_and_forwarding() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "", STRIP_ROUTE).await;
    for (target, forwarded) in [
        ("/echo/%7Euser/%41b", "/echo/~user/Ab"),
        ("/echo/a%2db%5f", "/echo/a-b_"),
        ("/echo/%e2%82%ac", "/echo/%E2%82%AC"),
        ("/echo/a;b=1/c", "/echo/a;b=1/c"),
        ("/echo/.../x", "/echo/.../x"),
        ("/echo/a.b/.c", "/echo/a.b/.c"),
        ("/%65cho/x", "/echo/x"),
        ("/pfx/%61", "/a"),
        ("/%70fx/b", "/b"),
    ] {
        let (status, path) = status_and_path(&gw, target).await;
        assert_eq!((status, path.as_str()), (200, forwarded), "{target}");
    }
    // The route check happens on the decoded path: an encoded prefix is still the JWT route.
    let (status, _) = status_and_path(&gw, "/%73ecure/x").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn encoded_slashes_kept_when_configured_but_dot_checked() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "encoded_slashes = \"keep\"", "").await;
    let (status, path) = status_and_path(&gw, "/echo/a%2fb").await;
    assert_eq!((status, path.as_str()), (200, "/echo/a%2Fb"));
    for target in ["/echo/..%2fsecure", "/echo/a%2f..%2f..", "/echo/a%5cb"] {
        let (status, _) = status_and_path(&gw, target).await;
        assert_eq!(status, 400, "{target}");
    }
}
