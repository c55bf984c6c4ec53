//! The `parallel { ... }` block: degrees, ZeRO stage, micro-batching, pipeline schedule.
//! Entry point: `check_plan`. Everything a cluster job would find out hours in is checked
//! here: unknown keys (DeepSpeed drops them silently), degrees against the world size,
//! layers against pipeline stages, ZeRO-2/3 with pipelining (DeepSpeed refuses it), the
//! batch arithmetic, and too few micro-batches (a warning with the bubble it costs).

use crate::ast::{Expr, ExprKind, Ident};
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::ir::{DataSpec, ModelSpec, ParallelPlan, PipeSchedule};
use crate::source::Span;

const KEYS: [&str; 11] = [
    "data",
    "tensor",
    "pipeline",
    "zero",
    "micro_batches",
    "micro_batch",
    "global_batch",
    "schedule",
    "virtual_stages",
    "checkpointing",
    "world",
];

/// The most devices, micro-batches or rows a setting may name (as `anneal plan --world`):
/// products of three settings stay far inside u64.
const MAX_SETTING: u64 = 1 << 20;

/// A whole number in [`min`, MAX_SETTING], or a diagnostic naming the key.
#[allow(clippy::result_large_err)]
fn whole(key: &Ident, e: &Expr, min: u64) -> Result<u64, Diagnostic> {
    super::args::whole(e)
        .filter(|n| (min..=MAX_SETTING).contains(n))
        .ok_or_else(|| {
            Diagnostic::error(
                "E0190",
                e.span,
                format!(
                    "`{}` must be a whole number from {min} to {MAX_SETTING}",
                    key.name
                ),
            )
            .with_label("not a whole number in range")
            .with_help(format!("write e.g. `{}: {}`", key.name, min.max(2)))
        })
}

/// Checks a `parallel` block against the recipe's model and data; `None` after an error.
pub(crate) fn check_plan(
    entries: &[(Ident, Expr)],
    span: Span,
    model: Option<&ModelSpec>,
    data: Option<&DataSpec>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ParallelPlan> {
    let mut plan = ParallelPlan::single(span);
    let mut ok = true;
    let mut seen: Vec<&str> = Vec::new();
    let mut global_batch: Option<(u64, Span)> = None;
    let mut virtual_stages: Option<(u64, Span)> = None;
    let mut spans: std::collections::HashMap<&str, Span> = Default::default();
    for (k, v) in entries {
        let Some(key) = KEYS.iter().copied().find(|n| *n == k.name) else {
            let help = match did_you_mean(&k.name, KEYS) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("the settings are {}", KEYS.join(", ")),
            };
            diags.push(
                Diagnostic::error(
                    "E0190",
                    k.span,
                    format!("`parallel` has no setting `{}`", k.name),
                )
                .with_label("unknown setting")
                .with_help(help),
            );
            ok = false;
            continue;
        };
        if seen.contains(&key) {
            diags.push(
                Diagnostic::error("E0190", k.span, format!("`{key}` is given twice"))
                    .with_label("given again")
                    .with_help("keep one"),
            );
            ok = false;
            continue;
        }
        seen.push(key);
        spans.insert(key, v.span);
        let result = match key {
            "data" => whole(k, v, 1).map(|n| plan.data = n),
            "tensor" => whole(k, v, 1).map(|n| plan.tensor = n),
            "pipeline" => whole(k, v, 1).map(|n| plan.pipeline = n),
            "micro_batches" => whole(k, v, 1).map(|n| plan.micro_batches = n),
            "micro_batch" => whole(k, v, 1).map(|n| plan.micro_batch = Some(n)),
            "world" => whole(k, v, 1).map(|n| plan.world = Some(n)),
            "global_batch" => whole(k, v, 1).map(|n| global_batch = Some((n, v.span))),
            "virtual_stages" => whole(k, v, 2).map(|n| virtual_stages = Some((n, v.span))),
            "zero" => match whole(k, v, 0) {
                Ok(n) if n <= 3 => {
                    plan.zero = n as u8;
                    Ok(())
                }
                _ => Err(Diagnostic::error("E0190", v.span, "`zero` is a ZeRO stage: 0, 1, 2 or 3")
                    .with_label("not a ZeRO stage")
                    .with_help("1 shards optimizer state, 2 gradients too, 3 parameters too (Rajbhandari et al. 2020)")),
            },
            "checkpointing" => match &v.kind {
                ExprKind::Bool(b) => {
                    plan.checkpointing = *b;
                    Ok(())
                }
                _ => Err(Diagnostic::error("E0190", v.span, "`checkpointing` is `true` or `false`")
                    .with_label("not a boolean")
                    .with_help("`checkpointing: true` keeps each layer's input and recomputes the rest")),
            },
            _ => match &v.kind {
                ExprKind::Name(n) if n == "gpipe" => {
                    plan.schedule = PipeSchedule::Gpipe;
                    Ok(())
                }
                ExprKind::Name(n) if n == "one_f_one_b" => {
                    plan.schedule = PipeSchedule::OneFOneB;
                    Ok(())
                }
                ExprKind::Name(n) if n == "interleaved" => {
                    plan.schedule = PipeSchedule::Interleaved { chunks: 2 };
                    Ok(())
                }
                _ => Err(Diagnostic::error("E0190", v.span, "unknown pipeline schedule")
                    .with_label("not a schedule")
                    .with_help("write `schedule: gpipe`, `one_f_one_b` or `interleaved`")),
            },
        };
        if let Err(d) = result {
            diags.push(d);
            ok = false;
        }
    }
    match (plan.schedule, virtual_stages) {
        (PipeSchedule::Interleaved { .. }, Some((v, _))) => {
            plan.schedule = PipeSchedule::Interleaved { chunks: v }
        }
        (_, Some((_, s))) => {
            diags.push(
                Diagnostic::error(
                    "E0190",
                    s,
                    "`virtual_stages` only applies to `schedule: interleaved`",
                )
                .with_label("no interleaving")
                .with_help("add `schedule: interleaved` or remove `virtual_stages`"),
            );
            ok = false;
        }
        _ => {}
    }
    if !ok {
        return None;
    }
    let at = |key: &str| spans.get(key).copied().unwrap_or(span);
    // Degrees against the world size.
    if let Some(world) = plan.world {
        if plan.world_size() != world {
            let others = plan.tensor * plan.pipeline;
            let hint = if world % others == 0 {
                format!(
                    "with tensor {} and pipeline {}, `data: {}` fills it",
                    plan.tensor,
                    plan.pipeline,
                    world / others
                )
            } else {
                format!("tensor × pipeline = {others} does not divide {world}; choose degrees whose product is {world}")
            };
            diags.push(
                Diagnostic::error(
                    "E0191",
                    at("world"),
                    format!(
                        "data {} × tensor {} × pipeline {} = {} devices, but the world is {world}",
                        plan.data,
                        plan.tensor,
                        plan.pipeline,
                        plan.world_size()
                    ),
                )
                .with_label("degrees do not multiply to this")
                .with_help(hint),
            );
            ok = false;
        }
    }
    // Layers against stages: an MLP's layers are its Linear layers.
    if let Some(m) = model.filter(|m| m.kind == "mlp" && plan.pipeline > 1) {
        let layers = m.layers.len().saturating_sub(1) as u64;
        if !layers.is_multiple_of(plan.pipeline) {
            diags.push(
                Diagnostic::error(
                    "E0192",
                    at("pipeline"),
                    format!(
                        "{layers} layers do not split evenly into {} pipeline stages",
                        plan.pipeline
                    ),
                )
                .with_label("uneven stages")
                .with_help(format!(
                    "use a pipeline degree that divides {layers} (e.g. {})",
                    (1..=layers)
                        .rev()
                        .find(|d| layers.is_multiple_of(*d) && *d <= plan.pipeline)
                        .unwrap_or(1)
                )),
            );
            ok = false;
        }
    }
    // DeepSpeed refuses ZeRO stages that shard gradients with pipeline parallelism.
    if plan.zero >= 2 && plan.pipeline > 1 {
        diags.push(
            Diagnostic::error(
                "E0193",
                at("zero"),
                format!(
                    "ZeRO-{} cannot be combined with pipeline parallelism",
                    plan.zero
                ),
            )
            .with_label("shards gradients across the pipeline's micro-batches")
            .with_secondary(at("pipeline"), "pipeline parallelism here")
            .with_help("use `zero: 1` with pipelining (as DeepSpeed requires), or `pipeline: 1`"),
        );
        ok = false;
    }
    if let PipeSchedule::Interleaved { chunks } = plan.schedule {
        if !plan.micro_batches.is_multiple_of(plan.pipeline) {
            diags.push(
                Diagnostic::error(
                    "E0194",
                    at("micro_batches"),
                    format!(
                        "the interleaved schedule needs micro-batches in multiples of the {} stages, not {}",
                        plan.pipeline, plan.micro_batches
                    ),
                )
                .with_label("not a multiple of the stages")
                .with_help(format!(
                    "use `micro_batches: {}` or `schedule: one_f_one_b`",
                    plan.micro_batches.div_ceil(plan.pipeline) * plan.pipeline
                )),
            );
            ok = false;
        }
        if let Some(m) = model.filter(|m| m.kind == "mlp") {
            let layers = m.layers.len().saturating_sub(1) as u64;
            if !layers.is_multiple_of(plan.pipeline * chunks) {
                diags.push(
                    Diagnostic::error(
                        "E0192",
                        at("virtual_stages"),
                        format!("{layers} layers do not split into {} stages × {chunks} chunks", plan.pipeline),
                    )
                    .with_label("uneven chunks")
                    .with_help("choose `virtual_stages` so that pipeline × virtual_stages divides the layers"),
                );
                ok = false;
            }
        }
    }
    // Batch arithmetic: global batch = micro-batch × micro-batches × data.
    let implied = plan.micro_batch.map(|b| b * plan.micro_batches * plan.data);
    if let (Some((g, s)), Some(i)) = (global_batch, implied) {
        if g != i {
            diags.push(
                Diagnostic::error(
                    "E0195",
                    s,
                    format!(
                        "global batch {g} ≠ micro_batch {} × micro_batches {} × data {} = {i}",
                        plan.micro_batch.unwrap_or(0),
                        plan.micro_batches,
                        plan.data
                    ),
                )
                .with_label("inconsistent batch sizes")
                .with_help(format!(
                    "write `global_batch: {i}`, or change the micro-batching"
                )),
            );
            ok = false;
        }
    }
    if let (Some((g, s)), None) = (global_batch, implied) {
        let per = plan.micro_batches * plan.data;
        if g % per != 0 {
            diags.push(
                Diagnostic::error(
                    "E0195",
                    s,
                    format!("global batch {g} does not split into {per} micro-batches (micro_batches × data)"),
                )
                .with_label("uneven micro-batches")
                .with_help(format!("use a multiple of {per}, e.g. `global_batch: {}`", g.div_ceil(per) * per)),
            );
            ok = false;
        } else {
            plan.micro_batch = Some(g / per);
        }
    }
    if let (Some(d), Some(i)) = (
        data,
        plan.micro_batch.map(|b| b * plan.micro_batches * plan.data),
    ) {
        if d.batch as u64 != i {
            diags.push(
                Diagnostic::error(
                    "E0195",
                    span,
                    format!("the data's batch is {} rows per step, but the plan gives {i} (micro_batch × micro_batches × data)", d.batch),
                )
                .with_label("the plan's global batch")
                .with_help(format!("write `batch: {i}` in `data = csv(...)`, or change the plan")),
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    // Too few micro-batches: legal, but stages idle.
    if plan.pipeline > 1 && plan.micro_batches < plan.pipeline {
        diags.push(
            Diagnostic::warning(
                "W0010",
                at("micro_batches"),
                format!(
                    "{} micro-batches for {} pipeline stages: the stages are idle {:.0}% of each step",
                    plan.micro_batches,
                    plan.pipeline,
                    plan.bubble_fraction() * 100.0
                ),
            )
            .with_label("fewer micro-batches than stages")
            .with_help(format!(
                "the bubble is (p − 1)/(m + p − 1); `micro_batches: {}` brings it to {:.0}%",
                4 * plan.pipeline,
                (plan.pipeline - 1) as f64 / (5 * plan.pipeline - 1) as f64 * 100.0
            )),
        );
    }
    Some(plan)
}
