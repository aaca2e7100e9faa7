//! Config diagnostics in tests: run `portico check` on a text, and find each expected error
//! at its `file:line:col` and key path.

use std::path::Path;

use super::child::portico_cli;
use super::gateway::write;

/// Writes `gateway_toml` (and `extra` files, e.g. a secret) to a temporary folder and runs
/// `portico check` on it; returns (exit code, stdout, stderr).
pub fn check_config(gateway_toml: &str, extra: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "gateway.toml", gateway_toml);
    for (name, text) in extra {
        write(dir.path(), name, text);
    }
    let path = dir.path().join("gateway.toml");
    portico_cli(&["check", "--config", path.to_str().unwrap()])
}

/// Asserts that `portico check` fails on `gateway_toml` and reports every line of `wanted`.
pub fn assert_check_reports(gateway_toml: &str, extra: &[(&str, &str)], wanted: &[&str]) {
    let (code, out, err) = check_config(gateway_toml, extra);
    assert_eq!(code, 1, "{out}{err}");
    for want in wanted {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}

/// Asserts that `errors` (diagnostics, one a line) hold, for each `(line:col, key, message)`
/// of `expect`, a line `gateway.toml:LINE:COL: KEY: ...MESSAGE...`.
pub fn assert_errors_at(errors: &str, expect: &[(&str, &str, &str)]) {
    for (pos, key, msg) in expect {
        let line = errors
            .lines()
            .find(|l| l.contains(&format!(": {key}: ")) && l.contains(msg))
            .unwrap_or_else(|| panic!("no error for {key} ({msg}) in:\n{errors}"));
        assert!(
            line.contains(&format!("gateway.toml:{pos}")),
            "{key} at {pos}: {line}"
        );
    }
}

/// Loads the config in `dir` (`gateway.toml` and the files it names) the way the gateway does
/// and returns its diagnostics, one a line; panics when it loads.
pub fn load_errors_in(dir: &Path) -> String {
    match portico::runtime::load(&dir.join("gateway.toml"), None) {
        Ok(_) => panic!("the config in {} loaded without errors", dir.display()),
        Err(e) => e.to_string(),
    }
}
