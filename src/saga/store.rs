//! `[saga]` compiled into a [`Store`]: the durable log and the idempotency keys of the
//! process. The log is opened (and what was in flight recovered) when the runtime is first
//! put in force, never by `portico check`; a reload keeps the open store.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use toml::Spanned;

use super::idempotency::Keys;
use super::log::{Log, Policy};
use super::record::{LoggedCall, Rec};
use super::registry;
use super::run::Pending;
use crate::config::diag::Diagnostics;
use crate::config::file::saga::SagaFile;
use crate::upstream::Upstream;

const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_MAX_KEYS: usize = 100_000;
const DEFAULT_COMPACT_AT: u64 = 64 << 20;

/// `[saga]`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaSettings {
    /// Folder of `saga.log`.
    pub dir: PathBuf,
    /// fsync before each next call.
    pub fsync: bool,
    /// Size that triggers a rewrite.
    pub compact_at: u64,
}

/// The saga log and idempotency keys.
#[derive(Debug)]
pub struct Store {
    /// Settings it was built with.
    pub settings: SagaSettings,
    /// `Idempotency-Key` answers.
    pub keys: Keys,
    log: OnceLock<Result<Log, String>>,
}

/// Compiles `[saga]`; a store already open is kept (its settings apply until a restart).
pub fn compile(
    d: &mut Diagnostics,
    file: Option<&Spanned<SagaFile>>,
    previous: Option<&Arc<Store>>,
) -> Option<Arc<Store>> {
    let f = file?.get_ref();
    let before = d.errors.len();
    if f.dir.get_ref().trim().is_empty() {
        d.error(f.dir.span(), "saga.dir", "must not be empty");
    }
    let ttl = d.positive_duration_or(&f.idempotency_ttl, "saga.idempotency_ttl", DEFAULT_TTL);
    let max = d.count_or(
        &f.idempotency_max_keys,
        "saga.idempotency_max_keys",
        (1, 10_000_000),
        DEFAULT_MAX_KEYS,
    );
    let compact_at = d.positive_size_or(&f.compact_at, "saga.compact_at", DEFAULT_COMPACT_AT);
    if d.errors.len() > before {
        return None;
    }
    let settings = SagaSettings {
        dir: crate::config::resolve(&d.source.path, f.dir.get_ref()),
        fsync: f.fsync.unwrap_or(true),
        compact_at,
    };
    if let Some(p) = previous {
        if p.settings != settings || p.keys.ttl != ttl || p.keys.max != max {
            tracing::warn!("[saga] changed: the open saga log keeps its settings until a restart");
        }
        return Some(p.clone());
    }
    Some(Arc::new(Store {
        settings,
        keys: Keys::new(max, ttl),
        log: OnceLock::new(),
    }))
}

impl Store {
    /// Opens the log once (at start) and recovers what it holds: sagas in flight are
    /// compensated (their finished steps, in reverse; no forward step runs again), stuck ones
    /// are listed for an operator, idempotency answers are remembered again.
    pub fn activate(self: &Arc<Self>, upstreams: &BTreeMap<Arc<str>, Arc<Upstream>>) {
        let mut opened = None;
        self.log.get_or_init(|| {
            let policy = Policy {
                fsync: self.settings.fsync,
                compact_at: self.settings.compact_at,
                max_keys: self.keys.max,
            };
            match Log::open(&self.settings.dir, policy) {
                Ok((log, parsed)) => {
                    opened = Some(parsed);
                    Ok(log)
                }
                Err(e) => {
                    tracing::error!("saga log: {e}; saga endpoints answer 503");
                    Err(e)
                }
            }
        });
        if let Some(parsed) = opened {
            if parsed.bad > 0 {
                tracing::warn!(
                    dir = %self.settings.dir.display(),
                    bad = parsed.bad,
                    torn_tail = parsed.torn_tail,
                    "saga log: dropped records that failed their checksum (a crash mid-write leaves a torn last one)"
                );
                registry::add_bad_records(parsed.bad);
            }
            self.recover(parsed.records, upstreams);
        }
    }

    /// Appends a record; `Err` when the log is not open or the write failed.
    pub async fn append(&self, rec: Rec) -> Result<(), String> {
        match self.log.get() {
            Some(Ok(log)) => log.append(rec).await,
            Some(Err(e)) => Err(e.clone()),
            None => Err("the saga log is not open".into()),
        }
    }

    /// Whether the log is open.
    pub fn is_open(&self) -> bool {
        matches!(self.log.get(), Some(Ok(_)))
    }

    fn recover(self: &Arc<Self>, records: Vec<Rec>, ups: &BTreeMap<Arc<str>, Arc<Upstream>>) {
        let mut open: Vec<(String, Open)> = Vec::new();
        for rec in records {
            let id = rec.saga_id().map(str::to_owned);
            let pos = id
                .as_ref()
                .and_then(|id| open.iter().position(|(i, _)| i == id));
            match rec {
                Rec::Key(k) => self.keys.restore(k),
                Rec::End { key, .. } => {
                    if let Some(p) = pos {
                        open.remove(p);
                    }
                    if let Some(k) = key {
                        self.keys.restore(k);
                    }
                }
                rec => {
                    let p = pos.unwrap_or_else(|| {
                        open.push((id.unwrap_or_default(), Open::default()));
                        open.len() - 1
                    });
                    open[p].1.apply(rec);
                }
            }
        }
        for (id, o) in open {
            let endpoint: Arc<str> = Arc::from(o.ep.as_deref().unwrap_or("-"));
            let names: Vec<Arc<str>> = o.steps.iter().map(|s| Arc::from(s.as_str())).collect();
            registry::restore(&id, &endpoint, &names, o.ms, &o.done, o.failed, &o.undone);
            let pending: Vec<Pending> = o
                .comps
                .iter()
                .rev()
                .filter(|c| !o.undone.contains(&c.step))
                .map(|c| Pending::from_logged(c, ups))
                .collect();
            if o.stuck {
                tracing::warn!(saga = %id, "saga log: a stuck saga waits for an operator");
                registry::stuck(&id, pending, Some(self.clone()));
                continue;
            }
            tracing::warn!(saga = %id, left = pending.len(), "saga log: a saga was in flight at the last stop; compensating its finished steps");
            registry::set_state(&id, registry::State::Compensating, None);
            let store = self.clone();
            tokio::spawn(async move {
                let rec = Rec::Compensating {
                    id: id.clone(),
                    failed: None,
                };
                if let Err(e) = store.append(rec).await {
                    tracing::error!(saga = %id, "saga log: {e}");
                }
                super::run::compensate(&store, &id, pending).await;
            });
        }
    }
}

/// An unfinished saga as the log tells it.
#[derive(Default)]
struct Open {
    ep: Option<String>,
    steps: Vec<String>,
    ms: u64,
    done: Vec<usize>,
    comps: Vec<LoggedCall>,
    undone: HashSet<String>,
    failed: Option<usize>,
    stuck: bool,
}

impl Open {
    fn apply(&mut self, rec: Rec) {
        match rec {
            Rec::Step {
                i,
                ep,
                steps,
                ms,
                comp,
                ..
            } => {
                if ep.is_some() {
                    self.ep = ep;
                    self.steps = steps;
                    self.ms = ms;
                }
                self.done.push(i);
                self.comps.extend(comp);
            }
            Rec::Compensating { failed, .. } => {
                self.failed = failed.or(self.failed);
                self.stuck = false;
            }
            Rec::Compensated { step, .. } => {
                self.undone.insert(step);
            }
            Rec::Stuck { .. } => self.stuck = true,
            Rec::End { .. } | Rec::Key(_) => {}
        }
    }
}
