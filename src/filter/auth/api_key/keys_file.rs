//! The key file of an API-key provider: one key a line, `CONSUMER KEY` (hashed when read) or
//! `CONSUMER sha256:HEX` (the key's SHA-256, so the file need not hold the key itself); blank
//! lines and lines starting with `#` are skipped.

use std::sync::Arc;

use sha2::Digest as _;

use super::KeyHash;

/// A problem at a 1-based line and column of the key file.
#[derive(Debug, PartialEq, Eq)]
pub struct LineError {
    /// Line.
    pub line: usize,
    /// Column.
    pub col: usize,
    /// What is wrong (never the key).
    pub message: String,
}

/// Parses a key file: every `(digest, consumer)`, or every problem found.
pub fn parse(text: &str) -> Result<Vec<(KeyHash, Arc<str>)>, Vec<LineError>> {
    let mut out: Vec<(KeyHash, Arc<str>)> = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let indent = line.len() - line.trim_start().len();
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |col: usize, message: String| LineError {
            line: i + 1,
            col: indent + col + 1,
            message,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [consumer, key] = fields[..] else {
            errors.push(err(
                0,
                "expected `CONSUMER KEY` or `CONSUMER sha256:HEX`".into(),
            ));
            continue;
        };
        let key_col = line.find(key).unwrap_or(0);
        if !consumer
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
        {
            errors.push(err(
                0,
                format!("bad consumer name \"{consumer}\" (letters, digits, - _ . @ :)"),
            ));
            continue;
        }
        let hash = match key.strip_prefix("sha256:") {
            Some(hex) => match decode_hex(hex) {
                Some(h) => h,
                None => {
                    errors.push(err(key_col, "expected sha256: and 64 hex digits".into()));
                    continue;
                }
            },
            None => sha2::Sha256::digest(key.as_bytes()).into(),
        };
        if let Some((_, other)) = out.iter().find(|(h, _)| *h == hash) {
            errors.push(err(
                key_col,
                format!("this key is already given to consumer \"{other}\""),
            ));
            continue;
        }
        out.push((hash, Arc::from(consumer)));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn decode_hex(hex: &str) -> Option<KeyHash> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_keys() {
        let hex = "a".repeat(64);
        let text = format!("# partners\n\nacme  k-1\n  globex sha256:{hex}\n");
        let keys = parse(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].0, <[u8; 32]>::from(sha2::Sha256::digest(b"k-1")));
        assert_eq!(keys[1].0, [0xaa; 32]);
        assert_eq!(&*keys[1].1, "globex");
    }

    #[test]
    fn problems_name_line_and_column() {
        let errs = parse("acme\nb sha256:zz\nc k\nd k\ne f g\n\"x\" k2\n").unwrap_err();
        let at: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.col)).collect();
        assert_eq!(at, vec![(1, 1), (2, 3), (4, 3), (5, 1), (6, 1)]);
        assert!(errs[2].message.contains("\"c\""));
    }
}
