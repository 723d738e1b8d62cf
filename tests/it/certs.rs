//! Certificates the federation did not issue, or revoked, are refused at the handshake; the
//! federation's own participants finish their job regardless.

use std::time::Duration;

use crate::harness::{Fed, JobOpts, Proc, survivors, tail};

/// Runs a refused agent to its end and checks it failed, saying `says`, without retrying.
fn refused_agent(agent: &mut Proc, says: &str) {
    let status = agent.wait_exit(Duration::from_secs(60));
    assert!(
        !status.success(),
        "{} was let in (exit {status}):\n{}",
        agent.name,
        tail(&agent.stderr(), 20)
    );
    assert!(
        !agent.stdout().contains("completed"),
        "{}: {}",
        agent.name,
        agent.stdout()
    );
    assert!(
        agent.stderr().contains("error:"),
        "{} exited without an error message:\n{}",
        agent.name,
        tail(&agent.stderr(), 20)
    );
    assert!(
        !agent.stderr().contains("joined the federation"),
        "{} joined:\n{}",
        agent.name,
        agent.stderr()
    );
    let err = agent.stderr();
    assert!(
        err.lines()
            .any(|l| l.starts_with("error:") && l.contains(says)),
        "{} does not say `{says}`:\n{}",
        agent.name,
        tail(&err, 20)
    );
    assert!(
        !err.contains("retrying"),
        "{} retried a refusal that cannot succeed later:\n{}",
        agent.name,
        tail(&err, 20)
    );
}

/// Runs a refused agent to its end and checks what the coordinator logged.
fn refused(agent: &mut Proc, coordinator: &Proc, says: &str, reason: &str) {
    refused_agent(agent, says);
    let log = coordinator.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("refusing client certificate") && l.contains(reason)),
        "no `refusing client certificate ... {reason}` line for {} in the coordinator log:\n{}",
        agent.name,
        tail(&log, 40)
    );
}

#[test]
fn unknown_certificate_is_refused() {
    let fed = Fed::new(31, 3000, 3);
    // A certificate from another CA, carrying a real participant's name (an impersonator),
    // presented with the real federation CA as trust anchor so the handshake reaches the
    // coordinator's client check.
    fed.certs(&[
        "init",
        "--ca-dir",
        "other-ca",
        "--dir",
        "other-pki",
        "--federation",
        "otherfed",
    ]);
    let rogue = fed.path("rogue");
    fed.enrol_with("other-ca", "other-pki", "bank_a", &rogue);
    std::fs::copy(fed.path("pki/ca.pem"), rogue.join("ca.pem")).expect("copy");
    // A participant of this federation whose certificate is then revoked.
    let former_dir = fed.enrol("former_member");

    fed.write_config(&JobOpts {
        name: "certs-test",
        rounds: 2,
        min_participants: 3,
        ..JobOpts::default()
    });
    let coord = fed.serve();

    let data = fed.data_file(&fed.institutions[0]);
    let mut impostor = fed.participant_as(
        "impostor",
        &rogue,
        "bank_a",
        &data,
        &[],
        &["--max-reconnects", "2"],
    );
    // The agent checks its own certificate against its CA before connecting, so an
    // impersonator with another CA's certificate stops at once, saying why. (The
    // coordinator's own refusal of such a certificate is tested in fedrisk-identity with an
    // identity that skips the local check.)
    refused_agent(&mut impostor, "was not issued by the federation CA");

    // A key that is not the certificate's: named, and the agent stops.
    let mixed = fed.path("mixed");
    std::fs::create_dir_all(&mixed).expect("mkdir");
    std::fs::copy(fed.path("pki/ca.pem"), mixed.join("ca.pem")).expect("copy");
    let a = &fed.institutions[0];
    let b = &fed.institutions[1];
    std::fs::copy(
        fed.institution_dir(a).join(format!("{a}.pem")),
        mixed.join(format!("{a}.pem")),
    )
    .expect("copy");
    std::fs::copy(
        fed.institution_dir(b).join(format!("{b}.key")),
        mixed.join(format!("{a}.key")),
    )
    .expect("copy");
    let mut wrong_key = fed.participant_as(
        "wrong_key",
        &mixed,
        a,
        &data,
        &[],
        &["--max-reconnects", "2"],
    );
    refused_agent(&mut wrong_key, "does not match the certificate");

    // Revoked while the coordinator runs: it re-reads the roster.
    let revoked = fed.certs(&["revoke", "--dir", "pki", "--name", "former_member"]);
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("revoked former_member"));
    let mut former = fed.participant_as(
        "former_member",
        &former_dir,
        "former_member",
        &data,
        &[],
        &["--max-reconnects", "2"],
    );
    refused(&mut former, &coord, "revoked", "revoked");

    // The federation's own participants are unaffected.
    let mut agents: Vec<Proc> = fed.agents(&fed.institutions);
    let status = fed.wait_job_end(1, Duration::from_secs(120), &coord);
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(survivors(&status), vec![(0, 3), (1, 3), (2, 3)], "{status}");
    for a in &mut agents {
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(s.success(), "{}: {s}\n{}", a.name, tail(&a.stderr(), 20));
    }
    // Neither refused certificate ever got a participant session.
    let log = coord.stderr();
    assert!(
        !log.contains("name=former_member"),
        "the revoked participant reached the service:\n{}",
        tail(&log, 40)
    );
}
