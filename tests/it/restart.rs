//! The coordinator is SIGKILLed in the middle of a job and started again: the job resumes
//! from its last completed round, and nothing completed before the crash changes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fedrisk_models::ModelFile;

use crate::harness::{Fed, JobOpts, Proc, secs, survivors, tail};

const ROUNDS: u32 = 6;

fn completed_rounds(status: &serde_json::Value) -> Vec<u64> {
    survivors(status).into_iter().map(|(r, _)| r).collect()
}

#[test]
fn coordinator_killed_and_restarted_resumes() {
    let started = Instant::now();
    let fed = Fed::new(21, 3000, 3);
    fed.write_config(&JobOpts {
        name: "resume-test",
        rounds: ROUNDS,
        min_participants: 3,
        // Every round runs (no early stopping): the resume is checked over all of them.
        job_extra: "tolerance = 0.0",
        ..JobOpts::default()
    });
    let mut coord = fed.serve();
    // Printed just after the listening line: wait for it rather than race it.
    coord.wait_for_stdout(
        "submitted job `resume-test` as job 1",
        Duration::from_secs(10),
    );
    let mut agents: Vec<Proc> = fed
        .institutions
        .iter()
        .map(|n| {
            fed.participant(
                n,
                &[("FEDRISK_TEST_DELAY_MS", "300")],
                &["--max-reconnects", "0"],
            )
        })
        .collect();

    let before = fed.wait_status(
        1,
        Duration::from_secs(90),
        &coord,
        "round 2 to complete",
        |s| completed_rounds(s).contains(&2),
    );
    // The versions recorded so far must survive the crash unchanged.
    let models_before: BTreeMap<u32, String> = fed.models(1).into_iter().collect();
    coord.kill();
    let killed_at = secs(started);
    assert_ne!(
        before["state"], "completed",
        "the job ended before the coordinator could be killed: make it slower ({before})"
    );
    assert!(models_before.contains_key(&1) && models_before.contains_key(&2));
    let last_before = *models_before.keys().max().unwrap_or(&0);
    assert!(
        last_before < ROUNDS,
        "all rounds were done before the kill: {models_before:?}"
    );
    // Nobody answers while it is down.
    assert!(
        fed.status(1).is_none(),
        "the killed coordinator still answers"
    );

    let coord = fed.serve();
    assert!(
        coord.stdout().contains("already exists"),
        "the restarted coordinator submitted the job again:\n{}",
        coord.stdout()
    );
    let status = fed.wait_job_end(1, Duration::from_secs(150), &coord);
    assert_eq!(
        status["state"],
        "completed",
        "{status}\n{}",
        tail(&coord.stderr(), 40)
    );
    assert!(
        coord
            .stderr()
            .contains("resuming after the last completed round"),
        "no resume line in the restarted coordinator's log:\n{}",
        tail(&coord.stderr(), 40)
    );
    // One job, not a second one.
    let list = fed.job_ok("list", &[]);
    assert_eq!(
        list.lines().filter(|l| l.starts_with("job ")).count(),
        1,
        "jobs after restart:\n{list}"
    );
    assert!(fed.status(2).is_none(), "a second job exists after restart");
    let rounds = completed_rounds(&status);
    assert_eq!(
        rounds,
        (0..=u64::from(ROUNDS)).collect::<Vec<_>>(),
        "completed rounds: {status}"
    );
    assert!(survivors(&status).iter().all(|&(_, s)| s == 3), "{status}");

    let mut models = fed.models(1);
    models.sort();
    let rounds_with_models: Vec<u32> = models.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        rounds_with_models,
        (1..=ROUNDS).collect::<Vec<_>>(),
        "model versions after restart: {models:?}"
    );
    let models: BTreeMap<u32, String> = models.into_iter().collect();
    for (round, hash) in &models_before {
        assert_eq!(
            models.get(round),
            Some(hash),
            "round {round}'s model changed across the restart"
        );
    }
    for (&round, hash) in &models {
        let m = ModelFile::load(&fed.export(1, round)).expect("exported model verifies");
        assert_eq!(&m.content_hash, hash);
        assert_eq!(m.provenance.rounds, round);
    }
    for a in &mut agents {
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(s.success(), "{}: {s}\n{}", a.name, tail(&a.stderr(), 20));
        assert!(a.stdout().contains("job 1 completed"), "{}", a.stdout());
        assert!(
            a.stderr().contains("connection failed") || a.stderr().contains("reconnecting"),
            "{} never lost its connection:\n{}",
            a.name,
            tail(&a.stderr(), 20)
        );
    }
    println!(
        "killed after round {last_before} at {killed_at:.1} s; job completed at {:.1} s",
        secs(started)
    );
}
