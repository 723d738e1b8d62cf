//! What a model report is made of, read from the store: a model version, its job, the job's
//! completed rounds and the audit chain's head (and, when asked, every audit record). One
//! function for both ways to a report: `report --database` reads it here directly, and
//! the Operator service's `GetModelReport` sends it to `report --coordinator`.

use fedrisk_proto::v1;

use crate::store::{RoundState, Store, StoreError};

/// Why no report could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("job {job} has no model version{}", round.map_or(String::new(), |r| format!(" of round {r}")))]
    NoModel { job: u64, round: Option<u32> },
    #[error("audit record {seq}: {reason}")]
    Audit { seq: u64, reason: String },
}

/// The report's contents of job `job`'s model version of `round` (None: the latest), with
/// every audit record as JSON lines when `audit_chain`.
pub fn model_report(
    store: &Store,
    job: u64,
    round: Option<u32>,
    audit_chain: bool,
) -> Result<v1::ModelReport, ReportError> {
    let record = store.job(job)?;
    let version = match round {
        Some(r) => store.model_version(job, r)?,
        None => store.latest_model(job)?,
    }
    .ok_or(ReportError::NoModel { job, round })?;
    let mut rounds: Vec<v1::ReportRound> = store
        .rounds(job)?
        .into_iter()
        .filter(|r| r.state == RoundState::Completed)
        .map(|r| v1::ReportRound {
            round: r.round,
            survivors: r.metrics.survivors,
            seconds: r.metrics.seconds,
            auc: r.metrics.auc,
            ks: r.metrics.ks,
            log_loss: r.metrics.log_loss,
            bytes_up: r.metrics.bytes_up,
            bytes_down: r.metrics.bytes_down,
        })
        .collect();
    rounds.sort_by_key(|r| r.round);
    rounds.dedup_by_key(|r| r.round);
    let rows = store.audit_rows()?;
    let mut audit_jsonl = Vec::new();
    if audit_chain {
        for r in &rows {
            serde_json::to_writer(&mut audit_jsonl, r).map_err(|e| ReportError::Audit {
                seq: r.seq,
                reason: e.to_string(),
            })?;
            audit_jsonl.push(b'\n');
        }
    }
    let head = rows.last();
    Ok(v1::ModelReport {
        model: Some(v1::ModelExport {
            job_id: version.job_id,
            round: version.round,
            format: v1::ExportFormat::Json as i32,
            content: version.model_json.unwrap_or_default().into_bytes(),
            content_hash: version.content_hash,
        }),
        job_name: record.name,
        job_state: record.state.as_str().to_owned(),
        job_message: record.message,
        rounds,
        audit_records: rows.len() as u64,
        audit_head_seq: head.map_or(0, |h| h.seq),
        audit_head_hash: head.map_or(String::new(), |h| h.hash.clone()),
        audit_jsonl,
    })
}
