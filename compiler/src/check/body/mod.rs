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

pub(crate) use function::Functions;

mod call;
mod eval;
mod every;
mod expr;
mod function;
mod matrix;
mod shapes;

const REDUCTIONS: [(&str, ReduceOp); 6] = [
    ("norm", ReduceOp::Norm),
    ("sum", ReduceOp::Sum),
    ("mean", ReduceOp::Mean),
    ("max", ReduceOp::Max),
    ("min", ReduceOp::Min),
    ("all_finite", ReduceOp::AllFinite),
];

const LIST_OPS: [(&str, ListOp, usize); 9] = [
    ("count_le", ListOp::CountLe, 2),
    ("prod_le", ListOp::ProdLe, 2),
    ("join", ListOp::Join, 3),
    ("len", ListOp::Len, 1),
    ("nth", ListOp::Nth, 2),
    ("sum_first", ListOp::SumFirst, 2),
    ("count_cum_le", ListOp::CountCumLe, 2),
    ("last_key_le", ListOp::LastKeyLe, 2),
    ("first_key_gt", ListOp::FirstKeyGt, 2),
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
    /// The loop values of `repeat` blocks (matrices; they have no `let` statement).
    loop_vars: Vec<usize>,
    /// Inside a matrix state's initial value: matrix functions are available.
    matrix_init: bool,
    /// Per matrix state assigned so far: the hidden `let` its later reads see (its value
    /// as of this point; the state itself is written when the stage ends).
    mat_alias: Vec<(usize, usize)>,
    /// Inside `every k steps { ... }`: the condition its assignments wait on.
    every: Option<ExprId>,
    /// Every module's functions, for calls.
    fns: &'a Functions<'a>,
    /// Inside a function being expanded: its list parameters.
    frame: Option<function::Frame>,
    /// The functions being expanded, outermost first (a function cannot recurse).
    expanding: Vec<DefId>,
}

pub(crate) fn check_stage<'a>(
    cx: &'a mut Checker,
    scope: &'a Scope,
    fns: &'a Functions<'a>,
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
        loop_vars: Vec::new(),
        matrix_init: false,
        mat_alias: Vec::new(),
        every: None,
        fns,
        frame: None,
        expanding: Vec::new(),
    };
    for s in stmts {
        b.stage_stmt(s);
    }
    if warn_unused {
        b.warn_unused();
        let shapes = shapes::warn_shapes(&b.body);
        b.cx.diags.extend(shapes);
    }
    b.body
}

pub(crate) fn check_schedule<'a>(
    cx: &'a mut Checker,
    scope: &'a Scope,
    fns: &'a Functions<'a>,
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
        loop_vars: Vec::new(),
        matrix_init: false,
        mat_alias: Vec::new(),
        every: None,
        fns,
        frame: None,
        expanding: Vec::new(),
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
            ast::Stmt::Eval { span, .. } => b.cx.diags.push(
                Diagnostic::error("E0143", *span, "a schedule has no parameters to evaluate")
                    .with_label("not allowed in a schedule")
                    .with_help("`eval param = ...` belongs in a transform or optimizer"),
            ),
            ast::Stmt::Every { span, .. } => b.cx.diags.push(
                Diagnostic::error("E0143", *span, "a schedule's value is a function of `count` already")
                    .with_label("not allowed in a schedule")
                    .with_help("`every k steps { ... }` belongs in a transform or optimizer"),
            ),
            ast::Stmt::Repeat { span, .. } => b.cx.diags.push(
                Diagnostic::error("E0143", *span, "a schedule has no matrices to repeat over")
                    .with_label("not allowed in a schedule")
                    .with_help("`repeat` belongs in a transform or optimizer, over matrix values"),
            ),
            ast::Stmt::Run { span, .. } => b.cx.diags.push(
                Diagnostic::error("E0143", *span, "a schedule cannot run a chain")
                    .with_label("not allowed in a schedule")
                    .with_help("`run` belongs in a transform that wraps an optimizer"),
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
            "grad" | "param" | "step" | "count" | "pi" | "loss"
        );
        let clash = self
            .names
            .iter()
            .find(|(n, ..)| *n == name.name)
            .map(|(_, _, s, _)| *s);
        // In a function, the caller's hyperparameters are out of sight.
        let param_clash = match &self.frame {
            Some(f) if f.lists.iter().any(|(n, _)| *n == name.name) => Some(name.span),
            Some(_) => None,
            None => self
                .params()
                .iter()
                .find(|p| p.name == name.name)
                .map(|p| p.span),
        };
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
            ast::Stmt::State {
                name,
                extent: Some((StateExtent::Matrix(a, b), _)),
                init,
                ..
            } => self.matrix_state(name, (*a, *b), init),
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
                    Some(StateExtent::Matrix(..)) => Extent::Matrix,
                };
                self.check_fits(e, declared, &name.name);
                let id = self.body.states.len();
                if self.declare(name, Binding::State(id)) {
                    self.body.states.push(StateDecl {
                        name: name.name.clone(),
                        extent: declared,
                        shape: None,
                        init: e,
                        span: name.span,
                    });
                }
            }
            ast::Stmt::Let { name, value, .. } => self.let_stmt(name, value),
            ast::Stmt::Assign { target, op, value, span } => self.assign(target, *op, value, *span),
            ast::Stmt::Eval { value, span } => self.eval_view(value, *span),
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
            ast::Stmt::Run { chain, .. } => self.run_stmt(chain),
            ast::Stmt::Repeat {
                count,
                stmts,
                span,
            } => self.repeat(count, stmts, *span),
            ast::Stmt::Every {
                period,
                stmts,
                span,
            } => self.every(period, stmts, *span),
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

    /// `run NAME`: NAME must be one of the definition's `chain` parameters.
    fn run_stmt(&mut self, chain: &ast::Ident) {
        let found = self.params().iter().position(|p| p.name == chain.name);
        match found {
            Some(i) if self.params()[i].ty == TypeExpr::Scalar(ScalarType::Chain) => {
                self.body.stmts.push(Stmt::Run(i));
            }
            _ => {
                let chains: Vec<&str> = self
                    .params()
                    .iter()
                    .filter(|p| p.ty == TypeExpr::Scalar(ScalarType::Chain))
                    .map(|p| p.name.as_str())
                    .collect();
                let help = match chains.first() {
                    Some(c) => format!("write `run {c}`"),
                    None => format!(
                        "declare a parameter `{}: chain` and pass it stages: `{}({}: adamw(...))`",
                        chain.name,
                        self.def_name(),
                        chain.name
                    ),
                };
                self.cx.diags.push(
                    Diagnostic::error(
                        "E0120",
                        chain.span,
                        format!(
                            "`{}` is not a chain parameter of `{}`",
                            chain.name,
                            self.def_name()
                        ),
                    )
                    .with_label("`run` takes a chain parameter")
                    .with_help(help),
                );
            }
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
                shape: None,
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
                    let span = other.span();
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

    /// The value `op` assigns, from the current value `cur`: `rhs` for `=`, `cur + rhs`
    /// for `+=`, and so on.
    fn compound(&mut self, op: AssignOp, cur: ExprId, rhs: ExprId, span: Span) -> ExprId {
        let bop = match op {
            AssignOp::Set => return rhs,
            AssignOp::Add => BinOp::Add,
            AssignOp::Sub => BinOp::Sub,
            AssignOp::Mul => BinOp::Mul,
            AssignOp::Div => BinOp::Div,
        };
        let ta = self.body.types[cur];
        let tb = self.body.types[rhs];
        let ty = Type {
            kind: ValueKind::Real,
            extent: ta.extent.join(tb.extent),
        };
        self.body.push(Expr::Binary(bop, cur, rhs), ty, span)
    }

    fn assign(&mut self, target: &ast::Ident, op: AssignOp, value: &ast::Expr, span: Span) {
        let rhs = self.expr(value);
        let name = target.name.as_str();
        let read = |b: &mut Self, e: Expr, ty: Type| b.body.push(e, ty, target.span);
        let combine = |b: &mut Self, cur: ExprId, rhs: ExprId| b.compound(op, cur, rhs, span);
        let elem = Type {
            kind: ValueKind::Real,
            extent: Extent::Element,
        };
        match name {
            "grad" => {
                if !self.no_matrix_store(rhs, "grad") {
                    return;
                }
                let cur = read(self, Expr::Grad, elem);
                let v = combine(self, cur, rhs);
                let v = self.every_select(v, cur);
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
                if !self.no_matrix_store(rhs, "param") {
                    return;
                }
                let cur = read(self, Expr::Param, elem);
                let v = combine(self, cur, rhs);
                let v = self.every_select(v, cur);
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
                    Some((Binding::State(id), _))
                        if self.body.states[id].extent == Extent::Matrix =>
                    {
                        self.matrix_state_assign(id, target, op, rhs, span)
                    }
                    Some((Binding::State(id), _)) => {
                        if !self.no_matrix_store(rhs, name) {
                            return;
                        }
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
                        let v = self.every_select(v, cur);
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
            extra.extend(["grad", "param", "step", "loss"]);
        }
        extra.extend(Builtin::ALL.iter().map(|(n, _, _)| *n));
        if self.kind != DefKind::Schedule {
            extra.extend(crate::ir::MatOp::ALL.iter().map(|(n, _, _)| *n));
        }
        if self.kind != DefKind::Schedule && matches!(name.name.as_str(), "trace" | "tr") {
            return Diagnostic::error("E0102", name.span, format!("unknown name `{}`", name.name))
                .with_label("not a function of matrices")
                .with_help("a matrix's trace is `matrix_trace(A)` (`trace` is optax's momentum transform, used in a chain)");
        }
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
