//! The coordinator's signature over its records (audit chain, model files): ECDSA P-256 with
//! SHA-256 by the key of `coordinator.pem`, DER-encoded, so anyone holding the coordinator's
//! certificate can check it with standard tools (`openssl dgst -sha256 -verify`).

use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("signing failed")]
    Sign,
}

/// Signs with the coordinator's private key.
pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Signer {
    /// Reads `coordinator.key` (PKCS#8 PEM, ECDSA P-256).
    pub fn load(key_path: &Path) -> Result<Self, SignerError> {
        let err = |message: String| SignerError::Key {
            path: key_path.to_owned(),
            message,
        };
        let pem = std::fs::read(key_path).map_err(|source| SignerError::Io {
            path: key_path.to_owned(),
            source,
        })?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem)
            .map_err(|e| err(format!("not a PKCS#8 PEM key: {e}")))?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            der.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| err(format!("not an ECDSA P-256 key: {e}")))?;
        Ok(Self { key, rng })
    }

    /// DER-encoded ECDSA P-256 / SHA-256 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        self.key
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| SignerError::Sign)
    }

    /// The public key (uncompressed SEC1 point).
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }
}

/// Checks the coordinator's signatures with the public key of its certificate.
pub struct Verifier {
    public_key: Vec<u8>,
}

impl Verifier {
    /// From `coordinator.pem`.
    pub fn from_cert_file(cert_path: &Path) -> Result<Self, SignerError> {
        let err = |message: String| SignerError::Key {
            path: cert_path.to_owned(),
            message,
        };
        let pem = std::fs::read(cert_path).map_err(|source| SignerError::Io {
            path: cert_path.to_owned(),
            source,
        })?;
        let der = CertificateDer::from_pem_slice(&pem)
            .map_err(|e| err(format!("not a PEM certificate: {e}")))?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| err(format!("not an X.509 certificate: {e}")))?;
        Ok(Self {
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    pub fn from_public_key(public_key: &[u8]) -> Self {
        Self {
            public_key: public_key.to_vec(),
        }
    }

    /// The public key (uncompressed SEC1 point).
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.public_key)
            .verify(message, signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coordinators_key_signs_and_its_certificate_verifies() {
        let dir = tempfile::tempdir().unwrap();
        crate::pki::init(dir.path(), "fed").unwrap();
        let pki = crate::pki::PkiDir::new(dir.path());
        let signer = Signer::load(&pki.server_key()).unwrap();
        let verifier = Verifier::from_cert_file(&pki.server_cert()).unwrap();
        let sig = signer.sign(b"record").unwrap();
        assert!(verifier.verify(b"record", &sig));
        assert!(!verifier.verify(b"recore", &sig));
        assert!(Verifier::from_public_key(signer.public_key()).verify(b"record", &sig));
        let err = Signer::load(&pki.server_cert()).err().unwrap().to_string();
        assert!(err.contains("coordinator.pem"), "{err}");
    }
}
