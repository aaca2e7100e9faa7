//! A BFF profile builder (`bff/NAME.toml`), so tests state the endpoints and parts they need
//! instead of repeating `[[endpoints.parts]]` tables. Self-contained, so benches include it
//! too with `#[path]`.

/// A profile being built. Its text, line by line: `mount`, the profile keys, then each
/// endpoint (`[[endpoints]]`, `path`, its keys) followed by its parts (`[[endpoints.parts]]`,
/// `name`, `upstream`, `path`, their keys), parts indented by two spaces; no blank lines.
#[derive(Clone)]
pub struct ProfileToml {
    text: String,
}

/// Starts a profile mounted at `mount`.
pub fn profile(mount: &str) -> ProfileToml {
    ProfileToml {
        text: format!("mount = \"{mount}\"\n"),
    }
}

impl ProfileToml {
    /// Keys of the profile (before the first endpoint) or of the last endpoint, one per line
    /// (e.g. `deadline = "2s"`).
    pub fn keys(mut self, lines: &str) -> Self {
        for line in lines.trim_matches('\n').lines() {
            self.text.push_str(line);
            self.text.push('\n');
        }
        self
    }

    /// A new `[[endpoints]]` at `path`.
    pub fn endpoint(mut self, path: &str) -> Self {
        self.text
            .push_str(&format!("[[endpoints]]\npath = \"{path}\"\n"));
        self
    }

    /// A part of the last endpoint: `name`, `upstream`, backend `path`, and `extra` keys one
    /// per line (e.g. `required = true`).
    pub fn part(mut self, name: &str, upstream: &str, path: &str, extra: &str) -> Self {
        self.text.push_str(&format!(
            "  [[endpoints.parts]]\n  name = \"{name}\"\n  upstream = \"{upstream}\"\n  path = \"{path}\"\n"
        ));
        for line in extra.trim_matches('\n').lines() {
            self.text.push_str(&format!("  {}\n", line.trim_start()));
        }
        self
    }

    /// The profile text.
    pub fn build(&self) -> String {
        self.text.clone()
    }
}
