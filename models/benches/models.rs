//! `cargo bench -p fedrisk-models --bench models`: the gradient pass beside a plain read of the
//! same matrix (their ratio is what matters on a noisy machine), and the Newton fit of taiwan.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use fedrisk_models::logistic::{NewtonOptions, fit_newton, gradient};
use fedrisk_models::{
    FeatureStats, InferOptions, LabelMode, PreprocessOptions, Preprocessor, load_csv, schema,
};
use ndarray::Array2;

const ROWS: usize = 1_000_000;
const COLS: usize = 32;

fn matrix() -> (Array2<f64>, Vec<f64>, Vec<f64>) {
    let x = Array2::from_shape_fn((ROWS, COLS), |(i, j)| {
        ((i * 31 + j * 17) % 97) as f64 / 97.0 - 0.5
    });
    let y = (0..ROWS).map(|i| (i % 5 == 0) as u8 as f64).collect();
    let theta = (0..=COLS).map(|j| j as f64 * 0.01 - 0.1).collect();
    (x, y, theta)
}

fn gradient_vs_read(c: &mut Criterion) {
    let (x, y, theta) = matrix();
    let mut g = c.benchmark_group("gradient_1m_x_32");
    g.sample_size(20);
    g.bench_function("plain_read_sum", |b| {
        b.iter(|| black_box(x.as_slice().unwrap_or_default().iter().sum::<f64>()))
    });
    g.bench_function("gradient_pass", |b| {
        b.iter(|| black_box(gradient(x.view(), &y, &theta).unwrap_or_default()))
    });
    g.finish();
    // Criterion prints each time; print the ratio of medians from one more side-by-side run.
    let time = |f: &dyn Fn()| {
        let mut v: Vec<f64> = (0..15)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let read = time(&|| {
        black_box(x.as_slice().unwrap_or_default().iter().sum::<f64>());
    });
    let grad = time(&|| {
        black_box(gradient(x.view(), &y, &theta).unwrap_or_default());
    });
    let gb = (ROWS * COLS * 8) as f64 / 1e9;
    println!(
        "gradient 1M x 32: plain read {:.1} ms ({:.1} GB/s), gradient {:.1} ms ({:.1} GB/s), ratio {:.2}x",
        read * 1e3,
        gb / read,
        grad * 1e3,
        gb / grad,
        grad / read
    );
}

fn newton_taiwan(c: &mut Criterion) {
    let dir = std::env::var_os("FEDRISK_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
        .join("taiwan");
    let path = dir.join("pooled_train.csv");
    if !path.is_file() {
        println!(
            "newton_taiwan: {} not found, skipped (set FEDRISK_SHARED_DATA)",
            path.display()
        );
        return;
    }
    let Ok(schema) = schema::infer(&path, &InferOptions::new("default", "1")) else {
        return;
    };
    let Ok(data) = load_csv(&path, &schema, LabelMode::Required) else {
        return;
    };
    let stats = FeatureStats::from_dataset(&schema, &data);
    let pre = Preprocessor::fit(&schema, &stats, PreprocessOptions::default());
    let y = data.labels_f64().unwrap_or_default();
    let x = pre.transform(data);
    let opts = NewtonOptions::default();
    if let Ok(fit) = fit_newton(x.view(), &y, &opts) {
        println!(
            "newton taiwan pooled_train ({} x {}): {} iterations, converged {}",
            x.nrows(),
            x.ncols(),
            fit.iterations,
            fit.converged
        );
    }
    let mut g = c.benchmark_group("newton_taiwan");
    g.sample_size(20);
    g.bench_function("fit_newton_pooled_train", |b| {
        b.iter(|| black_box(fit_newton(x.view(), &y, &opts).ok()))
    });
    g.bench_function("load_csv_pooled_train", |b| {
        b.iter(|| black_box(load_csv(&path, &schema, LabelMode::Required).ok()))
    });
    g.finish();
}

criterion_group!(benches, gradient_vs_read, newton_taiwan);
criterion_main!(benches);
