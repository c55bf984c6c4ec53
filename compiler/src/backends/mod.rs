//! Back ends: who runs a recipe's step. Entry point: `Stepper::new`; `BACKENDS` is the
//! one list of them (names, help), `compile`/`object` produce native code.
//!
//! `interp` is the reference interpreter; `cranelift` lowers the recipe to the fused
//! kernel (`kernel::lower`) and JIT-compiles its passes (`llvm` the same through LLVM);
//! `wgsl` writes the passes as WGSL compute shaders and runs them on a GPU through wgpu.
//! `auto` takes Cranelift when the recipe lowers and says why when it falls back to the
//! interpreter.

pub mod c;
pub mod cranelift;
pub mod emit;
pub mod gpu;
pub mod llvm;
pub mod wgsl;

use crate::interp::{Interpreter, Oracle, Snapshot, StateValue};
use crate::ir::{Program, Recipe};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::kernel::exec::{Fused, PassFn};
use crate::kernel::lower;
use crate::kernel::Kernel;

/// A kernel's passes, compiled.
#[derive(Clone)]
pub struct Compiled {
    pub fns: Vec<PassFn>,
    /// Time from kernel IR to callable functions; 0 when the code came from the cache.
    pub compile_ms: f64,
    pub cached: bool,
}

/// A JIT's compiled pass addresses by kernel structure, and how many kernels it compiled.
/// The code behind the addresses is leaked on purpose: it stays valid for the life of
/// the process, as a JIT cache's must.
pub(crate) struct JitCache {
    map: OnceLock<Mutex<HashMap<String, Vec<usize>>>>,
    compiles: AtomicUsize,
}

impl JitCache {
    pub(crate) const fn new() -> JitCache {
        JitCache {
            map: OnceLock::new(),
            compiles: AtomicUsize::new(0),
        }
    }

    pub(crate) fn compiles(&self) -> usize {
        self.compiles.load(Ordering::Relaxed)
    }

    pub(crate) fn count(&self) {
        self.compiles.fetch_add(1, Ordering::Relaxed);
    }

    /// The code of a kernel of the same structure, or `jit`'s (addresses, ms), cached.
    pub(crate) fn get_or_compile(
        &self,
        kernel: &Kernel,
        jit: impl FnOnce(&Kernel) -> Result<(Vec<usize>, f64), String>,
    ) -> Result<Compiled, String> {
        let key = format!("{kernel:?}");
        let map = self.map.get_or_init(|| Mutex::new(HashMap::new()));
        if let Some(addrs) = map.lock().map_err(|_| "JIT cache poisoned")?.get(&key) {
            return Ok(Compiled {
                fns: addrs.iter().map(|&a| to_fn(a)).collect(),
                compile_ms: 0.0,
                cached: true,
            });
        }
        let (addrs, compile_ms) = jit(kernel)?;
        self.count();
        map.lock()
            .map_err(|_| "JIT cache poisoned")?
            .insert(key, addrs.clone());
        Ok(Compiled {
            fns: addrs.into_iter().map(to_fn).collect(),
            compile_ms,
            cached: false,
        })
    }
}

fn to_fn(addr: usize) -> PassFn {
    // SAFETY: `addr` is a finalized function of leaked JIT code compiled with the
    // `PassFn` signature.
    unsafe { std::mem::transmute::<usize, PassFn>(addr) }
}

/// What every exported step (C, WGSL) needs of a kernel: no model to call mid-step, no
/// noise to draw, one parameter group; the reason otherwise.
pub(crate) fn exportable(recipe: &Recipe, kernel: &Kernel) -> Result<(), String> {
    if !kernel.calls.is_empty() {
        return Err(
            "the step calls the model mid-step (`grad_at`, `hvp`); an exported step has no model"
                .into(),
        );
    }
    if kernel
        .elems
        .iter()
        .any(|e| matches!(e, crate::kernel::Elem::Load(crate::kernel::Buf::Noise(_))))
    {
        return Err(
            "the step draws `rademacher()` noise, which the exported step does not generate".into(),
        );
    }
    if recipe.groups.len() > 1 {
        return Err("the exported step has one parameter group; this recipe has several".into());
    }
    Ok(())
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    Interp,
    Cranelift,
    /// The same fused kernel compiled by LLVM (O3 for the host CPU).
    Llvm,
    /// The fused kernel as WGSL compute shaders, run on a GPU through wgpu.
    Wgsl,
    /// Cranelift when the recipe lowers to a fused kernel, the interpreter otherwise.
    #[default]
    Auto,
}

/// One entry of the registry: a back end, its name and what it does.
pub struct Entry {
    pub backend: Backend,
    pub name: &'static str,
    pub about: &'static str,
    /// Whether it compiles a kernel to native pass functions (`compile`) and object files
    /// (`object`).
    pub native: bool,
}

/// Every back end, in the order help texts list them: the one list the CLI's
/// `--backend`, the REPL's `:backend`, `bench`, `export` and the Python package read.
pub const BACKENDS: [Entry; 5] = [
    Entry {
        backend: Backend::Auto,
        name: "auto",
        about: "Cranelift when the recipe lowers to a fused kernel, else the interpreter",
        native: false,
    },
    Entry {
        backend: Backend::Interp,
        name: "interp",
        about: "the reference interpreter",
        native: false,
    },
    Entry {
        backend: Backend::Cranelift,
        name: "cranelift",
        about: "the fused step, JIT-compiled with Cranelift",
        native: true,
    },
    Entry {
        backend: Backend::Llvm,
        name: "llvm",
        about: "the fused step, compiled by LLVM at O3 for this CPU",
        native: true,
    },
    Entry {
        backend: Backend::Wgsl,
        name: "wgsl",
        about: "the fused step as WGSL compute shaders on a GPU, through wgpu",
        native: false,
    },
];

impl Backend {
    pub const NAMES: [&'static str; 5] = [
        BACKENDS[0].name,
        BACKENDS[1].name,
        BACKENDS[2].name,
        BACKENDS[3].name,
        BACKENDS[4].name,
    ];

    pub fn parse(s: &str) -> Option<Backend> {
        BACKENDS.iter().find(|e| e.name == s).map(|e| e.backend)
    }

    fn entry(self) -> &'static Entry {
        // Every variant has an entry (the registry's test checks it).
        BACKENDS
            .iter()
            .find(|e| e.backend == self)
            .unwrap_or(&BACKENDS[0])
    }

    pub fn name(self) -> &'static str {
        self.entry().name
    }

    pub fn about(self) -> &'static str {
        self.entry().about
    }

    /// The names as a message lists them: "auto, interp, … or wgsl".
    pub fn choices() -> String {
        let (last, rest) = Backend::NAMES.split_last().unwrap_or((&"", &[]));
        format!("{} or {last}", rest.join(", "))
    }
}

/// `kernel`'s passes as native functions, by a native back end (cached by the kernel's
/// structure).
pub fn compile(kernel: &Kernel, backend: Backend) -> Result<Compiled, String> {
    match backend {
        Backend::Cranelift => cranelift::compile(kernel),
        Backend::Llvm => llvm::compile(kernel),
        other => Err(format!(
            "the {} back end does not compile native pass functions",
            other.name()
        )),
    }
}

/// `kernel`'s passes as a relocatable object file (symbols `{prefix}{i}`), by a native
/// back end, for `anneal export`.
pub fn object(kernel: &Kernel, backend: Backend, prefix: &str) -> Result<Vec<u8>, String> {
    match backend {
        Backend::Cranelift => cranelift::object(kernel, prefix),
        Backend::Llvm => llvm::object(kernel, prefix),
        other => Err(format!(
            "the {} back end does not write object files",
            other.name()
        )),
    }
}

/// How many kernels a native back end has compiled in this process (cache hits excluded).
pub fn compiles(backend: Backend) -> usize {
    match backend {
        Backend::Cranelift => cranelift::compiles(),
        Backend::Llvm => llvm::compiles(),
        _ => 0,
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
    /// The GPU the step runs on (wgsl), as its driver names it.
    pub device: Option<String>,
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
                    device: None,
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
                    device: None,
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
                        device: None,
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
        if backend == Backend::Wgsl {
            let device = gpu::GpuPasses::new(&kernel, &interp.sizes, 0, recipe.param_dtype)?;
            let adapter = device.adapter().to_string();
            let fused = Fused::on_device(interp, kernel, Box::new(device))?;
            return Ok((
                Stepper::Fused(Box::new(fused), "wgsl"),
                Choice {
                    backend: "wgsl",
                    fallback: None,
                    compile_ms: 0.0,
                    device: Some(adapter),
                },
            ));
        }
        // `auto` compiles with Cranelift (milliseconds).
        let native = match backend {
            Backend::Llvm => Backend::Llvm,
            _ => Backend::Cranelift,
        };
        let (code, name) = (compile(&kernel, native)?, native.name());
        let fused = Fused::new(interp, kernel, code.fns, threads)?;
        Ok((
            Stepper::Fused(Box::new(fused), name),
            Choice {
                backend: name,
                fallback: None,
                compile_ms: code.compile_ms,
                device: None,
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

    /// One update on tensors the caller owns. A fused step works on them in place; the
    /// interpreter (the reference, not the fast path) steps copies and writes them back.
    pub fn step_slices(
        &mut self,
        params: &mut [&mut [f32]],
        grads: &[&[f32]],
        oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<(), String> {
        match self {
            Stepper::Fused(f, _) => f.step_slices(params, grads, oracle),
            Stepper::Interp(i) => {
                let mut owned: Vec<Vec<f32>> = params.iter().map(|p| p.to_vec()).collect();
                let grads: Vec<Vec<f32>> = grads.iter().map(|g| g.to_vec()).collect();
                i.step_with(&mut owned, &grads, oracle)?;
                for (p, o) in params.iter_mut().zip(&owned) {
                    if p.len() != o.len() {
                        return Err("internal error: the step changed a tensor's size".into());
                    }
                    p.copy_from_slice(o);
                }
                Ok(())
            }
        }
    }

    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) -> Result<(), String> {
        self.interp().needs_no_model()?;
        self.step_with(params, grads, None)
    }

    pub fn snapshot(&self) -> Snapshot {
        self.interp().snapshot()
    }

    pub fn restore(&mut self, s: Snapshot) -> Result<(), String> {
        match self {
            Stepper::Interp(i) => i.restore(s),
            Stepper::Fused(f, _) => f.restore(s),
        }
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

    /// The parameters in the recipe's half type as the last step wrote them, widened to
    /// f32, where the back end writes them in the step itself (wgsl); else `None` and
    /// the caller rounds the f32 parameters.
    pub fn stored_params(&self) -> Option<&[Vec<f32>]> {
        match self {
            Stepper::Fused(f, _) => f.stored_params(),
            Stepper::Interp(_) => None,
        }
    }

    /// The back end that runs the step.
    pub fn backend(&self) -> &'static str {
        match self {
            Stepper::Interp(_) => "interp",
            Stepper::Fused(_, name) => name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_back_end_is_registered_once_under_its_name() {
        for b in [
            Backend::Interp,
            Backend::Cranelift,
            Backend::Llvm,
            Backend::Wgsl,
            Backend::Auto,
        ] {
            let entries: Vec<&Entry> = BACKENDS.iter().filter(|e| e.backend == b).collect();
            assert_eq!(entries.len(), 1, "{b:?}");
            assert_eq!(Backend::parse(entries[0].name), Some(b));
        }
        assert_eq!(Backend::parse("gpu"), None);
    }
}
