//! `scope = "cluster"`: a policy's buckets in the `[cluster]` store, so N instances share one
//! budget. Each decision is one round trip (no local "surely allowed" fast path: it could not
//! know what the other instances admitted). While the store fails, `on_store_error` decides:
//! a local limiter at 1/`instances` of the rate and burst (`local`), admit (`allow`) or refuse
//! with 503 (`deny`).

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::limiter::Outcome;
use super::{KeyInput, MISSING_KEY, OnMissing, Policy, RateLimitHeaders, Scope, missing_key};
use crate::cluster::Cluster;
use crate::cluster::gcra::Decision;
use crate::error::GatewayError;

/// What a cluster-scoped policy decides while the store does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// A local limiter with this instance's share of the rate and burst.
    Local,
    /// Admit every request.
    Allow,
    /// Refuse every request (503 with Retry-After).
    Deny,
}

/// The store side of a cluster-scoped policy.
#[derive(Debug)]
pub struct ClusterScope {
    store: Arc<Cluster>,
    on_error: OnStoreError,
    /// `{key_prefix}rl:{policy}:`; the hashed key follows.
    prefix: Box<[u8]>,
    interval: Duration,
}

impl ClusterScope {
    /// The store this policy uses.
    pub fn store(&self) -> &Arc<Cluster> {
        &self.store
    }
}

/// Hex digits of the first 16 bytes of the key's SHA-256: stable across instances and builds,
/// bounded in length, and no user id or address stored in Redis in clear.
const DIGEST_BYTES: usize = 16;

impl Policy {
    /// A cluster-scoped policy on `store`; its local limiter is the fallback share.
    pub fn clustered(
        name: Arc<str>,
        settings: super::PolicySettings,
        store: Arc<Cluster>,
    ) -> Policy {
        let Scope::Cluster(on_error) = settings.scope else {
            return Policy::new(name, settings);
        };
        let share = store.instances();
        let prefix = format!("{}rl:{name}:", store.settings.key_prefix).into_bytes();
        let interval =
            (settings.rate.per / settings.rate.count.max(1)).max(Duration::from_micros(1));
        let mut policy = Policy::with_share(name, settings, share);
        policy.cluster = Some(ClusterScope {
            store,
            on_error,
            prefix: prefix.into_boxed_slice(),
            interval,
        });
        policy
    }

    /// The store of a cluster-scoped policy (`None` for a local one).
    pub fn cluster(&self) -> Option<&ClusterScope> {
        self.cluster.as_ref()
    }

    /// [`Policy::check`] for a cluster-scoped policy: one store round trip, or the
    /// `on_store_error` decision when the store fails or is backed off.
    pub async fn check_cluster(
        &self,
        scope: &ClusterScope,
        input: &KeyInput<'_>,
    ) -> Result<Option<RateLimitHeaders>, GatewayError> {
        let Some(key) = self.store_key(scope, input)? else {
            return Ok(None);
        };
        let burst = self.settings.burst;
        match scope.store.gcra(&key, scope.interval, burst).await {
            Some(Decision::Admitted { remaining, full_in }) => {
                self.answer(Outcome::Admitted { remaining, full_in })
            }
            Some(Decision::Limited { retry_after }) => {
                self.answer(Outcome::Limited { retry_after })
            }
            None => self.store_failed(scope, input),
        }
    }

    fn store_failed(
        &self,
        scope: &ClusterScope,
        input: &KeyInput<'_>,
    ) -> Result<Option<RateLimitHeaders>, GatewayError> {
        match scope.on_error {
            OnStoreError::Local => match self.local_key(input)? {
                Some(key) => self.check_local(key),
                None => Ok(None),
            },
            OnStoreError::Allow => Ok(None),
            OnStoreError::Deny => Err(GatewayError::RateLimitUnavailable {
                policy: self.name.clone(),
                retry_after_secs: super::secs_ceil(scope.store.settings.backoff).max(1),
            }),
        }
    }

    /// `prefix + hex(sha256(key parts))`; `Ok(None)` when the request is not limited.
    fn store_key(
        &self,
        scope: &ClusterScope,
        input: &KeyInput<'_>,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        let mut h = Sha256::new();
        if self.key_parts(input, |b| h.update(b)).is_none() {
            match self.settings.on_missing {
                OnMissing::Shared => h = Sha256::new_with_prefix(MISSING_KEY),
                OnMissing::Allow => return Ok(None),
                OnMissing::Deny => return Err(missing_key()),
            }
        }
        let digest = h.finalize();
        let mut key = Vec::with_capacity(scope.prefix.len() + 2 * DIGEST_BYTES);
        key.extend_from_slice(&scope.prefix);
        for b in &digest[..DIGEST_BYTES] {
            key.push(HEX[usize::from(b >> 4)]);
            key.push(HEX[usize::from(b & 0xf)]);
        }
        Ok(Some(key))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::*;
    use crate::cluster::ClusterSettings;
    use crate::config::units::Rate;
    use crate::filter::rate_limit::{HeaderMode, KeyPart, PolicySettings};

    fn store(instances: Option<u32>) -> Arc<Cluster> {
        let settings = ClusterSettings {
            url: "redis://127.0.0.1:1".into(),
            password: None,
            timeout: Duration::from_millis(20),
            instances,
            key_prefix: "pfx:".into(),
            ca_file: None,
            ca_pem: None,
            error_threshold: 3,
            backoff: Duration::from_secs(2),
        };
        let client = redis::Client::open(settings.url.as_str()).unwrap();
        Arc::new(Cluster::new(
            settings,
            client,
            &crate::metrics::Metrics::new(),
        ))
    }

    fn policy(store: &Arc<Cluster>, on_missing: OnMissing) -> Policy {
        let settings = PolicySettings {
            rate: Rate {
                count: 10,
                per: Duration::from_secs(1),
            },
            burst: 6,
            key: vec![KeyPart::Header(HeaderName::from_static("x-user"))],
            on_missing,
            max_keys: 10,
            headers: HeaderMode::OnLimit,
            scope: Scope::Cluster(OnStoreError::Local),
        };
        Policy::clustered("per_user".into(), settings, store.clone())
    }

    fn key(p: &Policy, user: Option<&str>) -> Result<Option<Vec<u8>>, GatewayError> {
        let mut headers = HeaderMap::new();
        if let Some(u) = user {
            headers.insert("x-user", HeaderValue::from_str(u).unwrap());
        }
        let input = KeyInput {
            scope: "r",
            client_ip: "10.0.0.1".parse().unwrap(),
            headers: &headers,
            claims: None,
            consumer: None,
        };
        p.store_key(p.cluster().unwrap(), &input)
    }

    #[test]
    fn every_instance_computes_the_same_hashed_key() {
        let s = store(None);
        let (a, b) = (policy(&s, OnMissing::Shared), policy(&s, OnMissing::Shared));
        let ka = key(&a, Some("alice")).unwrap().unwrap();
        assert_eq!(ka, key(&b, Some("alice")).unwrap().unwrap());
        assert_ne!(ka, key(&a, Some("bob")).unwrap().unwrap());
        let text = String::from_utf8(ka).unwrap();
        assert!(text.starts_with("pfx:rl:per_user:"), "{text}");
        assert_eq!(text.len(), "pfx:rl:per_user:".len() + 32);
        assert!(!text.contains("alice"));
        // Requests without the key share one bucket, unless told otherwise.
        assert_eq!(key(&a, None).unwrap(), key(&b, None).unwrap());
        assert_ne!(key(&a, None).unwrap(), key(&a, Some("")).unwrap());
        assert_eq!(key(&policy(&s, OnMissing::Allow), None).unwrap(), None);
        assert!(key(&policy(&s, OnMissing::Deny), None).is_err());
    }

    #[test]
    fn the_local_fallback_gets_this_instances_share() {
        let p = policy(&store(Some(3)), OnMissing::Shared);
        assert_eq!(p.limiter().burst(), 2, "burst 6 / 3 instances");
        assert_eq!(
            p.limiter().interval(),
            Duration::from_millis(300),
            "10/s / 3"
        );
        assert_eq!(p.cluster().unwrap().interval, Duration::from_millis(100));
        let whole = policy(&store(None), OnMissing::Shared);
        assert_eq!(whole.limiter().burst(), 6);
        assert_eq!(whole.limiter().interval(), Duration::from_millis(100));
    }
}
