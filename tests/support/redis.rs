//! A real redis-server for one test: its own free loopback port and temp dir, no persistence;
//! stopped (killed) on drop. Plus a "Redis" that accepts connections and never answers.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

/// A redis-server child process.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    tls: bool,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts redis-server on a free loopback port and waits until it accepts connections.
    pub fn start() -> RedisServer {
        Self::start_with(false, &[])
    }

    /// Starts redis-server speaking only TLS on its port, with `cert_file`/`key_file` (PEM) and
    /// `requirepass` (client certificates not asked for).
    pub fn start_tls(cert_file: &Path, key_file: &Path, password: &str) -> RedisServer {
        let args = [
            "--tls-cert-file".into(),
            cert_file.display().to_string(),
            "--tls-key-file".into(),
            key_file.display().to_string(),
            "--tls-auth-clients".into(),
            "no".into(),
            "--requirepass".into(),
            password.into(),
        ];
        Self::start_with(true, &args)
    }

    fn start_with(tls: bool, extra: &[String]) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            tls,
            extra: extra.to_vec(),
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server at once (no shutdown handshake), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port.to_string();
        let ports = if self.tls {
            ["--port", "0", "--tls-port", &port]
        } else {
            ["--port", &port, "--tls-port", "0"]
        };
        let mut child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1"])
            .args(&self.extra)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); install it with `bash .ci/deps`")
            });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = child.kill();
            panic!("redis-server on port {} did not become ready", self.port);
        }
        self.child = Some(child);
    }

    /// Runs one command with redis-cli-free raw RESP; returns the reply text.
    pub async fn command(&self, args: &[&str]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr()).await.unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("redis answers")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP listener that accepts connections, reads nothing and never answers.
pub struct SilentRedis {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SilentRedis {
    /// Starts listening on a free loopback port.
    pub async fn start() -> SilentRedis {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        SilentRedis { addr, task }
    }
}

impl Drop for SilentRedis {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits (bounded) until `f` holds, checking every 20 ms.
pub async fn eventually(within: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
