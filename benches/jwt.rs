//! JWT verification cost per token: HS256, RS256 and ES256, uncached (full signature check and
//! claim validation) and cached (digest of the token + cache lookup, the per-request hot path).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use portico::filter::auth::cache::TokenHash;
use portico::filter::auth::keys::{KeySet, public_key_from_pem};
use portico::filter::auth::provider::{KeyConfig, Provider, ProviderSettings, Secret, unix_now};

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn provider(alg: Algorithm, keys: KeySet, cache_size: usize) -> Provider {
    let settings = ProviderSettings {
        issuer: "https://bench".into(),
        audiences: vec!["portico".into()],
        algorithms: vec![alg],
        key: KeyConfig::Secret(Secret(vec![])),
        private_key: None,
        leeway: Duration::from_secs(30),
        cookie: None,
        forward_claims: vec![],
        strip_token: false,
        cache_size,
    };
    Provider::new(Arc::from("bench"), settings, Some(keys), None)
}

fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let claims = serde_json::json!({
        "iss": "https://bench", "aud": "portico", "sub": "user-1234567",
        "exp": unix_now() + 3600, "iat": unix_now(), "scope": "users:read orders:read"
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn bench(c: &mut Criterion) {
    let cases = [
        (
            "HS256",
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET),
            KeySet::single(DecodingKey::from_secret(SECRET)),
        ),
        (
            "RS256",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&fixture("rsa1.key")).unwrap(),
            KeySet::single(public_key_from_pem(&fixture("rsa1.pub")).unwrap()),
        ),
        (
            "ES256",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&fixture("ec256.key")).unwrap(),
            KeySet::single(public_key_from_pem(&fixture("ec256.pub")).unwrap()),
        ),
    ];
    let mut group = c.benchmark_group("jwt_verify");
    for (name, alg, enc, keys) in cases {
        let token = token(alg, &enc);
        let uncached = provider(alg, keys, 0);
        verify(&mut group, format!("{name}/uncached"), &uncached, &token);
        let keys = match name {
            "HS256" => KeySet::single(DecodingKey::from_secret(SECRET)),
            "RS256" => KeySet::single(public_key_from_pem(&fixture("rsa1.pub")).unwrap()),
            _ => KeySet::single(public_key_from_pem(&fixture("ec256.pub")).unwrap()),
        };
        let cached = provider(alg, keys, 10_000);
        verify(&mut group, format!("{name}/cached"), &cached, &token);
    }
    group.finish();
}

/// Times verifying `token` with `provider`: signature and claims when uncached, the token's
/// digest and a lookup when cached.
fn verify(group: &mut BenchmarkGroup<'_, WallTime>, id: String, provider: &Provider, token: &str) {
    group.bench_function(id, |b| {
        b.iter(|| {
            let t = black_box(token);
            let claims = provider
                .verify(t, TokenHash::of(t.as_bytes()), unix_now())
                .now_or_never()
                .expect("static keys and cache hits never wait")
                .unwrap();
            black_box(claims);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
