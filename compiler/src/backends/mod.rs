//! Back ends: who runs a recipe's step. Entry point: `Stepper::new`; `BACKENDS` is the
//! one list of them (names, help), `compile`/`object` produce native code.
//!
//! `interp` is the reference interpreter; `cranelift` lowers the recipe to the fused
//! kernel (`kernel::lower`) and JIT-compiles its passes (`llvm` the same through LLVM);
//! `wgsl` writes the passes as WGSL compute shaders and runs them on a GPU through wgpu.
//! `triton` writes them as Triton kernels, which `anneal.torch` launches on PyTorch's
//! tensors (a `PassDevice` the Python package supplies: `Stepper::on_device`).
//! `auto` takes Cranelift when the recipe lowers and says why when it falls back to the
//! interpreter.

pub mod c;
pub mod cranelift;
pub mod emit;
pub mod gpu;
pub mod llvm;
mod stepper;
pub mod triton;
pub mod wgsl;

pub use stepper::{Choice, Stepper};

use crate::error::{Error, Result};
use crate::ir::{Program, Recipe};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::kernel::exec::PassFn;
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
        jit: impl FnOnce(&Kernel) -> Result<(Vec<usize>, f64)>,
    ) -> Result<Compiled> {
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
pub(crate) fn exportable(recipe: &Recipe, kernel: &Kernel) -> Result<()> {
    if kernel
        .calls
        .iter()
        .any(|c| matches!(c.kind, crate::kernel::CallKind::Matrix(_)))
    {
        return Err(
            "the step has matrix values (`matrix(...)`, `@`: Muon's Newton–Schulz), which an exported step does not carry yet"
                .into(),
        );
    }
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
    /// The fused kernel as Triton kernels, launched by the Python package on PyTorch's
    /// tensors (a device it supplies); the CLI exports them.
    Triton,
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
pub const BACKENDS: [Entry; 6] = [
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
    Entry {
        backend: Backend::Triton,
        name: "triton",
        about: "the fused step as Triton kernels on PyTorch's tensors (anneal.torch; `anneal build --emit triton` prints them)",
        native: false,
    },
];

impl Backend {
    pub const NAMES: [&'static str; 6] = [
        BACKENDS[0].name,
        BACKENDS[1].name,
        BACKENDS[2].name,
        BACKENDS[3].name,
        BACKENDS[4].name,
        BACKENDS[5].name,
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
pub fn compile(kernel: &Kernel, backend: Backend) -> Result<Compiled> {
    match backend {
        Backend::Cranelift => cranelift::compile(kernel),
        Backend::Llvm => llvm::compile(kernel),
        other => Err(Error::user(format!(
            "the {} back end does not compile native pass functions",
            other.name()
        ))),
    }
}

/// `kernel`'s passes as a relocatable object file (symbols `{prefix}{i}`), by a native
/// back end, for `anneal export`.
pub fn object(kernel: &Kernel, backend: Backend, prefix: &str) -> Result<Vec<u8>> {
    match backend {
        Backend::Cranelift => cranelift::object(kernel, prefix),
        Backend::Llvm => llvm::object(kernel, prefix),
        other => Err(Error::user(format!(
            "the {} back end does not write object files",
            other.name()
        ))),
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
            Backend::Triton,
            Backend::Auto,
        ] {
            let entries: Vec<&Entry> = BACKENDS.iter().filter(|e| e.backend == b).collect();
            assert_eq!(entries.len(), 1, "{b:?}");
            assert_eq!(Backend::parse(entries[0].name), Some(b));
        }
        assert_eq!(Backend::parse("gpu"), None);
    }
}
