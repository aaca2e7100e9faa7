//! JWT authentication end to end: a real gateway and real backends on 127.0.0.1:0.
//! A corpus of hostile tokens (each must get 401, or 403 for scopes and claims), the accepted
//! algorithms, JWKS files and URLs (rotation, cooldown, failures), claim forwarding and spoof
//! removal, cookies and token stripping.

use crate::support;

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
const HS_ISS: &str = "https://issuer.test";

fn key(name: &str) -> Vec<u8> {
    std::fs::read(jwt_fixture(name)).unwrap()
}

fn claims(iss: &str) -> Value {
    json!({"iss": iss, "aud": "portico", "sub": "user-7", "exp": unix_now() + 600, "iat": unix_now()})
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    hs256(SECRET, claims)
}

fn rsa1() -> EncodingKey {
    EncodingKey::from_rsa_pem(&key("rsa1.key")).unwrap()
}

fn rsa2() -> EncodingKey {
    EncodingKey::from_rsa_pem(&key("rsa2.key")).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(&key("ec256.key")).unwrap()
}

/// A token from raw JSON header and payload, HMAC-signed with `secret` (or signed with junk).
fn raw_hs(header: &Value, payload: &[u8], secret: Option<&[u8]>) -> String {
    let msg = format!("{}.{}", B64.encode(header.to_string()), B64.encode(payload));
    let sig = match secret {
        Some(s) => jsonwebtoken::crypto::sign(
            msg.as_bytes(),
            &EncodingKey::from_secret(s),
            Algorithm::HS256,
        )
        .unwrap(),
        None => String::new(),
    };
    format!("{msg}.{sig}")
}

fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    serde_json::to_value(jwk).unwrap()
}

fn config(backend: &Backend, jwks_url: &str) -> String {
    let routes = [
        ("hs", r#"{ provider = "hs" }"#),
        (
            "scoped",
            r#"{ provider = "hs", scopes = ["users:read", "users:write"] }"#,
        ),
        (
            "admin",
            r#"{ provider = "hs", claims = { role = "admin", "org.id" = "acme" } }"#,
        ),
        ("rs", r#"{ provider = "rs" }"#),
        ("es", r#"{ provider = "es" }"#),
        ("ed", r#"{ provider = "ed" }"#),
        ("jwks", r#"{ provider = "jwks" }"#),
        ("remote", r#"{ provider = "remote" }"#),
        ("any", r#"{ providers = ["hs", "rs"] }"#),
        ("web", r#"{ provider = "web" }"#),
    ];
    let gateway = support::config()
        .no_access_log()
        .upstream_with("echo", &[backend.addr], "timeout = \"5s\"")
        .toml(&format!(
            r#"[auth.providers.hs]
issuer = "{HS_ISS}"
audiences = ["portico", "other-api"]
algorithms = ["HS256"]
secret_file = "hs.secret"
forward_claims = {{ sub = "x-user-id", "org.id" = "x-org-id", roles = "x-roles" }}"#
        ))
        .provider(
            "rs",
            "https://rs.test",
            &["RS256"],
            "public_key_file = \"keys/rsa1.pub\"",
        )
        .provider(
            "es",
            "https://es.test",
            &["ES256"],
            "public_key_file = \"keys/ec256.pub\"",
        )
        .provider(
            "ed",
            "https://ed.test",
            &["EdDSA"],
            "public_key_file = \"keys/ed25519.pub\"",
        )
        .provider(
            "jwks",
            "https://jwks.test",
            &["RS256", "ES256"],
            "jwks_file = \"jwks.json\"",
        )
        .provider(
            "remote",
            "https://remote.test",
            &["RS256"],
            &format!("jwks_url = \"{jwks_url}\"\njwks_cooldown = \"1h\""),
        )
        .provider(
            "web",
            "https://web.test",
            &["HS256"],
            "secret_file = \"hs.secret\"\ncookie = \"session\"\nstrip_token = true",
        );
    routes
        .iter()
        .fold(gateway, |g, (id, auth)| {
            g.route_with(id, &format!("/{id}"), "echo", &format!("auth = {auth}"))
        })
        .route("public", "/public", "echo")
        .build()
}

/// A JWKS server whose document can be swapped (or broken) mid-test.
struct JwksServer {
    backend: Backend,
    doc: Arc<Mutex<(u16, String)>>,
}

impl JwksServer {
    async fn start(doc: Value) -> JwksServer {
        let doc = Arc::new(Mutex::new((200u16, doc.to_string())));
        let d = doc.clone();
        let backend = Backend::start(move |_req| {
            let (status, body) = d.lock().unwrap().clone();
            async move {
                let mut r = json_response(status, json!(null));
                *r.body_mut() = full(body);
                r
            }
        })
        .await;
        JwksServer { backend, doc }
    }

    fn set(&self, status: u16, doc: Value) {
        *self.doc.lock().unwrap() = (status, doc.to_string());
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.backend.addr)
    }
}

struct Fixture {
    gw: TestGateway,
    backend: Backend,
    jwks: JwksServer,
}

async fn fixture() -> Fixture {
    fixture_with(|c| c).await
}

async fn fixture_with(edit: impl FnOnce(String) -> String) -> Fixture {
    let backend = Backend::echo("app").await;
    let jwks =
        JwksServer::start(json!({"keys": [public_jwk(&rsa1(), Algorithm::RS256, "k1")]})).await;
    let file_jwks = json!({"keys": [
        public_jwk(&rsa1(), Algorithm::RS256, "r1"),
        public_jwk(&ec(), Algorithm::ES256, "e1"),
    ]})
    .to_string();
    let pub_rsa = String::from_utf8(key("rsa1.pub")).unwrap();
    let pub_ec = String::from_utf8(key("ec256.pub")).unwrap();
    let pub_ed = String::from_utf8(key("ed25519.pub")).unwrap();
    let gw = TestGateway::start_with_files(
        &edit(config(&backend, &jwks.url())),
        &[
            ("hs.secret", &format!("{SECRET}\n")),
            ("keys/rsa1.pub", &pub_rsa),
            ("keys/ec256.pub", &pub_ec),
            ("keys/ed25519.pub", &pub_ed),
            ("jwks.json", &file_jwks),
        ],
    )
    .await;
    Fixture { gw, backend, jwks }
}

async fn status_of(gw: &TestGateway, path: &str, token: &str) -> (u16, Answer) {
    let a = get_with_token(&gw.url(path), token, &[]).await;
    (a.status.as_u16(), a)
}

#[tokio::test]
async fn hostile_tokens_are_refused() {
    let f = fixture().await;
    let now = unix_now();
    let good = claims(HS_ISS);
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let valid = hs(&good);
    let (h, p, s) = {
        let mut it = valid.split('.');
        (
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
        )
    };
    let rsa_pub_pem = key("rsa1.pub");
    let payload = serde_json::to_vec(&good).unwrap();
    let attacker_jwk = public_jwk(&rsa2(), Algorithm::RS256, "evil");

    let mut header_with = |extra: Value| {
        let mut hd = Header::new(Algorithm::RS256);
        hd.kid = Some("r1".into());
        let mut v = serde_json::to_value(&hd).unwrap();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        let msg = format!("{}.{}", B64.encode(v.to_string()), B64.encode(&payload));
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &rsa2(), Algorithm::RS256).unwrap();
        format!("{msg}.{sig}")
    };
    let jwk_embedded = header_with(json!({"jwk": attacker_jwk}));
    let jku = header_with(json!({"jku": "http://127.0.0.1:9/evil.json"}));
    let x5u = header_with(json!({"x5u": "http://127.0.0.1:9/evil.pem"}));
    let _ = &mut header_with;

    // (name, path, token, expected status)
    let cases: Vec<(&str, &str, String, u16)> = vec![
        (
            "alg none",
            "/hs",
            raw_hs(&json!({"alg": "none", "typ": "JWT"}), &payload, None),
            401,
        ),
        (
            "alg None",
            "/hs",
            raw_hs(&json!({"alg": "None"}), &payload, None),
            401,
        ),
        (
            "alg NONE",
            "/hs",
            raw_hs(&json!({"alg": "NONE"}), &payload, None),
            401,
        ),
        (
            "alg nOnE signed",
            "/hs",
            raw_hs(&json!({"alg": "nOnE"}), &payload, Some(SECRET.as_bytes())),
            401,
        ),
        (
            "alg none, no dot",
            "/hs",
            format!(
                "{}.{}",
                B64.encode(r#"{"alg":"none"}"#),
                B64.encode(&payload)
            ),
            401,
        ),
        (
            "HS256 with RSA public key PEM",
            "/rs",
            raw_hs(
                &json!({"alg": "HS256"}),
                &serde_json::to_vec(&claims("https://rs.test")).unwrap(),
                Some(&rsa_pub_pem),
            ),
            401,
        ),
        (
            "RS token on HS provider",
            "/hs",
            sign(Algorithm::RS256, &rsa1(), None, &good),
            401,
        ),
        (
            "HS384 not in allow-list",
            "/hs",
            sign(
                Algorithm::HS384,
                &EncodingKey::from_secret(SECRET.as_bytes()),
                None,
                &good,
            ),
            401,
        ),
        (
            "wrong secret",
            "/hs",
            hs256("another-secret-of-at-least-32-bytes!!", &good),
            401,
        ),
        (
            "expired past leeway",
            "/hs",
            hs(&with(json!({"exp": now - 120}))),
            401,
        ),
        (
            "nbf in the future",
            "/hs",
            hs(&with(json!({"nbf": now + 300}))),
            401,
        ),
        (
            "iat in the future",
            "/hs",
            hs(&with(json!({"iat": now + 300}))),
            401,
        ),
        (
            "string iat",
            "/hs",
            hs(&with(json!({"iat": "yesterday"}))),
            401,
        ),
        (
            "wrong iss",
            "/hs",
            hs(&with(json!({"iss": "https://evil.test"}))),
            401,
        ),
        ("missing iss", "/hs", hs(&with(json!({"iss": null}))), 401),
        (
            "wrong aud",
            "/hs",
            hs(&with(json!({"aud": "someone-else"}))),
            401,
        ),
        (
            "aud array without ours",
            "/hs",
            hs(&with(json!({"aud": ["a", "b"]}))),
            401,
        ),
        ("missing aud", "/hs", hs(&with(json!({"aud": null}))), 401),
        ("missing exp", "/hs", hs(&with(json!({"exp": null}))), 401),
        (
            "string exp",
            "/hs",
            hs(&with(json!({"exp": (now + 600).to_string()}))),
            401,
        ),
        ("string nbf", "/hs", hs(&with(json!({"nbf": "soon"}))), 401),
        (
            "tampered payload",
            "/hs",
            format!(
                "{h}.{}.{s}",
                B64.encode(serde_json::to_vec(&with(json!({"sub": "admin"}))).unwrap())
            ),
            401,
        ),
        (
            "tampered signature",
            "/hs",
            format!(
                "{h}.{p}.{}{}",
                &s[..s.len() - 2],
                if s.ends_with("AA") { "BB" } else { "AA" }
            ),
            401,
        ),
        (
            "truncated",
            "/hs",
            valid[..valid.len() - 10].to_string(),
            401,
        ),
        ("two segments", "/hs", format!("{h}.{p}"), 401),
        ("extra segment", "/hs", format!("{valid}.{s}"), 401),
        ("bad base64 header", "/hs", format!("a{h}.{p}.{s}"), 401),
        ("bad base64 payload", "/hs", format!("{h}.{p}a.{s}"), 401),
        (
            "payload not an object",
            "/hs",
            raw_hs(
                &json!({"alg": "HS256"}),
                b"[1,2,3]",
                Some(SECRET.as_bytes()),
            ),
            401,
        ),
        (
            "payload not JSON",
            "/hs",
            raw_hs(&json!({"alg": "HS256"}), b"hello", Some(SECRET.as_bytes())),
            401,
        ),
        (
            "crit header",
            "/hs",
            raw_hs(
                &json!({"alg": "HS256", "crit": ["exp"]}),
                &payload,
                Some(SECRET.as_bytes()),
            ),
            401,
        ),
        (
            "unknown kid",
            "/jwks",
            sign(
                Algorithm::RS256,
                &rsa2(),
                Some("nope"),
                &claims("https://jwks.test"),
            ),
            401,
        ),
        (
            "kid with path characters",
            "/jwks",
            sign(
                Algorithm::RS256,
                &rsa2(),
                Some("../../../etc/passwd"),
                &claims("https://jwks.test"),
            ),
            401,
        ),
        (
            "kid of another key type",
            "/jwks",
            sign(
                Algorithm::RS256,
                &rsa1(),
                Some("e1"),
                &claims("https://jwks.test"),
            ),
            401,
        ),
        ("embedded jwk header", "/rs", jwk_embedded, 401),
        ("jku header", "/jwks", jku, 401),
        ("x5u header", "/jwks", x5u, 401),
        (
            "oversized token",
            "/hs",
            hs(&with(json!({"pad": "x".repeat(9000)}))),
            401,
        ),
        ("not a JWT", "/hs", "hello".to_string(), 401),
        (
            "missing scope",
            "/scoped",
            hs(&with(json!({"scope": "users:read"}))),
            403,
        ),
        (
            "scope prefix is not the scope",
            "/scoped",
            hs(&with(json!({"scope": "users:read users:writer"}))),
            403,
        ),
        (
            "wrong claim value",
            "/admin",
            hs(&with(json!({"role": "user", "org": {"id": "acme"}}))),
            403,
        ),
        (
            "claim missing",
            "/admin",
            hs(&with(json!({"org": {"id": "acme"}}))),
            403,
        ),
    ];
    assert!(cases.len() >= 30);
    for (name, path, token, want) in &cases {
        let (status, a) = status_of(&f.gw, path, token).await;
        assert_eq!(
            status,
            *want,
            "{name}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let challenge = a
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("{name}: no challenge"));
        assert!(
            challenge.starts_with("Bearer realm=\"portico\""),
            "{name}: {challenge}"
        );
        let expect = if *want == 403 {
            "error=\"insufficient_scope\""
        } else {
            "error=\"invalid"
        };
        assert!(challenge.contains(expect), "{name}: {challenge}");
        if *path == "/scoped" {
            // RFC 6750: the challenge and the problem name the scopes the route needs.
            assert!(
                challenge.contains("scope=\"users:read users:write\""),
                "{name}: {challenge}"
            );
            let detail = a.json()["detail"].as_str().unwrap_or("").to_string();
            assert!(
                detail.contains("users:read users:write"),
                "{name}: {detail}"
            );
        }
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
        let body = String::from_utf8_lossy(&a.body);
        let needle = token.get(..40).unwrap_or(token);
        assert!(
            !needle.is_empty() && !body.contains(needle),
            "{name}: body echoes the token"
        );
    }
    assert_eq!(
        f.backend.hits(),
        0,
        "no refused request reached the upstream"
    );
}

#[tokio::test]
async fn malformed_requests_are_refused() {
    let f = fixture().await;
    let valid = hs(&claims(HS_ISS));
    let req = |path: &str, headers: &[(&str, &str)]| {
        let mut r = Request::get(f.gw.url(path));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(Full::<Bytes>::default()).unwrap()
    };
    // No token: the bare challenge, no error code (RFC 6750 §3.1).
    let a = send(req("/hs", &[])).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.header("www-authenticate"),
        Some("Bearer realm=\"portico\"")
    );
    assert_eq!(
        a.json()["type"],
        "https://portico.dev/problems/unauthorized"
    );
    // Another scheme is not a bearer token.
    let a = send(req("/hs", &[("authorization", "Basic dXNlcjpwYXNz")])).await;
    assert_eq!(a.status, 401);
    // Empty bearer.
    let a = send(req("/hs", &[("authorization", "Bearer")])).await;
    assert_eq!(a.status, 401);
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .contains("invalid_request")
    );
    // Two Authorization headers, even when one is valid.
    let bearer = format!("Bearer {valid}");
    let a = send(req(
        "/hs",
        &[("authorization", &bearer), ("authorization", &bearer)],
    ))
    .await;
    assert_eq!(a.status, 401);
    // Token in the query string, with or without a header.
    let a = send(req(&format!("/hs?access_token={valid}"), &[])).await;
    assert_eq!(a.status, 401);
    let a = send(req(
        &format!("/hs?x=1&access_token={valid}"),
        &[("authorization", &bearer)],
    ))
    .await;
    assert_eq!(a.status, 401);
    assert!(!String::from_utf8_lossy(&a.body).contains(&valid[..40]));
    assert_eq!(f.backend.hits(), 0);
    // The scheme is case-insensitive.
    let a = send(req("/hs", &[("authorization", &format!("bEaReR {valid}"))])).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn accepted_algorithms_and_key_sources() {
    let f = fixture().await;
    let now = unix_now();
    let ed = EncodingKey::from_ed_pem(&key("ed25519.key")).unwrap();
    // jku / x5u are ignored, not refused: a token signed with a configured key still passes.
    let mut with_urls = Header::new(Algorithm::RS256);
    with_urls.kid = Some("r1".into());
    with_urls.jku = Some("http://127.0.0.1:9/evil.json".into());
    with_urls.x5u = Some("http://127.0.0.1:9/evil.pem".into());
    let with_urls =
        jsonwebtoken::encode(&with_urls, &claims("https://jwks.test"), &rsa1()).unwrap();
    let cases = [
        ("jku and x5u headers are ignored", "/jwks", with_urls),
        ("HS256", "/hs", hs(&claims(HS_ISS))),
        (
            "HS256, second audience as array",
            "/hs",
            hs(&json!({"iss": HS_ISS, "aud": ["x", "other-api"], "sub": "u", "exp": now + 60})),
        ),
        (
            "expired within leeway",
            "/hs",
            hs(&json!({"iss": HS_ISS, "aud": "portico", "exp": now - 10})),
        ),
        (
            "nbf within leeway",
            "/hs",
            hs(&json!({"iss": HS_ISS, "aud": "portico", "exp": now + 60, "nbf": now + 10})),
        ),
        (
            "RS256",
            "/rs",
            sign(Algorithm::RS256, &rsa1(), None, &claims("https://rs.test")),
        ),
        (
            "RS256 with a kid on a single-key provider",
            "/rs",
            sign(
                Algorithm::RS256,
                &rsa1(),
                Some("whatever"),
                &claims("https://rs.test"),
            ),
        ),
        (
            "ES256",
            "/es",
            sign(Algorithm::ES256, &ec(), None, &claims("https://es.test")),
        ),
        (
            "EdDSA",
            "/ed",
            sign(Algorithm::EdDSA, &ed, None, &claims("https://ed.test")),
        ),
        (
            "JWKS file, RSA key by kid",
            "/jwks",
            sign(
                Algorithm::RS256,
                &rsa1(),
                Some("r1"),
                &claims("https://jwks.test"),
            ),
        ),
        (
            "JWKS file, EC key by kid",
            "/jwks",
            sign(
                Algorithm::ES256,
                &ec(),
                Some("e1"),
                &claims("https://jwks.test"),
            ),
        ),
        ("any provider: hs", "/any", hs(&claims(HS_ISS))),
        (
            "any provider: rs",
            "/any",
            sign(Algorithm::RS256, &rsa1(), None, &claims("https://rs.test")),
        ),
        (
            "scopes from scope",
            "/scoped",
            hs(
                &json!({"iss": HS_ISS, "aud": "portico", "exp": now + 60, "scope": "a users:write users:read"}),
            ),
        ),
        (
            "scopes from scp",
            "/scoped",
            hs(
                &json!({"iss": HS_ISS, "aud": "portico", "exp": now + 60, "scp": ["users:read", "users:write"]}),
            ),
        ),
        (
            "claims: array membership and nested path",
            "/admin",
            hs(
                &json!({"iss": HS_ISS, "aud": "portico", "exp": now + 60, "role": ["user", "admin"], "org": {"id": "acme"}}),
            ),
        ),
    ];
    for (name, path, token) in &cases {
        let (status, a) = status_of(&f.gw, path, token).await;
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&a.body));
    }
    // A token of provider rs is not accepted on a route of provider hs only.
    let rs_token = sign(Algorithm::RS256, &rsa1(), None, &claims("https://rs.test"));
    let (status, _) = status_of(&f.gw, "/hs", &rs_token).await;
    assert_eq!(status, 401);
    // Same on the any-route when the issuer is neither provider's.
    let (status, _) = status_of(
        &f.gw,
        "/any",
        &sign(Algorithm::RS256, &rsa1(), None, &claims("https://es.test")),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn claims_are_forwarded_and_spoofed_copies_removed() {
    let f = fixture().await;
    let token = hs(&json!({
        "iss": HS_ISS, "aud": "portico", "exp": unix_now() + 60,
        "sub": "user-7", "org": {"id": "acme"}, "roles": ["reader", "writer"]
    }));
    let spoof = [
        ("x-user-id", "admin"),
        ("x-org-id", "evil"),
        ("x-roles", "root"),
    ];
    let a = get_with_token(&f.gw.url("/hs/me"), &token, &spoof).await;
    assert_eq!(a.status, 200);
    let h = &a.json()["headers"];
    assert_eq!(h["x-user-id"], json!(["user-7"]));
    assert_eq!(h["x-org-id"], json!(["acme"]));
    assert_eq!(h["x-roles"], json!(["reader,writer"]));
    assert!(
        h["authorization"].is_array(),
        "the token is kept unless strip_token"
    );
    // The same token again is served from the verified-token cache, with the same headers
    // (made once, at verification) and the spoofed copies still replaced.
    let again = get_with_token(&f.gw.url("/hs/me"), &token, &spoof).await;
    assert_eq!(again.status, 200);
    let h2 = &again.json()["headers"];
    for name in ["x-user-id", "x-org-id", "x-roles"] {
        assert_eq!(h2[name], h[name], "{name} from the cache");
    }

    // A token without the claim: the spoofed header is still gone.
    let bare = hs(&json!({"iss": HS_ISS, "aud": "portico", "exp": unix_now() + 60}));
    let a = get_with_token(&f.gw.url("/hs/me"), &bare, &spoof).await;
    assert_eq!(a.status, 200);
    let h = &a.json()["headers"];
    assert!(
        h.get("x-user-id").is_none() && h.get("x-org-id").is_none(),
        "{h}"
    );

    // On a public route, and on a route of another provider, too.
    let mut req = Request::get(f.gw.url("/public/x"));
    for (k, v) in spoof {
        req = req.header(k, v);
    }
    let a = send(req.body(Full::default()).unwrap()).await;
    assert_eq!(a.status, 200);
    let h = &a.json()["headers"];
    assert!(
        h.get("x-user-id").is_none() && h.get("x-org-id").is_none() && h.get("x-roles").is_none(),
        "{h}"
    );
    let rs = sign(Algorithm::RS256, &rsa1(), None, &claims("https://rs.test"));
    let a = get_with_token(&f.gw.url("/rs"), &rs, &spoof).await;
    assert!(a.json()["headers"].get("x-user-id").is_none());
}

#[tokio::test]
async fn cookie_tokens_and_strip_token() {
    let f = fixture().await;
    let token = hs(&claims("https://web.test"));
    let a = send(
        Request::get(f.gw.url("/web"))
            .header("cookie", format!("theme=dark; session={token}; lang=en"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200);
    let h = &a.json()["headers"];
    assert_eq!(
        h["cookie"],
        json!(["theme=dark; lang=en"]),
        "the token cookie is stripped"
    );
    let a = get_with_token(&f.gw.url("/web"), &token, &[]).await;
    assert_eq!(a.status, 200);
    assert!(
        a.json()["headers"].get("authorization").is_none(),
        "strip_token drops Authorization"
    );
    // The cookie is only read for providers that name it.
    let a = send(
        Request::get(f.gw.url("/hs"))
            .header("cookie", format!("session={}", hs(&claims(HS_ISS))))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn jwks_url_rotation_refetches_once_and_cooldown_holds() {
    let f = fixture().await;
    let iss = "https://remote.test";
    // First use fetches the set.
    let t1 = sign(Algorithm::RS256, &rsa1(), Some("k1"), &claims(iss));
    assert_eq!(status_of(&f.gw, "/remote", &t1).await.0, 200);
    assert_eq!(f.jwks.backend.hits(), 1);
    assert_eq!(status_of(&f.gw, "/remote", &t1).await.0, 200);
    assert_eq!(f.jwks.backend.hits(), 1, "a known key needs no fetch");

    // The issuer rotates: k2 is published, and a token signed with it arrives.
    f.jwks.set(
        200,
        json!({"keys": [
            public_jwk(&rsa1(), Algorithm::RS256, "k1"),
            public_jwk(&rsa2(), Algorithm::RS256, "k2"),
        ]}),
    );
    let t2 = sign(Algorithm::RS256, &rsa2(), Some("k2"), &claims(iss));
    assert_eq!(status_of(&f.gw, "/remote", &t2).await.0, 200);
    assert_eq!(
        f.jwks.backend.hits(),
        2,
        "an unknown kid triggers one refetch"
    );

    // A flood of made-up kids within the cooldown costs no fetch at all.
    let gw = &f.gw;
    let flood = (0..40).map(|i| {
        let t = sign(
            Algorithm::RS256,
            &rsa2(),
            Some(&format!("made-up-{i}")),
            &claims(iss),
        );
        async move { status_of(gw, "/remote", &t).await.0 }
    });
    let statuses = futures_util::future::join_all(flood).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(
        f.jwks.backend.hits(),
        2,
        "the cooldown holds under a flood of unknown kids"
    );
    assert_eq!(status_of(&f.gw, "/remote", &t1).await.0, 200);
    assert_eq!(status_of(&f.gw, "/remote", &t2).await.0, 200);

    // The fetched set survives a reload that leaves the provider unchanged.
    let path = f.gw.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("timeout = \"5s\"", "timeout = \"6s\"")).unwrap();
    f.gw.running().gateway.reload().unwrap();
    assert_eq!(status_of(&f.gw, "/remote", &t2).await.0, 200);
    assert_eq!(f.jwks.backend.hits(), 2, "no refetch after the reload");
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_last_good_set() {
    let f = fixture_with(|c| c.replace("jwks_cooldown = \"1h\"", "jwks_cooldown = \"0s\"")).await;
    let iss = "https://remote.test";
    let t1 = sign(Algorithm::RS256, &rsa1(), Some("k1"), &claims(iss));
    assert_eq!(status_of(&f.gw, "/remote", &t1).await.0, 200);
    f.jwks.set(500, json!({"error": "down"}));
    let t2 = sign(Algorithm::RS256, &rsa2(), Some("k2"), &claims(iss));
    assert_eq!(status_of(&f.gw, "/remote", &t2).await.0, 401);
    assert_eq!(f.jwks.backend.hits(), 2);
    f.jwks.set(200, json!({"keys": []}));
    assert_eq!(
        status_of(&f.gw, "/remote", &t2).await.0,
        401,
        "an empty set is a failure too"
    );
    assert_eq!(
        status_of(&f.gw, "/remote", &t1).await.0,
        200,
        "the last good set stays"
    );
    let rt = f.gw.running().gateway.runtime();
    let remote = rt.auth.providers["remote"].remote_jwks().unwrap();
    assert_eq!(
        remote
            .stats
            .fetched
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        remote
            .stats
            .failed
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let exposition = rt.metrics.encode();
    for line in [
        "portico_jwks_fetches_total{provider=\"remote\",result=\"ok\"} 1",
        "portico_jwks_fetches_total{provider=\"remote\",result=\"error\"} 2",
    ] {
        assert!(
            exposition.contains(line),
            "missing {line} in:\n{exposition}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_jwks_url_fails_closed_without_hanging() {
    let dead = dead_addr().await;
    let f = fixture_with(|c| {
        let start = c.find("jwks_url = \"").unwrap() + "jwks_url = \"".len();
        let end = start + c[start..].find('"').unwrap();
        format!("{}http://{dead}/jwks{}", &c[..start], &c[end..])
    })
    .await;
    let t1 = sign(
        Algorithm::RS256,
        &rsa1(),
        Some("k1"),
        &claims("https://remote.test"),
    );
    let a = get_with_token(&f.gw.url("/remote"), &t1, &[]).await;
    assert_eq!(a.status, 401);
    // Routes that do not need the remote set are unaffected.
    assert_eq!(status_of(&f.gw, "/hs", &hs(&claims(HS_ISS))).await.0, 200);
}

#[tokio::test]
async fn bad_auth_config_is_reported_with_positions() {
    let text = r#"[upstreams.a]
endpoints = ["127.0.0.1:9"]

[auth.providers.p]
issuer = "https://x"
audiences = []
algorithms = ["none", "RS256"]
secret_file = "short.secret"

[auth.providers.q]
issuer = "https://q"
audiences = ["portico"]
algorithms = ["HS256"]
secret_file = "short.secret"
public_key_file = "k.pem"

[[routes]]
id = "r"
match = { path_prefix = "/" }
upstream = "a"
auth = { provider = "nope", scopes = ["two words"] }
"#;
    let secret = [("short.secret", "too-short")];
    assert_check_reports(
        text,
        &secret,
        &[
            "gateway.toml:6:13: auth.providers.p.audiences: needs at least one audience",
            "gateway.toml:7:15: auth.providers.p.algorithms[0]: unsigned tokens (`none`) are never accepted",
            "gateway.toml:8:15: auth.providers.p.secret_file: the secret is 9 bytes; HMAC secrets need at least 32",
            "gateway.toml:15:19: auth.providers.q.public_key_file: give one key source, not several (secret_file, public_key_file)",
            "gateway.toml:21:21: routes[0].auth: unknown auth provider `nope`",
            "gateway.toml:21:39: routes[0].auth.scopes[0]: a scope is one non-empty word",
        ],
    );
}

#[tokio::test]
async fn token_cli_mints_tokens_the_gateway_accepts() {
    let backend = Backend::echo("app").await;
    let rsa_keys = format!(
        "public_key_file = \"{}\"\nprivate_key_file = \"{}\"",
        jwt_fixture("rsa1.pub").display(),
        jwt_fixture("rsa1.key").display(),
    );
    let toml = support::config()
        .upstream("echo", &[backend.addr])
        .provider(
            "dev",
            "https://auth.portico.local",
            &["HS256"],
            "secret_file = \"dev.secret\"\nforward_claims = { sub = \"x-user-id\", tenant = \"x-tenant\" }",
        )
        .provider("rsa", "https://rsa.test", &["RS256"], &rsa_keys)
        .route_with(
            "me",
            "/me",
            "echo",
            r#"auth = { provider = "dev", scopes = ["users:read"], claims = { admin = true } }"#,
        )
        .route_with("rsa", "/rsa", "echo", r#"auth = { provider = "rsa" }"#)
        .build();
    let gw = TestGateway::start_with_files(&toml, &[("dev.secret", SECRET)]).await;
    let cfg = gw.config_path();
    let cfg = cfg.to_str().unwrap();
    let (code, out, err) = portico_cli(&[
        "token",
        "--config",
        cfg,
        "--provider",
        "dev",
        "--sub",
        "ada",
        "--scope",
        "users:read orders:read",
        "--ttl",
        "10m",
        "--claim",
        "admin=true",
        "--claim",
        "tenant=acme",
    ]);
    assert_eq!(code, 0, "{err}");
    let token = out.trim();
    let a = get_with_token(&gw.url("/me"), token, &[]).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["headers"]["x-user-id"], json!(["ada"]));
    assert_eq!(a.json()["headers"]["x-tenant"], json!(["acme"]));
    let payload: Value =
        serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let ttl = payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap();
    assert_eq!(ttl, 600);

    let (code, out, err) = portico_cli(&[
        "token",
        "--config",
        cfg,
        "--provider",
        "rsa",
        "--sub",
        "bob",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        get_with_token(&gw.url("/rsa"), out.trim(), &[])
            .await
            .status,
        200
    );

    let (code, _, err) =
        portico_cli(&["token", "--config", cfg, "--provider", "nope", "--sub", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown provider `nope`"), "{err}");
}

#[test]
fn shipped_config_demo_secret_token_is_accepted_by_the_dev_provider() {
    // `portico token` against the shipped gateway.toml without PORTICO_DEV_SECRET signs with the
    // documented demo secret.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args([
            "token",
            "--config",
            shipped,
            "--provider",
            "dev",
            "--sub",
            "42",
            "--scope",
            "users:read",
        ])
        .env_remove("PORTICO_DEV_SECRET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.set_audience(&["portico"]);
    v.set_issuer(&["https://auth.portico.local"]);
    let data = jsonwebtoken::decode::<Value>(
        token.trim(),
        &jsonwebtoken::DecodingKey::from_secret(portico::filter::auth::DEMO_SECRET.as_bytes()),
        &v,
    )
    .unwrap();
    assert_eq!(data.claims["sub"], "42");
    assert_eq!(data.claims["scope"], "users:read");
}

#[tokio::test]
async fn background_refresh_never_blocks_and_unknown_kids_join_the_fetch_in_flight() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let backend = Backend::echo("app").await;
    let doc = Arc::new(Mutex::new(
        json!({"keys": [public_jwk(&rsa1(), Algorithm::RS256, "k1")]}).to_string(),
    ));
    let release = Arc::new(tokio::sync::Notify::new());
    let fetches = Arc::new(AtomicUsize::new(0));
    let (d, r, n) = (doc.clone(), release.clone(), fetches.clone());
    let jwks = Backend::start(move |_req| {
        let (d, r, n) = (d.clone(), r.clone(), n.clone());
        async move {
            // The second fetch (the background refresh) hangs until the test releases it.
            if n.fetch_add(1, Ordering::SeqCst) == 1 {
                r.notified().await;
            }
            let body = d.lock().unwrap().clone();
            let mut resp = json_response(200, json!(null));
            *resp.body_mut() = full(body);
            resp
        }
    })
    .await;
    let toml = support::config()
        .upstream("echo", &[backend.addr])
        .provider(
            "remote",
            "https://remote.test",
            &["RS256"],
            &format!(
                "jwks_url = \"http://{}/jwks\"\njwks_refresh = \"0s\"\njwks_cooldown = \"1h\"\njwks_timeout = \"30s\"\ncache_size = 0",
                jwks.addr
            ),
        )
        .route_with("remote", "/", "echo", r#"auth = { provider = "remote" }"#)
        .build();
    let gw = TestGateway::start(&toml).await;
    let iss = "https://remote.test";
    let t1 = sign(Algorithm::RS256, &rsa1(), Some("k1"), &claims(iss));
    assert_eq!(status_of(&gw, "/", &t1).await.0, 200, "first use fetches");
    // The set is now stale (refresh 0s): this request starts a background refresh, which hangs,
    // and is answered from the current set without waiting for it.
    let quick =
        tokio::time::timeout(std::time::Duration::from_secs(10), status_of(&gw, "/", &t1)).await;
    assert_eq!(
        quick
            .expect("a request with a known key never waits for a fetch")
            .0,
        200
    );
    // A token with a new kid joins the fetch in flight instead of starting another.
    *doc.lock().unwrap() = json!({"keys": [
        public_jwk(&rsa1(), Algorithm::RS256, "k1"),
        public_jwk(&rsa2(), Algorithm::RS256, "k2"),
    ]})
    .to_string();
    let t2 = sign(Algorithm::RS256, &rsa2(), Some("k2"), &claims(iss));
    let url = gw.url("/");
    let waiting = tokio::spawn(async move { get_with_token(&url, &t2, &[]).await.status });
    // Release the hung fetch once it has started and the new-kid request waits on it.
    let rt = gw.running().gateway.runtime();
    let stats = &rt.auth.providers["remote"].remote_jwks().unwrap().stats;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fetches.load(Ordering::SeqCst) < 2 || stats.waiting.load(Ordering::Relaxed) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never waited on the fetch"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    release.notify_one();
    assert_eq!(waiting.await.unwrap(), 200);
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "one fetch served both");
    assert_eq!(stats.waiting.load(Ordering::Relaxed), 0);
    assert_eq!(stats.fetched.load(Ordering::Relaxed), 2);
}
