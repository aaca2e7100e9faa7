//! Records of the saga log and their framing: one line per record, `CRC32HEX JSON\n`. A line
//! whose checksum does not match (a torn write at a crash) is dropped and counted.

use serde::{Deserialize, Serialize};

/// A compensation as rendered when its step succeeded: everything needed to send it again
/// after a restart, without the templates or the client's request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoggedCall {
    /// The step it undoes.
    pub step: String,
    /// Upstream name.
    pub up: String,
    /// Method.
    pub m: String,
    /// Path and query.
    pub p: String,
    /// Headers (name, value).
    pub h: Vec<(String, String)>,
    /// JSON body text (empty: none).
    pub b: String,
    /// Tries before the saga is stuck.
    pub att: u32,
    /// First wait between tries, in milliseconds.
    pub bo_ms: u64,
    /// Time for one try, in milliseconds.
    pub to_ms: u64,
}

/// A replayable `Idempotency-Key` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyResult {
    /// Scoped key: endpoint, caller, client key.
    pub k: String,
    /// Fingerprint of the request body.
    pub fp: String,
    /// Status of the first answer.
    pub status: u16,
    /// Its content type.
    pub ct: String,
    /// Its body.
    pub body: String,
    /// Expiry, Unix milliseconds.
    pub exp: u64,
}

/// One saga transition (or a kept idempotency answer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Rec {
    /// Step `i` succeeded; `comp` is its rendered compensation. The first record of a saga
    /// also names its endpoint, steps and start time.
    Step {
        /// Saga id.
        id: String,
        /// Step index.
        i: usize,
        /// Endpoint id (first record only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ep: Option<String>,
        /// Step names (first record only).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<String>,
        /// Start time, Unix ms (first record only).
        #[serde(default)]
        ms: u64,
        /// The step's compensation, rendered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comp: Option<LoggedCall>,
    },
    /// A step failed (`failed`), or a recovery or an operator retry started: compensations run.
    Compensating {
        /// Saga id.
        id: String,
        /// The step that failed, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failed: Option<usize>,
    },
    /// The compensation of `step` succeeded.
    Compensated {
        /// Saga id.
        id: String,
        /// Step name.
        step: String,
    },
    /// A compensation ran out of attempts: the saga waits for an operator.
    Stuck {
        /// Saga id.
        id: String,
    },
    /// The saga is over (`done` or `compensated`); `key` is the answer kept for its
    /// `Idempotency-Key`, written in the same record.
    End {
        /// Saga id.
        id: String,
        /// `done` or `compensated`.
        state: String,
        /// The idempotency answer, if the request had a key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<KeyResult>,
    },
    /// An idempotency answer on its own (a failed saga's, or kept by a compaction).
    Key(KeyResult),
}

impl Rec {
    /// The saga the record belongs to (`None` for a lone key).
    pub fn saga_id(&self) -> Option<&str> {
        match self {
            Rec::Step { id, .. }
            | Rec::Compensating { id, .. }
            | Rec::Compensated { id, .. }
            | Rec::Stuck { id }
            | Rec::End { id, .. } => Some(id),
            Rec::Key(_) => None,
        }
    }
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// CRC-32 (IEEE) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// `CRC32HEX JSON\n`.
pub fn frame(rec: &Rec) -> Vec<u8> {
    let json = serde_json::to_vec(rec).unwrap_or_default();
    let mut out = Vec::with_capacity(json.len() + 10);
    out.extend_from_slice(format!("{:08x} ", crc32(&json)).as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
    out
}

/// What a log file holds: its good records in order, the bad ones dropped.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Records whose checksum matched.
    pub records: Vec<Rec>,
    /// Lines dropped (bad checksum, cut short, unreadable).
    pub bad: usize,
    /// Whether the last line was cut short (a crash mid-write).
    pub torn_tail: bool,
}

/// Splits `bytes` into records.
pub fn parse(bytes: &[u8]) -> Parsed {
    // The file's preallocated tail is zeros: the log ends at its last non-NUL byte (a NUL
    // inside, from a torn write, only spoils the line it is on).
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let mut out = Parsed::default();
    let mut rest = &bytes[..end];
    while !rest.is_empty() {
        let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(n) => (&rest[..n], true),
            None => (rest, false),
        };
        rest = if complete {
            &rest[line.len() + 1..]
        } else {
            &[]
        };
        match decode(line) {
            Some(r) if complete => out.records.push(r),
            _ => {
                out.bad += 1;
                out.torn_tail = !complete || rest.is_empty();
            }
        }
    }
    out
}

fn decode(line: &[u8]) -> Option<Rec> {
    if line.len() < 10 || line[8] != b' ' {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(&line[..8]).ok()?, 16).ok()?;
    let json = &line[9..];
    if crc32(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str) -> Rec {
        Rec::Step {
            id: id.into(),
            i: 0,
            ep: Some("shop POST /checkout".into()),
            steps: vec!["a".into()],
            ms: 1,
            comp: None,
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_torn_or_corrupt_line_is_dropped_and_counted() {
        let mut bytes = frame(&step("a"));
        let mut bad = frame(&step("b"));
        bad[12] ^= 1;
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&frame(&Rec::Stuck { id: "a".into() }));
        let whole = frame(&step("c"));
        bytes.extend_from_slice(&whole[..whole.len() / 2]);
        let p = parse(&bytes);
        assert_eq!(p.records, vec![step("a"), Rec::Stuck { id: "a".into() }]);
        assert_eq!(p.bad, 2);
        assert!(p.torn_tail);
        let p = parse(&frame(&step("a")));
        assert_eq!((p.records.len(), p.bad, p.torn_tail), (1, 0, false));
    }

    #[test]
    fn the_zero_filled_tail_ends_the_log_and_a_record_torn_into_it_is_dropped() {
        let mut bytes = frame(&step("a"));
        bytes.resize(bytes.len() + 4096, 0);
        let p = parse(&bytes);
        assert_eq!((p.records, p.bad, p.torn_tail), (vec![step("a")], 0, false));
        // A write cut mid-record leaves its first part, then zeros.
        let mut bytes = frame(&step("a"));
        let b = frame(&step("b"));
        bytes.extend_from_slice(&b[..b.len() / 2]);
        bytes.resize(bytes.len() + 4096, 0);
        let p = parse(&bytes);
        assert_eq!((p.records, p.bad, p.torn_tail), (vec![step("a")], 1, true));
    }
}
