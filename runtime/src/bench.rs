//! The update-step benchmark (`anneal bench`): times a recipe's compiled step on synthetic
//! tensors and, in the same run, a plain read-modify-write loop over the same number of
//! bytes (the roofline: what the memory bus gives a loop that does nothing else). Ratios,
//! never absolute thresholds: machines differ and are noisy. Entry point: `bench`.

use std::time::Instant;

use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::ir::{Program, Recipe};
use anneal_compiler::kernel::explain::explain;
use serde::Serialize;

/// What `anneal bench --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub recipe: String,
    pub backend: String,
    pub params: usize,
    pub tensors: usize,
    pub threads: usize,
    /// Median time of one step.
    pub step_ms: f64,
    /// Bytes the fused step moves per step over its time.
    pub gbps: f64,
    /// The plain loop over the same bytes, measured in this run.
    pub roofline_gbps: f64,
    pub roofline_ms: f64,
    /// `gbps / roofline_gbps`: the share of the memory bandwidth the step reaches.
    pub ratio: f64,
    /// The same share for an unfused implementation (one sweep per transform) if every
    /// one of its sweeps ran at the roofline: fused bytes over unfused bytes. A model, the
    /// best such an implementation can do, not a measurement.
    pub unfused_ratio: f64,
    /// Kernel IR to callable (0 when the code came from the cache).
    pub compile_ms: f64,
    pub passes: usize,
    pub bytes_per_param: usize,
    pub unfused_bytes_per_param: usize,
}

/// Benchmarks `recipe` over `params` f32 parameters in `tensors` equal tensors.
pub fn bench(
    program: &Program,
    recipe: &Recipe,
    backend: Backend,
    params: usize,
    tensors: usize,
    threads: usize,
) -> Result<BenchReport, String> {
    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    let e = explain(program, recipe).map_err(|why| {
        format!(
            "recipe `{}` has no fused step to benchmark: {why}",
            recipe.name
        )
    })?;
    let tensors = tensors.clamp(1, params.max(1));
    let sizes: Vec<usize> = (0..tensors)
        .map(|t| params / tensors + usize::from(t < params % tensors))
        .collect();
    let names: Vec<String> = (0..tensors).map(|t| format!("{t}.weight")).collect();
    let shapes: Vec<Vec<usize>> = sizes.iter().map(|&n| vec![n]).collect();
    let mut ps: Vec<Vec<f32>> = sizes
        .iter()
        .map(|&n| (0..n).map(|i| ((i % 97) as f32 - 48.0) * 1e-3).collect())
        .collect();
    let grads: Vec<Vec<f32>> = sizes
        .iter()
        .map(|&n| (0..n).map(|i| ((i % 89) as f32 - 44.0) * 1e-4).collect())
        .collect();
    let (mut stepper, choice) =
        Stepper::new(backend, program, recipe, &names, &shapes, &ps, threads)?;
    let step_ms = median_ms(|| stepper.step(&mut ps, &grads))?;
    let reads: usize = e.passes.iter().map(|p| p.reads.len()).sum();
    let writes: usize = e.passes.iter().map(|p| p.writes.len()).sum();
    let roofline_ms = roofline(params, reads.max(1), writes, threads);
    let bytes = (e.bytes_per_param * params) as f64;
    let gbps = bytes / (step_ms * 1e6);
    let roofline_gbps = (4 * (reads.max(1) + writes) * params) as f64 / (roofline_ms * 1e6);
    Ok(BenchReport {
        recipe: recipe.name.clone(),
        backend: choice.backend.to_string(),
        params,
        tensors,
        threads,
        step_ms,
        gbps,
        roofline_gbps,
        roofline_ms,
        ratio: gbps / roofline_gbps,
        unfused_ratio: e.bytes_per_param as f64 / e.unfused_bytes_per_param.max(1) as f64,
        compile_ms: choice.compile_ms,
        passes: e.passes.len(),
        bytes_per_param: e.bytes_per_param,
        unfused_bytes_per_param: e.unfused_bytes_per_param,
    })
}

/// Runs `f` for at least 5 timed repetitions and ~1 s after 2 warm-up calls; the median.
fn median_ms(mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    f()?;
    f()?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || (start.elapsed().as_secs_f64() < 1.0 && times.len() < 200) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The roofline: every thread sweeps its share of `reads` input arrays and `writes`
/// output arrays (an output is updated in place: read and written, as optimizer state
/// is) with one add per element; the median time of a sweep.
pub fn roofline(params: usize, reads: usize, writes: usize, threads: usize) -> f64 {
    // Outputs are read too (read-modify-write), so they count among the reads.
    let pure_reads = reads.saturating_sub(writes).max(1);
    let inputs: Vec<Vec<f32>> = (0..pure_reads).map(|k| vec![k as f32; params]).collect();
    let mut outputs: Vec<Vec<f32>> = (0..writes).map(|_| vec![0f32; params]).collect();
    let chunk = params.div_ceil(threads.max(1)).max(1);
    let sweep = |inputs: &[Vec<f32>], outputs: &mut [Vec<f32>]| {
        let mut out_parts: Vec<Vec<&mut [f32]>> =
            (0..params.div_ceil(chunk)).map(|_| Vec::new()).collect();
        for o in outputs.iter_mut() {
            for (c, part) in o.chunks_mut(chunk).enumerate() {
                out_parts[c].push(part);
            }
        }
        std::thread::scope(|s| {
            for (c, mut outs) in out_parts.into_iter().enumerate() {
                let lo = c * chunk;
                s.spawn(move || {
                    let n = outs.first().map_or(chunk.min(params - lo), |o| o.len());
                    let ins: Vec<&[f32]> = inputs.iter().map(|v| &v[lo..lo + n]).collect();
                    // Block by block, so each input is read once from memory and each
                    // output read and written once, as in one fused pass.
                    let mut sum = [0f32; 1024];
                    let mut at = 0;
                    while at < n {
                        let m = (n - at).min(1024);
                        sum[..m].fill(0.0);
                        for x in &ins {
                            for (d, s) in sum[..m].iter_mut().zip(&x[at..at + m]) {
                                *d += *s;
                            }
                        }
                        for o in outs.iter_mut() {
                            for (d, s) in o[at..at + m].iter_mut().zip(&sum[..m]) {
                                *d += *s;
                            }
                        }
                        at += m;
                    }
                    std::hint::black_box(&sum);
                });
            }
        });
    };
    median_ms(|| {
        sweep(&inputs, &mut outputs);
        Ok(())
    })
    .unwrap_or(f64::NAN)
}
