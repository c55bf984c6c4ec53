//! The fuser: a recipe's stages lowered into the kernel IR (`super::Kernel`). Entry
//! points: `lower` and `unfused_cost` (the `--explain` baseline). See the module above for
//! the model: host values, element values, passes by level, rounds for model calls and
//! sliced reductions.

use std::collections::HashMap;

use super::{
    graph_uses, slice_of_scope, Buf, CallKind, EId, Elem, HId, Host, Kernel, MatCall, MatLeaf,
    ModelCall, Pass, PassKind, RId, Reduction, SliceRed, Store, Unsupported,
};
use crate::ast::{BinOp, ScalarType, TypeExpr, UnOp};
use crate::interp::{str_value, Slice};
use crate::ir::{Body, Builtin, DefBody, Expr, ExprId, Extent, HyperValue, Program, Recipe, Stmt};

mod stage;
use stage::StageCx;

/// Lowers a recipe's chain into the fused kernel.
pub fn lower(program: &Program, recipe: &Recipe) -> Result<Kernel, Unsupported> {
    let mut b = Builder::default();
    let out = b.stages(program, recipe, 0..recipe.stages.len(), true)?;
    Ok(b.finish(recipe.stages.len(), out))
}

/// What an element value waits on.
#[derive(Default)]
struct Deps {
    reds: Vec<RId>,
    calls: Vec<usize>,
    slices: Vec<usize>,
}

/// The current value of everything a stage can read or write while lowering.
#[derive(Clone, Copy)]
enum Val {
    H(HId),
    E(EId),
}

/// What the lowered stages leave behind.
struct Outputs {
    param: Option<EId>,
    /// The update as the last stage left it.
    grad: EId,
    stores: Vec<Store>,
    host_states: Vec<(usize, usize, HId)>,
    skips: Vec<(usize, HId)>,
}

#[derive(Default)]
struct Builder {
    host: Vec<Host>,
    elems: Vec<Elem>,
    reductions: Vec<Reduction>,
    calls: Vec<ModelCall>,
    matrices: Vec<MatCall>,
    slice_reds: Vec<SliceRed>,
    host_slice: Vec<Option<Slice>>,
    host_ids: HashMap<String, HId>,
    elem_ids: HashMap<String, EId>,
}

impl Builder {
    fn h(&mut self, n: Host) -> HId {
        let n = self.fold(n);
        let key = format!("{n:?}");
        if let Some(&id) = self.host_ids.get(&key) {
            return id;
        }
        let slice = self.slicing_of(&n);
        self.host.push(n);
        self.host_slice.push(slice);
        self.host_ids.insert(key, self.host.len() - 1);
        self.host.len() - 1
    }

    fn e(&mut self, n: Elem) -> EId {
        // A select on a constant condition is its branch, as on the interpreter.
        if let Elem::Select(c, a, b) = n {
            if let Elem::Scalar(h) = self.elems[c] {
                if let Host::Const(v) = self.host[h] {
                    return if v != 0.0 { a } else { b };
                }
            }
        }
        let key = format!("{n:?}");
        if let Some(&id) = self.elem_ids.get(&key) {
            return id;
        }
        self.elems.push(n);
        self.elem_ids.insert(key, self.elems.len() - 1);
        self.elems.len() - 1
    }

    /// Folds host arithmetic on constants, in f64 as the interpreter computes it.
    fn fold(&self, n: Host) -> Host {
        let c = |h: HId| match self.host[h] {
            Host::Const(v) => Some(v),
            _ => None,
        };
        match &n {
            Host::Unary(op, a) => match (op, c(*a)) {
                (UnOp::Neg, Some(x)) => Host::Const(-x),
                (UnOp::Not, Some(x)) => Host::Const(f64::from(u8::from(x == 0.0))),
                _ => n,
            },
            Host::Binary(op, a, b) => match (c(*a), c(*b)) {
                (Some(x), Some(y)) => Host::Const(crate::math::arith(*op, x, y)),
                _ => n,
            },
            Host::Select(k, a, b) => match c(*k) {
                Some(v) => self.host[if v != 0.0 { *a } else { *b }].clone(),
                None => n,
            },
            Host::Call(f, xs) => match xs.iter().map(|x| c(*x)).collect::<Option<Vec<_>>>() {
                Some(vals) => Host::Const(crate::math::builtin(*f, &vals)),
                None => n,
            },
            _ => n,
        }
    }

    fn lift(&mut self, v: Val) -> EId {
        match v {
            Val::E(e) => e,
            Val::H(h) if self.host_slice[h].is_some() => self.e(Elem::Load(Buf::Spread(h))),
            Val::H(h) => self.e(Elem::Scalar(h)),
        }
    }

    /// The slicing of a new host node (operands already built).
    fn slicing_of(&self, n: &Host) -> Option<Slice> {
        match n {
            Host::SliceState { stage: _, state: _ } => None, // set by the caller
            Host::SliceReduce(s) => Some(self.slice_reds[*s].target),
            Host::HostReduce { scope, .. } => slice_of_scope(*scope),
            Host::Unary(_, a) => self.host_slice[*a],
            Host::Binary(_, a, b) => self.combine(&[*a, *b]).ok().flatten(),
            Host::Select(c, a, b) => self.combine(&[*c, *a, *b]).ok().flatten(),
            Host::Call(_, xs) => self.combine(xs).ok().flatten(),
            _ => None,
        }
    }

    /// The slicing of a value combining `hs`, as the interpreter combines them: one
    /// slicing throughout, or rows (columns) with outer slices broadcast into them; Err
    /// when they do not combine (the result is then per element).
    fn combine(&self, hs: &[HId]) -> Result<Option<Slice>, ()> {
        let kinds: Vec<Slice> = hs.iter().filter_map(|h| self.host_slice[*h]).collect();
        let Some(finest) = kinds
            .iter()
            .copied()
            .find(|k| *k != Slice::Outer)
            .or(kinds.first().copied())
        else {
            return Ok(None);
        };
        let ok = kinds.iter().all(|k| *k == finest)
            || (matches!(finest, Slice::Row | Slice::Col)
                && kinds.iter().all(|k| *k == finest || *k == Slice::Outer));
        if ok {
            Ok(Some(finest))
        } else {
            Err(())
        }
    }

    /// A host node for a sliced state (its slicing is the state's).
    fn slice_state(&mut self, stage: usize, state: usize, k: Slice) -> HId {
        let h = self.h(Host::SliceState { stage, state });
        self.host_slice[h] = Some(k);
        h
    }

    /// Lowers stages `range` in order, starting from the step's input buffers.
    fn stages(
        &mut self,
        program: &Program,
        recipe: &Recipe,
        range: std::ops::Range<usize>,
        apply: bool,
    ) -> Result<Outputs, Unsupported> {
        let mut grad = self.e(Elem::Load(Buf::Grad));
        let mut param = self.e(Elem::Load(Buf::Param));
        let mut param_written = false;
        let mut out = Outputs {
            param: None,
            grad,
            stores: Vec::new(),
            host_states: Vec::new(),
            skips: Vec::new(),
        };
        for si in range {
            let def = &program.defs[recipe.stages[si].def];
            let body = match &def.body {
                DefBody::Stage(b) => b,
                DefBody::Builtin(name) => {
                    return Err(Unsupported(format!(
                        "`{}` is the builtin optimizer `{name}`, which runs on the host",
                        def.name
                    )))
                }
                _ => return Err(Unsupported(format!("`{}` is not a stage", def.name))),
            };
            let mut cx = StageCx {
                b: self,
                body,
                params: &def.params,
                args: &recipe.stages[si].args,
                stage: si,
                name: &def.name,
                grad,
                param,
                states: Vec::new(),
                locals: vec![None; body.locals.len()],
            };
            for (id, st) in body.states.iter().enumerate() {
                let v = match st.extent {
                    // Read only inside matrix expressions (`MatLeaf::State`), stored by
                    // a matrix call: never a value of the passes.
                    Extent::Matrix => Val::H(cx.b.h(Host::Const(f64::NAN))),
                    Extent::Element => Val::E(cx.b.e(Elem::Load(Buf::State {
                        stage: si,
                        state: id,
                    }))),
                    Extent::Uniform | Extent::Tensor | Extent::Group => {
                        Val::H(cx.b.h(Host::State {
                            stage: si,
                            state: id,
                        }))
                    }
                    other => match crate::interp::slice_of_extent(other) {
                        Some(k) => Val::H(cx.b.slice_state(si, id, k)),
                        None => {
                            return Err(Unsupported(format!(
                                "`{}` keeps {} state `{}`",
                                def.name,
                                other.describe(),
                                st.name
                            )))
                        }
                    },
                };
                cx.states.push(v);
            }
            for s in &body.stmts {
                match s {
                    // A matrix `let` (or a number computed from a matrix) is a
                    // definition, lowered where it is read (`StageCx::matrix`).
                    Stmt::Let(_, e) if crate::matrix::deferred(body, *e) => {}
                    Stmt::Let(l, e) => {
                        let v = cx.expr(*e)?;
                        cx.locals[*l] = Some(v);
                    }
                    Stmt::SetState(id, e) if body.states[*id].extent == Extent::Matrix => {
                        cx.matrix_call(*e, Some(*id))?;
                    }
                    Stmt::SetState(id, e) => {
                        let v = cx.expr(*e)?;
                        let v = match (body.states[*id].extent, v) {
                            (Extent::Element, v) => Val::E(cx.b.lift(v)),
                            (_, Val::H(h)) => Val::H(h),
                            (_, Val::E(_)) => {
                                return Err(Unsupported(format!(
                                    "`{}` stores a per-element value in state `{}`",
                                    def.name, body.states[*id].name
                                )))
                            }
                        };
                        cx.states[*id] = v;
                    }
                    Stmt::SetGrad(e) => {
                        let v = cx.expr(*e)?;
                        cx.grad = cx.b.lift(v);
                    }
                    Stmt::SetParam(e) => {
                        let v = cx.expr(*e)?;
                        cx.param = cx.b.lift(v);
                        param_written = true;
                    }
                    Stmt::Run(_) => {
                        return Err(Unsupported(format!(
                            "`{}`: a `run` statement that was not inlined",
                            def.name
                        )))
                    }
                    Stmt::Skip(e) => match cx.expr(*e)? {
                        Val::H(h) => out.skips.push((si, h)),
                        Val::E(_) => {
                            return Err(Unsupported(format!(
                                "`{}`: `skip if` on a per-element condition",
                                def.name
                            )))
                        }
                    },
                }
            }
            let (states, g, p) = (cx.states, cx.grad, cx.param);
            grad = g;
            param = p;
            for (id, v) in states.into_iter().enumerate() {
                match v {
                    _ if body.states[id].extent == Extent::Matrix => {}
                    Val::E(e) => {
                        let buf = Buf::State {
                            stage: si,
                            state: id,
                        };
                        if self.elems[e] != Elem::Load(buf) {
                            out.stores.push(Store {
                                buf,
                                value: e,
                                stage: si,
                            });
                        }
                    }
                    Val::H(h) => out.host_states.push((si, id, h)),
                }
            }
        }
        out.grad = grad;
        if apply && recipe.applies_updates && !param_written {
            param = self.e(Elem::Binary(BinOp::Add, param, grad));
            param_written = true;
        }
        if param_written {
            out.param = Some(param);
        }
        Ok(out)
    }

    fn finish(mut self, stages: usize, out: Outputs) -> Kernel {
        let mut stores = out.stores;
        if let Some(p) = out.param {
            // The parameter write comes after every stage: any `skip if` suppresses it.
            stores.push(Store {
                buf: Buf::Param,
                value: p,
                stage: stages,
            });
        }
        self.compute_levels();
        let levels = self
            .reductions
            .iter()
            .map(|r| r.level + 1)
            .chain(self.calls.iter().map(|c| c.level + 1))
            .chain(self.slice_reds.iter().map(|r| r.level + 1))
            .max()
            .unwrap_or(0);
        let mut roots: Vec<HId> = out.skips.iter().map(|(_, h)| *h).collect();
        roots.extend(out.host_states.iter().map(|(_, _, h)| *h));
        for st in &stores {
            roots.extend(self.uses(&[st.value]).1);
        }
        for c in &self.calls {
            let mut r = vec![c.arg];
            r.extend(c.point);
            roots.extend(self.uses(&r).1);
        }
        for r in &self.slice_reds {
            roots.extend(self.uses(&[r.input]).1);
        }
        let main_stores = stores.len();
        let mut temp_stores: Vec<Store> = Vec::new();
        // A reduction only a host `if` may need joins the shared sweep anyway when it is
        // cheap (computing it for nothing costs less than a sweep of its own); one that
        // calls `pow`, `exp` and the like per element waits for a step that needs it.
        let unconditional: Vec<bool> = self
            .unconditional(roots)
            .into_iter()
            .zip(&self.reductions)
            .map(|(u, r)| u || !self.calls_libm(r.input))
            .collect();
        let mut passes = Vec::new();
        for level in 0..levels {
            let at_level = |r: &RId| self.reductions[*r].level == level;
            // The reductions every step needs share one branch-free sweep; one that only
            // a step-uniform `if` may need (a p-norm at p ≠ 2) gets a sweep of its own,
            // run on the steps that take its branch.
            let mut groups: Vec<Vec<RId>> = vec![(0..self.reductions.len())
                .filter(|r| at_level(r) && unconditional[*r])
                .collect()];
            groups.extend(
                (0..self.reductions.len())
                    .filter(|r| at_level(r) && !unconditional[*r])
                    .map(|r| vec![r]),
            );
            for reds in groups.into_iter().filter(|g| !g.is_empty()) {
                let inputs: Vec<EId> = reds.iter().map(|&r| self.reductions[r].input).collect();
                passes.push(Pass {
                    reductions: reds,
                    ..self.pass(PassKind::Reduce, &inputs, &[])
                });
            }
            // The model calls and sliced reductions of this round: one sweep writes their
            // arguments and inputs.
            let calls: Vec<usize> = (0..self.calls.len())
                .filter(|&k| self.calls[k].level == level)
                .collect();
            let slice_reds: Vec<usize> = (0..self.slice_reds.len())
                .filter(|&s| self.slice_reds[s].level == level)
                .collect();
            if !calls.is_empty() || !slice_reds.is_empty() {
                let mut idx = Vec::new();
                let mut writes = Vec::new();
                for &k in &calls {
                    let c = &self.calls[k];
                    writes.push((Buf::CallArg(k), c.arg, c.stage));
                    writes.extend(c.point.map(|p| (Buf::CallPoint(k), p, c.stage)));
                    for (i, &e) in c.more.iter().enumerate() {
                        writes.push((Buf::MatIn(k, i + 1), e, c.stage));
                    }
                }
                for &sr in &slice_reds {
                    let r = &self.slice_reds[sr];
                    writes.push((Buf::SliceIn(sr), r.input, r.stage));
                }
                for (buf, value, stage) in writes {
                    idx.push(main_stores + temp_stores.len());
                    temp_stores.push(Store { buf, value, stage });
                }
                let written = &temp_stores[idx[0] - main_stores..];
                let roots: Vec<EId> = written.iter().map(|s| s.value).collect();
                let bufs: Vec<Buf> = written.iter().map(|s| s.buf).collect();
                passes.push(Pass {
                    stores: idx,
                    calls,
                    slice_reds,
                    ..self.pass(PassKind::Prepare, &roots, &bufs)
                });
            }
        }
        for p in passes.iter_mut() {
            p.conditional = p.reductions.iter().any(|r| !unconditional[*r]);
        }
        if !stores.is_empty() {
            let roots: Vec<EId> = stores.iter().map(|s| s.value).collect();
            let bufs: Vec<Buf> = stores.iter().map(|s| s.buf).collect();
            let map = Pass {
                stores: (0..stores.len()).collect(),
                ..self.pass(PassKind::Map, &roots, &bufs)
            };
            // A `skip if` suppresses the parameter write and the later stages' stores: on
            // the (rare) steps it fires, a variant with a guard on every store runs
            // instead, so the usual step's loop has no branch.
            if !out.skips.is_empty() {
                let skip_map = Pass {
                    kind: PassKind::SkipMap,
                    guarded: true,
                    ..map.clone()
                };
                passes.push(map);
                passes.push(skip_map);
            } else {
                passes.push(map);
            }
        }
        stores.extend(temp_stores);
        Kernel {
            host: self.host,
            elems: self.elems,
            reductions: self.reductions,
            calls: self.calls,
            matrices: self.matrices,
            slice_reds: self.slice_reds,
            host_slice: self.host_slice,
            stores,
            skips: out.skips,
            host_states: out.host_states,
            passes,
            stages,
        }
    }

    /// Per reduction: whether a step needs it whenever its stage runs, as opposed to only
    /// through a branch of a host `if` (which the step may not take). Host `if`s pass
    /// unconditional need to their condition only.
    fn unconditional(&self, roots: Vec<HId>) -> Vec<bool> {
        let mut seen = vec![false; self.host.len()];
        let mut out = vec![false; self.reductions.len()];
        let mut stack = roots;
        while let Some(h) = stack.pop() {
            if std::mem::replace(&mut seen[h], true) {
                continue;
            }
            match &self.host[h] {
                Host::Select(c, _, _) => stack.push(*c),
                Host::HostReduce { input, .. } => stack.push(*input),
                Host::SliceReduce(s) => stack.extend(self.uses(&[self.slice_reds[*s].input]).1),
                Host::Reduce(r) if !std::mem::replace(&mut out[*r], true) => {
                    stack.extend(self.uses(&[self.reductions[*r].input]).1);
                }
                Host::Unary(_, a) => stack.push(*a),
                Host::Binary(_, a, b) => stack.extend([*a, *b]),
                Host::Call(_, xs) => stack.extend(xs.iter().copied()),
                _ => {}
            }
        }
        out
    }

    /// Whether computing `root` calls a C math function per element.
    fn calls_libm(&self, root: EId) -> bool {
        let mut seen = vec![false; self.elems.len()];
        let mut stack = vec![root];
        while let Some(e) = stack.pop() {
            if std::mem::replace(&mut seen[e], true) {
                continue;
            }
            match &self.elems[e] {
                Elem::Binary(BinOp::Pow, _, _) => return true,
                Elem::Call(
                    Builtin::Exp
                    | Builtin::Log
                    | Builtin::Pow
                    | Builtin::Cos
                    | Builtin::Sin
                    | Builtin::Tanh,
                    _,
                ) => return true,
                Elem::Unary(_, a) => stack.push(*a),
                Elem::Binary(_, a, b) => stack.extend([*a, *b]),
                Elem::Select(c, a, b) => stack.extend([*c, *a, *b]),
                Elem::Call(_, xs) => stack.extend(xs.iter().copied()),
                Elem::Load(_) | Elem::Scalar(_) => {}
            }
        }
        false
    }

    /// Levels in creation order: a reduction's input was built before the reduction, and
    /// so were the reductions it depends on.
    fn compute_levels(&mut self) {
        // Reductions, sliced reductions and model calls form a DAG (each reads only what
        // was built before it); a fixpoint over all three gives every one its round.
        let red_deps: Vec<Deps> = self
            .reductions
            .iter()
            .map(|r| self.deps(&[r.input], &[]))
            .collect();
        let slice_deps: Vec<Deps> = self
            .slice_reds
            .iter()
            .map(|r| self.deps(&[r.input], &[]))
            .collect();
        let call_deps: Vec<Deps> = self
            .calls
            .iter()
            .map(|c| {
                let roots = c.inputs();
                // A matrix call also waits on the per-tensor numbers it reads (a norm).
                let hosts = match c.kind {
                    CallKind::Matrix(m) => self.matrices[m].scalars(),
                    _ => Vec::new(),
                };
                self.deps(&roots, &hosts)
            })
            .collect();
        for _ in 0..=self.reductions.len() + self.calls.len() + self.slice_reds.len() {
            let round = |d: &Deps, b: &Builder| {
                d.reds
                    .iter()
                    .map(|&r| b.reductions[r].level + 1)
                    .chain(d.calls.iter().map(|&k| b.calls[k].level + 1))
                    .chain(d.slices.iter().map(|&s| b.slice_reds[s].level + 1))
                    .max()
                    .unwrap_or(0)
            };
            for (r, d) in red_deps.iter().enumerate() {
                self.reductions[r].level = round(d, self);
            }
            for (s, d) in slice_deps.iter().enumerate() {
                self.slice_reds[s].level = round(d, self);
            }
            for (k, d) in call_deps.iter().enumerate() {
                self.calls[k].level = round(d, self);
            }
        }
    }

    /// What element values under `roots` wait on: reductions and sliced reductions
    /// (through their host operands, spread or not) and model calls (through their
    /// results).
    fn deps(&self, roots: &[EId], extra: &[HId]) -> Deps {
        let (bufs, mut hosts) = self.uses(roots);
        hosts.extend(extra);
        let mut d = Deps::default();
        for b in bufs {
            match b {
                Buf::CallOut(k) => d.calls.push(k),
                Buf::Spread(h) => hosts.push(h),
                _ => {}
            }
        }
        let mut seen = vec![false; self.host.len()];
        while let Some(h) = hosts.pop() {
            if std::mem::replace(&mut seen[h], true) {
                continue;
            }
            match &self.host[h] {
                Host::Reduce(r) => d.reds.push(*r),
                Host::SliceReduce(s) => d.slices.push(*s),
                Host::HostReduce { input, .. } => hosts.push(*input),
                Host::Unary(_, a) => hosts.push(*a),
                Host::Binary(_, a, b) => hosts.extend([*a, *b]),
                Host::Select(c, a, b) => hosts.extend([*c, *a, *b]),
                Host::Call(_, xs) => hosts.extend(xs.iter().copied()),
                _ => {}
            }
        }
        d
    }

    fn uses(&self, roots: &[EId]) -> (Vec<Buf>, Vec<HId>) {
        graph_uses(&self.host, &self.elems, roots)
    }

    /// A sweep computing the element values under `roots`: the buffers it loads, then the
    /// ones it writes (`writes`), in the order its code receives them; the host values
    /// it reads. Reductions, stores and rounds are the caller's to fill in.
    fn pass(&self, kind: PassKind, roots: &[EId], writes: &[Buf]) -> Pass {
        let (reads, scalars) = self.uses(roots);
        let mut bufs = reads.clone();
        for b in writes {
            if !bufs.contains(b) {
                bufs.push(*b);
            }
        }
        Pass {
            kind,
            reductions: Vec::new(),
            stores: Vec::new(),
            bufs,
            reads,
            scalars,
            guarded: false,
            conditional: false,
            calls: Vec::new(),
            slice_reds: Vec::new(),
        }
    }
}

/// The index of `x` in `v`, pushing it first when it is not there (one sweep computes a
/// reduction however many times a recipe writes it).
fn intern<T: PartialEq>(v: &mut Vec<T>, x: T) -> usize {
    match v.iter().position(|q| *q == x) {
        Some(i) => i,
        None => {
            v.push(x);
            v.len() - 1
        }
    }
}

/// What an unfused implementation moves: each transform its own sweep (plus one per
/// reduction), the gradient written out between transforms and `apply_updates` a last
/// sweep. Returns (passes, bytes per parameter); the `--explain` baseline.
pub fn unfused_cost(program: &Program, recipe: &Recipe) -> Result<(usize, usize), Unsupported> {
    let n = recipe.stages.len();
    let (mut passes, mut bytes) = (0, 0);
    for si in 0..n {
        let mut b = Builder::default();
        let o = b.stages(program, recipe, si..si + 1, false)?;
        let writes_param = program_writes_param(program, recipe, si);
        let mut stores = o.stores;
        if writes_param {
            stores.extend(o.param.map(|value| Store {
                buf: Buf::Param,
                value,
                stage: si,
            }));
        }
        let grad_changed = b.elems[o.grad] != Elem::Load(Buf::Grad);
        if grad_changed {
            stores.push(Store {
                buf: Buf::Grad,
                value: o.grad,
                stage: si,
            });
        }
        for r in &b.reductions {
            passes += 1;
            bytes += 4 * b.uses(&[r.input]).0.len();
        }
        for c in &b.calls {
            passes += 1;
            bytes += 4 * (b.uses(&[c.arg]).0.len() + 1);
        }
        if !stores.is_empty() {
            let roots: Vec<EId> = stores.iter().map(|s| s.value).collect();
            passes += 1;
            bytes += 4 * (b.uses(&roots).0.len() + stores.len());
        }
    }
    if recipe.applies_updates {
        passes += 1;
        bytes += 12;
    }
    Ok((passes, bytes))
}

fn program_writes_param(program: &Program, recipe: &Recipe, si: usize) -> bool {
    program.defs[recipe.stages[si].def].writes_param()
}
