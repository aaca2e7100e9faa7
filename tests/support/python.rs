//! Python peers of the tests (grpcio, websockets; installed by .ci/deps): a module check with a
//! clear message, and a server script that prints `port N` and is killed on drop.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// Fails the test with `hint` unless `python3 -c "import {modules}"` succeeds.
pub fn need_python_modules(modules: &str, hint: &str) {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{hint}");
}

/// A Python server started as `python3 SCRIPT server`, killed on drop.
pub struct PyServer {
    child: Child,
    /// Where it listens (the port from its first stdout line, `port N`).
    pub addr: SocketAddr,
}

impl PyServer {
    /// Starts `tests/python/{script} server` and waits for its `port N` line.
    pub fn start(script: &str) -> PyServer {
        let mut child = Command::new("python3")
            .args([&python_script(script), "server"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .strip_prefix("port ")
            .unwrap_or_else(|| panic!("{script} server said {line:?}"))
            .parse()
            .unwrap();
        PyServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of `tests/python/{name}`.
pub fn python_script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}
