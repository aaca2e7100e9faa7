//! The access-log file sink: `[log] access_log_file`, appended to, in its own format, and
//! reopened on SIGUSR1 (after logrotate has renamed it) so lines go to a new file.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwapOption;

/// `[log] access_log_file` and `access_log_format`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSettings {
    /// The file lines are appended to.
    pub path: PathBuf,
    /// JSON lines instead of text; `None`: as on stderr (`--log-format`).
    pub json: Option<bool>,
}

/// An open access-log file.
#[derive(Debug)]
pub struct Sink {
    settings: FileSettings,
    /// JSON lines instead of text; `None`: as on stderr.
    pub json: Option<bool>,
    file: Mutex<File>,
}

static SINK: ArcSwapOption<Sink> = ArcSwapOption::const_empty();

/// Compiles `[log] access_log_file` and `access_log_format`; the file is opened once here so
/// `portico check` reports a path that cannot be written.
pub fn compile(
    d: &mut crate::config::Diagnostics,
    log: &crate::config::file::LogFile,
) -> Option<FileSettings> {
    let json = match log.access_log_format.as_ref() {
        None => None,
        Some(f) => match f.get_ref().as_str() {
            "text" => Some(false),
            "json" => Some(true),
            other => {
                d.error(
                    f.span(),
                    "log.access_log_format",
                    format!("unknown format \"{other}\": use \"text\" or \"json\""),
                );
                None
            }
        },
    };
    let file = log.access_log_file.as_ref()?;
    if file.get_ref().is_empty() {
        d.error(file.span(), "log.access_log_file", "must not be empty");
        return None;
    }
    let path = crate::config::resolve(&d.source.path, file.get_ref());
    if let Err(e) = open(&path) {
        d.error(
            file.span(),
            "log.access_log_file",
            format!("cannot open {} for appending: {e}", path.display()),
        );
        return None;
    }
    Some(FileSettings { path, json })
}

/// Opens `path` for appending (creating it), as the sink does.
pub fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Sink {
    /// Appends one formatted line; a failed write is dropped (the request is not affected).
    pub fn write(&self, line: &[u8]) {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(line);
    }
}

/// Runs `f` with the file sink, when one is configured.
pub fn with(f: impl FnOnce(&Sink)) {
    if let Some(sink) = &*SINK.load() {
        f(sink);
    }
}

/// Makes `settings` the file sink (at start and after each reload); the file is kept open
/// when the settings did not change. Errors name the file.
pub fn activate(settings: Option<&FileSettings>) -> Result<(), String> {
    let current = SINK.load_full();
    match (settings, current) {
        (None, _) => SINK.store(None),
        (Some(s), Some(cur)) if cur.settings == *s => {}
        (Some(s), _) => {
            let file = open(&s.path)
                .map_err(|e| format!("cannot open access_log_file {}: {e}", s.path.display()))?;
            SINK.store(Some(Arc::new(Sink {
                settings: s.clone(),
                json: s.json,
                file: Mutex::new(file),
            })));
            listen_for_reopen();
        }
    }
    Ok(())
}

/// Reopens the file at its path (logrotate has moved the old one away).
pub fn reopen() {
    let Some(cur) = SINK.load_full() else { return };
    match open(&cur.settings.path) {
        Ok(file) => {
            *cur.file.lock().unwrap_or_else(|e| e.into_inner()) = file;
            tracing::info!(file = %cur.settings.path.display(), "access log reopened");
        }
        Err(e) => tracing::error!(
            file = %cur.settings.path.display(),
            error = %e,
            "cannot reopen the access log; lines go to the old file"
        ),
    }
}

/// Starts the SIGUSR1 listener once per process (inside a Tokio runtime only).
fn listen_for_reopen() {
    static STARTED: OnceLock<()> = OnceLock::new();
    #[cfg(unix)]
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        STARTED.get_or_init(|| {
            handle.spawn(async {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
                    tracing::warn!("cannot listen for SIGUSR1; the access log is not reopened");
                    return;
                };
                while usr1.recv().await.is_some() {
                    reopen();
                }
            });
        });
    }
}
