//! The update-step benchmark (`anneal bench`): times a recipe's compiled step on synthetic
//! tensors and, in the same run, a plain read-modify-write loop over the same number of
//! bytes (the roofline: what the memory bus gives a loop that does nothing else). Ratios,
//! never absolute thresholds: machines differ and are noisy. Entry point: `bench`.

use anneal_compiler::error::{Error, Result};
use std::time::Instant;

use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::ir::{Program, Recipe};
use anneal_compiler::kernel::explain::{explain, Explain};
use rayon::prelude::*;
use serde::Serialize;

/// What `anneal bench --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub recipe: String,
    pub backend: String,
    pub params: usize,
    pub tensors: usize,
    pub threads: usize,
    /// Time of one step: the fastest of many (interleaved with the roofline's sweeps).
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
    /// Recipe text to callable: parse, check (with the library), lower, JIT.
    pub source_ms: f64,
    pub passes: usize,
    pub bytes_per_param: usize,
    pub unfused_bytes_per_param: usize,
    /// What the roofline is: a CPU read-modify-write loop, or a copy shader on the GPU.
    pub baseline: String,
    /// The GPU: a whole `Stepper::step`, host transfers included (parameters, gradients
    /// and states up, results down), where `step_ms` is the passes on resident buffers.
    pub host_step_ms: Option<f64>,
}

/// Benchmarks `recipe` over `params` f32 parameters in `tensors` equal tensors.
pub fn bench(
    program: &Program,
    recipe: &Recipe,
    backend: Backend,
    params: usize,
    tensors: usize,
    threads: usize,
) -> Result<BenchReport> {
    let threads = threads_or_all(threads);
    let e = explain(program, recipe).map_err(|why| {
        format!(
            "recipe `{}` has no fused step to benchmark: {why}",
            recipe.name
        )
    })?;
    if backend == Backend::Wgsl {
        return bench_gpu(program, recipe, &e, params, tensors);
    }
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
    // The step and the roofline alternate, so both see the same machine (other load,
    // frequency changes).
    let mut roof = Roofline::for_step(&e, params, threads);
    let (mut steps, mut sweeps) = (Vec::new(), Vec::new());
    stepper.step(&mut ps, &grads)?;
    roof.sweep();
    let start = Instant::now();
    while steps.len() < 5 || (start.elapsed().as_secs_f64() < 2.0 && steps.len() < 200) {
        let t = Instant::now();
        stepper.step(&mut ps, &grads)?;
        steps.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        roof.sweep();
        sweeps.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // Interference only ever adds time: the fastest of many interleaved runs is the most
    // repeatable figure for each, and the ratio compares like with like.
    let step_ms = fastest(&steps);
    let sweep_ms = fastest(&sweeps);
    let roofline_gbps = (roof.bytes_per_param() * params) as f64 / (sweep_ms * 1e6);
    let bytes = (e.bytes_per_param * params) as f64;
    let gbps = bytes / (step_ms * 1e6);
    let roofline_ms = bytes / (roofline_gbps * 1e6);
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
        source_ms: f64::NAN,
        passes: e.step_passes(),
        bytes_per_param: e.bytes_per_param,
        unfused_bytes_per_param: e.unfused_bytes_per_param,
        baseline: "plain read-modify-write loop, same bytes".into(),
        host_step_ms: None,
    })
}

/// The GPU: the step's passes on buffers resident on the device against a copy shader
/// over the same bytes on the same device, plus a whole step with host transfers.
fn bench_gpu(
    program: &Program,
    recipe: &Recipe,
    e: &Explain,
    params: usize,
    tensors: usize,
) -> Result<BenchReport> {
    let tensors = tensors.clamp(1, params.max(1));
    let sizes: Vec<usize> = (0..tensors)
        .map(|t| params / tensors + usize::from(t < params % tensors))
        .collect();
    let kernel = anneal_compiler::kernel::lower(program, recipe).map_err(|w| w.0)?;
    let bytes = e.bytes_per_param * params;
    let t = anneal_compiler::backends::gpu::time_on_device(&kernel, &sizes, bytes, 20)?;
    // A whole step through the stepper: what `anneal run --backend wgsl` pays per step.
    let names: Vec<String> = (0..tensors).map(|t| format!("{t}.weight")).collect();
    let shapes: Vec<Vec<usize>> = sizes.iter().map(|&n| vec![n]).collect();
    let mut ps: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.01; n]).collect();
    let grads: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![1e-3; n]).collect();
    let (mut stepper, choice) =
        Stepper::new(Backend::Wgsl, program, recipe, &names, &shapes, &ps, 1)?;
    stepper.step(&mut ps, &grads)?;
    let mut host = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        stepper.step(&mut ps, &grads)?;
        host.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let gbps = bytes as f64 / (t.step_ms * 1e6);
    let roofline_gbps = t.copy_bytes as f64 / (t.copy_ms * 1e6);
    Ok(BenchReport {
        recipe: recipe.name.clone(),
        backend: choice.backend.to_string(),
        params,
        tensors,
        threads: 1,
        step_ms: t.step_ms,
        gbps,
        roofline_gbps,
        roofline_ms: bytes as f64 / (roofline_gbps * 1e6),
        ratio: gbps / roofline_gbps,
        unfused_ratio: e.bytes_per_param as f64 / e.unfused_bytes_per_param.max(1) as f64,
        compile_ms: choice.compile_ms,
        source_ms: f64::NAN,
        passes: e.step_passes(),
        bytes_per_param: e.bytes_per_param,
        unfused_bytes_per_param: e.unfused_bytes_per_param,
        baseline: format!("copy shader, same bytes, on {}", t.adapter),
        host_step_ms: Some(fastest(&host)),
    })
}

/// `threads`, or every core for 0 (`--threads 0`).
pub fn threads_or_all(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    }
}

fn fastest(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The roofline: for each pass of the step, a plain loop with the same shape (the same
/// number of arrays only read, and of arrays read and written back), over the same number
/// of elements, on a pool of the same size in the same chunks. What the memory bus gives
/// loops that move exactly the step's bytes and compute nothing.
pub struct Roofline {
    inputs: Vec<Vec<f32>>,
    outputs: Vec<Vec<f32>>,
    /// Per pass: (arrays only read, arrays read and written).
    shapes: Vec<(usize, usize)>,
    pool: Option<rayon::ThreadPool>,
}

impl Roofline {
    pub fn new(params: usize, shapes: Vec<(usize, usize)>, threads: usize) -> Roofline {
        let reads = shapes.iter().map(|s| s.0).max().unwrap_or(0);
        let writes = shapes.iter().map(|s| s.1).max().unwrap_or(0);
        Roofline {
            inputs: (0..reads)
                .map(|k| vec![k as f32 * 0.5 + 1.0; params])
                .collect(),
            outputs: (0..writes).map(|_| vec![0.0; params]).collect(),
            shapes,
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(threads.max(1))
                .build()
                .ok(),
        }
    }

    /// The roofline of a fused step: per pass, arrays only read and arrays read and
    /// written back (a written array not read is counted as both, slightly in the
    /// roofline's disfavour).
    pub fn for_step(e: &Explain, params: usize, threads: usize) -> Roofline {
        let shapes = e
            .passes
            .iter()
            .filter(|p| !p.conditional)
            .map(|p| {
                let rmw = p.writes.iter().filter(|w| p.reads.contains(w)).count();
                (p.reads.len() - rmw, p.writes.len())
            })
            .collect();
        Roofline::new(params, shapes, threads)
    }

    /// Bytes one sweep moves per element.
    pub fn bytes_per_param(&self) -> usize {
        self.shapes.iter().map(|(r, w)| 4 * (r + 2 * w)).sum()
    }

    pub fn sweep(&mut self) {
        for k in 0..self.shapes.len() {
            let (r, w) = self.shapes[k];
            let ins: Vec<&[f32]> = self.inputs[..r].iter().map(|v| &v[..]).collect();
            let outs: Vec<&mut [f32]> = self.outputs[..w].iter_mut().map(|v| &mut v[..]).collect();
            match &self.pool {
                Some(pool) => pool.install(|| chunked(&ins, outs)),
                None => chunked(&ins, outs),
            }
        }
    }
}

/// Splits the arrays into the compiled step's chunks and sweeps them in parallel.
fn chunked(ins: &[&[f32]], outs: Vec<&mut [f32]>) {
    let chunk = anneal_compiler::kernel::exec::CHUNK;
    let n = ins
        .first()
        .map(|v| v.len())
        .or(outs.first().map(|v| v.len()))
        .unwrap_or(0);
    let mut parts: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(chunk)).map(|_| Vec::new()).collect();
    for o in outs {
        for (c, part) in o.chunks_mut(chunk).enumerate() {
            parts[c].push(part);
        }
    }
    parts.into_par_iter().enumerate().for_each(|(c, mut outs)| {
        let lo = c * chunk;
        let hi = (lo + chunk).min(n);
        let ins: Vec<&[f32]> = ins.iter().map(|v| &v[lo..hi]).collect();
        sweep(&ins, &mut outs);
    });
}

/// One loop over a chunk, with the arity fixed at compile time so it vectorizes: each
/// element's inputs summed, each output read, added to and written back.
fn sweep(ins: &[&[f32]], outs: &mut [&mut [f32]]) {
    fn fixed<const R: usize, const W: usize>(ins: &[&[f32]], outs: &mut [&mut [f32]]) {
        let n = ins
            .first()
            .map(|v| v.len())
            .or(outs.first().map(|v| v.len()))
            .unwrap_or(0);
        let ins: [&[f32]; R] = std::array::from_fn(|k| &ins[k][..n]);
        let mut it = outs.iter_mut();
        let mut outs: [&mut [f32]; W] = std::array::from_fn(|_| match it.next() {
            Some(o) => &mut o[..n],
            None => &mut [],
        });
        if W == 0 {
            // A read-only pass (a reduction): eight running sums, so the adds vectorize.
            let mut acc = [0f32; 8];
            for i in 0..n {
                let mut s = 0f32;
                for x in &ins {
                    s += x[i];
                }
                acc[i % 8] += s;
            }
            std::hint::black_box(acc);
            return;
        }
        for i in 0..n {
            let mut s = 0f32;
            for x in &ins {
                s += x[i];
            }
            for o in outs.iter_mut() {
                o[i] += s;
            }
        }
    }
    match (ins.len(), outs.len()) {
        (0, 0) => {}
        (1, 0) => fixed::<1, 0>(ins, outs),
        (2, 0) => fixed::<2, 0>(ins, outs),
        (3, 0) => fixed::<3, 0>(ins, outs),
        (0, 1) => fixed::<0, 1>(ins, outs),
        (1, 1) => fixed::<1, 1>(ins, outs),
        (2, 1) => fixed::<2, 1>(ins, outs),
        (3, 1) => fixed::<3, 1>(ins, outs),
        (0, 2) => fixed::<0, 2>(ins, outs),
        (1, 2) => fixed::<1, 2>(ins, outs),
        (2, 2) => fixed::<2, 2>(ins, outs),
        (3, 2) => fixed::<3, 2>(ins, outs),
        (0, 3) => fixed::<0, 3>(ins, outs),
        (1, 3) => fixed::<1, 3>(ins, outs),
        (2, 3) => fixed::<2, 3>(ins, outs),
        (3, 3) => fixed::<3, 3>(ins, outs),
        (0, 4) => fixed::<0, 4>(ins, outs),
        (1, 4) => fixed::<1, 4>(ins, outs),
        (2, 4) => fixed::<2, 4>(ins, outs),
        (3, 4) => fixed::<3, 4>(ins, outs),
        (r, w) => {
            // Rare shapes: the loop with run-time arity (slower; never seen in the stdlib).
            let _ = (r, w);
            let n = ins
                .first()
                .map(|v| v.len())
                .or(outs.first().map(|v| v.len()))
                .unwrap_or(0);
            for i in 0..n {
                let s: f32 = ins.iter().map(|x| x[i]).sum();
                for o in outs.iter_mut() {
                    o[i] += s;
                }
            }
        }
    }
}

/// Time from recipe text to callable passes: parse and check against the standard
/// library, lower to the kernel IR, JIT-compile (never from the cache). Milliseconds.
pub fn source_to_callable_ms(name: &str, text: &str) -> Result<f64> {
    let t0 = Instant::now();
    let c = anneal_compiler::compile(name, text);
    if c.has_errors() {
        return Err(Error::user(format!("{name} does not compile")));
    }
    let recipe = c.program.recipes.first().ok_or("no recipe")?;
    let kernel = anneal_compiler::kernel::lower(&c.program, recipe).map_err(|e| e.0)?;
    anneal_compiler::backends::cranelift::jit(&kernel)?;
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}
