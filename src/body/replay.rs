//! The replay buffer of a streamed client body: a copy of the bytes as they stream to the
//! first try, kept while the body fits in the cap, so a retry can send the body again. Past
//! the cap the copy is dropped and the request can no longer be retried; a body only partly
//! sent when a try failed cannot be replayed either.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

/// Where the copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes are still streaming.
    Reading,
    /// The whole body is kept.
    Whole,
    /// The body outgrew the cap (or failed): nothing is kept.
    Lost,
}

#[derive(Debug)]
struct Kept {
    chunks: Vec<Bytes>,
    len: u64,
    state: State,
}

/// A shared copy of a streamed body, up to `cap` bytes.
#[derive(Debug, Clone)]
pub struct ReplayBuffer {
    cap: u64,
    kept: Arc<Mutex<Kept>>,
}

impl ReplayBuffer {
    /// An empty copy that keeps at most `cap` bytes.
    pub fn new(cap: u64) -> ReplayBuffer {
        ReplayBuffer {
            cap,
            kept: Arc::new(Mutex::new(Kept {
                chunks: Vec::new(),
                len: 0,
                state: State::Reading,
            })),
        }
    }

    /// Copies a chunk that went out (`Bytes` clones share the data: no copy of the bytes).
    pub fn push(&self, data: &Bytes) {
        let Ok(mut k) = self.kept.lock() else { return };
        if k.state != State::Reading {
            return;
        }
        k.len += data.len() as u64;
        if k.len > self.cap {
            k.state = State::Lost;
            k.chunks = Vec::new();
        } else {
            k.chunks.push(data.clone());
        }
    }

    /// The body ended: the copy is whole (unless already lost).
    pub fn finish(&self) {
        if let Ok(mut k) = self.kept.lock() {
            if k.state == State::Reading {
                k.state = State::Whole;
            }
        }
    }

    /// The body failed: nothing to replay.
    pub fn lose(&self) {
        if let Ok(mut k) = self.kept.lock() {
            k.state = State::Lost;
            k.chunks = Vec::new();
        }
    }

    /// The whole body, if it was read to its end within the cap.
    pub fn whole(&self) -> Option<Bytes> {
        let k = self.kept.lock().ok()?;
        if k.state != State::Whole {
            return None;
        }
        match k.chunks.as_slice() {
            [] => Some(Bytes::new()),
            [one] => Some(one.clone()),
            many => {
                let mut all = BytesMut::with_capacity(k.len as usize);
                many.iter().for_each(|c| all.extend_from_slice(c));
                Some(all.freeze())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_body_within_the_cap_and_drops_one_past_it() {
        let b = ReplayBuffer::new(8);
        b.push(&Bytes::from_static(b"abc"));
        assert_eq!(b.whole(), None, "not whole before the end");
        b.push(&Bytes::from_static(b"def"));
        b.finish();
        assert_eq!(b.whole().as_deref(), Some(&b"abcdef"[..]));
        let over = ReplayBuffer::new(4);
        over.push(&Bytes::from_static(b"abc"));
        over.push(&Bytes::from_static(b"def"));
        over.finish();
        assert_eq!(over.whole(), None);
    }
}
