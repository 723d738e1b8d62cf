//! What a federation computes, round by round, with no I/O.
//!
//! - [`spec`]: the one [`JobSpec`] (with every default in one place) that TOML files, CLI
//!   flags, the wire and the store are views of.
//! - [`task`]: the self-contained task an agent receives (the job's schema, settings,
//!   preprocessing and model travel with it) and the hash every session is bound to.
//! - [`kind`] and [`kinds`]: each round kind (magnitudes, statistics, update, evaluation) is
//!   one [`RoundKind`] implementation: vector layout, encoding, the participant's
//!   contribution from its rows, the coordinator's absorption of the decoded sum.
//! - [`plan`]: the [`JobPlan`] state machine (next session, on output, on failure) that
//!   owns round sequencing and the retry rule.
//! - [`lineage`]: what lets an agent check that a task is the plan's next one after the
//!   job's verified sums (a [`Replica`] of the plan, advanced by [`SessionRecord`]s).
//! - [`local`]: an institution's rows as the round kinds need them, behind a [`Loader`]
//!   the caller implements (CSV today).
//!
//! Architecture invariant: nothing here opens a file or socket, reads a clock or draws
//! randomness; the coordinator's engine and the participant's agent are thin drivers of
//! these state machines and of `fedrisk-secagg`'s.

pub mod error;
pub mod fixed;
pub mod kind;
pub mod kinds;
pub mod lineage;
pub mod lineage_codec;
pub mod local;
pub mod plan;
pub mod session;
pub mod spec;
pub mod task;

pub use error::{Failure, RoundError};
pub use fixed::{
    TRAIN_CLIP, WEIGHT_BITS, decode_output, encode_input, encode_parts, fixed_point_for,
};
pub use kind::{Absorbed, Part, RoundKind, SessionSum, row_constants};
pub use lineage::{CommitmentRecord, LineageEntry, LineageError, Replica, SessionRecord};
pub use local::{Loader, LocalData, Rows};
pub use plan::{
    AfterFailure, Checkpoint, Convergence, JobPlan, Partial, PartialResult, PlanError, PlanIds,
    Progress, RoundOutcome, SessionRequest, step_size,
};
pub use session::{session_binding, session_params};
pub use spec::{Binning, JobSpec, SpecError};
pub use task::{EncodedTask, GlobalModel, JobContext, Task, TaskLimits, TaskParams};

pub use fedrisk_models::federated::{Algorithm, RoundSettings};
