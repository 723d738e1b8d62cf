//! Attacks on who a session's peers are: a coordinator (or its operator) filling a
//! session with identities it controls. Every agent checks the peers with
//! `verify_session_peers` before it opens a session.

use fedrisk_identity::client::{PeerCertError, verify_session_peers};
use fedrisk_identity::pki::{self, Role};

struct Ca {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
}

fn ca() -> Ca {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pki");
    pki::init(&dir, "fed").expect("init");
    Ca { _tmp: tmp, dir }
}

fn der(dir: &std::path::Path, name: &str) -> Vec<u8> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_file(dir.join(format!("{name}.pem")))
        .expect("certificate")
        .to_vec()
}

#[test]
fn attack_an_operator_certificate_offered_as_a_peer_is_refused() {
    let ca = ca();
    for n in ["bank_a", "bank_b", "bank_c"] {
        pki::issue(&ca.dir, n, Role::Participant, 30).expect("issue");
    }
    pki::issue(&ca.dir, "ops", Role::Operator, 30).expect("issue");
    let ca_pem = std::fs::read_to_string(ca.dir.join("ca.pem")).expect("ca");
    let (a, b, c, ops) = (
        der(&ca.dir, "bank_a"),
        der(&ca.dir, "bank_b"),
        der(&ca.dir, "bank_c"),
        der(&ca.dir, "ops"),
    );
    assert_eq!(
        verify_session_peers(&ca_pem, &[], &[(1, &a), (2, &b), (3, &c)])
            .expect("three institutions")
            .keys
            .len(),
        3
    );
    let e = verify_session_peers(&ca_pem, &[], &[(1, &a), (2, &b), (4, &ops)]).unwrap_err();
    assert!(
        matches!(&e, PeerCertError::NotParticipant { id: 4, role } if role == "operator"),
        "{e}"
    );
}

#[test]
fn attack_ids_sharing_one_certificate_or_key_are_refused() {
    let ca = ca();
    for n in ["bank_a", "bank_b", "victim"] {
        pki::issue(&ca.dir, n, Role::Participant, 30).expect("issue");
    }
    let ca_pem = std::fs::read_to_string(ca.dir.join("ca.pem")).expect("ca");
    let (a, b, v) = (
        der(&ca.dir, "bank_a"),
        der(&ca.dir, "bank_b"),
        der(&ca.dir, "victim"),
    );
    // Four ids, three of them the same colluder: with n = 5, t = 4 the sum would be
    // the victim's input plus the colluder's own.
    let e = verify_session_peers(&ca_pem, &[], &[(1, &a), (2, &a), (3, &a), (4, &b), (5, &v)])
        .unwrap_err();
    assert!(matches!(e, PeerCertError::SharedIdentity(1, 2)), "{e}");
    let e = verify_session_peers(&ca_pem, &[], &[(1, &a), (1, &b), (5, &v)]).unwrap_err();
    assert!(matches!(e, PeerCertError::DuplicateId(1)), "{e}");
}

#[test]
fn attack_a_certificate_of_another_ca_offered_as_a_peer_is_refused() {
    let ours = ca();
    let theirs = ca();
    pki::issue(&ours.dir, "bank_a", Role::Participant, 30).expect("issue");
    pki::issue(&theirs.dir, "minted", Role::Participant, 30).expect("issue");
    let ca_pem = std::fs::read_to_string(ours.dir.join("ca.pem")).expect("ca");
    let a = der(&ours.dir, "bank_a");
    let minted = der(&theirs.dir, "minted");
    let e = verify_session_peers(&ca_pem, &[], &[(1, &a), (2, &minted)]).unwrap_err();
    assert!(matches!(e, PeerCertError::Peer { id: 2, .. }), "{e}");
}

#[test]
fn attack_a_revoked_certificate_offered_as_a_peer_is_refused() {
    use fedrisk_identity::pki::{Authority, PkiDir};
    use rustls_pki_types::{CertificateRevocationListDer, pem::PemObject};
    let fed = ca();
    let ca = &fed;
    for n in ["bank_a", "bank_b", "former"] {
        pki::issue(&ca.dir, n, Role::Participant, 30).expect("issue");
    }
    let ca_pem = std::fs::read_to_string(ca.dir.join("ca.pem")).expect("ca");
    let (a, b, f) = (
        der(&ca.dir, "bank_a"),
        der(&ca.dir, "bank_b"),
        der(&ca.dir, "former"),
    );
    let crl = |dir: &std::path::Path| {
        CertificateRevocationListDer::from_pem_file(PkiDir::new(dir).crl())
            .expect("revocation list")
            .to_vec()
    };
    // Before the revocation the list (number 1, from init) lets all three in.
    let before = crl(&ca.dir);
    let ok = verify_session_peers(&ca_pem, &before, &[(1, &a), (2, &b), (3, &f)]).expect("ok");
    assert_eq!(ok.crl_number, Some(1));
    pki::revoke(&ca.dir, "former").expect("revoke");
    let roster = pki::write_crl(&Authority::single(&ca.dir)).expect("sign list");
    assert_eq!(roster.crl_number, 2);
    let after = crl(&ca.dir);
    let e = verify_session_peers(&ca_pem, &after, &[(1, &a), (2, &b), (3, &f)]).unwrap_err();
    assert!(
        matches!(&e, PeerCertError::Peer { id: 3, .. }) && e.to_string().contains("Revoked"),
        "{e}"
    );
    // A list signed by another CA is not accepted as this federation's.
    let other = self::ca();
    let forged = crl(&other.dir);
    assert!(verify_session_peers(&ca_pem, &forged, &[(1, &a), (2, &b)]).is_err());
}

#[test]
fn attack_an_institution_with_a_reissued_certificate_counts_once() {
    // A colluder gets its certificate revoked and reissued and keeps both: two ids, two
    // keys, one institution. With {victim, old, new} the "three distinct" sum would be the
    // victim's input plus what the colluder knows.
    let fed = ca();
    pki::issue(&fed.dir, "victim", Role::Participant, 30).expect("issue");
    pki::issue(&fed.dir, "colluder", Role::Participant, 30).expect("issue");
    let old = der(&fed.dir, "colluder");
    pki::revoke(&fed.dir, "colluder").expect("revoke");
    std::fs::remove_file(fed.dir.join("colluder.key")).expect("rm key");
    std::fs::remove_file(fed.dir.join("colluder.pem")).expect("rm cert");
    pki::issue(&fed.dir, "colluder", Role::Participant, 30).expect("reissue");
    let new = der(&fed.dir, "colluder");
    assert_ne!(old, new);
    let ca_pem = std::fs::read_to_string(fed.dir.join("ca.pem")).expect("ca");
    let v = der(&fed.dir, "victim");
    let e = verify_session_peers(&ca_pem, &[], &[(1, &v), (2, &old), (3, &new)]).unwrap_err();
    assert!(matches!(e, PeerCertError::SharedIdentity(2, 3)), "{e}");
}

#[test]
fn attack_a_cached_peer_revoked_since_is_refused_at_the_next_session() {
    // Agents keep the peers they checked for the job's next sessions. A revocation (a new
    // list) must not be hidden behind that cache, and the checks across peers still run.
    use fedrisk_identity::client::{PeerCache, verify_session_peers_cached};
    use fedrisk_identity::pki::{Authority, PkiDir};
    use rustls_pki_types::{CertificateRevocationListDer, pem::PemObject};
    let fed = ca();
    for n in ["bank_a", "bank_b", "former"] {
        pki::issue(&fed.dir, n, Role::Participant, 30).expect("issue");
    }
    let ca_pem = std::fs::read_to_string(fed.dir.join("ca.pem")).expect("ca");
    let (a, b, f) = (
        der(&fed.dir, "bank_a"),
        der(&fed.dir, "bank_b"),
        der(&fed.dir, "former"),
    );
    let crl = || {
        CertificateRevocationListDer::from_pem_file(PkiDir::new(&fed.dir).crl())
            .expect("revocation list")
            .to_vec()
    };
    let mut cache = PeerCache::default();
    let before = crl();
    let peers = [(1, a.as_slice()), (2, b.as_slice()), (3, f.as_slice())];
    let first = verify_session_peers_cached(&ca_pem, &before, &peers, &mut cache).expect("ok");
    assert_eq!(cache.len(), 3);
    let again = verify_session_peers_cached(&ca_pem, &before, &peers, &mut cache).expect("ok");
    assert_eq!(first, again, "the cache gives the same keys");
    // Checks across peers are not cached away.
    let e =
        verify_session_peers_cached(&ca_pem, &before, &[(1, &a), (2, &a)], &mut cache).unwrap_err();
    assert!(matches!(e, PeerCertError::SharedIdentity(1, 2)), "{e}");
    pki::revoke(&fed.dir, "former").expect("revoke");
    pki::write_crl(&Authority::single(&fed.dir)).expect("sign list");
    let e = verify_session_peers_cached(&ca_pem, &crl(), &peers, &mut cache).unwrap_err();
    assert!(
        matches!(&e, PeerCertError::Peer { id: 3, .. }) && e.to_string().contains("Revoked"),
        "{e}"
    );
}

/// A lineage check trusts the certificates its session cache passed under the same CA and
/// revocation list, and nothing checked under another CA or another list.
#[test]
fn attack_a_certificate_checked_under_another_ca_is_not_adopted_for_lineage_checks() {
    use fedrisk_identity::client::{PeerCache, verify_session_peers_cached};
    use fedrisk_identity::pki::PkiDir;
    use rustls_pki_types::{CertificateRevocationListDer, pem::PemObject};
    let crl = |dir: &std::path::Path| {
        CertificateRevocationListDer::from_pem_file(PkiDir::new(dir).crl())
            .expect("revocation list")
            .to_vec()
    };
    let ours = ca();
    let theirs = ca();
    for n in ["bank_a", "bank_b"] {
        pki::issue(&ours.dir, n, Role::Participant, 30).expect("issue");
    }
    pki::issue(&theirs.dir, "minted", Role::Participant, 30).expect("issue");
    let our_pem = std::fs::read_to_string(ours.dir.join("ca.pem")).expect("ca");
    let their_pem = std::fs::read_to_string(theirs.dir.join("ca.pem")).expect("ca");
    let (a, b, minted) = (
        der(&ours.dir, "bank_a"),
        der(&ours.dir, "bank_b"),
        der(&theirs.dir, "minted"),
    );
    // Sessions checked our two peers under our list; a cache of the other CA's holds the
    // minted one.
    let mut sessions = PeerCache::default();
    verify_session_peers_cached(
        &our_pem,
        &crl(&ours.dir),
        &[(1, &a), (2, &b)],
        &mut sessions,
    )
    .expect("our peers");
    let mut foreign = PeerCache::default();
    verify_session_peers_cached(&their_pem, &crl(&theirs.dir), &[(3, &minted)], &mut foreign)
        .expect("their peer, under their CA");
    let ours_crl = crl(&ours.dir);
    let mut lineage = PeerCache::default();
    lineage.adopt(&our_pem, &ours_crl, &sessions);
    assert_eq!(lineage.len(), 2, "both of our checked peers are taken");
    lineage.adopt(&our_pem, &ours_crl, &foreign);
    assert_eq!(lineage.len(), 2, "nothing of another CA's is taken");
    verify_session_peers_cached(&our_pem, &ours_crl, &[(1, &a), (2, &b)], &mut lineage)
        .expect("adopted peers pass");
    let e =
        verify_session_peers_cached(&our_pem, &ours_crl, &[(1, &a), (3, &minted)], &mut lineage)
            .unwrap_err();
    assert!(matches!(e, PeerCertError::Peer { id: 3, .. }), "{e}");
    // Checks made under another revocation list (a newer one, here) are not taken.
    pki::revoke(&ours.dir, "bank_b").expect("revoke");
    pki::write_crl(&pki::Authority::single(&ours.dir)).expect("crl");
    let mut later = PeerCache::default();
    later.adopt(&our_pem, &crl(&ours.dir), &sessions);
    assert!(
        later.is_empty(),
        "checks under the older list are not taken"
    );
}
