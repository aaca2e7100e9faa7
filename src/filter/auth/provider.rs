//! One `[auth.providers.NAME]`: compiled settings, its keys, and token verification.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::AuthError;
use super::cache::{Accepted, TokenCache, TokenHash};
use super::claims::{ClaimPath, claim_text, granted_scopes};
use super::jwks::{JwksSettings, RemoteJwks};
use super::keys::{KeyEntry, KeySet};

/// Key material kept only to tell whether a provider changed across a reload. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[redacted, {} bytes]", self.0.len())
    }
}

/// Where a provider's verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyConfig {
    /// HMAC secret (`secret_env`, `secret_file`).
    Secret(Secret),
    /// `secret_env` names a variable that is not set: every token is refused.
    MissingSecret {
        /// The variable.
        env: String,
    },
    /// PEM public key file contents.
    PublicKeyPem(Secret),
    /// JWKS file contents.
    JwksDocument(Secret),
    /// Remote JWKS.
    JwksUrl(JwksSettings),
}

/// Everything that defines a provider; equal settings across a reload keep the provider (its
/// token cache and fetched JWKS) as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Verification keys.
    pub key: KeyConfig,
    /// Signing key for `portico token`.
    pub private_key: Option<Secret>,
    /// Clock skew tolerated on exp/nbf/iat.
    pub leeway: Duration,
    /// Cookie that may carry the token.
    pub cookie: Option<String>,
    /// Claim path → header, as written.
    pub forward_claims: Vec<(String, HeaderName)>,
    /// Remove the token before forwarding.
    pub strip_token: bool,
    /// Verified-token cache size.
    pub cache_size: usize,
}

enum Keys {
    Static(Arc<KeySet>),
    Remote(Arc<RemoteJwks>),
    Missing,
}

/// A compiled provider.
pub struct Provider {
    /// Name from the config.
    pub name: Arc<str>,
    /// Settings it was built from.
    pub settings: ProviderSettings,
    keys: Keys,
    validations: Vec<(Algorithm, Validation)>,
    cache: TokenCache,
    /// Claims copied to upstream request headers.
    pub forward: Box<[(ClaimPath, HeaderName)]>,
    signer: Option<(EncodingKey, Algorithm)>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What `portico token` puts in a token.
#[derive(Debug, Clone, Default)]
pub struct MintOptions {
    /// `sub`.
    pub sub: String,
    /// `scope` (space-separated).
    pub scope: Option<String>,
    /// Lifetime (`exp` = now + ttl).
    pub ttl: Duration,
    /// Extra claims.
    pub claims: Vec<(String, Value)>,
    /// `kid` header.
    pub kid: Option<String>,
}

/// Seconds since the Unix epoch (the clock JWT time claims use).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Provider {
    /// Builds a provider from checked settings. `keys` must hold the parsed static keys for
    /// `Secret`/`PublicKeyPem`/`JwksDocument` sources.
    pub fn new(
        name: Arc<str>,
        settings: ProviderSettings,
        static_keys: Option<KeySet>,
        signer: Option<(EncodingKey, Algorithm)>,
    ) -> Provider {
        let keys = match (&settings.key, static_keys) {
            (KeyConfig::JwksUrl(s), _) => {
                Keys::Remote(Arc::new(RemoteJwks::new(name.clone(), s.clone())))
            }
            (KeyConfig::MissingSecret { .. }, _) | (_, None) => Keys::Missing,
            (_, Some(set)) => Keys::Static(Arc::new(set)),
        };
        let validations = settings
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.leeway = settings.leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                v.validate_aud = true;
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                v.set_issuer(&[settings.issuer.as_str()]);
                v.set_audience(&settings.audiences);
                (alg, v)
            })
            .collect();
        let forward = settings
            .forward_claims
            .iter()
            .filter_map(|(path, header)| Some((ClaimPath::parse(path).ok()?, header.clone())))
            .collect();
        Provider {
            cache: TokenCache::new(settings.cache_size),
            name,
            settings,
            keys,
            validations,
            forward,
            signer,
        }
    }

    /// The remote key set, for providers with `jwks_url`.
    pub fn remote_jwks(&self) -> Option<&Arc<RemoteJwks>> {
        match &self.keys {
            Keys::Remote(r) => Some(r),
            Keys::Static(_) | Keys::Missing => None,
        }
    }

    /// A token verified earlier and still cached.
    pub fn cached(&self, hash: TokenHash, now: u64) -> Option<Accepted> {
        self.cache.get(hash, now)
    }

    /// Verifies a token (cache first): its claims, forwarded headers and scopes.
    pub async fn verify(
        &self,
        token: &str,
        hash: TokenHash,
        now: u64,
    ) -> Result<Accepted, AuthError> {
        match self.cache.get(hash, now) {
            Some(hit) => Ok(hit),
            None => self.verify_uncached(token, hash, now).await,
        }
    }

    /// Verifies a token its caller already looked for in the cache (and did not find), and
    /// caches it.
    pub async fn verify_uncached(
        &self,
        token: &str,
        hash: TokenHash,
        now: u64,
    ) -> Result<Accepted, AuthError> {
        let malformed = AuthError::InvalidToken("the token is malformed");
        if token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| malformed)?;
        if header.crit.is_some() {
            return Err(AuthError::InvalidToken(
                "the token has critical header parameters",
            ));
        }
        let validation = self
            .validations
            .iter()
            .find(|(a, _)| *a == header.alg)
            .map(|(_, v)| v)
            .ok_or(AuthError::InvalidToken(
                "the token's algorithm is not accepted",
            ))?;
        if let Some(kid) = &header.kid {
            if kid.is_empty() || kid.len() > 256 || !kid.bytes().all(|b| (0x21..0x7f).contains(&b))
            {
                return Err(AuthError::InvalidToken("the token's key id is malformed"));
            }
        }
        let key = self.key(header.kid.as_deref(), header.alg).await?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation)
            .map_err(|e| AuthError::InvalidToken(describe(e.kind())))?;
        let claims = data.claims;
        let leeway = self.settings.leeway.as_secs();
        match claims.get("iat") {
            None => {}
            Some(v) => match seconds(v) {
                None => {
                    return Err(AuthError::InvalidToken("the token's iat is not a number"));
                }
                Some(iat) if iat > now.saturating_add(leeway) => {
                    return Err(AuthError::InvalidToken(
                        "the token was issued in the future",
                    ));
                }
                Some(_) => {}
            },
        }
        let exp = claims.get("exp").and_then(seconds).unwrap_or(0);
        let accepted = Accepted {
            forwarded: self.forwarded(&claims),
            scopes: granted_scopes(&claims),
            claims: Arc::new(claims),
        };
        self.cache.insert(hash, accepted.clone(), exp, now);
        Ok(accepted)
    }

    /// The `forward_claims` headers of verified claims: a claim without a text form, or
    /// whose text is not a valid header value, is left out.
    fn forwarded(&self, claims: &Map<String, Value>) -> Arc<[(HeaderName, HeaderValue)]> {
        self.forward
            .iter()
            .filter_map(|(path, header)| {
                let text = claim_text(path.lookup(claims)?)?;
                Some((header.clone(), HeaderValue::from_str(&text).ok()?))
            })
            .collect()
    }

    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<KeyEntry>, AuthError> {
        let unknown = AuthError::InvalidToken("the token's signing key is unknown");
        match &self.keys {
            Keys::Static(set) => set.select(kid, alg).ok_or(unknown),
            Keys::Missing => Err(AuthError::InvalidToken(
                "the token cannot be verified (provider has no key)",
            )),
            Keys::Remote(remote) => {
                if let Some(k) = remote.current().select(kid, alg) {
                    return Ok(k);
                }
                let set = remote.refetch_for_unknown_kid().await.ok_or(unknown)?;
                set.select(kid, alg).ok_or(AuthError::InvalidToken(
                    "the token's signing key is unknown",
                ))
            }
        }
    }

    /// Whether this provider can mint tokens (it has a secret or a private key).
    pub fn can_mint(&self) -> bool {
        self.signer.is_some()
    }

    /// Mints a signed token for this provider (dev tool, load tests).
    pub fn mint(&self, o: &MintOptions) -> Result<String, String> {
        let (key, alg) = self.signer.as_ref().ok_or_else(|| {
            format!(
                "provider `{}` has no secret or private_key_file to sign with",
                self.name
            )
        })?;
        let now = unix_now();
        let mut claims = Map::new();
        claims.insert("iss".into(), self.settings.issuer.clone().into());
        if let Some(aud) = self.settings.audiences.first() {
            claims.insert("aud".into(), aud.clone().into());
        }
        claims.insert("sub".into(), o.sub.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + o.ttl.as_secs().max(1)).into());
        if let Some(scope) = &o.scope {
            claims.insert("scope".into(), scope.clone().into());
        }
        for (k, v) in &o.claims {
            claims.insert(k.clone(), v.clone());
        }
        let mut header = Header::new(*alg);
        header.kid = o.kid.clone();
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| format!("cannot sign: {e}"))
    }
}

/// A time claim as whole seconds, if it is a non-negative number.
fn seconds(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f as u64)
    })
}

/// A short, fixed description of why a token failed; never echoes the token.
fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
        ErrorKind::InvalidAudience => "the token's audience is not accepted",
        ErrorKind::InvalidSignature => "the token's signature is invalid",
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted",
        ErrorKind::InvalidClaimFormat(_) => "the token's exp or nbf is not a number",
        ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
            "exp" => "the token has no valid exp",
            "iss" => "the token has no iss",
            "aud" => "the token has no aud",
            _ => "the token lacks a required claim",
        },
        _ => "the token is malformed",
    }
}

/// The signing key for `portico token`: the HMAC secret or a PEM private key of the family of
/// one of the allowed algorithms (the first such algorithm signs).
pub fn signer(
    algorithms: &[Algorithm],
    secret: Option<&[u8]>,
    private_pem: Option<&[u8]>,
) -> Result<Option<(EncodingKey, Algorithm)>, String> {
    let first_of =
        |family: AlgorithmFamily| algorithms.iter().copied().find(|a| a.family() == family);
    if let Some(secret) = secret {
        return Ok(first_of(AlgorithmFamily::Hmac).map(|a| (EncodingKey::from_secret(secret), a)));
    }
    let Some(pem) = private_pem else {
        return Ok(None);
    };
    let key = EncodingKey::from_rsa_pem(pem)
        .or_else(|_| EncodingKey::from_ec_pem(pem))
        .or_else(|_| EncodingKey::from_ed_pem(pem))
        .map_err(|_| "not a PEM private key (RSA, EC or Ed25519)".to_string())?;
    let alg = first_of(key.family())
        .ok_or_else(|| "the private key fits none of the provider's algorithms".to_string())?;
    Ok(Some((key, alg)))
}
