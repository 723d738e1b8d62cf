//! `fedrisk-coordinator certs`: the federation's certificate authority and roster.
//!
//! Two folders: the CA's (`--ca-dir`: `ca.pem`, `ca.key`; kept offline, needed only by
//! `init`, `sign` and `issue`) and the one the coordinator serves (`--dir`: `ca.pem`,
//! `coordinator.pem`, `coordinator.key`, `roster.json` and the signed `<name>.pem`). The
//! roster lives only in `--dir`: `sign`, `issue` and `revoke` edit the file the running
//! coordinator re-reads.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use fedrisk_identity::pki::{self, Authority, InitOptions, PkiDir, Role, Roster};

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create the federation CA in --ca-dir (keep it offline), and in --dir what the
    /// coordinator serves: the CA certificate, the coordinator's server certificate and key,
    /// and an empty roster.
    Init {
        /// The coordinator's folder (its `pki_dir`); created if absent.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// Folder for the CA certificate and its private key `ca.key` (mode 0600), apart from
        /// --dir: removable media or an offline machine.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Federation name (goes into the CA and is the federation id participants see).
        #[arg(long)]
        federation: String,
        /// Extra DNS name or IP address of the coordinator, besides localhost and 127.0.0.1;
        /// repeat for several.
        #[arg(long)]
        san: Vec<String>,
    },
    /// Sign an institution's certificate signing request (made with `fedrisk-participant
    /// keygen`) with the CA: writes DIR/NAME.pem and adds it to the roster. The institution's
    /// key never leaves it.
    Sign {
        /// The coordinator's folder made by `certs init` (roster and certificates).
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// The CA's folder made by `certs init`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The request (PEM); its common name is the institution's name.
        #[arg(long)]
        csr: PathBuf,
        /// `participant` (a data holder) or `operator` (submits jobs, exports models).
        #[arg(long, default_value = "participant")]
        role: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Make an operator's Ed25519 key and certificate on this machine (for the job commands)
    /// and add it to the roster. Participants make their own keys: `fedrisk-participant
    /// keygen`, then `certs sign`.
    Issue {
        /// The coordinator's folder made by `certs init` (roster).
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// The CA's folder made by `certs init`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Name: lower case letters, digits, `_` and `-`, at most 64.
        #[arg(long)]
        name: String,
        /// Only `operator`.
        #[arg(long)]
        role: String,
        /// Folder for NAME.key and NAME.pem (not the coordinator's folder).
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Revoke a certificate: the coordinator refuses it from then on (at the handshake for
    /// new connections, per request on open ones) and drops its open stream; with --ca-dir,
    /// also signs a new revocation list that agents check their peers against.
    Revoke {
        /// The coordinator's folder made by `certs init` (roster).
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// The certificate's name.
        #[arg(long)]
        name: String,
        /// The CA's folder: with it, a new CA-signed revocation list (`revoked.crl`) is
        /// written for the agents, which then refuse the revoked certificate as a peer even
        /// from a coordinator that would relay it. Without it only the coordinator refuses it
        /// (sign the list later with `certs crl`).
        #[arg(long)]
        ca_dir: Option<PathBuf>,
    },
    /// Sign a new revocation list (`revoked.crl`) of every revoked certificate on the roster.
    Crl {
        /// The CA's folder (`ca.pem`, `ca.key`).
        #[arg(long)]
        ca_dir: PathBuf,
        /// The coordinator's folder made by `certs init` (roster).
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
    },
    /// List the roster.
    List {
        /// The coordinator's folder made by `certs init` (roster).
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
    },
}

fn parse_role(role: &str) -> Result<Role> {
    Ok(match role {
        "participant" => Role::Participant,
        "operator" => Role::Operator,
        other => bail!("--role `{other}`: expected participant or operator"),
    })
}

/// Whether two paths name the same folder (both must exist to be compared as files).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

pub fn run(cmd: CertsCommand) -> Result<()> {
    match cmd {
        CertsCommand::Init {
            dir,
            ca_dir,
            federation,
            san,
        } => {
            if same_dir(&dir, &ca_dir) {
                bail!(
                    "--ca-dir and --dir are the same folder ({}): the coordinator serves --dir, \
                     and the CA key must not be on the coordinator host",
                    dir.display()
                );
            }
            let mut opts = InitOptions::new(&federation);
            opts.server_names = san;
            pki::init_separate(&ca_dir, &dir, &opts)?;
            println!(
                "created the federation CA `{federation}` in {ca} (keep it offline: ca.key signs every identity) \
                 and the coordinator's folder {d} (ca.pem, coordinator.pem, coordinator.key, roster.json, revoked.crl)",
                ca = ca_dir.display(),
                d = dir.display()
            );
        }
        CertsCommand::Sign {
            dir,
            ca_dir,
            csr,
            role,
            days,
        } => {
            let role = parse_role(&role)?;
            let e = pki::sign_request(&Authority::new(&ca_dir, &dir), &csr, role, days)?;
            let name = &e.name;
            let d = dir.display();
            println!(
                "signed {name} ({}, id {}): {d}/{name}.pem; fingerprint {}\n\
                 public key {} (check it with the key's holder over another channel)\n\
                 send {d}/{name}.pem and {d}/ca.pem back to {name}",
                e.role, e.id, e.fingerprint, e.public_key
            );
        }
        CertsCommand::Issue {
            dir,
            ca_dir,
            name,
            role,
            out,
            days,
        } => {
            match parse_role(&role)? {
                Role::Operator => {}
                Role::Participant => bail!(
                    "certs issue makes the key on this machine, so it is only for the operator's own identity; \
                     a participant makes its key on its own machine with `fedrisk-participant keygen --name {name}` \
                     and sends {name}.csr, which you sign with `fedrisk-coordinator certs sign --csr {name}.csr`"
                ),
            }
            if same_dir(&out, &dir) {
                bail!(
                    "--out {}: that is the coordinator's folder, which must hold no client key; write it elsewhere",
                    out.display()
                );
            }
            if !out.exists() {
                std::fs::create_dir_all(&out)
                    .with_context(|| format!("creating {}", out.display()))?;
            }
            let e = pki::issue_to(
                &Authority::new(&ca_dir, &dir),
                &out,
                &name,
                Role::Operator,
                days,
            )?;
            let o = out.display();
            println!(
                "issued {name} ({}, id {}): {o}/{name}.pem and {o}/{name}.key; fingerprint {}",
                e.role, e.id, e.fingerprint
            );
        }
        CertsCommand::Crl { ca_dir, dir } => {
            let r = pki::write_crl(&pki::Authority::new(&ca_dir, &dir))?;
            println!(
                "signed revocation list number {} ({} revoked) into {}",
                r.crl_number,
                r.entries.iter().filter(|e| e.revoked).count(),
                PkiDir::new(&dir).crl().display()
            );
        }
        CertsCommand::Revoke { dir, name, ca_dir } => {
            let e = pki::revoke(&dir, &name)?;
            if let Some(ca_dir) = ca_dir {
                let r = pki::write_crl(&pki::Authority::new(&ca_dir, &dir))?;
                println!("signed revocation list number {}", r.crl_number);
            }
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
