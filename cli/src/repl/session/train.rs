//! Training in a session: `:step` and `:run` advance the current recipe's model from where
//! it stands (the optimizer state carried in a `StepState` between calls), Ctrl-C stops at
//! a step boundary, and each run's curves are kept for `:runs` and `:plot`.

use super::{RunArgs, Session, Setup};
use anneal_compiler::error::Error;
use anneal_compiler::ir::Recipe;
use anneal_compiler::state::StepState;
use anneal_runtime::curriculum::Sampler;
use anneal_runtime::train::{train_with_progress, Resume, Run};
use indicatif::{ProgressBar, ProgressStyle};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set while `:step` or `:run` trains: Ctrl-C then stops the training, not the REPL.
pub static TRAINING: AtomicBool = AtomicBool::new(false);
/// Set by Ctrl-C during training; the next step boundary stops there.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// One run's curves, for `:runs` and `:plot`.
pub(super) struct Record {
    pub(super) label: String,
    pub(super) loss: Vec<f64>,
    pub(super) lr: Vec<f64>,
    pub(super) grad_norm: Vec<f64>,
    pub(super) test_accuracy: Option<f64>,
    pub(super) test_mse: Option<f64>,
    pub(super) backend: String,
}

/// The model being trained by the current recipe: weights, optimizer state, data.
pub(super) struct Training {
    pub(super) recipe: String,
    pub(super) setup: Setup,
    pub(super) names: Vec<String>,
    pub(super) shapes: Vec<Vec<usize>>,
    pub(super) params: Vec<Vec<f32>>,
    pub(super) step: usize,
    pub(super) snapshot: Option<StepState>,
    pub(super) sampler: Option<RefCell<Sampler>>,
    /// Its record in `runs`.
    pub(super) record: usize,
}

impl Session {
    /// `n` more steps of the current recipe from where training stands (a fresh model and
    /// optimizer when there is none); `bar`: a `:run`, reported as a whole.
    pub(super) fn advance(&mut self, n: usize, bar: bool) -> Result<String, String> {
        let recipe = self.recipe(None)?.clone();
        if recipe.stages.is_empty() {
            return Err(format!(
                "recipe `{}` has no `update = ...` chain to train with",
                recipe.name
            ));
        }
        if self
            .training
            .as_ref()
            .is_none_or(|t| t.recipe != recipe.name)
        {
            self.training = Some(self.start_training(&recipe)?);
        }
        let Session {
            compiled,
            training,
            runs,
            backend,
            progress,
            ..
        } = self;
        let (Some(c), Some(tr)) = (compiled.as_ref(), training.as_mut()) else {
            return Err(Error::internal("no compiled session or training state").into());
        };
        let total = tr.step + n;
        let batches = tr.setup.batches();
        let run = Run {
            program: &c.program,
            recipe: &recipe,
            model: tr.setup.model(),
            data: &tr.setup.data,
            batches: batches.as_ref(),
            curriculum: tr.sampler.as_ref(),
            accumulate: 1,
            steps: total,
            backend: *backend,
            threads: 0,
        };
        let resume = tr.snapshot.take().map(|snapshot| Resume {
            step: tr.step,
            snapshot,
        });
        let progress = (bar && *progress).then(|| {
            let b = ProgressBar::new(n as u64);
            b.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{per_sec}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        let first = tr.step;
        let mut snapshot = None;
        // Where Ctrl-C stopped the run: the step reached, what it recorded, its state.
        let mut stopped: Option<(usize, anneal_runtime::train::Trace)> = None;
        let mut on_step = |t: usize,
                           trace: &anneal_runtime::train::Trace,
                           _: &[Vec<f32>],
                           stepper: &anneal_compiler::backends::Stepper| {
            if let Some(b) = &progress {
                b.set_position((t + 1 - first) as u64);
                if let Some(l) = trace.loss.last() {
                    b.set_message(format!("loss {l:.4}"));
                }
            }
            if t + 1 == total {
                snapshot = Some(stepper.snapshot());
            } else if INTERRUPTED.swap(false, Ordering::SeqCst) {
                snapshot = Some(stepper.snapshot());
                stopped = Some((t + 1, trace.clone()));
                return Err("interrupted".into());
            }
            Ok(())
        };
        INTERRUPTED.store(false, Ordering::SeqCst);
        TRAINING.store(true, Ordering::SeqCst);
        let started = Instant::now();
        let result = train_with_progress(
            &run,
            &tr.names,
            &tr.shapes,
            &mut tr.params,
            resume,
            &mut on_step,
        );
        TRAINING.store(false, Ordering::SeqCst);
        let seconds = started.elapsed().as_secs_f64();
        if let Some(b) = &progress {
            b.finish_and_clear();
        }
        let (trace, reached) = match (result, stopped) {
            (Ok(t), _) => (t, total),
            // Ctrl-C: training stands at the last finished step and can go on from there.
            (Err(_), Some((reached, t))) => (t, reached),
            (Err(e), None) => {
                // The weights may have moved part of the way: do not go on from them.
                *training = None;
                return Err(format!("{e} (training state reset)"));
            }
        };
        let n = reached - first;
        tr.step = reached;
        tr.snapshot = snapshot;
        let (acc, mse) = tr.setup.test_quality(&tr.params);
        let rec = &mut runs[tr.record];
        rec.loss.extend(trace.loss.iter().map(|l| f64::from(*l)));
        rec.lr.extend(
            trace
                .lr
                .iter()
                .map(|g| g.first().copied().unwrap_or(f64::NAN)),
        );
        rec.grad_norm.extend(trace.grad_norm.iter().copied());
        rec.test_accuracy = acc;
        rec.test_mse = mse;
        let name = trace
            .backend
            .as_ref()
            .map(|b| b.backend)
            .unwrap_or("interp");
        rec.backend = name.to_string();
        let quality = match (acc, mse) {
            (Some(a), _) => format!(", test accuracy {a:.4}"),
            (_, Some(m)) => format!(", test mse {m:.4}"),
            _ => String::new(),
        };
        let fallback = match trace.backend.as_ref().and_then(|b| b.fallback.as_ref()) {
            Some(why) => format!("\nnote: the step ran on the interpreter: {why}"),
            None => String::new(),
        };
        let mut out = String::new();
        if !bar && n <= 10 {
            for (i, l) in trace.loss.iter().enumerate() {
                let _ = writeln!(out, "step {:>6}  loss {l:.4}", first + i + 1);
            }
        }
        let last = trace.loss.last().copied().unwrap_or(f32::NAN);
        if reached < total {
            let _ = writeln!(
                out,
                "interrupted at step {reached} of {total}; `:step N` goes on from here"
            );
        }
        let _ = write!(
            out,
            "{}: step {reached}, loss {last:.4}{quality} ({n} step{} in {:.3} s, {:.0} steps/s, {name}){fallback}",
            rec.label,
            if n == 1 { "" } else { "s" },
            seconds,
            n as f64 / seconds.max(1e-9)
        );
        Ok(out)
    }

    pub(super) fn start_training(&mut self, recipe: &Recipe) -> Result<Training, String> {
        let args = RunArgs {
            model: self.model.clone(),
            data: self.data.clone(),
            ..RunArgs::default()
        };
        let setup = Setup::new(recipe, &self.base, &args)?;
        let params = setup.init_params()?;
        setup.check_capabilities(recipe, &params)?;
        let (names, shapes) = setup.tensors();
        let sampler = setup.sampler(recipe)?;
        let same = self
            .runs
            .iter()
            .filter(|r| r.label == recipe.name || r.label.starts_with(&format!("{}#", recipe.name)))
            .count();
        let label = match same {
            0 => recipe.name.clone(),
            k => format!("{}#{}", recipe.name, k + 1),
        };
        self.runs.push(Record {
            label,
            loss: Vec::new(),
            lr: Vec::new(),
            grad_norm: Vec::new(),
            test_accuracy: None,
            test_mse: None,
            backend: String::new(),
        });
        Ok(Training {
            recipe: recipe.name.clone(),
            names,
            shapes,
            setup,
            params,
            step: 0,
            snapshot: None,
            sampler,
            record: self.runs.len() - 1,
        })
    }

    pub(super) fn runs_table(&self) -> String {
        if self.runs.is_empty() {
            return "no runs yet; `:run N` trains the current recipe".into();
        }
        let mut out = format!(
            "{:<20} {:>7} {:>12} {:>12} {:>10}  back end\n",
            "run", "steps", "final loss", "mean last10", "test"
        );
        for r in &self.runs {
            let tail = &r.loss[r.loss.len().saturating_sub(10)..];
            let mean = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
            let test = match (r.test_accuracy, r.test_mse) {
                (Some(a), _) => format!("{a:.4}"),
                (_, Some(m)) => format!("mse {m:.4}"),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "{:<20} {:>7} {:>12.4} {:>12.4} {:>10}  {}",
                r.label,
                r.loss.len(),
                r.loss.last().copied().unwrap_or(f64::NAN),
                mean,
                test,
                r.backend
            );
        }
        out.pop();
        out
    }
}
