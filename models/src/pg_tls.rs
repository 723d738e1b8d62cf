//! TLS to PostgreSQL as libpq reads the URL: `sslmode` (`disable`, `prefer` (the default),
//! `require`, `verify-ca`, `verify-full`) and `sslrootcert=FILE` (or the caller's root
//! certificate, `--pg-ca`). rustls with the ring provider: no system OpenSSL.
//!
//! - `disable`: no TLS.
//! - `prefer`: TLS if the server offers it (its certificate not checked, as libpq does),
//!   else plain; a failed handshake is retried without TLS.
//! - `require`: TLS or no connection; the certificate is checked against the root
//!   certificate when one is given (libpq's rule), else only the handshake's signatures.
//! - `verify-ca`: the server's certificate must chain to the root certificate.
//! - `verify-full`: and name the host of the URL (DNS name or IP address).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, SignatureScheme};
use rustls::{DigitallySignedStruct, Error as TlsError, RootCertStore};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The mode's name in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow (plain first, TLS only if the server insists) is not \
                     supported: use prefer or require"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "sslmode={other}: expected disable, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }
}

/// The URL's TLS settings, taken out of it (tokio-postgres knows neither `verify-*` nor
/// `sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// The root certificate(s), PEM.
    pub root: Option<PathBuf>,
}

/// Splits the TLS parameters off a `postgres://` URL: the URL without them, and the
/// settings. `ca` (from `--pg-ca`) is the root certificate unless the URL names one too,
/// which is refused as ambiguous. Client certificates (`sslcert`, `sslkey`) are refused.
pub fn split_url(url: &str, ca: Option<&Path>) -> Result<(String, TlsSettings), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let mut mode = None;
    let mut root = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = Some(SslMode::parse(&percent_decode(value)?)?),
            "sslrootcert" => root = Some(PathBuf::from(percent_decode(value)?)),
            "sslcert" | "sslkey" | "sslpassword" => {
                return Err(format!(
                    "{key}: client certificates for PostgreSQL are not supported; use a \
                     password (PGPASSWORD or --password-file) over TLS"
                ));
            }
            "sslcrl"
            | "sslcrldir"
            | "sslsni"
            | "ssl_min_protocol_version"
            | "ssl_max_protocol_version" => {
                return Err(format!("{key} is not supported"));
            }
            _ => kept.push(pair),
        }
    }
    if let (Some(r), Some(c)) = (&root, ca)
        && r != c
    {
        return Err(format!(
            "the root certificate is given twice: sslrootcert={} in the URL and --pg-ca {}",
            r.display(),
            c.display()
        ));
    }
    let root = root.or_else(|| ca.map(Path::to_owned));
    if root.as_deref() == Some(Path::new("system")) {
        return Err(
            "sslrootcert=system (the operating system's roots) is not supported: give the \
             file of the certificate authority that signed the server's certificate"
                .into(),
        );
    }
    let mode = mode.unwrap_or_default();
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root.is_none() {
        return Err(format!(
            "sslmode={} needs the root certificate that signed the server's: sslrootcert=FILE \
             in the URL or --pg-ca FILE",
            mode.as_str()
        ));
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, TlsSettings { mode, root }))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("`{text}`: a bad percent escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{text}`: not UTF-8"))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How the server's certificate is checked.
#[derive(Debug)]
struct Verifier {
    /// `None`: any certificate (prefer, require without a root); the handshake's signatures
    /// are still checked against it.
    roots: Option<Arc<RootCertStore>>,
    /// verify-full: the certificate must name the host.
    check_name: bool,
    full: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        if self.check_name {
            return self.full.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The root certificates of `path` (PEM, one or more).
fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let text =
        std::fs::read(path).map_err(|e| format!("root certificate {}: {e}", path.display()))?;
    let mut store = RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&text) {
        let cert = cert.map_err(|e| {
            format!(
                "root certificate {}: not PEM certificates: {e}",
                path.display()
            )
        })?;
        store.add(cert).map_err(|e| {
            format!(
                "root certificate {}: not a usable certificate: {e}",
                path.display()
            )
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "root certificate {}: no certificate in it (expected PEM `BEGIN CERTIFICATE`)",
            path.display()
        ));
    }
    Ok(store)
}

/// The rustls client configuration for `settings` (not called for `disable`).
pub fn client_config(settings: &TlsSettings) -> Result<ClientConfig, String> {
    let provider = provider();
    // libpq: `require` with a root certificate checks the chain like `verify-ca`.
    let verify_chain = match settings.mode {
        SslMode::Disable | SslMode::Prefer => false,
        SslMode::Require => settings.root.is_some(),
        SslMode::VerifyCa | SslMode::VerifyFull => true,
    };
    let roots = match (&settings.root, verify_chain) {
        (Some(p), true) => Some(Arc::new(load_roots(p)?)),
        _ => None,
    };
    let full_roots = roots
        .clone()
        .unwrap_or_else(|| Arc::new(RootCertStore::empty()));
    // An empty store cannot build a verifier; it is used only when there are roots.
    let full = if full_roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(full_roots, provider.clone())
                .build()
                .map_err(|e| format!("the root certificate: {e}"))?,
        )
    };
    let verifier: Arc<dyn ServerCertVerifier> = match full {
        Some(full) => Arc::new(Verifier {
            roots,
            check_name: settings.mode == SslMode::VerifyFull,
            full,
            provider: provider.clone(),
        }),
        None => Arc::new(AnyCertificate {
            provider: provider.clone(),
        }),
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// `prefer`, and `require` without a root: any certificate, the handshake's signatures checked.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A plainer reading of a TLS failure in `text` (a connection error with its causes).
pub fn explain(text: &str, settings: &TlsSettings) -> Option<String> {
    let root = || {
        settings
            .root
            .as_deref()
            .map_or("?".into(), |p| p.display().to_string())
    };
    if text.contains("server does not support TLS") {
        return Some(format!(
            "the server does not offer TLS, and sslmode={} asks for it",
            settings.mode.as_str()
        ));
    }
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        return Some(format!(
            "the server's certificate is not signed by the root certificate {} \
             (sslmode={})",
            root(),
            settings.mode.as_str()
        ));
    }
    if text.contains("NotValidForName") || text.contains("not valid for name") {
        return Some(
            "the server's certificate does not name the host of the URL (sslmode=verify-full; \
             verify-ca checks the signature only)"
                .into(),
        );
    }
    if ["Expired", "expired", "NotValidYet", "not valid yet"]
        .iter()
        .any(|k| text.contains(k))
    {
        return Some("the server's certificate is outside its validity period".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_tls_parameters_and_keep_the_rest() {
        let (url, s) = split_url(
            "postgres://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
            None,
        )
        .unwrap();
        assert_eq!(url, "postgres://u@h:5/db?application_name=x");
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root.as_deref(), Some(Path::new("/tmp/ca.pem")));
        let (url, s) = split_url("postgres://u@h/db", None).unwrap();
        assert_eq!(
            (url.as_str(), s.mode),
            ("postgres://u@h/db", SslMode::Prefer)
        );
        let (_, s) = split_url(
            "postgres://u@h/db?sslmode=require",
            Some(Path::new("ca.pem")),
        )
        .unwrap();
        assert_eq!(s.root.as_deref(), Some(Path::new("ca.pem")));
    }

    #[test]
    fn bad_tls_parameters_are_refused_with_their_name() {
        for (url, needle) in [
            ("postgres://u@h/db?sslmode=verify-full", "--pg-ca"),
            ("postgres://u@h/db?sslmode=verify-ca", "sslrootcert=FILE"),
            ("postgres://u@h/db?sslmode=sometimes", "sslmode=sometimes"),
            ("postgres://u@h/db?sslmode=allow", "sslmode=allow"),
            ("postgres://u@h/db?sslcert=c.pem", "sslcert"),
            (
                "postgres://u@h/db?sslmode=require&sslrootcert=system",
                "system",
            ),
        ] {
            let e = split_url(url, None).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
        }
        let e = split_url(
            "postgres://u@h/db?sslrootcert=a.pem",
            Some(Path::new("b.pem")),
        )
        .unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn root_certificate_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("fedrisk-pg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let settings = |root: &Path| TlsSettings {
            mode: SslMode::VerifyFull,
            root: Some(root.to_owned()),
        };
        let e = client_config(&settings(&empty)).unwrap_err();
        assert!(
            e.contains("no certificate") && e.contains("empty.pem"),
            "{e}"
        );
        let e = client_config(&settings(&dir.join("absent.pem"))).unwrap_err();
        assert!(e.contains("absent.pem"), "{e}");
        // Without a root certificate (prefer/require) any certificate is accepted.
        assert!(
            client_config(&TlsSettings {
                mode: SslMode::Require,
                root: None
            })
            .is_ok()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn handshake_failures_read_plainly() {
        let s = TlsSettings {
            mode: SslMode::VerifyFull,
            root: Some(PathBuf::from("ca.pem")),
        };
        let e = explain(
            "error performing TLS handshake: invalid peer certificate: UnknownIssuer",
            &s,
        )
        .unwrap();
        assert!(
            e.contains("not signed by the root certificate ca.pem"),
            "{e}"
        );
        let e = explain(
            "invalid peer certificate: certificate not valid for name",
            &s,
        )
        .unwrap();
        assert!(e.contains("does not name the host"), "{e}");
        let e = explain(
            "error performing TLS handshake: server does not support TLS",
            &s,
        )
        .unwrap();
        assert!(e.contains("sslmode=verify-full asks for it"), "{e}");
        assert_eq!(explain("password authentication failed", &s), None);
    }
}
