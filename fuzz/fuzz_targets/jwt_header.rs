//! JWT parsing and verification of hostile tokens: any token is refused with an error (never a
//! panic), and nothing but a token signed with the secret verifies.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use portico::filter::auth::cache::TokenHash;
use portico::filter::auth::provider::Provider;

struct World {
    _dir: tempfile::TempDir,
    provider: Arc<Provider>,
    rt: tokio::runtime::Runtime,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hs.secret"),
            "0123456789abcdef0123456789abcdef-fuzz-secret",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("gateway.toml"),
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = ""
[auth.providers.hs]
issuer = "https://fuzz.test"
audiences = ["portico"]
algorithms = ["HS256", "HS384"]
secret_file = "hs.secret"
"#,
        )
        .unwrap();
        let rt = portico::runtime::load(&dir.path().join("gateway.toml"), None).unwrap();
        let provider = rt.auth.providers.values().next().unwrap().clone();
        World {
            _dir: dir,
            provider,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let w = world();
    let result = w
        .rt
        .block_on(w.provider.verify(token, TokenHash::of(token), 1_700_000_000));
    // Random bytes never carry a valid HMAC over the secret.
    assert!(result.is_err(), "a fuzzed token verified: {token:?}");
});
