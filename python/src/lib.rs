//! `anneal._native`: the thin pyo3 layer under the `anneal` Python package. It converts at
//! the boundary (NumPy arrays that view PyTorch's or NumPy's memory, Python callbacks for
//! a recipe's model calls) and calls `anneal_runtime::session`; everything a step means
//! lives there. No panic crosses into Python: every entry point runs under `guard`, and
//! the GIL is released while a step runs.

use anneal_compiler::backends::Backend;
use anneal_compiler::interp::Oracle;
use anneal_runtime::curriculum::{Sampler, SamplerState};
use anneal_runtime::session::{CheckedRecipe, Session};
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

mod triton;

create_exception!(
    _native,
    CompileError,
    PyValueError,
    "A recipe that does not check: args are (rendered report, diagnostics as JSON)."
);
create_exception!(
    _native,
    StepError,
    PyValueError,
    "A step, binding or state that anneal refused, with the reason."
);

/// Runs `f`, turning a panic (a bug in anneal, never the user's input) into a Python
/// exception instead of unwinding into the interpreter.
fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(
                anneal_compiler::error::Error::internal(format!("anneal panicked: {what}"))
                    .to_string(),
            ))
        }
    }
}

/// A refused step or binding as Python sees it: the caller's mistake is a `StepError`
/// (a `ValueError`); a broken invariant of anneal's own a `RuntimeError`, as a panic is.
fn step_err(e: impl Into<anneal_compiler::error::Error>) -> PyErr {
    let e = e.into();
    if e.is_internal() {
        PyRuntimeError::new_err(e.to_string())
    } else {
        StepError::new_err(e.to_string())
    }
}

/// A checked recipe.
#[pyclass(frozen, name = "Recipe", module = "anneal._native")]
struct PyRecipe {
    inner: CheckedRecipe,
}

#[pymethods]
impl PyRecipe {
    #[getter]
    fn name(&self) -> String {
        self.inner.recipe().name.clone()
    }

    #[getter]
    fn steps(&self) -> Option<u64> {
        self.inner.recipe().steps
    }

    #[getter]
    fn groups(&self) -> Vec<String> {
        self.inner.group_names()
    }

    #[getter]
    fn capabilities(&self) -> Vec<&'static str> {
        self.inner.capabilities()
    }

    #[getter]
    fn param_dtype(&self) -> &'static str {
        self.inner.recipe().param_dtype.name()
    }

    /// The batch size of the recipe's `data = csv(..., batch: N)`, if it names data.
    #[getter]
    fn batch_size(&self) -> Option<usize> {
        self.inner.recipe().data.as_ref().map(|d| d.batch)
    }

    #[getter]
    fn has_curriculum(&self) -> bool {
        !self.inner.recipe().curriculum.is_empty()
    }

    #[getter]
    fn warnings(&self) -> String {
        self.inner.warnings()
    }

    #[getter]
    fn hash(&self) -> String {
        format!("{:016x}", self.inner.hash())
    }

    fn explain(&self) -> PyResult<String> {
        guard(|| Ok(self.inner.explain()))
    }

    /// The fused step as a Triton module: `(source, passes)`, one dict per kernel.
    fn triton_module<'py>(&self, py: Python<'py>) -> PyResult<(String, Bound<'py, PyList>)> {
        guard(|| triton::module_of(py, &self.inner).map_err(step_err))
    }
}

/// Parses and checks `source`; raises `CompileError(rendered, diagnostics_json)`.
#[pyfunction]
#[pyo3(signature = (source, file, name=None))]
fn compile(source: &str, file: &str, name: Option<&str>) -> PyResult<PyRecipe> {
    guard(|| match CheckedRecipe::compile(file, source, name) {
        Ok(inner) => Ok(PyRecipe { inner }),
        Err(e) => Err(CompileError::new_err((
            e.rendered,
            e.diagnostics.to_string(),
        ))),
    })
}

/// A recipe bound to named tensors. The mutex makes calls from several Python threads
/// take turns (a step is not reentrant); it is never contended in ordinary use.
#[pyclass(name = "Session", module = "anneal._native")]
struct PySession {
    inner: Mutex<Session>,
}

impl PySession {
    fn session(&self) -> PyResult<MutexGuard<'_, Session>> {
        self.inner.lock().map_err(|_| {
            PyRuntimeError::new_err(
                "an earlier step of this optimizer failed inside anneal; build a new one",
            )
        })
    }
}

/// The model, as Python callbacks: an object with `grad_at(point)`, `hvp(point, v)` and
/// `loss_at(point)`, each taking and returning lists of flat float32 arrays. The first
/// Python exception is kept and re-raised as itself after the step.
struct PyOracle {
    obj: Py<PyAny>,
    error: Option<PyErr>,
}

impl PyOracle {
    fn with<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(Python<'_>, &Bound<'_, PyAny>) -> PyResult<T>,
    ) -> Result<T, anneal_compiler::error::Error> {
        let obj = &self.obj;
        let r = Python::attach(|py| f(py, obj.bind(py)));
        r.map_err(|e| {
            let msg = format!("the model's `{what}` failed: {e}");
            if self.error.is_none() {
                self.error = Some(e);
            }
            msg.into()
        })
    }
}

/// One element state: its `stage.state` key and a flat array per tensor.
type NamedArrays<'py> = (String, Vec<Bound<'py, PyArray1<f32>>>);

fn to_arrays<'py>(py: Python<'py>, ts: &[Vec<f32>]) -> Vec<Bound<'py, PyArray1<f32>>> {
    ts.iter().map(|t| PyArray1::from_slice(py, t)).collect()
}

/// A copy of an array's values in row-major order.
fn to_vec(a: &Bound<'_, PyArrayDyn<f32>>) -> Vec<f32> {
    a.readonly().as_array().iter().copied().collect()
}

fn from_arrays(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<f32>>> {
    let list: Vec<Bound<'_, PyArrayDyn<f32>>> = obj.extract()?;
    Ok(list.iter().map(to_vec).collect())
}

impl Oracle for PyOracle {
    fn grad_at(
        &mut self,
        params: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, anneal_compiler::error::Error> {
        self.with("grad_at", |py, o| {
            from_arrays(&o.call_method1("grad_at", (to_arrays(py, params),))?)
        })
    }

    fn hvp(
        &mut self,
        params: &[Vec<f32>],
        v: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, anneal_compiler::error::Error> {
        self.with("hvp", |py, o| {
            from_arrays(&o.call_method1("hvp", (to_arrays(py, params), to_arrays(py, v)))?)
        })
    }

    fn loss_at(
        &mut self,
        params: &[Vec<f32>],
    ) -> Result<(f64, Vec<Vec<f32>>), anneal_compiler::error::Error> {
        self.with("loss_at", |py, o| {
            let r = o.call_method1("loss_at", (to_arrays(py, params),))?;
            let (loss, grads): (f64, Bound<'_, PyAny>) = r.extract()?;
            Ok((loss, from_arrays(&grads)?))
        })
    }

    fn loss(&mut self) -> Result<f64, anneal_compiler::error::Error> {
        self.with("loss", |_, o| o.call_method0("loss")?.extract())
    }
}

fn backend(name: &str) -> PyResult<Backend> {
    Backend::parse(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown backend {name:?}; choose one of {}",
            Backend::NAMES.join(", ")
        ))
    })
}

#[pymethods]
impl PySession {
    #[new]
    /// `launcher` (backend `triton`): `launcher(source, passes)` loads the recipe's
    /// Triton module and returns the object that launches its kernels.
    #[pyo3(signature = (recipe, names, shapes, params, backend="auto", threads=0, launcher=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        recipe: &PyRecipe,
        names: Vec<String>,
        shapes: Vec<Vec<usize>>,
        params: Vec<Bound<'_, PyArrayDyn<f32>>>,
        backend: &str,
        threads: usize,
        launcher: Option<Py<PyAny>>,
    ) -> PyResult<PySession> {
        let backend = self::backend(backend)?;
        guard(|| {
            let values: Vec<Vec<f32>> = params.iter().map(to_vec).collect();
            let inner =
                match (backend, launcher) {
                    (Backend::Triton, Some(factory)) => Session::on_device(
                        &recipe.inner,
                        &names,
                        &shapes,
                        &values,
                        "triton",
                        &mut |kernel| triton::device(&factory, kernel),
                    ),
                    (Backend::Triton, None) => return Err(PyValueError::new_err(
                        "the triton back end needs a launcher (anneal.torch.Optimizer passes one)",
                    )),
                    (_, Some(_)) => {
                        return Err(PyValueError::new_err(
                            "a launcher is for the triton back end only",
                        ))
                    }
                    (backend, None) => {
                        Session::new(&recipe.inner, &names, &shapes, &values, backend, threads)
                    }
                }
                .map_err(step_err)?;
            Ok(PySession {
                inner: Mutex::new(inner),
            })
        })
    }

    /// One step on the tensors, in place. Without `oracle` the step runs on the arrays'
    /// memory with the GIL released; with one, on copies (the callbacks move the model's
    /// tensors), written back at the end.
    /// `frozen[i]`: tensor i had no gradient; it and its states stay as they are.
    #[pyo3(signature = (params, grads, oracle=None, frozen=None))]
    fn step(
        &mut self,
        py: Python<'_>,
        params: Vec<Bound<'_, PyArrayDyn<f32>>>,
        grads: Vec<Bound<'_, PyArrayDyn<f32>>>,
        oracle: Option<Py<PyAny>>,
        frozen: Option<Vec<bool>>,
    ) -> PyResult<()> {
        let frozen = frozen.unwrap_or_default();
        guard(|| {
            let Some(obj) = oracle else {
                let mut pw = params
                    .iter()
                    .map(|a| a.try_readwrite())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| step_err(format!("a parameter's memory is in use elsewhere (shared with another tensor?): {e}")))?;
                let gr = grads
                    .iter()
                    .map(|a| a.try_readonly())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| step_err(format!("a gradient's memory is being written elsewhere (shared with a parameter?): {e}")))?;
                let mut ps = pw
                    .iter_mut()
                    .map(|a| a.as_slice_mut())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| step_err("a parameter is not contiguous"))?;
                let gs = gr
                    .iter()
                    .map(|a| a.as_slice())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| step_err("a gradient is not contiguous"))?;
                let mut session = self.session()?;
                let inner = &mut *session;
                return py
                    .detach(|| inner.step_except(&mut ps, &gs, None, &frozen))
                    .map_err(step_err);
            };
            let mut owned: Vec<Vec<f32>> = params.iter().map(to_vec).collect();
            let gowned: Vec<Vec<f32>> = grads.iter().map(to_vec).collect();
            let mut oracle = PyOracle { obj, error: None };
            let mut session = self.session()?;
            let inner = &mut *session;
            let r = py.detach(|| {
                let mut ps: Vec<&mut [f32]> = owned.iter_mut().map(|p| p.as_mut_slice()).collect();
                let gs: Vec<&[f32]> = gowned.iter().map(|g| g.as_slice()).collect();
                inner.step_except(&mut ps, &gs, Some(&mut oracle), &frozen)
            });
            if let Some(e) = oracle.error.take() {
                return Err(e);
            }
            r.map_err(step_err)?;
            for (a, v) in params.iter().zip(&owned) {
                let mut w = a.try_readwrite().map_err(|e| step_err(e.to_string()))?;
                let s = w
                    .as_slice_mut()
                    .map_err(|_| step_err("a parameter is not contiguous"))?;
                if s.len() != v.len() {
                    return Err(step_err("a parameter changed size during the step"));
                }
                s.copy_from_slice(v);
            }
            Ok(())
        })
    }

    /// The recipe's evaluation view of `params` (schedule-free's x), or None.
    fn eval_params<'py>(
        &self,
        py: Python<'py>,
        params: Vec<Bound<'py, PyArrayDyn<f32>>>,
    ) -> PyResult<Option<Vec<Bound<'py, PyArray1<f32>>>>> {
        guard(|| {
            let owned: Vec<Vec<f32>> = params.iter().map(to_vec).collect();
            let view = self.session()?.eval_params(&owned).map_err(step_err)?;
            Ok(view.map(|ts| to_arrays(py, &ts)))
        })
    }

    fn observe(&mut self, metric: f64) -> PyResult<()> {
        if !metric.is_finite() {
            return Err(PyValueError::new_err(format!(
                "observe() needs a finite metric, got {metric}"
            )));
        }
        guard(|| {
            self.session()?.observe(metric);
            Ok(())
        })
    }

    fn learning_rates(&self) -> PyResult<Vec<Option<f64>>> {
        Ok(self.session()?.learning_rates())
    }

    fn momenta(&self) -> PyResult<Vec<Option<f64>>> {
        Ok(self.session()?.momenta())
    }

    fn loss_scale(&self) -> PyResult<Option<f64>> {
        Ok(self.session()?.loss_scale())
    }

    fn group_of(&self) -> PyResult<Vec<usize>> {
        Ok(self.session()?.group_of())
    }

    #[getter]
    fn last_skipped(&self) -> PyResult<bool> {
        Ok(self.session()?.last_skipped())
    }

    #[getter]
    fn skipped_steps(&self) -> PyResult<u64> {
        Ok(self.session()?.skipped_steps())
    }

    #[getter]
    fn steps_taken(&self) -> PyResult<u64> {
        Ok(self.session()?.steps_taken())
    }

    #[getter]
    fn backend(&self) -> PyResult<&'static str> {
        Ok(self.session()?.choice().backend)
    }

    #[getter]
    fn fallback(&self) -> PyResult<Option<String>> {
        Ok(self.session()?.choice().fallback.clone())
    }

    /// `[(key, [flat float32 array per tensor])]`, copies of every element state.
    fn element_states<'py>(&self, py: Python<'py>) -> PyResult<Vec<NamedArrays<'py>>> {
        Ok(self
            .session()?
            .element_states()
            .into_iter()
            .map(|s| (s.key, to_arrays(py, &s.per_tensor)))
            .collect())
    }

    fn progress_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = guard(|| self.session()?.progress_bytes().map_err(step_err))?;
        Ok(PyBytes::new(py, &bytes))
    }

    fn restore(
        &mut self,
        progress: &[u8],
        elements: Vec<(String, Vec<Bound<'_, PyArrayDyn<f32>>>)>,
    ) -> PyResult<()> {
        guard(|| {
            let elements: Vec<(String, Vec<Vec<f32>>)> = elements
                .iter()
                .map(|(k, ts)| (k.clone(), ts.iter().map(to_vec).collect()))
                .collect();
            self.session()?
                .restore(progress, &elements)
                .map_err(step_err)
        })
    }
}

/// A recipe's curriculum over `num_examples` rows: the seeded sampler `anneal run` draws
/// batches from, with per-example losses fed by the caller (`observe`).
#[pyclass(name = "Curriculum", module = "anneal._native")]
struct PyCurriculum {
    inner: Mutex<(Sampler, Vec<f32>)>,
}

impl PyCurriculum {
    fn lock(&self) -> PyResult<MutexGuard<'_, (Sampler, Vec<f32>)>> {
        self.inner.lock().map_err(|_| {
            PyRuntimeError::new_err("an earlier call of this sampler failed inside anneal")
        })
    }
}

#[pymethods]
impl PyCurriculum {
    #[new]
    fn new(recipe: &PyRecipe, num_examples: usize, batch_size: usize, seed: u64) -> PyResult<Self> {
        let phases = recipe.inner.recipe().curriculum.clone();
        if phases.is_empty() {
            return Err(PyValueError::new_err(format!(
                "recipe `{}` has no curriculum block to sample by",
                recipe.inner.recipe().name
            )));
        }
        if num_examples == 0 || batch_size == 0 {
            return Err(PyValueError::new_err(
                "a curriculum needs at least one example and a batch size of at least 1",
            ));
        }
        let sampler = Sampler::new(phases, (0..num_examples).collect(), batch_size, seed);
        Ok(PyCurriculum {
            inner: Mutex::new((sampler, vec![0.0; num_examples])),
        })
    }

    /// The values of difficulty column `name`, one per example.
    fn set_column(&self, name: &str, values: Vec<f32>) -> PyResult<()> {
        let mut g = self.lock()?;
        if values.len() != g.0.rows.len() {
            return Err(PyValueError::new_err(format!(
                "column `{name}` has {} values for {} examples",
                values.len(),
                g.0.rows.len()
            )));
        }
        g.0.set_column(name, values);
        Ok(())
    }

    /// The examples of step `t`'s batch: losses refreshed from the observed table when
    /// due, then a draw from the visible set.
    fn draw(&self, t: u64) -> PyResult<(Vec<usize>, f64)> {
        guard(|| {
            let mut g = self.lock()?;
            let (sampler, losses) = &mut *g;
            sampler
                .prepare(t, |rows| Ok(rows.iter().map(|r| losses[*r]).collect()))
                .map_err(step_err)?;
            let (picks, fraction) = sampler.draw(t);
            Ok((sampler.rows_at(&picks), fraction))
        })
    }

    /// Records per-example losses (the latest loss of each example is kept).
    fn observe(&self, indices: Vec<usize>, losses: Vec<f32>) -> PyResult<()> {
        let mut g = self.lock()?;
        if indices.len() != losses.len() {
            return Err(PyValueError::new_err(format!(
                "observe() got {} indices and {} losses",
                indices.len(),
                losses.len()
            )));
        }
        let n = g.1.len();
        for (i, l) in indices.into_iter().zip(losses) {
            *g.1.get_mut(i).ok_or_else(|| {
                PyValueError::new_err(format!("index {i} is not an example (there are {n})"))
            })? = l;
        }
        Ok(())
    }

    /// Whether step `t`'s phase backpropagates only part of each batch (OHEM, selective
    /// backprop), and which positions of a batch with these losses it keeps.
    fn selects(&self, t: u64) -> PyResult<bool> {
        Ok(self.lock()?.0.selects(t))
    }

    fn select(&self, t: u64, batch_losses: Vec<f32>) -> PyResult<Vec<usize>> {
        guard(|| Ok(self.lock()?.0.select(t, &batch_losses)))
    }

    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let g = self.lock()?;
        let state = (
            g.0.save(),
            g.1.iter().map(|x| x.to_bits()).collect::<Vec<u32>>(),
        );
        let bytes = serde_json::to_vec(&state).map_err(|e| step_err(e.to_string()))?;
        Ok(PyBytes::new(py, &bytes))
    }

    fn restore(&self, bytes: &[u8]) -> PyResult<()> {
        let (saved, losses): (SamplerState, Vec<u32>) =
            serde_json::from_slice(bytes).map_err(|e| {
                step_err(format!(
                    "the sampler state is damaged or not anneal's ({e})"
                ))
            })?;
        let mut g = self.lock()?;
        if losses.len() != g.1.len() {
            return Err(step_err(format!(
                "the sampler state is for {} examples, this sampler has {}",
                losses.len(),
                g.1.len()
            )));
        }
        g.0.restore(saved).map_err(step_err)?;
        g.1 = losses.into_iter().map(f32::from_bits).collect();
        Ok(())
    }
}

/// The recipe source a golden case stands for (`anneal conformance --emit-recipe`), as
/// an optimizer a caller steps (schedule cases get their generator's optimizer).
#[pyfunction]
fn case_recipe(path: &str) -> PyResult<String> {
    guard(|| {
        let case =
            anneal_runtime::conformance::load_case(std::path::Path::new(path)).map_err(step_err)?;
        anneal_runtime::conformance::optimizer_recipe_source(&case).map_err(step_err)
    })
}

/// The case files under `paths`, as `anneal conformance` finds them (directories
/// searched for `*.json` other than `index.json`), sorted.
#[pyfunction]
fn case_files(paths: Vec<String>) -> PyResult<Vec<String>> {
    let paths: Vec<std::path::PathBuf> = paths.into_iter().map(Into::into).collect();
    let files = anneal_runtime::conformance::collect_cases(&paths).map_err(step_err)?;
    Ok(files.iter().map(|f| f.display().to_string()).collect())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRecipe>()?;
    m.add_class::<PySession>()?;
    m.add_class::<PyCurriculum>()?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(case_recipe, m)?)?;
    m.add_function(wrap_pyfunction!(case_files, m)?)?;
    m.add("CompileError", m.py().get_type::<CompileError>())?;
    m.add("StepError", m.py().get_type::<StepError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
