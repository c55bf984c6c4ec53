//! `anneal bench`: the compiled update step's speed as a share of the memory-bandwidth
//! roofline measured in the same run (`anneal_runtime::bench`).

use std::path::PathBuf;

use anneal_runtime::bench::{bench as run_bench, source_to_callable_ms};
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// The recipe file (its first recipe is benchmarked).
    pub file: PathBuf,
    /// Parameters in total, split into --tensors equal tensors.
    #[arg(long, default_value_t = 16 << 20)]
    pub params: usize,
    #[arg(long, default_value_t = 8)]
    pub tensors: usize,
    /// Threads for the step and the roofline loop (0: all cores; the GPU ignores it).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// The back end to time.
    #[arg(long, value_parser = crate::BackendParser::ANY, default_value = "cranelift")]
    pub backend: crate::Backend,
    /// Time Cranelift and LLVM one after the other, each against its own roofline.
    #[arg(long, conflicts_with = "backend")]
    pub compare: bool,
    /// Print one JSON object (an array of two with --compare).
    #[arg(long)]
    pub json: bool,
    /// Matrix tensors instead of --params/--tensors: `gpt2-small` (12 layers of 768x768*4,
    /// 768x3072, 3072x768) or a list like `768x768*4,768x3072`; the step is timed against
    /// the GEMM library alone on the products it computed.
    #[arg(long, conflicts_with_all = ["params", "tensors"])]
    pub shapes: Option<String>,
    /// With --shapes: how many times the list repeats (gpt2-small: 12).
    #[arg(long, requires = "shapes")]
    pub layers: Option<usize>,
    /// With --shapes: steps timed together per run (a recipe's refresh period, so that
    /// its refresh is counted once per period).
    #[arg(long, requires = "shapes", default_value_t = 1)]
    pub steps: usize,
}

pub fn bench(args: &BenchArgs) -> Result<(), String> {
    let Some(c) = crate::load(&args.file, true) else {
        return Err(format!(
            "{} does not compile; `anneal check {}` shows why",
            args.file.display(),
            args.file.display()
        ));
    };
    let recipe = c.recipes().first().ok_or_else(|| {
        format!(
            "{} has no recipe; add `recipe NAME {{ update = ... }}`",
            args.file.display()
        )
    })?;
    let backends = if args.compare {
        vec![crate::Backend::Cranelift, crate::Backend::Llvm]
    } else {
        vec![args.backend]
    };
    if let Some(spec) = &args.shapes {
        let shapes = anneal_runtime::matrix_bench::shapes(spec, args.layers)?;
        let mut reports = Vec::new();
        for backend in backends {
            reports.push(anneal_runtime::matrix_bench::bench_matrices(
                &c.program,
                recipe,
                backend,
                &shapes,
                args.threads,
                args.steps,
            )?);
        }
        return print_reports(&reports, args, print_matrix_report);
    }
    if args.params == 0 || args.params > 1 << 31 {
        return Err(format!(
            "--params {} is out of range; give 1 to {}",
            args.params,
            1u64 << 31
        ));
    }
    let mut reports = Vec::new();
    for backend in backends {
        let mut r = run_bench(
            &c.program,
            recipe,
            backend,
            args.params,
            args.tensors,
            args.threads,
        )?;
        if backend == crate::Backend::Cranelift {
            if let Ok(text) = std::fs::read_to_string(&args.file) {
                r.source_ms = source_to_callable_ms(&args.file.display().to_string(), &text)?;
            }
        }
        reports.push(r);
    }
    print_reports(&reports, args, print_report)
}

/// `--json`: one object, or the array of two with `--compare`; else `text` for each.
fn print_reports<T: serde::Serialize>(
    reports: &[T],
    args: &BenchArgs,
    text: fn(&T),
) -> Result<(), String> {
    if !args.json {
        reports.iter().for_each(text);
        return Ok(());
    }
    let json = match reports {
        [one] if !args.compare => serde_json::to_string(one),
        all => serde_json::to_string(all),
    };
    outln!("{}", json.map_err(|e| e.to_string())?);
    Ok(())
}

fn print_matrix_report(r: &anneal_runtime::matrix_bench::MatrixBenchReport) {
    outln!(
        "{} on {}: {} params in {} matrices, {} thread{}{}",
        r.recipe,
        r.backend,
        r.params,
        r.tensors,
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        if r.steps_per_run == 1 {
            String::new()
        } else {
            format!(", {} steps per run", r.steps_per_run)
        }
    );
    outln!(
        "  step         {:>9.2} ms  {:>6.1} GFLOP/s  ({} products, {:.2} GFLOP a step)",
        r.step_ms,
        r.step_gflops,
        r.products,
        r.gflop
    );
    outln!(
        "  GEMM alone   {:>9.2} ms  {:>6.1} GFLOP/s  (the same products through the same GEMM, same threads)",
        r.gemm_ms,
        r.gemm_gflops
    );
    outln!("  ratio        {:>9.2}     of the GEMM peak", r.ratio);
}

fn print_report(r: &anneal_runtime::bench::BenchReport) {
    outln!(
        "{} on {}: {} params in {} tensors, {} thread{}",
        r.recipe,
        r.backend,
        r.params,
        r.tensors,
        r.threads,
        if r.threads == 1 { "" } else { "s" }
    );
    outln!(
        "  fused step   {:>8.3} ms  {:>6.1} GB/s  {} pass{}, {} bytes/param",
        r.step_ms,
        r.gbps,
        r.passes,
        if r.passes == 1 { "" } else { "es" },
        r.bytes_per_param
    );
    outln!(
        "  roofline     {:>8.3} ms  {:>6.1} GB/s  ({})",
        r.roofline_ms,
        r.roofline_gbps,
        r.baseline
    );
    outln!("  ratio        {:>8.2}     of the roofline", r.ratio);
    if let Some(ms) = r.host_step_ms {
        outln!("  with copies  {ms:>8.3} ms  (a whole step: tensors up to the GPU and back)");
    }
    outln!(
        "  unfused      {:>8.2}     of the roofline at best ({} bytes/param, one sweep per transform)",
        r.unfused_ratio,
        r.unfused_bytes_per_param
    );
    if r.source_ms.is_nan() {
        outln!(
            "  compile      {:>8.2} ms  (kernel IR to callable)",
            r.compile_ms
        );
    } else {
        outln!(
            "  compile      {:>8.2} ms  (kernel IR to callable; {:.2} ms from recipe text)",
            r.compile_ms,
            r.source_ms
        );
    }
}
