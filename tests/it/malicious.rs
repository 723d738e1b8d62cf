//! Malformed and replayed secure-aggregation messages are refused one by one, without
//! costing the round its participants.

use std::time::Duration;

use crate::harness::{Fed, JobOpts, Proc, survivors, tail};

#[test]
fn wrong_length_and_replayed_messages_are_rejected_and_the_round_goes_on() {
    let fed = Fed::new(41, 4000, 4);
    fed.write_config(&JobOpts {
        name: "malicious-test",
        rounds: 3,
        min_participants: 4,
        ..JobOpts::default()
    });
    let coord = fed.serve();
    // inst_01 (id 1) sends a truncated masked input first in round 1; inst_02 (id 2) replays
    // its round-1 masked input in round 2.
    let faults = [Some("wrong-length@1"), Some("replay@2"), None, None];
    let mut agents: Vec<Proc> = fed
        .institutions
        .iter()
        .zip(faults)
        .map(|(n, f)| match f {
            Some(f) => fed.participant(n, &[("FEDRISK_TEST_FAULT", f)], &[]),
            None => fed.participant(n, &[], &[]),
        })
        .collect();

    let status = fed.wait_job_end(1, Duration::from_secs(150), &coord);
    assert_eq!(
        status["state"],
        "completed",
        "{status}\n{}",
        tail(&coord.stderr(), 40)
    );
    assert_eq!(
        survivors(&status),
        vec![(0, 4), (1, 4), (2, 4), (3, 4)],
        "every round should keep all four: {status}"
    );
    for a in &mut agents {
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(s.success(), "{}: {s}\n{}", a.name, tail(&a.stderr(), 20));
    }

    let log_of = |a: &Proc| a.stderr();
    let wrong = log_of(&agents[0]);
    assert!(
        wrong.contains("test fault: sending a wrong-length masked input"),
        "{}",
        tail(&wrong, 30)
    );
    // The hook fires before each masked input of round 1 (update and evaluation sessions).
    let rejected: Vec<&str> = wrong
        .lines()
        .filter(|l| l.contains("upload rejected"))
        .collect();
    assert!(!rejected.is_empty(), "{}", tail(&wrong, 30));
    for l in &rejected {
        assert!(
            l.contains("round=1")
                && l.contains("MASKED_INPUT")
                && l.contains("length does not match"),
            "only the truncated round-1 inputs are rejected, for their length: {l}"
        );
    }

    let replay = log_of(&agents[1]);
    assert!(
        replay.contains("test fault: replaying an earlier round's masked input"),
        "{}",
        tail(&replay, 30)
    );
    let rejected: Vec<&str> = replay
        .lines()
        .filter(|l| l.contains("upload rejected"))
        .collect();
    assert!(
        rejected.iter().any(|l| l.contains("round=1")),
        "the replay of round 1's input in round 2 is not rejected:\n{}",
        tail(&replay, 30)
    );
    for l in &rejected {
        assert!(
            l.contains("replayed") && !l.contains("round=3"),
            "only replays are rejected, as such: {l}"
        );
    }
    for a in &agents[2..] {
        assert!(
            !a.stderr().contains("upload rejected"),
            "{}: {}",
            a.name,
            tail(&a.stderr(), 20)
        );
    }

    let log = coord.stderr();
    assert!(
        !log.contains("round attempt failed"),
        "a bad message cost a round attempt:\n{}",
        tail(&log, 40)
    );
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("secagg upload refused") || l.contains("secagg message rejected"))
        .collect();
    assert!(
        refused
            .iter()
            .any(|l| l.contains("secagg message rejected") && l.contains("participant=1")),
        "no rejection of participant 1's truncated input:\n{}",
        refused.join("\n")
    );
    assert!(
        refused
            .iter()
            .any(|l| l.contains("participant=2") && l.contains("replayed")),
        "no refusal of participant 2's replay:\n{}",
        refused.join("\n")
    );
    assert!(
        refused
            .iter()
            .all(|l| l.contains("participant=1") || l.contains("participant=2")),
        "honest participants' messages were refused:\n{}",
        refused.join("\n")
    );
}

/// A round that loses more participants than its threshold allows is retried with fresh keys
/// and, when it still cannot complete, the job fails with a stated reason; the remaining
/// agents are told and exit with an error.
#[test]
fn a_round_that_cannot_complete_is_retried_then_the_job_fails_with_a_reason() {
    let fed = Fed::new(43, 3000, 3);
    fed.write_config(&JobOpts {
        name: "failing-test",
        rounds: 3,
        min_participants: 3,
        wait_for_participants_ms: Some(1500),
        ..JobOpts::default()
    });
    let coord = fed.serve();
    // With 3 invited the threshold is 3: losing inst_01 during key sharing aborts round 1.
    let mut victim = fed.participant(
        &fed.institutions[0],
        &[("FEDRISK_TEST_FAULT", "hang-before-share-keys@1")],
        &[],
    );
    let mut others: Vec<Proc> = fed.agents(&fed.institutions[1..]);
    victim.wait_for_log("test fault: this agent stops here", Duration::from_secs(60));
    victim.kill();

    let status = fed.wait_job_end(1, Duration::from_secs(120), &coord);
    assert_eq!(status["state"], "failed", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("round 1 failed after 3 attempt(s)"),
        "{message}"
    );
    // Round 1 starts from zero coefficients, where its sums carry the training counts:
    // it waits for the statistics set and says who is missing.
    assert!(
        message.contains("statistics session's participants only")
            && message.contains("inst_01 is not available"),
        "{message}"
    );
    // Round 0 completed with everyone; nothing after it did.
    assert_eq!(survivors(&status), vec![(0, 3)], "{status}");
    let log = coord.stderr();
    assert!(log.contains("session aborted"), "{}", tail(&log, 40));
    assert!(
        log.contains("retrying with fresh keys"),
        "{}",
        tail(&log, 40)
    );
    for a in &mut others {
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(!s.success(), "{} should report the failed job", a.name);
        assert!(
            a.stderr().contains("ended without completing"),
            "{}",
            tail(&a.stderr(), 20)
        );
    }
}

/// An authenticated participant sends 16 uploads of 15 MiB at once (each under the 16 MiB
/// message limit, the connection's 16 streams all used): without a bound, the coordinator
/// would hold all 240 MiB while tonic buffers them. Its bodies are read only within the
/// client's budget (2 x 16 MiB), so the coordinator's peak memory stays far below that, the
/// uploads are answered, and the other institutions' job completes.
#[test]
fn attack_a_participant_flooding_large_uploads_cannot_exhaust_the_coordinators_memory() {
    let fed = Fed::new(43, 1500, 3);
    fed.write_config(&JobOpts {
        name: "flood",
        rounds: 2,
        min_participants: 3,
        ..JobOpts::default()
    });
    let coord = fed.serve();
    let before = coord.peak_rss_mib();
    let flood = format!("16:{}", 15 * 1024 * 1024);
    let mut agents: Vec<Proc> = fed
        .institutions
        .iter()
        .enumerate()
        .map(|(i, n)| match i {
            0 => fed.participant(n, &[("FEDRISK_TEST_FLOOD", &flood)], &[]),
            _ => fed.participant(n, &[], &[]),
        })
        .collect();
    let status = fed.wait_job_end(1, Duration::from_secs(150), &coord);
    assert_eq!(
        status["state"],
        "completed",
        "{status}\n{}",
        tail(&coord.stderr(), 40)
    );
    for a in &mut agents {
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(s.success(), "{}: {s}\n{}", a.name, tail(&a.stderr(), 20));
    }
    let log = agents[0].stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("flood answered") && l.contains("count=16")),
        "{}",
        tail(&log, 20)
    );
    let peak = coord.peak_rss_mib();
    assert!(
        peak - before < 100.0,
        "the coordinator's peak memory grew from {before:.0} to {peak:.0} MiB under the flood"
    );
    eprintln!("coordinator peak RSS {before:.1} MiB before the flood, {peak:.1} MiB after");
}

#[test]
fn attack_an_input_that_does_not_open_its_commitment_fails_the_job_with_the_reason() {
    // inst_01 adds one unit more than its signed commitment covers in round 1. The sum is
    // unmasked, so it is not asked for again; the coordinator checks it against the
    // survivors' commitments as every agent would and ends the job saying why, instead of
    // publishing a record every agent would refuse.
    let fed = Fed::new(43, 3000, 4);
    fed.write_config(&JobOpts {
        name: "off-commitment-test",
        rounds: 2,
        min_participants: 4,
        ..JobOpts::default()
    });
    let coord = fed.serve();
    let _agents: Vec<Proc> = fed
        .institutions
        .iter()
        .enumerate()
        .map(|(i, n)| match i {
            1 => fed.participant(n, &[("FEDRISK_TEST_FAULT", "off-commitment@1")], &[]),
            _ => fed.participant(n, &[], &[]),
        })
        .collect();
    let status = fed.wait_job_end(1, Duration::from_secs(150), &coord);
    assert_eq!(status["state"], "failed", "{status}");
    let text = status.to_string();
    assert!(
        text.contains("does not check against the survivors' commitments"),
        "{status}\n{}",
        tail(&coord.stderr(), 30)
    );
    // Round 1 never completed: nothing was absorbed from the unusable sum.
    assert!(
        survivors(&status).iter().all(|(round, _)| *round == 0),
        "{status}"
    );
}
