//! An institution's own model, fitted on its data alone: its baseline before joining a
//! federation, and the yardstick the pooled model must beat for it.

use crate::binning::BinningOptions;
use crate::data::Dataset;
use crate::error::FitError;
use crate::logistic::{NewtonOptions, Penalty, fit_newton};
use crate::model_file::{ModelFile, Provenance};
use crate::preprocess::{PreprocessOptions, Preprocessor};
use crate::schema::Schema;
use crate::stats::FeatureStats;

#[derive(Debug, Clone, PartialEq)]
pub struct LocalOptions {
    /// scikit-learn's C (inverse L2 strength).
    pub c: f64,
    pub preprocess: PreprocessOptions,
    pub max_iter: usize,
    /// Bins every feature on these rows and trains on the WOE of the bins.
    pub binning: Option<BinningOptions>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            c: 1.0,
            preprocess: PreprocessOptions::default(),
            max_iter: 100,
            binning: None,
        }
    }
}

/// Fits preprocessing and a Newton logistic regression on one data set.
pub fn train_local(
    schema: &Schema,
    data: Dataset,
    opts: &LocalOptions,
) -> Result<(ModelFile, usize), FitError> {
    if opts.c.is_nan() || opts.c <= 0.0 {
        return Err(FitError::Invalid(format!(
            "C must be positive, got {}",
            opts.c
        )));
    }
    let y = data.labels_f64().ok_or(FitError::NoRows)?;
    if y.is_empty() {
        return Err(FitError::NoRows);
    }
    let positives = y.iter().filter(|&&v| v > 0.5).count();
    if positives == 0 {
        return Err(FitError::OneClass(0));
    }
    if positives == y.len() {
        return Err(FitError::OneClass(1));
    }
    let stats = FeatureStats::from_dataset(schema, &data);
    let mut pre = Preprocessor::fit(schema, &stats, opts.preprocess);
    if let Some(b) = &opts.binning {
        pre = pre.with_woe(crate::binning::fit_pooled(schema, &data, b)?);
    }
    let x = pre.transform(data);
    let fit = fit_newton(
        x.view(),
        &y,
        &NewtonOptions {
            penalty: Penalty::sklearn(opts.c),
            max_iter: opts.max_iter,
            tol: 1e-10,
        },
    )?;
    let model = ModelFile::new(
        schema.clone(),
        pre,
        &fit.theta,
        Provenance {
            trainer: if opts.binning.is_some() {
                "local-newton-woe".into()
            } else {
                "local-newton".into()
            },
            rounds: fit.iterations as u32,
            participants: 1,
            schema_hash: schema.hash(),
            l2_c: Some(opts.c),
            notes: if fit.converged {
                vec![]
            } else {
                vec![format!("not converged after {} iterations", fit.iterations)]
            },
            created_at_unix_ms: None,
            software: None,
            settings: None,
            audit_record: None,
        },
    )?;
    Ok((model, x.nrows()))
}
