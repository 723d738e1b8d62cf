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

use fedrisk_models::ModelFile;
use fedrisk_models::schema::FeatureKind;

use crate::ExportError;
use crate::xml::Xml;

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

pub fn write(model: &ModelFile) -> Result<String, ExportError> {
    let names = derived_names(model);
    for f in &model.schema.features {
        if names.contains(&f.name) || f.name.starts_with("imputed:") {
            return Err(ExportError::NameClash {
                feature: f.name.clone(),
            });
        }
    }
    let label = &model.schema.label;
    let pre = &model.preprocessing;
    let mut x = Xml::new();
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
                for v in special_values {
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

    x.open("TransformationDictionary", &[]);
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
    for (t, name) in pre.numeric.iter().zip(&names) {
        // The imputed value in a field of its own: declared double, so a consumer reads the
        // replacement (an attribute's text) as a number.
        let imputed = format!("imputed:{}", t.name);
        double_field(&mut x, &imputed);
        if t.impute.is_finite() {
            x.empty(
                "FieldRef",
                &[("field", t.name.as_str()), ("mapMissingTo", &num(t.impute))],
            );
        } else {
            x.empty("FieldRef", &[("field", t.name.as_str())]);
        }
        x.close();
        double_field(&mut x, name);
        x.open("Apply", &[("function", "/")]);
        x.open("Apply", &[("function", "-")]);
        x.empty("FieldRef", &[("field", imputed.as_str())]);
        constant(&mut x, t.mean);
        x.close();
        constant(&mut x, t.scale);
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
        if_then(&mut x, &format!("{}=missing", t.name), &is_missing(&t.name));
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
                &mut x,
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
            &mut x,
            &format!("{}=other", c.name),
            &c.name,
            &known,
            "1",
            other_when_missing,
        );
        if c.missing_column {
            if_then(&mut x, &format!("{}=missing", c.name), &is_missing(&c.name));
        }
    }
    x.close();

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
    for (name, c) in names.iter().zip(&model.coefficients) {
        x.empty(
            "NumericPredictor",
            &[("name", name.as_str()), ("coefficient", &num(*c))],
        );
    }
    x.close();
    x.empty(
        "RegressionTable",
        &[
            ("intercept", "0"),
            ("targetCategory", label.negative.as_str()),
        ],
    );
    x.close();
    Ok(x.finish())
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
