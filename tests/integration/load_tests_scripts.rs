//! The load-test tooling itself: scripts parse, and `lib/compare.py` (rounds, medians, ratios,
//! markdown, SVG, error exit) works end to end against a stand-in for oha, reading real CPU
//! time from /proc for a real process group.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn load_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("load-tests")
}

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("--version").output().is_ok()
}

#[test]
fn every_script_parses() {
    let dir = load_tests();
    let scripts = [
        "compare",
        "plain",
        "jwt",
        "rate-limit",
        "traffic",
        "cluster-rate-limit",
        "balance",
        "bff",
        "script",
        "edge",
        "h2",
        "compression",
        "resilience",
        "tracing",
        "saga",
        "discovery",
        "tls-keepalive",
        "tls-new",
        "profile",
        "profile-bff",
        "idle-conns",
        "syscalls",
        "lib/common.sh",
        "lib/tls.sh",
        "lib/features.sh",
    ];
    for s in scripts {
        let out = Command::new("bash")
            .arg("-n")
            .arg(dir.join(s))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{s}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs compare.py with the fake oha; returns (exit code, stdout, stderr).
fn compare(out_dir: &Path, pid: u32, extra: &[&str]) -> (i32, String, String) {
    let dir = load_tests();
    let pid = pid.to_string();
    let mut args: Vec<&str> = vec![
        "--oha",
        "",
        "--out-dir",
        "",
        "--name",
        "t",
        "--rounds",
        "3",
        "--half-rounds",
        "1",
        "--duration",
        "1s",
        "--loadgen-cpu",
        "0",
        "--target",
        "direct",
        "http://127.0.0.1:1/plain",
        "0",
        "--target",
        "portico",
        "http://127.0.0.1:22/plain",
        &pid,
        "--target",
        "nginx",
        "http://127.0.0.1:333/plain",
        &pid,
        "--half-target",
        "direct",
        "--half-target",
        "portico",
    ];
    let oha = dir.join("lib/fake_oha.py");
    let out_text = out_dir.to_str().unwrap().to_owned();
    args[1] = oha.to_str().unwrap();
    args[3] = &out_text;
    args.extend_from_slice(extra);
    let out = Command::new("python3")
        .arg(dir.join("lib/compare.py"))
        .args(&args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn compare_writes_table_chart_and_raw_runs() {
    if !have("python3") || !have("taskset") {
        eprintln!("python3 or taskset missing; the load-test tooling needs both");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A real process group that burns CPU, so the per-CPU-second figures have something to read.
    let mut busy = Command::new("python3")
        .args([
            "-c",
            "import time\nend = time.time() + 60\nwhile time.time() < end: pass",
        ])
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = busy.id();
    let side = pgid.to_string();
    let (code, stdout, stderr) = compare(tmp.path(), pgid, &["--side-pid", "busy", &side]);
    let _ = busy.kill();
    let _ = busy.wait();
    assert_eq!(code, 0, "{stderr}");
    let md = std::fs::read_to_string(tmp.path().join("t-latest.md")).unwrap();
    assert!(
        stdout.contains(md.lines().nth(6).unwrap()),
        "stdout shows the table"
    );
    assert!(md.contains("| nginx |"), "{md}");
    assert!(md.contains("1.00x"), "baseline ratio: {md}");
    assert!(md.contains("Added latency at half of saturation"), "{md}");
    let side_line = md
        .lines()
        .find(|l| l.starts_with("CPU of busy per 2xx answer"))
        .unwrap_or_else(|| panic!("--side-pid line: {md}"));
    assert!(
        side_line.contains("direct ") && !side_line.contains("portico -,"),
        "a side process' CPU is read for every target: {side_line}"
    );
    // 3 rounds + 1 half round per half target, every run counted.
    let raw = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(raw).unwrap()).unwrap();
    assert_eq!(raw["runs"].as_array().unwrap().len(), 9);
    assert_eq!(raw["half"]["runs"].as_array().unwrap().len(), 2);
    assert_eq!(
        raw["summary"]["portico"]["errors"], 0,
        "deadline aborts are not errors"
    );
    assert!(
        raw["summary"]["direct"]["us_per_req"].is_null(),
        "no process for direct"
    );
    let svg = std::fs::read_to_string(tmp.path().join("t-latest.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<rect").count(),
        1 + 3 * 3 - 1,
        "one bar per target and panel, none for direct's CPU"
    );
}

#[test]
fn compare_fails_on_errors_when_asked() {
    if !have("python3") || !have("taskset") {
        eprintln!("python3 or taskset missing; the load-test tooling needs both");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let extra = [
        "--target",
        "broken",
        "http://127.0.0.1:4/fail",
        "0",
        "--fail-on-errors",
    ];
    let (code, _, stderr) = compare(tmp.path(), 0, &extra);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("non-2xx"), "{stderr}");
    let (code, _, stderr) = compare(
        tmp.path(),
        0,
        &["--target", "x", "http://127.0.0.1:5/", "999999999"],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("no longer running"), "{stderr}");
}
