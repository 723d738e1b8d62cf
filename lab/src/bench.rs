//! `fedrisk-coordinator bench`: a federation of separate participant processes over loopback
//! mTLS for N rounds, printing seconds per round, bytes per participant per round and peak
//! memory of the coordinator and of each participant.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use fedrisk_models::federated::Algorithm;

use crate::simulate::{SimulateArgs, simulate};

#[derive(Args)]
pub struct BenchArgs {
    /// Folder with `participants/*.csv` and optionally `test.csv` (e.g. ../shared/data/taiwan).
    #[arg(long)]
    data: PathBuf,
    /// Training rounds.
    #[arg(long, default_value_t = 20)]
    rounds: u32,
    /// newton, fedavg or fedprox.
    #[arg(long, default_value = "fedavg")]
    algorithm: Algorithm,
    /// Where to keep logs and the report.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Run agents in this process instead of as separate processes.
    #[arg(long)]
    in_process: bool,
    /// Another system's figures measured on the same data, printed side by side: JSON with
    /// `name`, `data` (the data folder's name), `seconds_per_round`, `bytes_up`, `bytes_down`
    /// (per participant per round). Ignored, with a note, when `data` names other data.
    #[arg(long)]
    peer: Option<PathBuf>,
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

pub async fn run(args: BenchArgs) -> Result<()> {
    let sim = SimulateArgs {
        rounds: args.rounds,
        algorithm: args.algorithm,
        processes: !args.in_process,
        ..SimulateArgs::with_defaults(&args.data, &args.out)?
    };
    let (report, model) = simulate(&sim, &args.out.join("federation")).await?;
    crate::simulate::write_outputs(&args.out, &report, model.as_ref())?;
    let n = report.participants.len().max(1) as f64;
    let rounds = report.rounds.len().max(1) as f64;
    let secs: Vec<f64> = report.rounds.iter().map(|r| r.seconds).collect();
    let mean = secs.iter().sum::<f64>() / rounds;
    let mut sorted = secs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    let up = report.rounds.iter().map(|r| r.bytes_up as f64).sum::<f64>() / rounds / n;
    let down = report
        .rounds
        .iter()
        .map(|r| r.bytes_down as f64)
        .sum::<f64>()
        / rounds
        / n;
    println!(
        "fedrisk bench: {} ({} participants, {} rounds of {}, {})",
        args.data.display(),
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
        "  seconds per training round (2 secure sessions: update + evaluation): mean {mean:.3}, median {median:.3}, min {:.3}, max {:.3}",
        sorted.first().unwrap_or(&f64::NAN),
        sorted.last().unwrap_or(&f64::NAN)
    );
    println!("  bytes per participant per round: up {up:.0}, down {down:.0}");
    println!(
        "  peak RSS: coordinator process {:.1} MB",
        report.coordinator_peak_rss_mb
    );
    for (name, mb) in &report.participant_peak_rss_mb {
        println!("  peak RSS: participant {name} {mb:.1} MB");
    }
    if let Some(last) = report.rounds.last() {
        println!(
            "  final AUC {:.4}, KS {:.4} ({})",
            last.auc, last.ks, report.evaluated_on
        );
    }
    if let Some(path) = &args.peer {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let peer: PeerFigures =
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let ours = args
            .data
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for line in peer_comparison(&peer, path, &ours, mean) {
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
