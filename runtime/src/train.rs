//! The training loop (../shared/conformance/FORMAT-TRAIN.md §4): for each optimizer step,
//! accumulate the mean gradient of `accumulate` micro-batches, measure its norm, and run
//! the recipe's compiled step on it (with the model as the oracle for SAM's shifted
//! gradient). Records what a run reports: per-micro-batch losses, gradient norms, the
//! learning rate and momentum of every group at every step.

use crate::curriculum::{Sampler, StepStats};
use crate::data::{BatchSource, Dataset};
use crate::model::Model;
use anneal_compiler::backends::{Backend, Choice, Stepper};
use anneal_compiler::error::{Error, Result};
use anneal_compiler::interp::{eval_sched_observed, Env, Oracle};
use anneal_compiler::ir::{Dtype, HyperValue, Program, Recipe};
use anneal_compiler::state::{StateValue, StepState};
use std::borrow::Cow;
use std::cell::RefCell;

/// What a run records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    pub loss: Vec<f32>,
    pub grad_norm: Vec<f64>,
    /// Per step, per group.
    pub lr: Vec<Vec<f64>>,
    pub momentum: Vec<Vec<f64>>,
    /// SAM only: the loss and gradient norm at the perturbed point.
    pub loss_perturbed: Vec<f32>,
    pub grad_norm_perturbed: Vec<f64>,
    pub params_step1: Vec<Vec<f32>>,
    /// Per step: each tensor's gradient norm, the loss scale used (1 without loss
    /// scaling), and whether the step was skipped (an overflow under loss scaling).
    pub tensor_norms: Vec<Vec<f64>>,
    pub loss_scale: Vec<f64>,
    pub skipped: Vec<bool>,
    /// Per micro-batch, with a curriculum: visible fraction, mean difficulty, kept fraction.
    pub curriculum: Vec<StepStats>,
    /// The back end that ran the step, its compile time, and why `auto` fell back.
    pub backend: Option<Choice>,
}

/// A value as the weight storage type keeps it (round to nearest even), back in f32.
pub fn round_to(dtype: Dtype, x: f32) -> f32 {
    match dtype {
        Dtype::F32 => x,
        Dtype::Bf16 => half::bf16::from_f32(x).to_f32(),
        Dtype::F16 => half::f16::from_f32(x).to_f32(),
    }
}

/// A training run's inputs.
pub struct Run<'a> {
    pub program: &'a Program,
    pub recipe: &'a Recipe,
    pub model: &'a dyn Model,
    pub data: &'a Dataset,
    /// Micro-batch m uses `batches.batch(m)`, unless a curriculum draws them.
    pub batches: &'a dyn BatchSource,
    /// The recipe's curriculum over the training rows, when it has one.
    pub curriculum: Option<&'a RefCell<Sampler>>,
    pub accumulate: usize,
    pub steps: usize,
    /// Who runs the update step (`auto`: Cranelift when the recipe lowers).
    pub backend: Backend,
    /// Threads for the compiled step (0: all cores).
    pub threads: usize,
}

/// The rows a curriculum gives micro-batch at step `t`: losses refreshed when due, a batch
/// drawn from the visible set, and (OHEM, selective backprop) the part kept for backprop.
fn draw_curriculum(
    run: &Run,
    s: &mut Sampler,
    t: u64,
    params: &[Vec<f32>],
) -> Result<(Vec<usize>, StepStats)> {
    let losses = |rows: &[usize]| -> Result<Vec<f32>> {
        let (x, y) = run.data.gather(rows);
        run.model
            .per_example_losses(params, &x, &y)
            .unwrap_or_else(|| {
                Err(
                    "this curriculum needs per-example losses, which the model does not provide"
                        .into(),
                )
            })
    };
    s.prepare(t, losses)?;
    let (picks, visible_fraction) = s.draw(t);
    let mean_difficulty = s.mean_difficulty(&picks);
    let mut rows = s.rows_at(&picks);
    let drawn = rows.len();
    if s.selects(t) {
        let batch_losses = losses(&rows)?;
        let keep = s.select(t, &batch_losses);
        rows = keep.iter().map(|i| rows[*i]).collect();
    }
    let kept_fraction = rows.len() as f64 / drawn.max(1) as f64;
    Ok((
        rows,
        StepStats {
            visible_fraction,
            mean_difficulty,
            kept_fraction,
        },
    ))
}

/// The model on one micro-batch, for capabilities such as SAM's `grad_at`.
struct BatchOracle<'a> {
    model: &'a dyn Model,
    x: Vec<f32>,
    y: Vec<f32>,
    last_loss: Option<f32>,
    last_norm: Option<f64>,
    /// The step's training loss (the mean over its micro-batches), for `loss`.
    loss: f64,
}

impl Oracle for BatchOracle<'_> {
    fn grad_at(&mut self, params: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, Error> {
        let (loss, grads) = self.model.loss_and_grad(params, &self.x, &self.y)?;
        self.last_loss = Some(loss);
        self.last_norm = Some(global_norm(&grads));
        Ok(grads)
    }

    fn hvp(&mut self, params: &[Vec<f32>], v: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, Error> {
        self.model
            .hvp(params, v)
            .ok_or_else(|| Error::user("this model does not compute Hessian-vector products"))
    }

    fn loss_at(&mut self, params: &[Vec<f32>]) -> Result<(f64, Vec<Vec<f32>>), Error> {
        let (loss, grads) = self.model.loss_and_grad(params, &self.x, &self.y)?;
        Ok((f64::from(loss), grads))
    }

    fn loss(&mut self) -> Result<f64, Error> {
        Ok(self.loss)
    }
}

pub fn global_norm(grads: &[Vec<f32>]) -> f64 {
    grads
        .iter()
        .flatten()
        .map(|g| f64::from(*g) * f64::from(*g))
        .sum::<f64>()
        .sqrt()
}

/// The value a stage's hyperparameter takes for `group` at `count`, with the metrics
/// observed so far (for schedules that follow one, such as ReduceLROnPlateau).
pub fn hyper_at(env: Env, v: &HyperValue, count: f64, group: usize) -> Option<f64> {
    match v {
        HyperValue::PerGroup(vs) => hyper_at(env, vs.get(group)?, count, group),
        HyperValue::Schedule(s) => eval_sched_observed(env, s, count, group).ok(),
        HyperValue::List(items) => hyper_at(env, items.first()?, count, group),
        other => other.as_f64(),
    }
}

/// The names a run reports its learning rate and momentum under: the optimizer's (the
/// last stage's) first hyperparameter of these names.
pub const LR_NAMES: [&str; 2] = ["lr", "learning_rate"];
pub const MOMENTUM_NAMES: [&str; 2] = ["momentum", "betas"];

/// The optimizer's hyperparameter named by the first of `names` it has, per group, as the
/// next step uses it: read at the optimizer's own count (the updates it has made; a
/// skipped step makes none) with the metrics observed so far. `None` when the optimizer
/// has none of them.
pub fn optimizer_values(
    program: &Program,
    recipe: &Recipe,
    stepper: &Stepper,
    names: &[&str],
) -> Option<Vec<Option<f64>>> {
    let stage = recipe.stages.last()?;
    let v = names.iter().find_map(|n| stage.arg(program, n))?;
    let count = stepper.stage_counts().last().copied().unwrap_or(0) as f64;
    let env = Env {
        program,
        metrics: stepper.state().metrics(),
        replays: Some(stepper.state().replays()),
    };
    Some(
        (0..recipe.groups.len().max(1))
            .map(|g| hyper_at(env, v, count, g))
            .collect(),
    )
}

/// Trains `params` in place; returns what the run recorded.
pub fn train(
    run: &Run,
    names: &[String],
    shapes: &[Vec<usize>],
    params: &mut [Vec<f32>],
) -> Result<Trace> {
    train_with_progress(run, names, shapes, params, None, &mut |_, _, _, _| Ok(()))
}

/// Called after every optimizer step with (step, trace, weights, stepper).
pub type Progress<'a> = dyn FnMut(usize, &Trace, &[Vec<f32>], &Stepper) -> Result<()> + 'a;

/// Where a resumed run starts: the steps already taken and the interpreter's progress.
pub struct Resume {
    pub step: usize,
    pub snapshot: StepState,
}

/// `train`, optionally resuming, calling `progress(step, trace, params, interpreter)` after
/// every optimizer step (for progress bars and checkpoints; an error stops the run).
pub fn train_with_progress(
    run: &Run,
    names: &[String],
    shapes: &[Vec<usize>],
    params: &mut [Vec<f32>],
    resume: Option<Resume>,
    progress: &mut Progress,
) -> Result<Trace> {
    if run.batches.is_empty() || run.accumulate == 0 {
        return Err("a run needs at least one batch and accumulate >= 1".into());
    }
    let (mut interp, choice) = Stepper::new(
        run.backend,
        run.program,
        run.recipe,
        names,
        shapes,
        params,
        run.threads,
    )?;
    let start = match resume {
        Some(r) => {
            interp.restore(r.snapshot)?;
            r.step
        }
        None => 0,
    };
    if run.recipe.stages.is_empty() {
        return Err("the recipe has no update chain".into());
    }
    let mut trace = Trace {
        backend: Some(choice),
        ..Trace::default()
    };
    let mut m = start * run.accumulate;
    for t in start..run.steps {
        // The optimizer's learning rate and momentum for this step, per group.
        for (names, series) in [
            (&LR_NAMES, &mut trace.lr),
            (&MOMENTUM_NAMES, &mut trace.momentum),
        ] {
            if let Some(vs) = optimizer_values(run.program, run.recipe, &interp, names) {
                series.push(vs.into_iter().flatten().collect());
            }
        }
        let mut acc: Vec<Vec<f32>> = params.iter().map(|p| vec![0f32; p.len()]).collect();
        let k = run.accumulate as f32;
        // Mixed precision: the model sees its weights as stored (bf16/f16); the optimizer
        // keeps the f32 master copy in `params`.
        let dtype = run.recipe.param_dtype;
        // In f32 the two are the same: borrow rather than copy the model every step.
        let stored: Cow<[Vec<f32>]> = if dtype == Dtype::F32 {
            Cow::Borrowed(&*params)
        } else {
            Cow::Owned(
                params
                    .iter()
                    .map(|p| p.iter().map(|x| round_to(dtype, *x)).collect())
                    .collect(),
            )
        };
        let mut last_batch = (Vec::new(), Vec::new());
        for _ in 0..run.accumulate {
            let rows: Cow<[usize]> = match run.curriculum {
                Some(c) => {
                    let (rows, stats) =
                        draw_curriculum(run, &mut c.borrow_mut(), t as u64, &stored)?;
                    trace.curriculum.push(stats);
                    Cow::Owned(rows)
                }
                None => run.batches.batch(m),
            };
            m += 1;
            let (x, y) = run.data.gather(&rows);
            let (loss, grads) = run.model.loss_and_grad(&stored, &x, &y)?;
            trace.loss.push(loss);
            for (a, g) in acc.iter_mut().zip(&grads) {
                for (ai, gi) in a.iter_mut().zip(g) {
                    *ai += gi / k;
                }
            }
            last_batch = (x, y);
        }
        trace.grad_norm.push(global_norm(&acc));
        trace.tensor_norms.push(
            acc.iter()
                .map(|g| global_norm(std::slice::from_ref(g)))
                .collect(),
        );
        // Loss scaling (a GradScaler stage): the loss was multiplied by the scale, so the
        // gradients arrive scaled and, in a half type, overflow to inf when too large.
        let scale = match interp.state_value("GradScaler", "scale") {
            Some(StateValue::Scalar(s)) => *s,
            _ => 1.0,
        };
        trace.loss_scale.push(scale);
        if scale != 1.0 || dtype != Dtype::F32 {
            for g in acc.iter_mut().flatten() {
                *g = round_to(dtype, (f64::from(*g) * scale) as f32);
            }
        }
        // The step's training loss, the mean over its micro-batches: what `loss` reads, and
        // the metric a schedule that follows one (ReduceLROnPlateau) sees (`anneal run`
        // has no validation pass per step; the Python package observes what it is given).
        let losses = &trace.loss[trace.loss.len() - run.accumulate..];
        let step_loss = losses.iter().map(|l| f64::from(*l)).sum::<f64>() / losses.len() as f64;
        let mut oracle = BatchOracle {
            model: run.model,
            x: last_batch.0,
            y: last_batch.1,
            last_loss: None,
            last_norm: None,
            loss: step_loss,
        };
        interp.step_with(params, &acc, Some(&mut oracle))?;
        interp.observe(step_loss);
        trace.skipped.push(interp.last_skipped());
        if let (Some(l), Some(n)) = (oracle.last_loss, oracle.last_norm) {
            trace.loss_perturbed.push(l);
            trace.grad_norm_perturbed.push(n);
        }
        if t == 0 {
            trace.params_step1 = params.to_vec();
        }
        progress(t, &trace, params, &interp)?;
    }
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_types_round_to_nearest_even() {
        // bf16 keeps 8 significand bits: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 and
        // rounds to the even neighbour, 1; 1 + 3·2^-8 rounds up to 1 + 2^-6.
        assert_eq!(round_to(Dtype::Bf16, 1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(
            round_to(Dtype::Bf16, 1.0 + 3.0 * 2f32.powi(-8)),
            1.0 + 2f32.powi(-6)
        );
        // f16's largest finite value is 65504; from 65520 on, values round to infinity.
        assert_eq!(round_to(Dtype::F16, 65504.0), 65504.0);
        assert_eq!(round_to(Dtype::F16, 65519.0), 65504.0);
        assert!(round_to(Dtype::F16, 65520.0).is_infinite());
        // bf16 has f32's range: no overflow there.
        let big = round_to(Dtype::Bf16, 1e30);
        assert!(big.is_finite() && ((big - 1e30) / 1e30).abs() <= 2f32.powi(-9));
        assert_eq!(round_to(Dtype::F32, 0.1), 0.1);
    }
}
