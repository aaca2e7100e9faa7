//! The path normalizer: never panics, is idempotent, and never lets a dot-segment through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico::net::path::{EncodedSlashes, normalize};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for mode in [EncodedSlashes::Reject, EncodedSlashes::Keep] {
        let Ok(once) = normalize(text, mode) else {
            continue;
        };
        let twice = normalize(&once, mode).expect("a normalized path normalizes again");
        assert_eq!(once, twice, "not idempotent");
        for seg in once.split('/') {
            let name = seg.split(';').next().unwrap_or(seg);
            assert!(name != "." && name != "..", "dot segment in {once:?}");
        }
        assert!(!once.contains('\\'));
        if mode == EncodedSlashes::Reject {
            assert!(!once.to_ascii_uppercase().contains("%2F"), "{once:?}");
        }
    }
});
