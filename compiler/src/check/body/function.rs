//! Functions (`function newton_schulz(X: real, ns_steps: int, coefficients: [real]) {...}`):
//! a call in a transform's or optimizer's body is expanded there, its statements checked
//! in the caller's body with the arguments bound to its parameters — as `let`s for values,
//! as the caller's own list hyperparameter for a list — so the function costs nothing at
//! run time and every back end sees a plain body. Its body sees only its parameters, its
//! own `let`s, builtins and the definitions of its module: not `grad`, `param`, `step`,
//! states or the caller's names. It holds `let`s and `repeat`s and ends with the value.
//! Entry point: `BodyCx::function_call`.

use std::collections::HashMap;

use super::*;
use crate::ir::HyperValue;

/// The functions of every module, with the scope each is checked in.
pub(crate) struct Functions<'a> {
    defs: HashMap<DefId, (&'a ast::Def, usize)>,
    scopes: &'a [Scope],
}

impl<'a> Functions<'a> {
    pub(crate) fn new(
        defs: HashMap<DefId, (&'a ast::Def, usize)>,
        scopes: &'a [Scope],
    ) -> Functions<'a> {
        Functions { defs, scopes }
    }
}

/// The function being expanded.
pub(super) struct Frame {
    /// Its list parameters: each name, and the caller's list hyperparameter it stands for.
    pub(super) lists: Vec<(String, usize)>,
}

impl BodyCx<'_> {
    /// A call of function `def`: its value, expanded into this body.
    pub(super) fn function_call(
        &mut self,
        def: DefId,
        callee: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> ExprId {
        let fns = self.fns;
        let Some(&(ast_def, module)) = fns.defs.get(&def) else {
            return self.error_expr(span);
        };
        if self.kind == DefKind::Schedule || self.in_state_init {
            let d = Diagnostic::error(
                "E0144",
                callee.span,
                format!(
                    "function `{}` can only be called in a transform's or optimizer's body",
                    callee.name
                ),
            )
            .with_label("not here")
            .with_help(
                "a schedule is a number per step; a state's initial value is set before any step",
            );
            self.cx.diags.push(d);
            return self.error_expr(span);
        }
        if self.expanding.contains(&def) {
            let d = Diagnostic::error(
                "E0145",
                callee.span,
                format!("function `{}` calls itself", callee.name),
            )
            .with_label("expands into itself")
            .with_help("a function is expanded where it is called, so it cannot recurse: loop with `repeat`");
            self.cx.diags.push(d);
            return self.error_expr(span);
        }
        self.cx.called.insert(def);
        let params = self.cx.program.defs[def].params.clone();
        let Some(bound) = self.bind_arguments(&params, callee, args, span) else {
            return self.error_expr(span);
        };
        // Into the function's own world: its names, its module's definitions.
        let caller_names = std::mem::take(&mut self.names);
        let caller_frame = self.frame.take();
        let caller_scope = self.scope;
        self.scope = &fns.scopes[module];
        self.expanding.push(def);
        let mut lists = Vec::new();
        for (p, arg) in params.iter().zip(bound) {
            match arg {
                Bound::Value(e) => {
                    let id = self.body.locals.len();
                    self.names
                        .push((p.name.clone(), Binding::Local(id), p.span, 1));
                    self.body.locals.push(format!("{}.{}", callee.name, p.name));
                    self.body.stmts.push(Stmt::Let(id, e));
                }
                Bound::List(hyper) => lists.push((p.name.clone(), hyper)),
            }
        }
        self.frame = Some(Frame { lists });
        let value = self.function_body(ast_def, span);
        self.expanding.pop();
        self.scope = caller_scope;
        self.frame = caller_frame;
        self.names = caller_names;
        value
    }

    /// The statements of a function, in the frame set up for them; its last line's value.
    fn function_body(&mut self, d: &ast::Def, span: Span) -> ExprId {
        let stmts: &[ast::Stmt] = match &d.body {
            ast::DefBody::Block(stmts) => stmts,
            ast::DefBody::Expr(e) => return self.expr(e),
            ast::DefBody::Builtin(..) => return self.error_expr(span),
        };
        let Some((ast::Stmt::Expr(last), lets)) = stmts.split_last() else {
            let at = stmts.last().map(|s| s.span()).unwrap_or(d.name.span);
            let e = Diagnostic::error(
                "E0143",
                at,
                format!("function `{}` ends without its value", d.name.name),
            )
            .with_label("the last line is not an expression")
            .with_help("end the body with the value it gives, e.g. `X`");
            self.cx.diags.push(e);
            return self.error_expr(span);
        };
        for s in lets {
            match s {
                ast::Stmt::Let { name, value, .. } => self.let_stmt(name, value),
                ast::Stmt::Repeat { count, stmts, span } => self.repeat(count, stmts, *span),
                other => {
                    let e = Diagnostic::error(
                        "E0135",
                        other.span(),
                        format!("function `{}` holds `let`s and `repeat`s, then its value", d.name.name),
                    )
                    .with_label("not in a function")
                    .with_help("states, assignments to `grad` or `param`, `skip` and `every` belong to the transform or optimizer that calls it");
                    self.cx.diags.push(e);
                }
            }
        }
        self.expr(last)
    }

    /// The arguments of a call, matched to `params` by position, then by keyword; each a
    /// value checked here, or for a list parameter the caller's list hyperparameter.
    fn bind_arguments(
        &mut self,
        params: &[crate::ir::HyperParam],
        callee: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> Option<Vec<Bound>> {
        let mut slots: Vec<Option<&ast::Arg>> = vec![None; params.len()];
        let mut ok = true;
        for (i, a) in args.iter().enumerate() {
            let at = match &a.name {
                None if i < params.len() && args[..i].iter().all(|b| b.name.is_none()) => Some(i),
                None => None,
                Some(n) => params.iter().position(|p| p.name == n.name),
            };
            match at {
                Some(k) if slots[k].is_none() => slots[k] = Some(a),
                _ => {
                    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
                    let what = match &a.name {
                        Some(n) if names.contains(&n.name.as_str()) => {
                            format!("`{}` is given twice", n.name)
                        }
                        Some(n) => format!("`{}` has no parameter `{}`", callee.name, n.name),
                        None => format!("`{}` takes {} arguments", callee.name, params.len()),
                    };
                    let d = Diagnostic::error("E0110", a.value.span, what)
                        .with_label("this argument")
                        .with_help(format!("`{}({})`", callee.name, names.join(", ")));
                    self.cx.diags.push(d);
                    ok = false;
                }
            }
        }
        let mut out = Vec::with_capacity(params.len());
        for (p, slot) in params.iter().zip(&slots) {
            let Some(a) = slot else {
                if let Some(v) = &p.default {
                    out.push(Bound::Value(self.hyper_constant(v, span)));
                    continue;
                }
                let d = Diagnostic::error(
                    "E0111",
                    span,
                    format!("`{}` needs its argument `{}`", callee.name, p.name),
                )
                .with_label("missing an argument")
                .with_help(format!("pass it by position or as `{}: ...`", p.name));
                self.cx.diags.push(d);
                ok = false;
                continue;
            };
            if let TypeExpr::List(_) = p.ty {
                match self.list_argument(&a.value) {
                    Some(h) => out.push(Bound::List(h)),
                    None => {
                        let d = Diagnostic::error(
                            "E0170",
                            a.value.span,
                            format!("`{}`'s `{}` is a list: pass a list hyperparameter by name", callee.name, p.name),
                        )
                        .with_label("not a list parameter")
                        .with_help("declare one, e.g. `ns_coefficients: [real] = [3.4445, -4.7750, 2.0315]`, and pass it");
                        self.cx.diags.push(d);
                        ok = false;
                    }
                }
                continue;
            }
            let e = self.expr(&a.value);
            let kind = self.body.types[e].kind;
            let fits = match p.ty {
                TypeExpr::Scalar(ScalarType::Bool) => kind == ValueKind::Bool,
                TypeExpr::Scalar(ScalarType::Int) => kind == ValueKind::Int,
                _ => kind != ValueKind::Bool,
            };
            if !fits {
                let d = Diagnostic::error(
                    "E0120",
                    a.value.span,
                    format!("`{}` is {}, found {}", p.name, type_name(&p.ty), kind.name()),
                )
                .with_label("wrong type")
                .with_help("a `real` parameter takes a number, a per-element value or a matrix; `int` a whole number; `bool` a condition");
                self.cx.diags.push(d);
                ok = false;
            }
            out.push(Bound::Value(e));
        }
        ok.then_some(out)
    }

    /// `name` as a list: the caller's list hyperparameter, or a list the caller got as a
    /// function.
    fn list_argument(&self, e: &ast::Expr) -> Option<usize> {
        let ExprKind::Name(n) = &e.kind else {
            return None;
        };
        if let Some(f) = &self.frame {
            return f.lists.iter().find(|(m, _)| m == n).map(|(_, h)| *h);
        }
        self.params()
            .iter()
            .position(|p| p.name == *n && matches!(p.ty, TypeExpr::List(_)))
    }

    /// A parameter's default, a constant.
    fn hyper_constant(&mut self, v: &HyperValue, span: Span) -> ExprId {
        let (value, kind) = match v {
            HyperValue::Real(x) => (*x, ValueKind::Real),
            HyperValue::Int(x) => (*x as f64, ValueKind::Int),
            HyperValue::Bool(b) => (f64::from(u8::from(*b)), ValueKind::Bool),
            _ => (f64::NAN, ValueKind::Real),
        };
        self.body
            .push(Expr::Const(value), Self::ty(kind, Extent::Uniform), span)
    }
}

fn type_name(t: &TypeExpr) -> &'static str {
    match t {
        TypeExpr::Scalar(s) => s.name(),
        _ => "a list",
    }
}

/// What a function parameter is bound to.
enum Bound {
    Value(ExprId),
    List(usize),
}
