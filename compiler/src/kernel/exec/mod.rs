//! Drives a compiled kernel: the host side of a fused step. Entry point: `Fused::step`.
//!
//! Per step the host evaluates, in f64 and per tensor, the values the passes need
//! (hyperparameters and schedules, bias corrections, reduction results), runs each needed
//! reduction pass, then the map pass, then updates scalar and per-tensor states. Which
//! reductions are needed is decided lazily, as the interpreter decides it: a reduction
//! sweep of its own (an expensive reduction under a step-uniform `if`) runs only on the
//! steps that take its branch, so `clip_grad_norm_`'s p-norm costs nothing at p = 2.
//!
//! Passes run over fixed-size chunks of each tensor, split across threads; each chunk
//! writes its own partial results and the host combines them chunk by chunk in order, so
//! reductions do not depend on the thread count.
//!
//! Everything that changes from step to step (states, step counts, observed metrics) is
//! the caller's `StepState`, read and written as the interpreter does, so checkpoints and
//! `state()` read the same on both; the wrapped `Interpreter` (the recipe bound to its
//! tensors) evaluates hyperparameters and schedules.

use crate::error::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

mod matrix;
mod passes;

use super::host::HostEval;
use super::{Buf, CallKind, EId, Elem, Kernel, PassKind, RId};
use crate::interp::{rademacher, Interpreter, Oracle, Partial};
use crate::state::{StateValue, StepState};

/// A compiled pass: `(scalars, buffers, start, end, partials)`. `scalars` is the pass's
/// per-tensor scalar table (f32), `buffers` one pointer per `Pass::bufs`, `[start, end)`
/// the elements to process, `partials` one f64 per reduction of the pass.
pub type PassFn = unsafe extern "C" fn(*const f32, *const *mut f32, u64, u64, *mut f64);

/// A device that runs a kernel's passes itself (the GPU), in place of compiled CPU code.
pub trait PassDevice: Send {
    /// A step begins: buffers the host holds may have changed since the last one.
    fn begin_step(&mut self);

    /// How the device multiplies matrix values (`A @ B`), if it does; else the host does.
    fn gemm(&self) -> Option<&dyn crate::matrix::Gemm> {
        None
    }

    /// The host replaced states (a restored checkpoint): nothing on the device is current.
    fn host_changed(&mut self) {}

    /// The parameters as the last step stored them in a half type (mixed precision),
    /// widened to f32, when the device writes them.
    fn stored_params(&self) -> Option<&[Vec<f32>]> {
        None
    }

    /// Runs pass `p` over every tensor: `table[t]` is tensor t's scalar row, `ptrs[t]`
    /// one pointer per `Pass::bufs` into buffers of `sizes[t]` floats, which the pass
    /// updates in place. Returns, per tensor, the partial results in element order (one
    /// row of `nred` per workgroup), as `Fused::run_pass` returns its chunks'.
    fn run(
        &mut self,
        p: usize,
        table: &[Vec<f32>],
        ptrs: &[Vec<*mut f32>],
        sizes: &[usize],
        nred: usize,
    ) -> Result<Vec<Vec<Vec<f64>>>>;
}

/// The host values element values under `roots` read: as scalar slots, or spread over
/// the elements (sliced values).
fn host_deps(kernel: &Kernel, roots: &[EId]) -> Vec<usize> {
    let (bufs, mut hosts) = kernel.uses(roots);
    hosts.extend(bufs.into_iter().filter_map(|b| match b {
        Buf::Spread(h) => Some(h),
        _ => None,
    }));
    hosts
}

/// One f32 buffer per tensor.
type Tensors = Vec<Vec<f32>>;

/// A pass's scalar table: one row of f32 slots per tensor.
type Table = Vec<Vec<f32>>;

/// Elements per chunk: fixed, so the combination order of partial results (and so every
/// reduction) is the same for any thread count.
pub const CHUNK: usize = 1 << 15;

/// A recipe's step running compiled passes.
pub struct Fused<'p> {
    pub interp: Interpreter<'p>,
    pub(crate) kernel: Kernel,
    code: Code,
    /// Per store and per reduction: the host values its element graph reads.
    store_scalars: Vec<Vec<usize>>,
    red_scalars: Vec<Vec<usize>>,
    call_scalars: Vec<Vec<usize>>,
    slice_scalars: Vec<Vec<usize>>,
    /// The step's own buffers (model-call arguments and results, noise), per tensor.
    temps: BTreeMap<Buf, Vec<Vec<f32>>>,
    /// Per stage, the matrix values this step has computed (`matrix::Shared`).
    matrices: BTreeMap<usize, crate::matrix::Shared>,
}

/// What runs the passes: compiled functions (one per pass) on a pool of threads, or a
/// device (the GPU).
enum Code {
    Cpu {
        fns: Vec<PassFn>,
        pool: Option<rayon::ThreadPool>,
    },
    Device(Box<dyn PassDevice>),
}

impl<'p> Fused<'p> {
    /// `fns` holds one compiled function per pass of `kernel`; `threads` 0 means all cores.
    pub fn new(
        interp: Interpreter<'p>,
        kernel: Kernel,
        fns: Vec<PassFn>,
        threads: usize,
    ) -> Result<Self> {
        if fns.len() != kernel.passes.len() {
            return Err(Error::internal("one compiled function per pass is needed"));
        }
        let pool = if threads == 1 {
            None
        } else {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| Error::user(format!("cannot start the step's threads: {e}")))?,
            )
        };
        Ok(Fused::with_code(interp, kernel, Code::Cpu { fns, pool }))
    }

    /// The step with its passes run by `device` instead of compiled CPU code.
    pub fn on_device(
        interp: Interpreter<'p>,
        kernel: Kernel,
        device: Box<dyn PassDevice>,
    ) -> Result<Self> {
        Ok(Fused::with_code(interp, kernel, Code::Device(device)))
    }

    fn with_code(interp: Interpreter<'p>, kernel: Kernel, code: Code) -> Self {
        let store_scalars = kernel
            .stores
            .iter()
            .map(|s| host_deps(&kernel, &[s.value]))
            .collect();
        let red_scalars = kernel
            .reductions
            .iter()
            .map(|r| host_deps(&kernel, &[r.input]))
            .collect();
        let call_scalars = kernel
            .calls
            .iter()
            .map(|c| {
                let mut hs = host_deps(&kernel, &c.inputs());
                if let CallKind::Matrix(m) = c.kind {
                    hs.extend(kernel.matrices[m].scalars());
                }
                hs
            })
            .collect();
        let slice_scalars = kernel
            .slice_reds
            .iter()
            .map(|r| host_deps(&kernel, &[r.input]))
            .collect();
        Fused {
            interp,
            kernel,
            code,
            store_scalars,
            red_scalars,
            call_scalars,
            slice_scalars,
            temps: BTreeMap::new(),
            matrices: BTreeMap::new(),
        }
    }

    /// The caller replaced the step state (a restored checkpoint): a device's copies of
    /// the states are stale.
    pub fn state_replaced(&mut self) {
        if let Code::Device(d) = &mut self.code {
            d.host_changed();
        }
    }

    /// The parameters in the recipe's half type as the last step's map pass wrote them
    /// (the GPU back end with `precision { params: bf16 | f16 }`).
    pub fn stored_params(&self) -> Option<&[Vec<f32>]> {
        match &self.code {
            Code::Device(d) => d.stored_params(),
            Code::Cpu { .. } => None,
        }
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// One update of `st`: `grads` in, `params` updated in place.
    pub fn step(
        &mut self,
        st: &mut StepState,
        params: &mut [Vec<f32>],
        grads: &[Vec<f32>],
        oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<()> {
        let mut params: Vec<&mut [f32]> = params.iter_mut().map(|p| p.as_mut_slice()).collect();
        let grads: Vec<&[f32]> = grads.iter().map(|g| g.as_slice()).collect();
        self.step_slices(st, &mut params, &grads, oracle)
    }

    /// One update on tensors the caller owns (a PyTorch model's, a NumPy array's): the
    /// passes read and write them where they are, with no copy.
    pub fn step_slices(
        &mut self,
        st: &mut StepState,
        params: &mut [&mut [f32]],
        grads: &[&[f32]],
        mut oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<()> {
        self.interp.check_tensors(
            &params.iter().map(|p| p.len()).collect::<Vec<_>>(),
            &grads.iter().map(|g| g.len()).collect::<Vec<_>>(),
        )?;
        st.take_loss(&self.interp.recipe, oracle.as_deref_mut())?;
        let nt = self.interp.sizes.len();
        if let Code::Device(d) = &mut self.code {
            d.begin_step();
        }
        let stages = self.kernel.stages;
        let mut hypers: Vec<Option<Vec<Option<Vec<f64>>>>> = vec![None; stages];
        let mut reduced: Vec<Option<Vec<f64>>> = vec![None; self.kernel.reductions.len()];
        self.fill_noise(st);
        let mut called = vec![false; self.kernel.calls.len()];
        self.matrices.clear();
        // Spread buffers filled this step (several passes may read one).
        let mut spread = BTreeSet::new();
        let mut sliced: Vec<Option<Vec<Vec<f64>>>> = vec![None; self.kernel.slice_reds.len()];
        // Run reduction passes and model calls until every value the step needs is known.
        let (active, skipped) = loop {
            let mut ev = HostEval::new(
                &self.kernel,
                &self.interp,
                st,
                &mut hypers,
                &reduced,
                &sliced,
                nt,
            );
            let (active, skipped, blocked) = ev.skips()?;
            // While a `skip if` waits on a reduction, the later stages' reductions are
            // gathered too, betting the step is not skipped (the usual case), so that one
            // sweep computes both; on a skipped step they are wasted work, never wrong.
            let upto = if blocked { stages } else { active };
            for &(stage, _, h) in &self.kernel.host_states {
                if stage < upto {
                    ev.all_tensors(h)?;
                }
            }
            let mut roots = Vec::new();
            for (s, store) in self.kernel.stores.iter().enumerate() {
                let live = if store.buf.is_temporary() {
                    false
                } else if store.stage == stages {
                    !skipped
                } else {
                    store.stage < upto
                };
                if live {
                    for &h in &self.store_scalars[s] {
                        ev.all_tensors(h)?;
                    }
                    roots.push(store.value);
                }
            }
            // What the live stores need, and what that needs in turn: reductions (through
            // host values) and model calls (through their results).
            let mut calls = BTreeSet::new();
            ev.calls_under(&roots, &mut calls)?;
            // A matrix state's store is live like its stage's other stores.
            for (k, stage, _) in self.matrix_stores() {
                if stage < upto {
                    calls.insert(k);
                }
            }
            let (mut seen_r, mut seen_c, mut seen_s) =
                (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
            loop {
                let new_r: Vec<RId> = ev.needed.difference(&seen_r).copied().collect();
                let new_c: Vec<usize> = calls.difference(&seen_c).copied().collect();
                let new_s: Vec<usize> = ev.needed_slices.difference(&seen_s).copied().collect();
                if new_r.is_empty() && new_c.is_empty() && new_s.is_empty() {
                    break;
                }
                for sr in new_s {
                    seen_s.insert(sr);
                    for &h in &self.slice_scalars[sr] {
                        ev.all_tensors(h)?;
                    }
                    ev.calls_under(&[self.kernel.slice_reds[sr].input], &mut calls)?;
                }
                for r in new_r {
                    seen_r.insert(r);
                    for &h in &self.red_scalars[r] {
                        ev.all_tensors(h)?;
                    }
                    ev.calls_under(&[self.kernel.reductions[r].input], &mut calls)?;
                }
                for k in new_c {
                    seen_c.insert(k);
                    for &h in &self.call_scalars[k] {
                        ev.all_tensors(h)?;
                    }
                    let roots = self.call_roots(k);
                    ev.calls_under(&roots, &mut calls)?;
                }
            }
            let pending_calls: Vec<usize> = calls.iter().copied().filter(|&k| !called[k]).collect();
            if seen_r.is_empty() && pending_calls.is_empty() && seen_s.is_empty() {
                if blocked {
                    return Err(Error::internal("a `skip if` waits on no reduction"));
                }
                break (active, skipped);
            }
            let mut runnable = Vec::new();
            for &r in &seen_r {
                let mut ok = true;
                for &h in &self.red_scalars[r] {
                    ok &= ev.peek(h)?;
                }
                let mut under = BTreeSet::new();
                ev.calls_under(&[self.kernel.reductions[r].input], &mut under)?;
                if ok && under.iter().all(|&k| called[k]) {
                    runnable.push(r);
                }
            }
            let mut ready = Vec::new();
            for &k in &pending_calls {
                let mut ok = true;
                for &h in &self.call_scalars[k] {
                    ok &= ev.peek(h)?;
                }
                let mut under = BTreeSet::new();
                ev.calls_under(&self.call_roots(k), &mut under)?;
                if ok && under.iter().all(|&j| called[j]) {
                    ready.push(k);
                }
            }
            let mut ready_s = Vec::new();
            for &sr in &seen_s {
                let mut ok = true;
                for &h in &self.slice_scalars[sr] {
                    ok &= ev.peek(h)?;
                }
                let mut under = BTreeSet::new();
                ev.calls_under(&[self.kernel.slice_reds[sr].input], &mut under)?;
                if ok && under.iter().all(|&j| called[j]) {
                    ready_s.push(sr);
                }
            }
            if runnable.is_empty() && ready.is_empty() && ready_s.is_empty() {
                return Err(Error::internal(
                    "the step's reductions and model calls wait on each other",
                ));
            }
            let tables = self.tables_for_reductions(&mut ev, &runnable)?;
            let prepares = self.tables_for_calls(&mut ev, &ready, &ready_s)?;
            let numbers = self.matrix_numbers(&mut ev, &ready)?;
            let mut spreads = Vec::new();
            for p in tables
                .iter()
                .map(|t| t.0)
                .chain(prepares.iter().map(|t| t.0))
            {
                spreads.extend(self.spreads(&mut ev, p, &mut spread)?);
            }
            drop(ev);
            self.temps.extend(spreads);
            for (p, table, ready) in tables {
                let results = self.run_reduce(st, p, &table, &ready, params, grads)?;
                for (r, v) in results {
                    reduced[r] = Some(v);
                }
            }
            for (p, table) in prepares {
                self.run_pass(st, p, &table, params, grads, 0)?;
            }
            for k in ready {
                match self.kernel.calls[k].kind {
                    CallKind::Matrix(m) => self.call_matrix(st, k, m, &numbers)?,
                    _ => self.call_model(k, params, oracle.as_deref_mut())?,
                }
                called[k] = true;
            }
            for sr in ready_s {
                sliced[sr] = Some(self.reduce_slices(sr));
            }
        };
        // The map pass, then the host states, then the counters.
        let mut ev = HostEval::new(
            &self.kernel,
            &self.interp,
            st,
            &mut hypers,
            &reduced,
            &sliced,
            nt,
        );
        let mut finals = Vec::new();
        for &(stage, state, h) in &self.kernel.host_states {
            if stage >= active {
                continue;
            }
            let new = match st.value(stage, state) {
                // A sliced state: the value broadcast to the state's slicing, as the
                // interpreter stores it.
                StateValue::Slice(k, _) => {
                    let k = *k;
                    let mut per = Vec::with_capacity(nt);
                    for (t, view) in self.interp.views.iter().enumerate() {
                        let n = view.count(k);
                        per.push(match self.kernel.host_slice[h] {
                            Some(l) if l == k => ev.eval_slice(h, t)?.unwrap_or_default(),
                            Some(_) => {
                                let v = ev.eval_slice(h, t)?.unwrap_or_default();
                                (0..n)
                                    .map(|j| {
                                        v.get(view.outer_of(k, j)).copied().unwrap_or(f64::NAN)
                                    })
                                    .collect()
                            }
                            None => vec![ev.eval(h, t)?.unwrap_or(f64::NAN); n],
                        });
                    }
                    StateValue::Slice(k, per)
                }
                StateValue::Tensor(_) => StateValue::Tensor(
                    (0..nt)
                        .map(|t| ev.eval(h, t).map(|v| v.unwrap_or(f64::NAN)))
                        .collect::<Result<_, _>>()?,
                ),
                _ => StateValue::Scalar(ev.eval(h, 0)?.unwrap_or(f64::NAN)),
            };
            finals.push((stage, state, new));
        }
        let map = self.kernel.passes.iter().position(|p| {
            p.kind
                == if skipped {
                    PassKind::SkipMap
                } else {
                    PassKind::Map
                }
        });
        let map_table = match map {
            Some(p) => {
                let flag = if skipped { active } else { stages + 1 };
                Some((p, self.table(&mut ev, p, Some(flag as f32))?))
            }
            None => None,
        };
        let spreads = match map {
            Some(p) => self.spreads(&mut ev, p, &mut spread)?,
            None => Vec::new(),
        };
        drop(ev);
        self.temps.extend(spreads);
        if let Some((p, table)) = map_table {
            self.run_pass(st, p, &table, params, grads, 0)?;
        }
        for (stage, state, new) in finals {
            *st.value_mut(stage, state) = new;
        }
        self.commit_matrices(st, active)?;
        for s in 0..active {
            st.stage_ran(s);
        }
        st.step_done(skipped);
        Ok(())
    }

    /// The prepare passes that write the arguments of `ready` model calls, with their
    /// scalar tables.
    fn tables_for_calls(
        &self,
        ev: &mut HostEval,
        ready: &[usize],
        ready_slices: &[usize],
    ) -> Result<Vec<(usize, Table)>> {
        let mut out = Vec::new();
        for (p, pass) in self.kernel.passes.iter().enumerate() {
            if pass.kind == PassKind::Prepare
                && (pass.calls.iter().any(|k| ready.contains(k))
                    || pass.slice_reds.iter().any(|k| ready_slices.contains(k)))
            {
                out.push((p, self.table(ev, p, None)?));
            }
        }
        Ok(out)
    }

    /// The spread buffers pass `p` reads that `done` does not hold yet: each element its
    /// slot's value, as f32. Those fully known go into `done`.
    fn spreads(
        &self,
        ev: &mut HostEval,
        p: usize,
        done: &mut BTreeSet<Buf>,
    ) -> Result<Vec<(Buf, Tensors)>> {
        let mut out = Vec::new();
        for b in &self.kernel.passes[p].bufs {
            let Buf::Spread(h) = *b else { continue };
            if done.contains(b) {
                continue;
            }
            let k = self.kernel.host_slice[h]
                .ok_or_else(|| Error::internal("a spread value is not sliced"))?;
            let mut per = Vec::with_capacity(self.interp.sizes.len());
            // Filled once per step, once known: a pass may run while a value it carries
            // for a reduction that is not ready yet is still unknown (NaN, discarded).
            let mut known = true;
            for (t, view) in self.interp.views.iter().enumerate() {
                let vals = ev.eval_slice(h, t)?;
                known &= vals.is_some();
                let vals = vals.unwrap_or_default();
                per.push(
                    (0..view.numel)
                        .map(|i| vals.get(view.slot(k, i)).copied().unwrap_or(f64::NAN) as f32)
                        .collect(),
                );
            }
            if known {
                done.insert(*b);
            }
            out.push((*b, per));
        }
        Ok(out)
    }

    /// Sliced reduction `s` of the buffer its prepare pass wrote: per tensor, per slot,
    /// the elements in order, in f64 (the interpreter's arithmetic).
    fn reduce_slices(&self, s: usize) -> Vec<Vec<f64>> {
        let r = &self.kernel.slice_reds[s];
        let input = self.temps.get(&Buf::SliceIn(s));
        self.interp
            .views
            .iter()
            .enumerate()
            .map(|(t, view)| {
                let mut acc = vec![Partial::empty(); view.count(r.target)];
                if let Some(x) = input.and_then(|b| b.get(t)) {
                    for (i, v) in x.iter().enumerate() {
                        acc[view.slot(r.target, i)].push(f64::from(*v));
                    }
                }
                acc.iter().map(|a| a.finish(r.op)).collect()
            })
            .collect()
    }

    /// The element values model call `k` is made with.
    fn call_roots(&self, k: usize) -> Vec<EId> {
        self.kernel.calls[k].inputs()
    }

    /// Calls the model for call `k` on the arguments its prepare pass wrote.
    fn call_model(
        &mut self,
        k: usize,
        params: &[&mut [f32]],
        oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<()> {
        let c = self.kernel.calls[k].clone();
        let arg = self.temps.remove(&Buf::CallArg(k)).ok_or_else(|| {
            Error::internal(format!(
                "model call {k} runs before its argument is written"
            ))
        })?;
        let out = match c.kind {
            CallKind::GradAt => {
                let o =
                    oracle.ok_or("`grad_at` needs a model that computes gradients at a point")?;
                o.grad_at(&arg)
            }
            CallKind::Matrix(_) => {
                return Err(Error::internal("a matrix call made as a model call"))
            }
            CallKind::Hvp => {
                let o =
                    oracle.ok_or("`hvp` needs a model that computes Hessian-vector products")?;
                match self.temps.get(&Buf::CallPoint(k)) {
                    Some(at) => o.hvp(at, &arg),
                    None => {
                        // The model takes owned tensors; an HVP at the current point is
                        // rare enough (Sophia's every-k refresh) for the copy not to matter.
                        let at: Vec<Vec<f32>> = params.iter().map(|p| p.to_vec()).collect();
                        o.hvp(&at, &arg)
                    }
                }
            }
        };
        self.temps.insert(Buf::CallArg(k), arg);
        let out = out?;
        let sizes = &self.interp.sizes;
        if out.len() != sizes.len() || out.iter().zip(sizes).any(|(t, &n)| t.len() != n) {
            return Err("the model returned tensors of the wrong sizes".into());
        }
        self.temps.insert(Buf::CallOut(k), out);
        Ok(())
    }

    /// Fills each stage's `rademacher()` buffer for this step: the interpreter's stream,
    /// element by element.
    fn fill_noise(&mut self, st: &StepState) {
        let stages: Vec<usize> = self
            .kernel
            .elems
            .iter()
            .filter_map(|e| match e {
                Elem::Load(Buf::Noise(s)) => Some(*s),
                _ => None,
            })
            .collect();
        for s in stages {
            let step = st.runs(s) + 1;
            let seed = st.seed();
            let noise: Vec<Vec<f32>> = self
                .interp
                .sizes
                .iter()
                .enumerate()
                .map(|(t, &n)| (0..n).map(|i| rademacher(seed, step, s, t, i)).collect())
                .collect();
            self.temps.insert(Buf::Noise(s), noise);
        }
    }

    /// The reduction passes that hold a `runnable` reduction, with their scalar tables
    /// and, per reduction of the pass, whether its inputs are all known (a pass computes
    /// every reduction it holds; only those results are kept).
    fn tables_for_reductions(
        &self,
        ev: &mut HostEval,
        runnable: &[RId],
    ) -> Result<Vec<(usize, Table, Vec<bool>)>> {
        let mut out = Vec::new();
        for (p, pass) in self.kernel.passes.iter().enumerate() {
            if pass.kind != PassKind::Reduce
                || !pass.reductions.iter().any(|r| runnable.contains(r))
            {
                continue;
            }
            let mut ready = Vec::with_capacity(pass.reductions.len());
            for &r in &pass.reductions {
                let mut known = true;
                for &h in &self.red_scalars[r] {
                    known &= ev.peek(h)?;
                }
                ready.push(known);
            }
            out.push((p, self.table(ev, p, None)?, ready));
        }
        Ok(out)
    }

    /// Per tensor: the pass's scalar slots, then the active-stage count if it has one.
    fn table(&self, ev: &mut HostEval, p: usize, active: Option<f32>) -> Result<Table> {
        let pass = &self.kernel.passes[p];
        (0..self.interp.sizes.len())
            .map(|t| {
                let mut row = Vec::with_capacity(pass.scalars.len() + 1);
                for &h in &pass.scalars {
                    row.push(ev.eval(h, t)?.unwrap_or(f64::NAN) as f32);
                }
                if pass.guarded {
                    row.push(active.unwrap_or(0.0));
                }
                Ok(row)
            })
            .collect()
    }
}
