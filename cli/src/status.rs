//! `fedrisk-coordinator status [--watch]`: the operators' live view of a running coordinator
//! (jobs, the round in flight with its progress per secure-aggregation stage, participants,
//! refusals and why, the latest errors), from the server's GetStatus and ListJobs.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use fedrisk_proto::v1;

use crate::operator::{Connection, client, clock, render_status, state_name, status_json};

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    conn: Connection,
    /// The job to show in full (default: the running job, else the newest).
    #[arg(long)]
    id: Option<u64>,
    /// Redraw every --interval: in place on a terminal, as successive snapshots otherwise.
    #[arg(long)]
    watch: bool,
    /// Milliseconds between snapshots with --watch.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..))]
    interval: u64,
    /// Stop after this many snapshots (default: until Ctrl-C, or --until-done).
    #[arg(long)]
    count: Option<u64>,
    /// With --watch: stop once the job shown has ended (after showing its final state).
    #[arg(long)]
    until_done: bool,
    /// One JSON object per snapshot, one per line.
    #[arg(long)]
    json: bool,
}

fn terminal_state(s: i32) -> bool {
    matches!(
        v1::JobState::try_from(s),
        Ok(v1::JobState::Completed | v1::JobState::Failed | v1::JobState::Cancelled)
    )
}

/// One snapshot: every job in a line, then the chosen job in full.
struct Snapshot {
    jobs: Vec<v1::JobStatus>,
    shown: Option<v1::JobStatus>,
}

async fn snapshot(
    c: &mut fedrisk_proto::OperatorClient<tonic::transport::Channel>,
    id: Option<u64>,
) -> Result<Snapshot> {
    let jobs = c
        .list_jobs(v1::ListJobsRequest::default())
        .await
        .context("list jobs")?
        .into_inner()
        .jobs;
    let pick = id.or_else(|| {
        jobs.iter()
            .find(|j| j.state == v1::JobState::Running as i32)
            .or_else(|| jobs.iter().max_by_key(|j| j.job_id))
            .map(|j| j.job_id)
    });
    let shown = match pick {
        Some(job_id) => Some(
            c.get_status(v1::JobRef { job_id })
                .await
                .with_context(|| format!("status of job {job_id}"))?
                .into_inner(),
        ),
        None => None,
    };
    Ok(Snapshot { jobs, shown })
}

fn render(s: &Snapshot, n: u64, now_ms: u64) -> String {
    let mut out = format!("fedrisk status at {} UTC (snapshot {n})\n", clock(now_ms));
    let count = |state: v1::JobState| s.jobs.iter().filter(|j| j.state == state as i32).count();
    out.push_str(&format!(
        "jobs: {} running, {} pending, {} completed, {} failed, {} cancelled\n",
        count(v1::JobState::Running),
        count(v1::JobState::Pending),
        count(v1::JobState::Completed),
        count(v1::JobState::Failed),
        count(v1::JobState::Cancelled)
    ));
    for j in &s.jobs {
        out.push_str(&format!(
            "  job {} `{}`: {}, {} of {} training rounds complete\n",
            j.job_id,
            j.name,
            state_name(j.state),
            j.round,
            j.rounds_total
        ));
    }
    match &s.shown {
        Some(job) => {
            out.push('\n');
            out.push_str(&render_status(job));
        }
        None => out.push_str("no job submitted yet\n"),
    }
    out
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub async fn run(args: StatusArgs) -> Result<()> {
    let mut c = client(&args.conn).await?;
    let in_place = args.watch && !args.json && std::io::stdout().is_terminal();
    let mut id = args.id;
    let mut n = 0u64;
    loop {
        n += 1;
        let s = snapshot(&mut c, id).await?;
        // Keep following the job first shown, even after another one starts.
        if args.watch && id.is_none() {
            id = s.shown.as_ref().map(|j| j.job_id);
        }
        let mut stdout = std::io::stdout().lock();
        if args.json {
            let v = serde_json::json!({
                "snapshot": n,
                "at_unix_ms": now_ms(),
                "jobs": s.jobs.iter().map(|j| serde_json::json!({"job_id": j.job_id, "name": j.name,
                    "state": state_name(j.state), "round": j.round, "rounds_total": j.rounds_total})).collect::<Vec<_>>(),
                "job": s.shown.as_ref().map(status_json),
            });
            writeln!(stdout, "{v}")?;
        } else {
            let text = render(&s, n, now_ms());
            if in_place {
                if n == 1 {
                    write!(stdout, "\x1b[2J")?;
                }
                // Home, draw, then clear what an earlier, longer snapshot left below.
                write!(stdout, "\x1b[H{}\x1b[J", text.replace('\n', "\x1b[K\n"))?;
            } else {
                if n > 1 {
                    writeln!(stdout)?;
                }
                write!(stdout, "{text}")?;
            }
        }
        stdout.flush()?;
        drop(stdout);
        let done = s.shown.as_ref().is_some_and(|j| terminal_state(j.state));
        if !args.watch || args.count.is_some_and(|c| n >= c) || (args.until_done && done) {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(args.interval)) => {}
            r = tokio::signal::ctrl_c() => { r.context("waiting for Ctrl-C")?; return Ok(()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_lists_jobs_and_shows_the_session_stage_by_stage() {
        let job = v1::JobStatus {
            job_id: 2,
            name: "pd".into(),
            state: v1::JobState::Running as i32,
            round: 1,
            rounds_total: 3,
            session: Some(v1::SessionProgress {
                round: 2,
                kind: "update".into(),
                invited: 4,
                threshold: 3,
                state: "running".into(),
                stages: vec![
                    v1::StageProgress {
                        stage: "advertised".into(),
                        received: 4,
                        expected: 4,
                        closed: true,
                        seconds: 0.25,
                    },
                    v1::StageProgress {
                        stage: "shared".into(),
                        received: 1,
                        expected: 4,
                        closed: false,
                        seconds: 0.5,
                    },
                    v1::StageProgress {
                        stage: "masked".into(),
                        ..Default::default()
                    },
                ],
                seconds: 0.75,
            }),
            ..Default::default()
        };
        let done = v1::JobStatus {
            job_id: 1,
            name: "old".into(),
            state: v1::JobState::Completed as i32,
            round: 3,
            rounds_total: 3,
            ..Default::default()
        };
        let s = Snapshot {
            jobs: vec![done, job.clone()],
            shown: Some(job),
        };
        let text = render(&s, 3, 3_600_000 + 61_000);
        assert!(
            text.starts_with("fedrisk status at 01:01:01 UTC (snapshot 3)\n"),
            "{text}"
        );
        assert!(text.contains("jobs: 1 running, 0 pending, 1 completed, 0 failed, 0 cancelled"));
        assert!(text.contains("  job 1 `old`: completed, 3 of 3 training rounds complete"));
        assert!(
            text.contains("session: round 2 update, 4 invited, threshold 3, running (0.8 s)"),
            "{text}"
        );
        assert!(
            text.contains("    advertised   4 of 4   closed after 0.25 s"),
            "{text}"
        );
        assert!(
            text.contains("    shared       1 of 4   open for 0.50 s"),
            "{text}"
        );
        assert!(text.contains("    masked     -"), "{text}");
    }
}
