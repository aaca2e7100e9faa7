//! Access-log lines from the real binary: text and JSON shapes, one line per request, and
//! `RUST_LOG` still decides whether they are written.

use crate::support;

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
        "GET {path} HTTP/1.1\r\nhost: a\r\nx-request-id: req-42\r\nuser-agent: test-agent/1\r\nconnection: close\r\n\r\n"
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

/// A gateway with a healthy route, one whose only endpoint refuses connections, and one behind
/// auth; `extra` tables are appended.
async fn config_with(extra: &str) -> (Backend, tempfile::TempDir, std::path::PathBuf) {
    let echo = Backend::echo("a").await;
    let dir = tempfile::tempdir().unwrap();
    let text = support::config()
        .server("workers = 1")
        .upstream("one", &[echo.addr])
        .upstream("dead", &["127.0.0.1:9"])
        .provider(
            "dev",
            "https://issuer.test",
            &["HS256"],
            "secret_file = \"hs.secret\"",
        )
        .route("users", "/api", "one")
        .route("down", "/down", "dead")
        .route_with(
            "private",
            "/private",
            "one",
            "auth = { provider = \"dev\" }",
        )
        .toml(extra)
        .build();
    write(dir.path(), "gateway.toml", &text);
    write(
        dir.path(),
        "hs.secret",
        "a-test-secret-of-more-than-thirty-two-bytes",
    );
    let path = dir.path().join("gateway.toml");
    (echo, dir, path)
}

/// Parses every stderr line as JSON (each must be one object) and returns them.
fn json_line(line: &str) -> serde_json::Value {
    assert!(
        !line.contains("Some(") && !line.contains("\\\""),
        "Debug text or a doubly quoted value: {line}"
    );
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn json_access_fields_and_request_ids() {
    let (echo, _dir, path) = config_with("").await;
    let gw = Gateway::start(&path, "info", "json");

    assert!(get(gw.addr, "/api/x").starts_with("HTTP/1.1 200"));
    let v = json_line(&gw.next_line_with("\"target\":\"access\""));
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/api/x");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["route"], "users");
    assert_eq!(v["status"], 200);
    assert_eq!(v["upstream"], "one");
    assert_eq!(v["endpoint"], echo.addr.to_string());
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["bytes_in"], serde_json::Value::Null);
    assert!(v["bytes_out"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["request_id"], "req-42");
    assert!(v["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(v["user_agent"], "test-agent/1");
    assert_eq!(v["flags"], serde_json::Value::Null);

    // Refused before an upstream is chosen: no upstream, no endpoint.
    assert!(get(gw.addr, "/private").starts_with("HTTP/1.1 401"));
    let v = json_line(&gw.next_line_with("\"target\":\"access\""));
    assert_eq!(v["route"], "private");
    assert_eq!(v["upstream"], "-");
    assert_eq!(v["endpoint"], "-");
    assert_eq!(v["attempts"], 0);
    assert_eq!(v["flags"], "auth_denied");

    // A refused connection: the warning lines carry the request id too.
    assert!(get(gw.addr, "/down").starts_with("HTTP/1.1 502"));
    let mut about_request = Vec::new();
    let access = loop {
        let line = gw.next_line_with("{");
        let v = json_line(&line);
        if v["target"] == "access" {
            break v;
        }
        about_request.push(v);
    };
    assert_eq!(access["upstream"], "dead");
    assert_eq!(access["endpoint"], "127.0.0.1:9");
    assert_eq!(access["attempts"], 1);
    assert_eq!(access["flags"], "upstream_connect_failure");
    let messages: Vec<&str> = about_request
        .iter()
        .map(|v| v["message"].as_str().unwrap_or(""))
        .collect();
    assert!(messages.contains(&"connect failed"), "{about_request:?}");
    assert!(messages.contains(&"request failed"), "{about_request:?}");
    for v in &about_request {
        assert_eq!(v["request_id"], "req-42", "{v}");
    }
    for line in gw.stop() {
        json_line(&line);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_file_is_reopened_on_sigusr1() {
    let (_echo, dir, path) =
        config_with("[log]\naccess_log_file = \"access.log\"\naccess_log_format = \"json\"").await;
    let gw = Gateway::start(&path, "info", "text");
    let file = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");

    assert!(get(gw.addr, "/api/before").starts_with("HTTP/1.1 200"));
    let first = wait_for_lines(&file, 1);
    std::fs::rename(&file, &rotated).unwrap();
    let status = Command::new("kill")
        .args(["-USR1", &gw.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    gw.next_line_with("access log reopened");
    assert!(get(gw.addr, "/api/after").starts_with("HTTP/1.1 200"));
    let second = wait_for_lines(&file, 1);

    // The file gets JSON while stderr stays text: a format per sink.
    let before: serde_json::Value = serde_json::from_str(&first[0]).unwrap();
    let after: serde_json::Value = serde_json::from_str(&second[0]).unwrap();
    assert_eq!(before["path"], "/api/before");
    assert_eq!(after["path"], "/api/after");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(
        old.lines().count(),
        1,
        "nothing more went to the rotated file: {old}"
    );
    let rest = gw.stop();
    assert!(
        rest.iter()
            .any(|l| l.contains("INFO access: method=GET path=\"/api/after\"")),
        "stderr keeps text lines: {rest:?}"
    );
}

/// Waits (bounded) until `file` has `n` lines and returns them.
fn wait_for_lines(file: &std::path::Path, n: usize) -> Vec<String> {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(file) {
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n && text.ends_with('\n') {
                return lines;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} never had {n} lines", file.display());
}
