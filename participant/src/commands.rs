//! The local commands a bank data team runs before (and without) joining a federation:
//! infer a schema, check a file, train a local-only model, score a file.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use fedrisk_models::local::{LocalOptions, train_local};
use fedrisk_models::model_file::Scorer;
use fedrisk_models::parquet_source::ParquetScoreWriter;
use fedrisk_models::pg::PgScoreWriter;
use fedrisk_models::schema::{FeatureKind, InferOptions, infer_source};
use fedrisk_models::{
    DataSource, LabelMode, ModelFile, PgRead, PgSpec, PreprocessOptions, Schema, load,
};
use fedrisk_participant::progress::Progress;

/// The schema given with --schema, or one inferred from the data itself.
pub fn schema_for(
    data: &DataSource,
    schema: Option<&Path>,
    label: &str,
    positive: &str,
) -> Result<Schema> {
    match schema {
        Some(p) => Ok(Schema::load(p)?),
        None => Ok(infer_source(data, &InferOptions::new(label, positive))?),
    }
}

/// `schema infer`'s settings.
pub struct InferArgs<'a> {
    pub data: &'a DataSource,
    pub label: &'a str,
    pub positive: &'a str,
    /// Columns to leave out.
    pub drop: &'a [String],
    /// `COLUMN=CODE[,CODE...]`: codes meaning "unknown" in a numeric column.
    pub special: &'a [String],
    /// Columns that are categorical even if their values look like numbers.
    pub categorical: &'a [String],
    /// Field values meaning "missing", besides the defaults.
    pub missing_tokens: &'a [String],
    /// Declares the special codes infer suggests (otherwise they are only printed).
    pub accept_suggested_specials: bool,
    pub out: &'a Path,
}

pub fn infer_schema(a: InferArgs<'_>) -> Result<()> {
    let mut opts = InferOptions::new(a.label, a.positive);
    opts.drop = a.drop.to_vec();
    opts.categorical = a
        .categorical
        .iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    for t in a.missing_tokens {
        opts.add_missing_token(t);
    }
    let (mut schema, suggestions) =
        fedrisk_models::schema::infer_source_with_suggestions(a.data, &opts)?;
    for s in &suggestions {
        let codes = s
            .codes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",");
        if a.accept_suggested_specials {
            println!(
                "declared special codes {}={codes}: {}",
                s.feature, s.evidence
            );
            schema
                .declare_special(&s.feature, &s.codes)
                .map_err(|m| anyhow::anyhow!("{m}"))?;
        } else {
            println!(
                "suggestion: {}={codes} look like special codes: {}; accept with --special {}={codes} or --accept-suggested-specials",
                s.feature, s.evidence, s.feature
            );
        }
    }
    for spec in a.special {
        let (col, codes) = spec
            .split_once('=')
            .with_context(|| format!("--special `{spec}`: expected COLUMN=CODE[,CODE...]"))?;
        let features = schema
            .features
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let feature = schema
            .features
            .iter_mut()
            .find(|f| f.name == col)
            .with_context(|| {
                format!("--special `{spec}`: no feature `{col}`; features are: {features}")
            })?;
        let values = codes
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<f64>()
                    .with_context(|| format!("--special `{spec}`: `{c}` is not a number"))
            })
            .collect::<Result<Vec<_>>>()?;
        match &mut feature.kind {
            FeatureKind::Numeric { special_values } => *special_values = values,
            FeatureKind::Categorical { .. } => bail!("--special `{spec}`: `{col}` is categorical"),
        }
        feature.missing = true;
    }
    schema.validate().map_err(|m| anyhow::anyhow!("{m}"))?;
    schema.save(a.out)?;
    let cats = schema.categorical_features().count();
    println!(
        "wrote {}: {} features ({} numeric, {cats} categorical), label `{}` (positive `{}`, negative `{}`), hash {}",
        a.out.display(),
        schema.features.len(),
        schema.features.len() - cats,
        schema.label.name,
        schema.label.positive,
        schema.label.negative,
        &schema.hash()[..16]
    );
    Ok(())
}

/// Validates the data and prints a summary; any problem is an error listing where it is.
pub fn check(data: &DataSource, schema: &Schema, id: Option<&str>) -> Result<()> {
    let loading = Progress::spinner(format!("loading {}", data.name().display()));
    let ds = fedrisk_models::data::load_with_id(data, schema, LabelMode::Required, id)?;
    drop(loading);
    let labels = ds.labels.as_deref().unwrap_or_default();
    let defaults = labels.iter().filter(|&&l| l == 1).count();
    println!(
        "{}: OK: {} rows, {} defaults ({:.2} %), schema hash {}",
        data.name().display(),
        ds.rows(),
        defaults,
        100.0 * defaults as f64 / ds.rows().max(1) as f64,
        &schema.hash()[..16]
    );
    for (j, f) in schema.numeric_features().enumerate() {
        let missing = ds.numeric.column(j).iter().filter(|v| v.is_nan()).count();
        if missing > 0 {
            println!(
                "  {}: {missing} missing ({:.1} %)",
                f.name,
                100.0 * missing as f64 / ds.rows() as f64
            );
        }
    }
    for (j, (f, _)) in schema.categorical_features().enumerate() {
        let other = ds
            .categorical
            .column(j)
            .iter()
            .filter(|&&c| c == fedrisk_models::data::CODE_OTHER)
            .count();
        if other > 0 {
            println!(
                "  {}: {other} values not among the schema's levels (scored as `other`)",
                f.name
            );
        }
    }
    Ok(())
}

pub struct TrainArgs<'a> {
    pub data: &'a DataSource,
    pub schema: Option<&'a Path>,
    pub label: &'a str,
    pub positive: &'a str,
    pub c: f64,
    pub missing_indicators: bool,
    pub out: &'a Path,
    /// `woe`: bin on these rows and train on the bins, encoded as `encoding` says.
    pub binning: fedrisk_rounds::Binning,
    pub encoding: fedrisk_models::Encoding,
}

pub fn train(a: TrainArgs<'_>) -> Result<()> {
    let schema = schema_for(a.data, a.schema, a.label, a.positive)?;
    let loading = Progress::spinner(format!("loading {}", a.data.name().display()));
    let ds = load(a.data, &schema, LabelMode::Required)?;
    drop(loading);
    let opts = LocalOptions {
        c: a.c,
        preprocess: PreprocessOptions {
            missing_indicators: a.missing_indicators,
        },
        binning: (a.binning == fedrisk_rounds::Binning::Woe).then(|| {
            fedrisk_models::BinningOptions {
                encoding: a.encoding,
                ..fedrisk_models::BinningOptions::default()
            }
        }),
        ..LocalOptions::default()
    };
    let fitting = Progress::spinner(format!("training on {} rows", ds.rows()));
    let (mut model, rows) = train_local(&schema, ds, &opts)
        .with_context(|| format!("training on {}", a.data.name().display()))?;
    drop(fitting);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    model.stamp(now, None);
    model.save(a.out)?;
    println!(
        "wrote {}: local-only model on {rows} rows, {} coefficients, {} Newton iterations, content hash {}",
        a.out.display(),
        model.coefficients.len(),
        model.provenance.rounds,
        &model.content_hash[..16]
    );
    Ok(())
}

fn woe_of(model: &ModelFile, path: &Path) -> Result<fedrisk_models::WoeBinning> {
    model.preprocessing.woe.clone().with_context(|| {
        format!(
            "{}: the model was not trained on WOE bins (train or run the job with binning woe)",
            path.display()
        )
    })
}

/// Prints a WOE model's feature report, and writes it as JSON to `json` if given.
pub fn bins(model_path: &Path, json: Option<&Path>) -> Result<()> {
    let model = ModelFile::load(model_path)?;
    let woe = woe_of(&model, model_path)?;
    print!("{}", woe.table());
    if let Some(p) = json {
        let text = serde_json::to_string_pretty(&woe)?;
        std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// Prints a WOE model's scorecard and score-to-PD table; writes JSON and CSV if asked.
pub fn scorecard(
    model_path: &Path,
    opts: &fedrisk_models::scorecard::ScorecardOptions,
    json: Option<&Path>,
    csv: Option<&Path>,
) -> Result<()> {
    let model = ModelFile::load(model_path)?;
    woe_of(&model, model_path)?;
    let card = fedrisk_models::scorecard::Scorecard::from_model(&model, opts)
        .with_context(|| format!("{}", model_path.display()))?;
    print!("{}", card.table());
    if let Some(p) = json {
        let text = serde_json::to_string_pretty(&card)?;
        std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = csv {
        std::fs::write(p, card.to_csv()).with_context(|| format!("writing {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// Prints a model in validators' terms: provenance, coefficients on the standardised and raw
/// scales with odds ratios, and with a labelled `data` file its AUC, KS, Gini, log loss, Brier
/// score and calibration by decile (`json`: one JSON object instead of tables).
pub fn describe(model: &Path, data: Option<&Path>, json: bool) -> Result<()> {
    use fedrisk_models::validation::{CoefficientTable, Performance};
    let m = ModelFile::load(model)?;
    let table = CoefficientTable::of(&m);
    let performance = match data {
        Some(d) => {
            let (ds, probs) = m.score_csv(d)?;
            let labels = ds.labels.as_deref().with_context(|| {
                format!(
                    "{}: no label column `{}`: performance needs labels",
                    d.display(),
                    m.schema.label.name
                )
            })?;
            Some(Performance::of(&probs, labels).with_context(|| format!("{}", d.display()))?)
        }
        None => None,
    };
    if json {
        let out = serde_json::json!({
            "content_hash": m.content_hash,
            "provenance": m.provenance,
            "coefficients": table,
            "performance": performance,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let p = &m.provenance;
    println!(
        "{}: {} model, {} rounds, {} participants, schema {}, content hash {}",
        model.display(),
        p.trainer,
        p.rounds,
        p.participants,
        &p.schema_hash[..p.schema_hash.len().min(16)],
        m.content_hash
    );
    let width = table
        .rows
        .iter()
        .map(|r| r.column.len())
        .max()
        .unwrap_or(6)
        .max(9);
    println!(
        "{:<width$} {:>13} {:>13} {:>11} {:>11}",
        "column", "standardised", "raw scale", "odds ratio", "OR per sd"
    );
    println!(
        "{:<width$} {:>13.6} {:>13.6}",
        "intercept", table.intercept_standardised, table.intercept_raw
    );
    for r in &table.rows {
        let per_sd = if r.scale.is_some() {
            format!("{:.4}", r.odds_ratio_per_sd)
        } else {
            "-".into()
        };
        println!(
            "{:<width$} {:>13.6} {:>13.6e} {:>11.4} {:>11}",
            r.column, r.standardised, r.raw, r.odds_ratio, per_sd
        );
    }
    if let (Some(perf), Some(d)) = (&performance, data) {
        let e = &perf.evaluation;
        println!(
            "\n{}: {} rows, default rate {:.4}: AUC {:.4}, KS {:.4}, Gini {:.4}, log loss {:.4}, Brier {:.4}",
            d.display(),
            e.rows,
            e.default_rate,
            e.auc,
            e.ks,
            e.gini,
            e.log_loss,
            e.brier
        );
        println!("calibration by decile of predicted PD:");
        println!(
            "{:>6} {:>7} {:>11} {:>11} {:>13} {:>13}",
            "decile", "rows", "min PD", "max PD", "mean PD", "default rate"
        );
        for (k, b) in perf.calibration_by_decile.iter().enumerate() {
            println!(
                "{:>6} {:>7} {:>11.5} {:>11.5} {:>13.5} {:>13.5}",
                k + 1,
                b.rows,
                b.min_score,
                b.max_score,
                b.mean_predicted,
                b.observed_rate
            );
        }
    }
    Ok(())
}

/// Checks a model file's content hash and the coordinator's signature of it with the public
/// key of `cert` (the coordinator's certificate).
pub fn verify(model: &Path, cert: &Path) -> Result<()> {
    let m = ModelFile::load(model)?;
    check_signature(&m, model, cert)?;
    let p = &m.provenance;
    println!(
        "{}: OK: content hash {} signed by {}; {}, {} rounds, {} participants, schema {}, made {} by {}",
        model.display(),
        m.content_hash,
        cert.display(),
        p.trainer,
        p.rounds,
        p.participants,
        p.schema_hash,
        p.created_at_unix_ms
            .map_or("at an unrecorded time".into(), fedrisk_export::report::utc),
        p.software.as_deref().unwrap_or("?")
    );
    Ok(())
}

/// Writes a model file in another format (`json`, `pmml`, `onnx`), after checking its
/// content hash; the file is written whole or not at all.
pub fn export(model: &Path, format: &str, out: &Path) -> Result<()> {
    let format: fedrisk_export::Format = format.parse()?;
    let m = ModelFile::load(model)?;
    let bytes = fedrisk_export::export(&m, format)
        .with_context(|| format!("exporting {} as {format}", model.display()))?;
    write_whole(out, &bytes)?;
    println!(
        "wrote {}: {format}, {} bytes, model content hash {}",
        out.display(),
        bytes.len(),
        m.content_hash
    );
    Ok(())
}

/// Checks the coordinator's signature of a model's content hash with `cert`'s key.
pub fn check_signature(m: &ModelFile, model: &Path, cert: &Path) -> Result<()> {
    let sig = m.signature.as_ref().with_context(|| {
        format!(
            "{}: not signed (a local model, or one made before signatures)",
            model.display()
        )
    })?;
    let verifier = fedrisk_identity::signer::Verifier::from_cert_file(cert)?;
    if hex::encode(verifier.public_key()) != sig.public_key {
        bail!(
            "{}: signed by another key than the one in {}",
            model.display(),
            cert.display()
        );
    }
    let hash = hex::decode(&m.content_hash)?;
    let value = hex::decode(&sig.value)
        .with_context(|| format!("{}: signature.value is not hex", model.display()))?;
    if sig.algorithm != "ecdsa-p256-sha256" || !verifier.verify(&hash, &value) {
        bail!(
            "{}: the signature does not verify with {}",
            model.display(),
            cert.display()
        );
    }
    Ok(())
}

/// Writes the model report (`OUT/report.html`): a self-contained HTML page with the
/// federation's evaluation plots, coefficients or scorecard, configuration and provenance.
pub fn report(model: &Path, out: &Path, cert: Option<&Path>) -> Result<()> {
    let m = ModelFile::load(model)?;
    let signature_check = match cert {
        Some(c) => {
            check_signature(&m, model, c)?;
            Some(format!("verified with {}", c.display()))
        }
        None => None,
    };
    let html = fedrisk_export::report::render(&fedrisk_export::report::ReportInput {
        model: &m,
        source: format!("model file {}", model.display()),
        signature_check,
        job: None,
        audit: None,
    });
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("report.html");
    write_whole(&path, html.as_bytes())?;
    println!(
        "wrote {} (model content hash {}{})",
        path.display(),
        m.content_hash,
        if m.evaluation.is_some() {
            ""
        } else {
            "; the model carries no federated evaluation, so the report has no curves"
        }
    );
    Ok(())
}

/// This institution's population stability against the federation: the model file carries
/// the federation's summed score histogram; `data` is scored here into the same bins and the
/// PSI is computed here. Nothing is sent anywhere.
pub fn psi(model: &Path, data: &DataSource, json: bool) -> Result<()> {
    use fedrisk_models::validation::psi_of_histograms;
    let m = ModelFile::load(model)?;
    let federation = &m
        .evaluation
        .as_ref()
        .with_context(|| {
            format!(
                "{}: the model carries no federated score distribution (a local model, one \
                 whose evaluation did not run, or a version before its job's last, which is \
                 evaluated after it is signed): PSI needs one; use the job's last version",
                model.display()
            )
        })?
        .histogram;
    let mut local = fedrisk_models::metrics::ScoreHistogram::with_range(
        federation.bins(),
        federation.logit_min,
        federation.logit_max,
    );
    let mut scorer = m.scorer_for(data, None)?;
    while let Some(chunk) = scorer.next_chunk()? {
        for &p in &chunk.probabilities {
            // Labels are not needed: PSI compares the score distributions, labels pooled.
            local.add(p, 0);
        }
    }
    scorer.finish()?;
    let r = psi_of_histograms(federation, &local, 10).with_context(|| {
        format!(
            "PSI of {} against {}",
            data.name().display(),
            model.display()
        )
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "PSI of {} ({} rows) against the federation's evaluation scores ({} rows) under model {}",
        data.name().display(),
        r.actual_rows,
        r.expected_rows,
        &m.content_hash[..16]
    );
    println!(
        "  {:>9} {:>9}  {:>10} {:>10}  {:>9}",
        "PD from", "PD to", "federation", "here", "PSI part"
    );
    for g in &r.groups {
        println!(
            "  {:>8.4}% {:>8.4}%  {:>9.2}% {:>9.2}%  {:>9.5}",
            g.pd_from * 100.0,
            g.pd_to * 100.0,
            g.expected_share * 100.0,
            g.actual_share * 100.0,
            g.contribution
        );
    }
    println!("PSI {:.4}: {}", r.psi, r.band.describe());
    Ok(())
}

/// Writes a file through a temporary file beside it, renamed over it when complete.
pub fn write_whole(out: &Path, bytes: &[u8]) -> Result<()> {
    let name = out
        .file_name()
        .with_context(|| format!("--out {}: not a file name", out.display()))?;
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(name);
    partial_name.push(".partial");
    let partial = out.with_file_name(partial_name);
    std::fs::write(&partial, bytes).with_context(|| format!("writing {}", partial.display()))?;
    if let Err(e) = std::fs::rename(&partial, out) {
        let _ = std::fs::remove_file(&partial);
        bail!("renaming {} to {}: {e}", partial.display(), out.display());
    }
    Ok(())
}

/// Writes `row,probability` (row = 1-based data row, not counting the header), or
/// `ID,probability` with `id` naming a column of the data to carry through, to a CSV file,
/// a Parquet file or a new PostgreSQL table. Rows are read, scored and written in blocks; a
/// file is written beside `out` under a temporary name and renamed only when the whole
/// source scored, a table is created and filled in one transaction committed only then, so a
/// data problem leaves no partial output.
pub fn score(
    model: &Path,
    data: &DataSource,
    id: Option<&str>,
    out: &str,
    out_table: Option<&str>,
    src: &crate::source::SourceArgs,
) -> Result<()> {
    let model = ModelFile::load(model)?;
    let mut scorer = model.scorer_for(data, id)?;
    let (mut sink, out_name) = if DataSource::is_postgres_url(out) {
        let table = out_table.context("a postgres:// --out needs --out-table TABLE")?;
        let spec = PgSpec {
            url: out.to_owned(),
            password: crate::source::password(src.password_file.as_ref())?,
            root_cert: src.pg_ca.clone(),
            read: PgRead::Table(table.to_owned()),
        };
        let name = fedrisk_models::source::pg_name(&spec);
        (Sink::Pg(PgScoreWriter::create(&spec, table, id)?), name)
    } else {
        if out_table.is_some() {
            bail!("--out-table goes with a postgres:// --out");
        }
        let out = Path::new(out);
        let name = out
            .file_name()
            .with_context(|| format!("--out {}: not a file name", out.display()))?;
        let mut partial_name = std::ffi::OsString::from(".");
        partial_name.push(name);
        partial_name.push(".partial");
        let partial = out.with_file_name(partial_name);
        let sink = match DataSource::file(out) {
            DataSource::Parquet(_) => Sink::Parquet(
                Box::new(ParquetScoreWriter::create(&partial, id)?),
                partial,
                out.to_owned(),
            ),
            _ => {
                let file = std::fs::File::create(&partial)
                    .with_context(|| format!("creating {}", partial.display()))?;
                let mut w = std::io::BufWriter::new(file);
                writeln!(w, "{},probability", csv_field(id.unwrap_or("row")))
                    .with_context(|| format!("writing {}", partial.display()))?;
                Sink::Csv(w, partial, out.to_owned())
            }
        };
        (sink, out.display().to_string())
    };
    let written = write_scores(&mut scorer, &mut sink).and_then(|labelled| {
        let rows = scorer.finish()?;
        Ok((rows, labelled))
    });
    let (rows, labelled) = match written {
        Ok(w) => {
            sink.finish()?;
            w
        }
        Err(e) => {
            sink.abandon();
            return Err(e);
        }
    };
    let mut line = format!("wrote {out_name}: {rows} scores");
    if let Some(figures) = labelled.as_ref().and_then(|r| r.finish()) {
        let e = &figures.evaluation;
        line += &format!(
            " (labels present: AUC {:.4}, KS {:.4}, Gini {:.4}, log loss {:.4}, Brier {:.4}; \
             AUC and KS from {} score bins, within {:.1e} and {:.1e} of the exact values)",
            e.auc,
            e.ks,
            e.gini,
            e.log_loss,
            e.brier,
            fedrisk_models::metrics::RUNNING_BINS,
            figures.auc_error_bound,
            figures.ks_error_bound
        );
    }
    println!("{line}");
    Ok(())
}

/// Where scores go: a temporary file renamed at the end, or a table in a transaction.
enum Sink {
    Csv(
        std::io::BufWriter<std::fs::File>,
        std::path::PathBuf,
        std::path::PathBuf,
    ),
    Parquet(
        Box<ParquetScoreWriter>,
        std::path::PathBuf,
        std::path::PathBuf,
    ),
    Pg(PgScoreWriter),
}

impl Sink {
    fn write(&mut self, chunk: &fedrisk_models::model_file::ScoredChunk) -> Result<()> {
        match self {
            Sink::Csv(w, partial, _) => {
                let writing =
                    |e: std::io::Error| anyhow::anyhow!("writing {}: {e}", partial.display());
                for (k, p) in chunk.probabilities.iter().enumerate() {
                    match &chunk.ids {
                        Some(ids) => write!(w, "{},{p:.10}", csv_field(&ids[k])),
                        None => write!(w, "{},{p:.10}", chunk.first_row + k),
                    }
                    .map_err(writing)?;
                    w.write_all(b"\n").map_err(writing)?;
                }
            }
            Sink::Parquet(w, _, _) => {
                w.write(chunk.first_row, chunk.ids.as_deref(), &chunk.probabilities)?
            }
            Sink::Pg(w) => w.write(chunk.first_row, chunk.ids.as_deref(), &chunk.probabilities)?,
        }
        Ok(())
    }

    /// Puts the scores in place: renames the file, or commits the table.
    fn finish(self) -> Result<()> {
        let (partial, out) = match self {
            Sink::Csv(mut w, partial, out) => {
                w.flush()
                    .with_context(|| format!("writing {}", partial.display()))?;
                (partial, out)
            }
            Sink::Parquet(w, partial, out) => {
                w.finish()?;
                (partial, out)
            }
            Sink::Pg(w) => {
                w.finish()?;
                return Ok(());
            }
        };
        std::fs::rename(&partial, &out)
            .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))
    }

    /// Leaves nothing behind: removes the temporary file, or rolls the table back.
    fn abandon(self) {
        match self {
            Sink::Csv(w, partial, _) => {
                drop(w);
                let _ = std::fs::remove_file(&partial);
            }
            Sink::Parquet(w, partial, _) => {
                drop(w);
                let _ = std::fs::remove_file(&partial);
            }
            Sink::Pg(w) => drop(w),
        }
    }
}

/// Writes every block of scores as it comes; with labels in the data, the summary figures
/// are accumulated in memory that does not grow with the rows. Only one block is held.
fn write_scores(
    scorer: &mut Scorer<'_>,
    sink: &mut Sink,
) -> Result<Option<fedrisk_models::metrics::RunningEvaluation>> {
    let mut labelled = scorer
        .has_label()
        .then(fedrisk_models::metrics::RunningEvaluation::new);
    let progress = Progress::rows("scoring");
    while let Some(chunk) = scorer.next_chunk()? {
        sink.write(&chunk)?;
        progress.add(chunk.probabilities.len());
        if let (Some(running), Some(l)) = (&mut labelled, &chunk.labels) {
            running.add(&chunk.probabilities, l);
        }
    }
    Ok(labelled)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

/// `audit-prove`: see [`fedrisk_participant::prove`].
pub fn audit_prove(
    audit: &Path,
    model: &Path,
    cert: &Path,
    coordinator_cert: Option<&Path>,
) -> Result<()> {
    let m = ModelFile::load(model)?;
    let named = m.provenance.audit_record.as_ref().with_context(|| {
        format!(
            "{}: names no audit record (a local model, or one made before provenance)",
            model.display()
        )
    })?;
    let text =
        std::fs::read_to_string(audit).with_context(|| format!("reading {}", audit.display()))?;
    let key = fedrisk_identity::signer::Verifier::from_cert_file(cert)?;
    let key: [u8; 32] = key.public_key().try_into().map_err(|_| {
        anyhow::anyhow!("{}: not an Ed25519 institution certificate", cert.display())
    })?;
    let me = ed25519_dalek::VerifyingKey::from_bytes(&key)
        .with_context(|| format!("{}: not an Ed25519 public key", cert.display()))?;
    let coordinator = match coordinator_cert {
        Some(c) => Some(fedrisk_identity::signer::Verifier::from_cert_file(c)?),
        None => None,
    };
    let proof = fedrisk_participant::prove::prove(&text, named, &me, coordinator.as_ref())
        .with_context(|| format!("{}", audit.display()))?;
    println!(
        "{}: model of job {} round {} (audit record {}): records 1 to {} chained{}",
        model.display(),
        proof.job,
        proof.round,
        proof.model_record,
        proof.model_record,
        if proof.signatures_checked {
            " and signed by the coordinator"
        } else {
            " (coordinator signatures not checked: give --coordinator-cert)"
        }
    );
    for s in &proof.sessions {
        println!(
            "round {} {}: survivor set of {} signed by this institution (participant {}), audit record {}",
            s.round, s.kind, s.survivors, s.participant, s.seq
        );
    }
    let mut rounds: Vec<u32> = proof.sessions.iter().map(|s| s.round).collect();
    rounds.dedup();
    println!(
        "the model includes rounds {} signed by this institution",
        rounds
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
