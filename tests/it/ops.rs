//! The platform operator's view of a real job: Prometheus metrics and `/healthz` scraped
//! over HTTP from `serve --metrics`, `status --watch` following the job's secure-aggregation
//! stages to its end, and a Newton job that stops early once its step is below the
//! tolerance.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Fed, JobOpts, Proc, coordinator_bin, free_port, survivors, tail};

/// `GET path` over plain HTTP: (status code, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

/// The value of one series (`name{labels}`) in OpenMetrics text.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
}

/// `fedrisk-coordinator status ARGS` with the operator's identity.
fn status_cmd(fed: &Fed, args: &[&str]) -> Command {
    let ops = fed.path("ops");
    let mut cmd = Command::new(coordinator_bin());
    cmd.arg("status")
        .arg("--coordinator")
        .arg(fed.url())
        .arg("--ca")
        .arg(fed.path("pki/ca.pem"))
        .arg("--cert")
        .arg(ops.join("ops.pem"))
        .arg("--key")
        .arg(ops.join("ops.key"))
        .args(args)
        .current_dir(&fed.root);
    cmd
}

#[test]
fn metrics_and_status_watch_follow_a_newton_job_that_stops_when_converged() {
    let fed = Fed::new(61, 3000, 3);
    fed.write_config(&JobOpts {
        name: "ops",
        // Far more than Newton needs: the job stops at its tolerance (the default, 1e-6).
        rounds: 25,
        min_participants: 3,
        ..JobOpts::default()
    });
    let metrics_port = free_port();
    let mut cmd = Command::new(coordinator_bin());
    cmd.arg("serve")
        .arg("--config")
        .arg(fed.path("coordinator.toml"))
        .arg("--metrics")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .current_dir(&fed.root);
    let mut coord = Proc::spawn("coordinator", cmd, &fed.path("logs"));
    coord.wait_for_stdout("fedrisk coordinator listening on", Duration::from_secs(30));
    coord.wait_for_stdout("metrics on http://", Duration::from_secs(10));
    let (code, body) = http_get(metrics_port, "/healthz").expect("healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, _) = http_get(metrics_port, "/nothing").expect("404");
    assert_eq!(code, 404);

    // The operator watches from before the agents start, until the job ends.
    let mut watch = Proc::spawn(
        "status-watch",
        status_cmd(
            &fed,
            &[
                "--id",
                "1",
                "--watch",
                "--interval",
                "100",
                "--until-done",
                "--json",
            ],
        ),
        &fed.path("logs"),
    );
    // Agents at different speeds, so a stage is seen part-way; the slowest also answers
    // every later stage late, so a closed stage is seen while the next one is open (without
    // it the later stages take milliseconds, and a loaded machine's snapshots miss them).
    let mut agents: Vec<Proc> = fed
        .institutions
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let delay = (i * 400).to_string();
            let mut env = vec![("FEDRISK_TEST_DELAY_MS", delay.as_str())];
            if i + 1 == fed.institutions.len() {
                env.push(("FEDRISK_TEST_STAGE_DELAY_MS", "300"));
            }
            fed.participant(n, &env, &[])
        })
        .collect();
    // While the job runs, the participants are online.
    let started = Instant::now();
    let mut online_seen = 0.0;
    while started.elapsed() < Duration::from_secs(60) {
        let (_, text) = http_get(metrics_port, "/metrics").expect("metrics");
        online_seen = series(&text, "fedrisk_participants_online").unwrap_or(0.0);
        if online_seen == 3.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(online_seen, 3.0, "participants online while the job runs");

    let status = fed.wait_job_end(1, Duration::from_secs(240), &coord);
    assert_eq!(status["state"], "completed", "{status}");
    let converged = status["converged_round"]
        .as_u64()
        .unwrap_or_else(|| panic!("the job did not stop early: {status}"));
    assert!(converged < 25, "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("converged at round {converged}: ")),
        "{message}"
    );
    assert!(
        message.ends_with(&format!("rounds {} to 25 not run", converged + 1)),
        "{message}"
    );
    // The remaining rounds were not run: no round, model version or session after it.
    let rounds = survivors(&status);
    assert_eq!(
        rounds.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        (0..=converged).collect::<Vec<_>>()
    );
    let models = fed.models(1);
    assert_eq!(models.len() as u64, converged, "{models:?}");

    println!("{message}");
    // The metrics count exactly this job.
    let (code, text) = http_get(metrics_port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    let count = |name: &str| series(&text, name).unwrap_or_else(|| panic!("{name}:\n{text}"));
    let all_rounds = (converged + 1) as f64;
    assert_eq!(count("fedrisk_rounds_completed_total"), all_rounds);
    assert_eq!(count("fedrisk_rounds_started_total"), all_rounds);
    assert_eq!(count("fedrisk_rounds_failed_total"), 0.0);
    assert_eq!(count("fedrisk_round_seconds_count"), all_rounds);
    // One session per training round (round 1's update alone, then each update with the
    // previous model's evaluation) and the last model's evaluation.
    assert!(converged >= 2, "{status}");
    for (kind, n) in [
        ("magnitudes", 1.0),
        ("statistics", 1.0),
        ("update", 1.0),
        ("update_eval", (converged - 1) as f64),
        ("evaluation", 1.0),
    ] {
        assert_eq!(
            count(&format!(
                "fedrisk_sessions_completed_total{{kind=\"{kind}\"}}"
            )),
            n,
            "{kind}"
        );
    }
    let sessions = 3.0 + converged as f64;
    // Each session has five stages, each observed once.
    for stage in ["advertised", "shared", "masked", "signed", "unmasked"] {
        assert_eq!(
            count(&format!("fedrisk_stage_seconds_count{{stage=\"{stage}\"}}")),
            sessions,
            "{stage}"
        );
    }
    assert_eq!(count("fedrisk_dropouts_total"), 0.0);
    assert_eq!(count("fedrisk_jobs_converged_total"), 1.0);
    assert_eq!(count("fedrisk_jobs_ended_total{state=\"completed\"}"), 1.0);
    let up: u64 = status["rounds"]
        .as_array()
        .expect("rounds")
        .iter()
        .map(|r| r["bytes_up"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(count("fedrisk_received_bytes_total"), up as f64);
    // No label names a data value: only kinds, stages, states (and no refusal here).
    for line in text.lines().filter(|l| l.contains('{')) {
        let labels = &line[line.find('{').unwrap_or(0)..];
        assert!(
            ["kind=", "stage=", "state=", "le="]
                .iter()
                .any(|k| labels.contains(k)),
            "{line}"
        );
    }

    // status --watch saw the stages fill up and the job's end, then stopped by itself.
    let s = watch.wait_exit(Duration::from_secs(30));
    assert!(s.success(), "{s}\n{}", tail(&watch.stderr(), 20));
    let snapshots: Vec<Value> = watch
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(snapshots.len() >= 5, "{} snapshots", snapshots.len());
    let sessions_seen: Vec<&Value> = snapshots
        .iter()
        .filter_map(|s| {
            s["job"]["session"]
                .as_object()
                .map(|_| &s["job"]["session"])
        })
        .collect();
    let stage_names = |s: &Value| -> Vec<String> {
        s["stages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|st| st["stage"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        sessions_seen
            .iter()
            .all(|s| stage_names(s) == ["advertised", "shared", "masked", "signed", "unmasked"]),
        "{sessions_seen:?}"
    );
    // A stage seen part-way: some but not all of its expected messages in.
    let partway = sessions_seen.iter().any(|s| {
        s["stages"].as_array().is_some_and(|a| {
            a.iter().any(|st| {
                let (r, e) = (st["received"].as_u64(), st["expected"].as_u64());
                matches!((r, e), (Some(r), Some(e)) if r > 0 && r < e)
            })
        })
    });
    assert!(
        partway,
        "no stage seen part-way in {} snapshots",
        snapshots.len()
    );
    // And a completed stage: every invited participant's message in, closed.
    assert!(
        sessions_seen.iter().any(|s| s["stages"][0]["closed"] == true
            && s["stages"][0]["received"] == s["invited"]),
        "{sessions_seen:?}"
    );
    println!(
        "status --watch: {} snapshots, {} with a session",
        snapshots.len(),
        sessions_seen.len()
    );
    let last = snapshots.last().expect("snapshots");
    assert_eq!(last["job"]["state"], "completed", "{last}");
    assert_eq!(last["job"]["converged_round"], converged, "{last}");
    let rounds_seen: Vec<u64> = snapshots
        .iter()
        .filter_map(|s| s["job"]["round"].as_u64())
        .collect();
    assert!(
        rounds_seen.windows(2).all(|w| w[0] <= w[1]) && rounds_seen.first() < rounds_seen.last(),
        "the watch saw the job progress: {rounds_seen:?}"
    );

    // Without a terminal, --watch prints plain successive snapshots (no escape codes).
    let out = status_cmd(&fed, &["--watch", "--interval", "50", "--count", "3"])
        .output()
        .expect("status --watch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\x1b'), "{text}");
    for n in 1..=3 {
        assert!(text.contains(&format!("(snapshot {n})")), "{text}");
    }
    assert_eq!(text.matches("converged at round").count(), 3, "{text}");
    assert!(
        text.contains("jobs: 0 running, 0 pending, 1 completed"),
        "{text}"
    );

    // The audit chain says so too, and still verifies.
    let out = fed.path("audit.jsonl");
    let audit = Command::new(coordinator_bin())
        .args(["audit", "export", "--database"])
        .arg(fed.path("coord.db"))
        .arg("--out")
        .arg(&out)
        .current_dir(&fed.root)
        .output()
        .expect("audit export");
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    let records: Vec<Value> = std::fs::read_to_string(&out)
        .expect("audit.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    let conv: Vec<Value> = records
        .iter()
        .filter(|r| r["kind"] == "converged")
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap_or("null")).expect("body"))
        .collect();
    assert_eq!(conv.len(), 1, "{conv:?}");
    assert_eq!(conv[0]["round"], converged, "{}", conv[0]);
    assert_eq!(conv[0]["rounds_not_run"], 25 - converged, "{}", conv[0]);
    assert!(
        records.iter().all(|r| r["kind"] != "stage_closed"),
        "stage progress is not audit evidence"
    );
    fed.audit_verifies();
    for a in &mut agents {
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(s.success(), "{}: {s}\n{}", a.name, tail(&a.stderr(), 20));
    }
    let (code, _) = http_get(metrics_port, "/healthz").expect("healthz");
    assert_eq!(code, 200);
}

#[test]
fn an_agents_metrics_are_scraped_over_http_during_a_real_job() {
    let fed = Fed::new(64, 2000, 3);
    fed.write_config(&JobOpts {
        name: "agent-metrics",
        rounds: 2,
        min_participants: 3,
        ..JobOpts::default()
    });
    let coord = fed.serve();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let watched = fed.institutions[0].clone();
    // The watched agent keeps serving after the job, so its final counts can be read; the
    // last agent answers each later stage 200 ms late, so the watched one waits for it.
    let last = fed.institutions.len() - 1;
    let mut agents: Vec<Proc> = fed
        .institutions
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if i == 0 {
                fed.participant(n, &[], &["--metrics", &addr, "--keep-serving"])
            } else if i == last {
                fed.participant(n, &[("FEDRISK_TEST_STAGE_DELAY_MS", "200")], &[])
            } else {
                fed.participant(n, &[], &[])
            }
        })
        .collect();
    agents[0].wait_for_stdout("metrics on http://", Duration::from_secs(30));
    // During the job: connected, healthy, and tasks arriving.
    let started = Instant::now();
    let mut during = String::new();
    while started.elapsed() < Duration::from_secs(90) {
        if let Ok((200, text)) = http_get(port, "/metrics")
            && series(&text, "fedrisk_agent_connected") == Some(1.0)
            && series(&text, "fedrisk_agent_tasks_received_total").unwrap_or(0.0) >= 1.0
        {
            during = text;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !during.is_empty(),
        "no task seen on the agent's metrics while the job ran:\n{}",
        tail(&agents[0].stderr(), 30)
    );
    let (code, body) = http_get(port, "/healthz").expect("healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let status = fed.wait_job_end(1, Duration::from_secs(180), &coord);
    assert_eq!(status["state"], "completed", "{status}");
    for a in agents.iter_mut().skip(1) {
        a.wait_exit(Duration::from_secs(30));
    }
    // The sessions this job ran: magnitudes, statistics, one per trained model version
    // (its update, with the previous version's evaluation from the second on) and the
    // last version's evaluation, with no retry.
    let trained = fed.models(1).len() as f64;
    assert!(trained >= 1.0, "{status}");
    let sessions = 3.0 + trained;
    // The agent counts the last session once its unmasking response is accepted; wait for it.
    let mut text = String::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let (_, t) = http_get(port, "/metrics").expect("metrics");
        text = t;
        if series(&text, "fedrisk_agent_sessions_completed_total") == Some(sessions) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let count = |name: &str| series(&text, name).unwrap_or_else(|| panic!("{name}:\n{text}"));
    println!(
        "agent metrics after {sessions} sessions: tasks {} sent {} B received {} B",
        count("fedrisk_agent_tasks_received_total"),
        count("fedrisk_agent_sent_bytes_total"),
        count("fedrisk_agent_received_bytes_total")
    );
    assert_eq!(count("fedrisk_agent_tasks_received_total"), sessions);
    assert_eq!(count("fedrisk_agent_sessions_completed_total"), sessions);
    assert_eq!(count("fedrisk_agent_sessions_aborted_total"), 0.0);
    assert_eq!(count("fedrisk_agent_compute_seconds_count"), sessions);
    for stage in [
        "advertise_keys",
        "share_keys",
        "masked_input",
        "consistency_check",
    ] {
        let waited = count(&format!(
            "fedrisk_agent_stage_seconds_count{{stage=\"{stage}\"}}"
        ));
        assert_eq!(waited, sessions, "{stage}");
    }
    // The last agent sent its key shares about 200 ms after the key list reached both, so
    // the watched agent waited about that long for the share bundle, in every session.
    assert!(
        count("fedrisk_agent_stage_seconds_sum{stage=\"share_keys\"}") >= 0.1 * sessions,
        "{text}"
    );
    // Every session: five messages sent, none empty.
    assert!(
        count("fedrisk_agent_sent_bytes_total") > 5.0 * sessions,
        "{text}"
    );
    assert!(count("fedrisk_agent_received_bytes_total") > 0.0, "{text}");
    assert!(
        !text.contains("fedrisk_agent_tasks_refused_total{"),
        "no refusal in this job:\n{text}"
    );
    assert_eq!(count("fedrisk_agent_connected"), 1.0, "still serving");
    // Labels are stages only: no data value, name or hash.
    for line in text.lines().filter(|l| l.contains('{')) {
        let labels = &line[line.find('{').unwrap_or(0)..line.find('}').unwrap_or(line.len())];
        assert!(
            labels.starts_with("{stage=") || labels.starts_with("{le="),
            "{line}"
        );
        assert!(!line.contains(&watched), "{line}");
    }
    agents[0].kill();
}
