//! The real `portico` binary as a child process: one-shot CLI runs and a running gateway
//! whose log lines, signals and exit code tests can watch.

use std::net::SocketAddr;
use std::time::Duration;

use super::gateway::write;

/// Runs `portico` with arguments; returns (exit code, stdout, stderr).
pub fn portico_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `portico run` as a child process, with its stdout and stderr lines delivered to channels.
pub struct ChildGateway {
    pub child: std::process::Child,
    pub http: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The probe listener (`server.health_listen`), from the `health=` field of the ready line.
    pub health: Option<SocketAddr>,
    pub stdout: std::sync::mpsc::Receiver<String>,
    pub stderr: std::sync::mpsc::Receiver<String>,
    pub dir: tempfile::TempDir,
}

impl ChildGateway {
    /// Writes `gateway_toml` to a temporary folder and starts `portico run` on it with `env`;
    /// waits for its `ready http=... admin=...` line.
    pub fn start(gateway_toml: &str, env: &[(&str, &str)]) -> ChildGateway {
        Self::start_with_files(gateway_toml, &[], env)
    }

    /// Like [`ChildGateway::start`], with `files` (e.g. `bff/shop.toml`) beside gateway.toml.
    pub fn start_with_files(
        gateway_toml: &str,
        files: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> ChildGateway {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "gateway.toml", gateway_toml);
        for (name, text) in files {
            write(dir.path(), name, text);
        }
        Self::spawn(dir, env)
    }

    /// Starts a new process on this one's config folder (after it was killed or exited).
    pub fn relaunch(mut self, env: &[(&str, &str)]) -> ChildGateway {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Self::spawn(dir, env)
    }

    /// `kill -9`: the process dies at once, mid-write if it is writing.
    pub fn kill_hard(&mut self) {
        self.signal("KILL");
        self.wait_exit(Duration::from_secs(10));
    }

    fn spawn(dir: tempfile::TempDir, env: &[(&str, &str)]) -> ChildGateway {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portico"));
        cmd.args(["run", "--config"])
            .arg(dir.path().join("gateway.toml"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let lines = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        let mut g = ChildGateway {
            child,
            http: "0.0.0.0:0".parse().unwrap(),
            admin: None,
            health: None,
            stdout,
            stderr,
            dir,
        };
        let ready = g.stdout_line(|l| l.starts_with("ready "), Duration::from_secs(30));
        for field in ready.split_whitespace().skip(1) {
            match field.split_once('=') {
                Some(("http", a)) => g.http = a.parse().unwrap(),
                Some(("admin", "off")) => g.admin = None,
                Some(("admin", a)) => g.admin = Some(a.parse().unwrap()),
                Some(("health", a)) => g.health = Some(a.parse().unwrap()),
                _ => {}
            }
        }
        g
    }

    fn wait_line(
        rx: &std::sync::mpsc::Receiver<String>,
        what: &str,
        pred: impl Fn(&str) -> bool,
        within: Duration,
    ) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if pred(&l) => return l,
                Ok(_) => {}
                Err(e) => panic!("no matching {what} line within {within:?}: {e}"),
            }
        }
    }

    /// Waits for a stdout line.
    pub fn stdout_line(&self, pred: impl Fn(&str) -> bool, within: Duration) -> String {
        Self::wait_line(&self.stdout, "stdout", pred, within)
    }

    /// Waits for a stderr (log) line.
    pub fn log_line(&self, pred: impl Fn(&str) -> bool, within: Duration) -> String {
        Self::wait_line(&self.stderr, "log", pred, within)
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`) with the system `kill`.
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gateway did not exit within {within:?}"
            );
            // A child's exit cannot be awaited without a runtime-specific reaper; poll briefly.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `http://ADMIN{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin.expect("admin enabled"), path)
    }

    /// `http://HTTP{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Resident set size of the child in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
