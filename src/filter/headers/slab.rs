//! Small header values the gateway makes on every request (request ids, numbers) cut from a
//! per-thread chunk instead of one heap allocation each: a value is a reference-counted slice
//! of the chunk, and a new chunk is taken when one is used up (one allocation per ~64 values).
//! A chunk is freed when its last value is dropped.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use http::header::HeaderValue;

/// Bytes per chunk: 64 request ids.
const CHUNK: usize = 2048;

thread_local! {
    static CHUNK_BUF: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A copy of `bytes` sliced from this thread's chunk. Longer than a quarter chunk: a copy of
/// its own.
pub fn bytes(bytes: &[u8]) -> Bytes {
    if bytes.len() > CHUNK / 4 {
        return Bytes::copy_from_slice(bytes);
    }
    CHUNK_BUF.with(|c| {
        let mut chunk = c.borrow_mut();
        if chunk.capacity() - chunk.len() < bytes.len() {
            *chunk = BytesMut::with_capacity(CHUNK);
        }
        chunk.extend_from_slice(bytes);
        chunk.split().freeze()
    })
}

/// `bytes` as a header value sliced from this thread's chunk (`None`: not a valid value).
pub fn value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(self::bytes(bytes)).ok()
}

/// A number as a header value, from the chunk.
pub fn number(n: u64) -> HeaderValue {
    value(itoa::Buffer::new().format(n).as_bytes()).expect("digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_their_chunk_being_replaced() {
        let first = value(b"first").unwrap();
        let many: Vec<HeaderValue> = (0..500)
            .map(|i| value(format!("v{i:04}").as_bytes()).unwrap())
            .collect();
        assert_eq!(first, "first");
        for (i, v) in many.iter().enumerate() {
            assert_eq!(v, format!("v{i:04}").as_str());
        }
        assert!(value(b"bad\nvalue").is_none());
        let long = "x".repeat(CHUNK);
        assert_eq!(value(long.as_bytes()).unwrap(), long.as_str());
        for n in [0, 7, 10, 249, u64::MAX] {
            assert_eq!(number(n), n.to_string().as_str());
        }
    }
}
