//! The audit chain of a real job: `audit verify` passes on the coordinator's database, the
//! export holds the operators' actions, the roster, every session's survivor set and
//! aggregate hash and the model versions, and one flipped byte in an exported record is
//! named by `audit verify --file`.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Fed, JobOpts, coordinator_bin, participant_bin, tail, text};

#[test]
fn a_real_jobs_audit_chain_verifies_and_a_flipped_byte_names_its_record() {
    let fed = Fed::new(63, 2000, 3);
    let (coord, _) = fed.complete_job(
        &JobOpts {
            name: "audited",
            rounds: 2,
            min_participants: 3,
            ..JobOpts::default()
        },
        Duration::from_secs(120),
    );
    let model = fed.export(1, 0);
    // The model version carries its provenance and the coordinator's signature.
    let verify = |path: &std::path::Path| {
        Command::new(participant_bin())
            .args(["verify", "--model"])
            .arg(path)
            .args(["--cert", "pki/coordinator.pem"])
            .current_dir(&fed.root)
            .output()
            .expect("running verify")
    };
    let out = verify(&model);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(": OK: content hash"), "{}", text(&out));
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(&model).expect("model")).expect("model JSON");
    let made = m["provenance"]["created_at_unix_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no creation time: {m}"));
    // `verify` gives the time as a date a validator can read, not milliseconds.
    assert!(
        text(&out).contains(&format!("made {} by", fedrisk_export::report::utc(made))),
        "{}",
        text(&out)
    );
    assert!(m["provenance"]["settings"]["c"].as_f64().is_some(), "{m}");
    assert_eq!(m["provenance"]["participants"], 3);
    // Another signature value (one hex digit changed) does not verify.
    let mut forged = m.clone();
    let value = m["signature"]["value"]
        .as_str()
        .expect("signature")
        .to_owned();
    let last = if value.ends_with('0') { "1" } else { "0" };
    forged["signature"]["value"] = Value::String(format!("{}{last}", &value[..value.len() - 1]));
    let forged_path = fed.path("forged.json");
    std::fs::write(&forged_path, forged.to_string()).expect("write");
    let out = verify(&forged_path);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("does not verify"), "{}", text(&out));
    // An operator submits a job and cancels it; a new certificate changes the roster.
    let said = fed.job_ok(
        "submit",
        &[
            "--name",
            "second",
            "--schema",
            "data/schema.json",
            "--rounds",
            "1",
        ],
    );
    assert!(said.contains("job 2"), "{said}");
    fed.job_ok("cancel", &["--id", "2"]);
    fed.certs(&[
        "issue", "--ca-dir", "ca", "--dir", "pki", "--name", "auditor", "--role", "operator",
        "--out", "auditor",
    ]);
    let export = fed.path("audit.jsonl");
    let export_s = export.to_str().expect("utf-8 path");
    // The roster watch runs every half second: wait until its record is in.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let out = fed.audit(&["export", "--database", "coord.db", "--out", export_s]);
        assert!(out.status.success(), "{}", text(&out));
        let body = std::fs::read_to_string(&export).expect("audit.jsonl");
        if body.matches("\"kind\":\"roster_changed\"").count() >= 2 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no roster change recorded:\n{body}\n{}",
            tail(&coord.stderr(), 20)
        );
        std::thread::sleep(Duration::from_millis(300));
    };

    let out = fed.audit(&["verify", "--database", "coord.db"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("audit chain OK"), "{said}");
    println!("{said}");

    let records: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    for k in [
        "roster_changed",
        "job_started",
        "session_started",
        "session_completed",
        "round_completed",
        "model_version",
        "job_ended",
        "model_exported",
        "job_submitted",
        "job_cancelled",
    ] {
        assert!(kinds.contains(&k), "no {k} record in {kinds:?}");
    }
    let body = |r: &Value| -> Value {
        serde_json::from_str(r["body"].as_str().expect("body")).expect("body JSON")
    };
    let sessions: Vec<Value> = records
        .iter()
        .filter(|r| r["kind"] == "session_completed")
        .map(body)
        .collect();
    // magnitudes + statistics, round 1's update, round 2's update with round 1's
    // evaluation, and round 2's evaluation.
    assert_eq!(sessions.len(), 5, "{sessions:?}");
    for s in &sessions {
        assert_eq!(s["survivors"].as_array().map(Vec::len), Some(3), "{s}");
        assert_eq!(s["aggregate_hash"].as_str().map(str::len), Some(64), "{s}");
    }
    let models: Vec<Value> = records
        .iter()
        .filter(|r| r["kind"] == "model_version")
        .map(body)
        .collect();
    let stored = fed.models(1);
    assert_eq!(models.len(), stored.len());
    for (m, (round, hash)) in models.iter().zip(&stored) {
        assert_eq!(m["round"].as_u64(), Some(u64::from(*round)));
        assert_eq!(m["content_hash"].as_str(), Some(hash.as_str()));
    }
    let submitted = records
        .iter()
        .find(|r| r["kind"] == "job_submitted")
        .map(body)
        .expect("job_submitted");
    assert_eq!(submitted["by"], "ops");

    // One byte of one record's body, flipped in the export: the verifier names that record.
    let target = records
        .iter()
        .position(|r| r["kind"] == "session_completed")
        .expect("a session record");
    let mut changed: Vec<String> = lines.lines().map(str::to_owned).collect();
    let line = &changed[target];
    let needle = "\"survivors\\\":[";
    let at = line.find(needle).expect("survivors in the line") + needle.len();
    let mut bytes = line.clone().into_bytes();
    bytes[at] ^= 0x01; // a roster id digit becomes another digit
    changed[target] = String::from_utf8(bytes).expect("utf-8");
    let tampered = fed.path("audit-tampered.jsonl");
    std::fs::write(&tampered, changed.join("\n") + "\n").expect("write");
    let out = fed.audit(&["verify", "--file", tampered.to_str().expect("utf-8 path")]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    let seq = records[target]["seq"].as_u64().expect("seq");
    assert!(
        said.contains(&format!("audit record {seq} (session_completed)")),
        "{said}"
    );
    println!("{said}");
    // The untouched export verifies.
    let out = fed.audit(&["verify", "--file", export_s]);
    assert!(out.status.success(), "{}", text(&out));

    // Each session's survivor set is on the record with the survivors' signatures over it,
    // just before the session's sum...
    let signed: Vec<Value> = records
        .iter()
        .filter(|r| r["kind"] == "survivors_signed")
        .map(body)
        .collect();
    assert_eq!(signed.len(), sessions.len(), "{signed:?}");
    for (s, c) in signed.iter().zip(&sessions) {
        for f in ["job", "round", "kind", "survivors"] {
            assert_eq!(s[f], c[f], "{f}: {s} vs {c}");
        }
        assert_eq!(s["signatures"].as_array().map(Vec::len), Some(3), "{s}");
    }
    // ... so each institution proves the model includes every round it signed for, from the
    // export alone, with its own certificate.
    let prove = |cert: &std::path::Path| {
        Command::new(participant_bin())
            .args(["audit-prove", "--audit", export_s, "--model"])
            .arg(&model)
            .arg("--cert")
            .arg(cert)
            .args(["--coordinator-cert", "pki/coordinator.pem"])
            .current_dir(&fed.root)
            .output()
            .expect("running audit-prove")
    };
    for n in &fed.institutions {
        let out = prove(&fed.institution_dir(n).join(format!("{n}.pem")));
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(
            said.contains("the model includes rounds 0, 1, 2 signed by this institution"),
            "{said}"
        );
        assert!(said.contains("signed by the coordinator"), "{said}");
        assert_eq!(
            said.matches("signed by this institution (participant")
                .count(),
            5,
            "one line per session of the model's lineage: {said}"
        );
    }
    println!(
        "{}",
        text(&prove(
            &fed.institution_dir(&fed.institutions[0])
                .join(format!("{}.pem", fed.institutions[0]))
        ))
    );
    // An institution of the federation that took no part proves nothing.
    let outsider = fed.enrol("outsider");
    let out = prove(&outsider.join("outsider.pem"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("no session of the model's lineage (job 1, rounds 0 to 2)"),
        "{}",
        text(&out)
    );
    // One flipped byte of a signature record breaks the chain before any proof.
    let target = records
        .iter()
        .position(|r| r["kind"] == "survivors_signed")
        .expect("a signature record");
    let mut changed: Vec<String> = lines.lines().map(str::to_owned).collect();
    changed[target] =
        changed[target].replacen("\\\"signature\\\":\\\"", "\\\"signature\\\":\\\"0", 1);
    std::fs::write(&tampered, changed.join("\n") + "\n").expect("write");
    let out = Command::new(participant_bin())
        .args(["audit-prove", "--audit"])
        .arg(&tampered)
        .arg("--model")
        .arg(&model)
        .arg("--cert")
        .arg(
            fed.institution_dir(&fed.institutions[0])
                .join(format!("{}.pem", fed.institutions[0])),
        )
        .current_dir(&fed.root)
        .output()
        .expect("running audit-prove");
    assert!(!out.status.success(), "{}", text(&out));
    let seq = records[target]["seq"].as_u64().expect("seq");
    assert!(
        text(&out).contains(&format!("audit record {seq} (survivors_signed)")),
        "{}",
        text(&out)
    );
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::Builder::new()
        .prefix("fedrisk-it-jsonlog-")
        .tempdir()
        .expect("tempdir");
    let out = Command::new(coordinator_bin())
        .args(["demo", "--rows", "3000", "--rounds", "1", "--log", "info"])
        .args(["--log-format", "json", "--out"])
        .arg(dir.path().join("demo"))
        .output()
        .expect("running demo");
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 10, "{stderr}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{l}"
        );
    }
    assert!(
        stderr.contains("\"message\":\"round complete\""),
        "{stderr}"
    );
}
