//! The model report: one self-contained HTML file (inline CSS and SVG, no script, nothing
//! fetched) that shows a model version as a validator signs it off: the federation's ROC and
//! KS curves, AUC/KS/log loss by round, calibration by decile and the score distribution by
//! label (all from the securely summed per-label score histogram the model file carries),
//! coefficients on the standardised and raw scales with odds ratios or the scorecard's points
//! per bin, the training configuration, the participant count, the model hash, its signature,
//! the audit record that produced it and the audit chain's head.

use std::fmt::Write as _;

use fedrisk_models::ModelFile;
use fedrisk_models::metrics::ScoreHistogram;
use fedrisk_models::model_file::RoundFigures;
use fedrisk_models::scorecard::{Scorecard, ScorecardOptions};
use fedrisk_models::validation::CoefficientTable;

use crate::svg::{Axis, Plot, esc};

/// Colours of the plots' marks; each is used by one plot only, so a screenshot shows which
/// plot was drawn (tests/it/report.rs looks for them).
pub mod colours {
    pub const ROC: &str = "#1f77b4";
    pub const KS_BAD: &str = "#d62728";
    pub const KS_GOOD: &str = "#2ca02c";
    pub const ROUND_AUC: &str = "#8c564b";
    pub const ROUND_KS: &str = "#e377c2";
    pub const ROUND_LOG_LOSS: &str = "#9467bd";
    pub const CALIBRATION: &str = "#ff7f0e";
    pub const DIST_GOOD: &str = "#17becf";
    pub const DIST_BAD: &str = "#bcbd22";
    pub const REFERENCE: &str = "#999999";
}

/// A job as the coordinator's database records it.
#[derive(Debug, Clone)]
pub struct JobView {
    pub id: u64,
    pub name: String,
    pub state: String,
    pub message: String,
    /// The model version's round.
    pub round: u32,
    /// Every completed round (0: statistics).
    pub rounds: Vec<RoundView>,
}

/// One completed round as the database records it.
#[derive(Debug, Clone)]
pub struct RoundView {
    pub round: u32,
    pub survivors: Option<u32>,
    pub seconds: Option<f64>,
    pub auc: Option<f64>,
    pub ks: Option<f64>,
    pub log_loss: Option<f64>,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// The audit chain as read from the coordinator's database.
#[derive(Debug, Clone)]
pub struct AuditView {
    pub records: u64,
    pub head_seq: u64,
    pub head_hash: String,
    /// The outcome of checking the chain (numbering, links, hashes, signatures), or why it was
    /// not checked.
    pub check: String,
}

/// What the report is made of.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    pub model: &'a ModelFile,
    /// Where the model came from (a file, or a job of a coordinator's database).
    pub source: String,
    /// The outcome of checking the coordinator's signature, when it was checked.
    pub signature_check: Option<String>,
    pub job: Option<JobView>,
    pub audit: Option<AuditView>,
}

const CSS: &str = "
body{font-family:'DejaVu Sans',Arial,Helvetica,sans-serif;margin:24px;color:#222;background:#fff;max-width:1180px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ccc;padding-bottom:3px}
h3{font-size:14px;margin:14px 0 4px}
p,li{font-size:13px;line-height:1.45}
table{border-collapse:collapse;font-size:12px;margin:4px 0 10px}
th,td{border:1px solid #d4d4d4;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}
code{font-family:'DejaVu Sans Mono',monospace;font-size:12px;word-break:break-all}
.plots{display:flex;flex-wrap:wrap;gap:14px}
.plot{border:1px solid #e0e0e0;background:#fff}
.plot .title{font-size:14px;font-weight:bold;fill:#222}
.plot .tick{font-size:11px;fill:#333}
.plot .axis-title{font-size:12px;fill:#222}
.plot .legend,.plot .note{font-size:11px;fill:#222}
.plot .grid{stroke:#ececec;stroke-width:1}
.plot .axis{stroke:#444;stroke-width:1}
.plot .frame{fill:none;stroke:#444;stroke-width:1}
.muted{color:#666}
";

fn opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".to_owned(),
    }
}

/// `YYYY-MM-DD hh:mm:ss UTC` of Unix milliseconds (proleptic Gregorian calendar).
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (the era algorithm of H. Hinnant's date notes).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The report as one HTML document.
pub fn render(input: &ReportInput<'_>) -> String {
    let m = input.model;
    let p = &m.provenance;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <title>fedrisk model report {}</title><style>{CSS}</style></head><body>\n",
        esc(&m.content_hash[..m.content_hash.len().min(12)])
    );
    let _ = writeln!(h, "<h1>fedrisk model report</h1>");
    let _ = writeln!(
        h,
        "<p class=\"muted\">{} &middot; {} model &middot; generated from {}</p>",
        esc(p.software.as_deref().unwrap_or("fedrisk")),
        esc(&p.trainer),
        esc(&input.source)
    );

    identity_section(&mut h, input);
    participants_section(&mut h, input);
    match &m.evaluation {
        Some(e) => {
            let _ = writeln!(
                h,
                "<h2>Federated evaluation</h2><p>From the per-label score histogram summed over the \
                 federation's evaluation rows by secure aggregation ({} bins on the logit scale); \
                 no institution's histogram was seen.</p>",
                e.histogram.bins()
            );
            let gini = e.auc.map(|a| 2.0 * a - 1.0);
            let _ = writeln!(
                h,
                "<table><tr><th class=\"l\">rows</th><th>AUC</th><th>AUC bound (&plusmn;)</th>\
                 <th>Gini</th><th>KS</th><th>log loss</th></tr><tr><td class=\"l\">{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
                e.rows,
                opt(e.auc, 4),
                opt(e.auc_error_bound, 4),
                opt(gini, 4),
                opt(e.ks, 4),
                opt(e.log_loss, 4)
            );
            h.push_str("<div class=\"plots\">\n");
            h.push_str(&roc_plot(&e.histogram));
            h.push_str(&ks_plot(&e.histogram));
            h.push_str("</div>\n");
            let rounds = by_round(input);
            let _ = writeln!(h, "<h2>AUC, KS and log loss by round</h2>");
            if rounds.is_empty() {
                h.push_str("<p>No round has evaluation figures.</p>");
            } else {
                h.push_str("<div class=\"plots\">\n");
                h.push_str(&rounds_plots(&rounds));
                h.push_str("</div>\n");
            }
            let _ = writeln!(h, "<h2>Calibration by decile and score distribution</h2>");
            let deciles = calibration_deciles(&e.histogram, 10);
            h.push_str("<div class=\"plots\">\n");
            h.push_str(&calibration_plot(&deciles));
            h.push_str(&distribution_plot(&e.histogram));
            h.push_str("</div>\n");
            h.push_str(
                "<p class=\"muted\">Deciles are cut at score-bin edges so each holds about a tenth of \
                 the evaluation rows; a decile's mean predicted PD takes each bin's rows at the bin's \
                 middle (the histogram has no finer detail).</p>",
            );
            h.push_str(
                "<table><tr><th>decile</th><th>rows</th><th>PD from</th><th>PD to</th>\
                 <th>mean predicted PD</th><th>observed default rate</th></tr>",
            );
            for (i, d) in deciles.iter().enumerate() {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td></tr>",
                    i + 1,
                    d.rows,
                    d.pd_from,
                    d.pd_to,
                    d.predicted,
                    d.observed
                );
            }
            h.push_str("</table>\n");
        }
        None => {
            h.push_str(
                "<h2>Federated evaluation</h2><p><strong>This model file carries no federated \
                 evaluation</strong> (a locally trained model, a file written before evaluations \
                 were kept, a round whose evaluation was skipped, or a version before its job's \
                 last: those are evaluated in the next round's session, after the version was \
                 signed, and their AUC, KS and log loss are in the figures by round below, when \
                 the report comes from the coordinator): no ROC, KS, calibration or score \
                 distribution can be drawn from it.</p>",
            );
            let rounds = by_round(input);
            if !rounds.is_empty() {
                h.push_str("<h2>AUC, KS and log loss by round</h2><div class=\"plots\">");
                h.push_str(&rounds_plots(&rounds));
                h.push_str("</div>");
            }
        }
    }
    model_section(&mut h, m);
    configuration_section(&mut h, m);
    if let Some(job) = &input.job {
        job_section(&mut h, job);
    }
    h.push_str("</body></html>\n");
    h
}

fn identity_section(h: &mut String, input: &ReportInput<'_>) {
    let m = input.model;
    let p = &m.provenance;
    h.push_str("<h2>Model identity and provenance</h2><table>");
    let mut row = |k: &str, v: String| {
        let _ = write!(
            h,
            "<tr><th class=\"l\">{k}</th><td class=\"l\">{v}</td></tr>"
        );
    };
    row(
        "content hash (SHA-256)",
        format!("<code>{}</code>", esc(&m.content_hash)),
    );
    row(
        "coordinator's signature",
        match (&m.signature, &input.signature_check) {
            (Some(s), Some(check)) => format!(
                "{} by key <code>{}&hellip;</code>: {}",
                esc(&s.algorithm),
                esc(&s.public_key[..s.public_key.len().min(24)]),
                esc(check)
            ),
            (Some(s), None) => format!(
                "{} by key <code>{}&hellip;</code> (not checked here: run <code>fedrisk-participant verify</code> \
                 or give <code>--cert</code>)",
                esc(&s.algorithm),
                esc(&s.public_key[..s.public_key.len().min(24)])
            ),
            (None, _) => "none (not a coordinator's model file)".to_owned(),
        },
    );
    row(
        "audit record that produced it",
        match &p.audit_record {
            Some(a) => format!(
                "record {} ({}), hash <code>{}</code>",
                a.seq,
                esc(&a.kind),
                esc(&a.hash)
            ),
            None => "none recorded in the model file".to_owned(),
        },
    );
    row(
        "audit chain head",
        match &input.audit {
            Some(a) => format!(
                "record {} of {}, hash <code>{}</code>; {}",
                a.head_seq,
                a.records,
                esc(&a.head_hash),
                esc(&a.check)
            ),
            None => "not known from a model file alone (run the report on the coordinator's \
                     database with <code>--database --job</code>)"
                .to_owned(),
        },
    );
    row("trainer", esc(&p.trainer));
    row("rounds", p.rounds.to_string());
    row(
        "created",
        p.created_at_unix_ms
            .map_or("-".to_owned(), |ms| format!("{} ({ms} Unix ms)", utc(ms))),
    );
    row("software", esc(p.software.as_deref().unwrap_or("-")));
    row(
        "schema hash",
        format!("<code>{}</code>", esc(&p.schema_hash)),
    );
    if !p.notes.is_empty() {
        row("notes", esc(&p.notes.join("; ")));
    }
    h.push_str("</table>\n");
}

fn participants_section(h: &mut String, input: &ReportInput<'_>) {
    let p = &input.model.provenance;
    let _ = writeln!(
        h,
        "<h2>Participants</h2><p>{} institution(s) contributed to the sum this version was made \
         from. Names and row counts are not shown: no institution has agreed to be named in \
         reports (fedrisk has no such consent yet), and the coordinator never learns one \
         institution's row count.</p>",
        p.participants
    );
}

fn by_round(input: &ReportInput<'_>) -> Vec<RoundFigures> {
    if let Some(job) = &input.job {
        let v: Vec<RoundFigures> = job
            .rounds
            .iter()
            .filter(|r| r.round > 0 && r.round <= job.round)
            .map(|r| RoundFigures {
                round: r.round,
                auc: r.auc,
                ks: r.ks,
                log_loss: r.log_loss,
            })
            .collect();
        if !v.is_empty() {
            return v;
        }
    }
    input
        .model
        .evaluation
        .as_ref()
        .map(|e| e.by_round.clone())
        .unwrap_or_default()
}

/// The populated part of a histogram's logit range, one bin of margin each side.
fn populated(hist: &ScoreHistogram) -> (usize, usize) {
    let n = hist.bins();
    let used = |i: &usize| hist.positives[*i] + hist.negatives[*i] > 0;
    let first = (0..n).find(used).unwrap_or(0);
    let last = (0..n).rev().find(used).unwrap_or(n - 1);
    (first.saturating_sub(1), (last + 2).min(n))
}

fn edge(hist: &ScoreHistogram, i: usize) -> f64 {
    hist.logit_min + (hist.logit_max - hist.logit_min) * i as f64 / hist.bins() as f64
}

fn totals(hist: &ScoreHistogram) -> (f64, f64) {
    (
        hist.positives.iter().sum::<u64>() as f64,
        hist.negatives.iter().sum::<u64>() as f64,
    )
}

fn roc_plot(hist: &ScoreHistogram) -> String {
    let (pos, neg) = totals(hist);
    let mut plot = Plot::new(
        "roc",
        "ROC curve",
        Axis::linear(0.0, 1.0, "false positive rate (goods above the cut-off)", 5),
        Axis::linear(0.0, 1.0, "true positive rate (defaults above)", 5),
    );
    plot.line(
        &[(0.0, 0.0), (1.0, 1.0)],
        colours::REFERENCE,
        1.0,
        Some("4 3"),
    );
    if pos > 0.0 && neg > 0.0 {
        let mut pts = vec![(0.0, 0.0)];
        let (mut tp, mut fp) = (0.0, 0.0);
        for i in (0..hist.bins()).rev() {
            let (p, n) = (hist.positives[i] as f64, hist.negatives[i] as f64);
            if p + n == 0.0 {
                continue;
            }
            tp += p;
            fp += n;
            pts.push((fp / neg, tp / pos));
        }
        plot.line(&pts, colours::ROC, 2.5, None);
        if let Some(auc) = hist.auc() {
            plot.text(0.5, 0.12, &format!("AUC {auc:.4}"));
        }
    } else {
        plot.text(0.1, 0.5, "one class only: no curve");
    }
    plot.legend(colours::ROC, "model");
    plot.legend(colours::REFERENCE, "chance");
    plot.render()
}

fn ks_plot(hist: &ScoreHistogram) -> String {
    let (pos, neg) = totals(hist);
    let (a, b) = populated(hist);
    let mut plot = Plot::new(
        "ks",
        "KS: cumulative share below the score",
        Axis::pd_logit(edge(hist, a), edge(hist, b), "predicted PD (logit scale)"),
        Axis::linear(0.0, 1.0, "cumulative share of rows", 5),
    );
    if pos > 0.0 && neg > 0.0 {
        let (mut cp, mut cn) = (0.0, 0.0);
        let mut bad = vec![(edge(hist, a), 0.0)];
        let mut good = vec![(edge(hist, a), 0.0)];
        let mut best = (0.0, edge(hist, a), 0.0, 0.0);
        for i in a..b {
            cp += hist.positives[i] as f64;
            cn += hist.negatives[i] as f64;
            let x = edge(hist, i + 1);
            bad.push((x, cp / pos));
            good.push((x, cn / neg));
            let d = (cn / neg - cp / pos).abs();
            if d > best.0 {
                best = (d, x, cp / pos, cn / neg);
            }
        }
        plot.line(&good, colours::KS_GOOD, 2.5, None);
        plot.line(&bad, colours::KS_BAD, 2.5, None);
        plot.line(
            &[(best.1, best.2), (best.1, best.3)],
            "#000000",
            1.5,
            Some("5 3"),
        );
        plot.text(
            best.1,
            (best.2 + best.3) / 2.0,
            &format!("KS {:.4}", best.0),
        );
    }
    plot.legend(colours::KS_GOOD, "goods");
    plot.legend(colours::KS_BAD, "defaults");
    plot.render()
}

fn rounds_plots(rounds: &[RoundFigures]) -> String {
    let lo = rounds.iter().map(|r| r.round).min().unwrap_or(1) as f64;
    let hi = rounds.iter().map(|r| r.round).max().unwrap_or(1) as f64;
    let (x0, x1) = (lo - 0.3, hi + 0.3);
    // Whole rounds only: about eight ticks, at a whole step.
    let step = ((hi - lo) / 8.0).ceil().max(1.0);
    let x_axis = || Axis {
        min: x0,
        max: x1,
        title: "training round".to_owned(),
        ticks: (0..)
            .map(|k| lo + step * k as f64)
            .take_while(|&r| r <= hi)
            .map(|r| (r, format!("{r:.0}")))
            .collect(),
    };
    let vals: Vec<f64> = rounds
        .iter()
        .flat_map(|r| [r.auc, r.ks])
        .flatten()
        .filter(|v| v.is_finite())
        .collect();
    let (ymin, ymax) = span(&vals, 0.0, 1.0);
    let mut p1 = Plot::new(
        "rounds-auc",
        "AUC and KS by round",
        x_axis(),
        Axis::linear(ymin, ymax, "AUC, KS", 5),
    );
    let series = |f: &dyn Fn(&RoundFigures) -> Option<f64>| -> Vec<(f64, f64)> {
        rounds
            .iter()
            .filter_map(|r| f(r).map(|v| (r.round as f64, v)))
            .collect()
    };
    let auc = series(&|r| r.auc);
    let ks = series(&|r| r.ks);
    p1.line(&auc, colours::ROUND_AUC, 2.5, None);
    p1.points(&auc, colours::ROUND_AUC, 4.0);
    p1.line(&ks, colours::ROUND_KS, 2.5, None);
    p1.points(&ks, colours::ROUND_KS, 4.0);
    p1.legend(colours::ROUND_AUC, "AUC");
    p1.legend(colours::ROUND_KS, "KS");
    let ll = series(&|r| r.log_loss);
    let llv: Vec<f64> = ll.iter().map(|p| p.1).collect();
    let (lmin, lmax) = span(&llv, 0.0, 1.0);
    let mut p2 = Plot::new(
        "rounds-ll",
        "Log loss by round",
        x_axis(),
        Axis::linear(lmin, lmax, "log loss", 5),
    );
    p2.line(&ll, colours::ROUND_LOG_LOSS, 2.5, None);
    p2.points(&ll, colours::ROUND_LOG_LOSS, 4.0);
    p2.legend(colours::ROUND_LOG_LOSS, "log loss");
    p1.render() + &p2.render()
}

/// A padded range around `vals` (`[lo, hi]` without any).
fn span(vals: &[f64], lo: f64, hi: f64) -> (f64, f64) {
    let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !(min.is_finite() && max.is_finite()) {
        return (lo, hi);
    }
    let pad = ((max - min) * 0.15).max(0.005);
    (min - pad, max + pad)
}

/// One calibration group from the histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Decile {
    pub rows: u64,
    pub pd_from: f64,
    pub pd_to: f64,
    pub predicted: f64,
    pub observed: f64,
}

/// Adjacent score bins merged into `groups` groups of about equal row counts; each group's
/// mean predicted PD (its bins' middles) and observed default rate.
pub fn calibration_deciles(hist: &ScoreHistogram, groups: usize) -> Vec<Decile> {
    let (pos, neg) = totals(hist);
    let total = pos + neg;
    let mut out = Vec::new();
    if total == 0.0 || groups == 0 {
        return out;
    }
    let (mut rows, mut defaults, mut predicted, mut start) = (0u64, 0u64, 0.0, None);
    let mut cum = 0.0;
    let mut next = 1usize;
    for i in 0..hist.bins() {
        let (p, n) = (hist.positives[i], hist.negatives[i]);
        if p + n == 0 {
            continue;
        }
        start.get_or_insert(i);
        rows += p + n;
        defaults += p;
        predicted += (p + n) as f64 * sigmoid((edge(hist, i) + edge(hist, i + 1)) / 2.0);
        cum += (p + n) as f64;
        if cum * groups as f64 >= next as f64 * total || i + 1 == hist.bins() {
            let s = start.take().unwrap_or(i);
            out.push(Decile {
                rows,
                pd_from: sigmoid(edge(hist, s)),
                pd_to: sigmoid(edge(hist, i + 1)),
                predicted: predicted / rows as f64,
                observed: defaults as f64 / rows as f64,
            });
            (rows, defaults, predicted) = (0, 0, 0.0);
            while next < groups && cum * groups as f64 >= next as f64 * total {
                next += 1;
            }
        }
    }
    if rows > 0 {
        let s = start.unwrap_or(0);
        out.push(Decile {
            rows,
            pd_from: sigmoid(edge(hist, s)),
            pd_to: sigmoid(hist.logit_max),
            predicted: predicted / rows as f64,
            observed: defaults as f64 / rows as f64,
        });
    }
    out
}

fn calibration_plot(deciles: &[Decile]) -> String {
    let top = deciles
        .iter()
        .flat_map(|d| [d.predicted, d.observed])
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let mut plot = Plot::new(
        "calibration",
        "Calibration by decile",
        Axis::linear(0.0, top, "mean predicted PD", 5),
        Axis::linear(0.0, top, "observed default rate", 5),
    );
    plot.line(
        &[(0.0, 0.0), (top, top)],
        colours::REFERENCE,
        1.0,
        Some("4 3"),
    );
    let pts: Vec<(f64, f64)> = deciles.iter().map(|d| (d.predicted, d.observed)).collect();
    plot.line(&pts, colours::CALIBRATION, 2.5, None);
    plot.points(&pts, colours::CALIBRATION, 5.0);
    plot.legend(colours::CALIBRATION, "deciles");
    plot.legend(colours::REFERENCE, "perfect calibration");
    plot.render()
}

fn distribution_plot(hist: &ScoreHistogram) -> String {
    let (pos, neg) = totals(hist);
    let (a, b) = populated(hist);
    // About 40 bars over the populated range.
    let step = (b - a).div_ceil(40).max(1);
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut top = 0.0f64;
    let mut i = a;
    while i < b {
        let j = (i + step).min(b);
        let p: u64 = hist.positives[i..j].iter().sum();
        let n: u64 = hist.negatives[i..j].iter().sum();
        let (sp, sn) = (
            if pos > 0.0 { p as f64 / pos } else { 0.0 },
            if neg > 0.0 { n as f64 / neg } else { 0.0 },
        );
        top = top.max(sp).max(sn);
        good.push((edge(hist, i), edge(hist, j), sn));
        bad.push((edge(hist, i), edge(hist, j), sp));
        i = j;
    }
    let mut plot = Plot::new(
        "distribution",
        "Score distribution by label",
        Axis::pd_logit(edge(hist, a), edge(hist, b), "predicted PD (logit scale)"),
        Axis::linear(
            0.0,
            if top > 0.0 { top * 1.1 } else { 1.0 },
            "share of the label's rows",
            5,
        ),
    );
    plot.bars(&good, colours::DIST_GOOD, 0.55);
    plot.bars(&bad, colours::DIST_BAD, 0.55);
    let steps = |bars: &[(f64, f64, f64)]| -> Vec<(f64, f64)> {
        bars.iter()
            .flat_map(|&(x0, x1, y)| [(x0, y), (x1, y)])
            .collect()
    };
    plot.line(&steps(&good), colours::DIST_GOOD, 2.0, None);
    plot.line(&steps(&bad), colours::DIST_BAD, 2.0, None);
    plot.legend(colours::DIST_GOOD, "goods");
    plot.legend(colours::DIST_BAD, "defaults");
    plot.render()
}

fn model_section(h: &mut String, m: &ModelFile) {
    if m.preprocessing.woe.is_some() {
        h.push_str("<h2>Scorecard: points per bin</h2>");
        match Scorecard::from_model(m, &ScorecardOptions::default()) {
            Ok(card) => {
                let o = &card.options;
                let _ = writeln!(
                    h,
                    "<p>{} points at {}:1 odds (goods per default), {} points to double the odds, \
                     points rounded. {}</p>",
                    o.base_score,
                    o.base_odds,
                    o.pdo,
                    if card.features.iter().any(|f| f.coefficient.is_some()) {
                        "The model's coefficients are on each feature's WOE."
                    } else {
                        "The model has a coefficient per bin (its term in the log-odds)."
                    }
                );
                for f in &card.features {
                    let heading = match f.coefficient {
                        Some(c) => format!("{} (coefficient {c:.4} on WOE)", esc(&f.name)),
                        None => format!("{} (a coefficient per bin)", esc(&f.name)),
                    };
                    let _ = write!(
                        h,
                        "<h3>{heading}</h3><table><tr><th class=\"l\">bin</th><th>WOE</th><th>term</th><th>points</th></tr>",
                    );
                    for b in &f.bins {
                        let _ = write!(
                            h,
                            "<tr><td class=\"l\">{}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
                            esc(&b.bin),
                            b.woe,
                            b.term,
                            b.points
                        );
                    }
                    h.push_str("</table>\n");
                }
            }
            Err(e) => {
                let _ = writeln!(h, "<p>No scorecard: {}</p>", esc(&e.to_string()));
            }
        }
        return;
    }
    let t = CoefficientTable::of(m);
    h.push_str(
        "<h2>Coefficients</h2><p>Standardised: per standard deviation of a numeric feature (per \
         unit of a 0/1 column); raw: per unit of the feature as recorded (after imputation); odds \
         ratio: exp(raw).</p><table><tr><th class=\"l\">column</th><th>standardised</th>\
         <th>raw</th><th>odds ratio</th><th>odds ratio per SD</th><th>scale (SD)</th></tr>",
    );
    for r in &t.rows {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{:.6}</td><td>{:.6e}</td><td>{:.6}</td><td>{:.6}</td><td>{}</td></tr>",
            esc(&r.column),
            r.standardised,
            r.raw,
            r.odds_ratio,
            r.odds_ratio_per_sd,
            opt(r.scale, 4)
        );
    }
    let _ = writeln!(
        h,
        "<tr><td class=\"l\">(intercept)</td><td>{:.6}</td><td>{:.6e}</td><td></td><td></td><td></td></tr></table>",
        t.intercept_standardised, t.intercept_raw
    );
}

fn configuration_section(h: &mut String, m: &ModelFile) {
    let p = &m.provenance;
    h.push_str("<h2>Training configuration</h2><table>");
    let _ = write!(
        h,
        "<tr><th class=\"l\">L2 (scikit-learn C)</th><td class=\"l\">{}</td></tr>",
        p.l2_c.map_or("none".to_owned(), |c| c.to_string())
    );
    let _ = write!(
        h,
        "<tr><th class=\"l\">features</th><td class=\"l\">{}</td></tr>",
        esc(&m
            .schema
            .features
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", "))
    );
    match &p.settings {
        Some(v) => {
            let mut rows = Vec::new();
            flatten("", v, &mut rows);
            for (k, v) in rows {
                let _ = write!(
                    h,
                    "<tr><th class=\"l\">{}</th><td class=\"l\">{}</td></tr>",
                    esc(&k),
                    esc(&v)
                );
            }
        }
        None => h.push_str(
            "<tr><th class=\"l\">job settings</th><td class=\"l\">not recorded in this file</td></tr>",
        ),
    }
    h.push_str("</table>\n");
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

fn job_section(h: &mut String, job: &JobView) {
    let _ = writeln!(
        h,
        "<h2>Job {} `{}`</h2><p>State: {}{}. This report shows the model version of round {}.</p>",
        job.id,
        esc(&job.name),
        esc(&job.state),
        if job.message.is_empty() || job.message == job.state {
            String::new()
        } else {
            format!(" ({})", esc(&job.message))
        },
        job.round
    );
    h.push_str(
        "<table><tr><th>round</th><th>participants</th><th>seconds</th><th>AUC</th><th>KS</th>\
         <th>log loss</th><th>bytes up</th><th>bytes down</th></tr>",
    );
    for r in &job.rounds {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if r.round == 0 {
                "0 (statistics)".to_owned()
            } else {
                r.round.to_string()
            },
            r.survivors.map_or("-".to_owned(), |s| s.to_string()),
            opt(r.seconds, 2),
            opt(r.auc, 4),
            opt(r.ks, 4),
            opt(r.log_loss, 4),
            r.bytes_up,
            r.bytes_down
        );
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedrisk_models::model_file::ModelEvaluation;

    fn evaluated() -> ModelFile {
        // Scores spread over PD 1%..60%, defaults more likely at higher scores.
        let probs: Vec<f64> = (0..4000)
            .map(|i| 0.01 + 0.59 * (i as f64 / 4000.0).powi(2))
            .collect();
        let labels: Vec<u8> = probs
            .iter()
            .enumerate()
            .map(|(i, &p)| u8::from(((i * 7919) % 1000) as f64 / 1000.0 < p))
            .collect();
        let hist = ScoreHistogram::from_scores(&probs, &labels, 500);
        let e = fedrisk_models::federated::FederatedEval {
            rows: 4000.0,
            auc: hist.auc().unwrap(),
            ks: hist.ks().unwrap(),
            log_loss: fedrisk_models::metrics::log_loss(&probs, &labels).unwrap(),
            auc_error_bound: hist.auc_error_bound().unwrap(),
            histogram: Some(hist),
        };
        let mut ev = ModelEvaluation::of(&e, 3).unwrap();
        ev.by_round.insert(
            0,
            RoundFigures {
                round: 1,
                auc: Some(0.6),
                ks: Some(0.2),
                log_loss: Some(0.5),
            },
        );
        crate::testing::model().with_evaluation(Some(ev))
    }

    #[test]
    fn utc_dates_are_civil_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        // 2000-02-29 12:34:56 UTC, a leap day.
        assert_eq!(utc(951_827_696_000), "2000-02-29 12:34:56 UTC");
        assert_eq!(utc(1_796_031_129_492), "2026-11-30 09:32:09 UTC");
    }

    #[test]
    fn deciles_hold_about_a_tenth_each_and_match_the_scores() {
        let m = evaluated();
        let hist = &m.evaluation.as_ref().unwrap().histogram;
        let d = calibration_deciles(hist, 10);
        assert_eq!(d.len(), 10);
        assert_eq!(d.iter().map(|d| d.rows).sum::<u64>(), 4000);
        for x in &d {
            assert!((x.rows as f64 - 400.0).abs() < 60.0, "{x:?}");
            assert!(x.predicted >= x.pd_from && x.predicted <= x.pd_to, "{x:?}");
        }
        // Ascending predicted PD, and the observed rate follows it on these labels.
        assert!(d.windows(2).all(|w| w[0].predicted < w[1].predicted));
        assert!(d[9].observed > d[0].observed + 0.2);
    }

    #[test]
    fn the_report_is_self_contained_and_shows_every_section() {
        let m = evaluated();
        let html = render(&ReportInput {
            model: &m,
            source: "a test <model>".into(),
            signature_check: None,
            job: None,
            audit: None,
        });
        for needle in [
            "ROC curve",
            "KS: cumulative share",
            "AUC and KS by round",
            "Log loss by round",
            "Calibration by decile",
            "Score distribution by label",
            "Coefficients",
            "Training configuration",
            "Participants",
            &m.content_hash,
            "a test &lt;model&gt;",
            colours::ROC,
            colours::CALIBRATION,
        ] {
            assert!(html.contains(needle), "missing {needle}");
        }
        assert!(!html.contains("<script"));
        // Nothing to fetch: the one URL is the SVG namespace's name.
        let stripped = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !stripped.contains("http:")
                && !stripped.contains("https:")
                && !stripped.contains("src=")
        );
        assert!(!html.contains("NaN") && !html.contains(">inf"));
    }
}
