//! Sagas of this process for the admin API: in flight, stuck (with what is left to
//! compensate) and the most recent finished ones. The durable log ([`super::log`]) is what
//! survives a restart; at start the sagas it holds unfinished are listed here again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::run::Pending;
use super::store::Store;

/// Finished sagas kept for `GET /admin/sagas` (stuck and running ones are always kept).
const KEEP_FINISHED: usize = 200;

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Forward steps running.
    Running,
    /// Undoing finished steps.
    Compensating,
    /// Every finished step was undone.
    Compensated,
    /// A compensation ran out of attempts.
    Stuck,
    /// Every step succeeded.
    Done,
}

impl State {
    /// Token shown by the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Compensating => "compensating",
            State::Compensated => "compensated",
            State::Stuck => "stuck",
            State::Done => "done",
        }
    }

    fn finished(self) -> bool {
        matches!(self, State::Compensated | State::Done)
    }
}

struct Record {
    id: String,
    endpoint: Arc<str>,
    state: State,
    started_ms: u64,
    /// Step names and what happened to each (`pending`, `done`, `failed`, `compensated`).
    steps: Vec<(Arc<str>, &'static str)>,
    /// What is left to compensate of a stuck saga.
    left: Vec<Pending>,
    /// The log its transitions go to.
    store: Option<Arc<Store>>,
}

static BAD_RECORDS: AtomicUsize = AtomicUsize::new(0);

/// Log records dropped at start for a bad checksum (shown by the admin API).
pub fn add_bad_records(n: usize) {
    BAD_RECORDS.fetch_add(n, Ordering::Relaxed);
}

fn sagas() -> &'static Mutex<VecDeque<Record>> {
    static SAGAS: OnceLock<Mutex<VecDeque<Record>>> = OnceLock::new();
    SAGAS.get_or_init(Default::default)
}

fn with<R>(f: impl FnOnce(&mut VecDeque<Record>) -> R) -> R {
    let mut g = sagas().lock().unwrap_or_else(|p| p.into_inner());
    f(&mut g)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A new saga id: time and a counter, unique in this process.
pub fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{:x}-{}", now_ms(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Records a saga that starts.
pub fn start(id: &str, endpoint: &Arc<str>, steps: &[Arc<str>]) {
    push(id, endpoint, steps, now_ms());
}

/// Lists again a saga the log holds unfinished: `done` steps, the `failed` one, the
/// `undone` (compensated) ones.
pub fn restore(
    id: &str,
    endpoint: &Arc<str>,
    steps: &[Arc<str>],
    started_ms: u64,
    done: &[usize],
    failed: Option<usize>,
    undone: &std::collections::HashSet<String>,
) {
    push(id, endpoint, steps, started_ms);
    update(id, |r| {
        for (i, s) in r.steps.iter_mut().enumerate() {
            if undone.contains(&*s.0) {
                s.1 = "compensated";
            } else if done.contains(&i) {
                s.1 = "done";
            } else if failed == Some(i) {
                s.1 = "failed";
            }
        }
    });
}

fn push(id: &str, endpoint: &Arc<str>, steps: &[Arc<str>], started_ms: u64) {
    with(|s| {
        let finished = s.iter().filter(|r| r.state.finished()).count();
        if finished >= KEEP_FINISHED {
            if let Some(i) = s.iter().position(|r| r.state.finished()) {
                s.remove(i);
            }
        }
        s.push_back(Record {
            id: id.into(),
            endpoint: endpoint.clone(),
            state: State::Running,
            started_ms,
            steps: steps.iter().map(|n| (n.clone(), "pending")).collect(),
            left: Vec::new(),
            store: None,
        });
    });
}

fn update(id: &str, f: impl FnOnce(&mut Record)) {
    with(|s| {
        if let Some(r) = s.iter_mut().find(|r| r.id == id) {
            f(r);
        }
    });
}

/// Step `i` succeeded.
pub fn step_done(id: &str, i: usize) {
    update(id, |r| {
        if let Some(s) = r.steps.get_mut(i) {
            s.1 = "done";
        }
    });
}

/// A new state; `failed` marks the step that failed.
pub fn set_state(id: &str, state: State, failed: Option<usize>) {
    update(id, |r| {
        r.state = state;
        if let Some(s) = failed.and_then(|i| r.steps.get_mut(i)) {
            s.1 = "failed";
        }
        if state != State::Stuck {
            r.left.clear();
        }
    });
}

/// The compensation of `step` succeeded.
pub fn compensated(id: &str, step: &str) {
    update(id, |r| {
        if let Some(s) = r.steps.iter_mut().find(|s| &*s.0 == step) {
            s.1 = "compensated";
        }
    });
}

/// A compensation ran out of attempts: keep what is left for a retry.
pub fn stuck(id: &str, left: Vec<Pending>, store: Option<Arc<Store>>) {
    update(id, |r| {
        r.state = State::Stuck;
        r.left = left;
        r.store = store;
    });
}

/// Takes what is left to compensate of a stuck saga (it is `compensating` again):
/// `Err(None)` for an unknown id, `Err(Some(state))` when it is not stuck.
#[allow(clippy::type_complexity)]
pub fn take_stuck(id: &str) -> Result<(Vec<Pending>, Option<Arc<Store>>), Option<State>> {
    with(|s| {
        let r = s.iter_mut().find(|r| r.id == id).ok_or(None)?;
        if r.state != State::Stuck {
            return Err(Some(r.state));
        }
        r.state = State::Compensating;
        Ok((std::mem::take(&mut r.left), r.store.take()))
    })
}

/// `{"sagas": [{"id", "endpoint", "state", "started_ms", "steps": [{"name", "state"}]}],
/// "log": {"bad_records"}}`, newest first.
pub fn json() -> Value {
    with(|s| {
        let list: Vec<Value> = s
            .iter()
            .rev()
            .map(|r| {
                json!({
                    "id": r.id,
                    "endpoint": &*r.endpoint,
                    "state": r.state.as_str(),
                    "started_ms": r.started_ms,
                    "steps": r.steps.iter().map(|(n, st)| json!({"name": &**n, "state": st})).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "sagas": list, "log": {"bad_records": BAD_RECORDS.load(Ordering::Relaxed)} })
    })
}
