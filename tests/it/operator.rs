//! The federation as operators and data teams meet it: an agent killed and restarted
//! mid-job, a second agent with an identity that is connected, a certificate revoked while
//! its agent is connected, and an agent that refuses a job, each with the real binaries.

use std::time::Duration;

use crate::harness::{Fed, JobOpts, Proc, survivors, tail};

fn agents(fed: &Fed, delay_ms: &str) -> Vec<Proc> {
    fed.institutions
        .iter()
        .map(|n| fed.participant(n, &[("FEDRISK_TEST_DELAY_MS", delay_ms)], &[]))
        .collect()
}

fn completed(status: &serde_json::Value, round: u64) -> bool {
    survivors(status).iter().any(|(r, _)| *r == round)
}

#[test]
fn a_killed_participant_restarts_and_rejoins_at_the_next_round() {
    let fed = Fed::new(41, 3000, 4);
    fed.write_config(&JobOpts {
        name: "rejoin",
        rounds: 7,
        min_participants: 3,
        expected_participants: Some(4),
        ..JobOpts::default()
    });
    let coord = fed.serve();
    let mut agents = agents(&fed, "250");
    fed.wait_status(1, Duration::from_secs(90), &coord, "round 2", |s| {
        completed(s, 2)
    });
    agents[0].kill();
    let name = fed.institutions[0].clone();
    let mut again = fed.participant(&name, &[("FEDRISK_TEST_DELAY_MS", "250")], &[]);
    let status = fed.wait_job_end(1, Duration::from_secs(150), &coord);
    assert_eq!(status["state"], "completed", "{status}");
    let rounds = survivors(&status);
    // Some round after the restart is summed over all four again: the restarted agent
    // computed its contributions from the tasks alone.
    assert!(
        rounds.iter().any(|(r, n)| *r > 3 && *n == 4),
        "the restarted agent never took part again: {rounds:?}\n{}",
        tail(&again.stderr(), 30)
    );
    let s = again.wait_exit(Duration::from_secs(30));
    assert!(s.success(), "{s}\n{}", tail(&again.stderr(), 30));
    assert!(again.stdout().contains("job 1 completed"));
    assert!(
        !again.stderr().contains("refusing the session"),
        "{}",
        tail(&again.stderr(), 30)
    );
    for a in &mut agents[1..] {
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(s.success(), "{}: {s}", a.name);
    }
}

#[test]
fn a_second_agent_of_a_connected_identity_is_refused_with_the_reason_and_backs_off() {
    let fed = Fed::new(42, 2000, 3);
    fed.write_config(&JobOpts {
        name: "duplicate",
        rounds: 2,
        min_participants: 3,
        ..JobOpts::default()
    });
    let coord = fed.serve();
    let first_name = fed.institutions[0].clone();
    let mut first = fed.participant(&first_name, &[], &[]);
    first.wait_for_log("joined the federation", Duration::from_secs(30));
    let data = fed.data_file(&first_name);
    // Another machine holding the same identity (its own ledger).
    let other_ledger = fed.path("duplicate.ledger.jsonl");
    let mut dup = fed.participant_as(
        "duplicate",
        &fed.institution_dir(&first_name),
        &first_name,
        &data,
        &[],
        &["--ledger", other_ledger.to_str().expect("utf-8")],
    );
    std::thread::sleep(Duration::from_secs(5));
    let log = dup.stderr();
    assert!(
        log.contains(&format!(
            "{first_name} is already connected from 127.0.0.1:"
        )),
        "{}",
        tail(&log, 20)
    );
    let attempts = log.matches("not connected; reconnecting").count();
    assert!(
        (1..=8).contains(&attempts),
        "{attempts} attempts in 5 s: no backoff\n{}",
        tail(&log, 20)
    );
    assert_eq!(
        first.stderr().matches("joined the federation").count(),
        1,
        "the first agent was disturbed:\n{}",
        tail(&first.stderr(), 20)
    );
    assert!(coord.stderr().contains("second task stream refused"));
    dup.kill();
    let mut rest: Vec<Proc> = fed.agents(&fed.institutions[1..]);
    let status = fed.wait_job_end(1, Duration::from_secs(90), &coord);
    assert_eq!(status["state"], "completed", "{status}");
    assert!(first.wait_exit(Duration::from_secs(30)).success());
    for a in &mut rest {
        assert!(a.wait_exit(Duration::from_secs(30)).success());
    }
}

#[test]
fn a_participant_revoked_while_connected_is_dropped_at_once_and_the_job_ends_naming_it() {
    let fed = Fed::new(43, 3000, 4);
    fed.write_config(&JobOpts {
        name: "revoke",
        rounds: 6,
        min_participants: 3,
        expected_participants: Some(4),
        wait_for_participants_ms: Some(2000),
        ..JobOpts::default()
    });
    let coord = fed.serve();
    let mut agents = agents(&fed, "200");
    fed.wait_status(1, Duration::from_secs(90), &coord, "round 1", |s| {
        completed(s, 1)
    });
    let revoked = fed.institutions[3].clone();
    fed.certs(&["revoke", "--dir", "pki", "--name", &revoked]);
    let s = agents[3].wait_exit(Duration::from_secs(30));
    assert!(!s.success(), "the revoked agent went on");
    let err = agents[3].stderr();
    assert!(
        err.lines()
            .any(|l| l.starts_with("error:") && l.contains("revoked")),
        "{}",
        tail(&err, 20)
    );
    let status = fed.wait_job_end(1, Duration::from_secs(150), &coord);
    let log = coord.stderr();
    assert!(
        log.contains("participant disconnected by the coordinator"),
        "{}",
        tail(&log, 40)
    );
    // Every update carries the training counts and runs over the statistics set only: the
    // job cannot train on without the revoked member, and ends saying who is missing.
    assert_eq!(status["state"], "failed", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{revoked} is not available")),
        "{message}"
    );
    let rounds = survivors(&status);
    assert!(
        rounds.iter().all(|r| r.1 == 4),
        "no sum over fewer: {rounds:?}"
    );
    for a in &mut agents[..3] {
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(!s.success(), "{} should report the failed job", a.name);
    }
}

#[test]
fn a_refusing_participant_is_shown_to_the_operator_with_its_reason() {
    let fed = Fed::new(44, 2000, 4);
    fed.write_config(&JobOpts {
        name: "refusal",
        rounds: 2,
        min_participants: 3,
        expected_participants: Some(4),
        ..JobOpts::default()
    });
    // The fourth institution pins a schema that differs from the job's (one feature less).
    let mut schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fed.path("data/schema.json")).expect("schema"),
    )
    .expect("schema json");
    schema["features"]
        .as_array_mut()
        .expect("features")
        .retain(|f| f["name"] != "loan_amount");
    let pinned = fed.path("pinned-schema.json");
    std::fs::write(&pinned, schema.to_string()).expect("write");
    let coord = fed.serve();
    let mut agents: Vec<Proc> = fed.agents(&fed.institutions[..3]);
    let odd = fed.institutions[3].clone();
    let data = fed.data_file(&odd);
    let mut refusing = fed.participant_as(
        &odd,
        &fed.institution_dir(&odd),
        &odd,
        &data,
        &[],
        &["--schema", pinned.to_str().expect("utf-8")],
    );
    let status = fed.wait_job_end(1, Duration::from_secs(90), &coord);
    assert_eq!(status["state"], "completed", "{status}");
    let p = status["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["name"] == odd.as_str())
        .cloned()
        .expect("the refusing participant is listed");
    let reason = p["refusal"].as_str().unwrap_or_default();
    assert!(
        reason.contains("differs from the one this agent was started with"),
        "{status}"
    );
    let text = fed.job_ok("status", &["--id", "1"]);
    assert!(
        text.contains(&odd) && text.contains("refused round 0 (schema)"),
        "{text}"
    );
    // The status line says each thing once, and round 0 is the statistics round, not a
    // round without an AUC.
    let first = text.lines().next().unwrap_or_default();
    assert_eq!(
        first, "job 1 `refusal`: completed, 2 of 2 training rounds complete (2 rounds completed)",
        "{text}"
    );
    assert!(text.contains("round   0 (statistics)"), "{text}");
    assert!(!text.contains("NaN"), "{text}");
    // The job did not wait for the refusing agent until deadlines.
    assert!(
        !coord.stderr().contains("stage deadline passed"),
        "{}",
        tail(&coord.stderr(), 40)
    );
    assert!(
        refusing.stderr().contains("refusing the session"),
        "{}",
        tail(&refusing.stderr(), 20)
    );
    refusing.kill();
    for a in &mut agents {
        assert!(a.wait_exit(Duration::from_secs(30)).success());
    }
}
