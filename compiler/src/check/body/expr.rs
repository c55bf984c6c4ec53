//! Typing expressions in a body: operators, names (parameters, states, locals, `grad`,
//! `param`, `count`, shape facts), indexing and string comparisons.

use super::*;

impl BodyCx<'_> {
    pub(super) fn expr(&mut self, e: &ast::Expr) -> ExprId {
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
                let mut xy = [x, y];
                self.no_matrix_mix(&mut xy, e.span);
                let [x, y] = xy;
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
                let mut cxy = [c, x, y];
                self.no_matrix_mix(&mut cxy, e.span);
                let [c, x, y] = cxy;
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
    pub(super) fn str_compare(
        &mut self,
        c: ast::CmpOp,
        a: &ast::Expr,
        b: &ast::Expr,
        span: Span,
    ) -> ExprId {
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

    pub(super) fn op_mismatch(&mut self, op: BinOp, a: Type, b: Type, span: Span) {
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

    pub(super) fn name(&mut self, n: &str, span: Span) -> ExprId {
        if let Some(pos) = self.names.iter().rposition(|(name, ..)| name == n) {
            self.names[pos].3 += 1;
            return match self.names[pos].1 {
                Binding::Local(id) => {
                    let ty = self.local_type(id);
                    self.body.push(Expr::Local(id), ty, span)
                }
                Binding::State(id) => {
                    let extent = self.body.states[id].extent;
                    if extent == Extent::Matrix {
                        return self.matrix_state_read(id, span);
                    }
                    self.body
                        .push(Expr::State(id), Self::ty(ValueKind::Real, extent), span)
                }
            };
        }
        let stage = self.kind != DefKind::Schedule;
        if self.frame.is_some() && !matches!(n, "inf" | "pi") {
            let d = Diagnostic::error("E0102", span, format!("unknown name `{n}` in a function"))
                .with_label("not a parameter or `let` of this function")
                .with_help("a function sees only its parameters and its own `let`s: pass `grad`, `param`, `step`, states or hyperparameters to it as arguments");
            self.cx.diags.push(d);
            return self.error_expr(span);
        }
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
            "loss" if stage => {
                return self
                    .body
                    .push(Expr::Loss, Self::ty(ValueKind::Real, Extent::Uniform), span)
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

    pub(super) fn local_type(&self, id: usize) -> Type {
        for s in &self.body.stmts {
            if let Stmt::Let(l, e) = s {
                if *l == id {
                    return self.body.types[*e];
                }
            }
        }
        let extent = if self.loop_vars.contains(&id) {
            Extent::Matrix
        } else {
            Extent::Uniform
        };
        Self::ty(ValueKind::Real, extent)
    }

    pub(super) fn index(&mut self, base: &ast::Expr, idx: &ast::Expr, span: Span) -> ExprId {
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
        let pi = match &self.frame {
            Some(f) => f.lists.iter().find(|(m, _)| m == n).map(|(_, h)| *h),
            None => self.params().iter().position(|p| p.name == *n),
        };
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
}
