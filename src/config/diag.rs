//! Config diagnostics: every problem names its file, line, column and key path.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem has no position (a missing file).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Dotted key path, e.g. `routes[2].upstream` or `upstreams.users.timeout`.
    pub key: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file.display())?;
        } else {
            write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.col)?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one pass over the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// A single error with no position in a file (e.g. the file cannot be read).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            key: String::new(),
            message: message.into(),
        }])
    }
}

/// The text of one config file, used to turn byte spans into line:col.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as given (relative paths stay relative for readable messages).
    pub path: PathBuf,
    /// The file's text.
    pub text: Arc<str>,
}

impl SourceFile {
    /// 1-based line and column of a byte offset (columns count characters).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// Turns a TOML parse or shape error into a located config error.
    pub fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span().unwrap_or(0..0);
        let (line, col) = self.line_col(span.start);
        ConfigError {
            file: self.path.clone(),
            line,
            col,
            key: key_path_at(&self.text, span.start),
            message: err.message().trim().to_string(),
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Best-effort dotted key path at a byte offset: the enclosing `[table]` header plus the key on
/// that line. Used for serde errors, which carry a span but no path.
fn key_path_at(text: &str, offset: usize) -> String {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let mut table = String::new();
    for line in text[..line_start].lines() {
        let l = line.trim();
        if l.starts_with('[') && !l.starts_with("[[") {
            table = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        } else if l.starts_with("[[") {
            table = l.trim_matches(|c| c == '[' || c == ']').trim().to_string() + "[]";
        }
    }
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    if line.starts_with('[') {
        return line
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string();
    }
    let key = line.split('=').next().unwrap_or("").trim();
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

/// Collects errors for one file while validating, so every problem is reported in one pass.
pub struct Diagnostics<'a> {
    /// The file being checked.
    pub source: &'a SourceFile,
    /// Problems found so far (shared across files).
    pub errors: &'a mut Vec<ConfigError>,
}

impl Diagnostics<'_> {
    /// Records a problem at a span of the file.
    pub fn error(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, col) = self.source.line_col(span.start);
        self.errors.push(ConfigError {
            file: self.source.path.clone(),
            line,
            col,
            key: key.into(),
            message: message.into(),
        });
    }

    /// Parses a spanned value, recording the parser's message on failure.
    pub fn parse<T>(
        &mut self,
        value: &toml::Spanned<String>,
        key: impl Into<String>,
        parser: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parser(value.get_ref()) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.error(value.span(), key, msg);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_and_key_path() {
        let src = SourceFile {
            path: "g.toml".into(),
            text: "[server]\nlisten = 1\n\n[[routes]]\nid = \"a\"\n".into(),
        };
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(9), (2, 1));
        assert_eq!(key_path_at(&src.text, 9), "server.listen");
        assert_eq!(
            key_path_at(&src.text, src.text.find("id").unwrap()),
            "routes[].id"
        );
    }
}
