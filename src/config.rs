//! Config files: their serde types, diagnostics with file:line:col, units, and the source
//! inventory. A leaf: it imports nothing else of the crate (compiling is each feature's job).

pub mod diag;
pub mod file;
pub mod inventory;
pub mod shape;
pub mod units;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use diag::{ConfigError, ConfigErrors, Diagnostics, SourceFile};

/// Reads one config file into memory.
pub fn read_source(path: &Path) -> Result<SourceFile, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::whole_file(path, format!("cannot read file: {e}")))?;
    Ok(SourceFile {
        path: path.to_path_buf(),
        text: Arc::from(text),
    })
}

/// Resolves a path from a config file against that file's folder.
pub fn resolve(config_file: &Path, relative: &str) -> PathBuf {
    let p = Path::new(relative);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config_file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// Stable 64-bit FNV-1a hash of config sources, shown as the config version.
pub fn version_hash<'a>(texts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = inventory::Fnv::default();
    for t in texts {
        h.write(t);
        // A separator byte, so moving text from one file to the next changes the version.
        h.write(&[0xff]);
    }
    format!("{:016x}", h.finish())
}
