//! An in-process gateway started from a config in a temporary folder, and the file, admin,
//! metrics and reload helpers tests drive it with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;

use super::client::{Answer, get, send};

/// A gateway started in-process from a config written to a temporary folder.
pub struct TestGateway {
    pub running: Option<portico::Running>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestGateway {
    /// Writes `gateway_toml` (plus `extra` files, e.g. `bff/web.toml`) and starts the gateway.
    pub async fn start_with_files(gateway_toml: &str, extra: &[(&str, &str)]) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "gateway.toml", gateway_toml);
        for (name, text) in extra {
            write(dir.path(), name, text);
        }
        let running = portico::Running::start(&dir.path().join("gateway.toml"))
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
        let addr = running.http_addr();
        TestGateway {
            running: Some(running),
            addr,
            dir,
        }
    }

    /// Starts a gateway from one gateway.toml text.
    pub async fn start(gateway_toml: &str) -> TestGateway {
        Self::start_with_files(gateway_toml, &[]).await
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// The running gateway.
    pub fn running(&self) -> &portico::Running {
        self.running.as_ref().unwrap()
    }
}

/// Writes a file under `dir`, creating folders.
pub fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Replaces a file the way editors and config tools do: write a temporary file beside it, then
/// rename it over the old one.
pub fn save_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// GET on the admin listener of an in-process gateway.
pub async fn admin_get(running: &portico::Running, path: &str) -> Answer {
    let addr = running.admin_addr().expect("admin listener enabled");
    get(&format!("http://{addr}{path}")).await
}

/// POST (empty body) on the admin listener of an in-process gateway.
pub async fn admin_post(running: &portico::Running, path: &str) -> Answer {
    let addr = running.admin_addr().expect("admin listener enabled");
    send(
        Request::post(format!("http://{addr}{path}"))
            .body(Full::default())
            .unwrap(),
    )
    .await
}

/// Waits (bounded) for the next reload attempt of an in-process gateway after `rx` was taken.
pub async fn next_reload(
    rx: &mut tokio::sync::watch::Receiver<portico::gateway::ReloadStatus>,
    within: Duration,
) -> portico::gateway::ReloadStatus {
    tokio::time::timeout(within, rx.changed())
        .await
        .expect("no reload happened in time")
        .unwrap();
    rx.borrow_and_update().clone()
}

/// The profile files shipped in the repository's `bff/` folder, as (relative path, text).
pub fn shipped_profiles() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bff");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = format!("bff/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}
