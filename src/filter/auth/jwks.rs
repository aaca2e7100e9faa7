//! A JWK set fetched from `jwks_url`: refreshed in the background on an interval, refetched when
//! a token names an unknown `kid` (at most once per cooldown), one fetch at a time, and the last
//! good set kept when a fetch fails. Requests whose key is known never wait for a fetch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Notify;

use super::keys::KeySet;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Fetch timing settings of a `jwks_url` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// Where the set lives.
    pub url: Uri,
    /// How old the set may get before a background refresh.
    pub refresh: Duration,
    /// Least time between two fetches caused by unknown `kid`s.
    pub cooldown: Duration,
    /// Time allowed for one fetch.
    pub timeout: Duration,
}

#[derive(Debug, Default)]
struct FetchState {
    in_flight: bool,
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    /// Start of the last fetch caused by an unknown `kid` (the cooldown counts from here).
    last_kid_refetch: Option<Instant>,
}

/// Counters of one remote key set, for logs and metrics.
#[derive(Debug, Default)]
pub struct JwksStats {
    /// Fetches that replaced the key set.
    pub fetched: AtomicU64,
    /// Fetches that failed (the previous set stayed).
    pub failed: AtomicU64,
    /// Requests waiting right now for a fetch in flight (unknown `kid`, or no set yet).
    pub waiting: AtomicU64,
}

/// Counts a request as waiting for as long as it lives (also when the request is dropped).
struct Waiting<'a>(&'a AtomicU64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A remote JWK set and its fetch state.
pub struct RemoteJwks {
    provider: Arc<str>,
    settings: JwksSettings,
    keys: ArcSwap<KeySet>,
    state: Mutex<FetchState>,
    done: Notify,
    client: HttpsClient,
    /// Fetch counters.
    pub stats: JwksStats,
    /// `portico_jwks_fetches_total{provider, result}` series (ok, error), once registered.
    counters: std::sync::OnceLock<(Counter, Counter)>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("provider", &self.provider)
            .field("settings", &self.settings)
            .field("keys", &self.keys.load().len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl RemoteJwks {
    /// A remote set with no key yet; the first request that needs a key fetches it.
    pub fn new(provider: Arc<str>, settings: JwksSettings) -> RemoteJwks {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.timeout));
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        RemoteJwks {
            provider,
            settings,
            keys: ArcSwap::from_pointee(KeySet::default()),
            state: Mutex::new(FetchState::default()),
            done: Notify::new(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            stats: JwksStats::default(),
            counters: std::sync::OnceLock::new(),
        }
    }

    /// Counts fetches in the gateway's registry as `portico_jwks_fetches_total{provider,
    /// result="ok"|"error"}`.
    pub fn register_metrics(&self, metrics: &crate::metrics::Metrics) {
        self.counters.get_or_init(|| {
            let family: Family<[(&'static str, String); 2], Counter> = metrics.family(
                "portico_jwks_fetches",
                "JWKS fetches of auth providers, by result",
                Family::default,
            );
            let series = |result: &str| {
                family
                    .get_or_create(&[
                        ("provider", self.provider.to_string()),
                        ("result", result.into()),
                    ])
                    .clone()
            };
            (series("ok"), series("error"))
        });
    }

    /// The fetch settings.
    pub fn settings(&self) -> &JwksSettings {
        &self.settings
    }

    /// The current key set; starts a background refresh when it is older than `refresh`
    /// (the caller goes on with the current set).
    pub fn current(self: &Arc<Self>) -> Arc<KeySet> {
        let stale = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            !st.in_flight
                && st
                    .last_success
                    .is_some_and(|t| t.elapsed() >= self.settings.refresh)
                && st.last_attempt.is_none_or(|t| {
                    t.elapsed() >= self.settings.cooldown.min(self.settings.refresh)
                })
        };
        if stale {
            self.start_fetch(false);
        }
        self.keys.load_full()
    }

    /// Called when a token names a key the set does not have (or there is no set yet): fetches
    /// again unless a fetch ran within the cooldown, and waits for the fetch in flight. Returns
    /// the key set to look in again, or `None` when no new set is coming.
    pub async fn refetch_for_unknown_kid(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        let notified = self.done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let waiting = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let cooldown = self.settings.cooldown;
            let cooling = |t: Option<Instant>| t.is_some_and(|t| t.elapsed() < cooldown);
            // Before the first good set, failed attempts pace retries; after it, the last
            // unknown-kid refetch does, so a flood of made-up kids costs one fetch per cooldown.
            let have_keys = !self.keys.load().is_empty();
            let blocked = if !have_keys {
                cooling(st.last_attempt)
            } else {
                cooling(st.last_kid_refetch)
            };
            if st.in_flight {
                true
            } else if blocked {
                false
            } else {
                let now = Instant::now();
                st.in_flight = true;
                st.last_attempt = Some(now);
                if have_keys {
                    st.last_kid_refetch = Some(now);
                }
                drop(st);
                self.spawn_fetch();
                true
            }
        };
        if !waiting {
            return None;
        }
        let wait = self.settings.timeout + Duration::from_millis(100);
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.stats.waiting);
        tokio::time::timeout(wait, notified).await.ok()?;
        Some(self.keys.load_full())
    }

    fn start_fetch(self: &Arc<Self>, force: bool) {
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.in_flight && !force {
                return;
            }
            st.in_flight = true;
            st.last_attempt = Some(Instant::now());
        }
        self.spawn_fetch();
    }

    fn spawn_fetch(self: &Arc<Self>) {
        let this = self.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.finish(Err("no async runtime".into()));
            return;
        };
        rt.spawn(async move {
            let result = tokio::time::timeout(this.settings.timeout, this.fetch())
                .await
                .unwrap_or_else(|_| Err(format!("timed out after {:?}", this.settings.timeout)));
            this.finish(result);
        });
    }

    fn finish(&self, result: Result<KeySet, String>) {
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.in_flight = false;
            match result {
                Ok(set) => {
                    tracing::info!(provider = %self.provider, keys = set.len(), "JWKS fetched");
                    self.keys.store(Arc::new(set));
                    st.last_success = Some(Instant::now());
                    self.stats.fetched.fetch_add(1, Ordering::Relaxed);
                    if let Some((ok, _)) = self.counters.get() {
                        ok.inc();
                    }
                }
                Err(e) => {
                    tracing::warn!(provider = %self.provider, url = %self.settings.url, error = %e, "JWKS fetch failed; keeping the previous key set");
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    if let Some((_, error)) = self.counters.get() {
                        error.inc();
                    }
                }
            }
        }
        self.done.notify_waiters();
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let req = Request::get(self.settings.url.clone())
            .header(
                http::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        if resp.status() != StatusCode::OK {
            return Err(format!("status {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading body: {e}"))?
            .to_bytes();
        let (set, skipped) = KeySet::from_jwks(&body)?;
        if set.is_empty() {
            return Err(format!("no usable key ({skipped} skipped)"));
        }
        Ok(set)
    }
}
