//! Privacy around sessions with the real binaries: a round whose update succeeded and whose
//! evaluation failed retries the evaluation alone (and then skips it: it may not run over
//! another set than the statistics session's), so no participant's update is aggregated
//! twice over different survivor sets; every agent's ledger holds one survivor set per task.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::{Fed, JobOpts, Proc, refusals as refusals_of, round_auc, tail};

#[test]
fn a_failed_evaluation_is_retried_alone_and_no_update_is_summed_twice() {
    let fed = Fed::new(51, 3000, 4);
    fed.write_config(&JobOpts {
        name: "retry-privacy",
        rounds: 3,
        min_participants: 3,
        expected_participants: Some(4),
        // All four must unmask at first.
        job_extra: "threshold = 4\ntolerance = 0.0",
        ..JobOpts::default()
    });
    let coord = fed.serve();
    let victim_name = fed.institutions[0].clone();
    // The victim stops inside round 2's session, which carries round 2's update and round
    // 1's evaluation.
    let mut victim = fed.participant(
        &victim_name,
        &[(
            "FEDRISK_TEST_FAULT",
            "hang-before-masked-input@2:update_eval",
        )],
        &[],
    );
    let mut others: Vec<Proc> = fed.agents(&fed.institutions[1..]);
    victim.wait_for_log("test fault: this agent stops here", Duration::from_secs(60));
    victim.kill();
    // The update carries the training counts, so it runs over the statistics set only and
    // waits for the victim, which comes back as a new process (same key and ledger).
    let mut back = fed.restart(&victim_name);
    let status = fed.wait_job_end(1, Duration::from_secs(120), &coord);
    assert_eq!(status["state"], "completed", "{status}");
    let log = coord.stderr();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    // Round 2's session with the evaluation failed once and was not run again: the
    // evaluation cannot run over another set than the statistics session's (the default
    // counts it carries were summed over all four).
    assert_eq!(
        count("secagg session started job=1 round=2 session=\"update_eval\""),
        1,
        "{}",
        tail(&log, 40)
    );
    assert_eq!(
        count("secagg session completed job=1 round=2 session=\"update_eval\""),
        0,
        "{}",
        tail(&log, 40)
    );
    // The update was then asked for alone, once, over all four (the victim back).
    assert_eq!(
        count("secagg session completed job=1 round=2 session=\"update\""),
        1,
        "{}",
        tail(&log, 40)
    );
    assert_eq!(
        count("the round's model stays unevaluated job=1 round=1"),
        1,
        "{}",
        tail(&log, 40)
    );
    let auc = |r: u64| round_auc(&status, r);
    assert_eq!(auc(1), None, "round 1's model is not evaluated: {status}");
    // Every agent signed each task over one survivor set only.
    for name in &fed.institutions {
        let path = fed
            .institution_dir(name)
            .join(format!("{name}.key.ledger.jsonl"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut by_task: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        for line in text.lines() {
            let e: serde_json::Value = serde_json::from_str(line).expect("ledger line");
            by_task
                .entry(e["input"].as_str().unwrap_or_default().to_string())
                .or_default()
                .push(e["survivors"].clone());
        }
        assert!(
            !by_task.is_empty() || name == &victim_name,
            "{name}: empty ledger"
        );
        for (input, sets) in by_task {
            assert!(
                sets.windows(2).all(|w| w[0] == w[1]),
                "{name}: input {input} signed over {sets:?}"
            );
        }
    }
    for a in others.iter_mut().chain(std::iter::once(&mut back)) {
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(s.success(), "{}: {s}\n{}", a.name, tail(&a.stderr(), 20));
    }
    // Round 2's update is over all four: no sum over fewer than the statistics set.
    assert!(
        crate::harness::survivors(&status)
            .iter()
            .all(|(_, n)| *n == 4),
        "{status}"
    );
}

/// Runs a job whose coordinator pads every session with `extra` (a certificate file) as
/// participant 99, and checks that every agent refuses, naming why, and that the operator
/// sees it.
fn padded_sessions_are_refused(fed: &Fed, extra: &std::path::Path, says: &str) {
    fed.write_config(&JobOpts {
        name: "padded",
        rounds: 1,
        min_participants: 3,
        wait_for_participants_ms: Some(1500),
        job_extra: "max_attempts = 2",
        ..JobOpts::default()
    });
    let extra = format!("99:{}", extra.display());
    let coord = fed.serve_with_env(&[("FEDRISK_TEST_EXTRA_PEER", &extra)]);
    let mut agents: Vec<Proc> = fed.agents(&fed.institutions);
    let status = fed.wait_job_end(1, Duration::from_secs(90), &coord);
    assert_eq!(status["state"], "failed", "{status}");
    for a in &mut agents {
        a.wait_exit(Duration::from_secs(30));
        let log = a.stderr();
        assert!(
            log.lines()
                .any(|l| l.contains("refusing the session") && l.contains(says)),
            "{} did not refuse naming `{says}`:\n{}",
            a.name,
            tail(&log, 20)
        );
        assert!(
            !log.contains("SEC_AGG_STAGE_ADVERTISE_KEYS"),
            "{} advertised keys in a padded session",
            a.name
        );
    }
    let refusals = refusals_of(&status);
    assert_eq!(refusals.len(), fed.institutions.len(), "{status}");
    assert!(refusals.iter().all(|r| r.contains(says)), "{refusals:?}");
}

#[test]
fn agents_refuse_a_session_padded_with_an_operator_certificate() {
    let fed = Fed::new(52, 1500, 3);
    padded_sessions_are_refused(&fed, &fed.path("ops/ops.pem"), "`operator` certificate");
}

#[test]
fn agents_refuse_a_session_padded_with_a_revoked_certificate() {
    let fed = Fed::new(53, 1500, 3);
    fed.enrol("former_member");
    fed.certs(&[
        "revoke",
        "--dir",
        "pki",
        "--name",
        "former_member",
        "--ca-dir",
        "ca",
    ]);
    padded_sessions_are_refused(&fed, &fed.path("pki/former_member.pem"), "Revoked");
}

#[test]
fn attack_a_coordinator_crafting_an_evaluation_model_is_refused_by_every_agent() {
    // The coordinator's round-2 session, which evaluates round 1's model beside round 2's
    // update, scores (and steps from) a model of its own (one non-zero coefficient)
    // instead of the model training produced. Every agent replays the job's plan from the
    // verified sums, sees that this is not the task it asks for, and refuses before
    // computing anything; the operator sees why; the evaluation is dropped and the job
    // goes on with the real model.
    let fed = Fed::new(54, 1500, 3);
    fed.write_config(&JobOpts {
        name: "crafted",
        rounds: 3,
        min_participants: 3,
        wait_for_participants_ms: Some(1500),
        job_extra: "max_attempts = 2\ntolerance = 0.0",
        ..JobOpts::default()
    });
    let coord = fed.serve_with_env(&[("FEDRISK_TEST_CRAFT_MODEL", "2")]);
    let mut agents: Vec<Proc> = fed.agents(&fed.institutions);
    let status = fed.wait_job_end(1, Duration::from_secs(120), &coord);
    assert_eq!(status["state"], "completed", "{status}");
    let says = "not what the job's plan asks for";
    for a in &mut agents {
        a.wait_exit(Duration::from_secs(30));
        let log = a.stderr();
        assert!(
            log.lines()
                .any(|l| l.contains("refusing the session") && l.contains(says)),
            "{} did not refuse the crafted evaluation:\n{}",
            a.name,
            tail(&log, 20)
        );
    }
    let refusals = refusals_of(&status);
    assert!(
        refusals.iter().any(|r| r.contains(says)),
        "the operator does not see why: {status}"
    );
    // Round 1's model stands unevaluated; rounds 2 and 3 were evaluated as usual.
    let auc = |r: u64| round_auc(&status, r);
    assert_eq!(auc(1), None, "{status}");
    assert!(auc(2).is_some_and(|a| a > 0.6), "{status}");
    assert!(auc(3).is_some_and(|a| a > 0.6), "{status}");
}
