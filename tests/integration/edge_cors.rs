//! `[cors.NAME]` policies: preflights answered by the gateway (before auth, never forwarded),
//! CORS fields on actual answers (proxied, answered by the gateway, errors, BFF), `Vary:
//! Origin`, credentials, and one-label origin patterns.

use crate::support;

use http::{Method, Request};
use http_body_util::Full;
use support::*;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn gateway_toml(backend: &Backend) -> String {
    support::config()
        .no_access_log()
        .upstream("echo", &[backend.addr])
        .provider(
            "hs",
            "https://hs.test",
            &["HS256"],
            "secret_file = \"hs.secret\"",
        )
        .toml(
            r#"[cors.web]
origins = ["https://app.example.com", "https://*.example.com"]
methods = ["GET", "POST"]
headers = ["authorization", "content-type"]
expose_headers = ["x-request-id"]
credentials = true
max_age = "10m"

[cors.open]
origins = ["*"]"#,
        )
        .toml(
            r#"[[routes]]
id = "api"
match = { path_prefix = "/api", methods = ["GET", "POST"] }
upstream = "echo"
cors = "web"
auth = { provider = "hs" }

[[routes]]
id = "public"
match = { path_prefix = "/public" }
upstream = "echo"
cors = "open"

[[routes]]
id = "static"
match = { path = "/status.txt" }
respond = { body = "up" }
cors = "web"

[[routes]]
id = "plain"
match = { path_prefix = "/plain" }
upstream = "echo""#,
        )
        .build()
}

async fn start(backend: &Backend) -> TestGateway {
    TestGateway::start_with_files(&gateway_toml(backend), &[("hs.secret", SECRET)]).await
}

fn preflight(
    url: &str,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> Request<Full<bytes::Bytes>> {
    let mut b = Request::builder()
        .method(Method::OPTIONS)
        .uri(url)
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(h) = headers {
        b = b.header("access-control-request-headers", h);
    }
    b.body(Full::default()).unwrap()
}

fn token() -> String {
    hs256(
        SECRET,
        &serde_json::json!({"iss": "https://hs.test", "aud": "portico", "sub": "u1", "exp": unix_now() + 600}),
    )
}

#[tokio::test]
async fn preflight_is_answered_without_auth_or_upstream() {
    let backend = Backend::echo("echo").await;
    let gw = start(&backend).await;

    let a = send(preflight(
        &gw.url("/api/orders"),
        "https://app.example.com",
        "POST",
        Some("Content-Type, Authorization"),
    ))
    .await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(a.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(
        a.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(a.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(a.header("access-control-max-age"), Some("600"));
    assert!(a.header("vary").unwrap().contains("Origin"));
    // A one-label wildcard origin passes too; the route's `methods` match the asked method.
    let a = send(preflight(
        &gw.url("/api/x"),
        "https://shop.example.com",
        "GET",
        None,
    ))
    .await;
    assert_eq!(a.status, 204);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://shop.example.com")
    );
    assert_eq!(backend.hits(), 0, "a preflight never reaches the upstream");
}

#[tokio::test]
async fn preflight_refusals_are_403_without_cors_fields() {
    let backend = Backend::echo("echo").await;
    let gw = start(&backend).await;
    for (path, origin, method, headers) in [
        ("/api/orders", "https://evil.test", "GET", None),
        // `*` stands for exactly one label.
        ("/api/orders", "https://a.b.example.com", "GET", None),
        ("/api/orders", "http://app.example.com", "GET", None),
        // The route takes DELETE, the policy does not.
        ("/status.txt", "https://app.example.com", "DELETE", None),
        (
            "/api/orders",
            "https://app.example.com",
            "GET",
            Some("x-secret"),
        ),
    ] {
        let a = send(preflight(&gw.url(path), origin, method, headers)).await;
        assert_eq!(a.status, 403, "{origin} {method} {headers:?}");
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
        assert_eq!(
            a.json()["type"],
            "https://portico.dev/problems/cors-rejected"
        );
        assert!(a.header("access-control-allow-origin").is_none());
    }
    // A method no route takes: routed as a plain OPTIONS, which the route refuses (405).
    let a = send(preflight(
        &gw.url("/api/orders"),
        "https://app.example.com",
        "DELETE",
        None,
    ))
    .await;
    assert_eq!(a.status, 405);
    assert!(a.header("access-control-allow-origin").is_none());
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn actual_requests_get_cors_fields_and_vary() {
    let backend = Backend::echo("echo").await;
    let gw = start(&backend).await;
    let t = token();

    let a = get_with_token(
        &gw.url("/api/o"),
        &t,
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(a.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        a.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert!(vary(&a).contains(&"Origin".to_string()));

    // A disallowed origin is still served (CORS is the browser's check) but gets no fields.
    let a = get_with_token(&gw.url("/api/o"), &t, &[("origin", "https://evil.test")]).await;
    assert_eq!(a.status, 200);
    assert!(a.header("access-control-allow-origin").is_none());
    assert!(a.header("access-control-allow-credentials").is_none());
    assert!(vary(&a).contains(&"Origin".to_string()));

    // Errors carry the fields too, so the browser can read a 401.
    let a = get_with(&gw.url("/api/o"), &[("origin", "https://app.example.com")]).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );

    // A route the gateway answers itself.
    let a = get_with(
        &gw.url("/status.txt"),
        &[("origin", "https://x.example.com")],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://x.example.com")
    );

    // `origins = ["*"]` without credentials: a constant `*`, no Vary needed.
    let a = get_with(&gw.url("/public/x"), &[("origin", "https://any.test")]).await;
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    assert!(a.header("access-control-allow-credentials").is_none());
    assert!(!vary(&a).contains(&"Origin".to_string()));

    // A route without a policy: untouched, and its OPTIONS goes upstream like any request.
    let a = get_with(
        &gw.url("/plain/x"),
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert!(a.header("access-control-allow-origin").is_none());
    let before = backend.hits();
    let a = send(preflight(
        &gw.url("/plain/x"),
        "https://app.example.com",
        "GET",
        None,
    ))
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["method"], "OPTIONS");
    assert_eq!(backend.hits(), before + 1);
}

#[tokio::test]
async fn bff_profile_cors_applies_to_its_endpoints() {
    let backend = Backend::echo("echo").await;
    let g = support::config()
        .no_access_log()
        .upstream("echo", &[backend.addr])
        .toml("[cors.web]\norigins = [\"https://app.example.com\"]")
        .build();
    let p = profile("/web")
        .keys("cors = \"web\"")
        .endpoint("/home")
        .part("me", "echo", "/me", "required = true")
        .build();
    let gw = TestGateway::start_with_files(&g, &[("bff/web.toml", &p)]).await;
    let a = send(preflight(
        &gw.url("/web/home"),
        "https://app.example.com",
        "GET",
        None,
    ))
    .await;
    assert_eq!(a.status, 204);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(backend.hits(), 0);
    let a = get_with(
        &gw.url("/web/home"),
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(vary(&a).contains(&"Origin".to_string()));
}

fn vary(a: &Answer) -> Vec<String> {
    a.headers
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|s| s.trim().to_string())
        .collect()
}
