//! Access-log lines from the real binary: text and JSON shapes, one line per request, and
//! `RUST_LOG` still decides whether they are written.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::*;

/// `portico run` with stderr read line by line on a thread.
struct Gateway {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl Gateway {
    fn start(config: &std::path::Path, rust_log: &str, format: &str) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["--log-format", format, "run", "--config"])
            .arg(config)
            .env("RUST_LOG", rust_log)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut gw = Gateway {
            child,
            lines,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let listening = gw.next_line_with("listening (HTTP/1.1");
        let at = listening
            .find("127.0.0.1:")
            .expect("address in the listening line");
        let addr: String = listening[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect();
        gw.addr = addr.parse().unwrap();
        gw
    }

    /// The next stderr line containing `needle` (bounded wait).
    fn next_line_with(&self, needle: &str) -> String {
        let mut seen = Vec::new();
        loop {
            let Ok(line) = self.lines.recv_timeout(Duration::from_secs(60)) else {
                panic!("no stderr line with {needle:?} within 60s; saw {seen:?}");
            };
            if line.contains(needle) {
                return line;
            }
            seen.push(line);
        }
    }

    /// Stops the gateway and returns every stderr line it wrote after the ones already read.
    fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        self.lines.try_iter().collect()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: a\r\nx-request-id: req-42\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

async fn config() -> (Backend, tempfile::TempDir, std::path::PathBuf) {
    let echo = Backend::echo("a").await;
    let dir = tempfile::tempdir().unwrap();
    let text = support::config()
        .server("workers = 1")
        .upstream("one", &[echo.addr])
        .route("users", "/api", "one")
        .build();
    write(dir.path(), "gateway.toml", &text);
    let path = dir.path().join("gateway.toml");
    (echo, dir, path)
}

#[tokio::test(flavor = "multi_thread")]
async fn text_lines_name_every_field() {
    let (_echo, _dir, path) = config().await;
    let gw = Gateway::start(&path, "info", "text");
    assert!(get(gw.addr, "/api/users/7?x=1").starts_with("HTTP/1.1 200"));
    let line = gw.next_line_with("access:");
    for part in [
        "INFO access: method=GET",
        "path=\"/api/users/7\"",
        "route=\"users\"",
        "status=200",
        "upstream=\"one\"",
        "request_id=\"req-42\"",
        "peer=127.0.0.1:",
    ] {
        assert!(line.contains(part), "{part} missing in {line}");
    }
    assert!(get(gw.addr, "/nowhere").starts_with("HTTP/1.1 404"));
    let line = gw.next_line_with("access:");
    assert!(
        line.contains("route=\"-\" status=404 upstream=\"-\""),
        "{line}"
    );
    let rest = gw.stop();
    assert!(
        !rest.iter().any(|l| l.contains("access:")),
        "one line per request: {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_parse() {
    let (_echo, _dir, path) = config().await;
    let gw = Gateway::start(&path, "info", "json");
    assert!(get(gw.addr, "/api/x").starts_with("HTTP/1.1 200"));
    let line = gw.next_line_with("\"target\":\"access\"");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["path"], "/api/x");
    assert_eq!(v["status"], 200);
    assert_eq!(v["route"], "users");
    assert!(v["duration_us"].as_u64().is_some());
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_log_can_turn_them_off() {
    let (_echo, _dir, path) = config().await;
    let gw = Gateway::start(&path, "info,access=off", "text");
    assert!(get(gw.addr, "/api/x").starts_with("HTTP/1.1 200"));
    let rest = gw.stop();
    assert!(!rest.iter().any(|l| l.contains("access")), "{rest:?}");
}
