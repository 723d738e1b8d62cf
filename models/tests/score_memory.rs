//! `score` streams: the scorer and the running summary hold one block of rows, whatever the
//! number of rows. Checked with an allocation counter (live heap bytes and their peak), so
//! the test fails if anything keeps a value per row; no timing involved.
//!
//! One test in this binary: the counter is process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use fedrisk_models::local::{LocalOptions, train_local};
use fedrisk_models::metrics::RunningEvaluation;
use fedrisk_models::model_file::SCORE_CHUNK_ROWS;
use fedrisk_models::synth::{SynthConfig, generate};
use fedrisk_models::{DataSource, LabelMode, load_csv};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(live, Ordering::SeqCst);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Scores `path` the way `fedrisk-participant score` does (blocks from the scorer, each
/// written out as CSV text, the labelled summary accumulated) and returns the rows scored,
/// the largest block and the peak of live heap bytes above what was live at the start.
fn score_peak(model: &fedrisk_models::ModelFile, path: &std::path::Path) -> (usize, usize, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let mut scorer = model
        .scorer_for(&DataSource::Csv(path.to_owned()), None)
        .expect("scorer");
    let mut running = RunningEvaluation::new();
    let mut out = std::io::sink();
    let mut largest = 0;
    while let Some(chunk) = scorer.next_chunk().expect("block") {
        largest = largest.max(chunk.probabilities.len());
        for (k, p) in chunk.probabilities.iter().enumerate() {
            writeln!(out, "{},{p:.10}", chunk.first_row + k).expect("write");
        }
        running.add(
            &chunk.probabilities,
            chunk.labels.as_deref().expect("labels"),
        );
    }
    let rows = scorer.finish().expect("finish");
    let figures = running.finish().expect("figures");
    assert_eq!(figures.evaluation.rows, rows);
    let peak = PEAK.load(Ordering::SeqCst).saturating_sub(base);
    (rows, largest, peak)
}

#[test]
fn scoring_holds_one_block_whatever_the_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let train = dir.path().join("train.csv");
    let schema = SynthConfig::schema();
    let data = generate(&SynthConfig::demo(5, 4_000, 0));
    std::fs::write(&train, &data.participants[0].1).expect("train file");
    let ds = load_csv(&train, &schema, LabelMode::Required).expect("train rows");
    let (model, _) = train_local(&schema, ds, &LocalOptions::default()).expect("model");
    drop(data);

    let small_rows = 6 * SCORE_CHUNK_ROWS;
    let large_rows = 10 * small_rows;
    let mut files = Vec::new();
    for (name, rows) in [("small.csv", small_rows), ("large.csv", large_rows)] {
        let p = dir.path().join(name);
        let data = generate(&SynthConfig::demo(6, 100, rows));
        std::fs::write(&p, &data.test).expect("data file");
        files.push(p);
    }

    let (n_small, block_small, peak_small) = score_peak(&model, &files[0]);
    let (n_large, block_large, peak_large) = score_peak(&model, &files[1]);
    assert_eq!((n_small, n_large), (small_rows, large_rows));
    assert_eq!(block_small.max(block_large), SCORE_CHUNK_ROWS);
    // Ten times the rows, the same peak (a per-row value, 8 bytes for 442,368 more rows,
    // would add 3.5 MB; the data itself is about 47 bytes a row).
    let slack = 256 * 1024;
    assert!(
        peak_large <= peak_small + slack,
        "peak heap {peak_large} bytes for {large_rows} rows vs {peak_small} for {small_rows}: \
         scoring keeps something per row"
    );
    // And the peak is one block plus the summary's fixed bins (about 4 MB), not the file.
    let file_bytes = std::fs::metadata(&files[1]).expect("size").len() as usize;
    assert!(
        peak_large < file_bytes / 3,
        "peak heap {peak_large} bytes for a {file_bytes}-byte file"
    );
    println!(
        "peak live heap while scoring: {peak_small} bytes for {small_rows} rows, \
         {peak_large} bytes for {large_rows} rows ({file_bytes}-byte file)"
    );
}
