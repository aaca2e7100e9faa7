//! The durable saga log: `DIR/saga.log`, appended to by one writer thread. Records that
//! arrive together are written together and fsynced once (group commit); each caller waits
//! for its record to be on disk before making the next backend call. When the file passes
//! its bound, it is rewritten with only what is still live (unfinished sagas, unexpired
//! idempotency answers): temp file, fsync, rename, fsync of the folder.
//!
//! The file is preallocated: records overwrite a zero-filled tail, grown a chunk at a time,
//! so a record's fdatasync flushes its data block only, not the file size and the journal
//! commit an append needs (about a third less latency on ext4). The log ends at its last
//! non-NUL byte (`record::parse`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use super::record::{self, KeyResult, Parsed, Rec};

const FILE: &str = "saga.log";
const TEMP: &str = "saga.log.tmp";
/// Most records written (and fsynced) in one go.
const MAX_BATCH: usize = 512;
/// Largest step by which the zero-filled tail grows (smaller when `compact_at` is small).
const MAX_CHUNK: u64 = 1 << 20;

/// How the writer keeps the file.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// fsync each batch before acknowledging it.
    pub fsync: bool,
    /// Size that triggers a rewrite (the next one at twice the live size if that is more).
    pub compact_at: u64,
    /// Most idempotency answers kept by a rewrite (the ones expiring first are dropped).
    pub max_keys: usize,
}

struct Job {
    rec: Rec,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// A handle on the writer thread.
#[derive(Debug)]
pub struct Log {
    tx: std::sync::Mutex<mpsc::Sender<Job>>,
    /// The log file.
    pub path: PathBuf,
}

/// What is live: the records of unfinished sagas and the idempotency answers.
#[derive(Default)]
struct Live {
    sagas: HashMap<String, Vec<Vec<u8>>>,
    keys: HashMap<String, (u64, Vec<u8>)>,
}

impl Live {
    fn apply(&mut self, rec: &Rec, line: Vec<u8>) {
        match rec {
            Rec::End { id, key, .. } => {
                self.sagas.remove(id);
                if let Some(k) = key {
                    self.key(k);
                }
            }
            Rec::Key(k) => self.key(k),
            other => {
                let id = other.saga_id().unwrap_or_default();
                self.sagas.entry(id.to_owned()).or_default().push(line);
            }
        }
    }

    fn key(&mut self, k: &KeyResult) {
        let line = record::frame(&Rec::Key(k.clone()));
        self.keys.insert(k.k.clone(), (k.exp, line));
    }

    /// The live lines, dropping expired answers and, over `max_keys`, the first to expire.
    fn lines(&mut self, now_ms: u64, max_keys: usize) -> Vec<u8> {
        self.keys.retain(|_, (exp, _)| *exp > now_ms);
        if self.keys.len() > max_keys {
            let mut by_exp: Vec<(u64, String)> = self
                .keys
                .iter()
                .map(|(k, (e, _))| (*e, k.clone()))
                .collect();
            by_exp.sort_unstable();
            for (_, k) in by_exp.iter().take(self.keys.len() - max_keys) {
                self.keys.remove(k);
            }
        }
        let mut out = Vec::new();
        for lines in self.sagas.values() {
            for l in lines {
                out.extend_from_slice(l);
            }
        }
        for (_, l) in self.keys.values() {
            out.extend_from_slice(l);
        }
        out
    }
}

impl Log {
    /// Opens (creating) `dir/saga.log`, reads what it holds, rewrites it with the live records
    /// only (which also cuts a torn last record), and starts the writer thread.
    pub fn open(dir: &Path, policy: Policy) -> Result<(Log, Parsed), String> {
        create_dir(dir)?;
        let path = dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let parsed = record::parse(&bytes);
        let mut live = Live::default();
        for r in &parsed.records {
            live.apply(r, record::frame(r));
        }
        let tail = rewrite(
            dir,
            &mut live,
            policy.max_keys,
            chunk_for(policy.compact_at),
        )?;
        let (tx, rx) = mpsc::channel::<Job>();
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("saga-log".into())
            .spawn(move || writer(rx, tail, live, dir, policy))
            .map_err(|e| format!("cannot start the saga log writer: {e}"))?;
        Ok((
            Log {
                tx: std::sync::Mutex::new(tx),
                path,
            },
            parsed,
        ))
    }

    /// Appends `rec`; resolves once it is written (and fsynced, unless `fsync = false`).
    pub async fn append(&self, rec: Rec) -> Result<(), String> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Job { rec, done });
        if sent.is_err() {
            return Err("the saga log writer stopped".into());
        }
        wait.await
            .unwrap_or_else(|_| Err("the saga log writer stopped".into()))
    }
}

fn create_dir(dir: &Path) -> Result<(), String> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .map_err(|e| format!("cannot create saga dir {}: {e}", dir.display()))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The open log file: records end at `end`; from there to `allocated` it holds zeros.
struct Tail {
    file: File,
    end: u64,
    allocated: u64,
    chunk: u64,
}

impl Tail {
    /// Writes `buf` at the end (growing the zero-filled tail first when it is too short);
    /// the caller syncs.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let need = self.end + buf.len() as u64;
        if need > self.allocated {
            let to = need.div_ceil(self.chunk) * self.chunk + self.chunk;
            zero_fill(&self.file, self.allocated, to)?;
            self.allocated = to;
        }
        self.file.write_all_at(buf, self.end)?;
        self.end = need;
        Ok(())
    }
}

/// Writes zeros over `from..to` (real blocks, so later overwrites change no metadata).
fn zero_fill(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; (to - from).min(64 << 10) as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Writes the live records to a temp file with a zero-filled tail of `chunk` bytes, fsyncs
/// it, renames it over the log and fsyncs the folder. Returns the new file.
fn rewrite(dir: &Path, live: &mut Live, max_keys: usize, chunk: u64) -> Result<Tail, String> {
    let temp = dir.join(TEMP);
    let err = |what: &str, e: std::io::Error| format!("saga log {what}: {e}");
    let bytes = live.lines(now_ms(), max_keys);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| err("temp file", e))?;
    f.write_all(&bytes).map_err(|e| err("write", e))?;
    let end = bytes.len() as u64;
    let allocated = end + chunk;
    zero_fill(&f, end, allocated).map_err(|e| err("write", e))?;
    f.sync_all().map_err(|e| err("fsync", e))?;
    std::fs::rename(&temp, dir.join(FILE)).map_err(|e| err("rename", e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err("fsync of the folder", e))?;
    Ok(Tail {
        file: f,
        end,
        allocated,
        chunk,
    })
}

/// The tail's growth step: an eighth of `compact_at`, between one page and `MAX_CHUNK`.
fn chunk_for(compact_at: u64) -> u64 {
    (compact_at / 8).clamp(4096, MAX_CHUNK)
}

fn writer(rx: mpsc::Receiver<Job>, mut tail: Tail, mut live: Live, dir: PathBuf, policy: Policy) {
    let mut bound = policy.compact_at.max(tail.end.saturating_mul(2));
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut buf = Vec::new();
        for j in &batch {
            let line = record::frame(&j.rec);
            buf.extend_from_slice(&line);
            live.apply(&j.rec, line);
        }
        let written = tail
            .write(&buf)
            .and_then(|()| {
                if policy.fsync {
                    tail.file.sync_data()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| format!("saga log write: {e}"));
        for j in batch {
            let _ = j.done.send(written.clone());
        }
        if tail.end > bound {
            match rewrite(&dir, &mut live, policy.max_keys, tail.chunk) {
                Ok(t) => {
                    tracing::debug!(from = tail.end, to = t.end, "saga log compacted");
                    bound = policy.compact_at.max(t.end.saturating_mul(2));
                    tail = t;
                }
                Err(e) => {
                    tracing::error!("saga log compaction failed: {e}");
                    bound = bound.saturating_mul(2);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(compact_at: u64) -> Policy {
        Policy {
            fsync: true,
            compact_at,
            max_keys: 10,
        }
    }

    fn step(id: &str) -> Rec {
        Rec::Step {
            id: id.into(),
            i: 0,
            ep: None,
            steps: Vec::new(),
            ms: 0,
            comp: None,
        }
    }

    fn end(id: &str) -> Rec {
        Rec::End {
            id: id.into(),
            state: "done".into(),
            key: None,
        }
    }

    #[tokio::test]
    async fn finished_sagas_are_dropped_when_the_log_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), policy(4096)).unwrap();
        log.append(step("open")).await.unwrap();
        for n in 0..200 {
            let id = format!("s{n}");
            log.append(step(&id)).await.unwrap();
            log.append(end(&id)).await.unwrap();
        }
        let bytes = std::fs::read(&log.path).unwrap();
        let used = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        assert!(used <= 4096 + 200, "log not bounded: {used} bytes");
        assert!(
            bytes.len() <= used + 2 * 4096,
            "tail too long: {} bytes",
            bytes.len()
        );
        drop(log);
        let (_, parsed) = Log::open(dir.path(), policy(4096)).unwrap();
        assert!(parsed.records.contains(&step("open")));
        assert_eq!(parsed.bad, 0);
    }

    #[tokio::test]
    async fn a_torn_tail_is_reported_and_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = record::frame(&step("a"));
        bytes.extend_from_slice(&record::frame(&step("b"))[..20]);
        std::fs::write(dir.path().join(FILE), &bytes).unwrap();
        let (log, parsed) = Log::open(dir.path(), policy(1 << 20)).unwrap();
        assert_eq!(parsed.records, vec![step("a")]);
        assert!(parsed.torn_tail);
        log.append(step("c")).await.unwrap();
        let again = record::parse(&std::fs::read(&log.path).unwrap());
        assert_eq!(again.records, vec![step("a"), step("c")]);
        assert_eq!(again.bad, 0);
    }
}
