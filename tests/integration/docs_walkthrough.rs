//! The README's HTTPS walkthrough, run as written: its shell block (with `cargo run --release --`
//! standing for this build's binary and the listen ports moved to free ones) on a copy of the
//! shipped gateway.toml, bff/ and scripts/, then `curl` over HTTPS to the demo it starts.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The first ```sh block after `## HTTPS` in the README.
fn https_block(readme: &str) -> String {
    let section = &readme[readme
        .find("## HTTPS")
        .expect("README has an HTTPS section")..];
    let start = section
        .find("```sh\n")
        .expect("the HTTPS section has a sh block")
        + 6;
    let len = section[start..].find("```").unwrap();
    section[start..start + len].to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("--version").output().is_ok()
}

#[test]
fn https_walkthrough_works_as_written() {
    for tool in ["openssl", "curl"] {
        assert!(
            have(tool),
            "the README's HTTPS walkthrough needs `{tool}`; install it (Debian: apt-get install {tool})"
        );
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::copy(repo.join("gateway.toml"), root.join("gateway.toml")).unwrap();
    copy_tree(&repo.join("bff"), &root.join("bff"));
    copy_tree(&repo.join("scripts"), &root.join("scripts"));

    // The shipped ports may be taken on a test machine: move all three to free ones, in the
    // config copy and in the block alike.
    let ports = [
        ("127.0.0.1:8080", free_port()),
        ("127.0.0.1:9901", free_port()),
        ("8443", free_port()),
    ];
    let move_ports = |text: &str| {
        let mut text = text.to_string();
        for (from, to) in &ports {
            let replacement = match from.rsplit_once(':') {
                Some((host, _)) => format!("{host}:{to}"),
                None => to.to_string(),
            };
            text = text.replace(from, &replacement);
        }
        text
    };
    let config = std::fs::read_to_string(root.join("gateway.toml")).unwrap();
    std::fs::write(root.join("gateway.toml"), move_ports(&config)).unwrap();

    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let block = move_ports(&https_block(&readme))
        .replace("cargo run --release --", env!("CARGO_BIN_EXE_portico"));
    // Everything before the line that starts the gateway runs as one script; the gateway and
    // the curl after it run below, so the test can wait for the gateway to be ready.
    let (setup, rest) = block
        .split_once(&format!("{} demo &", env!("CARGO_BIN_EXE_portico")))
        .expect("the walkthrough starts the demo in the background");
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", setup])
        .current_dir(root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the walkthrough's set-up failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("localhost"),
        "`portico check` lists the new certificate's names:\n{stdout}"
    );

    let mut demo = Command::new(env!("CARGO_BIN_EXE_portico"))
        .arg("demo")
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let https_port = ports[2].1;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", https_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the demo's HTTPS listener did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let curl = rest
        .lines()
        .find(|l| l.trim_start().starts_with("curl"))
        .expect("the walkthrough ends with a curl");
    let out = Command::new("bash")
        .args(["-c", curl])
        .current_dir(root)
        .output()
        .unwrap();
    let _ = demo.kill();
    let _ = demo.wait();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl over HTTPS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("the demo answers JSON over HTTPS ({e}): {body}"));
    assert_eq!(json["id"], "42", "{json}");
}
