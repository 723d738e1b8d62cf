//! PMML 4.4: a `RegressionModel` (classification, `logit` normalisation) over derived fields
//! that reproduce the model's preprocessing.
//!
//! - A numeric feature's special codes (and NaN) are declared as missing values of its `DataField`; the
//!   standardised column `z:x` is `(imputed:x - mean) / scale`, where the derived field
//!   `imputed:x` is `x` or, when missing, the imputation value (`FieldRef mapMissingTo`); its indicator, when the model has one, is
//!   `if(isMissing(x), 1, 0)`.
//! - A categorical feature declares no valid values (any text is valid, so an unseen level
//!   reaches the transformations instead of being refused) and the schema's missing tokens as
//!   missing values. Level `l`'s column is a `MapValues` lookup (`l` → 1, any other value → 0,
//!   missing → 0); the `other` column maps every level to 0 and any other value to 1, and a
//!   missing value to 1 unless the model has a `missing` column, `if(isMissing(x), 1, 0)`.
//! - A binned model (`binning = "woe"`) declares only NaN as a numeric field's missing value
//!   (special codes have bins of their own) and derives, per kept feature, its bin or its WOE
//!   (see [`binned_transformations`]); the regression has the feature's coefficient on its
//!   WOE, or a `CategoricalPredictor` per indicator bin.

use fedrisk_models::ModelFile;
use fedrisk_models::schema::FeatureKind;

use crate::xml::Xml;
use crate::{ExportError, binned};

const NS: &str = "http://www.dmg.org/PMML-4_4";

fn num(v: f64) -> String {
    format!("{v}")
}

/// Derived field names, in the order of the model's design columns.
pub(crate) fn derived_names(model: &ModelFile) -> Vec<String> {
    let pre = &model.preprocessing;
    let mut names: Vec<String> = pre
        .numeric
        .iter()
        .map(|n| format!("z:{}", n.name))
        .collect();
    names.extend(model.columns[pre.numeric.len()..].iter().cloned());
    names
}

/// A binned feature's derived field: its bin (indicators) or its WOE.
fn binned_name(f: &binned::Feature) -> String {
    match f.design {
        binned::Design::Woe { .. } => format!("woe:{}", f.name),
        binned::Design::Indicators { .. } => format!("bin:{}", f.name),
    }
}

pub fn write(model: &ModelFile) -> Result<String, ExportError> {
    let binned = match &model.preprocessing.woe {
        Some(w) => Some(binned::features(model, w)?),
        None => None,
    };
    let names = match &binned {
        Some(features) => features.iter().map(binned_name).collect(),
        None => derived_names(model),
    };
    for f in &model.schema.features {
        if names.contains(&f.name) || f.name.starts_with("imputed:") {
            return Err(ExportError::NameClash {
                feature: f.name.clone(),
            });
        }
    }
    let mut x = Xml::new();
    dictionary(&mut x, model, binned.is_none());
    x.open("TransformationDictionary", &[]);
    match &binned {
        Some(features) => binned_transformations(&mut x, features),
        None => transformations(&mut x, model, &names),
    }
    x.close();
    regression(&mut x, model, &mut |x| match &binned {
        Some(features) => binned_predictors(x, features),
        None => {
            for (name, c) in names.iter().zip(&model.coefficients) {
                x.empty(
                    "NumericPredictor",
                    &[("name", name.as_str()), ("coefficient", &num(*c))],
                );
            }
        }
    });
    Ok(x.finish())
}

/// Header and data dictionary. A numeric feature's special codes are declared missing
/// values when the model treats them as missing (`specials_missing`); a binned model gives
/// them bins of their own, so there they stay values.
fn dictionary(x: &mut Xml, model: &ModelFile, specials_missing: bool) {
    let label = &model.schema.label;
    x.open("PMML", &[("xmlns", NS), ("version", "4.4")]);
    let description = format!(
        "fedrisk logistic regression, model content hash {}",
        model.content_hash
    );
    x.open(
        "Header",
        &[("copyright", ""), ("description", description.as_str())],
    );
    x.empty(
        "Application",
        &[("name", "fedrisk"), ("version", env!("CARGO_PKG_VERSION"))],
    );
    x.close();

    let n_fields = (model.schema.features.len() + 1).to_string();
    x.open("DataDictionary", &[("numberOfFields", n_fields.as_str())]);
    for f in &model.schema.features {
        match &f.kind {
            FeatureKind::Numeric { special_values } => {
                x.open(
                    "DataField",
                    &[
                        ("name", f.name.as_str()),
                        ("optype", "continuous"),
                        ("dataType", "double"),
                    ],
                );
                // NaN is how data frames hold a missing number: missing here too.
                x.empty("Value", &[("value", "NaN"), ("property", "missing")]);
                for v in special_values.iter().filter(|_| specials_missing) {
                    x.empty("Value", &[("value", &num(*v)), ("property", "missing")]);
                }
                x.close();
            }
            FeatureKind::Categorical { .. } => {
                x.open(
                    "DataField",
                    &[
                        ("name", f.name.as_str()),
                        ("optype", "categorical"),
                        ("dataType", "string"),
                    ],
                );
                for t in &model.schema.missing_tokens {
                    x.empty("Value", &[("value", t), ("property", "missing")]);
                }
                x.close();
            }
        }
    }
    x.open(
        "DataField",
        &[
            ("name", label.name.as_str()),
            ("optype", "categorical"),
            ("dataType", "string"),
        ],
    );
    x.empty("Value", &[("value", label.positive.as_str())]);
    x.empty("Value", &[("value", label.negative.as_str())]);
    x.close();
    x.close();
}

/// The derived fields of a model without bins: imputation, standardisation, indicators,
/// one-hot levels.
fn transformations(x: &mut Xml, model: &ModelFile, names: &[String]) {
    let pre = &model.preprocessing;
    let constant = |x: &mut Xml, v: f64| x.text("Constant", &[("dataType", "double")], &num(v));
    let if_then = |x: &mut Xml, name: &str, test: &dyn Fn(&mut Xml)| {
        x.open(
            "DerivedField",
            &[
                ("name", name),
                ("optype", "continuous"),
                ("dataType", "double"),
            ],
        );
        x.open("Apply", &[("function", "if")]);
        test(x);
        constant(x, 1.0);
        constant(x, 0.0);
        x.close();
        x.close();
    };
    let double_field = |x: &mut Xml, name: &str| {
        x.open(
            "DerivedField",
            &[
                ("name", name),
                ("optype", "continuous"),
                ("dataType", "double"),
            ],
        );
    };
    for (t, name) in pre.numeric.iter().zip(names) {
        // The imputed value in a field of its own: declared double, so a consumer reads the
        // replacement (an attribute's text) as a number.
        let imputed = format!("imputed:{}", t.name);
        double_field(x, &imputed);
        if t.impute.is_finite() {
            x.empty(
                "FieldRef",
                &[("field", t.name.as_str()), ("mapMissingTo", &num(t.impute))],
            );
        } else {
            x.empty("FieldRef", &[("field", t.name.as_str())]);
        }
        x.close();
        double_field(x, name);
        x.open("Apply", &[("function", "/")]);
        x.open("Apply", &[("function", "-")]);
        x.empty("FieldRef", &[("field", imputed.as_str())]);
        constant(x, t.mean);
        x.close();
        constant(x, t.scale);
        x.close();
        x.close();
    }
    let is_missing = |field: &str| {
        let field = field.to_owned();
        move |x: &mut Xml| {
            x.open("Apply", &[("function", "isMissing")]);
            x.empty("FieldRef", &[("field", field.as_str())]);
            x.close();
        }
    };
    for t in pre.numeric.iter().filter(|t| t.indicator) {
        if_then(x, &format!("{}=missing", t.name), &is_missing(&t.name));
    }
    // A 0/1 column from a lookup of the categorical value: `rows` map to their number, any
    // other value to `default`, a missing one to `missing`.
    let lookup = |x: &mut Xml,
                  name: &str,
                  field: &str,
                  rows: &[(&str, &str)],
                  default: &str,
                  missing: &str| {
        double_field(x, name);
        x.open(
            "MapValues",
            &[
                ("outputColumn", "out"),
                ("dataType", "double"),
                ("defaultValue", default),
                ("mapMissingTo", missing),
            ],
        );
        x.empty("FieldColumnPair", &[("field", field), ("column", "in")]);
        x.open("InlineTable", &[]);
        for (i, o) in rows {
            x.open("row", &[]);
            x.text("in", &[], i);
            x.text("out", &[], o);
            x.close();
        }
        x.close();
        x.close();
        x.close();
    };
    for c in &pre.categorical {
        for l in &c.levels {
            lookup(
                x,
                &format!("{}={l}", c.name),
                &c.name,
                &[(l.as_str(), "1")],
                "0",
                "0",
            );
        }
        let known: Vec<(&str, &str)> = c.levels.iter().map(|l| (l.as_str(), "0")).collect();
        let other_when_missing = if c.missing_column { "0" } else { "1" };
        lookup(
            x,
            &format!("{}=other", c.name),
            &c.name,
            &known,
            "1",
            other_when_missing,
        );
        if c.missing_column {
            if_then(x, &format!("{}=missing", c.name), &is_missing(&c.name));
        }
    }
}

/// The derived field of each kept feature of a binned model: `bin:x`, the number of the bin
/// the raw value falls in (a categorical string, for the indicators' `CategoricalPredictor`s),
/// or `woe:x`, the bin's WOE. A numeric feature's bins are a `Discretize` whose intervals are
/// the regular bins, closed on the left and open on the right, with each special code cut out
/// as a point interval `[s, s]` of its own bin; a missing value maps to the missing bin. A
/// categorical feature's are a `MapValues` of its levels, the `other` bin for any other text
/// and the missing bin for a missing value.
fn binned_transformations(x: &mut Xml, features: &[binned::Feature]) {
    for f in features {
        let value = |bin: usize| match &f.design {
            binned::Design::Woe { woe, .. } => num(woe[bin]),
            binned::Design::Indicators { .. } => bin.to_string(),
        };
        let (optype, data_type) = match f.design {
            binned::Design::Woe { .. } => ("continuous", "double"),
            binned::Design::Indicators { .. } => ("categorical", "string"),
        };
        let name = binned_name(f);
        x.open(
            "DerivedField",
            &[
                ("name", name.as_str()),
                ("optype", optype),
                ("dataType", data_type),
            ],
        );
        match &f.lookup {
            binned::Lookup::Numeric {
                cuts,
                specials,
                missing_bin,
                ..
            } => {
                let missing = value(*missing_bin);
                x.open(
                    "Discretize",
                    &[
                        ("field", f.name.as_str()),
                        ("mapMissingTo", missing.as_str()),
                        ("defaultValue", missing.as_str()),
                        ("dataType", data_type),
                    ],
                );
                for p in binned::pieces(cuts, specials) {
                    let closure = match (p.lo_closed, p.hi_closed) {
                        (true, true) => "closedClosed",
                        (true, false) => "closedOpen",
                        (false, true) => "openClosed",
                        (false, false) => "openOpen",
                    };
                    let lo = p.lo.map(num);
                    let hi = p.hi.map(num);
                    let mut attrs = vec![("closure", closure)];
                    if let Some(lo) = &lo {
                        attrs.push(("leftMargin", lo.as_str()));
                    }
                    if let Some(hi) = &hi {
                        attrs.push(("rightMargin", hi.as_str()));
                    }
                    x.open("DiscretizeBin", &[("binValue", value(p.bin).as_str())]);
                    x.empty("Interval", &attrs);
                    x.close();
                }
                x.close();
            }
            binned::Lookup::Categorical {
                levels,
                other_bin,
                missing_bin,
                ..
            } => {
                x.open(
                    "MapValues",
                    &[
                        ("outputColumn", "out"),
                        ("dataType", data_type),
                        ("defaultValue", value(*other_bin).as_str()),
                        ("mapMissingTo", value(*missing_bin).as_str()),
                    ],
                );
                x.empty(
                    "FieldColumnPair",
                    &[("field", f.name.as_str()), ("column", "in")],
                );
                x.open("InlineTable", &[]);
                for (level, bin) in levels {
                    x.open("row", &[]);
                    x.text("in", &[], level);
                    x.text("out", &[], &value(*bin));
                    x.close();
                }
                x.close();
                x.close();
            }
        }
        x.close();
    }
}

/// A binned model's predictors: the feature's coefficient on its WOE, or one
/// `CategoricalPredictor` per indicator bin (the reference and empty bins add nothing).
fn binned_predictors(x: &mut Xml, features: &[binned::Feature]) {
    for f in features {
        let name = binned_name(f);
        match &f.design {
            binned::Design::Woe { coefficient, .. } => x.empty(
                "NumericPredictor",
                &[("name", name.as_str()), ("coefficient", &num(*coefficient))],
            ),
            binned::Design::Indicators { columns } => {
                for (bin, c) in columns {
                    x.empty(
                        "CategoricalPredictor",
                        &[
                            ("name", name.as_str()),
                            ("value", &bin.to_string()),
                            ("coefficient", &num(*c)),
                        ],
                    );
                }
            }
        }
    }
}

/// The regression model; `predictors` writes the positive class's predictors.
fn regression(x: &mut Xml, model: &ModelFile, predictors: &mut dyn FnMut(&mut Xml)) {
    let label = &model.schema.label;
    let model_name = format!("fedrisk-{}", &model.content_hash);
    x.open(
        "RegressionModel",
        &[
            ("modelName", model_name.as_str()),
            ("functionName", "classification"),
            ("algorithmName", "logisticRegression"),
            ("normalizationMethod", "logit"),
        ],
    );
    x.open("MiningSchema", &[]);
    for f in &model.schema.features {
        x.empty("MiningField", &[("name", f.name.as_str())]);
    }
    x.empty(
        "MiningField",
        &[("name", label.name.as_str()), ("usageType", "target")],
    );
    x.close();
    x.open("Output", &[]);
    x.empty(
        "OutputField",
        &[
            ("name", "probability"),
            ("optype", "continuous"),
            ("dataType", "double"),
            ("feature", "probability"),
            ("value", label.positive.as_str()),
        ],
    );
    x.close();
    x.open(
        "RegressionTable",
        &[
            ("intercept", &num(model.intercept)),
            ("targetCategory", label.positive.as_str()),
        ],
    );
    predictors(x);
    x.close();
    x.empty(
        "RegressionTable",
        &[
            ("intercept", "0"),
            ("targetCategory", label.negative.as_str()),
        ],
    );
    x.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn every_design_column_has_a_derived_field_and_a_predictor() {
        let m = testing::model();
        let text = write(&m).unwrap();
        let names = derived_names(&m);
        assert_eq!(names.len(), m.coefficients.len());
        for (n, c) in names.iter().zip(&m.coefficients) {
            assert!(text.contains(&format!("<DerivedField name=\"{n}\"")), "{n}");
            assert!(
                text.contains(&format!(
                    "<NumericPredictor name=\"{n}\" coefficient=\"{c}\"/>"
                )),
                "{n}"
            );
        }
        assert!(text.contains("<Value value=\"96\" property=\"missing\"/>"));
        assert!(text.contains("mapMissingTo=\"250\""));
        // sector has a missing column, region has none: a missing region counts as other.
        assert!(text.contains("<DerivedField name=\"sector=missing\""));
        assert!(!text.contains("<DerivedField name=\"region=missing\""));
        // One lookup per level and one `other` column per categorical feature.
        assert_eq!(text.matches("<MapValues ").count(), 2 + 1 + 3 + 1);
    }

    #[test]
    fn a_binned_model_has_a_bin_lookup_per_kept_feature_and_a_predictor_per_column() {
        use fedrisk_models::Encoding;
        for encoding in [Encoding::Indicators, Encoding::Woe] {
            let m = crate::tests::binned_model(encoding);
            let w = m.preprocessing.woe.as_ref().unwrap();
            let text = write(&m).unwrap();
            let kept: Vec<_> = w.features.iter().filter(|f| f.kept).collect();
            let numeric = kept
                .iter()
                .filter(|f| matches!(f.rule, fedrisk_models::binning::BinRule::Numeric { .. }))
                .count();
            assert_eq!(text.matches("<Discretize ").count(), numeric);
            assert_eq!(text.matches("<MapValues ").count(), kept.len() - numeric);
            let predictors = match encoding {
                Encoding::Woe => text.matches("<NumericPredictor ").count(),
                Encoding::Indicators => text.matches("<CategoricalPredictor ").count(),
            };
            assert_eq!(predictors, m.coefficients.len(), "{encoding}");
            // Special codes have bins: they are not declared missing.
            assert!(text.contains("closure=\"closedClosed\" leftMargin=\"96\""));
            assert!(!text.contains("<Value value=\"96\" property=\"missing\"/>"));
        }
    }

    #[test]
    fn a_feature_named_like_a_derived_column_is_refused() {
        let mut m = testing::model();
        m.schema.features[2].name = "z:income".into();
        let err = write(&m).unwrap_err();
        assert!(
            matches!(&err, ExportError::NameClash { feature } if feature == "z:income"),
            "{err}"
        );
    }
}
