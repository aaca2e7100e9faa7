//! Reload on file change: notify watches the folders holding every source of the runtime
//! (gateway.toml, profile folders, certificates, keys, JWKS files), debounces bursts, and reloads
//! through [`Gateway::reload_by`] when the sources' contents changed.
//!
//! Folders are watched rather than files because editors save by writing a new file and renaming
//! it over the old one, and Kubernetes swaps a `..data` symlink: either way the watched file's
//! inode is gone, while its folder sees the event. A source that is itself a folder (the bff/
//! folder) is watched together with its parent, so deleting and recreating it is seen too. The
//! watch set is derived again after every reload and whenever a watched folder's inode changes.
//! A reload only happens when the bytes of some source changed, so touching a file or writing an
//! unrelated file into a watched folder costs a read, not a reload.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::inventory::fingerprint_bytes;
use crate::gateway::Gateway;

/// How often folders that could not be watched (missing) are tried again.
const RETRY: Duration = Duration::from_secs(1);

/// A running watcher; stops when dropped.
pub struct Watching {
    task: JoinHandle<()>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watching {
    /// Starts watching the gateway's sources. Returns `None` (and logs why) when the platform
    /// watcher cannot be created; reloads by SIGHUP and the admin API still work then.
    pub fn start(gateway: Arc<Gateway>) -> Option<Watching> {
        let events = Arc::new(Notify::new());
        let signal = events.clone();
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            match ev {
                Ok(ev) if !relevant(&ev.kind) => {}
                Ok(_) => signal.notify_one(),
                Err(e) => {
                    // E.g. a queue overflow: some events were lost, so check the files anyway.
                    tracing::debug!(error = %e, "file watcher error");
                    signal.notify_one();
                }
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch config files; reload with SIGHUP or POST /admin/reload");
                return None;
            }
        };
        // Set up before returning, so a change made right after start is never missed.
        let mut watched = Watched::default();
        watched.sync(&mut watcher, &desired(&gateway));
        let last = snapshot(&gateway.runtime().sources);
        let task = tokio::spawn(run(gateway, watcher, events, watched, last));
        Some(Watching { task })
    }

    /// Stops watching.
    pub fn stop(self) {
        drop(self);
    }
}

/// Opening and reading files (ours included) is not a change; finishing a write is.
fn relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

async fn run(
    gateway: Arc<Gateway>,
    mut watcher: RecommendedWatcher,
    events: Arc<Notify>,
    mut watched: Watched,
    mut last: Snapshot,
) {
    let mut status = gateway.reload_status();
    loop {
        let pending = !watched.missing.is_empty();
        tokio::select! {
            _ = events.notified() => {}
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
                // Another trigger reloaded (or the sources moved): watch what it uses now.
                watched.sync(&mut watcher, &desired(&gateway));
                continue;
            }
            _ = tokio::time::sleep(RETRY), if pending => {}
        }
        let rt = gateway.runtime();
        let debounce = rt.server.watch.debounce;
        let settle = tokio::time::sleep(debounce * 10);
        tokio::pin!(settle);
        // Wait for quiet, but not forever: a storm that never stops still reloads now and then.
        loop {
            tokio::select! {
                _ = events.notified() => continue,
                _ = tokio::time::sleep(debounce) => break,
                _ = &mut settle => break,
            }
        }
        watched.sync(&mut watcher, &desired(&gateway));
        if !gateway.runtime().server.watch.enabled {
            continue;
        }
        let sources = gateway.runtime().sources.clone();
        let snap = blocking(move || snapshot(&sources)).await;
        if snap == last {
            continue;
        }
        let before = snap.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
        last = snap;
        let g = gateway.clone();
        let ok = blocking(move || g.reload_by(crate::gateway::FILE_CHANGE).is_ok()).await;
        // Skip the status change this reload caused (it is handled right here).
        status.borrow_and_update();
        watched.sync(&mut watcher, &desired(&gateway));
        if ok && absolute_all(&gateway.runtime().sources) != before {
            // New sources: compare against them from scratch on the next event.
            last.clear();
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// What the watcher compares between events: each source with a fingerprint of its contents
/// (for a folder, of its files' names and contents), `None` when it cannot be read.
type Snapshot = Vec<(PathBuf, Option<u64>)>;

fn absolute_all(sources: &[PathBuf]) -> Vec<PathBuf> {
    sources.iter().map(|p| absolute(p)).collect()
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Reads every source and fingerprints it.
pub fn snapshot(sources: &[PathBuf]) -> Snapshot {
    sources
        .iter()
        .map(|p| {
            let p = absolute(p);
            let fp = fingerprint_path(&p);
            (p, fp)
        })
        .collect()
}

fn fingerprint_path(p: &Path) -> Option<u64> {
    let meta = std::fs::metadata(p).ok()?;
    if !meta.is_dir() {
        return std::fs::read(p).ok().map(|b| fingerprint_bytes(&b));
    }
    let mut files: Vec<(String, u64)> = std::fs::read_dir(p)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.is_file()))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let fp = std::fs::read(e.path()).map_or(0, |b| fingerprint_bytes(&b));
            (name, fp)
        })
        .collect();
    files.sort();
    let mut all = Vec::with_capacity(files.len() * 24);
    for (name, fp) in files {
        all.extend_from_slice(name.as_bytes());
        all.push(0);
        all.extend_from_slice(&fp.to_le_bytes());
    }
    Some(fingerprint_bytes(&all))
}

/// Folders to watch for a runtime: the parent of every source, and a folder source itself.
fn desired(gateway: &Gateway) -> BTreeSet<PathBuf> {
    let rt = gateway.runtime();
    if !rt.server.watch.enabled {
        return BTreeSet::new();
    }
    let mut sources = rt.sources.clone();
    sources.push(gateway.config_path().to_path_buf());
    watch_dirs(&sources)
}

/// The folders that must be watched to see every change of `sources`.
pub fn watch_dirs(sources: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for s in sources {
        let s = absolute(s);
        if s.is_dir() {
            dirs.insert(s.clone());
        }
        if let Some(parent) = s.parent() {
            dirs.insert(parent.to_path_buf());
        }
    }
    dirs
}

/// Folders being watched, by the inode they had when the watch was added.
#[derive(Default)]
struct Watched {
    dirs: BTreeMap<PathBuf, u64>,
    missing: BTreeSet<PathBuf>,
}

impl Watched {
    /// Makes the watch set `want`: adds new folders, drops old ones, and re-adds folders that
    /// were replaced (a new inode means the kernel's watch went with the old one).
    fn sync(&mut self, w: &mut RecommendedWatcher, want: &BTreeSet<PathBuf>) {
        let gone: Vec<PathBuf> = self
            .dirs
            .keys()
            .filter(|d| !want.contains(*d))
            .cloned()
            .collect();
        for d in gone {
            let _ = w.unwatch(&d);
            self.dirs.remove(&d);
        }
        self.missing.clear();
        for d in want {
            let ino = inode(d);
            match (ino, self.dirs.get(d)) {
                (Some(now), Some(&had)) if now == had => continue,
                (None, Some(_)) => {
                    let _ = w.unwatch(d);
                    self.dirs.remove(d);
                    self.missing.insert(d.clone());
                    continue;
                }
                (None, None) => {
                    self.missing.insert(d.clone());
                    continue;
                }
                (Some(_), Some(_)) => {
                    let _ = w.unwatch(d);
                    self.dirs.remove(d);
                }
                (Some(_), None) => {}
            }
            match w.watch(d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(d.clone(), ino.unwrap_or(0));
                    tracing::debug!(dir = %d.display(), "watching");
                }
                Err(e) => {
                    tracing::warn!(dir = %d.display(), error = %e, "cannot watch folder; will retry");
                    self.missing.insert(d.clone());
                }
            }
        }
    }
}

#[cfg(unix)]
fn inode(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.ino())
}

#[cfg(not(unix))]
fn inode(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|_| 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_of_files_and_folder_sources() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("bff")).unwrap();
        std::fs::write(root.join("gateway.toml"), "").unwrap();
        std::fs::create_dir(root.join("certs")).unwrap();
        let dirs = watch_dirs(&[
            root.join("gateway.toml"),
            root.join("bff"),
            root.join("certs/api.pem"),
        ]);
        let want: BTreeSet<PathBuf> = [root.to_path_buf(), root.join("bff"), root.join("certs")]
            .into_iter()
            .collect();
        assert_eq!(dirs, want);
    }

    #[test]
    fn snapshot_sees_content_not_touches() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("gateway.toml");
        let bff = dir.path().join("bff");
        std::fs::create_dir(&bff).unwrap();
        std::fs::write(&f, "a").unwrap();
        std::fs::write(bff.join("web.toml"), "w").unwrap();
        let sources = [f.clone(), bff.clone()];
        let s1 = snapshot(&sources);
        std::fs::write(&f, "a").unwrap();
        assert_eq!(s1, snapshot(&sources), "same bytes, same snapshot");
        std::fs::write(bff.join("web.toml"), "w2").unwrap();
        let s2 = snapshot(&sources);
        assert_ne!(s1, s2, "a profile edit changes the folder's fingerprint");
        std::fs::remove_file(&f).unwrap();
        assert_eq!(snapshot(&sources)[0].1, None);
    }
}
