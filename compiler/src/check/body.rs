//! Checking the statement bodies of transforms, optimizers and schedules: names, types
//! (real/int/bool), extents (step-uniform, per-group, per-tensor, per-element) and what
//! each kind of definition may assign.

use super::hyper::{self, HyperNames};
use super::{Checker, Scope};
use crate::ast::{
    self, AssignOp, BinOp, DefKind, ExprKind, ScalarType, StateExtent, TypeExpr, UnOp,
};
use crate::diagnostic::Diagnostic;
use crate::ir::{
    Body, Builtin, DefId, Expr, ExprId, Extent, ListOp, ReduceOp, Scope as RScope, ShapeInfo,
    StateDecl, Stmt, Type, ValueKind,
};
use crate::source::Span;

const REDUCTIONS: [(&str, ReduceOp); 6] = [
    ("norm", ReduceOp::Norm),
    ("sum", ReduceOp::Sum),
    ("mean", ReduceOp::Mean),
    ("max", ReduceOp::Max),
    ("min", ReduceOp::Min),
    ("all_finite", ReduceOp::AllFinite),
];

const LIST_OPS: [(&str, ListOp, usize); 7] = [
    ("count_le", ListOp::CountLe, 2),
    ("prod_le", ListOp::ProdLe, 2),
    ("join", ListOp::Join, 3),
    ("len", ListOp::Len, 1),
    ("nth", ListOp::Nth, 2),
    ("sum_first", ListOp::SumFirst, 2),
    ("count_cum_le", ListOp::CountCumLe, 2),
];

/// Where a name in a body came from, for reads and assignments.
#[derive(Clone, Copy)]
enum Binding {
    Local(usize),
    State(usize),
}

struct BodyCx<'a> {
    cx: &'a mut Checker,
    scope: &'a Scope,
    def: DefId,
    kind: DefKind,
    body: Body,
    /// Name, binding, declaration span, read count.
    names: Vec<(String, Binding, Span, usize)>,
    /// Inside a state's initial value: `grad` is not available yet.
    in_state_init: bool,
    /// Inside a schedule's `observe` block: `metric` is available.
    in_observe: bool,
}

pub(crate) fn check_stage(
    cx: &mut Checker,
    scope: &Scope,
    def: DefId,
    kind: DefKind,
    stmts: &[ast::Stmt],
    warn_unused: bool,
) -> Body {
    let mut b = BodyCx {
        cx,
        scope,
        def,
        kind,
        body: Body::default(),
        names: Vec::new(),
        in_state_init: false,
        in_observe: false,
    };
    for s in stmts {
        b.stage_stmt(s);
    }
    if warn_unused {
        b.warn_unused();
    }
    b.body
}

pub(crate) fn check_schedule(
    cx: &mut Checker,
    scope: &Scope,
    def: DefId,
    stmts: &[ast::Stmt],
    expr: Option<&ast::Expr>,
    warn_unused: bool,
) -> Body {
    let mut b = BodyCx {
        cx,
        scope,
        def,
        kind: DefKind::Schedule,
        body: Body::default(),
        names: Vec::new(),
        in_state_init: false,
        in_observe: false,
    };
    let def_span = b.cx.program.defs[def].span;
    let mut result = None;
    for (i, s) in stmts.iter().enumerate() {
        match s {
            ast::Stmt::Let { name, value, .. } => b.let_stmt(name, value),
            ast::Stmt::Expr(e) if i + 1 == stmts.len() => result = Some(b.expr(e)),
            ast::Stmt::Expr(e) => b.cx.diags.push(
                Diagnostic::error(
                    "E0143",
                    e.span,
                    "only the last line of a schedule is its value",
                )
                .with_label("this value is never used")
                .with_help("bind it with `let name = ...`, or move it to the end"),
            ),
            ast::Stmt::State {
                name, extent, init, ..
            } => b.schedule_state(name, *extent, init),
            ast::Stmt::Observe { stmts, span } => b.observe(stmts, *span),
            ast::Stmt::Assign { span, .. } => b.cx.diags.push(
                Diagnostic::error("E0143", *span, "a schedule's states change only in its `observe` block")
                    .with_label("assignment outside `observe`")
                    .with_help("move it into `observe { ... }`, which runs after each step with that step's `metric`"),
            ),
            ast::Stmt::Skip { span, .. } => b.cx.diags.push(
                Diagnostic::error("E0143", *span, "a schedule cannot skip a step")
                    .with_label("not allowed in a schedule")
                    .with_help("`skip if` belongs in a transform"),
            ),
        }
    }
    if let Some(e) = expr {
        result = Some(b.expr(e));
    }
    match result {
        Some(r) => {
            let t = b.body.types[r];
            if t.kind == ValueKind::Bool {
                let span = b.body.spans[r];
                b.cx.diags.push(
                    Diagnostic::error(
                        "E0120",
                        span,
                        "a schedule's value must be a number, found bool",
                    )
                    .with_label("bool")
                    .with_help("use `if cond then a else b` to choose between numbers"),
                );
            }
            b.body.result = Some(r);
        }
        None => b.cx.diags.push(
            Diagnostic::error("E0143", def_span, "this schedule has no value")
                .with_label("no final expression")
                .with_help("end the body with the learning rate as an expression of `count`"),
        ),
    }
    if warn_unused {
        b.warn_unused();
    }
    b.body
}

impl BodyCx<'_> {
    fn params(&self) -> &[crate::ir::HyperParam] {
        &self.cx.program.defs[self.def].params
    }

    fn def_name(&self) -> String {
        self.cx.program.defs[self.def].name.clone()
    }

    fn error_expr(&mut self, span: Span) -> ExprId {
        self.body.push(
            Expr::Const(0.0),
            Type {
                kind: ValueKind::Real,
                extent: Extent::Uniform,
            },
            span,
        )
    }

    fn declare(&mut self, name: &ast::Ident, binding: Binding) -> bool {
        let reserved = matches!(
            name.name.as_str(),
            "grad" | "param" | "step" | "count" | "pi"
        );
        let clash = self
            .names
            .iter()
            .find(|(n, ..)| *n == name.name)
            .map(|(_, _, s, _)| *s);
        let param_clash = self
            .params()
            .iter()
            .find(|p| p.name == name.name)
            .map(|p| p.span);
        if reserved || clash.is_some() || param_clash.is_some() {
            let mut d = Diagnostic::error("E0104", name.span, format!("`{}` is already defined", name.name))
                .with_label("defined again here")
                .with_help("pick a new name; a value, once bound, cannot be rebound (assign to a `state` to change it)");
            if let Some(s) = clash.or(param_clash) {
                d = d.with_secondary(s, "first defined here");
            }
            if reserved {
                d.help = Some(format!("`{}` is a built-in name; pick another", name.name));
            }
            self.cx.diags.push(d);
            return false;
        }
        self.names.push((name.name.clone(), binding, name.span, 0));
        true
    }

    fn stage_stmt(&mut self, s: &ast::Stmt) {
        match s {
            ast::Stmt::State { name, extent, init, .. } => {
                self.in_state_init = true;
                let e = self.expr(init);
                self.in_state_init = false;
                let declared = match extent.map(|(x, _)| x) {
                    None | Some(StateExtent::Element) => Extent::Element,
                    Some(StateExtent::Tensor) => Extent::Tensor,
                    Some(StateExtent::Scalar) => Extent::Uniform,
                    Some(StateExtent::Row) => Extent::Row,
                    Some(StateExtent::Col) => Extent::Col,
                };
                self.check_fits(e, declared, &name.name);
                let id = self.body.states.len();
                if self.declare(name, Binding::State(id)) {
                    self.body.states.push(StateDecl {
                        name: name.name.clone(),
                        extent: declared,
                        init: e,
                        span: name.span,
                    });
                }
            }
            ast::Stmt::Let { name, value, .. } => self.let_stmt(name, value),
            ast::Stmt::Assign { target, op, value, span } => self.assign(target, *op, value, *span),
            ast::Stmt::Skip { cond, .. } => {
                let c = self.expr(cond);
                let t = self.body.types[c];
                if t.kind != ValueKind::Bool {
                    self.cx.diags.push(
                        Diagnostic::error("E0120", cond.span, format!("`skip if` needs a condition, found {}", t.kind.name()))
                            .with_label("not a condition")
                            .with_help("e.g. `skip if not all_finite(grad, global)`"),
                    );
                } else if t.extent != Extent::Uniform {
                    self.cx.diags.push(
                        Diagnostic::error("E0130", cond.span, format!("`skip if` decides for the whole step, but this condition is {}", t.extent.describe()))
                            .with_label(format!("this is {}", t.extent.describe()))
                            .with_help("reduce it over every tensor, e.g. `all_finite(grad, global)` or `norm(grad, global) > 10`"),
                    );
                }
                self.body.stmts.push(Stmt::Skip(c));
            }
            ast::Stmt::Expr(e) => self.cx.diags.push(
                Diagnostic::error("E0143", e.span, "an expression on its own does nothing here")
                    .with_label("value is discarded")
                    .with_help("assign it: `grad = ...` passes it on, `param -= ...` updates weights, `let x = ...` names it"),
            ),
            ast::Stmt::Observe { span, .. } => self.cx.diags.push(
                Diagnostic::error("E0143", *span, "only a schedule observes metrics")
                    .with_label("`observe` in a transform")
                    .with_help("a schedule that follows a metric (like ReduceLROnPlateau) declares `observe { ... }`"),
            ),
        }
    }

    /// `state NAME = init` in a schedule: one number, changed only by `observe`.
    fn schedule_state(
        &mut self,
        name: &ast::Ident,
        extent: Option<(StateExtent, Span)>,
        init: &ast::Expr,
    ) {
        if let Some((x, span)) = extent {
            if x != StateExtent::Scalar {
                self.cx.diags.push(
                    Diagnostic::error(
                        "E0130",
                        span,
                        "a schedule's state is one number for the whole step",
                    )
                    .with_label("schedules have no tensors")
                    .with_help("drop the extent, or write `: scalar`"),
                );
            }
        }
        self.in_state_init = true;
        let e = self.expr(init);
        self.in_state_init = false;
        let id = self.body.states.len();
        if self.declare(name, Binding::State(id)) {
            self.body.states.push(StateDecl {
                name: name.name.clone(),
                extent: Extent::Uniform,
                init: e,
                span: name.span,
            });
        }
    }

    /// `observe { ... }`: `let`s and state updates, run after each step with its `metric`.
    fn observe(&mut self, stmts: &[ast::Stmt], span: Span) {
        if !self.body.observe.is_empty() || self.in_observe {
            self.cx.diags.push(
                Diagnostic::error("E0143", span, "a schedule has one `observe` block")
                    .with_label("second `observe`")
                    .with_help("merge the blocks"),
            );
            return;
        }
        let outer = std::mem::take(&mut self.body.stmts);
        self.in_observe = true;
        for s in stmts {
            match s {
                ast::Stmt::Let { name, value, .. } => self.let_stmt(name, value),
                ast::Stmt::Assign {
                    target,
                    op,
                    value,
                    span,
                } => {
                    let is_state = self
                        .names
                        .iter()
                        .any(|(n, b, ..)| *n == target.name && matches!(b, Binding::State(_)));
                    if is_state {
                        self.assign(target, *op, value, *span);
                    } else {
                        self.cx.diags.push(
                            Diagnostic::error(
                                "E0140",
                                target.span,
                                format!("`{}` is not a state of this schedule", target.name),
                            )
                            .with_label("only states can change")
                            .with_help(format!(
                                "declare `state {} = ...` before `observe`",
                                target.name
                            )),
                        );
                    }
                }
                other => {
                    let span = match other {
                        ast::Stmt::State { span, .. }
                        | ast::Stmt::Skip { span, .. }
                        | ast::Stmt::Observe { span, .. } => *span,
                        ast::Stmt::Expr(e) => e.span,
                        _ => span,
                    };
                    self.cx.diags.push(
                        Diagnostic::error("E0143", span, "`observe` holds `let`s and state updates")
                            .with_label("not allowed in `observe`")
                            .with_help("declare states before `observe`, and end the schedule with its value after it"),
                    );
                }
            }
        }
        self.in_observe = false;
        self.body.observe = std::mem::replace(&mut self.body.stmts, outer);
    }

    fn let_stmt(&mut self, name: &ast::Ident, value: &ast::Expr) {
        let e = self.expr(value);
        let id = self.body.locals.len();
        if self.declare(name, Binding::Local(id)) {
            self.body.locals.push(name.name.clone());
            self.body.stmts.push(Stmt::Let(id, e));
        }
    }

    /// A state of extent `declared` cannot hold a value that varies more finely.
    fn check_fits(&mut self, e: ExprId, declared: Extent, name: &str) {
        let t = self.body.types[e];
        if !t.extent.fits_in(declared) {
            let span = self.body.spans[e];
            self.cx.diags.push(
                Diagnostic::error(
                    "E0130",
                    span,
                    format!(
                        "{} value stored in {} state `{name}`",
                        t.extent.describe(),
                        declared.describe()
                    ),
                )
                .with_label(format!("this is {}", t.extent.describe()))
                .with_help(match t.extent {
                    Extent::Element => format!(
                        "reduce it first (e.g. `norm(x, tensor)` or `sum(x, global)`), or declare `state {name} = ...` per element"
                    ),
                    _ => format!("declare `state {name}: tensor = ...` to keep one value per tensor"),
                }),
            );
        }
        if t.kind == ValueKind::Bool {
            let span = self.body.spans[e];
            self.cx.diags.push(
                Diagnostic::error("E0120", span, format!("`{name}` holds numbers, found bool"))
                    .with_label("bool")
                    .with_help("use `if cond then 1 else 0`"),
            );
        }
    }

    fn assign(&mut self, target: &ast::Ident, op: AssignOp, value: &ast::Expr, span: Span) {
        let rhs = self.expr(value);
        let name = target.name.as_str();
        let read = |b: &mut Self, e: Expr, ty: Type| b.body.push(e, ty, target.span);
        let combine = |b: &mut Self, cur: ExprId, rhs: ExprId| -> ExprId {
            let bop = match op {
                AssignOp::Set => return rhs,
                AssignOp::Add => BinOp::Add,
                AssignOp::Sub => BinOp::Sub,
                AssignOp::Mul => BinOp::Mul,
                AssignOp::Div => BinOp::Div,
            };
            let ta = b.body.types[cur];
            let tb = b.body.types[rhs];
            let ty = Type {
                kind: ValueKind::Real,
                extent: ta.extent.join(tb.extent),
            };
            b.body.push(Expr::Binary(bop, cur, rhs), ty, span)
        };
        let elem = Type {
            kind: ValueKind::Real,
            extent: Extent::Element,
        };
        match name {
            "grad" => {
                let cur = read(self, Expr::Grad, elem);
                let v = combine(self, cur, rhs);
                self.require_number(v, "grad");
                self.body.stmts.push(Stmt::SetGrad(v));
            }
            "param" => {
                if self.kind != DefKind::Optimizer {
                    let def = self.def_name();
                    self.cx.diags.push(
                        Diagnostic::error("E0141", target.span, format!("transform `{def}` assigns `param`"))
                            .with_label("only an optimizer may update the parameters")
                            .with_help(format!(
                                "declare it `optimizer {def}(...)`, or assign `grad` and let the chain apply it"
                            )),
                    );
                    return;
                }
                let cur = read(self, Expr::Param, elem);
                let v = combine(self, cur, rhs);
                self.require_number(v, "param");
                self.body.stmts.push(Stmt::SetParam(v));
            }
            _ => {
                let found = self
                    .names
                    .iter()
                    .find(|(n, ..)| n == name)
                    .map(|(_, b, s, _)| (*b, *s));
                match found {
                    Some((Binding::State(id), _)) => {
                        let st = self.body.states[id].clone();
                        let cur = read(
                            self,
                            Expr::State(id),
                            Type {
                                kind: ValueKind::Real,
                                extent: st.extent,
                            },
                        );
                        let v = combine(self, cur, rhs);
                        self.check_fits(v, st.extent, &st.name);
                        self.body.stmts.push(Stmt::SetState(id, v));
                    }
                    Some((Binding::Local(_), decl)) => self.cx.diags.push(
                        Diagnostic::error("E0140", target.span, format!("`{name}` is a `let` value and cannot change"))
                            .with_label("assigned here")
                            .with_secondary(decl, "bound here")
                            .with_help(format!("declare `state {name} = ...` for a value that persists and changes, or bind a new name")),
                    ),
                    None if self.params().iter().any(|p| p.name == name) => self.cx.diags.push(
                        Diagnostic::error("E0140", target.span, format!("hyperparameter `{name}` cannot be assigned"))
                            .with_label("read-only")
                            .with_help("hyperparameters are set by the recipe; bind a new name with `let`"),
                    ),
                    None if matches!(name, "step" | "count") => self.cx.diags.push(
                        Diagnostic::error("E0140", target.span, format!("`{name}` is the step counter and cannot be assigned"))
                            .with_label("read-only")
                            .with_help("the runtime advances it; keep your own counter in a `state`"),
                    ),
                    None => {
                        let d = self.unknown(target);
                        self.cx.diags.push(d);
                    }
                }
            }
        }
    }

    fn require_number(&mut self, e: ExprId, what: &str) {
        if self.body.types[e].kind == ValueKind::Bool {
            let span = self.body.spans[e];
            self.cx.diags.push(
                Diagnostic::error("E0120", span, format!("`{what}` holds numbers, found bool"))
                    .with_label("bool")
                    .with_help("use `if cond then a else b` to choose between numbers"),
            );
        }
    }

    fn unknown(&self, name: &ast::Ident) -> Diagnostic {
        let mut extra: Vec<&str> = self.names.iter().map(|(n, ..)| n.as_str()).collect();
        extra.extend(self.params().iter().map(|p| p.name.as_str()));
        if self.kind == DefKind::Schedule {
            extra.push("count");
        } else {
            extra.extend(["grad", "param", "step"]);
        }
        extra.extend(Builtin::ALL.iter().map(|(n, _, _)| *n));
        if self.kind != DefKind::Schedule && name.name == "count" {
            return Diagnostic::error("E0102", name.span, "`count` is only defined in schedules")
                .with_label("not defined in a transform")
                .with_help("in a transform or optimizer, `step` is the update number (1 at the first update)");
        }
        if self.kind == DefKind::Schedule && name.name == "step" {
            return Diagnostic::error("E0102", name.span, "`step` is not defined in schedules")
                .with_label("not defined in a schedule")
                .with_help("a schedule is a function of `count`, the updates already made (0 at the first step)");
        }
        self.cx.unknown_name(self.scope, name, &extra)
    }

    fn ty(kind: ValueKind, extent: Extent) -> Type {
        Type { kind, extent }
    }

    /// Hyperparameters are checked as step-uniform. A recipe may still give one per group;
    /// elaboration then refuses it where the value decides for the whole step
    /// (`Body::step_uniform_params`).
    fn hyper_extent(&self) -> Extent {
        Extent::Uniform
    }

    fn expr(&mut self, e: &ast::Expr) -> ExprId {
        match &e.kind {
            ExprKind::Number { value, is_int } => {
                let kind = if *is_int {
                    ValueKind::Int
                } else {
                    ValueKind::Real
                };
                self.body
                    .push(Expr::Const(*value), Self::ty(kind, Extent::Uniform), e.span)
            }
            ExprKind::Bool(b) => self.body.push(
                Expr::Const(f64::from(u8::from(*b))),
                Self::ty(ValueKind::Bool, Extent::Uniform),
                e.span,
            ),
            ExprKind::Name(n) => self.name(n, e.span),
            ExprKind::Str(_) => {
                self.cx.diags.push(
                    Diagnostic::error(
                        "E0120",
                        e.span,
                        "a string can only be compared with a `str` parameter",
                    )
                    .with_label("string here")
                    .with_help("write e.g. `if mode == \"cos\" then ... else ...`"),
                );
                self.error_expr(e.span)
            }
            ExprKind::Unary(op, a) => {
                let x = self.expr(a);
                let t = self.body.types[x];
                let ok = match op {
                    UnOp::Neg => t.kind != ValueKind::Bool,
                    UnOp::Not => t.kind == ValueKind::Bool,
                };
                if !ok {
                    let (what, help) = match op {
                        UnOp::Neg => ("cannot negate a bool", "use `not` for booleans"),
                        UnOp::Not => (
                            "`not` applies to booleans",
                            "compare first, e.g. `not (x > 0)`",
                        ),
                    };
                    self.cx.diags.push(
                        Diagnostic::error("E0120", e.span, what)
                            .with_label(format!("this is {}", t.kind.name()))
                            .with_help(help),
                    );
                }
                self.body.push(Expr::Unary(*op, x), t, e.span)
            }
            ExprKind::Binary(BinOp::Cmp(c @ (ast::CmpOp::Eq | ast::CmpOp::Ne)), a, b)
                if matches!(a.kind, ExprKind::Str(_)) || matches!(b.kind, ExprKind::Str(_)) =>
            {
                self.str_compare(*c, a, b, e.span)
            }
            ExprKind::Binary(op, a, b) => {
                let x = self.expr(a);
                let y = self.expr(b);
                let (tx, ty) = (self.body.types[x], self.body.types[y]);
                let extent = tx.extent.join(ty.extent);
                let kind = match op {
                    BinOp::And | BinOp::Or => {
                        if tx.kind != ValueKind::Bool || ty.kind != ValueKind::Bool {
                            self.op_mismatch(*op, tx, ty, e.span);
                        }
                        ValueKind::Bool
                    }
                    BinOp::Cmp(c) => {
                        let both_bool = tx.kind == ValueKind::Bool && ty.kind == ValueKind::Bool;
                        let any_bool = tx.kind == ValueKind::Bool || ty.kind == ValueKind::Bool;
                        if any_bool && !(both_bool && matches!(c, ast::CmpOp::Eq | ast::CmpOp::Ne))
                        {
                            self.op_mismatch(*op, tx, ty, e.span);
                        }
                        ValueKind::Bool
                    }
                    _ => {
                        if tx.kind == ValueKind::Bool || ty.kind == ValueKind::Bool {
                            self.op_mismatch(*op, tx, ty, e.span);
                        }
                        if tx.kind == ValueKind::Int
                            && ty.kind == ValueKind::Int
                            && !matches!(op, BinOp::Div | BinOp::Pow)
                        {
                            ValueKind::Int
                        } else {
                            ValueKind::Real
                        }
                    }
                };
                self.body
                    .push(Expr::Binary(*op, x, y), Self::ty(kind, extent), e.span)
            }
            ExprKind::If(c, a, b) => {
                let c = self.expr(c);
                let x = self.expr(a);
                let y = self.expr(b);
                let (tc, tx, ty) = (self.body.types[c], self.body.types[x], self.body.types[y]);
                if tc.kind != ValueKind::Bool {
                    let span = self.body.spans[c];
                    self.cx.diags.push(
                        Diagnostic::error(
                            "E0120",
                            span,
                            format!(
                                "the condition of `if` must be bool, found {}",
                                tc.kind.name()
                            ),
                        )
                        .with_label("not a condition")
                        .with_help("compare it: e.g. `if x > 0 then ... else ...`"),
                    );
                }
                if (tx.kind == ValueKind::Bool) != (ty.kind == ValueKind::Bool) {
                    self.cx.diags.push(
                        Diagnostic::error(
                            "E0120",
                            e.span,
                            format!(
                                "the branches of `if` differ: {} and {}",
                                tx.kind.name(),
                                ty.kind.name()
                            ),
                        )
                        .with_label("branches must have the same type")
                        .with_help("make both branches numbers, or both booleans"),
                    );
                }
                let kind = if tx.kind == ty.kind {
                    tx.kind
                } else {
                    ValueKind::Real
                };
                let extent = tc.extent.join(tx.extent).join(ty.extent);
                self.body
                    .push(Expr::Select(c, x, y), Self::ty(kind, extent), e.span)
            }
            ExprKind::Call { callee, args } => self.call(callee, args, e.span),
            ExprKind::Index(base, idx) => self.index(base, idx, e.span),
            ExprKind::List(_) | ExprKind::Map(_) => {
                self.cx.diags.push(
                    Diagnostic::error(
                        "E0120",
                        e.span,
                        "lists and maps are hyperparameter values, not body values",
                    )
                    .with_label("not allowed here")
                    .with_help(
                        "declare a list parameter (e.g. `betas: [real]`) and index it: `betas[0]`",
                    ),
                );
                self.error_expr(e.span)
            }
            ExprKind::Pipe(_) => {
                self.cx.diags.push(
                    Diagnostic::error("E0144", e.span, "a chain (`|>`) cannot appear inside a body")
                        .with_label("chain inside a body")
                        .with_help("write a chain definition instead: `optimizer name(...) = a(...) |> b(...)`"),
                );
                self.error_expr(e.span)
            }
        }
    }

    /// `mode == "cos"` (either order): a `str` parameter against one of its choices.
    fn str_compare(&mut self, c: ast::CmpOp, a: &ast::Expr, b: &ast::Expr, span: Span) -> ExprId {
        let (name, lit) = match (&a.kind, &b.kind) {
            (ExprKind::Name(n), ExprKind::Str(s)) | (ExprKind::Str(s), ExprKind::Name(n)) => (n, s),
            _ => {
                self.cx.diags.push(
                    Diagnostic::error(
                        "E0120",
                        span,
                        "a string can only be compared with a `str` parameter",
                    )
                    .with_label("not a `str` parameter and a string")
                    .with_help("write e.g. `mode == \"cos\"`"),
                );
                return self.error_expr(span);
            }
        };
        let found = self
            .params()
            .iter()
            .position(|p| p.name == *name && p.ty == TypeExpr::Scalar(ScalarType::Str));
        let Some(pi) = found else {
            self.cx.diags.push(
                Diagnostic::error("E0120", span, format!("`{name}` is not a `str` parameter"))
                    .with_label("compared with a string")
                    .with_help("declare it `str in {\"a\", \"b\"}`, or compare numbers"),
            );
            return self.error_expr(span);
        };
        if let Some(choices) = self.params()[pi].choices.clone() {
            if !choices.contains(lit) {
                let lit_span = if matches!(a.kind, ExprKind::Str(_)) {
                    a.span
                } else {
                    b.span
                };
                let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
                self.cx.diags.push(
                    Diagnostic::error(
                        "E0122",
                        lit_span,
                        format!(
                            "`{name}` is never \"{lit}\"; it is one of {}",
                            quoted.join(", ")
                        ),
                    )
                    .with_label("not one of the choices")
                    .with_help("compare with one of the declared values"),
                );
            }
        }
        let extent = self.hyper_extent();
        let eq = self.body.push(
            Expr::StrEq(pi, lit.clone()),
            Self::ty(ValueKind::Bool, extent),
            span,
        );
        if c == ast::CmpOp::Ne {
            self.body.push(
                Expr::Unary(UnOp::Not, eq),
                Self::ty(ValueKind::Bool, extent),
                span,
            )
        } else {
            eq
        }
    }

    fn op_mismatch(&mut self, op: BinOp, a: Type, b: Type, span: Span) {
        self.cx.diags.push(
            Diagnostic::error(
                "E0120",
                span,
                format!(
                    "`{}` does not apply to {} and {}",
                    op.symbol(),
                    a.kind.name(),
                    b.kind.name()
                ),
            )
            .with_label("mismatched operands")
            .with_help(match op {
                BinOp::And | BinOp::Or => "`and`/`or` join conditions such as `x > 0`",
                _ => "arithmetic needs numbers; choose between values with `if c then a else b`",
            }),
        );
    }

    fn name(&mut self, n: &str, span: Span) -> ExprId {
        if let Some(pos) = self.names.iter().rposition(|(name, ..)| name == n) {
            self.names[pos].3 += 1;
            return match self.names[pos].1 {
                Binding::Local(id) => {
                    let ty = self.local_type(id);
                    self.body.push(Expr::Local(id), ty, span)
                }
                Binding::State(id) => {
                    let extent = self.body.states[id].extent;
                    self.body
                        .push(Expr::State(id), Self::ty(ValueKind::Real, extent), span)
                }
            };
        }
        let stage = self.kind != DefKind::Schedule;
        match n {
            "grad" if stage => {
                if self.in_state_init {
                    self.cx.diags.push(
                        Diagnostic::error(
                            "E0130",
                            span,
                            "a state's initial value cannot read `grad`",
                        )
                        .with_label("no gradient exists when state is created")
                        .with_help(
                            "start from a constant or from `param`, and update it in the body",
                        ),
                    );
                }
                return self.body.push(
                    Expr::Grad,
                    Self::ty(ValueKind::Real, Extent::Element),
                    span,
                );
            }
            "param" if stage => {
                return self.body.push(
                    Expr::Param,
                    Self::ty(ValueKind::Real, Extent::Element),
                    span,
                );
            }
            "step" if stage => {
                return self
                    .body
                    .push(Expr::Step, Self::ty(ValueKind::Int, Extent::Uniform), span)
            }
            "count" if !stage => {
                return self
                    .body
                    .push(Expr::Count, Self::ty(ValueKind::Int, Extent::Uniform), span)
            }
            "metric" if !stage && self.in_observe => {
                return self.body.push(
                    Expr::Metric,
                    Self::ty(ValueKind::Real, Extent::Uniform),
                    span,
                )
            }
            "inf" => {
                return self.body.push(
                    Expr::Const(f64::INFINITY),
                    Self::ty(ValueKind::Real, Extent::Uniform),
                    span,
                )
            }
            "pi" => {
                return self.body.push(
                    Expr::Const(std::f64::consts::PI),
                    Self::ty(ValueKind::Real, Extent::Uniform),
                    span,
                )
            }
            _ => {}
        }
        if let Some(i) = self.params().iter().position(|p| p.name == n) {
            let p = &self.params()[i];
            let kind = match &p.ty {
                TypeExpr::Scalar(ScalarType::Int) => ValueKind::Int,
                TypeExpr::Scalar(ScalarType::Bool) => ValueKind::Bool,
                TypeExpr::Scalar(ScalarType::Str) => {
                    let pname = p.name.clone();
                    self.cx.diags.push(
                        Diagnostic::error(
                            "E0120",
                            span,
                            format!("`{pname}` is a string; compare it with one of its values"),
                        )
                        .with_label("a string, not a number")
                        .with_help(format!(
                            "write e.g. `if {pname} == \"...\" then ... else ...`"
                        )),
                    );
                    return self.error_expr(span);
                }
                TypeExpr::Scalar(_) => ValueKind::Real,
                TypeExpr::List(_) | TypeExpr::Map(..) => {
                    let pname = p.name.clone();
                    self.cx.diags.push(
                        Diagnostic::error(
                            "E0170",
                            span,
                            format!("`{pname}` is a list; use one of its elements"),
                        )
                        .with_label("a list, not a number")
                        .with_help(format!("index it, e.g. `{pname}[0]`")),
                    );
                    return self.error_expr(span);
                }
            };
            let extent = self.hyper_extent();
            return self.body.push(Expr::Hyper(i), Self::ty(kind, extent), span);
        }
        if !stage && matches!(n, "grad" | "param") {
            self.cx.diags.push(
                Diagnostic::error(
                    "E0130",
                    span,
                    format!("per-element value `{n}` used in a schedule"),
                )
                .with_label(format!("`{n}` has one value per element"))
                .with_help(
                    "a schedule is one number per step, a function of `count` and its parameters",
                ),
            );
            return self.error_expr(span);
        }
        let ident = ast::Ident {
            name: n.to_string(),
            span,
        };
        let d = self.unknown(&ident);
        self.cx.diags.push(d);
        self.error_expr(span)
    }

    fn local_type(&self, id: usize) -> Type {
        for s in &self.body.stmts {
            if let Stmt::Let(l, e) = s {
                if *l == id {
                    return self.body.types[*e];
                }
            }
        }
        Self::ty(ValueKind::Real, Extent::Uniform)
    }

    fn index(&mut self, base: &ast::Expr, idx: &ast::Expr, span: Span) -> ExprId {
        let ExprKind::Name(n) = &base.kind else {
            self.cx.diags.push(
                Diagnostic::error(
                    "E0170",
                    base.span,
                    "only a list hyperparameter can be indexed",
                )
                .with_label("not a list")
                .with_help("declare e.g. `betas: [real]` and write `betas[0]`"),
            );
            return self.error_expr(span);
        };
        let pi = self.params().iter().position(|p| p.name == *n);
        let Some(pi) = pi.filter(|&i| matches!(self.params()[i].ty, TypeExpr::List(_))) else {
            self.cx.diags.push(
                Diagnostic::error(
                    "E0170",
                    base.span,
                    format!("`{n}` is not a list hyperparameter"),
                )
                .with_label("cannot be indexed")
                .with_help(
                    "only parameters declared with a list type such as `[real]` can be indexed",
                ),
            );
            return self.error_expr(span);
        };
        let k = match &idx.kind {
            ExprKind::Number {
                value,
                is_int: true,
            } if *value >= 0.0 => *value as usize,
            _ => {
                self.cx.diags.push(
                    Diagnostic::error(
                        "E0170",
                        idx.span,
                        "a list index must be a whole-number literal",
                    )
                    .with_label("not a literal index")
                    .with_help("write e.g. `betas[0]`"),
                );
                return self.error_expr(span);
            }
        };
        let kind = match self.params()[pi].ty {
            TypeExpr::List(ScalarType::Int) => ValueKind::Int,
            TypeExpr::List(ScalarType::Bool) => ValueKind::Bool,
            _ => ValueKind::Real,
        };
        let extent = self.hyper_extent();
        self.body
            .push(Expr::HyperIndex(pi, k), Self::ty(kind, extent), span)
    }

    fn call(&mut self, callee: &ast::Ident, args: &[ast::Arg], span: Span) -> ExprId {
        let name = callee.name.as_str();
        // A reduction: `norm(x, global)`; the scope is a bare name.
        if let Some((_, op)) = REDUCTIONS.iter().find(|(n, _)| *n == name) {
            if let Some(scope) = args.get(1).and_then(|a| scope_of(&a.value)) {
                return self.reduction(*op, scope, args, span);
            }
            if matches!(
                op,
                ReduceOp::Norm | ReduceOp::Sum | ReduceOp::Mean | ReduceOp::AllFinite
            ) {
                let scope_span = args.get(1).map(|a| a.value.span).unwrap_or(callee.span);
                self.cx.diags.push(
                    Diagnostic::error(
                        "E0131",
                        scope_span,
                        format!("`{name}` needs a scope: `tensor`, `group` or `global`"),
                    )
                    .with_label("missing or unknown scope")
                    .with_help(format!(
                        "write e.g. `{name}(grad, global)` for one value over every tensor"
                    )),
                );
                return self.error_expr(span);
            }
        }
        if let Some((_, b, arity)) = Builtin::ALL.iter().find(|(n, _, _)| *n == name) {
            return self.builtin(*b, *arity, callee, args, span);
        }
        if matches!(name, "grad_at" | "hvp" | "rademacher") {
            return self.model_call(callee, args, span);
        }
        let shape = match name {
            "rank" => Some(ShapeInfo::Rank),
            "numel" => Some(ShapeInfo::Numel),
            "factor_dim" => Some(ShapeInfo::FactorDim),
            _ => None,
        };
        if let (Some(info), false) = (shape, self.kind == DefKind::Schedule) {
            if !args.is_empty() {
                self.cx.diags.push(
                    Diagnostic::error("E0150", span, format!("`{name}()` takes no arguments"))
                        .with_label("wrong arguments")
                        .with_help(format!("`{name}()` is a fact about each tensor")),
                );
                return self.error_expr(span);
            }
            return self.body.push(
                Expr::Shape(info),
                Self::ty(ValueKind::Int, Extent::Tensor),
                span,
            );
        }
        if self.kind == DefKind::Schedule {
            if let Some((_, op, arity)) = LIST_OPS.iter().find(|(n, _, _)| *n == name) {
                return self.list_op(*op, *arity, callee, args, span);
            }
            // `s(x)`: a schedule parameter evaluated at another count.
            if let Some(pi) = self.params().iter().position(|p| p.name == name) {
                if self.params()[pi].ty == TypeExpr::Scalar(ScalarType::Schedule) {
                    if args.len() != 1 || args[0].name.is_some() {
                        self.cx.diags.push(
                            Diagnostic::error(
                                "E0150",
                                span,
                                format!("schedule `{name}` takes one count"),
                            )
                            .with_label("wrong arguments")
                            .with_help(format!("write `{name}(count - 10)`")),
                        );
                        return self.error_expr(span);
                    }
                    let x = self.expr(&args[0].value);
                    return self.body.push(
                        Expr::ScheduleAt(pi, x),
                        Self::ty(ValueKind::Real, Extent::Uniform),
                        span,
                    );
                }
            }
            if name == "at" {
                return self.at(callee, args, span);
            }
            if let Some(&def) = self.scope.names.get(name) {
                if self.cx.program.defs[def].kind == DefKind::Schedule {
                    let at = self.body.push(
                        Expr::Count,
                        Self::ty(ValueKind::Int, Extent::Uniform),
                        span,
                    );
                    return self.sched_call(def, callee, args, at, span);
                }
            }
        }
        if let Some(&def) = self.scope.names.get(name) {
            let kind = self.cx.program.defs[def].kind.keyword();
            self.cx.diags.push(
                Diagnostic::error(
                    "E0144",
                    callee.span,
                    format!("`{name}` is a {kind} and cannot be called inside a body"),
                )
                .with_label("definition called as a function")
                .with_help(match self.kind {
                    DefKind::Schedule => {
                        "only schedules can be called inside a schedule".to_string()
                    }
                    _ => format!(
                        "compose it in a chain instead: `optimizer mine(...) = {name}(...) |> ...`"
                    ),
                }),
            );
            return self.error_expr(span);
        }
        let d = self.unknown(callee);
        self.cx.diags.push(d);
        self.error_expr(span)
    }

    fn sched_call(
        &mut self,
        def: DefId,
        callee: &ast::Ident,
        args: &[ast::Arg],
        at: ExprId,
        span: Span,
    ) -> ExprId {
        let params = self.params().to_vec();
        let names = HyperNames::Params(&params);
        let Some(hargs) = hyper::check_call_args(self.cx, self.scope, &names, def, args, callee)
        else {
            return self.error_expr(span);
        };
        self.body.push(
            Expr::SchedCall(def, hargs, at),
            Self::ty(ValueKind::Real, Extent::Uniform),
            span,
        )
    }

    /// `at(s, x)`: a schedule (a parameter or a call) evaluated at count x.
    fn at(&mut self, callee: &ast::Ident, args: &[ast::Arg], span: Span) -> ExprId {
        if args.len() != 2 || args.iter().any(|a| a.name.is_some()) {
            self.cx.diags.push(
                Diagnostic::error("E0150", span, "`at` takes a schedule and a count")
                    .with_label("wrong arguments")
                    .with_help(builtin_usage("at")),
            );
            return self.error_expr(span);
        }
        let x = self.expr(&args[1].value);
        match &args[0].value.kind {
            ExprKind::Name(n) => {
                if let Some(pi) = self
                    .params()
                    .iter()
                    .position(|p| p.name == *n && p.ty == TypeExpr::Scalar(ScalarType::Schedule))
                {
                    return self.body.push(
                        Expr::ScheduleAt(pi, x),
                        Self::ty(ValueKind::Real, Extent::Uniform),
                        span,
                    );
                }
            }
            ExprKind::Call {
                callee: inner,
                args: inner_args,
            } => {
                if let Some(&def) = self.scope.names.get(&inner.name) {
                    if self.cx.program.defs[def].kind == DefKind::Schedule {
                        return self.sched_call(def, inner, inner_args, x, span);
                    }
                }
            }
            _ => {}
        }
        self.cx.diags.push(
            Diagnostic::error(
                "E0150",
                args[0].value.span,
                format!("`{}` needs a schedule first", callee.name),
            )
            .with_label("not a schedule")
            .with_help(builtin_usage("at")),
        );
        self.error_expr(span)
    }

    /// `grad_at(x)`, `hvp(v)`, `rademacher()`: per-element values that need the model or
    /// a random stream; only in transforms and optimizers.
    fn model_call(&mut self, callee: &ast::Ident, args: &[ast::Arg], span: Span) -> ExprId {
        let name = callee.name.as_str();
        if self.kind == DefKind::Schedule || self.in_state_init {
            self.cx.diags.push(
                Diagnostic::error("E0132", span, format!("`{name}` is only available in a transform's body"))
                    .with_label("not available here")
                    .with_help("use it in the statements of a transform or optimizer, not in a schedule or a state's initial value"),
            );
            return self.error_expr(span);
        }
        let arity = usize::from(name != "rademacher");
        let Some(xs) = self.positional(callee, args, arity, span) else {
            return self.error_expr(span);
        };
        let e = match (name, xs.first()) {
            ("grad_at", Some(x)) => Expr::GradAt(*x),
            ("hvp", Some(x)) => Expr::Hvp(*x),
            _ => Expr::Rademacher,
        };
        if let Some(&x) = xs.first() {
            if self.body.types[x].kind == ValueKind::Bool {
                let s = self.body.spans[x];
                self.cx.diags.push(
                    Diagnostic::error("E0120", s, format!("`{name}` needs numbers, found bool"))
                        .with_label("bool")
                        .with_help("pass a per-element value such as `param + 0.1 * grad`"),
                );
            }
        }
        self.body
            .push(e, Self::ty(ValueKind::Real, Extent::Element), span)
    }

    fn positional(
        &mut self,
        callee: &ast::Ident,
        args: &[ast::Arg],
        arity: usize,
        span: Span,
    ) -> Option<Vec<ExprId>> {
        if args.len() != arity || args.iter().any(|a| a.name.is_some()) {
            self.cx.diags.push(
                Diagnostic::error(
                    "E0150",
                    span,
                    format!(
                        "`{}` takes {arity} argument{}, given {}",
                        callee.name,
                        if arity == 1 { "" } else { "s" },
                        args.len()
                    ),
                )
                .with_label("wrong number of arguments")
                .with_help(builtin_usage(&callee.name)),
            );
            return None;
        }
        Some(args.iter().map(|a| self.expr(&a.value)).collect())
    }

    fn builtin(
        &mut self,
        b: Builtin,
        arity: usize,
        callee: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> ExprId {
        let Some(xs) = self.positional(callee, args, arity, span) else {
            return self.error_expr(span);
        };
        let mut extent = Extent::Uniform;
        for &x in &xs {
            let t = self.body.types[x];
            extent = extent.join(t.extent);
            if t.kind == ValueKind::Bool {
                let s = self.body.spans[x];
                self.cx.diags.push(
                    Diagnostic::error(
                        "E0120",
                        s,
                        format!("`{}` needs a number, found bool", callee.name),
                    )
                    .with_label("bool")
                    .with_help("use `if cond then a else b` to turn a condition into a number"),
                );
            }
        }
        let kind = match b {
            Builtin::IsFinite | Builtin::IsNone => ValueKind::Bool,
            Builtin::Abs | Builtin::Min | Builtin::Max | Builtin::Clamp | Builtin::Sign
                if xs
                    .iter()
                    .all(|&x| self.body.types[x].kind == ValueKind::Int) =>
            {
                ValueKind::Int
            }
            _ => ValueKind::Real,
        };
        self.body
            .push(Expr::Call(b, xs), Self::ty(kind, extent), span)
    }

    fn reduction(&mut self, op: ReduceOp, scope: RScope, args: &[ast::Arg], span: Span) -> ExprId {
        if self.kind == DefKind::Schedule {
            self.cx.diags.push(
                Diagnostic::error("E0132", span, "a schedule cannot reduce tensors")
                    .with_label("reduction in a schedule")
                    .with_help("reductions (`norm`, `sum`, ...) belong in transforms, over `grad` or `param`"),
            );
            return self.error_expr(span);
        }
        if args.len() != 2 {
            self.cx.diags.push(
                Diagnostic::error(
                    "E0150",
                    span,
                    format!("`{}` takes a value and a scope", op.name()),
                )
                .with_label("wrong number of arguments")
                .with_help(format!("write `{}(grad, global)`", op.name())),
            );
            return self.error_expr(span);
        }
        let x = self.expr(&args[0].value);
        let t = self.body.types[x];
        let reducible = match scope {
            RScope::Row | RScope::Col | RScope::Unit => t.extent == Extent::Element,
            RScope::Outer => matches!(t.extent, Extent::Element | Extent::Row | Extent::Col),
            _ => matches!(
                t.extent,
                Extent::Element | Extent::Row | Extent::Col | Extent::Unit | Extent::Outer
            ),
        };
        if !reducible {
            let s = self.body.spans[x];
            self.cx.diags.push(
                Diagnostic::error(
                    "E0132",
                    s,
                    format!(
                        "`{}(..., {})` cannot reduce a {} value",
                        op.name(),
                        scope.name(),
                        t.extent.describe()
                    ),
                )
                .with_label("nothing to reduce over that scope")
                .with_help(
                    "reduce a per-element value such as `grad`, `param` or a per-element state; \
                     `outer` also reduces per-row and per-column values",
                ),
            );
        }
        let want_bool = op == ReduceOp::AllFinite;
        if (t.kind == ValueKind::Bool) && !want_bool {
            let s = self.body.spans[x];
            self.cx.diags.push(
                Diagnostic::error(
                    "E0120",
                    s,
                    format!("`{}` needs numbers, found bool", op.name()),
                )
                .with_label("bool")
                .with_help("reduce numbers; `if c then 1 else 0` counts conditions"),
            );
        }
        let kind = if want_bool {
            ValueKind::Bool
        } else {
            ValueKind::Real
        };
        self.body.push(
            Expr::Reduce(op, scope, x),
            Self::ty(kind, scope.extent()),
            span,
        )
    }

    fn list_op(
        &mut self,
        op: ListOp,
        arity: usize,
        callee: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> ExprId {
        if args.len() != arity || args.iter().any(|a| a.name.is_some()) {
            self.cx.diags.push(
                Diagnostic::error(
                    "E0150",
                    span,
                    format!("`{}` takes {arity} arguments", callee.name),
                )
                .with_label("wrong arguments")
                .with_help(builtin_usage(&callee.name)),
            );
            return self.error_expr(span);
        }
        let list_param = |b: &Self, e: &ast::Expr, want: fn(&TypeExpr) -> bool| -> Option<usize> {
            match &e.kind {
                ExprKind::Name(n) => b.params().iter().position(|p| p.name == *n && want(&p.ty)),
                _ => None,
            }
        };
        let first_ok: fn(&TypeExpr) -> bool = match op {
            ListOp::ProdLe => |t| matches!(t, TypeExpr::Map(..)),
            ListOp::Join => |t| *t == TypeExpr::List(ScalarType::Schedule),
            // Items are read as numbers: a list of schedules has no number to give.
            ListOp::Nth | ListOp::SumFirst | ListOp::CountCumLe => {
                |t| matches!(t, TypeExpr::List(ScalarType::Real | ScalarType::Int))
            }
            _ => |t| matches!(t, TypeExpr::List(_)),
        };
        let Some(pi) = list_param(self, &args[0].value, first_ok) else {
            self.cx.diags.push(
                Diagnostic::error(
                    "E0170",
                    args[0].value.span,
                    format!("`{}` needs a list parameter here", callee.name),
                )
                .with_label("not a list parameter of this schedule")
                .with_help(builtin_usage(&callee.name)),
            );
            return self.error_expr(span);
        };
        let mut rest = Vec::new();
        if op == ListOp::Join {
            let Some(bi) = list_param(self, &args[1].value, |t| {
                *t == TypeExpr::List(ScalarType::Int)
            }) else {
                self.cx.diags.push(
                    Diagnostic::error(
                        "E0170",
                        args[1].value.span,
                        "`join` needs the boundaries as an `[int]` parameter",
                    )
                    .with_label("not an [int] parameter")
                    .with_help(builtin_usage("join")),
                );
                return self.error_expr(span);
            };
            let b = self.body.push(
                Expr::Hyper(bi),
                Self::ty(ValueKind::Int, Extent::Uniform),
                args[1].value.span,
            );
            rest.push(b);
            rest.push(self.expr(&args[2].value));
        } else {
            for a in &args[1..] {
                rest.push(self.expr(&a.value));
            }
        }
        // An item (or a sum of items) of an `[int]` list is an int, like the list.
        let int_items =
            self.params().get(pi).map(|p| &p.ty) == Some(&TypeExpr::List(ScalarType::Int));
        let kind = match op {
            ListOp::CountLe | ListOp::Len | ListOp::CountCumLe => ValueKind::Int,
            ListOp::Nth | ListOp::SumFirst if int_items => ValueKind::Int,
            _ => ValueKind::Real,
        };
        self.body.push(
            Expr::List(op, pi, rest),
            Self::ty(kind, Extent::Uniform),
            span,
        )
    }

    fn warn_unused(&mut self) {
        for (name, binding, span, reads) in &self.names {
            if *reads > 0 || name.starts_with('_') {
                continue;
            }
            let (code, what) = match binding {
                Binding::Local(_) => ("W0001", "value"),
                Binding::State(_) => ("W0002", "state"),
            };
            self.cx.diags.push(
                Diagnostic::warning(code, *span, format!("unused {what} `{name}`"))
                    .with_label("never read")
                    .with_help(format!(
                        "remove it, or prefix it with `_` (`_{name}`) to keep it quiet"
                    )),
            );
        }
    }
}

fn scope_of(e: &ast::Expr) -> Option<RScope> {
    match &e.kind {
        ExprKind::Name(n) => match n.as_str() {
            "tensor" => Some(RScope::Tensor),
            "group" => Some(RScope::Group),
            "global" => Some(RScope::Global),
            "row" => Some(RScope::Row),
            "col" => Some(RScope::Col),
            "outer" => Some(RScope::Outer),
            "unit" => Some(RScope::Unit),
            _ => None,
        },
        _ => None,
    }
}

fn builtin_usage(name: &str) -> String {
    match name {
        "clamp" => "`clamp(x, lo, hi)`".into(),
        "lerp" => "`lerp(a, b, w)` is a + w·(b − a)".into(),
        "min" | "max" => format!("`{name}(a, b)` elementwise, or `{name}(x, global)` to reduce"),
        "pow" => "`pow(x, y)` or `x ^ y`".into(),
        "count_le" => "`count_le(milestones, count)`: how many milestones are <= count".into(),
        "prod_le" => "`prod_le(boundaries_and_scales, count)`: product of the scales whose boundary is <= count".into(),
        "join" => "`join(schedules, boundaries, count)`".into(),
        "len" => "`len(xs)`".into(),
        "nth" => "`nth(xs, i)`: the item at index i (0-based; the last past the end)".into(),
        "sum_first" => "`sum_first(xs, k)`: the sum of the first k items".into(),
        "count_cum_le" => "`count_cum_le(lengths, count)`: how many running sums of lengths are <= count".into(),
        "at" => "`at(schedule, x)`: the schedule's value at count x, e.g. `at(cosine_decay_schedule(...), count - 10)`".into(),
        _ => format!("`{name}(x)`"),
    }
}
