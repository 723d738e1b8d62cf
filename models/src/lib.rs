//! Credit data, logistic regression, metrics and model files for fedrisk.
//!
//! Architecture invariant: nothing here touches the network or the secure-aggregation
//! protocol. Every quantity a federation adds up (feature statistics, gradient and Hessian
//! sums, score histograms) is exposed as a plain additive value, so the same code trains a
//! local model and takes part in a federated one.

pub mod data;
pub mod error;
pub mod federated;
pub mod local;
pub mod logistic;
pub mod metrics;
pub mod model_file;
pub mod preprocess;
pub mod schema;
pub mod shape;
pub mod stats;
pub mod synth;
pub mod validation;

pub use data::{Dataset, LabelMode, load_csv};
pub use error::{DataError, FitError, Location, RowProblem};
pub use model_file::{ModelFile, ModelSignature, Provenance};
pub use preprocess::{PreprocessOptions, Preprocessor};
pub use schema::{InferOptions, Schema};
pub use stats::FeatureStats;
