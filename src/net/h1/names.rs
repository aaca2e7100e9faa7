//! The field names of the last head read on a connection, kept so the next head's names
//! become `HeaderName`s by a byte comparison rather than a parse: a client (or an upstream)
//! sends the same names in the same order on every exchange.

use http::header::{HeaderName, InvalidHeaderName};

use crate::net::bytes::same;

/// Most names remembered, and most bytes of them: a head with more (or longer) fields is
/// parsed as usual past that point, so a hostile peer cannot grow the cache.
const MAX_NAMES: usize = 32;
const MAX_BYTES: usize = 1024;

/// A connection's remembered field names, in the order the last head sent them. Boxed on
/// first use: a connection's task carries one pointer for it, whatever it holds.
#[derive(Debug, Default)]
pub struct Names(Option<Box<Known>>);

#[derive(Debug, Default)]
struct Known {
    /// The names as sent (any case), back to back.
    raw: Vec<u8>,
    /// Per field: where its name is in `raw`, and the parsed name.
    known: Vec<(u16, u16, HeaderName)>,
}

impl Names {
    /// The name of field `i` of a head, sent as `sent`: the remembered one when field `i` of
    /// the last head was sent the same way, else parsed (and remembered, in place of field `i`
    /// and those after it). Exactly [`HeaderName::from_bytes`]'s answer either way.
    #[inline]
    pub fn get(&mut self, i: usize, sent: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
        if let Some(k) = &self.0 {
            if let Some((start, end, name)) = k.known.get(i) {
                if same(&k.raw[usize::from(*start)..usize::from(*end)], sent) {
                    return Ok(name.clone());
                }
            }
        }
        self.0.get_or_insert_with(Box::default).learn(i, sent)
    }
}

impl Known {
    /// Field `i` is not the one remembered: parsed, and remembered in its place.
    #[cold]
    fn learn(&mut self, i: usize, sent: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
        if i > self.known.len() {
            // An earlier field was not remembered (past the limits): neither is this one.
            return HeaderName::from_bytes(sent);
        }
        // This head differs from the last one from here on.
        self.known.truncate(i);
        self.raw
            .truncate(self.known.last().map_or(0, |&(_, end, _)| usize::from(end)));
        let name = HeaderName::from_bytes(sent)?;
        let start = self.raw.len();
        if self.known.len() < MAX_NAMES && start + sent.len() <= MAX_BYTES {
            self.raw.extend_from_slice(sent);
            // Both fit: MAX_BYTES is below u16::MAX.
            let at = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
            self.known
                .push((at(start), at(self.raw.len()), name.clone()));
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: &Names) -> &Known {
        n.0.as_deref().expect("something remembered")
    }

    fn names(n: &mut Names, sent: &[&str]) -> Vec<String> {
        sent.iter()
            .enumerate()
            .map(|(i, s)| n.get(i, s.as_bytes()).unwrap().as_str().to_owned())
            .collect()
    }

    #[test]
    fn a_repeated_head_is_answered_from_memory_and_a_changed_one_is_parsed_again() {
        let mut n = Names::default();
        let first = ["Host", "User-Agent", "x-trace"];
        assert_eq!(names(&mut n, &first), ["host", "user-agent", "x-trace"]);
        assert_eq!(k(&n).known.len(), 3);
        assert_eq!(names(&mut n, &first), ["host", "user-agent", "x-trace"]);
        // The second field differs: it and the ones after it are replaced.
        let second = ["Host", "accept", "X-Other", "x-trace"];
        assert_eq!(
            names(&mut n, &second),
            ["host", "accept", "x-other", "x-trace"]
        );
        assert_eq!(k(&n).raw, b"HostacceptX-Otherx-trace");
        // Same letters, other case: still the same names.
        assert_eq!(names(&mut n, &["HOST"]), ["host"]);
    }

    #[test]
    fn nothing_is_allocated_before_the_first_head() {
        let mut n = Names::default();
        assert!(n.0.is_none());
        assert_eq!(n.get(0, b"Host").unwrap(), "host");
        assert_eq!(n.0.as_ref().map(|k| k.known.len()), Some(1));
    }

    #[test]
    fn invalid_names_are_refused_and_not_remembered() {
        let mut n = Names::default();
        assert!(n.get(0, b"host").is_ok());
        assert!(n.get(1, b"bad name").is_err());
        assert!(n.get(1, b"").is_err());
        assert_eq!(k(&n).known.len(), 1);
        // A field after a refused one is parsed, not remembered out of place.
        assert_eq!(n.get(2, b"accept").unwrap(), "accept");
        assert_eq!(k(&n).known.len(), 1);
        // The same bytes as a remembered name are the same name; other bytes are checked.
        assert!(n.get(0, b"ho st").is_err());
        assert_eq!(k(&n).known.len(), 0);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut n = Names::default();
        let long = "x".repeat(600);
        for round in 0..2 {
            for i in 0..40 {
                let sent = if i < 2 { long.clone() } else { format!("f{i}") };
                assert_eq!(n.get(i, sent.as_bytes()).unwrap().as_str(), sent, "{round}");
            }
        }
        assert_eq!(
            k(&n).known.len(),
            1,
            "the second 600-byte name is past MAX_BYTES"
        );
        assert!(k(&n).raw.len() <= MAX_BYTES);
        let mut n = Names::default();
        for i in 0..40 {
            n.get(i, format!("f{i}").as_bytes()).unwrap();
        }
        assert_eq!(k(&n).known.len(), MAX_NAMES);
    }
}
