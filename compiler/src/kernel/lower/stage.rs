//! Lowering one stage's body: its expressions to host and element values, reductions,
//! model calls and sliced values, against the builder's graph.

use super::*;
use crate::ir::{MatOp, ReduceOp, Scope};

/// Lowering one stage's body.
pub(super) struct StageCx<'a, 'p> {
    pub(super) b: &'a mut Builder,
    pub(super) body: &'p Body,
    pub(super) params: &'p [crate::ir::HyperParam],
    pub(super) args: &'p [HyperValue],
    pub(super) stage: usize,
    pub(super) name: &'p str,
    pub(super) grad: EId,
    pub(super) param: EId,
    pub(super) states: Vec<Val>,
    pub(super) locals: Vec<Option<Val>>,
}

impl StageCx<'_, '_> {
    /// An operation on host values stays on the host when their slicings combine;
    /// otherwise (or with an element operand) it is per element.
    pub(super) fn op(
        &mut self,
        vals: Vec<Val>,
        host: impl FnOnce(&[HId]) -> Host,
        elem: impl FnOnce(&[EId]) -> Elem,
    ) -> Val {
        let hs: Vec<HId> = vals
            .iter()
            .filter_map(|v| if let Val::H(h) = v { Some(*h) } else { None })
            .collect();
        if hs.len() == vals.len() && self.b.combine(&hs).is_ok() {
            return Val::H(self.b.h(host(&hs)));
        }
        let es: Vec<EId> = vals.into_iter().map(|v| self.b.lift(v)).collect();
        Val::E(self.b.e(elem(&es)))
    }

    /// A `bool` hyperparameter chooses between code paths (`amsgrad`, `nesterov`,
    /// `centered`): its value is compiled in, as torch and optax pick code by it, and a
    /// dead branch costs no memory traffic. Numbers stay runtime scalars.
    pub(super) fn structural(&self, i: usize) -> Option<f64> {
        let p = self.params.get(i)?;
        if p.ty != TypeExpr::Scalar(ScalarType::Bool) {
            return None;
        }
        let v = self.args.get(i)?;
        if !v.same_in_every_group() {
            return None;
        }
        match v {
            HyperValue::PerGroup(vs) => vs.first()?.as_f64(),
            other => other.as_f64(),
        }
    }

    pub(super) fn unsupported(&self, what: &str) -> Unsupported {
        Unsupported(format!("`{}` uses {what}", self.name))
    }

    pub(super) fn expr(&mut self, id: ExprId) -> Result<Val, Unsupported> {
        let stage = self.stage;
        Ok(match &self.body.exprs[id] {
            Expr::Const(v) => Val::H(self.b.h(Host::Const(*v))),
            Expr::Hyper(i) => match self.structural(*i) {
                Some(v) => Val::H(self.b.h(Host::Const(v))),
                None => Val::H(self.b.h(Host::Hyper { stage, index: *i })),
            },
            Expr::HyperIndex(i, k) => Val::H(self.b.h(Host::HyperIndex {
                stage,
                index: *i,
                k: *k,
            })),
            Expr::StrEq(i, lit) => match self.args.get(*i).map(|v| str_value(v, 0)) {
                // A choice between code paths, the same for every group: compiled in.
                Some(Ok(s)) if self.args[*i].same_in_every_group() => {
                    Val::H(self.b.h(Host::Const(f64::from(u8::from(s == lit)))))
                }
                _ => Val::H(self.b.h(Host::StrEq {
                    stage,
                    index: *i,
                    lit: lit.clone(),
                })),
            },
            Expr::Step => Val::H(self.b.h(Host::Step { stage })),
            Expr::Count => {
                let s = self.b.h(Host::Step { stage });
                let one = self.b.h(Host::Const(1.0));
                Val::H(self.b.h(Host::Binary(BinOp::Sub, s, one)))
            }
            Expr::Shape(info) => Val::H(self.b.h(Host::Shape(*info))),
            Expr::State(s) => self.states[*s],
            Expr::Local(l) => match self.locals[*l] {
                Some(v) => v,
                // A number computed from a matrix: a definition, lowered where it is read.
                None => match self.body.let_def(*l) {
                    Some(def) if crate::matrix::deferred(self.body, def) => {
                        let v = self.expr(def)?;
                        self.locals[*l] = Some(v);
                        v
                    }
                    _ => return Err(self.unsupported("an unset local")),
                },
            },
            Expr::Grad => Val::E(self.grad),
            Expr::Param => Val::E(self.param),
            Expr::Unary(op, a) => match self.expr(*a)? {
                Val::H(x) => Val::H(self.b.h(Host::Unary(*op, x))),
                Val::E(x) => Val::E(self.b.e(Elem::Unary(*op, x))),
            },
            Expr::Binary(op, a, c) => {
                let vals = vec![self.expr(*a)?, self.expr(*c)?];
                let op = *op;
                self.op(
                    vals,
                    |h| Host::Binary(op, h[0], h[1]),
                    |e| Elem::Binary(op, e[0], e[1]),
                )
            }
            Expr::Select(c, a, d) => {
                let vals = vec![self.expr(*c)?, self.expr(*a)?, self.expr(*d)?];
                self.op(
                    vals,
                    |h| Host::Select(h[0], h[1], h[2]),
                    |e| Elem::Select(e[0], e[1], e[2]),
                )
            }
            Expr::Call(f, xs) => {
                let vals = xs
                    .iter()
                    .map(|x| self.expr(*x))
                    .collect::<Result<Vec<_>, _>>()?;
                let f = *f;
                self.op(
                    vals,
                    |h| Host::Call(f, h.to_vec()),
                    |e| Elem::Call(f, e.to_vec()),
                )
            }
            Expr::Reduce(op, scope, x) => {
                let v = self.expr(*x)?;
                let sliced_scope = slice_of_scope(*scope);
                match v {
                    Val::E(input) if sliced_scope.is_none() => {
                        let red = Reduction {
                            op: *op,
                            scope: *scope,
                            input,
                            level: 0,
                        };
                        let r = intern(&mut self.b.reductions, red);
                        Val::H(self.b.h(Host::Reduce(r)))
                    }
                    Val::E(input) => {
                        let red = SliceRed {
                            op: *op,
                            target: sliced_scope.unwrap_or(Slice::Outer),
                            input,
                            stage,
                            level: 0,
                        };
                        let s = intern(&mut self.b.slice_reds, red);
                        Val::H(self.b.h(Host::SliceReduce(s)))
                    }
                    // A sliced value reduced to one per tensor, group or step, or into its
                    // outer slices: host arithmetic over its slots.
                    Val::H(input)
                        if self.b.host_slice[input].is_some()
                            && matches!(sliced_scope, None | Some(Slice::Outer)) =>
                    {
                        Val::H(self.b.h(Host::HostReduce {
                            op: *op,
                            scope: *scope,
                            input,
                        }))
                    }
                    Val::H(_) => {
                        return Err(self.unsupported(
                            "a reduction of a value that does not vary within its scope",
                        ))
                    }
                }
            }
            Expr::GradAt(x) | Expr::Hvp(x) => {
                let kind = if matches!(self.body.exprs[id], Expr::GradAt(_)) {
                    CallKind::GradAt
                } else {
                    CallKind::Hvp
                };
                let arg = self.expr(*x)?;
                let arg = self.b.lift(arg);
                let point = match kind {
                    CallKind::Hvp if self.b.elems[self.param] != Elem::Load(Buf::Param) => {
                        Some(self.param)
                    }
                    _ => None,
                };
                let k = self.b.calls.len();
                self.b.calls.push(ModelCall {
                    kind,
                    arg,
                    point,
                    more: Vec::new(),
                    stage,
                    level: 0,
                });
                Val::E(self.b.e(Elem::Load(Buf::CallOut(k))))
            }
            Expr::Mat(MatOp::ToElements, xs) if xs.len() == 1 => self.matrix(xs[0])?,
            // A number from a matrix: a matrix call writes it in its tensor's first entry
            // (`Sink::Number`, the rest 0), and a per-tensor sum reads it back exactly.
            Expr::Mat(op, _) if op.gives_number() => {
                let k = self.matrix_call(id, None)?;
                let input = self.b.e(Elem::Load(Buf::CallOut(k)));
                let red = Reduction {
                    op: ReduceOp::Sum,
                    scope: Scope::Tensor,
                    input,
                    level: 0,
                };
                let r = intern(&mut self.b.reductions, red);
                Val::H(self.b.h(Host::Reduce(r)))
            }
            Expr::Mat(..) | Expr::Fold { .. } => {
                return Err(self.unsupported("a matrix value outside `elements(...)`"))
            }
            Expr::Rademacher => Val::E(self.b.e(Elem::Load(Buf::Noise(stage)))),
            Expr::Loss => Val::H(self.b.h(Host::Loss)),
            Expr::ScheduleAt(..) | Expr::SchedCall(..) | Expr::List(..) | Expr::Metric => {
                return Err(self.unsupported("a schedule-only expression"))
            }
        })
    }
}

impl StageCx<'_, '_> {
    /// `elements(M)`: a round of its own, like a model call. A prepare pass writes the
    /// per-element values `matrix(x)` reads; the host evaluates `m` per tensor
    /// (`crate::matrix`, as the interpreter does) with the per-tensor numbers it reads;
    /// the result is one more buffer.
    fn matrix(&mut self, m: ExprId) -> Result<Val, Unsupported> {
        let k = self.matrix_call(m, None)?;
        Ok(Val::E(self.b.e(Elem::Load(Buf::CallOut(k)))))
    }

    /// The call that evaluates matrix expression `m` into `elements(M)` (no `store`) or
    /// into matrix state `store`; its index among the kernel's calls.
    pub(super) fn matrix_call(
        &mut self,
        m: ExprId,
        store: Option<crate::ir::StateId>,
    ) -> Result<usize, Unsupported> {
        let mut inputs = Vec::new();
        let mut leaves = Vec::new();
        for (id, kind) in crate::matrix::leaves(self.body, m) {
            match kind {
                crate::matrix::LeafKind::State(s) => leaves.push((id, MatLeaf::State(s))),
                crate::matrix::LeafKind::Elements => {
                    let v = self.expr(id)?;
                    leaves.push((id, MatLeaf::Input(inputs.len())));
                    inputs.push(self.b.lift(v));
                }
                crate::matrix::LeafKind::Scalar => match self.expr(id)? {
                    Val::H(h) => leaves.push((id, MatLeaf::Scalar(h))),
                    Val::E(_) => {
                        return Err(self.unsupported("a per-element number inside a matrix"))
                    }
                },
            }
        }
        let arg = match inputs.first() {
            Some(&e) => e,
            // A matrix built from numbers alone (`eye(rows())`): the prepare pass writes a
            // zero it never reads.
            None => {
                let zero = self.b.h(Host::Const(0.0));
                self.b.e(Elem::Scalar(zero))
            }
        };
        let mi = self.b.matrices.len();
        self.b.matrices.push(MatCall {
            stage: self.stage,
            root: m,
            leaves,
            store,
        });
        let k = self.b.calls.len();
        self.b.calls.push(ModelCall {
            kind: CallKind::Matrix(mi),
            arg,
            point: None,
            more: inputs.into_iter().skip(1).collect(),
            stage: self.stage,
            level: 0,
        });
        Ok(k)
    }
}
