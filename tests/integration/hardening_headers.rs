//! Hardening of request heads (issue 19): Host validation (RFC 9112 §3.2), the request
//! target's authority over Host (RFC 9112 §3.2.2, RFC 9113 §8.3.1), gateway-set identity
//! headers surviving `Connection`, and underscore aliases of header names. Each vector goes
//! over a raw socket; the echo backend shows what reached it.

use crate::support;

use std::time::Duration;

use support::attack::*;
use support::*;

const T: Duration = Duration::from_secs(5);

/// Sends one request on a fresh connection and reads the answer.
async fn exchange(gw: &TestGateway, request: &str) -> H1Response {
    let mut c = Raw::connect(gw.addr).await;
    assert!(c.send(request.as_bytes()).await);
    c.response(T)
        .await
        .unwrap_or_else(|| panic!("no response to {request:?}"))
}

#[tokio::test]
async fn invalid_or_ambiguous_host_is_400_and_never_proxied() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "", "").await;
    let vectors = [
        ("no host", "GET /echo/a HTTP/1.1\r\n\r\n"),
        (
            "two hosts",
            "GET /echo/a HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        ),
        (
            "same host twice",
            "GET /echo/a HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n",
        ),
        (
            "userinfo",
            "GET /echo/a HTTP/1.1\r\nHost: user@evil.test\r\n\r\n",
        ),
        (
            "bad port",
            "GET /echo/a HTTP/1.1\r\nHost: example.test:80abc\r\n\r\n",
        ),
        (
            "port too big",
            "GET /echo/a HTTP/1.1\r\nHost: example.test:65536\r\n\r\n",
        ),
        ("space", "GET /echo/a HTTP/1.1\r\nHost: a b.test\r\n\r\n"),
        ("empty", "GET /echo/a HTTP/1.1\r\nHost: \r\n\r\n"),
        ("slash", "GET /echo/a HTTP/1.1\r\nHost: a.test/x\r\n\r\n"),
        (
            "comma list",
            "GET /echo/a HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n",
        ),
        ("bad ipv6", "GET /echo/a HTTP/1.1\r\nHost: [::1\r\n\r\n"),
        (
            "absolute-form with userinfo",
            "GET http://user@a.test/echo/a HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ),
    ];
    for (name, request) in vectors {
        let r = exchange(&gw, request).await;
        assert_eq!(r.status, 400, "{name}: {}", r.head);
    }
    assert_eq!(backend.hits(), 0, "no invalid Host reached the backend");

    for (host, forwarded) in [
        ("Example.Test:8080", "Example.Test:8080"),
        ("[::1]:80", "[::1]:80"),
        ("127.0.0.1", "127.0.0.1"),
        ("a-b_c.test.", "a-b_c.test."),
    ] {
        let r = exchange(
            &gw,
            &format!("GET /echo/a HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        )
        .await;
        assert_eq!(r.status, 200, "{host}: {}", r.head);
        assert_eq!(r.json()["headers"]["x-forwarded-host"][0], forwarded);
    }
    // HTTP/1.0 may omit Host.
    let r = exchange(&gw, "GET /echo/a HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 200, "{}", r.head);
}

const HOST_ROUTE: &str = r#"
[[routes]]
id = "a-host"
match = { host = "a.test", path_prefix = "/echo" }
upstream = "echo"
preserve_host = true
request_headers = { set = { "x-route" = "a-host" } }
"#;

#[tokio::test]
async fn absolute_form_target_wins_over_host_everywhere() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "", HOST_ROUTE).await;
    // The route is chosen by the target's authority, and the same value is what the upstream
    // sees as Host and X-Forwarded-Host.
    let r = exchange(
        &gw,
        "GET http://a.test/echo/x HTTP/1.1\r\nHost: b.test\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let j = r.json();
    assert_eq!(j["headers"]["x-route"][0], "a-host");
    assert_eq!(j["headers"]["x-forwarded-host"][0], "a.test", "{j}");
    assert_eq!(j["headers"]["host"][0], "a.test", "{j}");
    assert_eq!(j["headers"]["host"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn h2_authority_and_host_must_agree() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "", HOST_ROUTE).await;

    // :authority and a different Host: malformed (RFC 9113 §8.3.1).
    let mut c = Raw::connect(gw.addr).await;
    c.send(&h2_start()).await;
    c.send(&headers(
        1,
        &get_fields("a.test", "/echo/x", &[("host", "b.test")]),
        true,
    ))
    .await;
    let out = c.h2_outcome(1, T).await;
    assert!(out.refused(), "{out:?}");
    assert_eq!(backend.hits(), 0);

    // :authority alone: it is the Host everywhere.
    let mut c = Raw::connect(gw.addr).await;
    c.send(&h2_start()).await;
    c.send(&headers(1, &get_fields("a.test", "/echo/x", &[]), true))
        .await;
    assert_eq!(c.h2_outcome(1, T).await, H2Outcome::Status(200));
    let body = c.h2_body(1, T).await.unwrap();
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["headers"]["x-route"][0], "a-host");
    assert_eq!(j["headers"]["x-forwarded-host"][0], "a.test");
    assert_eq!(j["headers"]["host"][0], "a.test");

    // Both, equal: fine.
    let mut c = Raw::connect(gw.addr).await;
    c.send(&h2_start()).await;
    c.send(&headers(
        1,
        &get_fields("a.test", "/echo/x", &[("host", "a.test")]),
        true,
    ))
    .await;
    assert_eq!(c.h2_outcome(1, T).await, H2Outcome::Status(200));

    // An invalid :authority is refused like an invalid Host.
    let mut c = Raw::connect(gw.addr).await;
    c.send(&h2_start()).await;
    c.send(&headers(1, &get_fields("a b.test", "/echo/x", &[]), true))
        .await;
    assert!(c.h2_outcome(1, T).await.refused());
    assert_eq!(backend.hits(), 2);
}

#[tokio::test]
async fn connection_cannot_strip_gateway_set_headers() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "", "").await;
    let tok = token("user-7");
    let r = exchange(
        &gw,
        &format!(
            "GET /secure/me HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {tok}\r\n\
             Connection: keep-alive, X-User-Id, x-request-id, x-forwarded-for, x-forwarded-host\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let h = &r.json()["headers"];
    assert_eq!(h["x-user-id"][0], "user-7", "verified identity kept: {h}");
    assert_eq!(h["x-user-id"].as_array().unwrap().len(), 1);
    assert!(h["x-request-id"][0].is_string(), "{h}");
    assert_eq!(h["x-forwarded-for"][0], "127.0.0.1");
    assert_eq!(h["x-forwarded-host"][0], "gw.test");
    assert!(h.get("connection").is_none(), "{h}");
}

#[tokio::test]
async fn underscore_header_aliases_are_dropped_by_default() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "", "").await;
    let r = exchange(
        &gw,
        "GET /echo/a HTTP/1.1\r\nHost: gw.test\r\nX_User_Id: admin\r\nx_forwarded_for: 1.2.3.4\r\n\
         X-Custom_Thing: 1\r\nx-ok: yes\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let h = r.json()["headers"].clone();
    for gone in ["x_user_id", "x_forwarded_for", "x-custom_thing"] {
        assert!(h.get(gone).is_none(), "{gone} reached the backend: {h}");
    }
    assert_eq!(h["x-ok"][0], "yes");
    // On an authenticated route too: only the verified claim header arrives.
    let tok = token("user-7");
    let r = exchange(
        &gw,
        &format!(
            "GET /secure/a HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {tok}\r\nx_user_id: admin\r\n\r\n"
        ),
    )
    .await;
    let h = r.json()["headers"].clone();
    assert!(h.get("x_user_id").is_none(), "{h}");
    assert_eq!(h["x-user-id"][0], "user-7");
}

#[tokio::test]
async fn underscores_allowed_still_drop_aliases_of_protected_names() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "underscores_in_headers = \"allow\"", "").await;
    let r = exchange(
        &gw,
        "GET /echo/a HTTP/1.1\r\nHost: gw.test\r\nX_User_Id: admin\r\nX_Forwarded_Host: evil\r\n\
         X_Request_Id: forged\r\nx_custom: kept\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let h = r.json()["headers"].clone();
    for gone in ["x_user_id", "x_forwarded_host", "x_request_id"] {
        assert!(h.get(gone).is_none(), "{gone} reached the backend: {h}");
    }
    assert_eq!(h["x_custom"][0], "kept");

    // "reject" answers 400 instead.
    let gw = target_gateway(&backend, "underscores_in_headers = \"reject\"", "").await;
    let before = backend.hits();
    let r = exchange(
        &gw,
        "GET /echo/a HTTP/1.1\r\nHost: gw.test\r\nx_custom: 1\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert_eq!(backend.hits(), before);
}
