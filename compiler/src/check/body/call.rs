//! Typing calls in a body: builtins, reductions, list functions, schedule calls, the model
//! calls (`grad_at`, `hvp`) and `at(...)`.

use super::*;

impl BodyCx<'_> {
    pub(super) fn call(&mut self, callee: &ast::Ident, args: &[ast::Arg], span: Span) -> ExprId {
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
        if let Some((_, op, arity)) = crate::ir::MatOp::ALL.iter().find(|(n, _, _)| *n == name) {
            return self.mat_call(*op, *arity, callee, args, span);
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
            "rows" => Some(ShapeInfo::Rows),
            "cols" => Some(ShapeInfo::Cols),
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
            if self.cx.program.defs[def].kind == DefKind::Function {
                return self.function_call(def, callee, args, span);
            }
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

    pub(super) fn sched_call(
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
    pub(super) fn at(&mut self, callee: &ast::Ident, args: &[ast::Arg], span: Span) -> ExprId {
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
    pub(super) fn model_call(
        &mut self,
        callee: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> ExprId {
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

    pub(super) fn positional(
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

    pub(super) fn builtin(
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
        let mut xs = xs;
        self.no_matrix_mix(&mut xs, span);
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

    pub(super) fn reduction(
        &mut self,
        op: ReduceOp,
        scope: RScope,
        args: &[ast::Arg],
        span: Span,
    ) -> ExprId {
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
            RScope::Row | RScope::Col | RScope::Unit | RScope::Lead => t.extent == Extent::Element,
            RScope::Outer => matches!(t.extent, Extent::Element | Extent::Row | Extent::Col),
            _ => matches!(
                t.extent,
                Extent::Element
                    | Extent::Row
                    | Extent::Col
                    | Extent::Unit
                    | Extent::Lead
                    | Extent::Outer
            ),
        };
        if !reducible && t.extent == Extent::Matrix {
            let s = self.body.spans[x];
            self.cx.diags.push(
                Diagnostic::error(
                    "E0132",
                    s,
                    format!("`{}(..., {})` reduces per-element values, and this is a matrix", op.name(), scope.name()),
                )
                .with_label("a matrix")
                .with_help(
                    "a matrix's norms are `frobenius_norm(A)` and `spectral_norm(A)`, its trace `matrix_trace(A)`; \
                     `elements(A)` gives its entries as per-element values to reduce",
                ),
            );
        } else if !reducible {
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

    pub(super) fn list_op(
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
            ListOp::ProdLe | ListOp::LastKeyLe | ListOp::FirstKeyGt => {
                |t| matches!(t, TypeExpr::Map(..))
            }
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
            ListOp::LastKeyLe | ListOp::FirstKeyGt => ValueKind::Int,
            ListOp::Nth | ListOp::SumFirst if int_items => ValueKind::Int,
            _ => ValueKind::Real,
        };
        self.body.push(
            Expr::List(op, pi, rest),
            Self::ty(kind, Extent::Uniform),
            span,
        )
    }
}

pub(super) fn scope_of(e: &ast::Expr) -> Option<RScope> {
    match &e.kind {
        ExprKind::Name(n) => match n.as_str() {
            "tensor" => Some(RScope::Tensor),
            "group" => Some(RScope::Group),
            "global" => Some(RScope::Global),
            "row" => Some(RScope::Row),
            "col" => Some(RScope::Col),
            "outer" => Some(RScope::Outer),
            "unit" => Some(RScope::Unit),
            "lead" => Some(RScope::Lead),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn builtin_usage(name: &str) -> String {
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
        "last_key_le" => "`last_key_le(boundaries_and_scales, count)`: the largest boundary <= count (none if there is none)".into(),
        "first_key_gt" => "`first_key_gt(boundaries_and_scales, count)`: the smallest boundary > count (none if there is none)".into(),
        "at" => "`at(schedule, x)`: the schedule's value at count x, e.g. `at(cosine_decay_schedule(...), count - 10)`".into(),
        _ => format!("`{name}(x)`"),
    }
}
