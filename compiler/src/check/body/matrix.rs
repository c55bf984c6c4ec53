//! Typing matrix values in a body: `matrix(x)`, `elements(M)`, `A @ B`, `transpose`,
//! `eye`, the per-element/matrix boundary (E0133) and `repeat` blocks (E0134).

use super::*;
use std::collections::HashMap;

use crate::ir::{MatDim, MatOp};

impl BodyCx<'_> {
    /// A matrix function: `matrix`, `elements`, `matmul` (`@`), `transpose`, `eye`.
    pub(super) fn mat_call(
        &mut self,
        op: MatOp,
        arity: usize,
        callee: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> ExprId {
        if self.kind == DefKind::Schedule || (self.in_state_init && !self.matrix_init) {
            let name = op.symbol();
            self.cx.diags.push(
                Diagnostic::error("E0132", span, format!("`{name}` is only available in a transform's body"))
                    .with_label("matrix value here")
                    .with_help("matrix values live in the statements of a transform or optimizer; states hold `elements(M)`"),
            );
            return self.error_expr(span);
        }
        let Some(xs) = self.positional(callee, args, arity, span) else {
            return self.error_expr(span);
        };
        for &x in &xs {
            if self.body.types[x].kind == ValueKind::Bool {
                let s = self.body.spans[x];
                self.cx.diags.push(
                    Diagnostic::error(
                        "E0120",
                        s,
                        format!("`{}` needs numbers, found bool", callee.name),
                    )
                    .with_label("bool")
                    .with_help("use `if cond then a else b` to turn a condition into a number"),
                );
            }
        }
        let result = match op {
            MatOp::ToElements => Extent::Element,
            _ if op.gives_number() => Extent::Tensor,
            _ => Extent::Matrix,
        };
        let mut xs = xs;
        if result == Extent::Matrix {
            self.pin_numbers(&mut xs);
        }
        for (i, &x) in xs.iter().enumerate() {
            let e = self.body.types[x].extent;
            let ok = match op {
                MatOp::FromElements => e != Extent::Matrix,
                MatOp::Eye => e.fits_in(Extent::Tensor),
                MatOp::InverseRoot if i > 0 => e.fits_in(Extent::Tensor),
                _ => e == Extent::Matrix,
            };
            if ok {
                continue;
            }
            let s = self.body.spans[x];
            let (msg, help) = match op {
                MatOp::FromElements => (
                    "`matrix(x)` takes a per-element value, and this is already a matrix"
                        .to_string(),
                    "use the matrix as it is".to_string(),
                ),
                MatOp::Eye => (
                    format!(
                        "`eye(n)` needs a number per tensor, but this is {}",
                        e.describe()
                    ),
                    "write e.g. `eye(rows())`".to_string(),
                ),
                MatOp::InverseRoot if i > 0 => (
                    format!(
                        "`inverse_root(A, p, eps)` takes a number per tensor for `{}`, but this is {}",
                        if i == 1 { "p" } else { "eps" },
                        e.describe()
                    ),
                    "e.g. `inverse_root(L, 4, 0)` for L^(-1/4)".to_string(),
                ),
                _ => (
                    format!(
                        "`{}` works on matrices, but this is {}",
                        op.symbol(),
                        e.describe()
                    ),
                    "view a per-element value as its tensor's matrix with `matrix(x)`".to_string(),
                ),
            };
            self.cx.diags.push(
                Diagnostic::error("E0133", s, msg)
                    .with_label(format!("this is {}", e.describe()))
                    .with_help(help),
            );
        }
        self.body
            .push(Expr::Mat(op, xs), Self::ty(ValueKind::Real, result), span)
    }

    /// A matrix and a per-element (or per-slice) value cannot meet in one operation: E0133,
    /// pointing at the finer one. The numbers that do meet a matrix are `pin`ned.
    pub(super) fn no_matrix_mix(&mut self, xs: &mut [ExprId], span: Span) {
        let has_matrix = xs
            .iter()
            .any(|&x| self.body.types[x].extent == Extent::Matrix);
        if !has_matrix {
            // A number computed from a matrix (`frobenius_norm(X) + eps`) is evaluated
            // where it is read, as a matrix is: the numbers beside it are pinned too.
            let numbers = xs
                .iter()
                .all(|&x| self.body.types[x].extent.fits_in(Extent::Tensor));
            let mut memo = HashMap::new();
            if numbers
                && xs
                    .iter()
                    .any(|&x| crate::matrix::derived(&self.body, x, &mut memo))
            {
                self.pin_numbers(xs);
            }
            return;
        }
        self.pin_numbers(xs);
        for &x in xs.iter() {
            let e = self.body.types[x].extent;
            if !e.clashes(Extent::Matrix) {
                continue;
            }
            let s = self.body.spans[x];
            self.cx.diags.push(
                Diagnostic::error("E0133", s, format!("a matrix and a {} value meet here", e.describe()))
                    .with_label(format!("this is {}", e.describe()))
                    .with_secondary(span, "in this operation")
                    .with_help("convert one side: `matrix(x)` views a per-element value as its tensor's matrix, `elements(M)` turns a matrix back into one value per element"),
            );
            return;
        }
    }

    /// A matrix value assigned to `grad`, `param` or a state, which hold one number per
    /// element (or coarser): E0133.
    pub(super) fn no_matrix_store(&mut self, e: ExprId, target: &str) -> bool {
        if self.body.types[e].extent != Extent::Matrix {
            return true;
        }
        let s = self.body.spans[e];
        self.cx.diags.push(
            Diagnostic::error(
                "E0133",
                s,
                format!("`{target}` holds one number per element, not a matrix"),
            )
            .with_label("this is a matrix")
            .with_help("turn it back into one value per element: `elements(M)`"),
        );
        false
    }

    /// `repeat n { let ...; X = ... }`: the `let`s are recomputed each round and the one
    /// assignment updates matrix value `X` (a `let` bound before the block).
    pub(super) fn repeat(&mut self, count: &ast::Expr, stmts: &[ast::Stmt], span: Span) {
        let n = self.expr(count);
        let t = self.body.types[n];
        if t.kind != ValueKind::Int || !t.extent.fits_in(Extent::Tensor) {
            self.cx.diags.push(
                Diagnostic::error(
                    "E0134",
                    count.span,
                    format!(
                        "`repeat` needs a whole number per tensor, found {} {}",
                        t.extent.describe(),
                        t.kind.name()
                    ),
                )
                .with_label("the number of rounds")
                .with_help("e.g. `repeat ns_steps { ... }` with `ns_steps: int`"),
            );
        }
        // Exactly one assignment, to a matrix `let` bound before the block, and it ends it.
        let Some((
            ast::Stmt::Assign {
                target,
                op,
                value,
                span: aspan,
            },
            lets,
        )) = stmts.split_last()
        else {
            self.repeat_error(
                span,
                "a `repeat` block ends by updating a matrix: `X = ...`",
            );
            return;
        };
        if *op != AssignOp::Set {
            self.repeat_error(*aspan, "write the update as `X = ...`");
            return;
        }
        let carried = self.names.iter().rposition(|(n, ..)| *n == target.name);
        let Some(slot) = carried else {
            let d = self.unknown(target);
            self.cx.diags.push(d);
            return;
        };
        let (_, binding, _, _) = self.names[slot].clone();
        let Binding::Local(old) = binding else {
            self.repeat_error(
                target.span,
                "a `repeat` block updates a matrix `let`, not a state",
            );
            return;
        };
        let Some(init_def) = self.body.let_def(old) else {
            self.repeat_error(target.span, "a `repeat` block updates a matrix `let`");
            return;
        };
        if self.body.types[init_def].extent != Extent::Matrix {
            self.repeat_error(
                target.span,
                "a `repeat` block updates a matrix; this `let` is not one",
            );
            return;
        }
        // Inside the block `X` is the loop value; inner `let`s name expressions (no
        // statements: `crate::matrix` recomputes them every round).
        let var = self.body.locals.len();
        self.body.locals.push(target.name.clone());
        self.loop_vars.push(var);
        let saved_names = self.names.len();
        self.names[slot].1 = Binding::Local(var);
        for s in lets {
            match s {
                ast::Stmt::Let { name, value, .. } => self.let_stmt(name, value),
                ast::Stmt::Assign { span, .. } => self.repeat_error(
                    *span,
                    "a `repeat` block updates one matrix, in its last line",
                ),
                other => {
                    self.repeat_error(other.span(), "a `repeat` block holds `let`s and one update")
                }
            }
        }
        let step = self.expr(value);
        if self.body.types[step].extent != Extent::Matrix {
            let s = self.body.spans[step];
            self.cx.diags.push(
                Diagnostic::error(
                    "E0134",
                    s,
                    format!(
                        "`{}` is a matrix, but its update is {}",
                        target.name,
                        self.body.types[step].extent.describe()
                    ),
                )
                .with_label("not a matrix")
                .with_help("update it with a matrix expression, e.g. `X = a * X + B @ X`"),
            );
        }
        // The block's `let`s stay in `stmts` as definitions (`Body::let_def`; matrix lets
        // are not run as statements, `crate::matrix` evaluates them where they are read,
        // every round). Their names go out of scope with the block.
        self.names.truncate(saved_names);
        let read_old = self.body.push(
            Expr::Local(old),
            Self::ty(ValueKind::Real, Extent::Matrix),
            target.span,
        );
        let fold = self.body.push(
            Expr::Fold {
                init: read_old,
                count: n,
                var,
                step,
            },
            Self::ty(ValueKind::Real, Extent::Matrix),
            span,
        );
        let new = self.body.locals.len();
        self.body.locals.push(target.name.clone());
        self.body.stmts.push(Stmt::Let(new, fold));
        self.names[slot].1 = Binding::Local(new);
        self.names[slot].3 += 1;
    }

    fn repeat_error(&mut self, span: Span, msg: &str) {
        self.cx.diags.push(
            Diagnostic::error("E0134", span, msg.to_string())
                .with_label("in this `repeat`")
                .with_help("write `repeat n { let A = X @ transpose(X)  X = a * X + A @ X }` with `X` a matrix `let` bound before"),
        );
    }
}

impl BodyCx<'_> {
    /// A number or per-element value `x` read inside a matrix expression, bound here to a
    /// hidden `let` when it reads what a later statement may change (`grad`, `param`, a
    /// state, the model): a matrix is evaluated where `elements(...)` or a state reads it,
    /// and this keeps the value it had where it was written, as a `let` would.
    fn pin_numbers(&mut self, xs: &mut [ExprId]) {
        for x in xs.iter_mut() {
            if self.body.types[*x].extent != Extent::Matrix {
                *x = self.pin(*x);
            }
        }
    }

    fn pin(&mut self, x: ExprId) -> ExprId {
        // A number computed from a matrix had its own numbers pinned where it was built;
        // it may read a `repeat`'s loop value, so it is no statement of its own.
        if self.in_state_init
            || crate::matrix::pure(&self.body, x, &mut Default::default())
            || crate::matrix::derived(&self.body, x, &mut Default::default())
        {
            return x;
        }
        let l = self.body.locals.len();
        self.body.locals.push("matrix input".to_string());
        self.body.stmts.push(Stmt::Let(l, x));
        let (ty, span) = (self.body.types[x], self.body.spans[x]);
        self.body.push(Expr::Local(l), ty, span)
    }

    /// `state NAME: matrix(a, b) = init`: one matrix per tensor, `a × b` from its matrix
    /// view's sides. `init` is a matrix (matrix functions are available in it, `grad` is
    /// not) or one number per tensor, which fills every entry.
    pub(super) fn matrix_state(
        &mut self,
        name: &ast::Ident,
        shape: (MatDim, MatDim),
        init: &ast::Expr,
    ) {
        self.in_state_init = true;
        self.matrix_init = true;
        let e = self.expr(init);
        self.in_state_init = false;
        self.matrix_init = false;
        let t = self.body.types[e];
        let fits = t.extent == Extent::Matrix || t.extent.fits_in(Extent::Tensor);
        if !fits || t.kind == ValueKind::Bool {
            let what = if t.kind == ValueKind::Bool {
                "a condition".to_string()
            } else {
                format!("{} value", t.extent.describe())
            };
            self.cx.diags.push(
                Diagnostic::error(
                    "E0136",
                    init.span,
                    format!(
                        "matrix state `{}` starts from a matrix or one number per tensor, but this is {what}",
                        name.name
                    ),
                )
                .with_label("its initial value")
                .with_help("e.g. `state L: matrix(rows, rows) = eps * eye(rows())`, or `= 0`"),
            );
        }
        let id = self.body.states.len();
        if self.declare(name, Binding::State(id)) {
            self.body.states.push(StateDecl {
                name: name.name.clone(),
                extent: Extent::Matrix,
                shape: Some(shape),
                init: e,
                span: name.span,
            });
        }
    }

    /// A read of matrix state `id`: the value an earlier assignment in this body bound,
    /// else the state as the step began.
    pub(super) fn matrix_state_read(&mut self, id: usize, span: Span) -> ExprId {
        let mt = Self::ty(ValueKind::Real, Extent::Matrix);
        match self.mat_alias.iter().rev().find(|(s, _)| *s == id) {
            Some(&(_, l)) => self.body.push(Expr::Local(l), mt, span),
            None => self.body.push(Expr::State(id), mt, span),
        }
    }

    /// `L = M` (or `L += M`, ...) for matrix state `L`: the new value is bound to a hidden
    /// `let`, which later reads in this body see; the state is written with it when the
    /// stage ends, so reads before the assignment keep seeing the old value wherever
    /// `crate::matrix` evaluates them.
    pub(super) fn matrix_state_assign(
        &mut self,
        id: usize,
        target: &ast::Ident,
        op: AssignOp,
        rhs: ExprId,
        span: Span,
    ) {
        let mt = Self::ty(ValueKind::Real, Extent::Matrix);
        let t = self.body.types[rhs];
        if t.extent != Extent::Matrix || t.kind == ValueKind::Bool {
            let s = self.body.spans[rhs];
            self.cx.diags.push(
                Diagnostic::error(
                    "E0136",
                    s,
                    format!(
                        "`{}` is a matrix state, but this is {}",
                        target.name,
                        if t.kind == ValueKind::Bool {
                            "a condition"
                        } else {
                            t.extent.describe()
                        }
                    ),
                )
                .with_label("not a matrix")
                .with_help(
                    "assign a matrix: `matrix(x)` views a per-element value as its tensor's matrix",
                ),
            );
            return;
        }
        let cur = self.matrix_state_read(id, target.span);
        let v = self.compound(op, cur, rhs, span);
        let v = self.every_select(v, cur);
        let local = self.body.locals.len();
        self.body.locals.push(target.name.clone());
        self.body.stmts.push(Stmt::Let(local, v));
        let read = self.body.push(Expr::Local(local), mt, span);
        self.body.stmts.push(Stmt::SetState(id, read));
        self.mat_alias.push((id, local));
    }
}
