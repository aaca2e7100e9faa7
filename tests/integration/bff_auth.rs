//! Guards on BFF endpoints: JWT auth and rate limits run before any part is called, an
//! endpoint's settings override its profile's, templates read verified claims, and the
//! provider's `forward_claims` headers reach every part (client-sent copies never do).

use crate::support;

use std::time::Duration;

use support::*;

const SECRET: &str = "bff-auth-test-secret-long-enough-for-hs256!";

fn gateway_toml(echo: &RawBackend) -> String {
    config()
        .upstream("echo", &[echo.addr])
        .provider(
            "t",
            "https://t.test",
            &["HS256"],
            "secret_file = \"t.secret\"\nforward_claims = { sub = \"x-user-id\" }",
        )
        .toml("[rate_limits.two]\nrate = \"1/h\"\nburst = 2\nkey = \"claim:sub\"")
        .build()
}

/// `/a/me` calls the backend as the verified user; `/a/admin` needs the `admin` scope; both
/// under the `two` rate limit.
fn bff_profile() -> String {
    profile("/a")
        .keys("auth = { provider = \"t\" }\nrate_limit = \"two\"")
        .endpoint("/me")
        .part(
            "me",
            "echo",
            "/users/{claims.sub}?org={claims.org.id|'none'}",
            "required = true\nheaders = [\"x-user-id\"]\nfields = [\"path\", \"query\", \"headers.x-user-id\"]",
        )
        .endpoint("/admin")
        .keys("auth = { provider = \"t\", scopes = [\"admin\"] }")
        .part("p", "echo", "/admin", "required = true")
        .build()
}

async fn start() -> (RawBackend, TestGateway) {
    let echo = RawBackend::start("echo", Fault::Delay(Duration::ZERO)).await;
    let gw = TestGateway::start_with_files(
        &gateway_toml(&echo),
        &[("bff/a.toml", &bff_profile()), ("t.secret", SECRET)],
    )
    .await;
    (echo, gw)
}

fn token(gw: &TestGateway, sub: &str, scope: Option<&str>, org: Option<&str>) -> String {
    let rt = gw.running().gateway.runtime();
    let claims = org
        .map(|o| vec![("org".to_string(), serde_json::json!({"id": o}))])
        .unwrap_or_default();
    let t = rt
        .auth
        .providers
        .get("t")
        .unwrap()
        .mint(&portico::filter::auth::MintOptions {
            sub: sub.into(),
            scope: scope.map(String::from),
            ttl: Duration::from_secs(600),
            claims,
            ..Default::default()
        });
    format!("Bearer {}", t.unwrap())
}

#[tokio::test]
async fn auth_runs_before_any_part_and_claims_fill_the_templates() {
    let (echo, gw) = start().await;
    let url = gw.url("/a/me");
    assert_eq!(get(&url).await.status, 401);
    assert_eq!(
        echo.requests().len(),
        0,
        "no part is called without a valid token"
    );

    let auth = token(&gw, "u 1", None, Some("acme/eu"));
    let ans = get_with(&url, &[("authorization", &auth), ("x-user-id", "spoofed")]).await;
    assert_eq!(ans.status, 200, "{:?}", ans.body);
    let v = &ans.json()["me"];
    assert_eq!(v["path"], "/users/u%201");
    assert_eq!(v["query"], "org=acme%2Feu");
    assert_eq!(
        v["headers"]["x-user-id"], "u 1",
        "the verified claim, once; never the client's copy"
    );
    let seen = echo.requests();
    let sent: Vec<&str> = seen[0]
        .headers
        .iter()
        .filter(|(k, _)| k == "x-user-id")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(sent, ["u 1"]);
    assert!(
        seen[0].header("authorization").is_none(),
        "not forwarded without forward_auth"
    );

    // Without the optional claim the literal fallback is used.
    let plain = token(&gw, "u2", None, None);
    let v = get_with(&url, &[("authorization", &plain)]).await.json();
    assert_eq!(v["me"]["query"], "org=none");
}

#[tokio::test]
async fn an_endpoint_overrides_its_profile_guards_and_rate_limits_apply() {
    let (echo, gw) = start().await;
    // /admin needs the admin scope (its own auth); it has no rate limit of its own, so the
    // profile's applies.
    let user = token(&gw, "alice", None, None);
    let denied = get_with(&gw.url("/a/admin"), &[("authorization", &user)]).await;
    assert_eq!(denied.status, 403);
    assert!(
        denied
            .header("www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );
    let admin = token(&gw, "root", Some("admin"), None);
    assert_eq!(
        get_with(&gw.url("/a/admin"), &[("authorization", &admin)])
            .await
            .status,
        200
    );
    assert_eq!(echo.requests().len(), 1);

    // Two requests per user pass (burst 2), the third is refused before any part is called.
    let bob = token(&gw, "bob", None, None);
    for _ in 0..2 {
        assert_eq!(
            get_with(&gw.url("/a/me"), &[("authorization", &bob)])
                .await
                .status,
            200
        );
    }
    let limited = get_with(&gw.url("/a/me"), &[("authorization", &bob)]).await;
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    assert_eq!(
        echo.requests().len(),
        3,
        "the refused request called nothing"
    );
    // Another user has their own bucket.
    let carol = token(&gw, "carol", None, None);
    assert_eq!(
        get_with(&gw.url("/a/me"), &[("authorization", &carol)])
            .await
            .status,
        200
    );
}
