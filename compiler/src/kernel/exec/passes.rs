//! The CPU side of running a pass: each tensor cut into fixed chunks, one task per chunk
//! on the thread pool (or the pass handed to a device), and reduction partials combined
//! chunk by chunk, tensor by tensor, in a fixed order — so no result depends on the
//! thread count.

use crate::error::{Error, Result};
use rayon::prelude::*;

use super::{Code, Fused, PassFn, CHUNK};
use crate::ir::{ReduceOp, Scope};
use crate::kernel::{Buf, RId};
use crate::state::{StateValue, StepState};

/// A pass invocation on one chunk; raw pointers into buffers that outlive the pass.
#[derive(Clone, Copy)]
struct Task {
    f: PassFn,
    table: *const f32,
    bufs: *const *mut f32,
    start: u64,
    end: u64,
}

// SAFETY: tasks of one pass write disjoint element ranges (and their own partials); the
// buffers they point into stay borrowed until every task has finished.
unsafe impl Send for Task {}
unsafe impl Sync for Task {}

impl Fused<'_> {
    /// Runs a reduction pass and finishes each enabled reduction per its scope: one value
    /// per tensor (per-group and global results repeated over their tensors), plus one
    /// more for step-uniform uses.
    pub(super) fn run_reduce(
        &mut self,
        st: &mut StepState,
        p: usize,
        table: &[Vec<f32>],
        ready: &[bool],
        params: &mut [&mut [f32]],
        grads: &[&[f32]],
    ) -> Result<Vec<(RId, Vec<f64>)>> {
        let pass = self.kernel.passes[p].clone();
        let nred = pass.reductions.len();
        let partials = self.run_pass(st, p, table, params, grads, nred)?;
        let nt = self.interp.sizes.len();
        let mut out = Vec::new();
        for (j, &r) in pass.reductions.iter().enumerate() {
            if !ready[j] {
                continue;
            }
            let red = &self.kernel.reductions[r];
            let per: Vec<Acc> = (0..nt)
                .map(|t| {
                    let mut a = Acc::empty(red.op);
                    for chunk in &partials[t] {
                        a.merge(chunk[j], 0.0);
                    }
                    a.n = self.interp.sizes[t] as f64;
                    a
                })
                .collect();
            let mut vals = vec![f64::NAN; nt + 1];
            match red.scope {
                Scope::Tensor => {
                    for t in 0..nt {
                        vals[t] = per[t].finish();
                    }
                }
                Scope::Group => {
                    let groups = self.interp.recipe.groups.len().max(1);
                    let mut acc = vec![Acc::empty(red.op); groups];
                    for (t, a) in per.iter().enumerate() {
                        let g = self.interp.group_of[t];
                        acc[g].merge(a.v, a.n);
                    }
                    for t in 0..nt {
                        vals[t] = acc[self.interp.group_of[t]].finish();
                    }
                }
                _ => {
                    let mut acc = Acc::empty(red.op);
                    for a in &per {
                        acc.merge(a.v, a.n);
                    }
                    vals = vec![acc.finish(); nt + 1];
                }
            }
            out.push((r, vals));
        }
        Ok(out)
    }

    /// Runs pass `p` over every tensor in chunks; returns, per tensor and chunk, the
    /// `nred` partial results.
    pub(super) fn run_pass(
        &mut self,
        st: &mut StepState,
        p: usize,
        table: &[Vec<f32>],
        params: &mut [&mut [f32]],
        grads: &[&[f32]],
        nred: usize,
    ) -> Result<Vec<Vec<Vec<f64>>>> {
        let pass = &self.kernel.passes[p];
        let nt = self.interp.sizes.len();
        let mut ptrs: Vec<Vec<*mut f32>> = Vec::with_capacity(nt);
        for t in 0..nt {
            let mut row = Vec::with_capacity(pass.bufs.len());
            for b in &pass.bufs {
                row.push(match *b {
                    Buf::Param => params[t].as_mut_ptr(),
                    Buf::Grad => grads[t].as_ptr() as *mut f32,
                    Buf::State { stage, state } => match st.value_mut(stage, state) {
                        StateValue::Element(v) => v[t].as_mut_ptr(),
                        _ => return Err(Error::internal("an element state is not per element")),
                    },
                    temp => {
                        let sizes = &self.interp.sizes;
                        let bufs = self
                            .temps
                            .entry(temp)
                            .or_insert_with(|| sizes.iter().map(|&n| vec![0f32; n]).collect());
                        bufs[t].as_mut_ptr()
                    }
                });
            }
            ptrs.push(row);
        }
        let (f, pool) = match &mut self.code {
            Code::Device(device) => return device.run(p, table, &ptrs, &self.interp.sizes, nred),
            Code::Cpu { fns, pool } => (fns[p], pool.as_ref()),
        };
        let mut tasks = Vec::new();
        let mut owner = Vec::new();
        for t in 0..nt {
            let n = self.interp.sizes[t];
            let mut start = 0;
            while start < n {
                let end = (start + CHUNK).min(n);
                tasks.push(Task {
                    f,
                    table: table[t].as_ptr(),
                    bufs: ptrs[t].as_ptr(),
                    start: start as u64,
                    end: end as u64,
                });
                owner.push(t);
                start = end;
            }
        }
        let mut partials = vec![0f64; tasks.len() * nred.max(1)];
        let run = |task: &Task, out: &mut [f64]| {
            // SAFETY: the pointers index buffers of at least `end` elements (sizes were
            // checked above) and the table has every slot the pass reads.
            unsafe {
                (task.f)(
                    task.table,
                    task.bufs,
                    task.start,
                    task.end,
                    out.as_mut_ptr(),
                )
            }
        };
        let width = nred.max(1);
        // Small steps run on the calling thread: waking the pool costs more than a few
        // chunks of work (the digits MLP's 10K parameters spent a quarter of a run
        // scheduling threads).
        let elements: usize = self.interp.sizes.iter().sum();
        match pool {
            Some(pool) if tasks.len() > 1 && elements >= 4 * CHUNK => pool.install(|| {
                tasks
                    .par_iter()
                    .zip(partials.par_chunks_mut(width))
                    .for_each(|(task, out)| run(task, out))
            }),
            _ => tasks
                .iter()
                .zip(partials.chunks_mut(width))
                .for_each(|(task, out)| run(task, out)),
        }
        let mut per = vec![Vec::new(); nt];
        for (i, t) in owner.into_iter().enumerate() {
            per[t].push(partials[i * width..i * width + nred].to_vec());
        }
        Ok(per)
    }
}

/// A reduction's running value: a sum (of values, squares, or `x·0` for finiteness), a
/// maximum or a minimum, and the element count for means.
#[derive(Debug, Clone, Copy)]
struct Acc {
    op: ReduceOp,
    v: f64,
    n: f64,
}

impl Acc {
    fn empty(op: ReduceOp) -> Acc {
        let v = match op {
            ReduceOp::Max => f64::NEG_INFINITY,
            ReduceOp::Min => f64::INFINITY,
            _ => 0.0,
        };
        Acc { op, v, n: 0.0 }
    }

    fn merge(&mut self, v: f64, n: f64) {
        self.v = match self.op {
            ReduceOp::Max => self.v.max(v),
            ReduceOp::Min => self.v.min(v),
            _ => self.v + v,
        };
        self.n += n;
    }

    fn finish(&self) -> f64 {
        match self.op {
            ReduceOp::Norm => self.v.sqrt(),
            ReduceOp::Sum | ReduceOp::Max | ReduceOp::Min => self.v,
            ReduceOp::Mean => self.v / self.n,
            ReduceOp::AllFinite => f64::from(u8::from(self.v.is_finite())),
        }
    }
}
