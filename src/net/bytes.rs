//! Comparisons and searches over short byte strings (header field names) done a word at a
//! time: a call to `memcmp` or `memchr` costs more than the whole check at these lengths.

/// `a == b`, in a few word compares: the first and last words of each length overlap rather
/// than leave a byte tail.
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if word8(a, i) != word8(b, i) {
                return false;
            }
            i += 8;
        }
        return word8(a, n - 8) == word8(b, n - 8);
    }
    if n >= 4 {
        return word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4);
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Whether the ASCII string `s` holds `byte`, eight bytes a step. (Bytes of 0x80 and above
/// may be missed in the eight-byte steps: for text that is ASCII by construction only.)
#[inline]
pub fn has_ascii_byte(s: &[u8], byte: u8) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i + 8 <= s.len() {
        // A byte of `v` is zero where `s` has `byte`; `(v - 1) & !v` sets its top bit then.
        let v = word8(s, i) ^ (ONES * u64::from(byte));
        if v.wrapping_sub(ONES) & !v & HIGH != 0 {
            return true;
        }
        i += 8;
    }
    // Not `contains`: its `memchr` call for at most seven bytes measured 139 instructions
    // more per proxied request (callgrind, `load-tests/profile`).
    #[allow(clippy::manual_contains)]
    s[i..].iter().any(|&c| c == byte)
}

fn word8(s: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_ne_bytes(w)
}

fn word4(s: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&s[at..at + 4]);
    u32::from_ne_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words() -> Vec<Vec<u8>> {
        (0..20u8).map(|n| (b'a'..b'a' + n).collect()).collect()
    }

    #[test]
    fn same_is_byte_equality() {
        for a in &words() {
            for b in &words() {
                assert_eq!(same(a, b), a == b);
                // One byte changed, wherever it is.
                for at in 0..b.len() {
                    let mut c = b.clone();
                    c[at] ^= 1;
                    assert!(!same(b, &c), "{b:?} {at}");
                }
            }
        }
    }

    #[test]
    fn has_ascii_byte_finds_it_anywhere() {
        for w in words() {
            assert!(!has_ascii_byte(&w, b'_'));
            for at in 0..w.len() {
                let mut c = w.clone();
                c[at] = b'_';
                assert!(has_ascii_byte(&c, b'_'), "{c:?}");
            }
        }
    }
}
