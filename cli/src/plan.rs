//! `anneal plan`: what a recipe's parallelism plan costs on a given model and cluster —
//! memory per device, bytes communicated per step, the pipeline bubble, whether it fits —
//! or, with `--suggest`, the feasible plans for the world size, best first.

use anneal_compiler::ir::ParallelPlan;
use anneal_runtime::plan::{self, Estimate, ModelShape};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// The recipe file (its `parallel { ... }` block and update chain).
    pub file: PathBuf,
    /// Model parameters, e.g. 7e9.
    #[arg(long)]
    pub params: f64,
    /// Transformer layers.
    #[arg(long)]
    pub layers: u64,
    /// Hidden size.
    #[arg(long)]
    pub hidden: u64,
    /// Sequence length.
    #[arg(long)]
    pub seq: u64,
    /// Attention heads (default: hidden / 128).
    #[arg(long)]
    pub heads: Option<u64>,
    /// Devices in the job.
    #[arg(long)]
    pub world: u64,
    /// Memory per device, e.g. 80GiB or 40GB.
    #[arg(long, value_name = "SIZE")]
    pub gpu_mem: String,
    /// ZeRO stage instead of the recipe's.
    #[arg(long, value_name = "K")]
    pub zero: Option<u8>,
    /// Rows per micro-batch instead of the recipe's (default 1).
    #[arg(long)]
    pub micro_batch: Option<u64>,
    /// Rank every feasible plan for the world size instead.
    #[arg(long)]
    pub suggest: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn gib(b: f64) -> String {
    format!("{:.1} GiB", b / 1024f64.powi(3))
}

pub fn plan(args: &PlanArgs) -> Result<String, String> {
    let c = crate::run::compile_file(&args.file)?;
    let recipe = c
        .recipes()
        .first()
        .ok_or_else(|| format!("{} has no recipe to plan", args.file.display()))?;
    if !(args.params.is_finite() && args.params > 0.0) {
        return Err("--params must be a positive number of parameters, e.g. 7e9".into());
    }
    for (name, v) in [
        ("--layers", args.layers),
        ("--hidden", args.hidden),
        ("--seq", args.seq),
        ("--world", args.world),
    ] {
        if v == 0 {
            return Err(format!("{name} must be at least 1"));
        }
    }
    if args.world > 1 << 20 {
        return Err(format!(
            "--world {} is more devices than anneal plans for; use at most 1048576",
            args.world
        ));
    }
    let heads = args.heads.unwrap_or((args.hidden / 128).max(1));
    if heads == 0 || !args.hidden.is_multiple_of(heads) {
        return Err(format!(
            "--heads {heads} does not divide --hidden {}; give a head count that does",
            args.hidden
        ));
    }
    let shape = ModelShape {
        params: args.params,
        layers: args.layers,
        hidden: args.hidden,
        seq: args.seq,
        heads,
    };
    let gpu_mem = plan::parse_bytes(&args.gpu_mem).map_err(|e| format!("--gpu-mem: {e}"))?;
    let bytes = plan::state_bytes(&c.program, recipe);
    let mut p = recipe.parallel.clone().unwrap_or_else(|| ParallelPlan {
        data: args.world,
        ..ParallelPlan::single(recipe.span)
    });
    if let Some(z) = args.zero {
        if z > 3 {
            return Err(format!("--zero {z}: ZeRO stages are 0, 1, 2 and 3"));
        }
        p.zero = z;
    }
    if let Some(b) = args.micro_batch {
        if b == 0 {
            return Err("--micro-batch must be at least 1".into());
        }
        p.micro_batch = Some(b);
    }
    if args.suggest {
        let plans = plan::suggest(&shape, args.world, &p, bytes, gpu_mem);
        if args.json {
            return serde_json::to_string(&plans).map_err(|e| e.to_string());
        }
        if plans.is_empty() {
            return Err(format!(
                "no plan for {} devices fits {} per device; add devices, memory, or checkpointing",
                args.world,
                gib(gpu_mem)
            ));
        }
        let mut out = format!(
            "{} feasible plans for {} devices of {}, best first (bubble, bytes sent, no recompute, memory):\n",
            plans.len(),
            args.world,
            gib(gpu_mem)
        );
        out.push_str(&format!(
            "{:>5} {:>6} {:>8} {:>4} {:>5} {:>12} {:>14} {:>7}\n",
            "data", "tensor", "pipeline", "zero", "ckpt", "memory", "sent/step", "bubble"
        ));
        for e in plans.iter().take(10) {
            out.push_str(&format!(
                "{:>5} {:>6} {:>8} {:>4} {:>5} {:>12} {:>14} {:>6.1}%\n",
                e.plan.data,
                e.plan.tensor,
                e.plan.pipeline,
                e.plan.zero,
                if e.plan.checkpointing { "yes" } else { "no" },
                gib(e.per_rank.total),
                gib(e.comm_bytes_per_step),
                e.bubble_fraction * 100.0
            ));
        }
        out.pop();
        return Ok(out);
    }
    if p.world_size() != args.world {
        return Err(format!(
            "the recipe's plan uses data {} × tensor {} × pipeline {} = {} devices, not --world {}; \
             change its `parallel` block or --world",
            p.data,
            p.tensor,
            p.pipeline,
            p.world_size(),
            args.world
        ));
    }
    if !args.layers.is_multiple_of(p.pipeline) {
        return Err(format!(
            "--layers {} do not split evenly into {} pipeline stages",
            args.layers, p.pipeline
        ));
    }
    if !args.hidden.is_multiple_of(p.tensor) || !heads.is_multiple_of(p.tensor) {
        return Err(format!(
            "tensor parallelism {} must divide the hidden size {} and the heads {heads}",
            p.tensor, args.hidden
        ));
    }
    let e = plan::estimate(&shape, &p, bytes, gpu_mem);
    if args.json {
        return serde_json::to_string(&e).map_err(|e| e.to_string());
    }
    Ok(report(&e))
}

fn report(e: &Estimate) -> String {
    let s = &e.plan;
    let b = &e.bytes_per_param;
    let mut out = format!(
        "plan: data {} × tensor {} × pipeline {}, ZeRO-{}, {} micro-batch{} of {}, {}, {}\n",
        s.data,
        s.tensor,
        s.pipeline,
        s.zero,
        s.micro_batches,
        if s.micro_batches == 1 { "" } else { "es" },
        s.micro_batch,
        s.schedule,
        if s.checkpointing {
            "activation checkpointing"
        } else {
            "no checkpointing"
        }
    );
    let r = &e.per_rank;
    out.push_str(&format!("per device (of {}):\n", gib(e.gpu_mem)));
    out.push_str(&format!(
        "  weights           {:>12}   ({} bytes/param)\n",
        gib(r.params),
        b.weights
    ));
    out.push_str(&format!(
        "  gradients         {:>12}   ({} bytes/param)\n",
        gib(r.grads),
        b.grads
    ));
    out.push_str(&format!(
        "  optimizer state   {:>12}   ({} bytes/param: {} f32 state buffer{}{})\n",
        gib(r.optimizer_state),
        b.optimizer,
        b.state_buffers,
        if b.state_buffers == 1 { "" } else { "s" },
        if b.weights < 4.0 {
            " + f32 master weights"
        } else {
            ""
        }
    ));
    out.push_str(&format!(
        "  activations       {:>12}   ({} with checkpointing {})\n",
        gib(r.activations),
        gib(e.activations_other_checkpointing),
        if s.checkpointing { "off" } else { "on" }
    ));
    out.push_str(&format!(
        "  total             {:>12}   {}\n",
        gib(r.total),
        if e.fits { "fits" } else { "does NOT fit" }
    ));
    out.push_str(&format!(
        "communication: {} sent per device per step\npipeline bubble: {:.1}%",
        gib(e.comm_bytes_per_step),
        e.bubble_fraction * 100.0
    ));
    out
}
