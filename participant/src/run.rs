//! `fedrisk-participant run`: the agent, after the checks that can be made before any job.

use anyhow::{Context, Result, bail};
use fedrisk_identity::client::ClientIdentity;
use fedrisk_models::{LabelMode, Schema, load};

/// Checks the data (against the schema, or its shape without one), the identity files and
/// the policy, then serves jobs until one ends.
pub fn run_agent(a: crate::RunArgs) -> Result<()> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| a.log.clone());
    let env_filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    let _ = if a.log_format == "json" {
        builder.json().try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    if !(0.5..=1.0).contains(&a.min_threshold_fraction) {
        bail!(
            "--min-threshold-fraction {}: expected 0.5 to 1",
            a.min_threshold_fraction
        );
    }
    if a.min_distinct < 3 {
        bail!(
            "--min-distinct {}: at least 3 (a sum over two institutions gives each the other's input)",
            a.min_distinct
        );
    }
    if !a.coordinator.starts_with("https://") {
        bail!(
            "--coordinator `{}`: the coordinator speaks only TLS; use https://HOST:PORT",
            a.coordinator
        );
    }
    let data = a.src.source()?;
    let schema = match &a.schema {
        Some(p) => {
            let s = Schema::load(p)?;
            load(&data, &s, LabelMode::Required)?;
            Some(s)
        }
        None => {
            // No schema yet: each job brings one. The source's shape is checked now.
            fedrisk_models::shape::check_source_shape(&data)?;
            None
        }
    };
    let identity = ClientIdentity::from_files(&a.ca, &a.cert, &a.key)?;
    tracing::info!(
        checked_against_schema = schema.is_some(),
        "data and identity checked; jobs with another schema, or that the data does not fit, are refused with the reason sent to the operator"
    );
    let domain = match &a.domain {
        Some(d) => d.clone(),
        None => a
            .coordinator
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split([':', '/']).next())
            .filter(|h| !h.is_empty())
            .with_context(|| {
                format!(
                    "--coordinator `{}`: expected https://HOST:PORT",
                    a.coordinator
                )
            })?
            .to_string(),
    };
    let policy = fedrisk_secagg::ParticipantPolicy {
        min_threshold_fraction: a.min_threshold_fraction,
        min_distinct: a.min_distinct,
        ..fedrisk_secagg::ParticipantPolicy::default()
    };
    let ledger = a.ledger.clone().unwrap_or_else(|| {
        let mut p = a.key.clone().into_os_string();
        p.push(".ledger.jsonl");
        p.into()
    });
    let cfg = fedrisk_participant::agent::AgentConfig {
        url: a.coordinator.clone(),
        domain,
        identity,
        data,
        schema,
        policy,
        keep_serving: a.keep_serving,
        max_reconnects: a.max_reconnects,
        ledger: Some(ledger),
        limits: fedrisk_rounds::TaskLimits::default(),
        key_list_window: std::time::Duration::from_secs(a.key_list_window_secs),
    };
    // One worker, and the agent's loop runs on it (spawned, not on this thread), next to
    // the connection's driver: a message then moves between them without waking another
    // thread (on 200 agents sharing two cores that was a few percent of each session).
    // Opening a session, whose work grows with the institution's rows, and the stages of a
    // large vector leave the worker to the driver meanwhile (`block_in_place`), so pings and
    // heartbeats are still answered.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let outcome = rt.block_on(async {
        let endpoint = match a.metrics {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--metrics {addr}: cannot listen"))?;
                let local = listener.local_addr()?;
                println!("metrics on http://{local}/metrics");
                Some(tokio::spawn(fedrisk_participant::metrics::serve(
                    listener,
                    &fedrisk_participant::metrics::METRICS,
                )))
            }
            None => None,
        };
        let outcome = tokio::spawn(fedrisk_participant::agent::run(cfg))
            .await
            .context("the agent's task stopped")?;
        if let Some(e) = endpoint {
            e.abort();
        }
        anyhow::Ok(outcome)
    })?;
    if a.report_peak_memory {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kb = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("0");
        eprintln!("peak_rss_kb={kb}");
    }
    let outcome = outcome?;
    if outcome.completed {
        println!("job {} completed", outcome.job_id);
        Ok(())
    } else {
        bail!(
            "job {} ended without completing: {}",
            outcome.job_id,
            outcome.message
        )
    }
}
