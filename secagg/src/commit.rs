//! Commitments that let anyone check a session's sum without seeing one input.
//!
//! Why: an agent asked to score "the model of round r" must be able to check that the
//! model follows from the job's real sums; otherwise a coordinator could ask for the score
//! histogram of any model it likes (one with a single non-zero coefficient turns it into a
//! histogram of one feature). So each participant commits to what it adds, its input
//! `x_u` (noise included), with fresh blinding `rho_u`:
//! `C_u = sum_k x_uk * G_k + rho_u * H` over Ristretto (with the words `x_uk` packed three
//! to a scalar, see [`WORDS_PER_SCALAR`]), and signs `C_u` with its identity
//! key inside its advertisement, with its session keys
//! ([`crate::crypto::advertise_transcript`]). `rho_u` travels inside the masked vector as
//! [`RHO_LIMBS`] limbs of [`LIMB_BITS`] bits, so the session's output carries the sum of
//! the blindings (never one) next to the sum of the inputs. Commitments add up:
//! `sum_u C_u` opens to `(sum_u x_u, sum_u rho_u)` and, unless someone knows discrete logs
//! between the generators (they are hashed to the group, so nobody does), to nothing else.
//! Each `C_u` alone hides `x_u` (`rho_u` is uniform to within 2^-84).
//!
//! Values are committed as the signed integers their words encode; the fixed-point rule
//! keeps every honest sum far from wrapping, so the integer sum and the word sum agree.

use std::collections::BTreeSet;
use std::sync::{LazyLock, RwLock};

use curve25519_dalek::Scalar;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::traits::{Identity, MultiscalarMul, VartimeMultiscalarMul};
use rand_core::CryptoRng;
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::config::SessionConfig;
use crate::error::{Result, SecAggError};
use crate::{Roster, strictly_increasing, verify_all};

/// Words of the masked vector that carry the blinding, after the input's `d + 1`.
pub const RHO_LIMBS: usize = 7;
/// Bits of each blinding limb: a sum over up to 2^16 participants stays below 2^64.
pub const LIMB_BITS: u32 = 48;

/// The generators `G_0, G_1, ...` computed so far (hashing to the group costs about as
/// much as a scalar multiplication, and every session of a job uses the same ones).
static GENERATORS: RwLock<Vec<RistrettoPoint>> = RwLock::new(Vec::new());

fn hashed_point(label: &[u8], index: u64) -> RistrettoPoint {
    let mut h = Sha512::new();
    h.update(b"fedrisk-secagg/v1/commitment-generator\0");
    h.update(label);
    h.update(index.to_le_bytes());
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h.finalize());
    RistrettoPoint::from_uniform_bytes(&wide)
}

/// The blinding generator `H`, hashed once.
fn blinding_generator() -> RistrettoPoint {
    static H: LazyLock<RistrettoPoint> = LazyLock::new(|| hashed_point(b"blinding", 0));
    *H
}

/// Runs `f` over the first `n` value generators.
fn with_generators<T>(n: usize, f: impl FnOnce(&[RistrettoPoint]) -> T) -> T {
    {
        let gens = GENERATORS.read().unwrap_or_else(|e| e.into_inner());
        if gens.len() >= n {
            return f(&gens[..n]);
        }
    }
    let mut gens = GENERATORS.write().unwrap_or_else(|e| e.into_inner());
    let have = gens.len() as u64;
    gens.extend((have..n as u64).map(|k| hashed_point(b"value", k)));
    f(&gens[..n])
}

/// A word as the signed integer it encodes, without branching on its sign (the input is
/// secret).
fn signed_scalar(word: u64) -> Scalar {
    use subtle::ConditionallyNegatable;
    let sign = word >> 63;
    let magnitude = (word ^ sign.wrapping_neg()).wrapping_add(sign);
    let mut s = Scalar::from(magnitude);
    s.conditional_negate(subtle::Choice::from(sign as u8));
    s
}

/// Words committed under one generator: three signed 64-bit words, packed as
/// `w_0 + w_1 2^64 + w_2 2^128`, stay below 2^192 in magnitude, far below the group order
/// (about 2^252), so a packed sum is the same integer as the sum of the packed inputs and
/// has one unpacking into words. A multi-scalar multiplication costs about the same per
/// scalar whatever the scalar's size, so packing divides the work of committing and of
/// opening by three.
const WORDS_PER_SCALAR: usize = 3;

/// The packed scalars of `words` ([`WORDS_PER_SCALAR`] per scalar, the last one short).
fn packed_scalars(words: &[u64]) -> Vec<Scalar> {
    let lane = Scalar::from(1u128 << 64);
    words
        .chunks(WORDS_PER_SCALAR)
        .map(|chunk| {
            chunk
                .iter()
                .rev()
                .fold(Scalar::ZERO, |acc, w| acc * lane + signed_scalar(*w))
        })
        .collect()
}

/// How many value generators `words` words are committed under.
fn generators_for(words: usize) -> usize {
    words.div_ceil(WORDS_PER_SCALAR)
}

/// `sum_j limbs[j] * 2^(48 j)` mod the group order.
fn limbs_scalar(limbs: &[u64]) -> Scalar {
    let base = Scalar::from(1u64 << LIMB_BITS);
    let mut acc = Scalar::ZERO;
    for l in limbs.iter().rev() {
        acc = acc * base + Scalar::from(*l);
    }
    acc
}

/// One participant's blinding, as the limbs it adds to the masked vector.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Blinding {
    limbs: [u64; RHO_LIMBS],
}

impl std::fmt::Debug for Blinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Blinding(..)")
    }
}

impl Blinding {
    /// Fresh limbs of [`LIMB_BITS`] uniform bits each.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut limbs = [0u64; RHO_LIMBS];
        for l in &mut limbs {
            *l = rng.next_u64() >> (64 - LIMB_BITS);
        }
        Blinding { limbs }
    }

    /// The words appended to the input before masking.
    pub fn limbs(&self) -> &[u64; RHO_LIMBS] {
        &self.limbs
    }
}

/// `C = sum_k x_k G_k + rho H`, computed in constant time (the input is secret).
pub fn commit(input: &[u64], blinding: &Blinding) -> [u8; 32] {
    let mut scalars = packed_scalars(input);
    let mut rho = limbs_scalar(&blinding.limbs);
    scalars.push(rho);
    let point = with_generators(generators_for(input.len()), |gens| {
        RistrettoPoint::multiscalar_mul(
            scalars.iter(),
            gens.iter()
                .copied()
                .chain(std::iter::once(blinding_generator())),
        )
    });
    crate::crypto::wipe(&mut scalars);
    rho.zeroize();
    point.compress().to_bytes()
}

/// The commitment that `(sum, blinding limbs)` opens (public values: variable time).
fn opening(sum: &[u64], limbs: &[u64]) -> RistrettoPoint {
    let mut scalars = packed_scalars(sum);
    scalars.push(limbs_scalar(limbs));
    with_generators(generators_for(sum.len()), |gens| {
        RistrettoPoint::vartime_multiscalar_mul(
            scalars.iter(),
            gens.iter()
                .copied()
                .chain(std::iter::once(blinding_generator())),
        )
    })
}

/// A participant's commitment to its input, as its signed advertisement carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCommitment {
    /// The participant.
    pub from: u32,
    /// The session keys advertised with it (the signature covers them).
    pub c_pk: [u8; 32],
    /// See `c_pk`.
    pub s_pk: [u8; 32],
    /// Its compressed Ristretto point.
    pub commitment: [u8; 32],
    /// Ed25519 signature over [`crate::crypto::advertise_transcript`].
    pub signature: [u8; 64],
}

/// Checks that `sum` (the leading words the session's commitments cover,
/// [`crate::SessionParams::committed_words`]) and `blinding_sum` (the [`RHO_LIMBS`] words)
/// are the sum of what the inputs `commitments` commit to, that every commitment is signed by its
/// participant for this session, and that they come from at least the session's threshold
/// of distinct invited participants, each once.
pub fn verify_sum(
    config: &SessionConfig,
    roster: &Roster,
    sum: &[u64],
    blinding_sum: &[u64],
    commitments: &[SignedCommitment],
) -> Result<()> {
    verify_sum_with_checked(
        config,
        roster,
        sum,
        blinding_sum,
        commitments,
        &BTreeSet::new(),
    )
}

/// [`verify_sum`], without verifying again the signatures of the participants in
/// `checked`: the caller verified, under the same keys, exactly these signed
/// advertisements of this session (an agent that took part in the session checked every
/// entry of its key list). Everything else is checked as by [`verify_sum`].
pub fn verify_sum_with_checked(
    config: &SessionConfig,
    roster: &Roster,
    sum: &[u64],
    blinding_sum: &[u64],
    commitments: &[SignedCommitment],
    checked: &BTreeSet<u32>,
) -> Result<()> {
    let params = &config.params;
    if !params.committed() {
        return Err(SecAggError::Unverified(
            "the session carries no commitments",
        ));
    }
    if sum.len() != params.committed_words() || blinding_sum.len() != RHO_LIMBS {
        return Err(SecAggError::Unverified(
            "sum length differs from the session's committed words",
        ));
    }
    if !strictly_increasing(commitments.iter().map(|c| c.from)) {
        return Err(SecAggError::Unverified(
            "commitments not strictly increasing by id",
        ));
    }
    if commitments.len() < params.threshold as usize {
        return Err(SecAggError::Unverified(
            "fewer commitments than the threshold",
        ));
    }
    if let Some(c) = commitments
        .iter()
        .find(|c| params.participants.binary_search(&c.from).is_err())
    {
        return Err(SecAggError::NotInvited(c.from));
    }
    if let Some(c) = commitments.iter().find(|c| roster.get(c.from).is_none()) {
        return Err(SecAggError::BadSignature(c.from));
    }
    verify_all(
        roster,
        commitments
            .iter()
            .filter(|c| !checked.contains(&c.from))
            .map(|c| {
                let t = crate::crypto::advertise_transcript(
                    &config.session_id,
                    c.from,
                    &c.c_pk,
                    &c.s_pk,
                    &c.commitment,
                );
                (c.from, t, &c.signature)
            }),
    )
    .map_err(SecAggError::BadSignature)?;
    let mut total = RistrettoPoint::identity();
    for c in commitments {
        let point =
            CompressedRistretto(c.commitment)
                .decompress()
                .ok_or(SecAggError::Unverified(
                    "a commitment is not a group element",
                ))?;
        total += point;
    }
    if opening(sum, blinding_sum) != total {
        return Err(SecAggError::Unverified(
            "the sum does not open the participants' commitments",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn add(a: &mut [u64], b: &[u64]) {
        for (x, y) in a.iter_mut().zip(b) {
            *x = x.wrapping_add(*y);
        }
    }

    #[test]
    fn commitments_add_up_and_open_only_to_the_sum() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let inputs: [&[u64]; 3] = [
            &[1, 5, (-3i64) as u64],
            &[1, 7, 2],
            &[1, (-20i64) as u64, 9],
        ];
        let mut total = RistrettoPoint::identity();
        let mut sum = vec![0u64; 3];
        let mut limbs = [0u64; RHO_LIMBS];
        for x in inputs {
            let b = Blinding::random(&mut rng);
            total += CompressedRistretto(commit(x, &b)).decompress().unwrap();
            add(&mut sum, x);
            add(&mut limbs, b.limbs());
        }
        let open = opening;
        assert_eq!(open(&sum, &limbs), total);
        let mut other = sum.clone();
        other[1] = other[1].wrapping_add(1);
        assert_ne!(open(&other, &limbs), total);
        // Moving value between coordinates does not open it either.
        let mut swapped = sum.clone();
        swapped.swap(1, 2);
        assert_ne!(open(&swapped, &limbs), total);
    }

    #[test]
    fn packed_words_open_only_to_their_own_words() {
        // Extreme words in every lane, a short last group, and sums that carry between
        // lanes if packing were wrong: the opening is the sum of the commitments, and any
        // other words (one lane's unit moved into its neighbour's lane, the largest and
        // smallest words swapped) open another point.
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let a: Vec<u64> = vec![
            1,
            i64::MAX as u64,
            i64::MIN as u64,
            (-1i64) as u64,
            0,
            7,
            1 << 40,
        ];
        let b: Vec<u64> = vec![1, (-5i64) as u64, 3, 1, (-1i64) as u64, (-7i64) as u64, 9];
        let (ba, bb) = (Blinding::random(&mut rng), Blinding::random(&mut rng));
        let total = CompressedRistretto(commit(&a, &ba)).decompress().unwrap()
            + CompressedRistretto(commit(&b, &bb)).decompress().unwrap();
        let mut sum = a.clone();
        add(&mut sum, &b);
        let mut limbs = [0u64; RHO_LIMBS];
        add(&mut limbs, ba.limbs());
        add(&mut limbs, bb.limbs());
        assert_eq!(opening(&sum, &limbs), total);
        // A unit moved from one lane to the next is another integer.
        let mut carried = sum.clone();
        carried[1] = carried[1].wrapping_add(1);
        carried[2] = carried[2].wrapping_sub(1);
        assert_ne!(opening(&carried, &limbs), total);
        let mut swapped = sum.clone();
        swapped.swap(1, 2);
        assert_ne!(opening(&swapped, &limbs), total);
        // The sign is part of the word: -x is not x.
        assert_ne!(signed_scalar((-3i64) as u64), signed_scalar(3));
        assert_eq!(signed_scalar((-3i64) as u64), -Scalar::from(3u64));
        assert_eq!(signed_scalar(i64::MIN as u64), -Scalar::from(1u64 << 63));
        assert_eq!(generators_for(7), 3);
    }

    #[test]
    fn a_commitment_hides_equal_inputs() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let x = [1u64, 42, 42];
        let a = commit(&x, &Blinding::random(&mut rng));
        let b = commit(&x, &Blinding::random(&mut rng));
        assert_ne!(a, b);
    }

    #[test]
    fn blinding_limbs_fit_their_bits() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        for _ in 0..100 {
            let b = Blinding::random(&mut rng);
            assert!(b.limbs().iter().all(|l| *l < 1u64 << LIMB_BITS));
        }
        assert!(format!("{:?}", Blinding::random(&mut rng)) == "Blinding(..)");
    }
}
