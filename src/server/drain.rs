//! The drain signal a listener gives its client connections: a flag, and the waker each
//! connection left the one time it registered. A keep-alive connection waiting for its next
//! request looks at the flag instead of registering and removing a waiter (a `watch`
//! receiver's lock and list, twice per request).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// One listener's drain: started once, when it stops accepting.
#[derive(Debug, Default)]
pub struct Drain {
    started: AtomicBool,
    wakers: Mutex<Wakers>,
}

/// The registered wakers, a slot per open connection (freed slots are used again).
#[derive(Debug, Default)]
struct Wakers {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Drain {
    /// A drain not started, with no connection.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn wakers(&self) -> MutexGuard<'_, Wakers> {
        // A panic elsewhere while holding the lock leaves the slots usable.
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection's handle on this drain (it takes a slot until dropped).
    pub fn waiter(self: &Arc<Self>) -> Waiter {
        let mut w = self.wakers();
        let slot = match w.free.pop() {
            Some(i) => i,
            None => {
                w.slots.push(None);
                w.slots.len() - 1
            }
        };
        drop(w);
        Waiter {
            drain: self.clone(),
            slot,
            waker: None,
        }
    }

    /// Starts the drain and wakes every connection waiting on it.
    pub fn start(&self) {
        // Set before the wakers are read: a connection registering meanwhile sees the flag
        // when it looks again after registering (the lock orders the two).
        self.started.store(true, Ordering::SeqCst);
        for waker in self.wakers().slots.iter().flatten() {
            waker.wake_by_ref();
        }
    }
}

/// One connection's view of its listener's drain.
#[derive(Debug)]
pub struct Waiter {
    drain: Arc<Drain>,
    slot: usize,
    /// The waker registered in the slot; the task's own, so after the first wait it matches
    /// and nothing is locked again.
    waker: Option<Waker>,
}

impl Waiter {
    /// Whether the drain has started.
    pub fn started(&self) -> bool {
        self.drain.started.load(Ordering::SeqCst)
    }

    /// Ready once the drain has started; until then the task is woken when it starts.
    pub fn poll_started(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.started() {
            return Poll::Ready(());
        }
        if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let waker = cx.waker().clone();
        self.drain.wakers().slots[self.slot] = Some(waker.clone());
        self.waker = Some(waker);
        // A drain that started before the waker was in its slot did not see it.
        if self.started() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Waits until the drain starts.
    pub async fn wait(&mut self) {
        poll_fn(|cx| self.poll_started(cx)).await;
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut w = self.drain.wakers();
        w.slots[self.slot] = None;
        w.free.push(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_connection_wakes_when_the_drain_starts() {
        let drain = Drain::new();
        let mut waiter = drain.waiter();
        assert!(!waiter.started());
        let waiting = tokio::spawn(async move {
            waiter.wait().await;
            waiter.started()
        });
        // Registered and parked before the drain starts.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drain.start();
        let woke = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the drain")
            .expect("task");
        assert!(woke);
    }

    #[tokio::test]
    async fn a_connection_after_the_start_sees_it_at_once() {
        let drain = Drain::new();
        drain.start();
        let mut waiter = drain.waiter();
        assert!(waiter.started());
        tokio::time::timeout(Duration::from_secs(5), waiter.wait())
            .await
            .expect("ready at once");
    }

    #[test]
    fn slots_are_used_again_and_freed_when_a_waiter_drops() {
        let drain = Drain::new();
        let mut cx = Context::from_waker(Waker::noop());
        let mut a = drain.waiter();
        let mut b = drain.waiter();
        assert_eq!((a.slot, b.slot), (0, 1));
        assert!(a.poll_started(&mut cx).is_pending());
        assert!(b.poll_started(&mut cx).is_pending());
        assert!(drain.wakers().slots.iter().all(Option::is_some));
        drop(a);
        let c = drain.waiter();
        assert_eq!(c.slot, 0, "a freed slot is taken first");
        assert!(drain.wakers().slots[0].is_none(), "its waker went with it");
        assert_eq!(drain.wakers().slots.len(), 2);
        drop((b, c));
        assert!(drain.wakers().slots.iter().all(Option::is_none));
    }

    #[tokio::test]
    async fn a_waiter_moved_to_another_task_registers_that_task() {
        let drain = Drain::new();
        let mut waiter = drain.waiter();
        // Registered by one task, which then gives the waiter up without the drain starting.
        let mut waiter = tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_millis(10), waiter.wait()).await;
            waiter
        })
        .await
        .expect("task");
        let drain2 = drain.clone();
        let waiting = tokio::spawn(async move { waiter.wait().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drain2.start();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the second task was woken")
            .expect("task");
    }
}
