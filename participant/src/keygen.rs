//! `fedrisk-participant keygen`: the institution's identity key, made where it will live.
//!
//! Writes `DIR/NAME.key` (the Ed25519 key, PKCS#8 PEM, mode 0600: the agent's TLS key and its
//! secure-aggregation signing key) and `DIR/NAME.csr` (a PKCS#10 request with CN = NAME, to
//! send to the federation operator, who signs it with `fedrisk-coordinator certs sign` and
//! sends back `NAME.pem` and `ca.pem`). The key is written nowhere else and never printed;
//! existing files are never overwritten.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fedrisk_identity::pki;

/// The files `keygen` wrote.
#[derive(Debug)]
pub struct Written {
    /// The private key.
    pub key: PathBuf,
    /// The signing request.
    pub csr: PathBuf,
    /// The raw Ed25519 public key, hex.
    pub public_key: String,
}

/// Makes the key and the request in `out` (created, mode 0700, if absent).
pub fn keygen(name: &str, out: &Path) -> Result<Written> {
    pki::validate_name(name)?;
    let key = out.join(format!("{name}.key"));
    let csr = out.join(format!("{name}.csr"));
    for path in [&key, &csr] {
        if path.exists() {
            bail!(
                "{}: already exists; refusing to overwrite it (an institution's key is made once: \
                 move the old files away first if you really mean to replace them)",
                path.display()
            );
        }
    }
    if !out.exists() {
        fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        fs::set_permissions(out, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("{}", out.display()))?;
    }
    let request = pki::generate_request(name)?;
    // The key first: a request is worth nothing without it.
    write_new(&key, request.key_pem.as_bytes(), 0o600)?;
    write_new(&csr, request.csr_pem.as_bytes(), 0o644)?;
    Ok(Written {
        key,
        csr,
        public_key: request.public_key,
    })
}

/// Creates `path` with `mode` (never replacing a file), writes and syncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `keygen` with what to do next printed (paths and the public key, never the key).
pub fn run(name: &str, out: &Path) -> Result<()> {
    let w = keygen(name, out)?;
    println!(
        "wrote {key} (the private key, mode 0600: it stays on this machine; never send it)\n\
         wrote {csr}: send it to the federation operator, who signs it and sends back {name}.pem and ca.pem\n\
         public key {pk} (confirm it with the operator over another channel, e.g. by phone)\n\
         then: fedrisk-participant run --cert {name}.pem --key {key} --ca ca.pem --coordinator URL --data FILE",
        key = w.key.display(),
        csr = w.csr.display(),
        pk = w.public_key,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_private_key_and_a_request_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("keys");
        let w = keygen("bank_a", &out).expect("keygen");
        assert_eq!(w.key, out.join("bank_a.key"));
        assert_eq!(w.csr, out.join("bank_a.csr"));
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&w.key), 0o600);
        assert_eq!(mode(&out), 0o700);
        let key = fs::read_to_string(&w.key).expect("key");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "not PKCS#8");
        let csr = fs::read_to_string(&w.csr).expect("csr");
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(!csr.contains("PRIVATE"));
        // Neither file is ever replaced: with either one left, keygen refuses naming it.
        let err = format!("{:#}", keygen("bank_a", &out).expect_err("overwrite"));
        assert!(err.contains("already exists"), "{err}");
        fs::remove_file(&w.csr).expect("rm");
        let err = format!("{:#}", keygen("bank_a", &out).expect_err("key left"));
        assert!(err.contains(&w.key.display().to_string()), "{err}");
        assert_eq!(fs::read_to_string(&w.key).expect("key"), key);
        assert!(!w.csr.exists());
        fs::rename(&w.key, tmp.path().join("moved.key")).expect("mv");
        fs::write(&w.csr, "old request").expect("write");
        let err = format!("{:#}", keygen("bank_a", &out).expect_err("request left"));
        assert!(err.contains(&w.csr.display().to_string()), "{err}");
        assert!(!w.key.exists());
        assert_eq!(fs::read_to_string(&w.csr).expect("csr"), "old request");
        let err = format!("{:#}", keygen("Bank A", &out).expect_err("bad name"));
        assert!(err.contains("invalid certificate name"), "{err}");
    }
}
