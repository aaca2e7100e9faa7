//! Build script: the git commit for `portico --version` and `portico_build_info`.

use std::process::Command;

fn main() {
    // A release build outside a checkout (a source tarball) may pass it in.
    let commit = std::env::var("PORTICO_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
                .filter(|c| !c.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=PORTICO_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=PORTICO_GIT_COMMIT");
    // A new commit moves HEAD (or the branch file it points to).
    for head in [".git/HEAD", ".git/logs/HEAD"] {
        if std::path::Path::new(head).exists() {
            println!("cargo:rerun-if-changed={head}");
        }
    }
}
