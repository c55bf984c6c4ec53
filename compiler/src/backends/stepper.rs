//! A recipe's step on a chosen back end. Entry point: `Stepper::new`.
//!
//! The stepper owns the run's `StepState` and hands it to whichever runs the step — the
//! interpreter or a fused kernel — so both read and write one state, and a snapshot taken
//! on one back end restores on any other.

use super::{compile, gpu, is_builtin, Backend};
use crate::error::{Error, Result};
use crate::interp::{Interpreter, Oracle};
use crate::ir::{Program, Recipe};
use crate::kernel::exec::{Fused, PassDevice};
use crate::kernel::lower;
use crate::state::{StateValue, StepState};

/// A recipe's step on a chosen back end, with the state it advances.
pub struct Stepper<'p> {
    state: StepState,
    run: Run<'p>,
}

/// Who computes the step.
enum Run<'p> {
    Interp(Box<Interpreter<'p>>),
    /// A fused step, with the name of the compiler that built it.
    Fused(Box<Fused<'p>>, &'static str),
}

/// What `Stepper::new` reports besides the stepper.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The back end that runs: `interp` or `cranelift`.
    pub backend: &'static str,
    /// Why `auto` fell back to the interpreter.
    pub fallback: Option<String>,
    pub compile_ms: f64,
    /// The GPU the step runs on (wgsl), as its driver names it.
    pub device: Option<String>,
}

impl Choice {
    fn plain(backend: &'static str) -> Choice {
        Choice {
            backend,
            fallback: None,
            compile_ms: 0.0,
            device: None,
        }
    }
}

impl<'p> Stepper<'p> {
    /// Binds `recipe` to named tensors on `backend`; `threads` (0: all cores) splits the
    /// compiled passes. Fails when Cranelift was asked for and the recipe does not lower.
    pub fn new(
        backend: Backend,
        program: &'p Program,
        recipe: &Recipe,
        names: &[String],
        shapes: &[Vec<usize>],
        params: &[Vec<f32>],
        threads: usize,
    ) -> Result<(Stepper<'p>, Choice)> {
        let (interp, state) = Interpreter::with_shapes(program, recipe, names, shapes, params)?;
        let interpreted = |interp, state, choice| {
            let run = Run::Interp(Box::new(interp));
            Ok((Stepper { state, run }, choice))
        };
        if backend == Backend::Interp {
            return interpreted(interp, state, Choice::plain("interp"));
        }
        if is_builtin(program, recipe) {
            // A builtin optimizer (L-BFGS) is runtime code with its own control flow (line
            // searches, a history); it runs the same on every back end.
            return interpreted(interp, state, Choice::plain("builtin"));
        }
        if backend == Backend::Triton {
            return Err(Error::user(format!(
                "the triton back end launches its kernels on PyTorch's tensors, so it runs \
                 inside Python: `anneal.torch.Optimizer(..., backend=\"triton\")`; \
                 `anneal build --emit triton` prints the kernels of recipe `{}`",
                recipe.name
            )));
        }
        let kernel = match lower(program, recipe) {
            Ok(k) => k,
            Err(why) if backend == Backend::Auto => {
                let choice = Choice {
                    fallback: Some(why.0),
                    ..Choice::plain("interp")
                };
                return interpreted(interp, state, choice);
            }
            Err(why) => {
                return Err(Error::user(format!(
                    "recipe `{}` cannot run on the {} back end: {why}; \
                     run it with `--backend interp` (or `auto`)",
                    recipe.name,
                    backend.name()
                )))
            }
        };
        if backend == Backend::Wgsl {
            let device = gpu::GpuPasses::new(&kernel, &interp.sizes, 0, recipe.param_dtype)?;
            let adapter = device.adapter().to_string();
            let fused = Fused::on_device(interp, kernel, Box::new(device))?;
            let stepper = Stepper {
                state,
                run: Run::Fused(Box::new(fused), "wgsl"),
            };
            let choice = Choice {
                device: Some(adapter),
                ..Choice::plain("wgsl")
            };
            return Ok((stepper, choice));
        }
        // `auto` compiles with Cranelift (milliseconds).
        let native = match backend {
            Backend::Llvm => Backend::Llvm,
            _ => Backend::Cranelift,
        };
        let (code, name) = (compile(&kernel, native)?, native.name());
        let fused = Fused::new(interp, kernel, code.fns, threads)?;
        let stepper = Stepper {
            state,
            run: Run::Fused(Box::new(fused), name),
        };
        let choice = Choice {
            compile_ms: code.compile_ms,
            ..Choice::plain(name)
        };
        Ok((stepper, choice))
    }

    /// Binds `recipe` to named tensors with its passes run by the device `make` builds
    /// for the recipe's kernel (the Python package's Triton launcher), reported as
    /// back end `name`. A recipe that has no fused kernel is refused with the reason, as
    /// the other compiling back ends refuse it.
    pub fn on_device(
        name: &'static str,
        program: &'p Program,
        recipe: &Recipe,
        names: &[String],
        shapes: &[Vec<usize>],
        params: &[Vec<f32>],
        make: &mut dyn FnMut(&crate::kernel::Kernel) -> Result<Box<dyn PassDevice>>,
    ) -> Result<(Stepper<'p>, Choice)> {
        let (interp, state) = Interpreter::with_shapes(program, recipe, names, shapes, params)?;
        if is_builtin(program, recipe) {
            let run = Run::Interp(Box::new(interp));
            return Ok((Stepper { state, run }, Choice::plain("builtin")));
        }
        let kernel = lower(program, recipe).map_err(|why| {
            Error::user(format!(
                "recipe `{}` cannot run on the {name} back end: {why}; run it with \
                 backend `interp` (or `auto`)",
                recipe.name
            ))
        })?;
        let device = make(&kernel)?;
        let fused = Fused::on_device(interp, kernel, device)?;
        let stepper = Stepper {
            state,
            run: Run::Fused(Box::new(fused), name),
        };
        Ok((stepper, Choice::plain(name)))
    }

    /// The recipe bound to its tensors (names, groups, state names).
    pub fn interp(&self) -> &Interpreter<'p> {
        match &self.run {
            Run::Interp(i) => i,
            Run::Fused(f, _) => &f.interp,
        }
    }

    /// Everything the steps so far have changed.
    pub fn state(&self) -> &StepState {
        &self.state
    }

    /// The parameters to evaluate after the steps so far (the stages' `eval param = ...`,
    /// schedule-free's average); `None` when they are `params` themselves.
    pub fn eval_params(&self, params: &[Vec<f32>]) -> Result<Option<Vec<Vec<f32>>>> {
        self.interp().eval_params(&self.state, params)
    }

    /// One update, with the model's oracle for recipes that call the model mid-step.
    pub fn step_with(
        &mut self,
        params: &mut [Vec<f32>],
        grads: &[Vec<f32>],
        oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<()> {
        let st = &mut self.state;
        match &mut self.run {
            Run::Interp(i) => i.step_with(st, params, grads, oracle),
            Run::Fused(f, _) => f.step(st, params, grads, oracle),
        }
    }

    /// One update on tensors the caller owns. A fused step works on them in place; the
    /// interpreter (the reference, not the fast path) steps copies and writes them back.
    pub fn step_slices(
        &mut self,
        params: &mut [&mut [f32]],
        grads: &[&[f32]],
        oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<()> {
        let st = &mut self.state;
        match &mut self.run {
            Run::Fused(f, _) => f.step_slices(st, params, grads, oracle),
            Run::Interp(i) => {
                let mut owned: Vec<Vec<f32>> = params.iter().map(|p| p.to_vec()).collect();
                let grads: Vec<Vec<f32>> = grads.iter().map(|g| g.to_vec()).collect();
                i.step_with(st, &mut owned, &grads, oracle)?;
                for (p, o) in params.iter_mut().zip(&owned) {
                    if p.len() != o.len() {
                        return Err(Error::internal("the step changed a tensor's size"));
                    }
                    p.copy_from_slice(o);
                }
                Ok(())
            }
        }
    }

    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) -> Result<()> {
        self.interp().needs_no_model()?;
        self.step_with(params, grads, None)
    }

    /// A copy of the step state, for a checkpoint.
    pub fn snapshot(&self) -> StepState {
        self.state.clone()
    }

    /// Continues from `saved`, a state of the same recipe and tensors.
    pub fn restore(&mut self, saved: StepState) -> Result<()> {
        self.state.restore(saved)?;
        if let Run::Fused(f, _) = &mut self.run {
            f.state_replaced();
        }
        Ok(())
    }

    /// Records the metric observed at the step just taken (`StepState::observe`).
    pub fn observe(&mut self, metric: f64) {
        self.state.observe(metric)
    }

    pub fn stage_counts(&self) -> &[u64] {
        self.state.stage_counts()
    }

    pub fn last_skipped(&self) -> bool {
        self.state.last_skipped()
    }

    /// The current value of state `name` of the first stage defined by `def_name`.
    pub fn state_value(&self, def_name: &str, name: &str) -> Option<&StateValue> {
        self.interp().state(&self.state, def_name, name)
    }

    pub fn set_seed(&mut self, seed: u64) {
        self.state.set_seed(seed);
    }

    /// The parameters in the recipe's half type as the last step wrote them, widened to
    /// f32, where the back end writes them in the step itself (wgsl); else `None` and
    /// the caller rounds the f32 parameters.
    pub fn stored_params(&self) -> Option<&[Vec<f32>]> {
        match &self.run {
            Run::Fused(f, _) => f.stored_params(),
            Run::Interp(_) => None,
        }
    }

    /// The shapes (m, k, n) of the matrix products the last step computed, for a fused
    /// step (`None` on the interpreter, which does not keep them).
    pub fn matrix_products(&self) -> Option<Vec<crate::matrix::Product>> {
        match &self.run {
            Run::Fused(f, _) => Some(f.matrix_products()),
            Run::Interp(_) => None,
        }
    }

    /// The back end that runs the step.
    pub fn backend(&self) -> &'static str {
        match &self.run {
            Run::Interp(_) => "interp",
            Run::Fused(_, name) => name,
        }
    }
}
