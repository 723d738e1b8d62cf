//! Credit data, logistic regression, metrics and model files for fedrisk.
//!
//! Architecture invariant: nothing here touches the secure-aggregation protocol, and nothing
//! touches the network but the PostgreSQL data source (`pg`, feature `postgres`), whose async
//! client runs on a thread of its own behind the same synchronous [`source::RowSource`] as
//! the files. Every quantity a federation adds up (feature statistics, gradient and Hessian
//! sums, score histograms) is exposed as a plain additive value, so the same code trains a
//! local model and takes part in a federated one.

pub mod binning;
pub mod data;
pub mod error;
pub mod federated;
pub mod local;
pub mod logistic;
pub mod metrics;
pub mod model_file;
pub mod parquet_source;
#[cfg(feature = "postgres")]
pub mod pg;
#[cfg(feature = "postgres")]
pub mod pg_tls;
pub mod preprocess;
pub mod schema;
pub mod scorecard;
pub mod shape;
pub mod source;
pub mod stats;
pub mod synth;
pub mod validation;

pub use binning::{BinningOptions, Encoding, WoeBinning};
pub use data::{DataReader, Dataset, LabelMode, load, load_csv};
pub use error::{DataError, FitError, Location, RowPlace, RowProblem};
pub use model_file::{ModelFile, ModelSignature, Provenance};
pub use preprocess::{PreprocessOptions, Preprocessor};
pub use schema::{InferOptions, Schema};
pub use source::{DataSource, PgRead, PgSpec};
pub use stats::FeatureStats;
