//! `fedrisk-coordinator certs`: the federation's certificate authority and roster.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use fedrisk_identity::pki::{self, InitOptions, PkiDir, Role, Roster};

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create the federation CA, the coordinator's server certificate and an empty roster.
    Init {
        /// Folder for the CA and certificates (keys are written with mode 0600).
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// Federation name (goes into the CA and is the federation id participants see).
        #[arg(long)]
        federation: String,
        /// Extra DNS name or IP address of the coordinator, besides localhost and 127.0.0.1;
        /// repeat for several.
        #[arg(long)]
        san: Vec<String>,
    },
    /// Issue a participant's (or operator's) Ed25519 key and certificate and add it to the
    /// roster. The key is also the participant's secure-aggregation identity.
    Issue {
        /// Folder made by `certs init`.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// Institution name: lower case letters, digits, `_` and `-`, at most 64.
        #[arg(long)]
        name: String,
        /// `participant` (a data holder) or `operator` (submits jobs, exports models).
        #[arg(long, default_value = "participant")]
        role: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Revoke a certificate: the coordinator refuses it from then on (at the handshake for
    /// new connections, per request on open ones).
    Revoke {
        /// Folder made by `certs init`.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// The certificate's name.
        #[arg(long)]
        name: String,
    },
    /// List the roster.
    List {
        /// Folder made by `certs init`.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
    },
}

pub fn run(cmd: CertsCommand) -> Result<()> {
    match cmd {
        CertsCommand::Init {
            dir,
            federation,
            san,
        } => {
            let mut opts = InitOptions::new(&federation);
            opts.server_names = san;
            pki::init_with(&dir, &opts)?;
            println!(
                "created the federation CA `{federation}` in {} (keep ca.key offline; it signs every identity)",
                dir.display()
            );
        }
        CertsCommand::Issue {
            dir,
            name,
            role,
            days,
        } => {
            let role = match role.as_str() {
                "participant" => Role::Participant,
                "operator" => Role::Operator,
                other => bail!("--role `{other}`: expected participant or operator"),
            };
            let e = pki::issue(&dir, &name, role, days)?;
            let d = dir.display();
            println!(
                "issued {name} ({}, id {}): {d}/{name}.pem and {d}/{name}.key; fingerprint {}",
                e.role, e.id, e.fingerprint
            );
        }
        CertsCommand::Revoke { dir, name } => {
            let e = pki::revoke(&dir, &name)?;
            println!(
                "revoked {name} (id {}, fingerprint {})",
                e.id, e.fingerprint
            );
        }
        CertsCommand::List { dir } => {
            let roster = Roster::load(&PkiDir::new(&dir).roster())?;
            println!("federation {}", roster.federation);
            println!(
                "{:>4} {:<24} {:<12} {:<8} fingerprint",
                "id", "name", "role", "status"
            );
            for e in &roster.entries {
                println!(
                    "{:>4} {:<24} {:<12} {:<8} {}",
                    e.id,
                    e.name,
                    e.role.to_string(),
                    if e.revoked { "revoked" } else { "active" },
                    &e.fingerprint[..16.min(e.fingerprint.len())]
                );
            }
        }
    }
    Ok(())
}
