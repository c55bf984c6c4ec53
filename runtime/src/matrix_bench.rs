//! The matrix-optimizer benchmark (`anneal bench --shapes`): times a recipe's step on
//! tensors of given shapes (GPT-2 small's matrices by default) and, in the same run, the
//! GEMM library alone on exactly the products that step computed — the same
//! `matrixmultiply` code `@` runs, the same shapes, a pool of the same size. So the ratio
//! says how much of the step is matrix products running at the library's peak, and how
//! much is everything else (element passes, transposes, copies, decompositions). Entry
//! points: `shapes` (parse a shape list) and `bench_matrices`.

use std::collections::BTreeMap;
use std::time::Instant;

use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::error::{Error, Result};
use anneal_compiler::ir::{Program, Recipe};
use anneal_compiler::matrix::{multiply, Product};
use rayon::prelude::*;
use serde::Serialize;

/// GPT-2 small's matrices per layer: attention's q, k, v and output projections
/// (768 × 768), the MLP's 768 × 3072 and 3072 × 768.
pub const GPT2_SMALL_LAYER: &str = "768x768*4,768x3072,3072x768";
/// GPT-2 small's layers.
pub const GPT2_SMALL_LAYERS: usize = 12;

/// What `anneal bench --shapes ... --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixBenchReport {
    pub recipe: String,
    pub backend: String,
    pub tensors: usize,
    pub params: usize,
    pub threads: usize,
    /// Steps timed together in one run (a refresh period, for a recipe that refreshes).
    pub steps_per_run: usize,
    /// One step: the fastest run's time over its steps.
    pub step_ms: f64,
    /// Matrix products per step and their floating-point operations (2·m·k·n each).
    pub products: usize,
    pub gflop: f64,
    /// `gflop` over `step_ms`: the whole step's rate counted in its products' operations.
    pub step_gflops: f64,
    /// The same products alone through the same GEMM on a pool of `threads` (fastest run).
    pub gemm_ms: f64,
    pub gemm_gflops: f64,
    /// `gemm_ms / step_ms`: the share of the GEMM peak the step reaches.
    pub ratio: f64,
}

/// Parses `RxC[*count],...` (or `gpt2-small`) into one shape per tensor, the list
/// repeated `layers` times (`gpt2-small`: 12 unless given).
pub fn shapes(spec: &str, layers: Option<usize>) -> Result<Vec<Vec<usize>>> {
    let (list, default_layers) = if spec == "gpt2-small" {
        (GPT2_SMALL_LAYER, GPT2_SMALL_LAYERS)
    } else {
        (spec, 1)
    };
    let layers = layers.unwrap_or(default_layers);
    if layers == 0 || layers > 1000 {
        return Err(Error::user(format!(
            "--layers {layers} is out of range; give 1 to 1000"
        )));
    }
    let bad = |item: &str| {
        Error::user(format!(
            "`{item}` is not a shape: write ROWSxCOLS, optionally *COUNT (e.g. 768x3072*2), \
             items separated by commas, or `gpt2-small`"
        ))
    };
    let mut one = Vec::new();
    for item in list.split(',').map(str::trim) {
        let (dims, count) = match item.split_once('*') {
            Some((d, c)) => (d, c.trim().parse::<usize>().map_err(|_| bad(item))?),
            None => (item, 1),
        };
        let shape: Vec<usize> = dims
            .split('x')
            .map(|d| d.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad(item))?;
        if shape.is_empty() || shape.contains(&0) || count == 0 || count > 10_000 {
            return Err(bad(item));
        }
        if shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX)
            > 1 << 28
        {
            return Err(Error::user(format!(
                "`{item}` has more than 2^28 entries; give smaller tensors"
            )));
        }
        one.extend(std::iter::repeat_n(shape, count));
    }
    Ok((0..layers).flat_map(|_| one.clone()).collect())
}

/// A deterministic spread in [-1, 1) times `scale`.
fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The products alone: each on one thread, spread over `pool` (outputs kept, so none is
/// optimized away), inputs of every distinct shape made once.
struct Gemms {
    products: Vec<Product>,
    inputs: BTreeMap<Product, (Vec<f32>, Vec<f32>)>,
    pool: rayon::ThreadPool,
}

impl Gemms {
    fn new(products: Vec<Product>, threads: usize) -> Result<Gemms> {
        let mut inputs = BTreeMap::new();
        for &(m, k, n) in &products {
            inputs
                .entry((m, k, n))
                .or_insert_with(|| (noise(m * k, 1, 0.1), noise(k * n, 2, 0.1)));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::user(format!("cannot start the benchmark's threads: {e}")))?;
        Ok(Gemms {
            products,
            inputs,
            pool,
        })
    }

    fn run(&self) -> f64 {
        let sum = self.pool.install(|| {
            self.products
                .par_iter()
                .map(|p| match self.inputs.get(p) {
                    Some((a, b)) => multiply(*p, a, b).first().copied().unwrap_or(0.0),
                    None => 0.0,
                })
                .sum::<f32>()
        });
        f64::from(sum)
    }
}

/// Benchmarks `recipe` on tensors of `shapes`, timing `steps` consecutive steps per run.
pub fn bench_matrices(
    program: &Program,
    recipe: &Recipe,
    backend: Backend,
    shapes: &[Vec<usize>],
    threads: usize,
    steps: usize,
) -> Result<MatrixBenchReport> {
    let threads = crate::bench::threads_or_all(threads);
    if !(1..=1000).contains(&steps) {
        return Err(Error::user(format!(
            "--steps {steps} is out of range; give 1 to 1000"
        )));
    }
    if backend == Backend::Wgsl || backend == Backend::Interp {
        return Err(Error::user(
            "--shapes times a fused CPU step: choose --backend cranelift or llvm",
        ));
    }
    let names: Vec<String> = (0..shapes.len()).map(|t| format!("{t}.weight")).collect();
    let sizes: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
    let mut ps: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(t, &n)| noise(n, 100 + t as u64, 0.05))
        .collect();
    // Gradients that change each step, as a training run's do.
    let grads: Vec<Vec<Vec<f32>>> = (0..2)
        .map(|k| {
            sizes
                .iter()
                .enumerate()
                .map(|(t, &n)| noise(n, 1000 * (k + 1) + t as u64, 1e-3))
                .collect()
        })
        .collect();
    let (mut stepper, choice) =
        Stepper::new(backend, program, recipe, &names, shapes, &ps, threads)?;
    // A whole period first (a first step can differ: SOAP's starts its bases), then
    // timed runs of `steps`; the GEMM replays the products of the first timed run.
    for k in 0..steps {
        stepper.step(&mut ps, &grads[k % 2])?;
    }
    let mut gemms: Option<Gemms> = None;
    let (mut runs, mut peaks) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while runs.len() < 3 || (start.elapsed().as_secs_f64() < 2.0 && runs.len() < 50) {
        let mut products = Vec::new();
        let mut took = 0.0;
        for k in 0..steps {
            let t = Instant::now();
            stepper.step(&mut ps, &grads[k % 2])?;
            took += t.elapsed().as_secs_f64();
            products.extend(stepper.matrix_products().unwrap_or_default());
        }
        runs.push(took * 1e3 / steps as f64);
        if gemms.is_none() {
            if products.is_empty() {
                return Err(Error::user(format!(
                    "recipe `{}` computes no matrix products; time it without --shapes",
                    recipe.name
                )));
            }
            let g = Gemms::new(products, threads)?;
            g.run();
            gemms = Some(g);
        }
        let gemms = gemms
            .as_ref()
            .ok_or_else(|| Error::internal("no products"))?;
        let t = Instant::now();
        std::hint::black_box(gemms.run());
        peaks.push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
    }
    let gemms = gemms.ok_or_else(|| Error::internal("no timed run"))?;
    let fastest = |xs: &[f64]| xs.iter().copied().fold(f64::INFINITY, f64::min);
    let (step_ms, gemm_ms) = (fastest(&runs), fastest(&peaks));
    let flop: f64 = gemms
        .products
        .iter()
        .map(|&(m, k, n)| 2.0 * (m * k * n) as f64)
        .sum();
    let gflop = flop / 1e9 / steps as f64;
    Ok(MatrixBenchReport {
        recipe: recipe.name.clone(),
        backend: choice.backend.to_string(),
        tensors: shapes.len(),
        params: sizes.iter().sum(),
        threads,
        steps_per_run: steps,
        step_ms,
        products: gemms.products.len() / steps,
        gflop,
        step_gflops: gflop / (step_ms * 1e-3),
        gemm_ms,
        gemm_gflops: gflop / (gemm_ms * 1e-3),
        ratio: gemm_ms / step_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_lists_parse_and_bad_ones_say_how_to_write_them() {
        let s = shapes("gpt2-small", None).expect("preset");
        assert_eq!(s.len(), 72);
        assert_eq!(
            s.iter().map(|s| s.iter().product::<usize>()).sum::<usize>(),
            84_934_656
        );
        assert_eq!(
            shapes("4x5*2, 3x2x2", Some(2)).expect("list"),
            vec![
                vec![4, 5],
                vec![4, 5],
                vec![3, 2, 2],
                vec![4, 5],
                vec![4, 5],
                vec![3, 2, 2]
            ]
        );
        for bad in ["", "4x", "4x0", "4x5*0", "ax5", "4x5*", "65536x65536"] {
            let e = shapes(bad, None).expect_err(bad).to_string();
            assert!(e.contains("shape") || e.contains("2^28"), "{bad}: {e}");
        }
        assert!(shapes("4x4", Some(0)).is_err());
    }
}
