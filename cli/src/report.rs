//! `fedrisk-coordinator report`: the model report (self-contained HTML, `fedrisk_export::report`)
//! of a job's model version with the job's rounds and the audit chain's head, read from the
//! coordinator's database (`--database`) or through the Operator API from another host
//! (`--coordinator`, with an operator certificate); or of a model file alone. Both ways
//! read the same [`fedrisk_coordinator::report::model_report`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use fedrisk_coordinator::audit;
use fedrisk_coordinator::store::Store;
use fedrisk_export::report::{AuditView, JobView, ReportInput, RoundView};
use fedrisk_identity::signer::Verifier;
use fedrisk_models::ModelFile;
use fedrisk_proto::v1;

use crate::operator::{Connection, client};

#[derive(Args)]
pub struct ReportArgs {
    /// A model file (written by `job export` or `fedrisk-participant train`); without
    /// --job.
    #[arg(long, conflicts_with_all = ["database", "coordinator", "job"], required_unless_present = "job")]
    model: Option<PathBuf>,
    /// The coordinator's database (its `database` setting), with --job.
    #[arg(long, conflicts_with = "coordinator")]
    database: Option<PathBuf>,
    /// Or the coordinator's URL, e.g. https://coordinator.example:7443 (Operator API), with
    /// --job and the operator's --ca, --cert and --key as for `job`.
    #[arg(long, requires_all = ["ca", "cert", "key"])]
    coordinator: Option<String>,
    /// Federation CA certificate (with --coordinator).
    #[arg(long, requires = "coordinator")]
    ca: Option<PathBuf>,
    /// Operator certificate (with --coordinator; `certs issue --role operator`).
    #[arg(long, requires = "coordinator")]
    cert: Option<PathBuf>,
    /// Operator key (with --coordinator).
    #[arg(long, requires = "coordinator")]
    key: Option<PathBuf>,
    /// Name in the coordinator's certificate (with --coordinator).
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// The job whose model version to report, with --database or --coordinator.
    #[arg(long)]
    job: Option<u64>,
    /// The model version's round (default: the job's latest).
    #[arg(long, requires = "job")]
    round: Option<u32>,
    /// The coordinator's certificate (`pki/coordinator.pem`): checks the model's signature
    /// and (with --job) the audit chain, and the report says so; without it the report says
    /// they were not checked.
    #[arg(long)]
    coordinator_cert: Option<PathBuf>,
    /// Folder to write `report.html` in (created if absent).
    #[arg(long)]
    out: PathBuf,
}

/// Checks the coordinator's signature of the model's content hash.
fn check_signature(m: &ModelFile, verifier: &Verifier, cert: &Path) -> Result<String> {
    let Some(sig) = &m.signature else {
        bail!("the model is not signed, but --coordinator-cert was given to check its signature");
    };
    let value = hex::decode(&sig.value).context("the signature is not hex")?;
    let hash = hex::decode(&m.content_hash).context("the content hash is not hex")?;
    if sig.algorithm != "ecdsa-p256-sha256"
        || hex::encode(verifier.public_key()) != sig.public_key
        || !verifier.verify(&hash, &value)
    {
        bail!(
            "the model's signature does not verify with {}",
            cert.display()
        );
    }
    Ok(format!("verified with {}", cert.display()))
}

pub fn run(a: ReportArgs) -> Result<()> {
    let verifier = match &a.coordinator_cert {
        Some(c) => Some(Verifier::from_cert_file(c)?),
        None => None,
    };
    let (model, source, job, audit_view) = match (&a.model, &a.database, &a.coordinator, a.job) {
        (Some(path), _, _, _) => (
            ModelFile::load(path)?,
            format!("model file {}", path.display()),
            None,
            None,
        ),
        (None, Some(db), None, Some(id)) => {
            if !db.is_file() {
                bail!("{}: no such database", db.display());
            }
            let store = Store::open(db)?;
            let report =
                fedrisk_coordinator::report::model_report(&store, id, a.round, verifier.is_some())
                    .with_context(|| format!("{}: job {id}", db.display()))?;
            views(
                report,
                &db.display().to_string(),
                format!("job {id} of the coordinator database {}", db.display()),
                verifier.as_ref(),
            )?
        }
        (None, None, Some(url), Some(id)) => {
            let (Some(ca), Some(cert), Some(key)) = (&a.ca, &a.cert, &a.key) else {
                bail!("--coordinator needs the operator's --ca, --cert and --key");
            };
            let conn = Connection {
                coordinator: url.clone(),
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
                domain: a.domain.clone(),
            };
            let report = crate::runtime()?.block_on(async {
                client(&conn)
                    .await?
                    .get_model_report(v1::ModelReportRequest {
                        job_id: id,
                        round: a.round.unwrap_or(0),
                        audit_chain: verifier.is_some(),
                    })
                    .await
                    .map(tonic::Response::into_inner)
                    .with_context(|| format!("{url}: the model report of job {id}"))
            })?;
            views(
                report,
                url,
                format!("job {id} of the coordinator {url}"),
                verifier.as_ref(),
            )?
        }
        _ => bail!("give --model FILE, or --job ID with --database DB or --coordinator URL"),
    };
    let signature_check = match (&verifier, &a.coordinator_cert) {
        (Some(v), Some(c)) => Some(check_signature(&model, v, c)?),
        _ => None,
    };
    let html = fedrisk_export::report::render(&ReportInput {
        model: &model,
        source,
        signature_check,
        job,
        audit: audit_view,
    });
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let path = a.out.join("report.html");
    let partial = a.out.join(".report.html.partial");
    std::fs::write(&partial, html.as_bytes())
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "wrote {} (model content hash {}{})",
        path.display(),
        model.content_hash,
        if model.evaluation.is_some() {
            ""
        } else {
            "; the model carries no federated evaluation, so the report has no curves"
        }
    );
    Ok(())
}

type Views = (ModelFile, String, Option<JobView>, Option<AuditView>);

/// The report's parts from what the coordinator read (from `origin`): the model checked
/// against its recorded hash, the rounds, and the audit chain's head, checked with the
/// coordinator's certificate when one is given (the records then came along).
fn views(
    r: v1::ModelReport,
    origin: &str,
    source: String,
    verifier: Option<&Verifier>,
) -> Result<Views> {
    let Some(m) = r.model else {
        bail!("{origin}: the report carries no model");
    };
    let at = PathBuf::from(format!("{origin} job {} round {}", m.job_id, m.round));
    let text = std::str::from_utf8(&m.content)
        .with_context(|| format!("{}: the model file is not UTF-8", at.display()))?;
    let model = ModelFile::parse(text, &at)?;
    if model.content_hash != m.content_hash {
        bail!(
            "{}: the stored model's hash differs from the coordinator's record",
            at.display()
        );
    }
    let rounds = r
        .rounds
        .iter()
        .map(|x| RoundView {
            round: x.round,
            survivors: x.survivors,
            seconds: x.seconds,
            auc: x.auc,
            ks: x.ks,
            log_loss: x.log_loss,
            bytes_up: x.bytes_up,
            bytes_down: x.bytes_down,
        })
        .collect();
    let audit_view = if r.audit_records == 0 {
        None
    } else {
        let check = match verifier {
            Some(v) => {
                let text = std::str::from_utf8(&r.audit_jsonl)
                    .with_context(|| format!("{origin}: the audit records are not UTF-8"))?;
                let rows = audit::parse_jsonl(text)
                    .map_err(|e| anyhow::anyhow!("{origin}: audit records: {e}"))?;
                let head = rows.last().map(|h| (h.seq, h.hash.as_str()));
                if rows.len() as u64 != r.audit_records
                    || head != Some((r.audit_head_seq, r.audit_head_hash.as_str()))
                {
                    format!(
                        "CHAIN BROKEN: the records sent do not end at the head stated ({} records, head {})",
                        r.audit_records, r.audit_head_hash
                    )
                } else {
                    match audit::verify(&rows, v) {
                        Ok(n) => {
                            format!("chain verified: {n} records, links, hashes and signatures")
                        }
                        Err(b) => format!("CHAIN BROKEN: {b}"),
                    }
                }
            }
            None => {
                "chain not checked here (give --coordinator-cert, or run `audit verify`)".to_owned()
            }
        };
        Some(AuditView {
            records: r.audit_records,
            head_seq: r.audit_head_seq,
            head_hash: r.audit_head_hash.clone(),
            check,
        })
    };
    Ok((
        model,
        source,
        Some(JobView {
            id: m.job_id,
            name: r.job_name,
            state: r.job_state,
            message: r.job_message,
            round: m.round,
            rounds,
        }),
        audit_view,
    ))
}
