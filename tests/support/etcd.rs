//! A real etcd (Debian's etcd-server, installed by .ci/deps) on loopback ports with a temporary
//! data folder, killed on drop; keys are written through its JSON gateway.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::client::{Answer, h1_client, send};

/// An etcd server for one test.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    peer: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> String {
    for candidate in ["etcd", "/usr/bin/etcd"] {
        if Command::new(candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return candidate.to_owned();
        }
    }
    panic!(
        "the etcd tests need the etcd server binary (`etcd`): run .ci/deps, or apt-get install etcd-server"
    );
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> Etcd {
        let mut e = Etcd {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            url: format!("http://127.0.0.1:{}", free_port()),
            peer: format!("http://127.0.0.1:{}", free_port()),
        };
        e.restart().await;
        e
    }

    /// Starts (again) on the same ports and data folder, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).unwrap();
        let child = Command::new(binary())
            .args(["--name", "test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &self.url])
            .args(["--advertise-client-urls", &self.url])
            .args(["--listen-peer-urls", &self.peer])
            .args(["--initial-advertise-peer-urls", &self.peer])
            .args(["--initial-cluster", &format!("test={}", self.peer)])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("could not start etcd");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let probe = Request::post(format!("{}/v3/kv/range", self.url))
                .body(Full::new(Bytes::from_static(br#"{"key": "AA=="}"#)))
                .unwrap();
            let answer = tokio::time::timeout(Duration::from_secs(2), h1_client().request(probe));
            if let Ok(Ok(r)) = answer.await
                && r.status() == 200
            {
                return;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let log =
                    std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
                panic!("etcd did not answer within 30 s; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn call(&self, path: &str, body: &str) -> Answer {
        send(
            Request::post(format!("{}{path}", self.url))
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
    }

    /// Writes `key` = `value`.
    pub async fn put(&self, key: &str, value: &str) {
        let body = serde_json::json!({"key": B64.encode(key), "value": B64.encode(value)});
        let r = self.call("/v3/kv/put", &body.to_string()).await;
        assert_eq!(r.status, 200, "etcd put: {:?}", r.body);
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) {
        let body = serde_json::json!({"key": B64.encode(key)});
        let r = self.call("/v3/kv/deleterange", &body.to_string()).await;
        assert_eq!(r.status, 200, "etcd delete: {:?}", r.body);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
