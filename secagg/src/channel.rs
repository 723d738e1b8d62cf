//! A participant's channel key (`c` in Bonawitz et al.), kept for the sessions of one job.
//!
//! Why: at n = 200 a SecAgg+ participant makes two X25519 agreements with each of its 66
//! neighbours per session, the largest share of its work. The `c` key only encrypts and
//! derives shares; unlike the masking key `s` it is never shared, reconstructed or
//! released, so nothing the protocol reveals about one session touches it. A participant
//! that keeps its `c` key for a job and remembers its agreements makes each pair's
//! agreement once per job instead of once per session: peers that keep theirs too are met
//! again as neighbours in later sessions (the ring is drawn anew every session).
//!
//! What keeps sessions apart: every key and derived share is taken from
//! [`crate::crypto::session_channel_secret`], which binds the agreement to the session id
//! and both parties' fresh `s` keys of that session, so a coordinator that runs a session
//! configuration twice still gets fresh keys and fresh derived shares from an honest pair.
//! The cost, said in SECURITY.md: whoever reads an agent's memory during a job reads the
//! channel keys of all the job's sessions, not of one.

use std::sync::Mutex;

use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::crypto::{self, PreparedKey, PreparedSecret};

/// At most this many agreements are remembered; beyond it each is made again (a job
/// with more peers than this pays per session, as without the cache).
const MAX_REMEMBERED: usize = 4096;

/// One participant's channel key for one job, shared by its sessions.
pub struct ChannelKey {
    public: [u8; 32],
    secret: PreparedSecret,
    /// `peer public key || agreement`, sorted by the peer key. A zeroizing vector whose
    /// capacity is wiped when it grows or drops, so no copy of an agreement is left behind.
    agreed: Mutex<Zeroizing<Vec<[u8; 64]>>>,
}

impl std::fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelKey")
            .field("public", &self.public)
            .field("remembered", &self.remembered())
            .finish_non_exhaustive()
    }
}

impl ChannelKey {
    /// A fresh key (one draw of `rng`, as a per-session key was).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let sk = StaticSecret::random_from_rng(rng);
        let public = PublicKey::from(&sk).to_bytes();
        ChannelKey {
            public,
            secret: PreparedSecret::new(sk.as_bytes()),
            agreed: Mutex::new(Zeroizing::new(Vec::new())),
        }
    }

    /// The X25519 public key advertised in every session that uses this key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// How many peers' agreements are remembered.
    pub fn remembered(&self) -> usize {
        self.agreed.lock().map_or(0, |a| a.len())
    }

    /// The agreement with `peer`, made once and remembered. `None` for a
    /// non-contributory peer key (never remembered).
    pub(crate) fn agree(&self, peer: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
        // A poisoned lock only means another session panicked mid-insert; the sorted
        // vector is still valid (insertion is one call), so its contents are used.
        let mut agreed = self.agreed.lock().unwrap_or_else(|p| p.into_inner());
        let at = agreed.binary_search_by(|e| e[..32].cmp(&peer[..]));
        if let Ok(i) = at {
            let mut out = Zeroizing::new([0u8; 32]);
            out.copy_from_slice(&agreed[i][32..]);
            return Some(out);
        }
        let dh = crypto::x25519_prepared(&self.secret, &PreparedKey::new(peer))?;
        if let Err(i) = at
            && agreed.len() < MAX_REMEMBERED
        {
            if agreed.len() == agreed.capacity() {
                let mut grown = Zeroizing::new(Vec::with_capacity((2 * agreed.len()).max(64)));
                grown.extend_from_slice(&agreed);
                *agreed = grown;
            }
            // Filled in place, so no copy of the agreement is left outside the vector.
            agreed.insert(i, [0u8; 64]);
            agreed[i][..32].copy_from_slice(peer);
            agreed[i][32..].copy_from_slice(&dh[..]);
        }
        Some(dh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn a_remembered_agreement_is_the_agreement() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let a = ChannelKey::generate(&mut rng);
        let peers: Vec<ChannelKey> = (0..100).map(|_| ChannelKey::generate(&mut rng)).collect();
        for round in 0..2 {
            for p in &peers {
                let ours = a.agree(&p.public()).expect("contributory");
                let theirs = p.agree(&a.public()).expect("contributory");
                assert_eq!(*ours, *theirs, "round {round}");
            }
            assert_eq!(a.remembered(), peers.len());
        }
    }

    #[test]
    fn a_low_order_key_is_refused_and_not_remembered() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let a = ChannelKey::generate(&mut rng);
        assert!(a.agree(&[0u8; 32]).is_none());
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(a.agree(&one).is_none());
        assert_eq!(a.remembered(), 0);
    }

    #[test]
    fn sessions_that_keep_their_channel_keys_sum_exactly_and_agree_once_per_pair() {
        use crate::sim::{Sim, SimConfig, random_inputs};
        use std::sync::Arc;
        let n = 120;
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let channels: std::collections::BTreeMap<u32, Arc<ChannelKey>> = (0..n as u32)
            .map(|id| (id, Arc::new(ChannelKey::generate(&mut rng))))
            .collect();
        let mut remembered = Vec::new();
        for seed in [1u64, 2, 3] {
            let mut cfg = SimConfig::new(n, 4);
            cfg.seed = seed;
            cfg.threshold = 81;
            cfg.graph = crate::recommended_graph(
                n,
                0.05,
                crate::HARARY_COLLUDER_FRACTION,
                2.0 / 3.0,
                crate::HARARY_PRIVACY_BITS,
            );
            let crate::GraphKind::Harary { degree, .. } = cfg.graph else {
                panic!("a SecAgg+ graph at n = {n}");
            };
            let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).expect("sim");
            sim.channels = channels.clone();
            // A dropout after the key exchange: its mask key is rebuilt, its channel
            // key is not touched.
            sim.drops.insert(7, crate::sim::DropPoint::AfterShareKeys);
            let report = sim.run();
            let out = report.output.expect("session completes");
            assert_eq!(Some(out.sum.clone()), report.expected, "seed {seed}");
            assert!(!out.survivors.contains(&7));
            let total: usize = channels.values().map(|c| c.remembered()).sum();
            remembered.push((total, degree as usize));
        }
        // Every pair of neighbours agreed once: the first session remembered about
        // `degree` peers each; later sessions (a new ring each) added fewer, not `degree`.
        let (first, degree) = remembered[0];
        assert!(first >= n * degree * 9 / 10, "{remembered:?}");
        let added = remembered[2].0 - remembered[1].0;
        assert!(added < n * degree * 2 / 3, "{remembered:?}");
    }

    /// A coordinator runs one session configuration (one session id) twice. With kept
    /// channel keys and keys taken from the agreement and the session id alone, an honest
    /// pair would encrypt two different share pairs under one ChaCha20-Poly1305 key and
    /// nonce: the XOR of the ciphertexts is the XOR of the shares, and the Poly1305 key
    /// repeats. Bound to both parties' fresh `s` keys, the second run's key is another.
    #[test]
    fn attack_a_session_id_run_twice_with_kept_channel_keys_reuses_no_share_key() {
        use crate::crypto::{open_shares, seal_shares, session_channel_secret, share_key};
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let (u, v) = (
            ChannelKey::generate(&mut rng),
            ChannelKey::generate(&mut rng),
        );
        let dh = u.agree(&v.public()).expect("contributory");
        let sid = [5u8; 32];
        // The honest sender draws a fresh `s` key in each run; the colluding recipient
        // advertises the same one twice.
        let s_u = [[1u8; 32], [2u8; 32]];
        let s_v = [9u8; 32];
        let plain = [[0x11u8; 64], [0x22u8; 64]];
        let keys: Vec<Zeroizing<[u8; 32]>> = s_u
            .iter()
            .map(|s| {
                let c = session_channel_secret(&dh, &sid, (3, s), (4, &s_v));
                Zeroizing::new(share_key(&c, &sid, 3, 4))
            })
            .collect();
        assert_ne!(*keys[0], *keys[1]);
        let ct: Vec<_> = (0..2)
            .map(|i| seal_shares(&keys[i], &sid, 3, 4, &plain[i]))
            .collect();
        let xor_ct: Vec<u8> = (0..64).map(|i| ct[0][i] ^ ct[1][i]).collect();
        let xor_pt: Vec<u8> = (0..64).map(|i| plain[0][i] ^ plain[1][i]).collect();
        assert_ne!(xor_ct, xor_pt, "keystream reused");
        assert!(open_shares(&keys[0], &sid, 3, 4, &ct[1]).is_none());
        // The control: keyed by the agreement and the session id alone, the two runs
        // share a key and the attack reads the XOR of the shares.
        let naive = share_key(&dh, &sid, 3, 4);
        let naive_ct: Vec<_> = (0..2)
            .map(|i| seal_shares(&naive, &sid, 3, 4, &plain[i]))
            .collect();
        let naive_xor: Vec<u8> = (0..64).map(|i| naive_ct[0][i] ^ naive_ct[1][i]).collect();
        assert_eq!(naive_xor, xor_pt);
        // The secret is the same whichever side computes it.
        assert_eq!(
            *session_channel_secret(&dh, &sid, (3, &s_u[0]), (4, &s_v)),
            *session_channel_secret(&dh, &sid, (4, &s_v), (3, &s_u[0]))
        );
    }

    #[test]
    fn debug_prints_no_secret() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let a = ChannelKey::generate(&mut rng);
        let peer = ChannelKey::generate(&mut rng);
        let dh = a.agree(&peer.public()).expect("contributory");
        let text = format!("{a:?}");
        let hex: String = dh.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!text.contains(&hex[..16]));
        assert!(!text.contains(&format!("{:?}", &dh[..4])));
        assert!(text.contains("remembered: 1"));
    }
}
