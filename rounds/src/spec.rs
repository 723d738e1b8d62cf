//! The one job specification. TOML job files, `job submit` flags, the Operator service's
//! `spec_json` and the store's job row are all views of [`JobSpec`]; its defaults live here
//! and nowhere else (serde fills them in, [`JobSpec::new`] starts from them).

use fedrisk_models::Schema;
use fedrisk_models::binning::BinningOptions;
use fedrisk_models::federated::RoundSettings;
use serde::{Deserialize, Serialize};

/// Default of [`JobSpec::round_deadline_ms`].
pub const DEFAULT_ROUND_DEADLINE_MS: u64 = 120_000;
/// Default of [`JobSpec::stage_deadline_ms`].
pub const DEFAULT_STAGE_DEADLINE_MS: u64 = 20_000;
/// Default of [`JobSpec::max_attempts`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default of [`JobSpec::wait_for_participants_ms`].
pub const DEFAULT_WAIT_FOR_PARTICIPANTS_MS: u64 = 120_000;
/// Default of [`JobSpec::rounds`].
pub const DEFAULT_ROUNDS: u32 = 10;
/// Default of [`JobSpec::min_participants`].
pub const DEFAULT_MIN_PARTICIPANTS: u32 = 3;
/// Default of [`JobSpec::tolerance`].
pub const DEFAULT_TOLERANCE: f64 = 1e-6;

fn default_round_deadline_ms() -> u64 {
    DEFAULT_ROUND_DEADLINE_MS
}
fn default_stage_deadline_ms() -> u64 {
    DEFAULT_STAGE_DEADLINE_MS
}
fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}
fn default_wait_ms() -> u64 {
    DEFAULT_WAIT_FOR_PARTICIPANTS_MS
}
fn default_rounds() -> u32 {
    DEFAULT_ROUNDS
}
fn default_min_participants() -> u32 {
    DEFAULT_MIN_PARTICIPANTS
}
fn default_tolerance() -> f64 {
    DEFAULT_TOLERANCE
}

/// How features enter the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binning {
    /// Standardised numeric columns and one-hot levels.
    #[default]
    None,
    /// Every feature binned from the federation's securely summed good/bad counts, and the
    /// model trained on the WOE of each row's bins.
    Woe,
}

impl std::fmt::Display for Binning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Binning::None => "none",
            Binning::Woe => "woe",
        })
    }
}

impl std::str::FromStr for Binning {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Binning::None),
            "woe" => Ok(Binning::Woe),
            _ => Err(format!("`{s}`: expected none or woe")),
        }
    }
}

/// A training job as an operator submits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A name operators recognise; `serve --config` submits its job once per name.
    pub name: String,
    /// The feature layout every participant's data must match.
    pub schema: Schema,
    /// Algorithm, L2 strength, local epochs, evaluation histogram, validation split.
    #[serde(default)]
    pub settings: RoundSettings,
    /// Training rounds (Newton steps or FedAvg averaging rounds).
    #[serde(default = "default_rounds")]
    pub rounds: u32,
    /// Every session needs at least this many connected participants.
    #[serde(default = "default_min_participants")]
    pub min_participants: u32,
    /// The job's first session waits (up to `wait_for_participants_ms`) for this many to
    /// connect, so that a job does not start with the first `min_participants` to arrive;
    /// later sessions go on with whoever is connected, down to `min_participants`.
    #[serde(default)]
    pub expected_participants: Option<u32>,
    /// How long a session waits for the first stage (which includes local computation).
    #[serde(default = "default_round_deadline_ms")]
    pub round_deadline_ms: u64,
    /// How long each later secagg stage waits for the participants that are still connected.
    #[serde(default = "default_stage_deadline_ms")]
    pub stage_deadline_ms: u64,
    /// Secagg threshold t; default `max(floor(2n/3) + 1, n - dropout_budget)` for n invited.
    #[serde(default)]
    pub threshold: Option<u32>,
    /// Participants that may drop out of one session without aborting it; default n - t.
    #[serde(default)]
    pub dropout_budget: Option<u32>,
    /// Attempts of one round (each failed session is retried with fresh keys) before the
    /// job fails.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long an attempt waits for `min_participants` before it counts as failed.
    #[serde(default = "default_wait_ms")]
    pub wait_for_participants_ms: u64,
    /// `woe`: bin every feature from securely summed counts and train on WOE.
    #[serde(default)]
    pub binning: Binning,
    /// Bins, trend, minimum sizes and IV floor of `binning = "woe"`.
    #[serde(default)]
    pub binning_options: BinningOptions,
    /// Early stopping of Newton jobs: the job ends after the first training round whose
    /// step (the largest absolute change of a coefficient, on the standardised scale) is
    /// below this; the remaining rounds are not run. 0 turns it off; FedAvg and FedProx
    /// always run every round.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

/// A field of a job that cannot be run, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    /// The field's name as in TOML and JSON (`settings.c`, `rounds`, ...).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(field: &str, reason: impl Into<String>) -> SpecError {
    SpecError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

impl JobSpec {
    /// A job with every other field at its default.
    pub fn new(name: &str, schema: Schema) -> Self {
        Self {
            name: name.to_string(),
            schema,
            settings: RoundSettings::default(),
            rounds: DEFAULT_ROUNDS,
            min_participants: DEFAULT_MIN_PARTICIPANTS,
            expected_participants: None,
            round_deadline_ms: DEFAULT_ROUND_DEADLINE_MS,
            stage_deadline_ms: DEFAULT_STAGE_DEADLINE_MS,
            threshold: None,
            dropout_budget: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            wait_for_participants_ms: DEFAULT_WAIT_FOR_PARTICIPANTS_MS,
            binning: Binning::None,
            binning_options: BinningOptions::default(),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Reads a job from its JSON view (the wire's `spec_json`, the store) and validates it.
    pub fn from_json(json: &str) -> Result<Self, SpecError> {
        let spec: Self = serde_json::from_str(json).map_err(|e| bad("job", e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The JSON view.
    pub fn to_json(&self) -> String {
        // A JobSpec holds only strings, numbers and maps with string keys.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks what can be checked before any participant connects.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.schema
            .validate()
            .map_err(|e| bad("schema", e.to_string()))?;
        let s = &self.settings;
        if self.name.trim().is_empty() {
            return Err(bad("name", "empty"));
        }
        if self.rounds == 0 || self.rounds > 10_000 {
            return Err(bad(
                "rounds",
                format!("{} (expected 1..=10000)", self.rounds),
            ));
        }
        if self.min_participants < 2 {
            return Err(bad(
                "min_participants",
                format!(
                    "{} (secure aggregation needs at least 2; 3 or more to hide anyone's input)",
                    self.min_participants
                ),
            ));
        }
        if let Some(t) = self.threshold
            && t < 2
        {
            return Err(bad("threshold", format!("{t} (at least 2)")));
        }
        if s.c.is_nan() || s.c <= 0.0 {
            return Err(bad("settings.c", format!("{} (must be positive)", s.c)));
        }
        if !(0.0..0.9).contains(&s.validation_fraction) {
            return Err(bad(
                "settings.validation_fraction",
                format!("{} (expected 0 to 0.9)", s.validation_fraction),
            ));
        }
        if s.histogram_bins < 10 || s.histogram_bins > 10_000 {
            return Err(bad(
                "settings.histogram_bins",
                format!(
                    "{} (expected 10..=10000, what agents accept by default)",
                    s.histogram_bins
                ),
            ));
        }
        if s.learning_rate.is_nan() || s.learning_rate <= 0.0 {
            return Err(bad("settings.learning_rate", "must be positive"));
        }
        if s.batch_size == 0 {
            return Err(bad("settings.batch_size", "must be positive"));
        }
        if s.local_epochs == 0 {
            return Err(bad("settings.local_epochs", "must be positive"));
        }
        if self.round_deadline_ms < 100 {
            return Err(bad("round_deadline_ms", "at least 100"));
        }
        if self.stage_deadline_ms < 100 {
            return Err(bad("stage_deadline_ms", "at least 100"));
        }
        if let Some(e) = self.expected_participants
            && e < self.min_participants
        {
            return Err(bad(
                "expected_participants",
                format!("{e} is below min_participants {}", self.min_participants),
            ));
        }
        if self.max_attempts == 0 {
            return Err(bad("max_attempts", "at least 1"));
        }
        if !self.tolerance.is_finite() || self.tolerance < 0.0 {
            return Err(bad(
                "tolerance",
                format!(
                    "{} (expected 0, which turns early stopping off, or more)",
                    self.tolerance
                ),
            ));
        }
        self.binning_options.validate().map_err(|e| {
            let (field, reason) = e.split_once(": ").unwrap_or(("", e.as_str()));
            bad(&format!("binning_options.{field}"), reason)
        })?;
        Ok(())
    }

    /// The secagg threshold for `n` invited participants.
    pub fn threshold_for(&self, n: usize) -> u32 {
        let n32 = n as u32;
        let active = fedrisk_secagg::default_threshold(n);
        match (self.threshold, self.dropout_budget) {
            (Some(t), _) => t.min(n32),
            (None, Some(b)) => active.max(n32.saturating_sub(b)),
            (None, None) => active,
        }
    }

    /// How many participants a session waits for before it starts.
    pub fn participants_wanted(&self, first_of_job: bool) -> u32 {
        if first_of_job {
            self.expected_participants.unwrap_or(self.min_participants)
        } else {
            self.min_participants
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedrisk_models::federated::Algorithm;

    fn spec() -> JobSpec {
        JobSpec {
            round_deadline_ms: 1000,
            stage_deadline_ms: 1000,
            max_attempts: 2,
            wait_for_participants_ms: 1000,
            rounds: 3,
            ..JobSpec::new("t", fedrisk_models::synth::SynthConfig::schema())
        }
    }

    /// A job with every field away from its default, so a view that drops one is caught.
    pub(crate) fn every_field_set() -> JobSpec {
        JobSpec {
            name: "every-field".into(),
            schema: fedrisk_models::synth::SynthConfig::schema(),
            settings: RoundSettings {
                algorithm: Algorithm::FedProx,
                c: 0.5,
                local_epochs: 3,
                batch_size: 32,
                learning_rate: 0.02,
                mu: 0.1,
                histogram_bins: 500,
                validation_fraction: 0.1,
                split_seed: 9,
                missing_indicators: true,
                total_rows: 0.0,
                seed: 4,
            },
            rounds: 7,
            min_participants: 4,
            expected_participants: Some(6),
            round_deadline_ms: 31_000,
            stage_deadline_ms: 7_000,
            threshold: Some(5),
            dropout_budget: Some(1),
            max_attempts: 5,
            wait_for_participants_ms: 45_000,
            binning: Binning::Woe,
            binning_options: BinningOptions {
                max_bins: 8,
                max_prebins: 16,
                min_bin_share: 0.04,
                min_class_count: 30,
                trend: fedrisk_models::binning::Trend::Peak,
                iv_floor: 0.01,
                encoding: fedrisk_models::Encoding::Woe,
            },
            tolerance: 1e-4,
        }
    }

    #[test]
    fn thresholds_follow_the_active_rule_unless_set() {
        let s = spec();
        assert_eq!(s.threshold_for(5), 4);
        assert_eq!(s.threshold_for(20), 14);
        let budget = JobSpec {
            dropout_budget: Some(1),
            ..spec()
        };
        assert_eq!(budget.threshold_for(20), 19);
        let fixed = JobSpec {
            threshold: Some(7),
            ..spec()
        };
        assert_eq!(fixed.threshold_for(5), 5);
    }

    #[test]
    fn invalid_jobs_name_the_field() {
        let bad = |f: fn(&mut JobSpec)| {
            let mut s = spec();
            f(&mut s);
            s.validate().unwrap_err().field
        };
        assert_eq!(bad(|s| s.rounds = 0), "rounds");
        assert_eq!(bad(|s| s.min_participants = 1), "min_participants");
        assert_eq!(bad(|s| s.settings.c = -1.0), "settings.c");
        assert_eq!(
            bad(|s| s.expected_participants = Some(2)),
            "expected_participants"
        );
        assert_eq!(bad(|s| s.stage_deadline_ms = 5), "stage_deadline_ms");
        assert_eq!(bad(|s| s.max_attempts = 0), "max_attempts");
        assert_eq!(bad(|s| s.tolerance = -1e-6), "tolerance");
        assert_eq!(bad(|s| s.tolerance = f64::NAN), "tolerance");
        assert_eq!(
            bad(|s| s.binning_options.max_bins = 1),
            "binning_options.max_bins"
        );
        assert_eq!(
            bad(|s| s.binning_options.min_bin_share = 0.7),
            "binning_options.min_bin_share"
        );
        assert!(spec().validate().is_ok());
    }

    #[test]
    fn every_field_survives_the_json_view() {
        let s = every_field_set();
        let back = JobSpec::from_json(&s.to_json()).expect("valid");
        assert_eq!(back, s);
    }

    #[test]
    fn missing_fields_take_the_one_set_of_defaults() {
        let schema = serde_json::to_value(fedrisk_models::synth::SynthConfig::schema())
            .expect("schema json");
        let minimal = serde_json::json!({"name": "m", "schema": schema}).to_string();
        let s = JobSpec::from_json(&minimal).expect("valid");
        assert_eq!(
            s,
            JobSpec::new("m", fedrisk_models::synth::SynthConfig::schema())
        );
        let unknown = serde_json::json!({"name": "m", "schema": schema, "round": 3}).to_string();
        let e = JobSpec::from_json(&unknown).unwrap_err();
        assert!(e.reason.contains("unknown field `round`"), "{e}");
    }
}
