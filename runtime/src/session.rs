//! A checked recipe bound to tensors that the caller owns — a PyTorch model's parameters,
//! NumPy arrays — stepped in place: what `anneal.torch.Optimizer` and
//! `anneal.numpy.Stepper` drive, so the Python layer only converts at the boundary.
//! Entry points: `CheckedRecipe::compile` (source → a recipe or its diagnostics) and
//! `Session::new` (a recipe + named shapes + initial values → a stepper).
//!
//! A session owns its compilation (shared, `Arc`) and the `Stepper` that borrows it, in
//! one self-referential cell, so it can live in a Python object without a lifetime.

use crate::checkpoint::recipe_hash;
use crate::train::{optimizer_values, LR_NAMES, MOMENTUM_NAMES};
use anneal_compiler::backends::{Backend, Choice, Stepper};
use anneal_compiler::diagnostic;
use anneal_compiler::error::{Error, Result};
use anneal_compiler::interp::Oracle;
use anneal_compiler::ir::{Capability, Dtype, Recipe};
use anneal_compiler::kernel::{exec::PassDevice, Kernel};
use anneal_compiler::state::{StateValue, StepState};
use anneal_compiler::{compile, Compilation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A recipe that passed the checker, with the compilation it belongs to.
#[derive(Clone)]
pub struct CheckedRecipe {
    compilation: Arc<Compilation>,
    index: usize,
}

/// Why a source is not a runnable recipe: the rendered report (what `anneal check`
/// prints) and the same diagnostics as data (`anneal check --json`).
#[derive(Debug, Clone)]
pub struct RecipeError {
    pub rendered: String,
    pub diagnostics: serde_json::Value,
}

impl CheckedRecipe {
    /// Parses and checks `text` (called `file` in diagnostics) and picks the recipe named
    /// `name`, or the only one.
    pub fn compile(file: &str, text: &str, name: Option<&str>) -> Result<Self, RecipeError> {
        let c = compile(file, text);
        if c.has_errors() {
            return Err(RecipeError {
                rendered: diagnostic::render(&c.diagnostics, &c.sources, false),
                diagnostics: diagnostic::to_json(&c.diagnostics, &c.sources),
            });
        }
        let names: Vec<&str> = c.recipes().iter().map(|r| r.name.as_str()).collect();
        let plain = |msg: String| RecipeError {
            rendered: format!("error: {msg}\n"),
            diagnostics: serde_json::json!([{
                "code": null, "severity": "error", "message": msg, "file": file,
                "line": null, "column": null, "help": null,
            }]),
        };
        let index = match name {
            Some(n) => names.iter().position(|r| *r == n).ok_or_else(|| {
                plain(format!(
                    "{file} has no recipe `{n}`; its recipes: {}",
                    list_or_none(&names)
                ))
            })?,
            None if names.len() == 1 => 0,
            None if names.is_empty() => {
                return Err(plain(format!(
                    "{file} has no recipe; add `recipe NAME {{ update = ... }}`"
                )))
            }
            None => {
                return Err(plain(format!(
                    "{file} has {} recipes ({}); say which one with name=",
                    names.len(),
                    names.join(", ")
                )))
            }
        };
        Ok(CheckedRecipe {
            compilation: Arc::new(c),
            index,
        })
    }

    pub fn recipe(&self) -> &Recipe {
        &self.compilation.program.recipes[self.index]
    }

    /// The warnings the checker gave (rendered), empty when there were none.
    pub fn warnings(&self) -> String {
        let c = &self.compilation;
        if c.diagnostics.is_empty() {
            return String::new();
        }
        diagnostic::render(&c.diagnostics, &c.sources, false)
    }

    pub fn group_names(&self) -> Vec<String> {
        self.recipe()
            .groups
            .iter()
            .map(|g| g.name.clone())
            .collect()
    }

    /// What the recipe needs from the model, as `grad_at`, `hvp` and `loss_closure`.
    pub fn capabilities(&self) -> Vec<&'static str> {
        self.recipe()
            .capabilities
            .iter()
            .map(|c| match c {
                Capability::GradAt => "grad_at",
                Capability::Hvp => "hvp",
                Capability::LossClosure => "loss_closure",
                Capability::Loss => "loss",
            })
            .collect()
    }

    /// The recipe's fused kernel (what the compiling back ends run), or why it has none.
    pub fn kernel(&self) -> Result<Kernel> {
        anneal_compiler::kernel::lower(&self.compilation.program, self.recipe()).map_err(|why| {
            Error::user(format!(
                "recipe `{}` has no fused step: {why}",
                self.recipe().name
            ))
        })
    }

    /// The fused step's passes, buffers and bytes per parameter (`anneal build
    /// --explain`), or why the recipe runs on the interpreter.
    pub fn explain(&self) -> String {
        match anneal_compiler::kernel::explain::explain(&self.compilation.program, self.recipe()) {
            Ok(e) => e.to_string(),
            Err(why) => format!(
                "recipe `{}` has no fused step: {why}; it runs on the interpreter\n",
                self.recipe().name
            ),
        }
    }

    /// Ties saved optimizer states to this recipe (and the library it uses).
    pub fn hash(&self) -> u64 {
        recipe_hash(&self.compilation.program)
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

self_cell::self_cell!(
    struct Bound {
        owner: Arc<Compilation>,
        #[not_covariant]
        dependent: Stepper,
    }
);

/// A recipe bound to named tensors on a back end.
pub struct Session {
    recipe: CheckedRecipe,
    bound: Bound,
    choice: Choice,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    skipped_steps: u64,
}

/// The part of a session's progress that is not per element: step counts, scalar and
/// per-tensor states, metrics, builtin optimizers' states. Element states travel as the
/// caller's tensors (torch's `state_dict` layout) and are empty here.
#[derive(Serialize, Deserialize)]
struct Progress {
    recipe_hash: u64,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    skipped_steps: u64,
    snapshot: StepState,
}

/// One element state of a session, for each tensor: `key` is `stage.state` (`adamw.mu`;
/// `adamw#2.mu` for a second stage of the same definition).
pub struct ElementState {
    pub key: String,
    pub per_tensor: Vec<Vec<f32>>,
}

impl Session {
    /// Binds `recipe` to tensors with `names` and `shapes` whose current values are
    /// `params` (states such as `state slow = param` start from them).
    pub fn new(
        recipe: &CheckedRecipe,
        names: &[String],
        shapes: &[Vec<usize>],
        params: &[Vec<f32>],
        backend: Backend,
        threads: usize,
    ) -> Result<Session> {
        Session::bind(recipe, names, shapes, |c, r| {
            Stepper::new(backend, &c.program, r, names, shapes, params, threads)
        })
    }

    /// As `new`, with the step's passes run by the device `make` builds for the recipe's
    /// kernel, reported as back end `name` (`Stepper::on_device`).
    pub fn on_device(
        recipe: &CheckedRecipe,
        names: &[String],
        shapes: &[Vec<usize>],
        params: &[Vec<f32>],
        name: &'static str,
        make: &mut dyn FnMut(&Kernel) -> Result<Box<dyn PassDevice>>,
    ) -> Result<Session> {
        Session::bind(recipe, names, shapes, |c, r| {
            Stepper::on_device(name, &c.program, r, names, shapes, params, make)
        })
    }

    fn bind(
        recipe: &CheckedRecipe,
        names: &[String],
        shapes: &[Vec<usize>],
        start: impl for<'a> FnOnce(&'a Compilation, &'a Recipe) -> Result<(Stepper<'a>, Choice)>,
    ) -> Result<Session> {
        let index = recipe.index;
        let mut choice = None;
        let bound = Bound::try_new(recipe.compilation.clone(), |c| {
            let r = &c.program.recipes[index];
            let (s, ch) = start(c, r)?;
            choice = Some(ch);
            Ok::<_, Error>(s)
        })?;
        let choice = choice.ok_or_else(|| Error::internal("no back end was chosen"))?;
        Ok(Session {
            recipe: recipe.clone(),
            bound,
            choice,
            names: names.to_vec(),
            shapes: shapes.to_vec(),
            skipped_steps: 0,
        })
    }

    pub fn recipe(&self) -> &CheckedRecipe {
        &self.recipe
    }

    /// The back end that runs the step, and why `auto` fell back to the interpreter.
    pub fn choice(&self) -> &Choice {
        &self.choice
    }

    /// One update on the caller's tensors, in place. `oracle` answers what the recipe
    /// needs from the model (a closure's gradients, HVPs, losses).
    pub fn step(
        &mut self,
        params: &mut [&mut [f32]],
        grads: &[&[f32]],
        oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<()> {
        if params.len() != self.names.len() || grads.len() != self.names.len() {
            return Err(Error::user(format!(
                "the step needs {} parameters and {} gradients, got {} and {}",
                self.names.len(),
                self.names.len(),
                params.len(),
                grads.len()
            )));
        }
        for (i, shape) in self.shapes.iter().enumerate() {
            let n: usize = shape.iter().product();
            if params[i].len() != n || grads[i].len() != n {
                return Err(Error::user(format!(
                    "tensor `{}` has shape {shape:?} ({n} values), but {} parameter values and {} gradient values were given",
                    self.names[i],
                    params[i].len(),
                    grads[i].len()
                )));
            }
        }
        if oracle.is_none() {
            self.bound
                .with_dependent(|_, s| s.interp().needs_no_model())?;
        }
        self.bound
            .with_dependent_mut(|_, s| s.step_slices(params, grads, oracle))?;
        self.after_step();
        Ok(())
    }

    /// `step`, leaving the tensors marked in `frozen` as they were — parameter and
    /// per-tensor states alike — as torch leaves a parameter whose `.grad` is None.
    /// (Step-wide states, such as a loss scale or a step count, still advance.)
    pub fn step_except(
        &mut self,
        params: &mut [&mut [f32]],
        grads: &[&[f32]],
        oracle: Option<&mut (dyn Oracle + '_)>,
        frozen: &[bool],
    ) -> Result<()> {
        if !frozen.iter().any(|f| *f) {
            return self.step(params, grads, oracle);
        }
        if frozen.len() != params.len() {
            return Err("one frozen flag per tensor is needed".into());
        }
        let kept: Vec<Option<Vec<f32>>> = params
            .iter()
            .zip(frozen)
            .map(|(p, f)| f.then(|| p.to_vec()))
            .collect();
        let before = self.bound.with_dependent(|_, s| s.snapshot());
        self.step(params, grads, oracle)?;
        let mut after = self.bound.with_dependent(|_, s| s.snapshot());
        for (sb, sa) in before.states().iter().zip(after.states_mut().iter_mut()) {
            for (vb, va) in sb.iter().zip(sa.iter_mut()) {
                for (t, _) in frozen.iter().enumerate().filter(|(_, f)| **f) {
                    match (vb, &mut *va) {
                        (StateValue::Element(b), StateValue::Element(a))
                        | (StateValue::Matrix(b), StateValue::Matrix(a)) => a[t].clone_from(&b[t]),
                        (StateValue::Slice(_, b), StateValue::Slice(_, a)) => {
                            a[t].clone_from(&b[t])
                        }
                        (StateValue::Tensor(b), StateValue::Tensor(a)) => a[t] = b[t],
                        _ => {}
                    }
                }
            }
        }
        self.bound.with_dependent_mut(|_, s| s.restore(after))?;
        for (p, k) in params.iter_mut().zip(kept) {
            if let Some(k) = k {
                p.copy_from_slice(&k);
            }
        }
        Ok(())
    }

    fn after_step(&mut self) {
        if self.last_skipped() {
            self.skipped_steps += 1;
        }
    }

    /// The parameters to evaluate after the steps so far, given the current ones: the
    /// recipe's evaluation view (`eval param = ...`, schedule-free's average x), or `None`
    /// when the parameters are what to evaluate.
    pub fn eval_params(&self, params: &[Vec<f32>]) -> Result<Option<Vec<Vec<f32>>>> {
        for (i, shape) in self.shapes.iter().enumerate() {
            let n: usize = shape.iter().product();
            if params.get(i).map(Vec::len) != Some(n) || params.len() != self.shapes.len() {
                return Err(Error::user(format!(
                    "the evaluation view needs the {} parameters the session was built with (`{}` has {n} values)",
                    self.names.len(),
                    self.names[i]
                )));
            }
        }
        self.bound.with_dependent(|_, s| s.eval_params(params))
    }

    pub fn observe(&mut self, metric: f64) {
        self.bound.with_dependent_mut(|_, s| s.observe(metric));
    }

    /// Steps taken (skipped ones included).
    pub fn steps_taken(&self) -> u64 {
        self.bound.with_dependent(|_, s| s.state().count())
    }

    pub fn last_skipped(&self) -> bool {
        self.bound.with_dependent(|_, s| s.last_skipped())
    }

    pub fn skipped_steps(&self) -> u64 {
        self.skipped_steps
    }

    /// Each tensor's group index.
    pub fn group_of(&self) -> Vec<usize> {
        self.bound
            .with_dependent(|_, s| s.interp().group_of().to_vec())
    }

    /// The learning rate the next step uses, per group (`train::LR_NAMES`).
    pub fn learning_rates(&self) -> Vec<Option<f64>> {
        self.optimizer_values(&LR_NAMES)
    }

    /// The momentum (SGD's `momentum`, the first of Adam's `betas`) the next step uses, per
    /// group.
    pub fn momenta(&self) -> Vec<Option<f64>> {
        self.optimizer_values(&MOMENTUM_NAMES)
    }

    fn optimizer_values(&self, names: &[&str]) -> Vec<Option<f64>> {
        let recipe = self.recipe.recipe();
        self.bound
            .with_dependent(|c, s| optimizer_values(&c.program, recipe, s, names))
            .unwrap_or_else(|| vec![None; recipe.groups.len().max(1)])
    }

    /// The current loss scale of a `GradScaler` stage, if the recipe has one.
    pub fn loss_scale(&self) -> Option<f64> {
        self.bound
            .with_dependent(|_, s| match s.state_value("GradScaler", "scale") {
                Some(StateValue::Scalar(v)) => Some(*v),
                _ => None,
            })
    }

    /// Every element state, keyed `stage.state`, one buffer per tensor.
    pub fn element_states(&self) -> Vec<ElementState> {
        self.bound.with_dependent(|_, s| {
            let names = state_keys(&s.interp().state_names());
            let mut out = Vec::new();
            for (si, states) in s.state().states().iter().enumerate() {
                for (j, v) in states.iter().enumerate() {
                    if let StateValue::Element(per_tensor) = v {
                        out.push(ElementState {
                            key: names[si][j].clone(),
                            per_tensor: per_tensor.clone(),
                        });
                    }
                }
            }
            out
        })
    }

    /// Everything else a resume needs, as bytes (postcard); `element_states` and this
    /// together are the whole optimizer state.
    pub fn progress_bytes(&self) -> Result<Vec<u8>> {
        let mut snapshot = self.bound.with_dependent(|_, s| s.snapshot());
        for states in snapshot.states_mut() {
            for v in states {
                if let StateValue::Element(per_tensor) = v {
                    per_tensor.iter_mut().for_each(Vec::clear);
                }
            }
        }
        let p = Progress {
            recipe_hash: self.recipe.hash(),
            names: self.names.clone(),
            shapes: self.shapes.clone(),
            skipped_steps: self.skipped_steps,
            snapshot,
        };
        postcard::to_allocvec(&p)
            .map_err(|e| Error::internal(format!("cannot encode the optimizer state: {e}")))
    }

    /// Restores what `progress_bytes` and `element_states` saved; refuses a state from
    /// another recipe or other tensors, saying which.
    pub fn restore(&mut self, progress: &[u8], elements: &[(String, Vec<Vec<f32>>)]) -> Result<()> {
        let p: Progress = postcard::from_bytes(progress).map_err(|e| {
            Error::user(format!(
                "the saved optimizer state is damaged or not anneal's ({e})"
            ))
        })?;
        if p.recipe_hash != self.recipe.hash() {
            return Err(Error::user(format!(
                "the saved optimizer state belongs to another recipe (hash {:016x}; this recipe `{}` is {:016x})",
                p.recipe_hash,
                self.recipe.recipe().name,
                self.recipe.hash()
            )));
        }
        if p.names != self.names || p.shapes != self.shapes {
            let diff = self
                .names
                .iter()
                .zip(&self.shapes)
                .zip(p.names.iter().zip(&p.shapes))
                .find(|(a, b)| a != b)
                .map(|((n, s), (pn, ps))| {
                    format!("saved `{pn}` {ps:?}, this optimizer has `{n}` {s:?}")
                })
                .unwrap_or_else(|| {
                    format!(
                        "saved {} tensors, this optimizer has {}",
                        p.names.len(),
                        self.names.len()
                    )
                });
            return Err(Error::user(format!(
                "the saved optimizer state is for other tensors: {diff}"
            )));
        }
        let mut snapshot = p.snapshot;
        let keys = self
            .bound
            .with_dependent(|_, s| state_keys(&s.interp().state_names()));
        let sizes: Vec<usize> = self.shapes.iter().map(|s| s.iter().product()).collect();
        for (si, states) in snapshot.states_mut().iter_mut().enumerate() {
            for (j, v) in states.iter_mut().enumerate() {
                let StateValue::Element(per_tensor) = v else {
                    continue;
                };
                let key = keys
                    .get(si)
                    .and_then(|k| k.get(j))
                    .ok_or("the saved optimizer state has states this recipe does not")?;
                let (_, saved) = elements.iter().find(|(k, _)| k == key).ok_or_else(|| {
                    Error::user(format!("the saved optimizer state has no `{key}`"))
                })?;
                if saved.len() != sizes.len()
                    || saved.iter().zip(&sizes).any(|(t, &n)| t.len() != n)
                {
                    return Err(Error::user(format!(
                        "the saved state `{key}` does not have one value per parameter element"
                    )));
                }
                per_tensor.clone_from(saved);
            }
        }
        self.bound.with_dependent_mut(|_, s| s.restore(snapshot))?;
        self.skipped_steps = p.skipped_steps;
        Ok(())
    }

    /// The storage type of the model's weights (`precision { params: ... }`).
    pub fn param_dtype(&self) -> Dtype {
        self.recipe.recipe().param_dtype
    }
}

/// `stage.state` names for every stage's states; a definition used by several stages is
/// numbered from its second use (`adamw#2.mu`).
fn state_keys(stages: &[(String, Vec<String>)]) -> Vec<Vec<String>> {
    let mut seen: Vec<&str> = Vec::new();
    stages
        .iter()
        .map(|(def, names)| {
            seen.push(def);
            let n = seen.iter().filter(|d| **d == def).count();
            let stage = if n == 1 {
                def.clone()
            } else {
                format!("{def}#{n}")
            };
            names.iter().map(|s| format!("{stage}.{s}")).collect()
        })
        .collect()
}
