//! `fedrisk-coordinator audit`: check the audit chain, and export it for verification
//! without fedrisk (format in `fedrisk_coordinator::audit` and README.md).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use fedrisk_coordinator::audit;
use fedrisk_coordinator::store::{AuditRow, Store};
use fedrisk_identity::signer::Verifier;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the audit chain (numbering, hash links, each record's hash and the
    /// coordinator's signature) and name the first record that does not hold.
    Verify {
        /// The coordinator's database (its `database` setting).
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        database: Option<PathBuf>,
        /// A file written by `audit export` instead of the database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The coordinator's certificate, whose public key checks the signatures.
        #[arg(long, default_value = "pki/coordinator.pem")]
        cert: PathBuf,
    },
    /// Write the audit chain as JSON lines: seq, at_ms, kind, body, prev_hash, hash,
    /// signature (one record a line, in order).
    Export {
        /// The coordinator's database.
        #[arg(long)]
        database: PathBuf,
        /// Where to write the JSON lines.
        #[arg(long)]
        out: PathBuf,
    },
}

fn rows_of_database(database: &Path) -> Result<Vec<AuditRow>> {
    if !database.is_file() {
        bail!("{}: no such database", database.display());
    }
    Ok(Store::open(database)?.audit_rows()?)
}

pub fn run(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify {
            database,
            file,
            cert,
        } => {
            let verifier = Verifier::from_cert_file(&cert)?;
            let (rows, origin) = match (database, file) {
                (Some(db), _) => (rows_of_database(&db)?, db),
                (None, Some(f)) => {
                    let text = std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?;
                    let rows = audit::parse_jsonl(&text)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                    (rows, f)
                }
                (None, None) => bail!("give --database or --file"),
            };
            let n = audit::verify(&rows, &verifier)
                .map_err(|b| anyhow::anyhow!("{}: {b}", origin.display()))?;
            let head = rows.last().map_or(audit::GENESIS, |r| r.hash.as_str());
            println!(
                "{}: audit chain OK: {n} records signed by {}, head {head}",
                origin.display(),
                cert.display()
            );
        }
        AuditCommand::Export { database, out } => {
            let rows = rows_of_database(&database)?;
            let file = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let mut w = std::io::BufWriter::new(file);
            for r in &rows {
                serde_json::to_writer(&mut w, r)?;
                w.write_all(b"\n")?;
            }
            w.flush()
                .with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}: {} audit records", out.display(), rows.len());
        }
    }
    Ok(())
}
