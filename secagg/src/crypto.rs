//! Primitives: HKDF-SHA256 key derivation, the ChaCha20 mask PRG, ChaCha20-Poly1305
//! for share transport, X25519 helpers and the signed transcripts.
//!
//! Every derived key is bound to the session id and to the ordered pair of
//! participants it serves, so keys never repeat across sessions, pairs or
//! directions (which is why a fixed AEAD nonce is safe: each key encrypts once).

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::traits::Identity;
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, Zeroizing};

/// HKDF-SHA256 (RFC 5869) extract-and-expand to 32 bytes.
pub fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 255 * 32 limit: this cannot fail.
    if hk.expand(info, &mut out).is_err() {
        unreachable!("HKDF output length is fixed at 32 bytes");
    }
    out
}

fn pair_info(label: &[u8], a: u32, b: u32) -> Vec<u8> {
    let mut info = Vec::with_capacity(label.len() + 8);
    info.extend_from_slice(label);
    info.extend_from_slice(&a.to_le_bytes());
    info.extend_from_slice(&b.to_le_bytes());
    info
}

/// Seed of the pairwise mask between `u` and `v` (symmetric in `u`, `v`).
pub fn pairwise_mask_seed(dh: &[u8; 32], session_id: &[u8; 32], u: u32, v: u32) -> [u8; 32] {
    let (lo, hi) = if u < v { (u, v) } else { (v, u) };
    hkdf32(
        session_id,
        dh,
        &pair_info(b"fedrisk-secagg/v1/pairwise-mask", lo, hi),
    )
}

/// The secret a pair's share keys and derived shares come from in one session: their
/// `c`-key agreement `dh` bound to the session id and to both parties' `s` keys of that
/// session (`(id, s_pk)` each, in either order). Channel keys are kept for a job
/// ([`crate::channel`]); the `s` keys are drawn afresh for every session, so even a
/// session configuration run twice gives an honest pair fresh keys and derived shares.
pub fn session_channel_secret(
    dh: &[u8; 32],
    session_id: &[u8; 32],
    a: (u32, &[u8; 32]),
    b: (u32, &[u8; 32]),
) -> Zeroizing<[u8; 32]> {
    let (lo, hi) = if a.0 < b.0 { (a, b) } else { (b, a) };
    let mut info = Vec::with_capacity(40 + 8 + 64);
    info.extend_from_slice(b"fedrisk-secagg/v1/session-channel");
    info.extend_from_slice(&lo.0.to_be_bytes());
    info.extend_from_slice(lo.1);
    info.extend_from_slice(&hi.0.to_be_bytes());
    info.extend_from_slice(hi.1);
    Zeroizing::new(hkdf32(session_id, dh, &info))
}

/// Key encrypting the shares that `from` sends to `to` (directional).
pub fn share_key(dh: &[u8; 32], session_id: &[u8; 32], from: u32, to: u32) -> [u8; 32] {
    hkdf32(
        session_id,
        dh,
        &pair_info(b"fedrisk-secagg/v1/share-key", from, to),
    )
}

/// The shares of `from`'s two secrets (`b`, then `s^SK`) that recipient `to`
/// holds when `to` is in `from`'s derived set `D_from`
/// ([`crate::graph::Graph::derived_recipients`]): two field elements drawn
/// from HKDF-SHA256 over the X25519 agreement `dh` of `from`'s and `to`'s `c`
/// keys (the share-encryption keys), salt = session id, info binding the label,
/// `from`, `to` and which secret; 64 output bytes each, reduced mod `l` (wide
/// reduction, bias below 2^-250). Directional: `(from, to)` and `(to, from)`
/// give unrelated values. Both ends compute it; nothing is sent.
pub fn derived_shares(
    dh: &[u8; 32],
    session_id: &[u8; 32],
    from: u32,
    to: u32,
) -> (Scalar, Scalar) {
    let hk = Hkdf::<Sha256>::new(Some(session_id), dh);
    let derive = |which: u8| {
        let mut info = pair_info(b"fedrisk-secagg/v2/derived-share", from, to);
        info.push(which);
        let mut wide = Zeroizing::new([0u8; 64]);
        // 64 bytes is far below HKDF-SHA256's limit: this cannot fail.
        if hk.expand(&info, &mut wide[..]).is_err() {
            unreachable!("HKDF output length is fixed at 64 bytes");
        }
        Scalar::from_bytes_mod_order_wide(&wide)
    };
    (derive(b'b'), derive(b's'))
}

/// Seed of participant `u`'s self mask, from the Shamir-shared secret `b_u`.
pub fn self_mask_seed(b: &Scalar, session_id: &[u8; 32], u: u32) -> [u8; 32] {
    let ikm = Zeroizing::new(b.to_bytes());
    hkdf32(
        session_id,
        &ikm[..],
        &pair_info(b"fedrisk-secagg/v1/self-mask", u, u),
    )
}

/// Bytes of keystream generated per block of the PRG loop.
const PRG_CHUNK: usize = 4096;

/// The mask PRG's stream cipher: AES-256 in counter mode (128-bit big-endian counter, as
/// NIST SP 800-38A). AES instructions make it about twice as fast as ChaCha20 here, and
/// every participant expands one mask per neighbour and the coordinator one per survivor
/// over the whole vector (wire version 5; the `aes` crate falls back to a constant-time
/// software AES where the instructions are missing).
type MaskCipher = ctr::Ctr128BE<aes::Aes256>;

/// The mask PRG: the AES-256-CTR keystream under `seed` (initial counter block 0) read as
/// little-endian `u64` words, added to (`negate = false`) or subtracted from
/// `acc`, wrapping mod 2^64. No per-element allocation.
pub fn prg_accumulate(seed: &[u8; 32], acc: &mut [u64], negate: bool) {
    let mut cipher = MaskCipher::new(&(*seed).into(), &[0u8; 16].into());
    let mut buf = Zeroizing::new([0u8; PRG_CHUNK]);
    for chunk in acc.chunks_mut(PRG_CHUNK / 8) {
        let bytes = &mut buf[..chunk.len() * 8];
        bytes.fill(0);
        cipher.apply_keystream(bytes);
        for (a, w) in chunk.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            let m = u64::from_le_bytes(word);
            *a = if negate {
                a.wrapping_sub(m)
            } else {
                a.wrapping_add(m)
            };
        }
    }
}

/// Expands the PRG into a fresh vector (tests and known-answer checks).
pub fn prg_expand(seed: &[u8; 32], len: usize) -> Vec<u64> {
    let mut v = vec![0u64; len];
    prg_accumulate(seed, &mut v, false);
    v
}

/// Plaintext size of one share pair: `b`-share then `s`-share.
pub const SHARE_PLAINTEXT_LEN: usize = 64;
/// Ciphertext size of one share pair (plaintext plus Poly1305 tag).
pub const SHARE_CIPHERTEXT_LEN: usize = SHARE_PLAINTEXT_LEN + 16;

/// The AEAD keyed for one share pair and its associated data (session, sender,
/// recipient), shared by [`seal_shares`] and [`open_shares`].
fn share_aead(
    key: &[u8; 32],
    session_id: &[u8; 32],
    from: u32,
    to: u32,
) -> (ChaCha20Poly1305, [u8; 45]) {
    let mut aad = [0u8; 45];
    aad[0] = 0x53; // 'S'
    aad[1..33].copy_from_slice(session_id);
    aad[33..37].copy_from_slice(&from.to_le_bytes());
    aad[37..41].copy_from_slice(&to.to_le_bytes());
    aad[41..45].copy_from_slice(b"shr1");
    (ChaCha20Poly1305::new(&(*key).into()), aad)
}

/// Encrypts a share pair under `key` with sender, recipient and session as AAD.
pub fn seal_shares(
    key: &[u8; 32],
    session_id: &[u8; 32],
    from: u32,
    to: u32,
    plaintext: &[u8; SHARE_PLAINTEXT_LEN],
) -> [u8; SHARE_CIPHERTEXT_LEN] {
    let (aead, aad) = share_aead(key, session_id, from, to);
    let mut out = [0u8; SHARE_CIPHERTEXT_LEN];
    let (body, tag_out) = out.split_at_mut(SHARE_PLAINTEXT_LEN);
    body.copy_from_slice(plaintext);
    // Encryption only fails for messages longer than 2^38 bytes.
    match aead.encrypt_inout_detached(&[0u8; 12].into(), &aad, body.into()) {
        Ok(tag) => tag_out.copy_from_slice(&tag),
        Err(_) => unreachable!("64-byte plaintext is within ChaCha20-Poly1305 limits"),
    }
    out
}

/// Decrypts and authenticates a share pair; `None` on any tampering.
pub fn open_shares(
    key: &[u8; 32],
    session_id: &[u8; 32],
    from: u32,
    to: u32,
    ciphertext: &[u8; SHARE_CIPHERTEXT_LEN],
) -> Option<Zeroizing<[u8; SHARE_PLAINTEXT_LEN]>> {
    let (aead, aad) = share_aead(key, session_id, from, to);
    let mut body = Zeroizing::new([0u8; SHARE_PLAINTEXT_LEN]);
    body.copy_from_slice(&ciphertext[..SHARE_PLAINTEXT_LEN]);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&ciphertext[SHARE_PLAINTEXT_LEN..]);
    aead.decrypt_inout_detached(
        &[0u8; 12].into(),
        &aad,
        body.as_mut_slice().into(),
        &tag.into(),
    )
    .ok()?;
    Some(body)
}

/// X25519 secret whose scalar bytes are those of a field element, so the secret
/// can be Shamir-shared in the curve25519 scalar field and rebuilt exactly.
/// (X25519 clamps the bytes; ~249 bits of entropy remain.)
pub fn x25519_secret(s: &Scalar) -> StaticSecret {
    StaticSecret::from(s.to_bytes())
}

/// X25519 agreement that rejects low-order (non-contributory) peer keys.
pub fn agree(secret: &StaticSecret, peer: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
    x25519_fast(secret.as_bytes(), peer)
}

/// A peer's X25519 public key prepared for repeated agreements: `8P` on the
/// Edwards curve (or `None` for points on the twist).
#[derive(Clone)]
pub struct PreparedKey {
    raw: [u8; 32],
    cleared: Option<EdwardsPoint>,
}

impl PreparedKey {
    /// Converts once (costs one square root).
    pub fn new(pk: &[u8; 32]) -> Self {
        PreparedKey {
            raw: *pk,
            cleared: MontgomeryPoint(*pk)
                .to_edwards(0)
                .map(|p| p.mul_by_cofactor()),
        }
    }
}

/// An X25519 secret prepared for repeated agreements: the clamped integer
/// `k = 8m` and `m mod l`.
pub struct PreparedSecret {
    raw: Zeroizing<[u8; 32]>,
    m: Zeroizing<Scalar>,
}

impl PreparedSecret {
    /// Clamps and divides by the cofactor.
    pub fn new(secret: &[u8; 32]) -> Self {
        let k = Zeroizing::new(curve25519_dalek::scalar::clamp_integer(*secret));
        let mut m = Zeroizing::new([0u8; 32]);
        for i in 0..32 {
            let hi = if i < 31 { k[i + 1] << 5 } else { 0 };
            m[i] = (k[i] >> 3) | hi;
        }
        PreparedSecret {
            raw: Zeroizing::new(*secret),
            m: Zeroizing::new(Scalar::from_bytes_mod_order(*m)),
        }
    }
}

/// X25519 `clamp(k) * P` computed on the Edwards curve, about twice as fast as
/// the Montgomery ladder here and bit-identical to RFC 7748: with `k = 8m`
/// (clamping makes `k` a multiple of 8) we compute `(m mod l) * (8P)`, exact for
/// every curve point including mixed-order ones; `+-P` give the same
/// u-coordinate. Points on the twist fall back to the ladder. Constant time in
/// the secret. Returns `None` for a non-contributory (all-zero) result.
pub fn x25519_prepared(secret: &PreparedSecret, peer: &PreparedKey) -> Option<Zeroizing<[u8; 32]>> {
    let out = match &peer.cleared {
        Some(p) => Zeroizing::new((p * *secret.m).to_montgomery().to_bytes()),
        None => Zeroizing::new(x25519_dalek::x25519(*secret.raw, peer.raw)),
    };
    if out.iter().all(|&b| b == 0) {
        return None;
    }
    Some(out)
}

/// A public, variable-time fixed-base table for one peer key: row `r` holds
/// `k * 2^(w r) * 8P` for `k = 1..=2^(w-1)`, so a product costs one addition
/// per nonzero signed radix-`2^w` digit of the scalar and no doubling.
struct VartimeComb {
    w: usize,
    table: Vec<EdwardsPoint>,
}

/// Additions a variable-time double-and-add multiplication costs (about 253
/// doublings plus NAF additions), in units of one point addition; measured.
const DIRECT_MUL_COST: usize = 140;

/// Rows of the comb for window `w`: signed digits of an integer below `2^253`.
fn comb_rows(w: usize) -> usize {
    253usize.div_ceil(w) + 1
}

impl VartimeComb {
    fn new(p: &EdwardsPoint, w: usize) -> Self {
        let half = 1usize << (w - 1);
        let rows = comb_rows(w);
        let mut table = Vec::with_capacity(rows * half);
        let mut base = *p;
        for _ in 0..rows {
            let mut acc = base;
            table.push(acc);
            for _ in 1..half {
                acc += base;
                table.push(acc);
            }
            // acc = 2^(w-1) * base, so the next row starts at 2^w * base.
            base = acc + acc;
        }
        VartimeComb { w, table }
    }

    /// `m * P` for `m < 2^253` (a reduced scalar), in variable time.
    fn mul(&self, m: &Scalar) -> EdwardsPoint {
        let w = self.w;
        let half = 1i64 << (w - 1);
        let bytes = m.as_bytes();
        let mut limbs = [0u64; 5];
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            limbs[i] = u64::from_le_bytes(b);
        }
        let window = |pos: usize| -> i64 {
            let (limb, shift) = (pos / 64, pos % 64);
            let mut v = limbs[limb] >> shift;
            if shift + w > 64 {
                v |= limbs[limb + 1] << (64 - shift);
            }
            (v & ((1u64 << w) - 1)) as i64
        };
        let mut acc = EdwardsPoint::identity();
        let mut carry = 0i64;
        for r in 0..comb_rows(w) {
            let pos = r * w;
            let mut d = if pos < 256 { window(pos) } else { 0 } + carry;
            if d > half {
                d -= 1 << w;
                carry = 1;
            } else {
                carry = 0;
            }
            let row = r * half as usize;
            match d.cmp(&0) {
                core::cmp::Ordering::Greater => acc += self.table[row + d as usize - 1],
                core::cmp::Ordering::Less => acc -= self.table[row + (-d) as usize - 1],
                core::cmp::Ordering::Equal => {}
            }
        }
        acc
    }
}

/// Many X25519 agreements of one peer key with secrets that are **public to
/// the caller** (the coordinator's rebuilt keys of dropped participants), in
/// variable time: timing depends on the secrets. Never use it with a secret the
/// caller must keep. Bit-identical to [`x25519_prepared`] (tested), including
/// mixed-order peer keys and the twist fallback; `None` where that gives `None`.
///
/// With enough secrets per key it builds a signed-window comb for `8P` (one
/// addition per window, no doubling); otherwise it uses variable-time
/// double-and-add. The Montgomery conversions share one field inversion.
pub fn x25519_revealed_batch(
    peer: &PreparedKey,
    secrets: &[&PreparedSecret],
) -> Vec<Option<Zeroizing<[u8; 32]>>> {
    let Some(p) = &peer.cleared else {
        return secrets.iter().map(|s| x25519_prepared(s, peer)).collect();
    };
    let count = secrets.len();
    // Cost in point additions: building the table plus one per window, against
    // a plain variable-time multiplication per secret.
    let best = (4..=8usize)
        .map(|w| (comb_rows(w) * ((1usize << (w - 1)) + count), w))
        .min();
    let points: Vec<EdwardsPoint> = match best {
        Some((cost, w)) if cost < DIRECT_MUL_COST * count => {
            let comb = VartimeComb::new(p, w);
            secrets.iter().map(|s| comb.mul(&s.m)).collect()
        }
        _ => secrets
            .iter()
            .map(|s| EdwardsPoint::vartime_double_scalar_mul_basepoint(&s.m, p, &Scalar::ZERO))
            .collect(),
    };
    EdwardsPoint::to_montgomery_batch(&points)
        .into_iter()
        .map(|mut u| {
            let out = Zeroizing::new(u.to_bytes());
            u.zeroize();
            (!out.iter().all(|&b| b == 0)).then_some(out)
        })
        .collect()
}

/// One-shot [`x25519_prepared`].
pub fn x25519_fast(secret: &[u8; 32], peer: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
    x25519_prepared(&PreparedSecret::new(secret), &PreparedKey::new(peer))
}

/// Whether a public key is contributory (not of small order): `[8]P` is not the
/// identity, computed by three x-only doublings (four ladder steps). The curve's order is
/// 8 times a prime and its twist's 4 times one, so the points `[8]P` sends to the identity
/// are exactly those every clamped X25519 secret (a multiple of 8) does: the check agrees
/// with X25519's all-zero output test (tested) at a few percent of a full ladder, which
/// the coordinator ran twice for every advertisement.
pub fn is_contributory_key(pk: &[u8; 32]) -> bool {
    let eight = [true, false, false, false];
    MontgomeryPoint(*pk)
        .mul_bits_be(eight.into_iter())
        .to_bytes()
        != [0u8; 32]
}

/// Whether `pk` is the canonical encoding of a u-coordinate: below 2^255 - 19 with the
/// top bit clear, as every X25519 public key an honest party computes is. X25519 reads
/// the other encodings modulo p (ignoring the top bit), so without this check one
/// u-coordinate has up to two byte strings. This is hygiene, not all of it: a key plus a
/// small-order point is another canonical key that agrees the same way (clamped secrets
/// are multiples of 8), and comparing bytes does not see that either. What makes such
/// repeats useless is that every secret derived from an agreement binds both members' ids.
pub fn is_canonical_key(pk: &[u8; 32]) -> bool {
    if pk[31] & 0x80 != 0 {
        return false;
    }
    // The values from 2^255 - 19 to 2^255 - 1: 0x7f, then thirty 0xff, then 0xed..=0xff.
    !(pk[31] == 0x7f && pk[1..31].iter().all(|&b| b == 0xff) && pk[0] >= 0xed)
}

/// Bytes an advertise signature covers: the session, the sender, its two keys and its
/// commitment to what it will add (zeros in a session without commitments).
pub fn advertise_transcript(
    session_id: &[u8; 32],
    id: u32,
    c_pk: &[u8; 32],
    s_pk: &[u8; 32],
    commitment: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + 140);
    m.extend_from_slice(b"fedrisk-secagg/v2/advertise\0");
    m.extend_from_slice(session_id);
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(c_pk);
    m.extend_from_slice(s_pk);
    m.extend_from_slice(commitment);
    m
}

/// Bytes a consistency signature covers: the session and the survivor set U3.
pub fn consistency_transcript(
    session_id: &[u8; 32],
    u1_digest: &[u8; 32],
    survivors: &[u32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(102 + 4 * survivors.len());
    m.extend_from_slice(b"fedrisk-secagg/v2/consistency\0");
    m.extend_from_slice(session_id);
    m.extend_from_slice(u1_digest);
    m.extend_from_slice(&(survivors.len() as u64).to_le_bytes());
    for id in survivors {
        m.extend_from_slice(&id.to_le_bytes());
    }
    m
}

/// Zeroizes a slice of scalars.
pub(crate) fn wipe(scalars: &mut [Scalar]) {
    for s in scalars {
        s.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};
    use x25519_dalek::PublicKey;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 5869, test case 1 (first 32 bytes of the 42-byte OKM).
    #[test]
    fn hkdf_known_answer_rfc5869() {
        let ikm = [0x0b; 22];
        let salt = hex("000102030405060708090a0b0c");
        let info = hex("f0f1f2f3f4f5f6f7f8f9");
        let okm = hkdf32(&salt, &ikm, &info);
        assert_eq!(
            okm.to_vec(),
            hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf")
        );
    }

    /// NIST SP 800-38A F.5.5 (CTR-AES256.Encrypt), blocks 1 and 2: the mask cipher is
    /// AES-256 in counter mode with a 128-bit big-endian counter.
    #[test]
    fn mask_cipher_known_answer_sp800_38a() {
        let key = hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        let iv = hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let mut data = hex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        let key: [u8; 32] = key.try_into().expect("32 bytes");
        let iv: [u8; 16] = iv.try_into().expect("16 bytes");
        let mut c = MaskCipher::new(&key.into(), &iv.into());
        c.apply_keystream(&mut data);
        assert_eq!(
            data,
            hex("601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5")
        );
    }

    /// The PRG is the mask cipher's keystream from counter 0, read as little-endian words
    /// across chunk boundaries, and subtracting undoes adding.
    #[test]
    fn prg_is_the_mask_ciphers_keystream() {
        let seed = [0x5a; 32];
        let len = PRG_CHUNK / 8 * 2 + 13;
        let mut raw = vec![0u8; len * 8];
        let mut c = MaskCipher::new(&seed.into(), &[0u8; 16].into());
        c.apply_keystream(&mut raw);
        let words = prg_expand(&seed, len);
        for (i, w) in words.iter().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[8 * i..8 * i + 8]);
            assert_eq!(*w, u64::from_le_bytes(b));
        }
        let mut acc = vec![7u64; len];
        prg_accumulate(&seed, &mut acc, false);
        prg_accumulate(&seed, &mut acc, true);
        assert!(acc.iter().all(|&v| v == 7));
    }

    /// A peer key of kind `kind`: 1, a mixed-order point (an honest key plus the torsion
    /// point `1 + i % 7`); 2, arbitrary bytes (often on the twist); otherwise an honest key.
    fn varied_peer_key(rng: &mut ChaCha20Rng, kind: usize, i: usize) -> [u8; 32] {
        let b = StaticSecret::random_from_rng(&mut *rng);
        let mut pk = PublicKey::from(&b).to_bytes();
        if kind == 1 {
            let e = MontgomeryPoint(pk).to_edwards(0).unwrap() + EIGHT_TORSION[1 + i % 7];
            pk = e.to_montgomery().to_bytes();
        } else if kind == 2 {
            rng.fill_bytes(&mut pk);
        }
        pk
    }

    #[test]
    fn fast_x25519_matches_ladder_including_torsion() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for i in 0..40 {
            let a = StaticSecret::random_from_rng(&mut rng);
            let pk = varied_peer_key(&mut rng, i % 4, i);
            let ladder = x25519_dalek::x25519(a.to_bytes(), pk);
            match x25519_fast(a.as_bytes(), &pk) {
                Some(f) => assert_eq!(*f, ladder),
                None => assert_eq!(ladder, [0u8; 32]),
            }
        }
        // Low-order points are rejected.
        for t in EIGHT_TORSION.iter() {
            let pk = t.to_montgomery().to_bytes();
            assert!(x25519_fast(&[9u8; 32], &pk).is_none());
            assert!(!is_contributory_key(&pk));
        }
    }

    /// 2^255 - 19, little-endian.
    const P: [u8; 32] = {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        p
    };

    #[test]
    fn canonical_keys_are_the_u_coordinates_below_p() {
        let mut p_minus_1 = P;
        p_minus_1[0] = 0xec;
        assert!(is_canonical_key(&[0; 32]));
        assert!(is_canonical_key(&p_minus_1));
        for low in [0xed, 0xee, 0xff] {
            let mut b = p_minus_1;
            b[0] = low;
            assert!(!is_canonical_key(&b), "{low:#x}");
        }
        let mut high = [0; 32];
        high[31] = 0x80;
        assert!(!is_canonical_key(&high));
        let mut below = p_minus_1;
        below[15] = 0xfe;
        below[0] = 0xff;
        assert!(is_canonical_key(&below));
        // Every honest public key is canonical.
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        for _ in 0..200 {
            let mut sk = [0u8; 32];
            rng.fill_bytes(&mut sk);
            let pk = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(sk));
            assert!(is_canonical_key(pk.as_bytes()));
        }
    }

    /// The cheap small-order test agrees with an X25519 agreement under a fixed clamped
    /// secret (all-zero output) on the eight-torsion, their non-canonical encodings, twist
    /// points, mixed-order points and random keys.
    #[test]
    fn contributory_test_agrees_with_a_full_agreement() {
        let probe = StaticSecret::from([0x58u8; 32]);
        let full = |pk: &[u8; 32]| {
            probe
                .diffie_hellman(&PublicKey::from(*pk))
                .was_contributory()
        };
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let mut keys: Vec<[u8; 32]> = Vec::new();
        for t in EIGHT_TORSION.iter() {
            let u = t.to_montgomery().to_bytes();
            keys.push(u);
            // u + p, where it fits in 255 bits, and the top bit set (ignored by X25519).
            let mut plus_p = u;
            let mut carry = 0u16;
            for i in 0..32 {
                let v = u16::from(plus_p[i]) + u16::from(P[i]) + carry;
                plus_p[i] = v as u8;
                carry = v >> 8;
            }
            keys.push(plus_p);
            let mut top = u;
            top[31] |= 0x80;
            keys.push(top);
        }
        for i in 0..200 {
            keys.push(varied_peer_key(&mut rng, i % 3, i));
        }
        let mut refused = 0;
        for pk in &keys {
            assert_eq!(is_contributory_key(pk), full(pk), "{pk:?}");
            refused += usize::from(!full(pk));
        }
        assert!(refused >= 8, "the torsion points are refused: {refused}");
    }

    /// The coordinator's variable-time batch agrees bit for bit with the
    /// constant-time path and the RFC 7748 ladder, on both of its strategies
    /// (comb and double-and-add), for random, mixed-order, twist and
    /// low-order peer keys and for edge-case secrets.
    #[test]
    fn revealed_batch_matches_constant_time_path() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let mut raw_secrets: Vec<[u8; 32]> = vec![[0u8; 32], [0xff; 32], [8u8; 32]];
        // Byte patterns of 0, 8 and -8 mod l (before clamping).
        for m in [Scalar::ZERO, Scalar::ONE, -Scalar::ONE] {
            raw_secrets.push((m * Scalar::from(8u8)).to_bytes());
        }
        while raw_secrets.len() < 60 {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            raw_secrets.push(b);
        }
        let secrets: Vec<PreparedSecret> = raw_secrets.iter().map(PreparedSecret::new).collect();
        let mut peers: Vec<[u8; 32]> = Vec::new();
        for i in 0..24 {
            peers.push(varied_peer_key(&mut rng, i % 4, i));
        }
        for t in EIGHT_TORSION.iter() {
            peers.push(t.to_montgomery().to_bytes());
        }
        for pk in &peers {
            let key = PreparedKey::new(pk);
            // 1 and 3 secrets take double-and-add, 60 take the comb.
            for count in [1usize, 3, 60] {
                let refs: Vec<&PreparedSecret> = secrets.iter().take(count).collect();
                let got = x25519_revealed_batch(&key, &refs);
                assert_eq!(got.len(), count);
                for ((raw, s), g) in raw_secrets.iter().zip(&refs).zip(&got) {
                    let ct = x25519_prepared(s, &key);
                    assert_eq!(g.as_deref(), ct.as_deref());
                    let ladder = x25519_dalek::x25519(*raw, *pk);
                    match g {
                        Some(g) => assert_eq!(**g, ladder),
                        None => assert_eq!(ladder, [0u8; 32]),
                    }
                }
            }
        }
        // Every window width of the comb, against the constant-time product.
        let p =
            MontgomeryPoint(PublicKey::from(&StaticSecret::random_from_rng(&mut rng)).to_bytes())
                .to_edwards(0)
                .unwrap();
        for w in 4..=8 {
            let comb = VartimeComb::new(&p, w);
            for s in &secrets {
                assert_eq!(comb.mul(&s.m), p * *s.m, "w = {w}");
            }
        }
    }

    /// Derived shares are directional and bound to session, pair and secret.
    #[test]
    fn derived_shares_are_bound_to_session_pair_and_secret() {
        let dh = [7u8; 32];
        let sid = [1u8; 32];
        let (b, s) = derived_shares(&dh, &sid, 1, 2);
        assert_eq!(derived_shares(&dh, &sid, 1, 2), (b, s));
        assert_ne!(b, s);
        for other in [
            derived_shares(&dh, &sid, 2, 1),
            derived_shares(&dh, &sid, 1, 3),
            derived_shares(&dh, &[2u8; 32], 1, 2),
            derived_shares(&[8u8; 32], &sid, 1, 2),
        ] {
            assert_ne!(other.0, b);
            assert_ne!(other.1, s);
        }
    }

    #[test]
    fn altered_misrouted_or_replayed_ciphertexts_fail() {
        let sid = [1u8; 32];
        let key = [2u8; 32];
        let pt = [3u8; SHARE_PLAINTEXT_LEN];
        let ct = seal_shares(&key, &sid, 1, 2, &pt);
        assert_eq!(*open_shares(&key, &sid, 1, 2, &ct).unwrap(), pt);
        let mut bad = ct;
        bad[5] ^= 1;
        assert!(open_shares(&key, &sid, 1, 2, &bad).is_none());
        assert!(open_shares(&key, &sid, 1, 3, &ct).is_none(), "misrouted");
        assert!(open_shares(&key, &sid, 2, 1, &ct).is_none(), "reflected");
        assert!(
            open_shares(&key, &[9u8; 32], 1, 2, &ct).is_none(),
            "replayed"
        );
    }
}
