//! The crate's single error type. Variants are named in protocol terms so the
//! gRPC layer can log and map them without knowing the internals.

use crate::Stage;
use thiserror::Error;

/// Everything that can go wrong in a secure-aggregation session.
///
/// Errors returned by a coordinator `on_*` handler reject one message and leave
/// the session running; [`SecAggError::Aborted`] (and the errors returned by
/// `close_stage`) end it. Errors returned by a participant handler for a message
/// whose *content* is wrong abort that participant: it releases nothing afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecAggError {
    /// The session configuration breaks a threshold, size or overflow rule.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The coordinator's configuration is weaker than this participant's policy.
    #[error("configuration rejected by participant policy: {0}")]
    PolicyViolation(&'static str),
    /// The configuration's session id does not match the participant's own binding
    /// (federation, round, global-model hash, configuration hash, nonce).
    #[error("session binding mismatch (different model, round or configuration)")]
    BindingMismatch,
    /// Bytes that do not decode to a well-formed message.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A message encoded with a protocol version this build does not speak.
    #[error("unsupported message version {0}")]
    UnsupportedVersion(u8),
    /// A message carrying another session's id (replay across rounds).
    #[error("message belongs to another session")]
    WrongSession,
    /// A message that belongs to a different stage than the current one.
    #[error("unexpected message for stage {expected:?}, got {got:?}")]
    WrongStage {
        /// The stage the session is in.
        expected: Stage,
        /// The stage the message belongs to.
        got: Stage,
    },
    /// A message for a stage the coordinator already closed (deadline passed).
    #[error("late message for closed stage {0:?}")]
    LateMessage(Stage),
    /// A sender that is not on the invitation list / roster.
    #[error("participant {0} is not invited to this session")]
    NotInvited(u32),
    /// A sender that is invited but was excluded at an earlier stage.
    #[error("participant {0} is not a survivor of the previous stage")]
    NotASurvivor(u32),
    /// A second message of the same kind from the same sender.
    #[error("duplicate message from participant {0}")]
    Duplicate(u32),
    /// The transport-authenticated sender differs from the id inside the message.
    #[error("sender mismatch: transport says {transport}, message says {claimed}")]
    SenderMismatch {
        /// Id the transport authenticated.
        transport: u32,
        /// Id written in the message.
        claimed: u32,
    },
    /// An Ed25519 signature that does not verify under the roster key.
    #[error("bad signature from participant {0}")]
    BadSignature(u32),
    /// A low-order / non-contributory X25519 public key.
    #[error("non-contributory (low-order) key from participant {0}")]
    NonContributoryKey(u32),
    /// An X25519 public key written other than as its canonical u-coordinate (the top bit
    /// set, or a value of at least 2^255 - 19): the same key would then have two
    /// encodings, and a byte-wise duplicate check would miss it.
    #[error("non-canonical key encoding from participant {0}")]
    NonCanonicalKey(u32),
    /// Two roster entries advertising the same public key.
    #[error("duplicate public key advertised by participant {0}")]
    DuplicateKey(u32),
    /// A key list that does not contain the keys this participant advertised.
    #[error("key list does not carry this participant's own keys")]
    ForgedOwnKeys,
    /// A list of ids that is not strictly increasing or names unknown ids.
    #[error("invalid participant list: {0}")]
    InvalidList(&'static str),
    /// Fewer than the threshold remain; the round ends without output.
    #[error("too few participants at stage {stage:?}: {have} < {need}")]
    TooFewParticipants {
        /// Stage at which the count fell short.
        stage: Stage,
        /// How many remain.
        have: usize,
        /// The threshold.
        need: usize,
    },
    /// A share ciphertext that fails authentication (misrouted, altered, replayed).
    #[error("share ciphertext from participant {0} failed authentication")]
    ShareAuthentication(u32),
    /// The vector has the wrong length or an out-of-range weight slot.
    #[error("invalid input vector: {0}")]
    InvalidInput(&'static str),
    /// The survivor set U3 was not certified by enough consistent signatures.
    #[error("consistency check failed: {0}")]
    ConsistencyCheck(&'static str),
    /// An unmask request that would let the coordinator unmask someone.
    #[error("unmask request refused: {0}")]
    UnmaskRefused(&'static str),
    /// The participant already answered its one unmask request.
    #[error("unmask request already answered")]
    AlreadyUnmasked,
    /// A reconstructed secret does not match the advertised public key.
    #[error("reconstruction of participant {0}'s secret failed")]
    ReconstructionFailed(u32),
    /// Non-finite input or a value that cannot be represented in fixed point.
    #[error("fixed-point encoding: {0}")]
    FixedPoint(&'static str),
    /// The session has aborted; nothing more happens.
    #[error("session aborted")]
    Aborted,
    /// A session's claimed output does not check against its participants' signed
    /// commitments (see [`crate::commit`]).
    #[error("unverifiable session output: {0}")]
    Unverified(&'static str),
}

/// Shorthand used throughout the crate.
pub type Result<T> = core::result::Result<T, SecAggError>;
