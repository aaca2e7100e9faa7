//! The config loader: any gateway.toml text gives a runtime or diagnostics, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = dir().path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    if let Err(errors) = portico::runtime::load(&path, None) {
        // Every diagnostic renders (file:line:col inside the text).
        let _ = errors.to_string();
    }
});
