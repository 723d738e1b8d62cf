//! `fedrisk-coordinator report`: the model report (self-contained HTML, `fedrisk_export::report`)
//! of a job's model version from the coordinator's database, with the job's rounds and the
//! audit chain's head, or of a model file alone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use fedrisk_coordinator::audit;
use fedrisk_coordinator::store::{RoundState, Store};
use fedrisk_export::report::{AuditView, JobView, ReportInput, RoundView};
use fedrisk_identity::signer::Verifier;
use fedrisk_models::ModelFile;

#[derive(Args)]
pub struct ReportArgs {
    /// A model file (written by `job export` or `fedrisk-participant train`); without
    /// --database.
    #[arg(long, conflicts_with_all = ["database", "job"], required_unless_present = "job")]
    model: Option<PathBuf>,
    /// The coordinator's database (its `database` setting), with --job.
    #[arg(long, requires = "job")]
    database: Option<PathBuf>,
    /// The job whose model version to report, with --database.
    #[arg(long, requires = "database")]
    job: Option<u64>,
    /// The model version's round (default: the job's latest).
    #[arg(long, requires = "job")]
    round: Option<u32>,
    /// The coordinator's certificate: checks the model's signature and (with --database) the
    /// audit chain, and the report says so; without it the report says they were not checked.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Folder to write `report.html` in (created if absent).
    #[arg(long)]
    out: PathBuf,
}

/// Checks the coordinator's signature of the model's content hash.
fn check_signature(m: &ModelFile, verifier: &Verifier, cert: &Path) -> Result<String> {
    let Some(sig) = &m.signature else {
        bail!("the model is not signed, but --cert was given to check its signature");
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
    let verifier = match &a.cert {
        Some(c) => Some(Verifier::from_cert_file(c)?),
        None => None,
    };
    let (model, source, job, audit_view) = match (&a.model, &a.database, a.job) {
        (Some(path), _, _) => (
            ModelFile::load(path)?,
            format!("model file {}", path.display()),
            None,
            None,
        ),
        (None, Some(db), Some(id)) => from_database(db, id, a.round, verifier.as_ref())?,
        _ => bail!("give --model FILE, or --database DB with --job ID"),
    };
    let signature_check = match (&verifier, &a.cert) {
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

type FromDatabase = (ModelFile, String, Option<JobView>, Option<AuditView>);

fn from_database(
    db: &Path,
    id: u64,
    round: Option<u32>,
    verifier: Option<&Verifier>,
) -> Result<FromDatabase> {
    if !db.is_file() {
        bail!("{}: no such database", db.display());
    }
    let store = Store::open(db)?;
    let job = store
        .job(id)
        .with_context(|| format!("{}: job {id}", db.display()))?;
    let version = match round {
        Some(r) => store.model_version(id, r)?,
        None => store.latest_model(id)?,
    };
    let Some(version) = version else {
        bail!(
            "{}: job {id} has no model version{}",
            db.display(),
            round.map_or(String::new(), |r| format!(" of round {r}"))
        );
    };
    let origin = PathBuf::from(format!("{} job {id} round {}", db.display(), version.round));
    let text = version.model_json.unwrap_or_default();
    let model = ModelFile::parse(&text, &origin)?;
    if model.content_hash != version.content_hash {
        bail!(
            "{}: the stored model's hash differs from the database's record",
            origin.display()
        );
    }
    let mut rounds: Vec<RoundView> = store
        .rounds(id)?
        .into_iter()
        .filter(|r| r.state == RoundState::Completed)
        .map(|r| RoundView {
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
    let audit_view = rows.last().map(|head| AuditView {
        records: rows.len() as u64,
        head_seq: head.seq,
        head_hash: head.hash.clone(),
        check: match verifier {
            Some(v) => match audit::verify(&rows, v) {
                Ok(n) => format!("chain verified: {n} records, links, hashes and signatures"),
                Err(b) => format!("CHAIN BROKEN: {b}"),
            },
            None => "chain not checked here (give --cert, or run `audit verify`)".to_owned(),
        },
    });
    Ok((
        model,
        format!("job {id} of the coordinator database {}", db.display()),
        Some(JobView {
            id,
            name: job.name.clone(),
            state: job.state.as_str().to_owned(),
            message: job.message.clone(),
            round: version.round,
            rounds,
        }),
        audit_view,
    ))
}
