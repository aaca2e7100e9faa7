//! governor state store with a hard cap on keys: one GCRA cell (an atomic theoretical arrival
//! time) per key in a `DashMap`; once `max_keys` keys are tracked, new keys share one overflow
//! bucket until a sweep drops idle keys. Memory is therefore bounded under hostile keys.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;

use crate::filter::prehashed::BuildPrehashed;

/// Keys are `u64` digests of the request's key parts (already uniformly random).
#[derive(Debug)]
pub struct CappedStore {
    map: DashMap<u64, AtomicU64, BuildPrehashed>,
    len: AtomicUsize,
    max: usize,
    overflow: AtomicU64,
    overflowed: AtomicU64,
}

impl CappedStore {
    /// A store that tracks at most `max` keys (at least 1).
    pub fn new(max: usize) -> CappedStore {
        CappedStore {
            map: DashMap::with_hasher(BuildPrehashed::default()),
            len: AtomicUsize::new(0),
            max: max.max(1),
            overflow: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
        }
    }

    /// Checks that went to the shared overflow bucket because the store was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Slots allocated by the map (to watch memory).
    pub fn capacity(&self) -> usize {
        self.map.capacity()
    }
}

/// governor's compare-and-swap update of one cell; 0 means "never seen".
fn update<T, F, E>(cell: &AtomicU64, f: F) -> Result<T, E>
where
    F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
{
    let mut prev = cell.load(Ordering::Acquire);
    loop {
        let (result, next) = f((prev != 0).then(|| Nanos::from(prev)))?;
        match cell.compare_exchange_weak(prev, next.into(), Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return Ok(result),
            Err(actual) => prev = actual,
        }
    }
}

impl StateStore for CappedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(cell) = self.map.get(key) {
            return update(&cell, f);
        }
        // Reserve a slot before inserting so concurrent inserts can never pass the cap.
        if self.len.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.len.fetch_sub(1, Ordering::AcqRel);
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            return update(&self.overflow, f);
        }
        let mut inserted = false;
        let cell = self.map.entry(*key).or_insert_with(|| {
            inserted = true;
            AtomicU64::new(0)
        });
        if !inserted {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
        update(&cell, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for CappedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let below: u64 = drop_below.into();
        let mut removed = 0;
        self.map.retain(|_, cell| {
            let keep = cell.load(Ordering::Relaxed) > below;
            if !keep {
                removed += 1;
            }
            keep
        });
        self.len.fetch_sub(removed, Ordering::AcqRel);
        if self.overflow.load(Ordering::Relaxed) <= below {
            self.overflow.store(0, Ordering::Relaxed);
        }
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A handle to a shared store, so the limiter owns one and the policy can still read its
/// counters.
#[derive(Debug, Clone)]
pub struct SharedStore(pub std::sync::Arc<CappedStore>);

impl StateStore for SharedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for SharedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
