//! The layer check (DESIGN.md "Layers"), run by `cargo test`: no module of the crate imports a
//! module of a higher layer, and no src file is over 600 lines.
//!
//! A port of `../shared/tools/layers.py` with the same layer table and rules: every `crate::X`
//! path outside `#[cfg(test)] mod` blocks and `//` comment lines counts, in `use` lines and
//! inline; `X` is a top-level module. Unlike the script, a `use crate::{...}` group spread over
//! several lines or nesting `{}` is read whole, and only its top-level names count.

use std::path::{Path, PathBuf};

/// The largest a src file may grow (DESIGN.md: files stay small).
const MAX_LINES: usize = 600;

/// The layer of a top-level module, bottom (1) to top (8); any module not named is a feature (3).
fn layer(module: &str) -> u8 {
    match module {
        "config" => 1,
        "body" | "net" | "conn" | "error" | "metrics" | "tls" | "logging" | "access_log"
        | "units" => 2,
        "runtime" => 4,
        "handler" => 5,
        "gateway" => 6,
        "server" | "admin" => 7,
        "app" | "main" | "demo" | "lib" | "bin" | "cli" => 8,
        _ => 3,
    }
}

/// The top-level module a file under src/ belongs to: `filter/auth/compile.rs` -> `filter`.
fn top_module(rel: &Path) -> String {
    let first = rel.components().next().expect("a path under src/");
    let first = first.as_os_str().to_string_lossy();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Skips whitespace from `i`.
fn skip_ws(s: &[char], mut i: usize) -> usize {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Reads an identifier at `i`: (the identifier, the index after it).
fn ident(s: &[char], i: usize) -> (String, usize) {
    let end = (i..s.len()).find(|&j| !is_ident(s[j])).unwrap_or(s.len());
    (s[i..end].iter().collect(), end)
}

/// The index after the `}` that closes the `{` just before `i`.
fn close_brace(s: &[char], mut i: usize) -> usize {
    let mut depth = 1;
    while i < s.len() && depth > 0 {
        match s[i] {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// If a `#[cfg(test)] [pub] mod NAME {` starts at `i`, the index after its opening brace.
fn test_module_at(s: &[char], i: usize) -> Option<usize> {
    const ATTR: &str = "#[cfg(test)]";
    if !ATTR
        .chars()
        .enumerate()
        .all(|(k, c)| s.get(i + k) == Some(&c))
    {
        return None;
    }
    let mut j = skip_ws(s, i + ATTR.len());
    let (mut word, mut next) = ident(s, j);
    if word == "pub" {
        j = skip_ws(s, next);
        (word, next) = ident(s, j);
    }
    if word != "mod" || next == j {
        return None;
    }
    let (name, after) = ident(s, skip_ws(s, next));
    let brace = skip_ws(s, after);
    (!name.is_empty() && s.get(brace) == Some(&'{')).then_some(brace + 1)
}

/// The text without what the check ignores: `#[cfg(test)] mod x { ... }` blocks and lines that
/// start with `//`. Both become blank lines, so line numbers still point into the file.
fn checked_text(text: &str) -> String {
    let s: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < s.len() {
        if let Some(body) = test_module_at(&s, i) {
            let end = close_brace(&s, body);
            out.extend(s[i..end].iter().filter(|&&c| c == '\n'));
            i = end;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out.split('\n')
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every top-level module a text names through `crate::`, with the line (1-based) it is named
/// on: `crate::a::b` gives `a`; `crate::{a::x, b::{y, z}}` gives `a` and `b`.
fn crate_uses(text: &str) -> Vec<(usize, String)> {
    let s: Vec<char> = text.chars().collect();
    let line_at = |i: usize| 1 + s[..i].iter().filter(|&&c| c == '\n').count();
    let pattern: Vec<char> = "crate::".chars().collect();
    let mut uses = Vec::new();
    let mut i = 0;
    while i + pattern.len() <= s.len() {
        let starts_word = i == 0 || !is_ident(s[i - 1]);
        if !(starts_word && s[i..i + pattern.len()] == pattern[..]) {
            i += 1;
            continue;
        }
        let j = i + pattern.len();
        if s.get(j) == Some(&'{') {
            // A group: the first name of each comma-separated item at depth 1.
            let end = close_brace(&s, j + 1);
            let (mut k, mut depth, mut item_start) = (j + 1, 1, true);
            while k < end {
                match s[k] {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && is_ident(c) => {
                        let (name, after) = ident(&s, k);
                        uses.push((line_at(k), name));
                        item_start = false;
                        k = after;
                        continue;
                    }
                    _ => {}
                }
                k += 1;
            }
            i = end;
        } else {
            let (name, after) = ident(&s, j);
            if !name.is_empty() {
                uses.push((line_at(j), name));
            }
            i = after.max(j);
        }
    }
    uses
}

/// `file:line uses crate::X (layer a -> b)` for each import of a higher layer in one file.
fn upward_uses(file: &str, module: &str, text: &str) -> Vec<String> {
    let mine = layer(module);
    crate_uses(&checked_text(text))
        .into_iter()
        .filter(|(_, name)| name != module && layer(name) > mine)
        .map(|(line, name)| {
            format!(
                "{file}:{line} uses crate::{name} (layer {mine} -> {})",
                layer(&name)
            )
        })
        .collect()
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// What the check finds in the crate's src/: (violations, files over [`MAX_LINES`], files read,
/// `crate::` uses read).
fn check_src() -> (Vec<String>, Vec<String>, usize, usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let (mut violations, mut big, mut files, mut uses) = (Vec::new(), Vec::new(), 0, 0);
    for path in rust_files(&src) {
        let text = std::fs::read_to_string(&path).unwrap();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let module = top_module(path.strip_prefix(&src).unwrap());
        files += 1;
        uses += crate_uses(&text).len();
        violations.extend(upward_uses(&rel, &module, &text));
        let lines = text.matches('\n').count();
        if lines > MAX_LINES {
            big.push(format!("{rel} has {lines} lines (over {MAX_LINES})"));
        }
    }
    violations.sort();
    violations.dedup();
    (violations, big, files, uses)
}

#[test]
fn no_lower_layer_imports_a_higher_one_and_no_src_file_is_too_long() {
    let (violations, big, files, uses) = check_src();
    assert!(
        files > 20 && uses > 50,
        "read only {files} files and {uses} crate:: uses"
    );
    assert!(
        violations.is_empty() && big.is_empty(),
        "layering (DESIGN.md \"Layers\"): {} violations, {} files over {MAX_LINES} lines\n{}\n{}",
        violations.len(),
        big.len(),
        violations.join("\n"),
        big.join("\n")
    );
}

#[test]
fn the_checker_catches_an_upward_import_in_a_synthetic_source() {
    let text = r#"//! A leaf that reaches up (layer 2).
use crate::config::Diagnostics;
use crate::error::GatewayError;
// use crate::server::Conn; (a comment does not count)
use crate::{body::Limited, handler::respond};
use crate::{
    net::Peer,
    gateway::{Gateway, ReloadStatus},
};
fn f() -> crate::route::Table {
    todo!()
}

#[cfg(test)]
mod tests {
    use crate::app::Running;
    fn nested() { if true { let _ = crate::admin::serve; } }
}
"#;
    assert_eq!(
        upward_uses("src/error.rs", "error", text),
        [
            "src/error.rs:5 uses crate::handler (layer 2 -> 5)",
            "src/error.rs:8 uses crate::gateway (layer 2 -> 6)",
            "src/error.rs:10 uses crate::route (layer 2 -> 3)",
        ]
    );
    // The same text in a top-layer module breaks no rule.
    assert!(upward_uses("src/app.rs", "app", text).is_empty());
    // `config/` imports nothing above itself, not even a leaf.
    assert_eq!(
        upward_uses(
            "src/config/file.rs",
            "config",
            "use crate::metrics::Metrics;\n"
        ),
        ["src/config/file.rs:1 uses crate::metrics (layer 1 -> 2)"]
    );
}

#[test]
fn modules_are_placed_in_their_layers() {
    assert_eq!(top_module(Path::new("filter/auth/compile.rs")), "filter");
    assert_eq!(top_module(Path::new("handler.rs")), "handler");
    let order = [
        "config", "tls", "route", "runtime", "handler", "gateway", "server", "app",
    ];
    let layers: Vec<u8> = order.iter().map(|m| layer(m)).collect();
    assert_eq!(layers, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(layer("bff"), 3, "unnamed modules are features");
}
