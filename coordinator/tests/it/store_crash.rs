//! `kill -9` in the middle of a job loses no completed round or model version.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fedrisk_coordinator::store::{NewModel, RoundCompletion, RoundKind, RoundState, Store};

const CHILD_ENV: &str = "FEDRISK_STORE_CRASH_CHILD_DIR";

fn sid(round: u32, attempt: u8) -> Vec<u8> {
    let mut s = vec![attempt; 32];
    s[..4].copy_from_slice(&round.to_be_bytes());
    s
}

/// The child: completes rounds 1..=3, starts round 4, signals, and waits to be killed.
fn child(dir: &Path) {
    let store = Store::open(&dir.join("c.db")).expect("open");
    let job = store.create_job("crash", "{}").expect("job");
    for r in 1..=3 {
        store
            .start_round(job, r, RoundKind::Train, &sid(r, 1))
            .expect("start");
        store
            .complete_round(
                job,
                r,
                &sid(r, 1),
                &RoundCompletion {
                    model: Some(NewModel {
                        content_hash: format!("h{r}"),
                        model_json: format!("{{\"r\":{r}}}"),
                    }),
                    checkpoint: vec![("coef".into(), r.to_be_bytes().to_vec())],
                    ..Default::default()
                },
            )
            .expect("complete");
    }
    store
        .start_round(job, 4, RoundKind::Train, &sid(4, 1))
        .expect("start 4");
    std::fs::write(dir.join("ready"), b"").expect("ready");
    // Keep writing checkpoints of the round in flight until killed.
    loop {
        store
            .put_checkpoint(job, "scratch", &[0; 1024])
            .expect("cp");
    }
}

#[test]
fn kill_9_keeps_completed_rounds() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut proc = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "store_crash::kill_9_keeps_completed_rounds",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, tmp.path())
        .spawn()
        .expect("spawn child");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tmp.path().join("ready").exists() {
        assert!(Instant::now() < deadline, "child never got ready");
        if let Some(status) = proc.try_wait().expect("wait") {
            panic!("child exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(50));
    proc.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    let _ = proc.wait();

    let store = Store::open(&tmp.path().join("c.db")).expect("reopen after kill");
    let job = store.list_jobs(None).expect("jobs")[0].id;
    assert_eq!(store.last_completed_round(job).expect("last"), Some(3));
    let versions = store.model_versions(Some(job)).expect("models");
    assert_eq!(
        versions.iter().map(|v| v.round).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        store.checkpoint(job, "coef").expect("cp"),
        Some(3u32.to_be_bytes().to_vec())
    );
    let interrupted = store.interrupted_rounds().expect("interrupted");
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0].round, 4);
    // The engine restarts it with a fresh session id.
    assert_eq!(
        store
            .start_round(job, 4, RoundKind::Train, &sid(4, 2))
            .expect("restart"),
        2
    );
    let old = store
        .round_by_session(&sid(4, 1))
        .expect("q")
        .expect("old attempt");
    assert_eq!(old.state, RoundState::Aborted);
}
