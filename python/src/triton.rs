//! The Triton back end's device: a `PassDevice` whose passes a Python launcher
//! (`anneal.triton.Launcher`) runs as Triton kernels on PyTorch tensors. Entry point:
//! `device`.
//!
//! Rust keeps the host side of the step (schedules, lazy reductions, skips, states), as
//! for every back end; per pass it hands the launcher the scalar table, each tensor's
//! buffer addresses and sizes, and takes back the partials of a reduction, one row per
//! program. The GIL is taken only for the launch: the step runs with it released.

use anneal_compiler::backends::triton::{self, TritonPass};
use anneal_compiler::error::{Error, Result};
use anneal_compiler::kernel::exec::PassDevice;
use anneal_compiler::kernel::{Kernel, PassKind};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// Runs a kernel's passes through a launcher object.
struct Launcher {
    launcher: Py<PyAny>,
    passes: Vec<TritonPass>,
}

/// The module of `kernel` as Python sees it: its source, and per kernel a dict (name,
/// kind, buffers, writes, scalar slots, reductions, block size).
fn describe<'py>(py: Python<'py>, module: &triton::Module) -> PyResult<Bound<'py, PyList>> {
    let passes = PyList::empty(py);
    for p in &module.passes {
        let d = PyDict::new(py);
        d.set_item("name", &p.name)?;
        d.set_item("kind", kind_name(p.kind))?;
        let bufs: Vec<String> = p
            .bufs
            .iter()
            .map(|b| anneal_compiler::backends::wgsl::buf_name(*b))
            .collect();
        d.set_item("bufs", bufs)?;
        d.set_item("writes", p.writes.clone())?;
        d.set_item("slots", p.slots)?;
        let reds: Vec<&str> = p.reductions.iter().map(|r| r.name()).collect();
        d.set_item("reductions", reds)?;
        d.set_item("block", p.block)?;
        passes.append(d)?;
    }
    Ok(passes)
}

/// `recipe`'s fused step as a Triton module: `(source, passes)` as `describe` gives them.
pub fn module_of<'py>(
    py: Python<'py>,
    recipe: &anneal_runtime::session::CheckedRecipe,
) -> Result<(String, Bound<'py, PyList>)> {
    let module = triton::module(&recipe.kernel()?)?;
    let passes = describe(py, &module).map_err(|e| Error::internal(e.to_string()))?;
    Ok((module.source, passes))
}

/// Builds the launcher for `kernel`: `factory(source, passes)`, where `passes`
/// describes each kernel of the module `source`.
pub fn device(factory: &Py<PyAny>, kernel: &Kernel) -> Result<Box<dyn PassDevice>> {
    let module = triton::module(kernel)?;
    let launcher = Python::attach(|py| -> PyResult<Py<PyAny>> {
        let passes = describe(py, &module)?;
        factory.call1(py, (module.source.as_str(), passes))
    })
    .map_err(|e| Error::user(format!("cannot load the Triton kernels: {e}")))?;
    Ok(Box::new(Launcher {
        launcher,
        passes: module.passes,
    }))
}

fn kind_name(k: PassKind) -> &'static str {
    match k {
        PassKind::Reduce => "reduce",
        PassKind::Map => "map",
        PassKind::SkipMap => "skip_map",
        PassKind::Prepare => "prepare",
    }
}

impl PassDevice for Launcher {
    fn begin_step(&mut self) {}

    fn run(
        &mut self,
        p: usize,
        table: &[Vec<f32>],
        ptrs: &[Vec<*mut f32>],
        sizes: &[usize],
        nred: usize,
    ) -> Result<Vec<Vec<Vec<f64>>>> {
        let pass = self
            .passes
            .get(p)
            .ok_or_else(|| Error::internal(format!("no Triton kernel for pass {p}")))?;
        if pass.reductions.len() != nred {
            return Err(Error::internal(format!(
                "pass {p} has {} reductions, the host expects {nred}",
                pass.reductions.len()
            )));
        }
        // Addresses cross as integers: the launcher views them as tensors for the
        // launch only, while `Fused::run_pass` lends the buffers.
        let addrs: Vec<Vec<usize>> = ptrs
            .iter()
            .map(|row| row.iter().map(|&q| q as usize).collect())
            .collect();
        let rows: Vec<Vec<f64>> = Python::attach(|py| -> PyResult<Vec<Vec<f64>>> {
            self.launcher
                .call_method1(py, "run", (p, table.to_vec(), addrs, sizes.to_vec()))?
                .extract(py)
        })
        .map_err(|e| Error::user(format!("the Triton kernel of pass {p} failed: {e}")))?;
        if rows.len() != sizes.len() {
            return Err(Error::internal(format!(
                "the launcher returned partials for {} tensors, not {}",
                rows.len(),
                sizes.len()
            )));
        }
        let mut out = Vec::with_capacity(sizes.len());
        for (t, flat) in rows.into_iter().enumerate() {
            if nred == 0 {
                out.push(Vec::new());
                continue;
            }
            let programs = pass.programs(sizes[t]);
            if flat.len() != programs * nred {
                return Err(Error::internal(format!(
                    "pass {p} gave {} partials for tensor {t}, not {programs} × {nred}",
                    flat.len()
                )));
            }
            out.push(
                flat.chunks_exact(nred)
                    .map(|row| {
                        row.iter()
                            .zip(&pass.reductions)
                            .map(|(&v, &op)| triton::partial(op, v))
                            .collect()
                    })
                    .collect(),
            );
        }
        Ok(out)
    }
}
