//! A/B matching on cookies, query parameters and verified claims; claim routes fall through
//! without a valid token, and claims forged in headers or unsigned tokens select nothing.

use crate::support;

use serde_json::json;
use support::traffic::*;
use support::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
const ISS: &str = "https://hs.test";

fn config(a: &Backend, b: &Backend) -> String {
    let routes = format!(
        r#"
[auth.providers.hs]
issuer = "{ISS}"
audiences = ["portico"]
algorithms = ["HS256"]
secret_file = "hs.secret"
forward_claims = {{ plan = "x-plan" }}

[[routes]]
id = "pro"
match = {{ path_prefix = "/shop", claims = {{ plan = "pro" }} }}
upstream = "b"
auth = {{ provider = "hs" }}

[[routes]]
id = "beta-cookie"
match = {{ path_prefix = "/shop", cookies = {{ beta = "1" }} }}
upstream = "b"

[[routes]]
id = "variant-query"
match = {{ path_prefix = "/shop", query = {{ variant = "b" }} }}
upstream = "b"

[[routes]]
id = "any-debug"
match = {{ path_prefix = "/shop", query = {{ debug = "*" }}, methods = ["GET"] }}
upstream = "b"

[[routes]]
id = "shop"
match = {{ path_prefix = "/shop" }}
upstream = "a"
"#
    );
    traffic_config(&[("a", a.addr), ("b", b.addr)], &routes)
}

fn token(plan: &str) -> String {
    hs256(
        SECRET,
        &json!({"iss": ISS, "aud": "portico", "sub": "u1", "plan": plan, "exp": unix_now() + 600}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_query_and_claim_conditions_select_the_b_route() {
    let (a, b) = (Backend::echo("a").await, Backend::echo("b").await);
    let gw = TestGateway::start_with_files(&config(&a, &b), &[("hs.secret", SECRET)]).await;
    let url = gw.url("/shop/cart");
    let backend = |ans: &Answer| ans.header("x-backend").unwrap_or("none").to_string();

    assert_eq!(backend(&get(&url).await), "a");
    // Cookies.
    assert_eq!(
        backend(&get_with(&url, &[("cookie", "x=1; beta=1")]).await),
        "b"
    );
    assert_eq!(backend(&get_with(&url, &[("cookie", "beta=2")]).await), "a");
    // Query (decoded values; "*" means present).
    assert_eq!(
        backend(&get(&gw.url("/shop/cart?x=1&variant=b")).await),
        "b"
    );
    assert_eq!(backend(&get(&gw.url("/shop/cart?variant=a")).await), "a");
    assert_eq!(backend(&get(&gw.url("/shop/cart?debug")).await), "b");
    // Claims: a valid token with the claim takes the claim route, and it is authenticated.
    let pro = get_with_token(&url, &token("pro"), &[]).await;
    assert_eq!(pro.status, 200);
    assert_eq!(backend(&pro), "b");
    assert_eq!(
        pro.json()["headers"]["x-plan"][0],
        "pro",
        "verified claim forwarded"
    );
    let free = get_with_token(&url, &token("free"), &[]).await;
    assert_eq!(backend(&free), "a", "a non-matching claim falls through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_claims_select_nothing_and_bad_tokens_fall_through() {
    let (a, b) = (Backend::echo("a").await, Backend::echo("b").await);
    let gw = TestGateway::start_with_files(&config(&a, &b), &[("hs.secret", SECRET)]).await;
    let url = gw.url("/shop/cart");

    // The forwarded-claim header sent by the client: stripped, and never read for routing.
    let forged = get_with(&url, &[("x-plan", "pro"), ("plan", "pro")]).await;
    assert_eq!(forged.status, 200);
    assert_eq!(forged.header("x-backend"), Some("a"));
    assert!(
        forged.json()["headers"].get("x-plan").is_none(),
        "forged header stripped"
    );

    // A token with the right claim but the wrong signature, and an expired one.
    let wrong_key = hs256(
        "another-secret-another-secret-another",
        &json!({"iss": ISS, "aud": "portico", "plan": "pro", "exp": unix_now() + 600}),
    );
    let expired = hs256(
        SECRET,
        &json!({"iss": ISS, "aud": "portico", "plan": "pro", "exp": unix_now() - 3600}),
    );
    for t in [wrong_key, expired, "not.a.jwt".to_string()] {
        let ans = get_with_token(&url, &t, &[]).await;
        assert_eq!(ans.status, 200, "falls through to the public route");
        assert_eq!(ans.header("x-backend"), Some("a"));
    }
    assert_eq!(b.hits(), 0);
}

#[test]
fn claim_conditions_need_auth_on_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let text = traffic_config(
        &[("a", "127.0.0.1:7001".parse().unwrap())],
        r#"
[[routes]]
id = "r"
match = { path_prefix = "/r", claims = { plan = "pro" }, cookies = { "bad name" = "1" } }
upstream = "a"
"#,
    );
    write(dir.path(), "gateway.toml", &text);
    let path = dir.path().join("gateway.toml");
    let (code, _, err) = portico_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "gateway.toml:15:42: routes[0].match.claims.plan: claim conditions need `auth`"
        ),
        "{err}"
    );
    assert!(
        err.contains("routes[0].match.cookies.bad name: bad cookie name"),
        "{err}"
    );
}
