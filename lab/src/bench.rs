//! `fedrisk-coordinator bench`: a federation over loopback mTLS for N rounds (the coordinator
//! as a `serve` process fed over the operator API, each participant a process of its own),
//! printing seconds per round, bytes per participant per round and the peak memory of the
//! coordinator's process and of each participant's.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use fedrisk_models::federated::Algorithm;
use fedrisk_models::synth::{SynthConfig, generate};

use crate::simulate::{SimulateArgs, simulate};

#[derive(Args)]
pub struct BenchArgs {
    /// Folder with `participants/*.csv` and optionally `test.csv` (e.g. ../shared/data/taiwan).
    /// Without it, credit data is generated (the demo's five institutions, `--rows` rows),
    /// written under `--out` with its schema, and benched.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Training rows of the generated data (without `--data`); a quarter as many test rows.
    #[arg(long, default_value_t = 24_000)]
    rows: usize,
    /// Seed of the generated data (without `--data`).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Training rounds.
    #[arg(long, default_value_t = 20)]
    rounds: u32,
    /// newton, fedavg or fedprox.
    #[arg(long, default_value = "fedavg")]
    algorithm: Algorithm,
    /// Where to keep logs and the report.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Run the coordinator and the agents in this process instead of as separate processes
    /// (needed for a thousand agents; the memory figure is then the whole process's).
    #[arg(long)]
    in_process: bool,
    /// Another system's figures measured on the same data, printed side by side: JSON with
    /// `name`, `data` (the data folder's name), `seconds_per_round`, `bytes_up`, `bytes_down`
    /// (per participant per round). Ignored, with a note, when `data` names other data.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// Deal the rows of the institutions (`--data`'s or the generated ones) round-robin over
    /// this many institutions (written under `--out`) and bench those: the cost per round as
    /// the federation grows.
    #[arg(long)]
    participants: Option<usize>,
}

/// Deals every row of `data/participants/*.csv` round-robin over `n` files in
/// `out/participants/`, and copies `test.csv` if there is one.
fn split(data: &std::path::Path, n: usize, out: &std::path::Path) -> Result<PathBuf> {
    anyhow::ensure!(n >= 2, "--participants {n}: a federation needs at least 2");
    let files = crate::simulate::participant_files(data)?;
    let dir = out.join(format!("split-{n}"));
    let pdir = dir.join("participants");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&pdir).with_context(|| format!("creating {}", pdir.display()))?;
    let mut header: Option<csv::StringRecord> = None;
    let mut writers = Vec::with_capacity(n);
    let mut next = 0usize;
    for (_, path) in &files {
        let mut reader =
            csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
        let h = reader
            .headers()
            .with_context(|| format!("{}: header", path.display()))?
            .clone();
        match &header {
            None => {
                for i in 0..n {
                    let p = pdir.join(format!("inst{i:04}.csv"));
                    let mut w = csv::Writer::from_path(&p)
                        .with_context(|| format!("writing {}", p.display()))?;
                    w.write_record(&h)?;
                    writers.push(w);
                }
                header = Some(h);
            }
            Some(first) if *first != h => anyhow::bail!(
                "{}: its columns differ from the other institutions' files",
                path.display()
            ),
            Some(_) => {}
        }
        for (i, record) in reader.records().enumerate() {
            let record = record.with_context(|| format!("{}: record {}", path.display(), i + 1))?;
            writers[next % n].write_record(&record)?;
            next += 1;
        }
    }
    for mut w in writers {
        w.flush()?;
    }
    anyhow::ensure!(
        next >= 2 * n,
        "{}: {next} rows cannot be dealt over {n} institutions",
        data.display()
    );
    let test = data.join("test.csv");
    if test.exists() {
        std::fs::copy(&test, dir.join("test.csv"))
            .with_context(|| format!("copying {}", test.display()))?;
    }
    Ok(dir)
}

/// Mean, median and range of some timings.
struct Spread {
    mean: f64,
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Spread {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            median: sorted[sorted.len() / 2],
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// A peer system's measured figures (see `--peer`).
#[derive(Debug, serde::Deserialize)]
struct PeerFigures {
    name: String,
    data: String,
    seconds_per_round: f64,
    bytes_up: f64,
    bytes_down: f64,
}

/// The data `bench` runs on: `--data`, or data generated under `out`.
struct Source {
    dir: PathBuf,
    /// The generated data's schema (`--data` folders have theirs inferred).
    schema: Option<PathBuf>,
    /// How the header line names it.
    label: String,
}

fn source(args: &BenchArgs) -> Result<Source> {
    if let Some(dir) = &args.data {
        return Ok(Source {
            dir: dir.clone(),
            schema: None,
            label: dir.display().to_string(),
        });
    }
    anyhow::ensure!(
        args.rows >= 100,
        "--rows {}: too few rows to generate a federation's data",
        args.rows
    );
    let dir = args.out.join("generated");
    let cfg = SynthConfig::demo(args.seed, args.rows, (args.rows / 4).max(1));
    generate(&cfg)
        .write_dir(&dir)
        .with_context(|| format!("writing generated data under {}", dir.display()))?;
    Ok(Source {
        schema: Some(dir.join("schema.json")),
        label: format!(
            "generated credit data ({} training rows, seed {}, {})",
            args.rows,
            args.seed,
            dir.display()
        ),
        dir,
    })
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let source = source(&args)?;
    let data = match args.participants {
        Some(n) => split(&source.dir, n, &args.out)?,
        None => source.dir.clone(),
    };
    let sim = SimulateArgs {
        rounds: args.rounds,
        algorithm: args.algorithm,
        processes: !args.in_process,
        schema: source.schema.clone(),
        ..SimulateArgs::with_defaults(&data, &args.out)?
    };
    let (report, model) = simulate(&sim, &args.out.join("federation")).await?;
    if report.rounds.is_empty() {
        anyhow::bail!(
            "no training round completed in {:.1} s (the warnings above say why)",
            report.seconds_total
        );
    }
    crate::simulate::write_outputs(&args.out, &report, model.as_ref())?;
    let n = report.participants.len().max(1) as f64;
    let rounds = report.rounds.len().max(1) as f64;
    let secs: Vec<f64> = report.rounds.iter().map(|r| r.seconds).collect();
    let per_round = Spread::of(&secs).context("no round timings")?;
    let up = report.rounds.iter().map(|r| r.bytes_up as f64).sum::<f64>() / rounds / n;
    let down = report
        .rounds
        .iter()
        .map(|r| r.bytes_down as f64)
        .sum::<f64>()
        / rounds
        / n;
    println!(
        "fedrisk bench: {}{} ({} participants, {} rounds of {}, {})",
        source.label,
        if args.participants.is_some() {
            " (rows dealt evenly)"
        } else {
            ""
        },
        report.participants.len(),
        report.rounds.len(),
        sim.algorithm,
        if sim.processes {
            "separate processes"
        } else {
            "in-process agents"
        }
    );
    println!(
        "  wall time, whole job (statistics round included): {:.2} s",
        report.seconds_total
    );
    println!(
        "  seconds per training round (one secure session each; the last round's time includes the final evaluation session): mean {:.3}, median {:.3}, min {:.3}, max {:.3}",
        per_round.mean, per_round.median, per_round.min, per_round.max
    );
    // The same rounds by session: a training session each, and the final evaluation
    // (the last model's, alone in its session) apart.
    let training: Vec<f64> = report
        .sessions
        .iter()
        .filter(|s| s.round >= 1 && s.kind != "evaluation")
        .map(|s| s.seconds)
        .collect();
    if let Some(stats) = Spread::of(&training) {
        println!(
            "  seconds per training session ({} of them; from the audit trail): mean {:.3}, median {:.3}, min {:.3}, max {:.3}",
            training.len(),
            stats.mean,
            stats.median,
            stats.min,
            stats.max
        );
    }
    let apart: Vec<String> = report
        .sessions
        .iter()
        .filter(|s| s.round == 0 || s.kind == "evaluation")
        .map(|s| format!("{} (round {}) {:.3}", s.kind, s.round, s.seconds))
        .collect();
    if !apart.is_empty() {
        println!("  other sessions, seconds: {}", apart.join(", "));
    }
    println!("  bytes per participant per round: up {up:.0}, down {down:.0}");
    println!(
        "  peak RSS: coordinator process {:.1} MB",
        report.coordinator_peak_rss_mb
    );
    if report.participant_peak_rss_mb.len() <= 10 {
        for (name, mb) in &report.participant_peak_rss_mb {
            println!("  peak RSS: participant {name} {mb:.1} MB");
        }
    } else {
        let mut mbs: Vec<f64> = report
            .participant_peak_rss_mb
            .iter()
            .map(|(_, mb)| *mb)
            .collect();
        mbs.sort_by(f64::total_cmp);
        println!(
            "  peak RSS: participants min {:.1}, median {:.1}, max {:.1} MB",
            mbs[0],
            mbs[mbs.len() / 2],
            mbs[mbs.len() - 1]
        );
    }
    if let Some(last) = report.rounds.last() {
        println!(
            "  final AUC {:.4}, KS {:.4} ({})",
            last.auc, last.ks, report.evaluated_on
        );
    }
    if let (Some(path), None) = (&args.peer, &args.data) {
        println!(
            "  {} not compared: its figures are for a data set, not generated data",
            path.display()
        );
    } else if let (Some(path), Some(n)) = (&args.peer, args.participants) {
        println!(
            "  {} not compared: its figures are for the data's own institutions, not {n}",
            path.display()
        );
    } else if let Some(path) = &args.peer {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let peer: PeerFigures =
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let ours = source
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for line in peer_comparison(&peer, path, &ours, per_round.mean) {
            println!("{line}");
        }
    }
    Ok(())
}

/// The lines comparing a peer's figures with ours: only when measured on the same data.
fn peer_comparison(
    peer: &PeerFigures,
    source: &std::path::Path,
    ours: &str,
    mean: f64,
) -> Vec<String> {
    if peer.data != ours {
        return vec![format!(
            "  ({}'s figures in {} were measured on `{}`, not `{ours}`: no comparison printed)",
            peer.name,
            source.display(),
            peer.data
        )];
    }
    vec![
        format!(
            "  {} on the same data ({}): {:.3} s per secure round, {:.0} B up / {:.0} B down per participant per round",
            peer.name,
            source.display(),
            peer.seconds_per_round,
            peer.bytes_up,
            peer.bytes_down
        ),
        format!(
            "  ratio of wall time per secure round, {} / fedrisk: {:.1}x",
            peer.name,
            peer.seconds_per_round / mean
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_dealt_once_over_the_institutions() {
        let src = tempfile::tempdir().expect("tempdir");
        let mut cfg = fedrisk_models::synth::SynthConfig::demo(5, 700, 20);
        cfg.institutions.truncate(3);
        let data = fedrisk_models::synth::generate(&cfg);
        data.write_dir(src.path()).expect("write");
        let count = |dir: &std::path::Path| -> (usize, usize) {
            let files = crate::simulate::participant_files(dir).expect("files");
            let rows = files
                .iter()
                .map(|(_, p)| csv::Reader::from_path(p).expect("csv").records().count())
                .sum();
            (files.len(), rows)
        };
        let (_, rows) = count(src.path());
        let out = tempfile::tempdir().expect("tempdir");
        let dealt = split(src.path(), 7, out.path()).expect("split");
        assert_eq!(count(&dealt), (7, rows));
        assert!(dealt.join("test.csv").exists());
        assert!(
            split(src.path(), rows, out.path()).is_err(),
            "one row each is refused"
        );
    }

    fn parsed(args: &[&str]) -> BenchArgs {
        use clap::{Args, FromArgMatches};
        let matches = BenchArgs::augment_args(clap::Command::new("bench"))
            .try_get_matches_from(std::iter::once("bench").chain(args.iter().copied()))
            .expect("arguments");
        BenchArgs::from_arg_matches(&matches).expect("bench arguments")
    }

    #[test]
    fn without_data_a_federation_is_generated_with_its_schema_and_dealt() {
        let out = tempfile::tempdir().expect("tempdir");
        let dir = out.path().to_str().expect("utf-8 path");
        let args = parsed(&["--out", dir, "--rows", "600", "--participants", "9"]);
        let src = source(&args).expect("generated");
        let schema = src.schema.as_ref().expect("the generated data's schema");
        fedrisk_models::schema::Schema::load(schema).expect("a schema that loads");
        let files = crate::simulate::participant_files(&src.dir).expect("files");
        assert_eq!(files.len(), 5, "the demo's five institutions");
        let rows: usize = files
            .iter()
            .map(|(_, p)| csv::Reader::from_path(p).expect("csv").records().count())
            .sum();
        assert_eq!(rows, 600);
        assert!(src.label.contains("600 training rows"), "{}", src.label);
        let dealt = split(&src.dir, 9, out.path()).expect("split");
        assert_eq!(
            crate::simulate::participant_files(&dealt)
                .expect("files")
                .len(),
            9
        );
        let few = parsed(&["--out", dir, "--rows", "10"]);
        let err = source(&few).err().expect("too few rows are refused");
        assert!(err.to_string().contains("--rows 10"), "{err}");
        // With --data nothing is generated and the folder is named as given.
        let given = parsed(&["--out", dir, "--data", "/some/where/taiwan"]);
        let src = source(&given).expect("given");
        assert!(src.schema.is_none());
        assert_eq!(src.label, "/some/where/taiwan");
    }

    #[test]
    fn a_peer_is_compared_only_on_the_data_it_was_measured_on() {
        let peer = PeerFigures {
            name: "flower".into(),
            data: "taiwan".into(),
            seconds_per_round: 10.0,
            bytes_up: 1.0,
            bytes_down: 2.0,
        };
        let same = peer_comparison(&peer, std::path::Path::new("p.json"), "taiwan", 0.5);
        assert!(same.iter().any(|l| l.contains("20.0x")), "{same:?}");
        let other = peer_comparison(&peer, std::path::Path::new("p.json"), "gmsc", 0.5);
        assert_eq!(other.len(), 1);
        assert!(other[0].contains("no comparison printed"), "{other:?}");
        assert!(!other[0].contains("ratio"), "{other:?}");
    }
}
