//! The host side of a fused step's arithmetic: every host value (hyperparameters,
//! schedules, step counts, states, reduction results, per-slot values) for one tensor,
//! in f64, memoized for the step, evaluated lazily as the interpreter evaluates it.
//! Entry point: `HostEval::eval` (and `eval_slice` for per-slot values).

use crate::error::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

use super::{Buf, EId, Elem, Host, Kernel, RId};
use crate::interp::{str_value, Interpreter, Partial, Slice};
use crate::ir::{Scope, ShapeInfo};
use crate::math::{arith, builtin};
use crate::state::{StateValue, StepState};

/// Host values of one step, memoized per tensor; `None` while a reduction they need has
/// not run (it is then recorded in `needed`).
pub(crate) struct HostEval<'a, 'p> {
    pub(crate) kernel: &'a Kernel,
    pub(crate) interp: &'a Interpreter<'p>,
    /// The state the step starts from (its states, counts and metrics).
    pub(crate) state: &'a StepState,
    pub(crate) hypers: &'a mut Vec<Option<Vec<Option<Vec<f64>>>>>,
    pub(crate) reduced: &'a [Option<Vec<f64>>],
    /// Results of the sliced reductions run so far: per tensor, per slot.
    pub(crate) sliced: &'a [Option<Vec<Vec<f64>>>],
    pub(crate) memo: Vec<Option<Option<f64>>>,
    /// Sliced host values, per (value, tensor).
    pub(crate) slice_memo: BTreeMap<(usize, usize), Option<Vec<f64>>>,
    pub(crate) nt: usize,
    pub(crate) needed: BTreeSet<RId>,
    pub(crate) needed_slices: BTreeSet<usize>,
}

impl<'a, 'p> HostEval<'a, 'p> {
    pub(crate) fn new(
        kernel: &'a Kernel,
        interp: &'a Interpreter<'p>,
        state: &'a StepState,
        hypers: &'a mut Vec<Option<Vec<Option<Vec<f64>>>>>,
        reduced: &'a [Option<Vec<f64>>],
        sliced: &'a [Option<Vec<Vec<f64>>>],
        nt: usize,
    ) -> Self {
        HostEval {
            memo: vec![None; kernel.host.len() * (nt + 1)],
            slice_memo: BTreeMap::new(),
            kernel,
            interp,
            state,
            hypers,
            reduced,
            sliced,
            nt,
            needed: BTreeSet::new(),
            needed_slices: BTreeSet::new(),
        }
    }

    /// A sliced host value for tensor `t`, one entry per slot of its slicing; `None`
    /// while a sliced reduction it needs has not run.
    pub(crate) fn eval_slice(&mut self, h: usize, t: usize) -> Result<Option<Vec<f64>>> {
        if let Some(v) = self.slice_memo.get(&(h, t)) {
            return Ok(v.clone());
        }
        let (kernel, interp) = (self.kernel, self.interp);
        let k = kernel.host_slice[h].ok_or_else(|| Error::internal("not a sliced value"))?;
        let view = interp
            .views
            .get(t)
            .ok_or_else(|| Error::internal("no such tensor"))?;
        let v = match &kernel.host[h] {
            Host::SliceState { stage, state } => match self.state.value(*stage, *state) {
                StateValue::Slice(_, vals) => vals.get(t).cloned(),
                _ => None,
            },
            Host::SliceReduce(s) => match &self.sliced[*s] {
                Some(v) => v.get(t).cloned(),
                None => {
                    self.needed_slices.insert(*s);
                    None
                }
            },
            Host::HostReduce { op, input, .. } => {
                // Into outer slices, as the interpreter reduces a sliced value.
                let from = kernel.host_slice[*input].unwrap_or(Slice::Outer);
                match self.eval_slice(*input, t)? {
                    Some(vals) => {
                        let mut acc = vec![Partial::empty(); view.count(k)];
                        for (j, v) in vals.iter().enumerate() {
                            if let Some(a) = acc.get_mut(view.outer_of(from, j)) {
                                a.push(*v);
                            }
                        }
                        Some(acc.iter().map(|a| a.finish(*op)).collect())
                    }
                    None => None,
                }
            }
            node => {
                // Slot-wise f64 arithmetic over operands broadcast to this slicing.
                let ops: Vec<usize> = match node {
                    Host::Unary(_, a) => vec![*a],
                    Host::Binary(_, a, b) => vec![*a, *b],
                    Host::Select(c, a, b) => vec![*c, *a, *b],
                    Host::Call(_, xs) => xs.clone(),
                    _ => return Err(Error::internal("an unexpected sliced value")),
                };
                let n = view.count(k);
                let mut cols: Vec<Option<Vec<f64>>> = Vec::with_capacity(ops.len());
                for &o in &ops {
                    cols.push(match kernel.host_slice[o] {
                        Some(l) if l == k => self.eval_slice(o, t)?,
                        // Outer slices broadcast into rows or columns.
                        Some(_) => self.eval_slice(o, t)?.map(|v| {
                            (0..n)
                                .map(|j| v.get(view.outer_of(k, j)).copied().unwrap_or(f64::NAN))
                                .collect::<Vec<_>>()
                        }),
                        None => self.eval(o, t)?.map(|x| vec![x; n]),
                    });
                }
                if cols.iter().any(Option::is_none) {
                    None
                } else {
                    let cols: Vec<Vec<f64>> = cols.into_iter().flatten().collect();
                    let mut xs = vec![0f64; cols.len()];
                    Some(
                        (0..n)
                            .map(|j| {
                                for (c, col) in cols.iter().enumerate() {
                                    xs[c] = col[j];
                                }
                                match node {
                                    Host::Unary(crate::ast::UnOp::Neg, _) => -xs[0],
                                    Host::Unary(crate::ast::UnOp::Not, _) => {
                                        f64::from(u8::from(xs[0] == 0.0))
                                    }
                                    Host::Binary(op, _, _) => arith(*op, xs[0], xs[1]),
                                    Host::Select(..) => {
                                        if xs[0] != 0.0 {
                                            xs[1]
                                        } else {
                                            xs[2]
                                        }
                                    }
                                    Host::Call(b, _) => builtin(*b, &xs),
                                    _ => f64::NAN,
                                }
                            })
                            .collect(),
                    )
                }
            }
        };
        self.slice_memo.insert((h, t), v.clone());
        Ok(v)
    }

    /// The `skip if` conditions in stage order: (stages that run, skipped, undecided).
    pub(crate) fn skips(&mut self) -> Result<(usize, bool, bool)> {
        let active = self.kernel.stages;
        for &(stage, cond) in &self.kernel.skips {
            match self.eval(cond, 0)? {
                None => return Ok((stage + 1, false, true)),
                Some(c) if c != 0.0 => return Ok((stage + 1, true, false)),
                Some(_) => {}
            }
        }
        Ok((active, false, false))
    }

    /// The model calls whose results the element values under `roots` read, skipping the
    /// branch of an `if` whose step-uniform condition is known to go the other way.
    pub(crate) fn calls_under(&mut self, roots: &[EId], out: &mut BTreeSet<usize>) -> Result<()> {
        let k = self.kernel;
        let mut seen = vec![false; k.elems.len()];
        let mut stack: Vec<EId> = roots.to_vec();
        while let Some(e) = stack.pop() {
            if std::mem::replace(&mut seen[e], true) {
                continue;
            }
            match &k.elems[e] {
                Elem::Load(Buf::CallOut(c)) => {
                    out.insert(*c);
                }
                Elem::Load(_) | Elem::Scalar(_) => {}
                Elem::Unary(_, a) => stack.push(*a),
                Elem::Binary(_, a, b) => stack.extend([*a, *b]),
                Elem::Call(_, xs) => stack.extend(xs.iter().copied()),
                Elem::Select(c, a, b) => {
                    let branch = match k.elems[*c] {
                        Elem::Scalar(h) => {
                            let mut vals = Vec::new();
                            for t in 0..self.nt.max(1) {
                                vals.push(self.eval(h, t)?.map(|v| v != 0.0));
                            }
                            if vals[0].is_some() && vals.iter().all(|v| *v == vals[0]) {
                                vals[0]
                            } else {
                                None
                            }
                        }
                        _ => None,
                    };
                    match branch {
                        Some(true) => stack.push(*a),
                        Some(false) => stack.push(*b),
                        None => stack.extend([*c, *a, *b]),
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `h` is known for every tensor, without recording what it waits on.
    pub(crate) fn peek(&mut self, h: usize) -> Result<bool> {
        let saved = (self.needed.clone(), self.needed_slices.clone());
        let known = self.all_tensors(h);
        (self.needed, self.needed_slices) = saved;
        known
    }

    /// Evaluates `h` for every tensor; whether all were known.
    pub(crate) fn all_tensors(&mut self, h: usize) -> Result<bool> {
        let mut known = true;
        if self.kernel.host_slice[h].is_some() {
            for t in 0..self.nt {
                known &= self.eval_slice(h, t)?.is_some();
            }
            return Ok(known);
        }
        for t in 0..self.nt.max(1) {
            known &= self.eval(h, t)?.is_some();
        }
        Ok(known)
    }

    /// Tensor `t`'s parameter group. The one index past the tensors (a step-uniform
    /// value, or a recipe bound to no tensors) reads group 0, as the interpreter's
    /// step-uniform values do.
    pub(crate) fn group(&self, t: usize) -> usize {
        self.interp.group_of.get(t).copied().unwrap_or(0)
    }

    pub(crate) fn stage_hypers(&mut self, stage: usize) -> Result<&Vec<Option<Vec<f64>>>> {
        if self.hypers[stage].is_none() {
            let count = self.state.runs(stage) as f64;
            self.hypers[stage] = Some(self.interp.hypers(self.state, stage, count)?);
        }
        self.hypers[stage]
            .as_ref()
            .ok_or_else(|| Error::internal("hyperparameters not evaluated"))
    }

    pub(crate) fn eval(&mut self, h: usize, t: usize) -> Result<Option<f64>> {
        let key = t * self.kernel.host.len() + h;
        if let Some(v) = self.memo.get(key).copied().flatten() {
            return Ok(v);
        }
        let it = &self.interp;
        let v = match &self.kernel.host[h] {
            Host::Const(c) => Some(*c),
            Host::Hyper { stage, index } => {
                let g = self.group(t);
                let per = self
                    .stage_hypers(*stage)?
                    .get(*index)
                    .and_then(|v| v.as_ref())
                    .ok_or_else(|| Error::internal("list used as a number"))?;
                Some(per[g.min(per.len() - 1)])
            }
            Host::HyperIndex { stage, index, k } => {
                let st = self.state;
                let count = st.runs(*stage) as f64;
                let xs = it.list_arg(
                    st,
                    &it.recipe.stages[*stage].args,
                    *index,
                    self.group(t),
                    count,
                )?;
                Some(*xs.get(*k).ok_or_else(|| {
                    Error::user(format!("list has {} elements, index {k}", xs.len()))
                })?)
            }
            Host::StrEq { stage, index, lit } => {
                let v = it.recipe.stages[*stage]
                    .args
                    .get(*index)
                    .ok_or_else(|| Error::internal("missing argument"))?;
                Some(f64::from(u8::from(str_value(v, self.group(t))? == lit)))
            }
            Host::Step { stage } => Some(self.state.runs(*stage) as f64 + 1.0),
            Host::Loss => Some(self.state.loss()),
            Host::Shape(info) => Some(match it.views.get(t) {
                Some(v) => match info {
                    ShapeInfo::Rank => v.rank as f64,
                    ShapeInfo::Numel => v.numel as f64,
                    ShapeInfo::FactorDim => v.factor_dim as f64,
                    ShapeInfo::Rows => v.mat_rows as f64,
                    ShapeInfo::Cols => v.mat_cols as f64,
                },
                None => f64::NAN,
            }),
            Host::State { stage, state } => Some(match self.state.value(*stage, *state) {
                StateValue::Scalar(x) => *x,
                StateValue::Tensor(v) => v.get(t).copied().unwrap_or(f64::NAN),
                _ => f64::NAN,
            }),
            Host::Unary(op, a) => self.eval(*a, t)?.map(|v| match op {
                crate::ast::UnOp::Neg => -v,
                crate::ast::UnOp::Not => f64::from(u8::from(v == 0.0)),
            }),
            Host::Binary(op, a, b) => {
                let (x, y) = (self.eval(*a, t)?, self.eval(*b, t)?);
                match (x, y) {
                    (Some(x), Some(y)) => Some(arith(*op, x, y)),
                    _ => None,
                }
            }
            Host::Select(c, a, b) => match self.eval(*c, t)? {
                Some(c) => self.eval(if c != 0.0 { *a } else { *b }, t)?,
                None => {
                    self.eval(*a, t)?;
                    self.eval(*b, t)?;
                    None
                }
            },
            Host::Call(f, xs) => {
                let mut vals = Vec::with_capacity(xs.len());
                let mut known = true;
                for x in xs.clone() {
                    match self.eval(x, t)? {
                        Some(v) => vals.push(v),
                        None => known = false,
                    }
                }
                known.then(|| builtin(*f, &vals))
            }
            Host::HostReduce { op, scope, input } => {
                // A sliced value reduced per tensor, per group or over the step.
                let tensors: Vec<usize> = match scope {
                    Scope::Tensor if t < self.nt => vec![t],
                    Scope::Tensor => Vec::new(),
                    Scope::Group => (0..self.nt)
                        .filter(|&u| self.group(u) == self.group(t))
                        .collect(),
                    _ => (0..self.nt).collect(),
                };
                let mut acc = Partial::empty();
                let mut known = true;
                for u in tensors {
                    match self.eval_slice(*input, u)? {
                        Some(vals) => {
                            let mut p = Partial::empty();
                            vals.iter().for_each(|v| p.push(*v));
                            acc = acc.merge(&p);
                        }
                        None => known = false,
                    }
                }
                known.then(|| acc.finish(*op))
            }
            Host::SliceState { .. } | Host::SliceReduce(_) => {
                return Err(Error::internal("a sliced value used as a scalar"))
            }
            Host::Reduce(r) => match &self.reduced[*r] {
                Some(v) => Some(v.get(t).copied().unwrap_or(f64::NAN)),
                None => {
                    self.needed.insert(*r);
                    None
                }
            },
        };
        if let Some(slot) = self.memo.get_mut(key) {
            *slot = Some(v);
        }
        Ok(v)
    }
}
