//! ONNX: one graph from the raw feature values to the probability of default.
//!
//! Inputs (batch dimension `N`):
//! - `numeric`: `double[N, numeric features]`, the schema's numeric features in schema order,
//!   `NaN` where a value is missing; special codes are given as they are (the graph treats
//!   them as missing, or, in a binned model, as the bins of their own they have);
//! - `categorical`: `string[N, categorical features]`, the schema's categorical features in
//!   schema order, the field's text with surrounding spaces removed (a missing token, e.g. an
//!   empty string or `NA`, means missing; any other unknown text is an unseen level).
//!
//! An input is absent when the schema has no feature of its kind. Output: `probability`,
//! `double[N, 1]`. The graph: `missing = IsNaN(x) or x == special`, `Where` imputes,
//! `(x - mean) / scale`, indicator columns gathered from `missing`; each categorical column
//! mapped to its slot by `ai.onnx.ml.LabelEncoder` (levels, missing tokens, default = `other`)
//! and one-hot by `Equal` with `0..slots`; `Concat`, `MatMul`, `Add`, `Sigmoid`. A binned
//! model (`binning = "woe"`) has the same inputs; its design is each kept feature's bin
//! (see [`binned_design`]) turned into the bin's WOE or its indicator columns. Everything
//! is computed in double precision. The feature names of each input are in the model's
//! metadata (`numeric_features`, `categorical_features`, JSON lists).

use fedrisk_models::ModelFile;
use fedrisk_models::schema::FeatureKind;
use prost::Message;

use crate::onnx_proto::*;
use crate::{ExportError, binned};

pub const NUMERIC_INPUT: &str = "numeric";
pub const CATEGORICAL_INPUT: &str = "categorical";
pub const PROBABILITY_OUTPUT: &str = "probability";
const IR_VERSION: i64 = 8;
const OPSET: i64 = 13;
const ML_DOMAIN: &str = "ai.onnx.ml";
const ML_OPSET: i64 = 2;

#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    next: usize,
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{hint}_{}", self.next)
    }

    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        domain: &str,
    ) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: format!("node_{out}"),
            op_type: op.into(),
            attribute: attrs,
            domain: domain.into(),
        });
        out
    }

    fn op(&mut self, op: &str, inputs: &[&str]) -> String {
        self.node(op, inputs, vec![], "")
    }

    fn doubles(&mut self, hint: &str, dims: Vec<i64>, values: Vec<f64>) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            dims,
            data_type: data_type::DOUBLE,
            name: name.clone(),
            double_data: values,
            ..Default::default()
        });
        name
    }

    fn int64s(&mut self, hint: &str, dims: Vec<i64>, values: Vec<i64>) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            dims,
            data_type: data_type::INT64,
            name: name.clone(),
            int64_data: values,
            ..Default::default()
        });
        name
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i,
        ..Default::default()
    }
}

fn ints_attr(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints,
        ..Default::default()
    }
}

fn strings_attr(name: &str, strings: Vec<String>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::STRINGS,
        strings: strings.into_iter().map(String::into_bytes).collect(),
        ..Default::default()
    }
}

fn tensor_info(name: &str, elem_type: i32, width: i64, doc: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        Dimension {
                            value: Some(DimensionValue::DimParam("N".into())),
                        },
                        Dimension {
                            value: Some(DimensionValue::DimValue(width)),
                        },
                    ],
                }),
            }),
        }),
        doc_string: doc.into(),
    }
}

pub fn write(model: &ModelFile) -> Result<Vec<u8>, ExportError> {
    let mut g = Graph::default();
    let (inputs, parts) = match &model.preprocessing.woe {
        Some(w) => binned_design(&mut g, model, &binned::features(model, w)?),
        None => design(&mut g, model),
    };
    if parts.is_empty() {
        return Err(ExportError::Unsupported {
            reason: "the model has no design column (its score is a constant)".into(),
        });
    }
    finish(model, g, inputs, parts)
}

fn numeric_input(width: usize) -> ValueInfoProto {
    tensor_info(
        NUMERIC_INPUT,
        data_type::DOUBLE,
        width as i64,
        "numeric features in schema order, NaN when missing",
    )
}

fn categorical_input(width: usize) -> ValueInfoProto {
    tensor_info(
        CATEGORICAL_INPUT,
        data_type::STRING,
        width as i64,
        "categorical features in schema order, trimmed text",
    )
}

/// Column `j` of `input`, as `[N, 1]`.
fn column(g: &mut Graph, input: &str, j: usize) -> String {
    let idx = g.int64s("column", vec![1], vec![j as i64]);
    g.node("Gather", &[input, &idx], vec![int_attr("axis", 1)], "")
}

/// The design of a binned model: per kept feature, the bin (`int64[N, 1]`) of its raw value,
/// then the bin's WOE (`Gather`) or its indicator columns (`Equal` with the indicator bins).
/// A numeric bin is the number of cuts at or below the value (`GreaterOrEqual`, `ReduceSum`),
/// replaced by a special code's bin where the value equals the code and by the missing bin
/// where it is NaN (`Where`); a categorical bin is a `LabelEncoder` lookup of the text (levels,
/// missing tokens, default = the `other` bin).
fn binned_design(
    g: &mut Graph,
    model: &ModelFile,
    features: &[binned::Feature],
) -> (Vec<ValueInfoProto>, Vec<String>) {
    let schema = &model.schema;
    let n_num = schema.numeric_features().count();
    let n_cat = schema.categorical_features().count();
    let mut inputs = Vec::new();
    if n_num > 0 {
        inputs.push(numeric_input(n_num));
    }
    if n_cat > 0 {
        inputs.push(categorical_input(n_cat));
    }
    let mut parts = Vec::new();
    for f in features {
        let bin = match &f.lookup {
            binned::Lookup::Numeric {
                column: j,
                cuts,
                specials,
                missing_bin,
            } => {
                let x = column(g, NUMERIC_INPUT, *j);
                let mut bin = if cuts.is_empty() {
                    // One regular bin: 0 for every row.
                    let nan = g.op("IsNaN", &[&x]);
                    let zero = g.int64s("zero", vec![1, 1], vec![0]);
                    g.op("Where", &[&nan, &zero, &zero])
                } else {
                    let c = g.doubles("cuts", vec![1, cuts.len() as i64], cuts.clone());
                    let at_or_below = g.op("GreaterOrEqual", &[&x, &c]);
                    let ones = g.node(
                        "Cast",
                        &[&at_or_below],
                        vec![int_attr("to", data_type::INT64 as i64)],
                        "",
                    );
                    let axes = g.int64s("axes", vec![1], vec![1]);
                    g.node(
                        "ReduceSum",
                        &[&ones, &axes],
                        vec![int_attr("keepdims", 1)],
                        "",
                    )
                };
                for (s, b) in specials {
                    let code = g.doubles("special", vec![1, 1], vec![*s]);
                    let is_code = g.op("Equal", &[&x, &code]);
                    let special_bin = g.int64s("special_bin", vec![1, 1], vec![*b as i64]);
                    bin = g.op("Where", &[&is_code, &special_bin, &bin]);
                }
                let nan = g.op("IsNaN", &[&x]);
                let m = g.int64s("missing_bin", vec![1, 1], vec![*missing_bin as i64]);
                g.op("Where", &[&nan, &m, &bin])
            }
            binned::Lookup::Categorical {
                column: j,
                levels,
                other_bin,
                missing_bin,
            } => {
                let x = column(g, CATEGORICAL_INPUT, *j);
                let mut keys: Vec<String> = levels.iter().map(|(l, _)| l.clone()).collect();
                let mut values: Vec<i64> = levels.iter().map(|(_, b)| *b as i64).collect();
                for t in &schema.missing_tokens {
                    if !keys.contains(t) {
                        keys.push(t.clone());
                        values.push(*missing_bin as i64);
                    }
                }
                g.node(
                    "LabelEncoder",
                    &[&x],
                    vec![
                        strings_attr("keys_strings", keys),
                        ints_attr("values_int64s", values),
                        int_attr("default_int64", *other_bin as i64),
                    ],
                    ML_DOMAIN,
                )
            }
        };
        match &f.design {
            binned::Design::Woe { woe, .. } => {
                let table = g.doubles("woe", vec![woe.len() as i64], woe.clone());
                parts.push(g.node("Gather", &[&table, &bin], vec![int_attr("axis", 0)], ""));
            }
            binned::Design::Indicators { columns } if !columns.is_empty() => {
                let own: Vec<i64> = columns.iter().map(|(b, _)| *b as i64).collect();
                let own = g.int64s("indicator_bins", vec![1, own.len() as i64], own);
                let hot = g.op("Equal", &[&bin, &own]);
                parts.push(g.node(
                    "Cast",
                    &[&hot],
                    vec![int_attr("to", data_type::DOUBLE as i64)],
                    "",
                ));
            }
            binned::Design::Indicators { .. } => {}
        }
    }
    (inputs, parts)
}

/// The design of a model without bins: imputed, standardised numeric columns, missing
/// indicators, one-hot levels.
fn design(g: &mut Graph, model: &ModelFile) -> (Vec<ValueInfoProto>, Vec<String>) {
    let pre = &model.preprocessing;
    let schema = &model.schema;
    let n_num = pre.numeric.len();
    let mut parts: Vec<String> = Vec::new();
    let mut inputs = Vec::new();

    if n_num > 0 {
        inputs.push(numeric_input(n_num));
        let specials: Vec<Vec<f64>> = schema
            .numeric_features()
            .map(|f| match &f.kind {
                FeatureKind::Numeric { special_values } => special_values.clone(),
                FeatureKind::Categorical { .. } => Vec::new(),
            })
            .collect();
        let mut missing = g.op("IsNaN", &[NUMERIC_INPUT]);
        // The k-th special code of every column in one row; NaN where a column has fewer
        // (NaN equals nothing).
        let rounds = specials.iter().map(Vec::len).max().unwrap_or(0);
        for k in 0..rounds {
            let row: Vec<f64> = specials
                .iter()
                .map(|s| s.get(k).copied().unwrap_or(f64::NAN))
                .collect();
            let c = g.doubles("special", vec![1, n_num as i64], row);
            let eq = g.op("Equal", &[NUMERIC_INPUT, &c]);
            missing = g.op("Or", &[&missing, &eq]);
        }
        let impute = g.doubles(
            "impute",
            vec![1, n_num as i64],
            pre.numeric.iter().map(|t| t.impute).collect(),
        );
        let mean = g.doubles(
            "mean",
            vec![1, n_num as i64],
            pre.numeric.iter().map(|t| t.mean).collect(),
        );
        let scale = g.doubles(
            "scale",
            vec![1, n_num as i64],
            pre.numeric.iter().map(|t| t.scale).collect(),
        );
        let imputed = g.op("Where", &[&missing, &impute, NUMERIC_INPUT]);
        let centred = g.op("Sub", &[&imputed, &mean]);
        parts.push(g.op("Div", &[&centred, &scale]));
        let indicators: Vec<i64> = pre
            .numeric
            .iter()
            .enumerate()
            .filter(|(_, t)| t.indicator)
            .map(|(j, _)| j as i64)
            .collect();
        if !indicators.is_empty() {
            let n = indicators.len() as i64;
            let idx = g.int64s("indicator_columns", vec![n], indicators);
            let picked = g.node("Gather", &[&missing, &idx], vec![int_attr("axis", 1)], "");
            parts.push(g.node(
                "Cast",
                &[&picked],
                vec![int_attr("to", data_type::DOUBLE as i64)],
                "",
            ));
        }
    }

    if !pre.categorical.is_empty() {
        inputs.push(categorical_input(pre.categorical.len()));
        for (j, c) in pre.categorical.iter().enumerate() {
            let other = c.levels.len() as i64;
            let missing_slot = if c.missing_column { other + 1 } else { other };
            let slots = other + 1 + i64::from(c.missing_column);
            let mut keys: Vec<String> = c.levels.clone();
            let mut values: Vec<i64> = (0..other).collect();
            for t in &schema.missing_tokens {
                keys.push(t.clone());
                values.push(missing_slot);
            }
            let column = column(g, CATEGORICAL_INPUT, j);
            let slot = g.node(
                "LabelEncoder",
                &[&column],
                vec![
                    strings_attr("keys_strings", keys),
                    ints_attr("values_int64s", values),
                    int_attr("default_int64", other),
                ],
                ML_DOMAIN,
            );
            let range = g.int64s("slots", vec![1, slots], (0..slots).collect());
            let hot = g.op("Equal", &[&slot, &range]);
            parts.push(g.node(
                "Cast",
                &[&hot],
                vec![int_attr("to", data_type::DOUBLE as i64)],
                "",
            ));
        }
    }

    (inputs, parts)
}

/// `Concat` of the design's parts, `MatMul` with the coefficients, `Add` the intercept,
/// `Sigmoid`; the model around the graph.
fn finish(
    model: &ModelFile,
    mut g: Graph,
    inputs: Vec<ValueInfoProto>,
    parts: Vec<String>,
) -> Result<Vec<u8>, ExportError> {
    let schema = &model.schema;
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let design = g.node("Concat", &refs, vec![int_attr("axis", 1)], "");
    let width = model.coefficients.len() as i64;
    let w = g.doubles("coefficients", vec![width, 1], model.coefficients.clone());
    let b = g.doubles("intercept", vec![1], vec![model.intercept]);
    let product = g.op("MatMul", &[&design, &w]);
    let logit = g.op("Add", &[&product, &b]);
    g.nodes.push(NodeProto {
        input: vec![logit],
        output: vec![PROBABILITY_OUTPUT.into()],
        name: "node_probability".into(),
        op_type: "Sigmoid".into(),
        ..Default::default()
    });

    let names = |numeric: bool| {
        let list: Vec<&str> = schema
            .features
            .iter()
            .filter(|f| f.is_numeric() == numeric)
            .map(|f| f.name.as_str())
            .collect();
        serde_json::to_string(&list)
    };
    let model_proto = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            },
            OperatorSetIdProto {
                domain: ML_DOMAIN.into(),
                version: ML_OPSET,
            },
        ],
        producer_name: "fedrisk".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: "fedrisk".into(),
        model_version: 1,
        doc_string: format!(
            "fedrisk logistic regression, model content hash {}: probability that `{}` is `{}`",
            model.content_hash, schema.label.name, schema.label.positive
        ),
        graph: Some(GraphProto {
            node: g.nodes,
            name: "fedrisk_pd".into(),
            initializer: g.initializers,
            doc_string: String::new(),
            input: inputs,
            output: vec![tensor_info(
                PROBABILITY_OUTPUT,
                data_type::DOUBLE,
                1,
                "probability of default",
            )],
        }),
        metadata_props: vec![
            StringStringEntryProto {
                key: "numeric_features".into(),
                value: names(true)?,
            },
            StringStringEntryProto {
                key: "categorical_features".into(),
                value: names(false)?,
            },
            StringStringEntryProto {
                key: "content_hash".into(),
                value: model.content_hash.clone(),
            },
        ],
    };
    Ok(model_proto.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn the_graph_reads_both_inputs_and_ends_in_the_probability() {
        let m = testing::model();
        let bytes = write(&m).unwrap();
        let back = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.ir_version, 8);
        let g = back.graph.unwrap();
        let inputs: Vec<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(inputs, [NUMERIC_INPUT, CATEGORICAL_INPUT]);
        assert_eq!(g.output[0].name, PROBABILITY_OUTPUT);
        assert_eq!(g.nodes_named("LabelEncoder"), 2);
        // Two special codes on income: two Equal/Or pairs before imputation.
        assert_eq!(g.nodes_named("Or"), 2);
        let w = g
            .initializer
            .iter()
            .find(|t| t.name.starts_with("coefficients"))
            .unwrap();
        assert_eq!(w.double_data, m.coefficients);
        // Every node's inputs are graph inputs, initializers or earlier outputs.
        assert_reads_only_known(&g, &inputs);
    }

    /// Every node's inputs are graph inputs, initializers or earlier outputs.
    fn assert_reads_only_known(g: &GraphProto, inputs: &[&str]) {
        let mut known: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        known.extend(g.initializer.iter().map(|t| t.name.clone()));
        for n in &g.node {
            for i in &n.input {
                assert!(known.contains(i), "{} reads unknown {i}", n.name);
            }
            known.extend(n.output.iter().cloned());
        }
    }

    #[test]
    fn a_binned_graph_has_the_same_inputs_and_reads_only_known_values() {
        use fedrisk_models::Encoding;
        for encoding in [Encoding::Indicators, Encoding::Woe] {
            let m = crate::tests::binned_model(encoding);
            let g = ModelProto::decode(write(&m).unwrap().as_slice())
                .unwrap()
                .graph
                .unwrap();
            let inputs: Vec<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
            assert_eq!(inputs, [NUMERIC_INPUT, CATEGORICAL_INPUT]);
            assert!(g.nodes_named("GreaterOrEqual") > 0);
            assert!(g.nodes_named("LabelEncoder") > 0);
            let w = g
                .initializer
                .iter()
                .find(|t| t.name.starts_with("coefficients"))
                .unwrap();
            assert_eq!(w.double_data, m.coefficients);
            assert_reads_only_known(&g, &inputs);
        }
    }

    #[test]
    fn a_numeric_only_model_has_one_input() {
        let mut m = testing::model();
        m.schema.features.retain(|f| f.is_numeric());
        m.preprocessing.categorical.clear();
        let width = m.preprocessing.width();
        m.coefficients.truncate(width);
        let g = ModelProto::decode(write(&m).unwrap().as_slice())
            .unwrap()
            .graph
            .unwrap();
        assert_eq!(g.input.len(), 1);
        assert_eq!(g.nodes_named("LabelEncoder"), 0);
    }

    impl GraphProto {
        fn nodes_named(&self, op: &str) -> usize {
            self.node.iter().filter(|n| n.op_type == op).count()
        }
    }
}
