//! An institution's rows as the round kinds need them: loaded once per schema and split,
//! transformed once per preprocessing. Loading itself is the caller's ([`Loader`]), so this
//! stays free of I/O and an in-memory data set serves tests.

use fedrisk_models::federated::validation_split;
use fedrisk_models::{Dataset, Preprocessor, Schema};
use ndarray::Array2;

use crate::error::RoundError;
use crate::task::JobContext;

/// Reads the institution's rows under a schema (a CSV file today).
pub trait Loader {
    /// All rows, labelled, validated against `schema`.
    fn load(&mut self, schema: &Schema) -> Result<Dataset, RoundError>;
}

impl<F: FnMut(&Schema) -> Result<Dataset, RoundError>> Loader for F {
    fn load(&mut self, schema: &Schema) -> Result<Dataset, RoundError> {
        self(schema)
    }
}

/// Rows split into training and held-out evaluation rows.
pub struct Split {
    /// Training rows.
    pub train: Dataset,
    /// Held-out rows; `None` when the job holds none out (evaluation uses the training rows).
    pub held_out: Option<Dataset>,
}

/// Design matrices under one preprocessing.
pub struct Design {
    /// Training design matrix.
    pub x_train: Array2<f64>,
    /// Training labels as 0.0 / 1.0.
    pub y_train: Vec<f64>,
    /// Evaluation design matrix and labels (the held-out rows, else the training rows).
    pub x_eval: Option<Array2<f64>>,
    /// Evaluation labels.
    pub eval_labels: Vec<u8>,
}

impl Design {
    /// The rows evaluation scores.
    pub fn eval_x(&self) -> &Array2<f64> {
        self.x_eval.as_ref().unwrap_or(&self.x_train)
    }
}

/// What a round kind asks of an institution's rows.
pub trait Rows {
    /// The rows under the job's schema and split.
    fn split(&mut self, job: &JobContext) -> Result<&Split, RoundError>;
    /// The design matrices under a preprocessing.
    fn design(&mut self, job: &JobContext, pre: &Preprocessor) -> Result<&Design, RoundError>;
}

/// The agent's cache of its rows. Only a cache: every task names what it needs, and a
/// miss reloads.
pub struct LocalData<L> {
    loader: L,
    /// Schema the agent was started with: jobs with another schema are refused.
    pinned_schema: Option<String>,
    loaded: Option<(String, Split)>,
    design: Option<(String, Design)>,
}

impl<L: Loader> LocalData<L> {
    /// A cache over `loader`, refusing jobs whose schema differs from `pinned` if given.
    pub fn new(loader: L, pinned: Option<&Schema>) -> Self {
        Self {
            loader,
            pinned_schema: pinned.map(Schema::hash),
            loaded: None,
            design: None,
        }
    }

    /// Refuses a job whose schema is not the one the agent was started with.
    pub fn check_schema(&self, schema: &Schema) -> Result<(), RoundError> {
        let hash = schema.hash();
        match &self.pinned_schema {
            Some(pinned) if *pinned != hash => Err(RoundError::SchemaMismatch {
                job: hash[..16.min(hash.len())].to_string(),
                pinned: pinned[..16.min(pinned.len())].to_string(),
            }),
            _ => Ok(()),
        }
    }
}

impl<L: Loader> Rows for LocalData<L> {
    fn split(&mut self, job: &JobContext) -> Result<&Split, RoundError> {
        self.check_schema(&job.schema)?;
        let s = &job.settings;
        let key = format!(
            "{}:{}:{}",
            job.schema.hash(),
            s.validation_fraction,
            s.split_seed
        );
        if self.loaded.as_ref().is_none_or(|(k, _)| *k != key) {
            self.loaded = None;
            self.design = None;
            let data = self.loader.load(&job.schema)?;
            let (train_idx, val_idx) =
                validation_split(data.rows(), s.validation_fraction, s.split_seed);
            let split = if val_idx.is_empty() {
                Split {
                    train: data,
                    held_out: None,
                }
            } else {
                Split {
                    train: data.select_rows(&train_idx),
                    held_out: Some(data.select_rows(&val_idx)),
                }
            };
            self.loaded = Some((key, split));
        }
        match &self.loaded {
            Some((_, split)) => Ok(split),
            None => Err(RoundError::Data("no rows loaded".into())),
        }
    }

    fn design(&mut self, job: &JobContext, pre: &Preprocessor) -> Result<&Design, RoundError> {
        self.split(job)?;
        let Some((split_key, split)) = &self.loaded else {
            return Err(RoundError::Data("no rows loaded".into()));
        };
        let key = format!(
            "{split_key}:{}",
            hex::encode(crate::task::binding(
                &serde_json::to_vec(pre).unwrap_or_default()
            ))
        );
        if self.design.as_ref().is_none_or(|(k, _)| *k != key) {
            let y_train = split
                .train
                .labels_f64()
                .ok_or_else(|| RoundError::Data("the training rows have no labels".into()))?;
            let (x_eval, eval_labels) = match &split.held_out {
                Some(v) => (
                    Some(pre.transform_ref(v)),
                    v.labels.clone().ok_or_else(|| {
                        RoundError::Data("the held-out rows have no labels".into())
                    })?,
                ),
                None => (None, y_train.iter().map(|&y| u8::from(y > 0.5)).collect()),
            };
            self.design = Some((
                key,
                Design {
                    x_train: pre.transform_ref(&split.train),
                    y_train,
                    x_eval,
                    eval_labels,
                },
            ));
        }
        match &self.design {
            Some((_, d)) => Ok(d),
            None => Err(RoundError::Data("no design matrix".into())),
        }
    }
}
