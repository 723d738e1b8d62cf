//! The round kinds, one file each.

mod bin_counts;
mod evaluation;
mod magnitudes;
mod statistics;
mod update;
mod update_eval;

pub use bin_counts::BinCounts;
pub use evaluation::Evaluation;
pub use magnitudes::Magnitudes;
pub use statistics::Statistics;
pub use update::Update;
pub use update_eval::UpdateEval;
