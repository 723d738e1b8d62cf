//! A training job as an operator submits it (TOML file, CLI flags or the Operator service).

use fedrisk_models::Schema;
use fedrisk_models::federated::RoundSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    /// The feature layout every participant's data must match.
    pub schema: Schema,
    /// Algorithm, L2 strength, local epochs, evaluation histogram, validation split.
    #[serde(default)]
    pub settings: RoundSettings,
    /// Training rounds (Newton steps or FedAvg averaging rounds).
    pub rounds: u32,
    /// Every session needs at least this many connected participants.
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
    /// Participants that may drop out of one round without aborting it; default n - t.
    #[serde(default)]
    pub dropout_budget: Option<u32>,
    /// Attempts of one round (each with fresh secagg keys) before the job fails.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long to wait for `min_participants` before an attempt counts as failed.
    #[serde(default = "default_wait_ms")]
    pub wait_for_participants_ms: u64,
}

fn default_round_deadline_ms() -> u64 {
    120_000
}
fn default_stage_deadline_ms() -> u64 {
    20_000
}
fn default_max_attempts() -> u32 {
    3
}
fn default_wait_ms() -> u64 {
    120_000
}

impl JobSpec {
    /// Checks what can be checked before any participant connects; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.schema.validate().map_err(|e| format!("schema: {e}"))?;
        let s = &self.settings;
        if self.name.trim().is_empty() {
            return Err("name: empty".into());
        }
        if self.rounds == 0 || self.rounds > 10_000 {
            return Err(format!("rounds: {} (expected 1..=10000)", self.rounds));
        }
        if self.min_participants < 2 {
            return Err(format!(
                "min_participants: {} (secure aggregation needs at least 2; 3 or more to hide anyone's input)",
                self.min_participants
            ));
        }
        if let Some(t) = self.threshold
            && t < 2
        {
            return Err(format!("threshold: {t} (at least 2)"));
        }
        if s.c.is_nan() || s.c <= 0.0 {
            return Err(format!("settings.c: {} (must be positive)", s.c));
        }
        if !(0.0..0.9).contains(&s.validation_fraction) {
            return Err(format!(
                "settings.validation_fraction: {} (expected 0 to 0.9)",
                s.validation_fraction
            ));
        }
        if s.histogram_bins < 10 || s.histogram_bins > 100_000 {
            return Err(format!(
                "settings.histogram_bins: {} (expected 10..=100000)",
                s.histogram_bins
            ));
        }
        if s.learning_rate.is_nan()
            || s.learning_rate <= 0.0
            || s.batch_size == 0
            || s.local_epochs == 0
        {
            return Err(
                "settings: learning_rate, batch_size and local_epochs must be positive".into(),
            );
        }
        if self.round_deadline_ms < 100 || self.stage_deadline_ms < 100 {
            return Err("round_deadline_ms and stage_deadline_ms: at least 100".into());
        }
        if let Some(e) = self.expected_participants
            && e < self.min_participants
        {
            return Err(format!(
                "expected_participants: {e} is below min_participants {}",
                self.min_participants
            ));
        }
        if self.max_attempts == 0 {
            return Err("max_attempts: at least 1".into());
        }
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
}

impl JobSpec {
    /// Reads a job from the Operator service's message; `hyper_params_json` may override any
    /// field of [`RoundSettings`].
    pub fn from_wire(w: fedrisk_proto::v1::JobSpec) -> Result<Self, String> {
        let schema: Schema =
            serde_json::from_str(&w.schema_json).map_err(|e| format!("schema_json: {e}"))?;
        let mut settings =
            serde_json::to_value(RoundSettings::default()).map_err(|e| e.to_string())?;
        if !w.hyper_params_json.trim().is_empty() {
            let over: serde_json::Value = serde_json::from_str(&w.hyper_params_json)
                .map_err(|e| format!("hyper_params_json: {e}"))?;
            let (Some(base), Some(over)) = (settings.as_object_mut(), over.as_object()) else {
                return Err("hyper_params_json: expected a JSON object".into());
            };
            for (k, v) in over {
                if !base.contains_key(k) {
                    return Err(format!("hyper_params_json: unknown setting `{k}`"));
                }
                base.insert(k.clone(), v.clone());
            }
        }
        let mut settings: RoundSettings =
            serde_json::from_value(settings).map_err(|e| format!("hyper_params_json: {e}"))?;
        if !w.algorithm.is_empty() {
            settings.algorithm = w.algorithm.parse()?;
        }
        if w.histogram_bins != 0 {
            settings.histogram_bins = w.histogram_bins as usize;
        }
        let spec = Self {
            name: w.name,
            schema,
            settings,
            rounds: w.rounds,
            min_participants: w.min_participants,
            expected_participants: (w.expected_participants != 0)
                .then_some(w.expected_participants),
            round_deadline_ms: if w.round_deadline_ms == 0 {
                default_round_deadline_ms()
            } else {
                w.round_deadline_ms
            },
            stage_deadline_ms: default_stage_deadline_ms(),
            threshold: (w.secagg_threshold != 0).then_some(w.secagg_threshold),
            dropout_budget: (w.dropout_budget != 0).then_some(w.dropout_budget),
            max_attempts: default_max_attempts(),
            wait_for_participants_ms: default_wait_ms(),
        };
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec {
            name: "t".into(),
            schema: fedrisk_models::synth::SynthConfig::schema(),
            settings: RoundSettings::default(),
            rounds: 3,
            min_participants: 3,
            expected_participants: None,
            round_deadline_ms: 1000,
            stage_deadline_ms: 1000,
            threshold: None,
            dropout_budget: None,
            max_attempts: 2,
            wait_for_participants_ms: 1000,
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
            s.validate().unwrap_err()
        };
        assert!(bad(|s| s.rounds = 0).starts_with("rounds"));
        assert!(bad(|s| s.min_participants = 1).starts_with("min_participants"));
        assert!(bad(|s| s.settings.c = -1.0).starts_with("settings.c"));
        assert!(bad(|s| s.expected_participants = Some(2)).starts_with("expected_participants"));
        assert!(spec().validate().is_ok());
    }

    #[test]
    fn wire_jobs_merge_hyper_parameters_and_refuse_unknown_ones() {
        let schema_json = serde_json::to_string(&fedrisk_models::synth::SynthConfig::schema())
            .unwrap_or_default();
        let wire = fedrisk_proto::v1::JobSpec {
            name: "w".into(),
            schema_json: schema_json.clone(),
            algorithm: "fedprox".into(),
            rounds: 5,
            min_participants: 3,
            hyper_params_json: r#"{"mu": 0.5, "local_epochs": 2}"#.into(),
            ..Default::default()
        };
        let s = JobSpec::from_wire(wire.clone()).expect("valid");
        assert_eq!(
            s.settings.algorithm,
            fedrisk_models::federated::Algorithm::FedProx
        );
        assert_eq!((s.settings.mu, s.settings.local_epochs), (0.5, 2));
        let unknown = fedrisk_proto::v1::JobSpec {
            hyper_params_json: r#"{"lr": 1}"#.into(),
            ..wire.clone()
        };
        assert!(
            JobSpec::from_wire(unknown)
                .unwrap_err()
                .contains("unknown setting `lr`")
        );
        let bad_algo = fedrisk_proto::v1::JobSpec {
            algorithm: "sgd".into(),
            ..wire
        };
        assert!(
            JobSpec::from_wire(bad_algo)
                .unwrap_err()
                .contains("unknown algorithm")
        );
    }
}
