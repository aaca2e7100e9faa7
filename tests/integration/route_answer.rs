//! Routes the gateway answers itself: `redirect` (Location from a template over the request)
//! and `respond` (fixed status and body); neither reaches an upstream.

use crate::support;

use http::{Method, Request};
use http_body_util::Full;
use serde_json::json;
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
            r#"[[routes]]
id = "moved"
match = { path_prefix = "/old" }
redirect = { to = "https://new.example.com/v2{rest}?{query}", status = 308 }

[[routes]]
id = "same-host"
match = { path_prefix = "/shop" }
redirect = { to = "{scheme}://{host}/store{rest}?ref={query.ref}" }

[[routes]]
id = "robots"
match = { path = "/robots.txt" }
respond = { body = "User-agent: *\nDisallow: /api/\n" }

[[routes]]
id = "maintenance"
match = { path_prefix = "/billing" }
respond = { status = 503, body = "{\"down\":true}", content_type = "application/json" }
response_headers = { set = { "retry-after" = "120" } }

[[routes]]
id = "me"
match = { path = "/me" }
auth = { provider = "hs" }
redirect = { to = "/users/{claims.sub}", status = 303 }"#,
        )
        .route("api", "/api", "echo")
        .build()
}

async fn start(backend: &Backend) -> TestGateway {
    TestGateway::start_with_files(&gateway_toml(backend), &[("hs.secret", SECRET)]).await
}

#[tokio::test]
async fn redirect_builds_location_from_the_request_and_never_forwards() {
    let backend = Backend::echo("echo").await;
    let gw = start(&backend).await;

    let a = get(&gw.url("/old/a/b?x=1&y=%20")).await;
    assert_eq!(a.status, 308);
    assert_eq!(
        a.header("location"),
        Some("https://new.example.com/v2/a/b?x=1&y=%20")
    );
    assert_eq!(a.header("content-length"), Some("0"));
    assert!(a.header("x-request-id").is_some());

    // Default status 302; the host is lowercased without its port; a query value is encoded.
    let req = Request::get(gw.url("/shop/cart?ref=a%26b%3Dc"))
        .header("host", "Shop.Example.com:8080")
        .body(Full::default())
        .unwrap();
    let a = send(req).await;
    assert_eq!(a.status, 302);
    assert_eq!(
        a.header("location"),
        Some("http://shop.example.com/store/cart?ref=a%26b%3Dc")
    );

    assert_eq!(backend.hits(), 0, "a redirect must not reach the upstream");
    assert_eq!(get(&gw.url("/api/x")).await.status, 200);
    assert_eq!(backend.hits(), 1);
}

#[tokio::test]
async fn respond_serves_a_fixed_answer_with_its_headers_and_no_body_on_head() {
    let backend = Backend::echo("echo").await;
    let gw = start(&backend).await;

    let a = get(&gw.url("/robots.txt")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(&a.body[..], b"User-agent: *\nDisallow: /api/\n");

    let a = get(&gw.url("/billing/invoices/7")).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("retry-after"), Some("120"));
    assert_eq!(a.json(), json!({"down": true}));

    let head = Request::builder()
        .method(Method::HEAD)
        .uri(gw.url("/robots.txt"))
        .body(Full::default())
        .unwrap();
    let a = send(head).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("30"));
    assert!(a.body.is_empty());

    // h2c clients get the same answer.
    let req = Request::get(gw.url("/robots.txt"))
        .body(Full::default())
        .unwrap();
    let a = send_with(&h2c_client(), req).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body.len(), 30);
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn guards_run_before_an_answer_and_claims_fill_the_template() {
    let backend = Backend::echo("echo").await;
    let gw = start(&backend).await;

    assert_eq!(get(&gw.url("/me")).await.status, 401);
    let now = unix_now();
    let token = hs256(
        SECRET,
        &json!({"iss": "https://hs.test", "aud": "portico", "sub": "ada/lovelace", "exp": now + 600}),
    );
    let req = Request::get(gw.url("/me"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let a = send(req).await;
    assert_eq!(a.status, 303);
    // A claim is client-influenced text: encoded so it cannot add a path segment.
    assert_eq!(a.header("location"), Some("/users/ada%2Flovelace"));
}

#[test]
fn check_rejects_bad_answers_with_their_keys() {
    let toml = support::config()
        .upstream("echo", &["127.0.0.1:9"])
        .toml(
            r#"[[routes]]
id = "a"
match = { path_prefix = "/a" }
redirect = { to = "https://{hostname}/" }

[[routes]]
id = "b"
match = { path_prefix = "/b" }
upstream = "echo"
redirect = { to = "/x" }

[[routes]]
id = "c"
match = { path_prefix = "/c" }
redirect = { to = "/x", status = 200 }

[[routes]]
id = "d"
match = { path_prefix = "/d" }
redirect = { to = "/x" }
respond = { body = "y" }

[[routes]]
id = "e"
match = { path_prefix = "/e" }
redirect = { to = "/u/{claims.sub}" }

[[routes]]
id = "f"
match = { path_prefix = "/f" }
respond = { status = 42 }

[[routes]]
id = "g"
match = { path_prefix = "/g" }"#,
        )
        .build();
    let (code, _, err) = check_config(&toml, &[]);
    assert_eq!(code, 1, "{err}");
    assert_errors_at(
        &err,
        &[
            (
                "11:19",
                "routes[0].redirect.to",
                "unknown template value `{hostname}`",
            ),
            (
                "16:12",
                "routes[1].upstream",
                "`upstream` has no effect on a route that answers with `redirect`",
            ),
            ("22:34", "routes[2].redirect.status", "redirect status 200"),
            (
                "28:11",
                "routes[3].respond",
                "give `redirect` or `respond`, not both",
            ),
            ("33:19", "routes[4].redirect.to", "needs `auth`"),
            ("38:22", "routes[5].respond.status", "respond status 42"),
            (
                "41:6",
                "routes[6]",
                "needs `upstream`, `split`, `redirect` or `respond`",
            ),
        ],
    );
}
