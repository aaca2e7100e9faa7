//! Config loading: read files, parse (file types), validate and compile (runtime types).

pub mod diag;
pub mod file;
pub mod inventory;
pub mod lifecycle;
pub mod runtime;
pub mod units;
pub mod watch;

mod compile;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use diag::{ConfigError, ConfigErrors, SourceFile};
pub use runtime::Runtime;

/// Reads, validates and compiles the config rooted at `path` (gateway.toml and what it refers
/// to). `previous` lends the state that must survive a reload (connection pools, rate-limit
/// buckets, endpoint health) to the parts whose settings did not change. Nothing is changed on
/// error: the caller keeps serving the previous runtime.
pub fn load(path: &Path, previous: Option<&Runtime>) -> Result<Runtime, ConfigErrors> {
    let source = read_source(path)?;
    let file: file::GatewayFile =
        toml::from_str(&source.text).map_err(|e| ConfigErrors(vec![source.toml_error(&e)]))?;
    let profiles = crate::bff::read_profiles(&source, &file.bff);
    compile::compile(file, &source, &profiles, previous)
}

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
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in texts {
        for &b in t {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
