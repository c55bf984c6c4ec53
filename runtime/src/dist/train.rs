//! The data-parallel training loop, one call per rank. Each step's batch is split into
//! contiguous shares (uneven when the ranks do not divide it); a rank's gradient is the
//! mean over its rows weighted by its share of the batch, so the sum over ranks is the
//! single-process gradient of the whole batch (up to f32 summation order).
//!
//! - ZeRO-0: gradients all-reduced; every rank runs the whole update step.
//! - ZeRO-1: gradients all-reduced; each rank keeps the optimizer state of its contiguous
//!   share of the flattened parameters, runs the step on that share, and the updated
//!   parameters are all-gathered (Rajbhandari et al. 2020, §5.1).
//! - ZeRO-2: the same, but gradients are reduce-scattered: a rank only ever holds the
//!   summed gradient of its share (§5.2).
//!
//! Running the step on a share is exact only for element-wise steps: a norm, a clip, a
//! trust ratio, a shape fact or a model call would see part of a tensor. Such recipes are
//! refused under ZeRO-1/2 with the reason (ZeRO-0 runs them all).

use super::{shares, Comm};
use crate::train::{Run, Trace};
use anneal_compiler::backends::Stepper;
use anneal_compiler::error::{Error, Result};
use anneal_compiler::ir::{Program, Recipe};
use anneal_compiler::kernel::{lower, Host, PassKind};
use anneal_compiler::state::StateValue;

/// What a rank reports.
#[derive(Debug, Clone, Default)]
pub struct DistOutcome {
    /// The whole batch's loss and gradient norm per step (the same on every rank).
    pub trace: Trace,
    /// Optimizer-state values this rank keeps (f32 element states).
    pub state_values: usize,
    /// Gradient values this rank holds after the exchange.
    pub grad_values: usize,
    pub backend: String,
}

/// Why `recipe`'s step cannot run on a share of the parameters, if it cannot.
pub fn shard_refusal(program: &Program, recipe: &Recipe) -> Option<String> {
    let k = match lower(program, recipe) {
        Ok(k) => k,
        Err(why) => return Some(format!("it has no fused step ({why})")),
    };
    if k.passes
        .iter()
        .any(|p| p.kind != PassKind::Map && p.kind != PassKind::SkipMap)
    {
        return Some("it reduces over tensors (a norm, clip or trust ratio)".into());
    }
    if !k.calls.is_empty() || !k.slice_reds.is_empty() {
        return Some("it calls the model, works on rows and columns, or on matrices".into());
    }
    if k.host
        .iter()
        .any(|h| matches!(h, Host::Shape(_) | Host::Reduce(_)))
    {
        return Some("it reads tensor shapes or reductions".into());
    }
    None
}

/// This rank's share of the flattened parameters as pieces of tensors: (tensor, start, end).
fn pieces(sizes: &[usize], lo: usize, hi: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (t, &n) in sizes.iter().enumerate() {
        let (a, b) = (lo.max(offset), hi.min(offset + n));
        if a < b {
            out.push((t, a - offset, b - offset));
        }
        offset += n;
    }
    out
}

/// Trains `params` (identical on every rank at the start) for `run.steps` steps under ZeRO
/// stage `zero` (0, 1 or 2). `run` is what one process would train with; each rank passes
/// the same, bar its communicator (`run.threads` is this rank's).
pub fn train_data_parallel(
    run: &Run,
    zero: u8,
    comm: &dyn Comm,
    names: &[String],
    shapes: &[Vec<usize>],
    params: &mut [Vec<f32>],
) -> Result<DistOutcome> {
    let (rank, size) = (comm.rank(), comm.size());
    if zero > 2 {
        return Err("ZeRO-3 (sharded parameters) is not run here yet; use zero: 0, 1 or 2".into());
    }
    if !run.recipe.capabilities.is_empty()
        || !run.recipe.curriculum.is_empty()
        || run.curriculum.is_some()
        || run.accumulate != 1
    {
        return Err(Error::user(format!(
            "recipe `{}` calls the model mid-step, samples a curriculum or accumulates micro-batches, which data-parallel runs do not support yet",
            run.recipe.name
        )));
    }
    let scales_loss = run
        .recipe
        .stages
        .iter()
        .any(|s| run.program.defs[s.def].name == "GradScaler");
    if run.recipe.param_dtype != anneal_compiler::ir::Dtype::F32 || scales_loss {
        return Err(Error::user(format!(
            "recipe `{}` stores weights in half precision or scales the loss, which data-parallel runs do not support yet; run it in one process",
            run.recipe.name
        )));
    }
    if zero > 0 {
        if let Some(why) = shard_refusal(run.program, run.recipe) {
            return Err(Error::user(format!(
                "ZeRO-{} runs the update step on each rank's share of the parameters, which recipe `{}` cannot do: {why}; use `zero: 0`",
                zero, run.recipe.name
            )));
        }
    }
    let sizes: Vec<usize> = params.iter().map(Vec::len).collect();
    let total: usize = sizes.iter().sum();
    let shard = shares(total, size);
    let counts: Vec<usize> = shard.iter().map(|(a, b)| b - a).collect();
    let (lo, hi) = shard[rank];
    let mine = pieces(&sizes, lo, hi);
    // The tensors this rank's step runs on: everything, or its share's pieces.
    let (step_names, step_shapes, mut step_params): (Vec<String>, Vec<Vec<usize>>, Vec<Vec<f32>>) =
        if zero == 0 {
            (names.to_vec(), shapes.to_vec(), params.to_vec())
        } else {
            (
                mine.iter().map(|(t, _, _)| names[*t].clone()).collect(),
                mine.iter().map(|(_, a, b)| vec![b - a]).collect(),
                mine.iter()
                    .map(|(t, a, b)| params[*t][*a..*b].to_vec())
                    .collect(),
            )
        };
    let mut stepper = if step_params.is_empty() {
        None
    } else {
        Some(
            Stepper::new(
                run.backend,
                run.program,
                run.recipe,
                &step_names,
                &step_shapes,
                &step_params,
                run.threads,
            )?
            .0,
        )
    };
    let mut out = DistOutcome {
        backend: stepper
            .as_ref()
            .map(|s| s.backend().to_string())
            .unwrap_or_default(),
        ..DistOutcome::default()
    };
    for t in 0..run.steps {
        let rows = run.batches.batch(t);
        let (a, b) = shares(rows.len(), size)[rank];
        let weight = (b - a) as f32 / rows.len().max(1) as f32;
        let mut flat = vec![0f32; total + 1];
        if b > a {
            let (x, y) = run.data.gather(&rows[a..b]);
            let (loss, grads) = run.model.loss_and_grad(params, &x, &y)?;
            let mut at = 0;
            for g in &grads {
                for v in g {
                    flat[at] = v * weight;
                    at += 1;
                }
            }
            flat[total] = loss * weight;
        }
        // The gradient this rank steps with: its share's pieces, or every tensor.
        let (loss, grads_mine, norm) = if zero == 2 {
            let part = comm.reduce_scatter_sum(&flat[..total], &counts)?;
            // The loss and the squared norm of this rank's share, summed in one exchange.
            let mut sums = [flat[total], part.iter().map(|g| g * g).sum::<f32>()];
            comm.all_reduce_sum(&mut sums)?;
            out.grad_values = part.len();
            (sums[0], part, f64::from(sums[1]).sqrt())
        } else {
            comm.all_reduce_sum(&mut flat)?;
            let loss = flat[total];
            flat.truncate(total);
            out.grad_values = total;
            let norm = flat
                .iter()
                .map(|g| f64::from(*g) * f64::from(*g))
                .sum::<f64>()
                .sqrt();
            let grads = if zero == 0 {
                flat
            } else {
                flat[lo..hi].to_vec()
            };
            (loss, grads, norm)
        };
        out.trace.loss.push(loss);
        out.trace.grad_norm.push(norm);
        // The step's gradient tensors, shaped like the stepper's tensors.
        let mut step_grads = Vec::with_capacity(step_params.len());
        let mut at = 0;
        for p in &step_params {
            step_grads.push(grads_mine[at..at + p.len()].to_vec());
            at += p.len();
        }
        if let Some(s) = stepper.as_mut() {
            s.step(&mut step_params, &step_grads)?;
            // The whole batch's loss, the same on every rank: the metric a schedule that
            // follows one sees, as in the one-process loop.
            s.observe(f64::from(loss));
        }
        if zero == 0 {
            for (p, q) in params.iter_mut().zip(&step_params) {
                p.copy_from_slice(q);
            }
        } else {
            let share: Vec<f32> = step_params.concat();
            let all = comm.all_gather(&share, &counts)?;
            let mut at = 0;
            for p in params.iter_mut() {
                let n = p.len();
                p.copy_from_slice(&all[at..at + n]);
                at += n;
            }
        }
        if t == 0 {
            out.trace.params_step1 = params.to_vec();
        }
    }
    if let Some(s) = &stepper {
        out.state_values = s
            .state()
            .states()
            .iter()
            .flatten()
            .map(|v| match v {
                StateValue::Element(ts) => ts.iter().map(Vec::len).sum(),
                _ => 0,
            })
            .sum();
    }
    Ok(out)
}
