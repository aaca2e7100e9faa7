//! Rate limiting end to end: ip, header and claim keys and their independence, the 429 answer
//! (Retry-After, RateLimit fields, problem body), composite and multiple policies, memory-safe
//! missing keys, counters, config errors, and buckets that survive a reload.

use crate::support;

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use support::*;

const SECRET: &str = "rate-limit-tests-secret-0123456789abcdef";

fn config(backend: &Backend, policies: &str, routes: &str) -> String {
    support::config()
        .server("trusted_proxies = [\"127.0.0.9\"]")
        .no_access_log()
        .upstream_with("echo", &[backend.addr], "timeout = \"5s\"")
        .provider(
            "hs",
            "https://issuer.test",
            &["HS256"],
            "secret_file = \"hs.secret\"",
        )
        .toml(policies)
        .toml(routes)
        .build()
}

fn route(id: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nid = \"{id}\"\nmatch = {{ path_prefix = \"/{id}\" }}\nupstream = \"echo\"\n{extra}\n"
    )
}

async fn start(backend: &Backend, policies: &str, routes: &str) -> TestGateway {
    TestGateway::start_with_files(&config(backend, policies, routes), &[("hs.secret", SECRET)])
        .await
}

async fn get_h(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::default()).unwrap()).await
}

fn token(sub: &str) -> String {
    hs256(
        SECRET,
        &json!({"iss": "https://issuer.test", "aud": "portico", "sub": sub, "exp": unix_now() + 600}),
    )
}

/// A client whose connections come from another loopback address.
fn client_from(ip: Ipv4Addr) -> Client<HttpConnector, Full<Bytes>> {
    let mut http = HttpConnector::new();
    http.set_local_address(Some(IpAddr::V4(ip)));
    Client::builder(TokioExecutor::new()).build(http)
}

#[tokio::test]
async fn refusal_has_retry_after_ratelimit_fields_and_problem_body() {
    let backend = Backend::echo("app").await;
    let gw = start(
        &backend,
        "[rate_limits.per_ip]\nrate = \"1/m\"\nburst = 2\nkey = \"ip\"",
        &route("api", "rate_limit = \"per_ip\""),
    )
    .await;
    for _ in 0..2 {
        let a = get_h(&gw, "/api", &[]).await;
        assert_eq!(a.status, 200);
        assert!(
            a.header("ratelimit").is_none(),
            "headers = on_limit by default"
        );
    }
    let a = get_h(&gw, "/api", &[]).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry), "one cell per minute: {retry}");
    assert_eq!(a.header("ratelimit-policy"), Some("\"per_ip\";q=1;w=60"));
    assert_eq!(
        a.header("ratelimit").unwrap(),
        format!("\"per_ip\";r=0;t={retry}")
    );
    let body = a.json();
    assert_eq!(body["type"], "https://portico.dev/problems/rate-limited");
    assert_eq!(body["status"], 429);
    assert_eq!(body["title"], "Too Many Requests");
    assert_eq!(
        backend.hits(),
        2,
        "refused requests never reach the upstream"
    );

    // Another client address has its own bucket.
    let other = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let a = send_with(
        &other,
        Request::get(gw.url("/api")).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "127.0.0.2 is another client");

    let rt = gw.running().gateway.runtime();
    let limiter = rt.rate_limits["per_ip"].limiter();
    assert_eq!((limiter.admitted(), limiter.limited()), (3, 1));
    assert_eq!(limiter.len(), 2);
    let exposition = rt.metrics.encode();
    for line in [
        "portico_rate_limit_requests_total{policy=\"per_ip\",outcome=\"admitted\"} 3",
        "portico_rate_limit_requests_total{policy=\"per_ip\",outcome=\"limited\"} 1",
    ] {
        assert!(
            exposition.contains(line),
            "missing {line} in:\n{exposition}"
        );
    }
}

#[tokio::test]
async fn ip_key_behind_a_trusted_proxy_uses_x_forwarded_for() {
    let backend = Backend::echo("app").await;
    let gw = start(
        &backend,
        "[rate_limits.per_ip]\nrate = \"1/h\"\nburst = 1\nkey = \"ip\"",
        &route("api", "rate_limit = \"per_ip\""),
    )
    .await;
    let proxy = client_from(Ipv4Addr::new(127, 0, 0, 9));
    let via = |client: &str| {
        Request::get(gw.url("/api"))
            .header("x-forwarded-for", client)
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    assert_eq!(send_with(&proxy, via("203.0.113.1")).await.status, 200);
    assert_eq!(send_with(&proxy, via("203.0.113.1")).await.status, 429);
    assert_eq!(
        send_with(&proxy, via("203.0.113.2")).await.status,
        200,
        "clients behind the proxy are told apart"
    );
    // An untrusted peer cannot choose its key with the header.
    assert_eq!(
        get_h(&gw, "/api", &[("x-forwarded-for", "198.51.100.1")])
            .await
            .status,
        200
    );
    assert_eq!(
        get_h(&gw, "/api", &[("x-forwarded-for", "198.51.100.2")])
            .await
            .status,
        429
    );
}

#[tokio::test]
async fn header_keys_are_independent_and_missing_keys_share_a_bucket() {
    let backend = Backend::echo("app").await;
    let gw = start(
        &backend,
        "[rate_limits.per_key]\nrate = \"1/h\"\nburst = 1\nkey = \"header:x-api-key\"",
        &route("api", "rate_limit = \"per_key\""),
    )
    .await;
    assert_eq!(
        get_h(&gw, "/api", &[("x-api-key", "alpha")]).await.status,
        200
    );
    assert_eq!(
        get_h(&gw, "/api", &[("x-api-key", "alpha")]).await.status,
        429
    );
    assert_eq!(
        get_h(&gw, "/api", &[("x-api-key", "beta")]).await.status,
        200,
        "another key, another bucket"
    );
    assert_eq!(
        get_h(&gw, "/api", &[("x-api-key", "ALPHA")]).await.status,
        200,
        "values are exact"
    );
    assert_eq!(get_h(&gw, "/api", &[]).await.status, 200);
    assert_eq!(
        get_h(&gw, "/api", &[]).await.status,
        429,
        "requests without the header share one bucket"
    );
}

#[tokio::test]
async fn claim_keys_limit_per_user_across_addresses() {
    let backend = Backend::echo("app").await;
    let gw = start(
        &backend,
        "[rate_limits.per_user]\nrate = \"1/h\"\nburst = 2\nkey = \"claim:sub\"",
        &route(
            "me",
            "auth = { provider = \"hs\" }\nrate_limit = \"per_user\"",
        ),
    )
    .await;
    let alice = token("alice");
    for _ in 0..2 {
        assert_eq!(
            get_with_token(&gw.url("/me"), &alice, &[]).await.status,
            200
        );
    }
    let a = get_with_token(&gw.url("/me"), &alice, &[]).await;
    assert_eq!(a.status, 429);
    // Same user from another address: still limited (the key is the user, not the address).
    let other = client_from(Ipv4Addr::new(127, 0, 0, 3));
    let req = Request::get(gw.url("/me"))
        .header("authorization", format!("Bearer {alice}"))
        .body(Full::default())
        .unwrap();
    assert_eq!(send_with(&other, req).await.status, 429);
    // Another user from the same address is not.
    assert_eq!(
        get_with_token(&gw.url("/me"), &token("bob"), &[])
            .await
            .status,
        200
    );
    // Auth runs first: a bad token is a 401, never counted.
    assert_eq!(
        get_with_token(&gw.url("/me"), "x.y.z", &[]).await.status,
        401
    );
    let rt = gw.running().gateway.runtime();
    assert_eq!(rt.rate_limits["per_user"].limiter().admitted(), 3);
}

#[tokio::test]
async fn route_keys_composite_keys_and_policy_lists() {
    let backend = Backend::echo("app").await;
    let policies = r#"
[rate_limits.per_route]
rate = "1/h"
burst = 1
key = "route"

[rate_limits.composite]
rate = "1/h"
burst = 1
key = ["ip", "header:x-tenant"]

[rate_limits.roomy]
rate = "1/h"
burst = 3
key = "ip"
headers = "always"
"#;
    let routes = [
        route("a", "rate_limit = \"per_route\""),
        route("b", "rate_limit = \"per_route\""),
        route("c", "rate_limit = \"composite\""),
        route("d", "rate_limit = [\"roomy\", \"per_route\"]"),
    ]
    .concat();
    let gw = start(&backend, policies, &routes).await;
    assert_eq!(get_h(&gw, "/a", &[]).await.status, 200);
    assert_eq!(get_h(&gw, "/a", &[]).await.status, 429);
    assert_eq!(
        get_h(&gw, "/b", &[]).await.status,
        200,
        "`route` keys give each route its bucket"
    );

    assert_eq!(get_h(&gw, "/c", &[("x-tenant", "t1")]).await.status, 200);
    assert_eq!(get_h(&gw, "/c", &[("x-tenant", "t1")]).await.status, 429);
    assert_eq!(
        get_h(&gw, "/c", &[("x-tenant", "t2")]).await.status,
        200,
        "composite: same ip, other tenant"
    );

    // Both policies must admit; `roomy` shows its fields on admitted answers.
    let a = get_h(&gw, "/d", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("ratelimit-policy"), Some("\"roomy\";q=1;w=3600"));
    assert_eq!(a.header("ratelimit"), Some("\"roomy\";r=2;t=3600"));
    let a = get_h(&gw, "/d", &[]).await;
    assert_eq!(a.status, 429, "per_route refuses although roomy admits");
    assert_eq!(
        a.header("ratelimit-policy"),
        Some("\"per_route\";q=1;w=3600")
    );
}

#[tokio::test]
async fn on_missing_key_deny_and_allow() {
    let backend = Backend::echo("app").await;
    let policies = r#"
[rate_limits.deny]
rate = "1/h"
key = "header:x-api-key"
on_missing_key = "deny"

[rate_limits.allow]
rate = "1/h"
key = "header:x-api-key"
on_missing_key = "allow"
"#;
    let routes = [
        route("deny", "rate_limit = \"deny\""),
        route("allow", "rate_limit = \"allow\""),
    ]
    .concat();
    let gw = start(&backend, policies, &routes).await;
    let a = get_h(&gw, "/deny", &[]).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["type"], "https://portico.dev/problems/bad-request");
    assert_eq!(get_h(&gw, "/deny", &[("x-api-key", "k")]).await.status, 200);
    for _ in 0..3 {
        assert_eq!(get_h(&gw, "/allow", &[]).await.status, 200);
    }
    assert_eq!(
        get_h(&gw, "/allow", &[("x-api-key", "k")]).await.status,
        200
    );
    assert_eq!(
        get_h(&gw, "/allow", &[("x-api-key", "k")]).await.status,
        429
    );
}

#[tokio::test]
async fn buckets_survive_a_reload_when_the_policy_is_unchanged() {
    let backend = Backend::echo("app").await;
    let policy = "[rate_limits.p]\nrate = \"1/h\"\nburst = 2\nkey = \"ip\"";
    let gw = start(&backend, policy, &route("api", "rate_limit = \"p\"")).await;
    assert_eq!(get_h(&gw, "/api", &[]).await.status, 200);
    assert_eq!(get_h(&gw, "/api", &[]).await.status, 200);
    assert_eq!(get_h(&gw, "/api", &[]).await.status, 429);

    // Reload with other parts changed (a new route, another timeout): the bucket carries over.
    let path = gw.config_path();
    let changed = config(
        &backend,
        policy,
        &[
            route("api", "rate_limit = \"p\""),
            route("other", "rate_limit = \"p\""),
        ]
        .concat(),
    )
    .replace("timeout = \"5s\"", "timeout = \"4s\"");
    std::fs::write(&path, &changed).unwrap();
    let before = gw.running().gateway.generation();
    gw.running().gateway.reload().unwrap();
    assert_eq!(gw.running().gateway.generation(), before + 1);
    assert_eq!(
        get_h(&gw, "/api", &[]).await.status,
        429,
        "reload carry-over"
    );
    assert_eq!(
        get_h(&gw, "/other", &[]).await.status,
        429,
        "routes naming the policy share its buckets"
    );
    let limited_before = gw.running().gateway.runtime().rate_limits["p"]
        .limiter()
        .limited();
    assert_eq!(limited_before, 3, "counters carry over too");

    // A bad config on reload changes nothing.
    std::fs::write(&path, changed.replace("rate = \"1/h\"", "rate = \"fast\"")).unwrap();
    let err = gw.running().gateway.reload().unwrap_err().to_string();
    assert!(
        err.contains("rate_limits.p.rate: bad rate \"fast\""),
        "{err}"
    );
    assert_eq!(get_h(&gw, "/api", &[]).await.status, 429);

    // Changing the policy's settings starts fresh buckets.
    std::fs::write(&path, changed.replace("burst = 2", "burst = 3")).unwrap();
    gw.running().gateway.reload().unwrap();
    assert_eq!(get_h(&gw, "/api", &[]).await.status, 200);
}

#[tokio::test]
async fn bad_rate_limit_config_is_reported_with_positions() {
    let text = r#"[upstreams.a]
endpoints = ["127.0.0.1:9"]

[rate_limits.p]
rate = "100/fortnight"
burst = 0
key = ["ip", "cookie:x"]
on_missing_key = "maybe"

[rate_limits.by_user]
rate = "10/s"
key = "claim:sub"

[[routes]]
id = "r"
match = { path_prefix = "/" }
upstream = "a"
rate_limit = ["nope", "by_user"]
"#;
    assert_check_reports(
        text,
        &[],
        &[
            "gateway.toml:5:8: rate_limits.p.rate: bad rate \"100/fortnight\"",
            "gateway.toml:6:9: rate_limits.p.burst: must be between 1 and 10000000",
            "gateway.toml:7:7: rate_limits.p.key[1]: unknown key \"cookie:x\"",
            "gateway.toml:8:18: rate_limits.p.on_missing_key: unknown value \"maybe\"",
            "gateway.toml:18:14: routes[0].rate_limit: unknown rate-limit policy `nope`",
            "gateway.toml:18:14: routes[0].rate_limit: policy `by_user` keys on a claim, but there is no `auth` here",
        ],
    );
}
