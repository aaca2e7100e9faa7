//! The load-test backend (`portico-fixed-backend`) as a child process: a fixed answer to every
//! request, no allocation in this test process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// The backend process, killed when dropped.
pub struct FixedBackend {
    child: Child,
    pub addr: SocketAddr,
}

impl FixedBackend {
    /// Starts it answering `body_bytes` of JSON to every request.
    pub fn start(body_bytes: usize) -> FixedBackend {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portico-fixed-backend"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--body-bytes",
                &body_bytes.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("backend starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("backend prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        FixedBackend { child, addr }
    }
}

impl Drop for FixedBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
