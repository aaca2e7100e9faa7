//! The gateway's shared state: the current runtime behind `ArcSwap`, reload (compile whole,
//! swap once), readiness.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::ConfigErrors;
use crate::config::inventory::ReloadSummary;
use crate::runtime::{self, Runtime};

/// Shared state of one gateway process.
#[derive(Debug)]
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    config_path: PathBuf,
    generation: AtomicU64,
    draining: AtomicBool,
    reload_lock: std::sync::Mutex<()>,
    status: watch::Sender<ReloadStatus>,
    /// Bound port of the HTTPS listener (0: none), the target of `redirect_https`.
    https_port: AtomicU16,
}

/// What the last reload attempt did; observers (tests, the admin API) can await changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Reload attempts so far (successful or not).
    pub attempts: u64,
    /// Current config generation.
    pub generation: u64,
    /// When the last attempt ended.
    pub at: SystemTime,
    /// Errors of the last attempt, when it failed (as `portico check` prints them).
    pub errors: Option<ConfigErrors>,
}

/// A reload that succeeded.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The runtime now serving.
    pub runtime: Arc<Runtime>,
    /// Its generation.
    pub generation: u64,
    /// What changed.
    pub summary: ReloadSummary,
    /// Time to read, validate, compile and swap.
    pub took: Duration,
}

/// The trigger name of reloads the file watcher starts; such a reload of unchanged contents
/// is not a new generation.
pub const FILE_CHANGE: &str = "file change";

impl Gateway {
    /// Wraps a compiled runtime.
    pub fn new(config_path: PathBuf, runtime: Runtime) -> Arc<Gateway> {
        crate::upstream::activate(None, &runtime.upstreams);
        let (status, _) = watch::channel(ReloadStatus {
            attempts: 0,
            generation: 1,
            at: runtime.loaded_at,
            errors: None,
        });
        Arc::new(Gateway {
            runtime: ArcSwap::from_pointee(runtime),
            config_path,
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            reload_lock: std::sync::Mutex::new(()),
            status,
            https_port: AtomicU16::new(0),
        })
    }

    /// The runtime new requests use. A request keeps the one it started with.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// The current runtime, to read a setting now: no reference count is taken (two atomic
    /// operations fewer than [`Gateway::runtime`]). Not to be kept across an await.
    pub fn peek(&self) -> arc_swap::Guard<Arc<Runtime>> {
        self.runtime.load()
    }

    /// Config generation: 1 at start, +1 per successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The gateway.toml this gateway was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Bound port of the HTTPS listener, if one is running.
    pub fn https_port(&self) -> Option<u16> {
        Some(self.https_port.load(Ordering::Relaxed)).filter(|&p| p != 0)
    }

    /// Records the HTTPS listener's bound port (0: none).
    pub fn set_https_port(&self, port: u16) {
        self.https_port.store(port, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Marks the gateway as draining: readiness turns 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Outcome of the last reload attempt; `changed()` on the receiver wakes after each attempt.
    pub fn reload_status(&self) -> watch::Receiver<ReloadStatus> {
        self.status.subscribe()
    }

    /// Reads, validates and compiles the whole config, then swaps it in; on any error the
    /// current runtime keeps serving and the errors are returned.
    pub fn reload(&self) -> Result<Arc<Runtime>, ConfigErrors> {
        self.reload_by("api").map(|r| r.runtime)
    }

    /// [`Gateway::reload`] that also logs one line naming `trigger` (file change, SIGHUP, admin)
    /// with what changed, counts the outcome in the metrics and reports it to watchers.
    pub fn reload_by(&self, trigger: &str) -> Result<Reloaded, ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let current = self.runtime();
        let result = runtime::load(&self.config_path, Some(&current));
        let took = started.elapsed();
        let next = match result {
            Ok(next) => Arc::new(next),
            Err(errors) => {
                current.metrics.reload_failed();
                tracing::error!(
                    trigger,
                    generation = self.generation(),
                    problems = errors.0.len(),
                    "config reload failed; the current config keeps serving"
                );
                for e in &errors.0 {
                    tracing::error!(trigger, "config error: {e}");
                }
                self.status.send_modify(|s| {
                    s.attempts += 1;
                    s.at = SystemTime::now();
                    s.errors = Some(errors.clone());
                });
                return Err(errors);
            }
        };
        if trigger == FILE_CHANGE && next.version == current.version {
            // Editors write a save in several steps (and some touch files without changing
            // them): one content version is one generation, however many events it caused.
            tracing::debug!(trigger, version = %next.version, "config unchanged; not swapped");
            self.status.send_modify(|s| {
                s.attempts += 1;
                s.at = SystemTime::now();
                s.errors = None;
            });
            return Ok(Reloaded {
                runtime: current,
                generation: self.generation(),
                summary: ReloadSummary::default(),
                took,
            });
        }
        self.runtime.store(next.clone());
        crate::upstream::activate(Some(&current.upstreams), &next.upstreams);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let summary = ReloadSummary::between(&current.inventory, &next.inventory);
        let metrics = &next.metrics;
        metrics.reload_succeeded(generation);
        metrics.retain(
            next.routes
                .routes()
                .iter()
                .map(|r| &*r.id)
                .chain(next.bff.endpoint_ids()),
            next.upstreams.keys().map(|u| &**u),
        );
        tracing::info!(
            "config reloaded ({trigger}): generation {generation}, version {}, {summary}, in {:.1}ms",
            next.version,
            took.as_secs_f64() * 1e3
        );
        runtime::activate(&next);
        self.status.send_modify(|s| {
            s.attempts += 1;
            s.generation = generation;
            s.at = SystemTime::now();
            s.errors = None;
        });
        Ok(Reloaded {
            runtime: next,
            generation,
            summary,
            took,
        })
    }
}
