//! `kind = "api_key"` providers: keys from a watched file (plain or `sha256:` digests),
//! header or opt-in query parameter (stripped before proxying), the consumer forwarded and
//! never spoofable, a route taking a JWT or a key, `consumer` as a rate-limit key, and a key
//! revoked by editing the file (hot reload, no restart).

use crate::support;

use std::time::Duration;

use sha2::Digest as _;
use support::*;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn sha256_hex(key: &str) -> String {
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn keys_text() -> String {
    format!(
        "# partner keys\nacme key-acme-1\nglobex sha256:{}\n",
        sha256_hex("key-globex-1")
    )
}

fn gateway_toml(backend: &Backend) -> String {
    support::config()
        .no_access_log()
        .upstream("echo", &[backend.addr])
        .provider(
            "hs",
            "https://hs.test",
            &["HS256"],
            "secret_file = \"hs.secret\"\nforward_claims = { sub = \"x-user\" }",
        )
        .toml(
            r#"[auth.providers.partners]
kind = "api_key"
keys_file = "keys/partners.txt"
forward_consumer = "x-consumer"

[auth.providers.browser]
kind = "api_key"
keys_file = "keys/partners.txt"
header = "x-key"
query = "api_key"
forward_consumer = "x-consumer"

[rate_limits.per_consumer]
rate = "2/m"
key = "consumer""#,
        )
        .route_with(
            "partners",
            "/partners",
            "echo",
            "auth = { provider = \"partners\" }",
        )
        .route_with(
            "either",
            "/either",
            "echo",
            "auth = { providers = [\"hs\", \"partners\"] }",
        )
        .route_with(
            "browser",
            "/browser",
            "echo",
            "auth = { provider = \"browser\" }",
        )
        .route_with(
            "limited",
            "/limited",
            "echo",
            "auth = { provider = \"partners\" }\nrate_limit = \"per_consumer\"",
        )
        .route("open", "/open", "echo")
        .build()
}

async fn start(backend: &Backend) -> TestGateway {
    TestGateway::start_with_files(
        &gateway_toml(backend),
        &[("hs.secret", SECRET), ("keys/partners.txt", &keys_text())],
    )
    .await
}

/// The request headers the echo backend saw.
fn headers_of(a: &Answer) -> serde_json::Value {
    a.json()["headers"].clone()
}

#[tokio::test]
async fn valid_invalid_and_missing_keys() {
    let backend = Backend::echo("echo").await;
    let gw = start(&backend).await;

    let a = get_with(&gw.url("/partners/x"), &[("x-api-key", "key-acme-1")]).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let h = headers_of(&a);
    assert_eq!(h["x-consumer"], serde_json::json!(["acme"]));
    assert!(h.get("x-api-key").is_none(), "the key is never forwarded");
    // A key stored only as its SHA-256 digest.
    let a = get_with(&gw.url("/partners/x"), &[("x-api-key", "key-globex-1")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(headers_of(&a)["x-consumer"], serde_json::json!(["globex"]));

    for key in ["key-acme-2", "", "KEY-ACME-1"] {
        let a = get_with(&gw.url("/partners/x"), &[("x-api-key", key)]).await;
        assert_eq!(a.status, 401, "key {key:?}");
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
        assert!(!String::from_utf8_lossy(&a.body).contains(key) || key.is_empty());
    }
    let a = get(&gw.url("/partners/x")).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.header("www-authenticate"),
        Some("ApiKey realm=\"portico\"")
    );
    // Keys are never read from the query string unless the provider says so.
    let a = get(&gw.url("/partners/x?api_key=key-acme-1&x-api-key=key-acme-1")).await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn query_key_only_where_allowed_and_stripped() {
    let backend = Backend::echo("echo").await;
    let gw = start(&backend).await;
    let a = get(&gw.url("/browser/x?a=1&api_key=key-acme-1&b=2")).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.json()["query"], "a=1&b=2");
    assert_eq!(headers_of(&a)["x-consumer"], serde_json::json!(["acme"]));
    let a = get_with(&gw.url("/browser/x"), &[("x-key", "key-globex-1")]).await;
    assert_eq!(a.status, 200);
    assert!(headers_of(&a).get("x-key").is_none());
    // Both places at once is ambiguous: refused.
    let a = get_with(
        &gw.url("/browser/x?api_key=key-acme-1"),
        &[("x-key", "key-acme-1")],
    )
    .await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn consumer_header_is_not_spoofable() {
    let backend = Backend::echo("echo").await;
    let gw = start(&backend).await;
    // On a public route the client's copy is removed.
    let a = get_with(&gw.url("/open/x"), &[("x-consumer", "admin")]).await;
    assert_eq!(a.status, 200);
    assert!(headers_of(&a).get("x-consumer").is_none());
    // On a key route the verified consumer replaces it (one value only).
    let a = get_with(
        &gw.url("/partners/x"),
        &[("x-consumer", "admin"), ("x-api-key", "key-acme-1")],
    )
    .await;
    assert_eq!(headers_of(&a)["x-consumer"], serde_json::json!(["acme"]));
    // The underscore spelling is dropped too.
    let a = get_with(&gw.url("/open/x"), &[("x_consumer", "admin")]).await;
    assert!(headers_of(&a).get("x_consumer").is_none());
}

#[tokio::test]
async fn a_route_takes_a_token_or_a_key() {
    let backend = Backend::echo("echo").await;
    let gw = start(&backend).await;
    let token = hs256(
        SECRET,
        &serde_json::json!({"iss": "https://hs.test", "aud": "portico", "sub": "u7", "exp": unix_now() + 600}),
    );
    let a = get_with_token(&gw.url("/either/x"), &token, &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(headers_of(&a)["x-user"], serde_json::json!(["u7"]));
    assert!(headers_of(&a).get("x-consumer").is_none());
    let a = get_with(&gw.url("/either/x"), &[("x-api-key", "key-acme-1")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(headers_of(&a)["x-consumer"], serde_json::json!(["acme"]));
    // Neither: the JWT challenge (the key was optional); a bad key is not rescued by nothing.
    assert_eq!(get(&gw.url("/either/x")).await.status, 401);
    let a = get_with(&gw.url("/either/x"), &[("x-api-key", "nope")]).await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn consumer_is_a_rate_limit_key() {
    let backend = Backend::echo("echo").await;
    let gw = start(&backend).await;
    let acme = [("x-api-key", "key-acme-1")];
    assert_eq!(get_with(&gw.url("/limited/x"), &acme).await.status, 200);
    assert_eq!(get_with(&gw.url("/limited/x"), &acme).await.status, 200);
    assert_eq!(get_with(&gw.url("/limited/x"), &acme).await.status, 429);
    // Another consumer has its own bucket.
    let globex = [("x-api-key", "key-globex-1")];
    assert_eq!(get_with(&gw.url("/limited/x"), &globex).await.status, 200);
}

#[tokio::test]
async fn revoking_a_key_in_the_file_takes_effect_without_restart() {
    let backend = Backend::echo("echo").await;
    let cfg = support::config()
        .admin_unset()
        .no_access_log()
        .upstream("echo", &[backend.addr])
        .toml("[auth.providers.partners]\nkind = \"api_key\"\nkeys_file = \"keys/partners.txt\"")
        .route_with("p", "/p", "echo", "auth = { provider = \"partners\" }")
        .build();
    let gw = TestGateway::start_with_files(&cfg, &[("keys/partners.txt", &keys_text())]).await;
    let path = gw.dir.path().join("keys/partners.txt");
    assert!(gw.running().gateway.runtime().sources.contains(&path));
    let acme = [("x-api-key", "key-acme-1")];
    assert_eq!(get_with(&gw.url("/p"), &acme).await.status, 200);

    // Revoke acme, add initech: the watcher reloads.
    let mut reloads = gw.running().gateway.reload_status();
    save_atomically(
        &path,
        &format!(
            "globex sha256:{}\ninitech key-initech\n",
            sha256_hex("key-globex-1")
        ),
    );
    next_reload(&mut reloads, Duration::from_secs(5)).await;
    assert_eq!(get_with(&gw.url("/p"), &acme).await.status, 401);
    assert_eq!(
        get_with(&gw.url("/p"), &[("x-api-key", "key-initech")])
            .await
            .status,
        200
    );

    // A broken key file fails the reload: the keys in use stay.
    save_atomically(&path, "initech\n");
    next_reload(&mut reloads, Duration::from_secs(5)).await;
    assert_eq!(
        get_with(&gw.url("/p"), &[("x-api-key", "key-initech")])
            .await
            .status,
        200
    );
}
