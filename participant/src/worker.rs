//! Turns a task into this institution's contribution: loads and splits the data, builds the
//! design matrix from the federation's preprocessing, and computes the round's vector.
//! Pure computation; the agent decides what to send.

use std::path::PathBuf;

use fedrisk_models::federated::{self, Algorithm, Contribution, RoundSettings};
use fedrisk_models::{Dataset, LabelMode, Preprocessor, Schema, load_csv};
use ndarray::Array2;

/// The institution's data, loaded once per schema and transformed once per preprocessing.
pub struct LocalData {
    path: PathBuf,
    /// Schema given on the command line: jobs with another schema are refused.
    pinned_schema: Option<String>,
    loaded: Option<Loaded>,
    design: Option<Design>,
}

struct Loaded {
    key: String,
    train: Dataset,
    /// Held-out rows; `None` when the job holds none out (evaluation uses the training rows).
    val: Option<Dataset>,
}

struct Design {
    key: String,
    x_train: Array2<f64>,
    y_train: Vec<f64>,
    /// Design matrix and labels of the held-out rows, when there are any.
    val: Option<(Array2<f64>, Vec<u8>)>,
}

/// The figures of a task, ready for fixed-point encoding.
pub struct Work {
    pub contribution: Contribution,
    /// What the session binds to (recomputed here, never taken from the coordinator).
    pub binding: [u8; 32],
    pub rows: usize,
}

impl LocalData {
    pub fn new(path: PathBuf, pinned_schema: Option<&Schema>) -> Self {
        Self {
            path,
            pinned_schema: pinned_schema.map(Schema::hash),
            loaded: None,
            design: None,
        }
    }

    fn load(&mut self, schema: &Schema, settings: &RoundSettings) -> Result<&Loaded, String> {
        schema.validate().map_err(|e| format!("job schema: {e}"))?;
        let hash = schema.hash();
        if let Some(pinned) = &self.pinned_schema
            && *pinned != hash
        {
            return Err(format!(
                "the job's schema (hash {}) differs from the one this agent was started with (hash {pinned}); refusing to take part",
                &hash[..16]
            ));
        }
        let key = format!(
            "{hash}:{}:{}",
            settings.validation_fraction, settings.split_seed
        );
        if self.loaded.as_ref().is_none_or(|l| l.key != key) {
            let data =
                load_csv(&self.path, schema, LabelMode::Required).map_err(|e| e.to_string())?;
            let (train_idx, val_idx) = federated::validation_split(
                data.rows(),
                settings.validation_fraction,
                settings.split_seed,
            );
            let (train, val) = if val_idx.is_empty() {
                (data, None)
            } else {
                (
                    data.select_rows(&train_idx),
                    Some(data.select_rows(&val_idx)),
                )
            };
            self.loaded = Some(Loaded { key, train, val });
            self.design = None;
        }
        self.loaded
            .as_ref()
            .ok_or_else(|| "data not loaded".to_string())
    }

    /// A statistics task of phase 1 (magnitudes) or 2 (scaled sums).
    pub fn stats(
        &mut self,
        phase: u32,
        schema_json: &str,
        settings_json: &str,
        scales: &[f64],
    ) -> Result<Work, String> {
        let settings: RoundSettings =
            serde_json::from_str(settings_json).map_err(|e| format!("job settings: {e}"))?;
        let schema: Schema =
            serde_json::from_str(schema_json).map_err(|e| format!("job schema: {e}"))?;
        let loaded = self.load(&schema, &settings)?;
        let contribution = match phase {
            1 => federated::magnitude_contribution(&loaded.train),
            2 => federated::stats_contribution(&schema, &loaded.train, scales)
                .map_err(|e| e.to_string())?,
            other => return Err(format!("unknown statistics phase {other}")),
        };
        Ok(Work {
            contribution,
            binding: federated::binding_stats(phase, schema_json, settings_json, scales),
            rows: loaded.train.rows(),
        })
    }

    fn design(&mut self, preprocessing_json: &str) -> Result<&Design, String> {
        let loaded = self
            .loaded
            .as_ref()
            .ok_or("a training task came before the statistics round")?;
        let key = hex::encode(federated::binding_hash(&[
            preprocessing_json.as_bytes(),
            loaded.key.as_bytes(),
        ]));
        if self.design.as_ref().is_none_or(|d| d.key != key) {
            let pre: Preprocessor = serde_json::from_str(preprocessing_json)
                .map_err(|e| format!("preprocessing: {e}"))?;
            let y_train = loaded
                .train
                .labels_f64()
                .ok_or("training data has no labels")?;
            let val = match &loaded.val {
                Some(v) => Some((
                    pre.transform_ref(v),
                    v.labels.clone().ok_or("validation data has no labels")?,
                )),
                None => None,
            };
            self.design = Some(Design {
                key,
                x_train: pre.transform_ref(&loaded.train),
                y_train,
                val,
            });
        }
        self.design
            .as_ref()
            .ok_or_else(|| "no design matrix".to_string())
    }

    pub fn train(
        &mut self,
        round: u32,
        settings_json: &str,
        preprocessing_json: &str,
        theta: &[f64],
    ) -> Result<Work, String> {
        let settings: RoundSettings =
            serde_json::from_str(settings_json).map_err(|e| format!("job settings: {e}"))?;
        let d = self.design(preprocessing_json)?;
        let contribution = match settings.algorithm {
            Algorithm::Newton => {
                federated::newton_contribution(d.x_train.view(), &d.y_train, theta)
            }
            Algorithm::FedAvg | Algorithm::FedProx => federated::local_update_contribution(
                d.x_train.view(),
                &d.y_train,
                theta,
                &settings,
                round,
            ),
        }
        .map_err(|e| e.to_string())?;
        Ok(Work {
            contribution,
            binding: federated::binding_train(settings_json, preprocessing_json, theta),
            rows: d.x_train.nrows(),
        })
    }

    pub fn eval(
        &mut self,
        preprocessing_json: &str,
        theta: &[f64],
        bins: u32,
    ) -> Result<Work, String> {
        let d = self.design(preprocessing_json)?;
        let train_labels;
        let (x, labels) = match &d.val {
            Some((x, l)) => (x, l.as_slice()),
            None => {
                train_labels = d
                    .y_train
                    .iter()
                    .map(|&y| u8::from(y > 0.5))
                    .collect::<Vec<u8>>();
                (&d.x_train, train_labels.as_slice())
            }
        };
        let n = x.nrows();
        let values = federated::eval_contribution(x.view(), labels, theta, bins as usize, n)
            .map_err(|e| e.to_string())?;
        Ok(Work {
            contribution: Contribution {
                weight: n as u64,
                values,
            },
            binding: federated::binding_eval(preprocessing_json, theta, bins),
            rows: n,
        })
    }
}
