//! A deterministic generator of SME credit data from a known true model, split non-IID across
//! named institutions. The demo, tests and benchmarks use it; real data never has to ship.
//!
//! It produces what real files have: a text categorical (sector), missing values (income, age,
//! sector), special codes in delinquency counts (96 = "no bureau record", 98 = "refused"),
//! heavy tails (income, utilisation above 100 %), and institutions whose sizes and sector mixes
//! differ, so that each one alone sees a biased slice of the portfolio.

use std::fmt::Write as _;
use std::path::Path;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::error::DataError;
use crate::schema::{
    DEFAULT_MISSING_TOKENS, Feature, FeatureKind, LabelSpec, SCHEMA_FORMAT, SCHEMA_VERSION, Schema,
};

pub const SECTORS: [&str; 6] = [
    "agriculture",
    "construction",
    "manufacturing",
    "retail",
    "services",
    "transport",
];
/// Log-odds added per sector in the true model.
const SECTOR_EFFECT: [f64; 6] = [0.7, 0.9, -0.3, 0.2, -0.6, 0.4];
pub const SPECIAL_CODES: [f64; 2] = [96.0, 98.0];

/// One institution of the synthetic federation.
#[derive(Debug, Clone, PartialEq)]
pub struct InstitutionSpec {
    pub name: String,
    /// Share of all training rows.
    pub share: f64,
    /// Relative weight of each sector in [`SECTORS`] order.
    pub sector_mix: [f64; 6],
    /// Multiplies incomes: a rural bank's clients earn less than a city bank's.
    pub income_scale: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    pub seed: u64,
    /// Training rows over all institutions.
    pub train_rows: usize,
    /// Rows of the global test set (drawn from the whole portfolio mix).
    pub test_rows: usize,
    pub institutions: Vec<InstitutionSpec>,
}

impl SynthConfig {
    /// Five institutions like the demo's: two banks, a guarantor, an association, a rural bank.
    pub fn demo(seed: u64, train_rows: usize, test_rows: usize) -> Self {
        let inst = |name: &str, share, mix, income_scale| InstitutionSpec {
            name: name.into(),
            share,
            sector_mix: mix,
            income_scale,
        };
        Self {
            seed,
            train_rows,
            test_rows,
            institutions: vec![
                inst("bank_a", 0.40, [0.0, 0.5, 2.0, 2.0, 3.0, 0.5], 1.2),
                inst("bank_b", 0.25, [0.0, 0.0, 1.0, 4.0, 4.0, 0.0], 1.1),
                inst("guarantor_c", 0.15, [0.0, 5.0, 4.0, 0.0, 0.0, 1.0], 0.9),
                inst("association_d", 0.12, [0.0, 0.0, 0.5, 2.0, 0.0, 5.0], 0.8),
                inst("rural_bank_e", 0.08, [8.0, 0.5, 0.0, 1.0, 0.0, 0.0], 0.6),
            ],
        }
    }

    pub fn schema() -> Schema {
        let num = |name: &str, missing: bool, special: &[f64]| Feature {
            name: name.into(),
            kind: FeatureKind::Numeric {
                special_values: special.to_vec(),
            },
            missing,
        };
        Schema {
            format: SCHEMA_FORMAT.into(),
            version: SCHEMA_VERSION,
            label: LabelSpec {
                name: "default".into(),
                positive: "1".into(),
                negative: "0".into(),
            },
            missing_tokens: DEFAULT_MISSING_TOKENS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            features: vec![
                num("annual_income", true, &[]),
                num("utilisation", false, &[]),
                num("delinq_30_59", true, &SPECIAL_CODES),
                num("delinq_90", true, &SPECIAL_CODES),
                num("age", true, &[]),
                num("years_in_business", false, &[]),
                num("debt_ratio", false, &[]),
                num("loan_amount", false, &[]),
                Feature {
                    name: "sector".into(),
                    kind: FeatureKind::Categorical {
                        levels: SECTORS.iter().map(|s| s.to_string()).collect(),
                    },
                    missing: true,
                },
            ],
        }
    }
}

/// Generated CSV text: one file per institution plus a test file, all with the same header.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthData {
    pub participants: Vec<(String, String)>,
    pub test: String,
    pub schema: Schema,
}

const HEADER: &str = "annual_income,utilisation,delinq_30_59,delinq_90,age,years_in_business,debt_ratio,loan_amount,sector,default\n";

fn normal(rng: &mut ChaCha20Rng) -> f64 {
    // Box-Muller; 1 - u keeps the logarithm finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn poisson(rng: &mut ChaCha20Rng, lambda: f64) -> u32 {
    let l = (-lambda).exp();
    let (mut k, mut p) = (0u32, 1.0);
    loop {
        p *= rng.random::<f64>();
        if p <= l || k > 50 {
            return k;
        }
        k += 1;
    }
}

fn pick(rng: &mut ChaCha20Rng, weights: &[f64; 6]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

/// Writes one row and returns whether it defaulted under the true model.
fn row(rng: &mut ChaCha20Rng, mix: &[f64; 6], income_scale: f64, out: &mut String) {
    let sector = pick(rng, mix);
    let log_income = 10.8 + income_scale.ln() + 0.5 * normal(rng);
    let income = log_income.exp();
    let utilisation =
        (0.35 + 0.25 * normal(rng)).abs() * if rng.random::<f64>() < 0.05 { 2.5 } else { 1.0 };
    let risk = normal(rng);
    let d30 = poisson(rng, (0.15 + 0.25 * risk.max(0.0)).max(0.01));
    let d90 = poisson(rng, (0.03 + 0.12 * risk.max(0.0)).max(0.005));
    let age = (21.0 + 12.0 * rng.random::<f64>() + 30.0 * rng.random::<f64>()).round();
    let years = (rng.random::<f64>() * 25.0 * (age - 18.0) / 57.0).round();
    let debt_ratio = (0.3 + 0.2 * normal(rng)).abs();
    let loan = (income * (0.2 + 0.8 * rng.random::<f64>())).round();
    let income_missing = rng.random::<f64>() < 0.08;
    let logit = -2.4
        + 2.2 * (utilisation - 0.4)
        + 0.6 * f64::from(d30.min(10))
        + 1.1 * f64::from(d90.min(10))
        - 0.9 * (income / 50_000.0 - 1.0).min(3.0)
        - 0.03 * (age - 45.0)
        - 0.06 * (years - 8.0)
        + 1.5 * (debt_ratio - 0.3)
        + SECTOR_EFFECT[sector]
        + if income_missing { 0.5 } else { 0.0 };
    let default = rng.random::<f64>() < 1.0 / (1.0 + (-logit).exp());
    let code = |rng: &mut ChaCha20Rng, v: u32| -> String {
        let u = rng.random::<f64>();
        if u < 0.004 {
            "96".into()
        } else if u < 0.006 {
            "98".into()
        } else if u < 0.016 {
            String::new()
        } else {
            v.to_string()
        }
    };
    let d30s = code(rng, d30);
    let d90s = code(rng, d90);
    let income_s = if income_missing {
        "NA".to_string()
    } else {
        format!("{income:.0}")
    };
    let age_s = if rng.random::<f64>() < 0.02 {
        String::new()
    } else {
        format!("{age}")
    };
    let sector_s = if rng.random::<f64>() < 0.01 {
        ""
    } else {
        SECTORS[sector]
    };
    let _ = writeln!(
        out,
        "{income_s},{utilisation:.4},{d30s},{d90s},{age_s},{years},{debt_ratio:.4},{loan},{sector_s},{}",
        u8::from(default)
    );
}

/// Generates the federation's files; the same config gives the same bytes.
pub fn generate(cfg: &SynthConfig) -> SynthData {
    let total_share: f64 = cfg.institutions.iter().map(|i| i.share).sum();
    let mut participants = Vec::new();
    let mut overall = [0.0; 6];
    for (k, inst) in cfg.institutions.iter().enumerate() {
        // One stream per institution: adding an institution does not change the others' rows.
        let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed);
        rng.set_stream(k as u64 + 1);
        let rows = ((cfg.train_rows as f64) * inst.share / total_share).round() as usize;
        let mut text = String::from(HEADER);
        for _ in 0..rows {
            row(&mut rng, &inst.sector_mix, inst.income_scale, &mut text);
        }
        let mix_total: f64 = inst.sector_mix.iter().sum();
        for (o, w) in overall.iter_mut().zip(&inst.sector_mix) {
            *o += inst.share / total_share * w / mix_total;
        }
        participants.push((inst.name.clone(), text));
    }
    let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed);
    rng.set_stream(0);
    let mut test = String::from(HEADER);
    for _ in 0..cfg.test_rows {
        let k = pick_institution(&mut rng, cfg, total_share);
        let inst = &cfg.institutions[k];
        row(&mut rng, &overall, inst.income_scale, &mut test);
    }
    SynthData {
        participants,
        test,
        schema: SynthConfig::schema(),
    }
}

fn pick_institution(rng: &mut ChaCha20Rng, cfg: &SynthConfig, total: f64) -> usize {
    let mut u = rng.random::<f64>() * total;
    for (i, inst) in cfg.institutions.iter().enumerate() {
        if u < inst.share {
            return i;
        }
        u -= inst.share;
    }
    cfg.institutions.len().saturating_sub(1)
}

impl SynthData {
    /// Writes `participants/<name>.csv`, `test.csv` and `schema.json` under `dir`.
    pub fn write_dir(&self, dir: &Path) -> Result<(), DataError> {
        let io = |path: &Path, source| DataError::Io {
            path: path.to_owned(),
            source,
        };
        let pdir = dir.join("participants");
        std::fs::create_dir_all(&pdir).map_err(|e| io(&pdir, e))?;
        for (name, text) in &self.participants {
            let p = pdir.join(format!("{name}.csv"));
            std::fs::write(&p, text).map_err(|e| io(&p, e))?;
        }
        let t = dir.join("test.csv");
        std::fs::write(&t, &self.test).map_err(|e| io(&t, e))?;
        self.schema.save(&dir.join("schema.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{LabelMode, load_csv};

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = generate(&SynthConfig::demo(7, 3000, 500));
        let b = generate(&SynthConfig::demo(7, 3000, 500));
        let c = generate(&SynthConfig::demo(8, 3000, 500));
        assert_eq!(a, b);
        assert_ne!(a.participants[0].1, c.participants[0].1);
    }

    #[test]
    fn files_load_against_the_schema_and_are_non_iid() {
        let dir = tempfile::tempdir().unwrap();
        let data = generate(&SynthConfig::demo(1, 10_000, 2000));
        data.write_dir(dir.path()).unwrap();
        let schema = Schema::load(&dir.path().join("schema.json")).unwrap();
        let mut agri_share = Vec::new();
        let mut total = 0;
        for (name, _) in &data.participants {
            let d = load_csv(
                &dir.path().join(format!("participants/{name}.csv")),
                &schema,
                LabelMode::Required,
            )
            .unwrap();
            total += d.rows();
            let agri = d.categorical.column(0).iter().filter(|&&c| c == 0).count();
            agri_share.push(agri as f64 / d.rows() as f64);
            let rate = d
                .labels
                .as_ref()
                .unwrap()
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / d.rows() as f64;
            assert!(rate > 0.03 && rate < 0.5, "{name}: default rate {rate}");
            assert!(
                d.numeric.column(0).iter().any(|v| v.is_nan()),
                "{name}: income has missing values"
            );
        }
        assert_eq!(total, 10_000);
        // The rural bank lends mostly to farms, the second bank hardly at all.
        assert!(
            agri_share[4] > 0.5 && agri_share[1] < 0.05,
            "{agri_share:?}"
        );
        load_csv(&dir.path().join("test.csv"), &schema, LabelMode::Required).unwrap();
    }
}
