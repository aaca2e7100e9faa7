//! Key files referenced by auth providers are config sources: rotating a JWKS file on disk is
//! picked up by the file watcher without a restart, and a broken key file keeps the old keys.

use crate::support;

use std::time::Duration;

use http::Request;
use http_body_util::Full;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::*;

fn rsa(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read(jwt_fixture(name)).unwrap()).unwrap()
}

fn jwks(keys: &[(&EncodingKey, &str)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(k, kid)| {
            let mut jwk = Jwk::from_encoding_key(k, Algorithm::RS256).unwrap();
            jwk.common.key_id = Some(kid.to_string());
            serde_json::to_value(jwk).unwrap()
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

fn token(key: &EncodingKey, kid: &str) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    let claims =
        json!({"iss": "https://keys.test", "aud": "portico", "sub": "u1", "exp": unix_now() + 600});
    jsonwebtoken::encode(&h, &claims, key).unwrap()
}

async fn status_with(gw: &TestGateway, token: &str) -> u16 {
    let req = Request::get(gw.url("/p"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    send(req).await.status.as_u16()
}

#[tokio::test]
async fn rotated_jwks_file_is_picked_up_by_the_watcher() {
    let backend = Backend::echo("app").await;
    let (old, new) = (rsa("rsa1.key"), rsa("rsa2.key"));
    let cfg = support::config()
        .admin_unset()
        .upstream("app", &[backend.addr])
        .provider(
            "keys",
            "https://keys.test",
            &["RS256"],
            "jwks_file = \"keys/jwks.json\"",
        )
        .route_with("p", "/p", "app", r#"auth = { provider = "keys" }"#)
        .build();
    let gw =
        TestGateway::start_with_files(&cfg, &[("keys/jwks.json", &jwks(&[(&old, "old")]))]).await;
    let jwks_path = gw.dir.path().join("keys/jwks.json");
    let rt = gw.running().gateway.runtime();
    assert!(
        rt.sources.contains(&jwks_path),
        "key file is a config source: {:?}",
        rt.sources
    );
    let first_version = rt.version.clone();

    assert_eq!(status_with(&gw, &token(&old, "old")).await, 200);
    assert_eq!(status_with(&gw, &token(&new, "new")).await, 401);

    // Rotate: the new key joins the set. The watcher reloads; no restart, no admin call.
    let mut reloads = gw.running().gateway.reload_status();
    save_atomically(&jwks_path, &jwks(&[(&old, "old"), (&new, "new")]));
    next_reload(&mut reloads, Duration::from_secs(5)).await;
    assert_ne!(
        gw.running().gateway.runtime().version,
        first_version,
        "key content changes the version"
    );
    assert_eq!(status_with(&gw, &token(&new, "new")).await, 200);

    // A broken key file fails the reload and the keys in use stay.
    save_atomically(&jwks_path, "{ not json");
    next_reload(&mut reloads, Duration::from_secs(5)).await;
    assert_eq!(status_with(&gw, &token(&new, "new")).await, 200);
    assert_eq!(status_with(&gw, &token(&old, "old")).await, 200);
}
