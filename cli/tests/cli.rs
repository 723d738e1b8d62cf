//! The `fedrisk-coordinator` command as an operator meets it: help, bad input, output into
//! a pipe, and the job file views of the one job specification.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fedrisk-coordinator"))
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run fedrisk-coordinator")
}

/// `certs init` of a federation with its CA in `ca` and the coordinator's folder `pki`.
fn init_federation(ca: &str, pki: &str) {
    let out = run(&[
        "certs",
        "init",
        "--dir",
        pki,
        "--ca-dir",
        ca,
        "--federation",
        "t",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn help_lists_every_command() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for c in ["demo", "simulate", "serve", "certs", "job", "bench"] {
        assert!(text.contains(c), "--help lacks {c}:\n{text}");
    }
}

#[test]
fn a_missing_file_is_named_once_with_its_cause_once() {
    let out = run(&["serve", "--config", "/nonexistent/coordinator.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/coordinator.toml"), "{err}");
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause is repeated: {err}"
    );
}

#[test]
fn an_http_url_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    let p = pki.to_str().expect("utf-8");
    let ca = dir.path().join("ca");
    let ca = ca.to_str().expect("utf-8");
    init_federation(ca, p);
    let ops = dir.path().join("ops");
    let o = ops.to_str().expect("utf-8");
    assert!(
        run(&[
            "certs", "issue", "--dir", p, "--ca-dir", ca, "--name", "ops", "--role", "operator",
            "--out", o
        ])
        .status
        .success()
    );
    let out = run(&[
        "job",
        "list",
        "--coordinator",
        "http://127.0.0.1:1",
        "--ca",
        &format!("{p}/ca.pem"),
        "--cert",
        &format!("{o}/ops.pem"),
        "--key",
        &format!("{o}/ops.key"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("use https://"), "{err}");
    assert!(!err.contains("FRAME_SIZE"), "{err}");
}

#[test]
fn output_into_a_closed_pipe_does_not_panic() {
    // `certs list` prints a line per roster entry; the reader goes away after the first.
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    let p = pki.to_str().expect("utf-8");
    let ca = dir.path().join("ca");
    let ca = ca.to_str().expect("utf-8");
    let out = dir.path().join("ops");
    let o = out.to_str().expect("utf-8");
    init_federation(ca, p);
    for i in 0..3 {
        let name = format!("ops_{i}");
        assert!(
            run(&[
                "certs", "issue", "--dir", p, "--ca-dir", ca, "--name", &name, "--role",
                "operator", "--out", o
            ])
            .status
            .success()
        );
    }
    let mut child = Command::new(bin())
        .args(["certs", "list", "--dir", p])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Close the read end without reading: every write after the pipe buffer fills fails.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
