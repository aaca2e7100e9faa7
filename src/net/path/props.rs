//! Property tests of the normalizer: idempotent, never yields a dot-segment, and agrees with
//! itself whether a character arrives plain or percent-encoded.

use proptest::prelude::*;

use super::{EncodedSlashes, normalize};

/// Paths built from the pieces attacks are made of.
fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just(";".to_string()),
        Just(";x=1".to_string()),
        Just("%2e".to_string()),
        Just("%2E".to_string()),
        Just("%2f".to_string()),
        Just("%5c".to_string()),
        Just("%25".to_string()),
        Just("%3b".to_string()),
        Just("%00".to_string()),
        Just("%".to_string()),
        Just("\\".to_string()),
        "%[0-9a-fA-F]{2}",
        "[a-zA-Z0-9._~-]{1,4}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
}

fn modes() -> impl Strategy<Value = EncodedSlashes> {
    prop_oneof![Just(EncodedSlashes::Reject), Just(EncodedSlashes::Keep)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn idempotent(path in hostile_path(), mode in modes()) {
        if let Ok(once) = normalize(&path, mode) {
            let twice = normalize(&once, mode);
            prop_assert_eq!(twice.as_deref(), Ok(&*once));
        }
    }

    #[test]
    fn never_yields_dot_segments(path in hostile_path(), mode in modes()) {
        if let Ok(out) = normalize(&path, mode) {
            for seg in out.split('/') {
                let name = seg.split(';').next().unwrap_or(seg);
                prop_assert!(name != "." && name != "..", "{} -> {}", path, out);
                let upper = seg.to_ascii_uppercase();
                prop_assert!(!upper.starts_with("..%2F") && !upper.contains("%2F..%2F"));
            }
            prop_assert!(!out.contains('\\'));
            if mode == EncodedSlashes::Reject {
                prop_assert!(!out.to_ascii_uppercase().contains("%2F"));
            }
        }
    }

    #[test]
    fn encoding_an_unreserved_character_changes_nothing(
        prefix in "/[a-z0-9]{0,6}",
        c in "[a-zA-Z0-9._~-]",
        suffix in "[a-z0-9/]{0,6}",
    ) {
        let b = c.as_bytes()[0];
        let plain = format!("{prefix}{c}{suffix}");
        let encoded = format!("{prefix}%{b:02x}{suffix}");
        prop_assert_eq!(
            normalize(&plain, EncodedSlashes::Reject).map(|p| p.into_owned()),
            normalize(&encoded, EncodedSlashes::Reject).map(|p| p.into_owned())
        );
    }
}
