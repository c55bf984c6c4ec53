//! Back ends: who runs a recipe's step. Entry point: `Stepper::new`.
//!
//! `interp` is the reference interpreter; `cranelift` lowers the recipe to the fused
//! kernel (`kernel::lower`) and JIT-compiles its passes. `auto` takes Cranelift when the
//! recipe lowers and says why when it falls back to the interpreter.

pub mod c;
pub mod cranelift;
pub mod llvm;

use crate::interp::{Interpreter, Oracle, Snapshot, StateValue};
use crate::ir::{Program, Recipe};
use crate::kernel::exec::Fused;
use crate::kernel::lower;

/// Whether the recipe is a builtin optimizer (L-BFGS), which the runtime runs itself on
/// every back end.
pub fn is_builtin(program: &Program, recipe: &Recipe) -> bool {
    !recipe.stages.is_empty()
        && recipe
            .stages
            .iter()
            .all(|s| matches!(program.defs[s.def].body, crate::ir::DefBody::Builtin(_)))
}

/// A back end, as `--backend` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Interp,
    Cranelift,
    /// The same fused kernel compiled by LLVM (O3 for the host CPU).
    Llvm,
    /// Cranelift when the recipe lowers to a fused kernel, the interpreter otherwise.
    Auto,
}

impl Backend {
    pub const NAMES: [&'static str; 4] = ["auto", "interp", "cranelift", "llvm"];

    pub fn parse(s: &str) -> Option<Backend> {
        match s {
            "interp" => Some(Backend::Interp),
            "cranelift" => Some(Backend::Cranelift),
            "llvm" => Some(Backend::Llvm),
            "auto" => Some(Backend::Auto),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Interp => "interp",
            Backend::Cranelift => "cranelift",
            Backend::Llvm => "llvm",
            Backend::Auto => "auto",
        }
    }
}

/// A recipe's step on a chosen back end, with the interpreter's interface.
pub enum Stepper<'p> {
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
    ) -> Result<(Stepper<'p>, Choice), String> {
        let interp = Interpreter::with_shapes(program, recipe, names, shapes, params)?;
        if backend == Backend::Interp {
            return Ok((
                Stepper::Interp(Box::new(interp)),
                Choice {
                    backend: "interp",
                    fallback: None,
                    compile_ms: 0.0,
                },
            ));
        }
        if is_builtin(program, recipe) {
            // A builtin optimizer (L-BFGS) is runtime code with its own control flow (line
            // searches, a history); it runs the same on every back end.
            return Ok((
                Stepper::Interp(Box::new(interp)),
                Choice {
                    backend: "builtin",
                    fallback: None,
                    compile_ms: 0.0,
                },
            ));
        }
        let kernel = match lower(program, recipe) {
            Ok(k) => k,
            Err(why) if backend == Backend::Auto => {
                return Ok((
                    Stepper::Interp(Box::new(interp)),
                    Choice {
                        backend: "interp",
                        fallback: Some(why.0),
                        compile_ms: 0.0,
                    },
                ))
            }
            Err(why) => {
                return Err(format!(
                    "recipe `{}` cannot run on the {} back end: {why}; \
                     run it with `--backend interp` (or `auto`)",
                    recipe.name,
                    backend.name()
                ))
            }
        };
        let (code, name) = match backend {
            Backend::Llvm => (llvm::compile(&kernel)?, "llvm"),
            _ => (cranelift::compile(&kernel)?, "cranelift"),
        };
        let fused = Fused::new(interp, kernel, code.fns, threads)?;
        Ok((
            Stepper::Fused(Box::new(fused), name),
            Choice {
                backend: name,
                fallback: None,
                compile_ms: code.compile_ms,
            },
        ))
    }

    pub fn interp(&self) -> &Interpreter<'p> {
        match self {
            Stepper::Interp(i) => i,
            Stepper::Fused(f, _) => &f.interp,
        }
    }

    fn interp_mut(&mut self) -> &mut Interpreter<'p> {
        match self {
            Stepper::Interp(i) => i,
            Stepper::Fused(f, _) => &mut f.interp,
        }
    }

    /// One update, with the model's oracle for recipes that call the model mid-step.
    pub fn step_with(
        &mut self,
        params: &mut [Vec<f32>],
        grads: &[Vec<f32>],
        oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<(), String> {
        match self {
            Stepper::Interp(i) => i.step_with(params, grads, oracle),
            Stepper::Fused(f, _) => f.step(params, grads, oracle),
        }
    }

    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) -> Result<(), String> {
        match self {
            Stepper::Interp(i) => i.step(params, grads),
            Stepper::Fused(f, _) => {
                if let Some(c) = f.interp.recipe.capabilities.first() {
                    return Err(format!(
                        "recipe `{}` needs {} from the model; run it with a model that provides it",
                        f.interp.recipe.name,
                        c.describe()
                    ));
                }
                f.step(params, grads, None)
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.interp().snapshot()
    }

    pub fn restore(&mut self, s: Snapshot) -> Result<(), String> {
        self.interp_mut().restore(s)
    }

    pub fn observe(&mut self, metric: f64) {
        self.interp_mut().observe(metric)
    }

    pub fn stage_counts(&self) -> &[u64] {
        self.interp().stage_counts()
    }

    pub fn last_skipped(&self) -> bool {
        self.interp().last_skipped()
    }

    pub fn state(&self, def_name: &str, name: &str) -> Option<&StateValue> {
        self.interp().state(def_name, name)
    }

    pub fn set_seed(&mut self, seed: u64) {
        self.interp_mut().seed = seed;
    }

    /// The back end that runs the step.
    pub fn backend(&self) -> &'static str {
        match self {
            Stepper::Interp(_) => "interp",
            Stepper::Fused(_, name) => name,
        }
    }
}
