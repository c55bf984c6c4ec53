//! Resolution and type checking: parsed modules → typed IR (`Program`). Entry point:
//! `check`. It runs in three passes so that one run reports every mistake: collect every
//! definition and its signature, check every body, then check and elaborate the recipes.
//! What it could not build is left out of the program and reported.

mod args;
mod body;
mod curriculum;
mod foreign;
mod hyper;
mod inline;
mod parallel;
mod recipe;

use crate::ast::{self, DefKind, ImportNames, TypeExpr};
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::ir::{self, DefBody, DefId, HyperParam, HyperValue, Program, ValueRange};
use crate::source::{FileId, Span};
use std::collections::{BTreeMap, HashMap};

/// A parsed file, ready for checking.
#[derive(Debug, Clone)]
pub struct Module {
    /// `std.optax` for library files; the file's own name (or `main`) for the user's file.
    pub name: String,
    pub file: FileId,
    pub ast: ast::Ast,
    /// Library modules get no "unused" warnings and may not hold recipes.
    pub is_library: bool,
}

/// Checks every module and returns the typed program with all diagnostics.
pub fn check(modules: &[Module]) -> (Program, Vec<Diagnostic>) {
    let mut cx = Checker::default();
    cx.collect(modules);
    let scopes: Vec<Scope> = modules.iter().map(|m| cx.scope_of(m, modules)).collect();
    cx.signatures(modules, &scopes);
    let functions: HashMap<DefId, (&ast::Def, usize)> = cx
        .def_asts
        .iter()
        .enumerate()
        .filter(|(_, (mi, di))| modules[*mi].ast.defs[*di].kind == DefKind::Function)
        .map(|(id, &(mi, di))| (id, (&modules[mi].ast.defs[di], mi)))
        .collect();
    let fns = body::Functions::new(functions, &scopes);
    cx.bodies(modules, &scopes, &fns);
    for (m, scope) in modules.iter().zip(&scopes) {
        for r in &m.ast.recipes {
            if let Some(recipe) = recipe::check_recipe(&mut cx, scope, r, !m.is_library) {
                cx.program.recipes.push(recipe);
            }
        }
    }
    for (id, &(mi, di)) in cx.def_asts.iter().enumerate() {
        let d = &modules[mi].ast.defs[di];
        if d.kind == DefKind::Function && !modules[mi].is_library && !cx.called.contains(&id) {
            cx.diags.push(
                Diagnostic::warning(
                    "W0004",
                    d.name.span,
                    format!("function `{}` is never called", d.name.name),
                )
                .with_label("never called, so its body is not checked")
                .with_help("a function's body is checked where a transform or optimizer calls it, with the call's arguments"),
            );
        }
    }
    // A function's body is checked at each call: a mistake in it is said once.
    let mut seen = std::collections::HashSet::new();
    cx.diags
        .retain(|d| seen.insert((d.code, d.span, d.message.clone())));
    (cx.program, cx.diags)
}

/// The names a module can use: its own definitions and what it imports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub names: HashMap<String, DefId>,
    pub is_library: bool,
}

#[derive(Default)]
pub(crate) struct Checker {
    pub program: Program,
    pub diags: Vec<Diagnostic>,
    /// module → name → definition
    pub modules: BTreeMap<String, BTreeMap<String, DefId>>,
    /// The AST of each definition, by `DefId`, for the later passes.
    def_asts: Vec<(usize, usize)>,
    /// The functions some body calls (the others' bodies are never checked).
    pub called: std::collections::HashSet<DefId>,
}

impl Checker {
    fn collect(&mut self, modules: &[Module]) {
        for (mi, m) in modules.iter().enumerate() {
            let table = self.modules.entry(m.name.clone()).or_default();
            for (di, d) in m.ast.defs.iter().enumerate() {
                if let Some(&prev) = table.get(&d.name.name) {
                    let prev_span = self.program.defs[prev].span;
                    self.diags.push(
                        Diagnostic::error(
                            "E0103",
                            d.name.span,
                            format!("`{}` is defined twice in {}", d.name.name, m.name),
                        )
                        .with_label("second definition")
                        .with_secondary(prev_span, "first defined here")
                        .with_help("rename one of them, or delete the one you do not mean"),
                    );
                    continue;
                }
                let id = self.program.defs.len();
                table.insert(d.name.name.clone(), id);
                self.program.defs.push(ir::Def {
                    name: d.name.name.clone(),
                    module: m.name.clone(),
                    kind: d.kind,
                    params: Vec::new(),
                    requires: Vec::new(),
                    body: DefBody::Chain(Vec::new()),
                    span: d.name.span,
                });
                self.def_asts.push((mi, di));
            }
        }
    }

    fn scope_of(&mut self, m: &Module, all: &[Module]) -> Scope {
        let mut scope = Scope {
            names: self
                .modules
                .get(&m.name)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            is_library: m.is_library,
        };
        for imp in &m.ast.imports {
            let Some(table) = self.modules.get(&imp.module.name) else {
                let known: Vec<&str> = all
                    .iter()
                    .filter(|x| x.is_library)
                    .map(|x| x.name.as_str())
                    .collect();
                let help = match did_you_mean(&imp.module.name, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("the library modules are {}", join_ticked(&known)),
                };
                self.diags.push(
                    Diagnostic::error(
                        "E0100",
                        imp.module.span,
                        format!("there is no module `{}`", imp.module.name),
                    )
                    .with_label("unknown module")
                    .with_help(help),
                );
                continue;
            };
            match &imp.names {
                ImportNames::All => {
                    for (n, id) in table {
                        scope.names.entry(n.clone()).or_insert(*id);
                    }
                }
                ImportNames::Module => {}
                ImportNames::Some(names) => {
                    for n in names {
                        match table.get(&n.name) {
                            Some(id) => {
                                scope.names.insert(n.name.clone(), *id);
                            }
                            None => {
                                let help =
                                    match did_you_mean(&n.name, table.keys().map(String::as_str)) {
                                        Some(s) => format!("did you mean `{s}`?"),
                                        None => format!(
                                            "`anneal doc {}` lists what it defines",
                                            imp.module.name
                                        ),
                                    };
                                self.diags.push(
                                    Diagnostic::error(
                                        "E0101",
                                        n.span,
                                        format!(
                                            "`{}` has no definition named `{}`",
                                            imp.module.name, n.name
                                        ),
                                    )
                                    .with_label("not in this module")
                                    .with_help(help),
                                );
                            }
                        }
                    }
                }
            }
        }
        scope
    }

    /// Pass 1: parameter types, ranges and defaults of every definition.
    fn signatures(&mut self, modules: &[Module], scopes: &[Scope]) {
        for id in 0..self.def_asts.len() {
            let (mi, di) = self.def_asts[id];
            let d = &modules[mi].ast.defs[di];
            let mut params: Vec<HyperParam> = Vec::new();
            for p in &d.params {
                if let Some(prev) = params.iter().find(|q| q.name == p.name.name) {
                    let prev_span = prev.span;
                    self.diags.push(
                        Diagnostic::error(
                            "E0104",
                            p.name.span,
                            format!("parameter `{}` is declared twice", p.name.name),
                        )
                        .with_label("declared again here")
                        .with_secondary(prev_span, "first declared here")
                        .with_help("give each parameter its own name"),
                    );
                    continue;
                }
                let (range, choices) = match &p.constraint {
                    Some(ast::Constraint::Choice { values, span }) => {
                        if p.ty != TypeExpr::Scalar(ast::ScalarType::Str) {
                            self.diags.push(
                                Diagnostic::error(
                                    "E0180",
                                    *span,
                                    "a set of strings only applies to a `str` parameter",
                                )
                                .with_label("this parameter is not a string")
                                .with_help(format!(
                                    "declare `{}: str in {{...}}`, or use a numeric range",
                                    p.name.name
                                )),
                            );
                        }
                        (None, Some(values.clone()))
                    }
                    Some(c) => (self.constraint(c, &p.ty), None),
                    None => (None, None),
                };
                let default = p.default.as_ref().and_then(|e| {
                    let v = hyper::const_value(self, e)?;
                    let v = hyper::coerce_value(self, v, &p.ty, e.span, &p.name.name)?;
                    if let Some(r) = &range {
                        hyper::check_range(self, &v, r, e.span, &p.name.name, &d.name.name);
                    }
                    if let Some(cs) = &choices {
                        hyper::check_choice(self, &v, cs, e.span, &p.name.name, &d.name.name);
                    }
                    Some(v)
                });
                params.push(HyperParam {
                    name: p.name.name.clone(),
                    ty: p.ty.clone(),
                    range,
                    choices,
                    default,
                    span: p.name.span,
                });
            }
            let mut requires = Vec::new();
            for r in &d.requires {
                let names = hyper::HyperNames::Params(&params);
                let Some((cond, t)) = hyper::check_hyper(self, &scopes[mi], &names, &r.cond) else {
                    continue;
                };
                if t != hyper::HType::Bool {
                    self.diags.push(
                        Diagnostic::error(
                            "E0114",
                            r.cond.span,
                            format!("a requirement must be a condition, not {}", t.name()),
                        )
                        .with_label("not a bool")
                        .with_help(
                            "compare the parameters, e.g. `requires total_steps > 0 else \"...\"`",
                        ),
                    );
                    continue;
                }
                requires.push(ir::Requirement {
                    cond,
                    message: r.message.clone(),
                    span: r.cond.span,
                });
            }
            self.program.defs[id].params = params;
            self.program.defs[id].requires = requires;
        }
    }

    fn constraint(&mut self, c: &ast::Constraint, ty: &TypeExpr) -> Option<ValueRange> {
        let numeric = matches!(
            ty,
            TypeExpr::Scalar(
                ast::ScalarType::Real | ast::ScalarType::Int | ast::ScalarType::Schedule
            ) | TypeExpr::List(
                ast::ScalarType::Real | ast::ScalarType::Int | ast::ScalarType::Schedule
            ) | TypeExpr::Map(_, ast::ScalarType::Real | ast::ScalarType::Int)
        );
        if !numeric {
            self.diags.push(
                Diagnostic::error("E0180", c.span(), "a range only applies to numbers")
                    .with_label("this parameter is not a number")
                    .with_help("remove the range, or make the parameter `real` or `int`"),
            );
            return None;
        }
        let num = |cx: &mut Checker, e: &ast::Expr| -> Option<f64> {
            match hyper::const_value(cx, e)? {
                HyperValue::Real(v) => Some(v),
                HyperValue::Int(v) => Some(v as f64),
                _ => {
                    cx.diags.push(
                        Diagnostic::error("E0180", e.span, "a range bound must be a number")
                            .with_label("not a number")
                            .with_help("write the bound as a literal, e.g. `in [0, 1)`"),
                    );
                    None
                }
            }
        };
        match c {
            ast::Constraint::Range {
                lo,
                lo_closed,
                hi,
                hi_closed,
                ..
            } => {
                let lo = num(self, lo)?;
                let hi = num(self, hi)?;
                Some(ValueRange {
                    lo: Some((lo, *lo_closed)),
                    hi: Some((hi, *hi_closed)),
                })
            }
            ast::Constraint::Choice { .. } => None,
            ast::Constraint::Bound { op, value, span } => {
                let v = num(self, value)?;
                use ast::CmpOp::*;
                match op {
                    Gt => Some(ValueRange {
                        lo: Some((v, false)),
                        hi: None,
                    }),
                    Ge => Some(ValueRange {
                        lo: Some((v, true)),
                        hi: None,
                    }),
                    Lt => Some(ValueRange {
                        lo: None,
                        hi: Some((v, false)),
                    }),
                    Le => Some(ValueRange {
                        lo: None,
                        hi: Some((v, true)),
                    }),
                    Eq | Ne => {
                        self.diags.push(
                            Diagnostic::error(
                                "E0180",
                                *span,
                                "a range is written with <, <=, > or >=",
                            )
                            .with_label("not a range")
                            .with_help("use `in [lo, hi]` or a one-sided bound such as `> 0`"),
                        );
                        None
                    }
                }
            }
        }
    }

    /// Pass 2: the body of every definition.
    fn bodies(&mut self, modules: &[Module], scopes: &[Scope], fns: &body::Functions<'_>) {
        for id in 0..self.def_asts.len() {
            let (mi, di) = self.def_asts[id];
            let d = &modules[mi].ast.defs[di];
            let warn_unused = !modules[mi].is_library;
            let body = match (&d.body, d.kind) {
                // Checked where a body calls it, with its arguments.
                (ast::DefBody::Block(_) | ast::DefBody::Expr(_), DefKind::Function) => {
                    DefBody::Function
                }
                (ast::DefBody::Block(stmts), DefKind::Schedule) => DefBody::Schedule(
                    body::check_schedule(self, &scopes[mi], fns, id, stmts, None, warn_unused),
                ),
                (ast::DefBody::Expr(e), DefKind::Schedule) => DefBody::Schedule(
                    body::check_schedule(self, &scopes[mi], fns, id, &[], Some(e), warn_unused),
                ),
                (ast::DefBody::Block(stmts), kind) => DefBody::Stage(body::check_stage(
                    self,
                    &scopes[mi],
                    fns,
                    id,
                    kind,
                    stmts,
                    warn_unused,
                )),
                (ast::DefBody::Expr(e), _) => {
                    DefBody::Chain(hyper::check_chain_def(self, &scopes[mi], id, e))
                }
                (ast::DefBody::Builtin(name, span), kind) => {
                    if kind != DefKind::Optimizer || !ir::BUILTINS.iter().any(|(n, _)| n == name) {
                        let known: Vec<&str> = ir::BUILTINS.iter().map(|(n, _)| *n).collect();
                        self.diags.push(
                            Diagnostic::error(
                                "E0146",
                                *span,
                                format!("there is no builtin optimizer \"{name}\""),
                            )
                            .with_label("unknown builtin")
                            .with_help(format!(
                                "builtins are optimizers the runtime supplies: {}",
                                join_ticked(&known)
                            )),
                        );
                    }
                    DefBody::Builtin(name.clone())
                }
            };
            self.program.defs[id].body = body;
        }
    }

    /// The definition a name refers to in a scope, or a diagnostic saying what is wrong.
    pub(crate) fn lookup_def(&mut self, scope: &Scope, name: &ast::Ident) -> Option<DefId> {
        if let Some(id) = scope.names.get(&name.name) {
            return Some(*id);
        }
        self.diags.push(self.unknown_name(scope, name, &[]));
        None
    }

    /// "unknown name" with the best hint: a definition in a module that is not imported,
    /// a close spelling among the names in scope, or among `extra` (locals, builtins).
    pub(crate) fn unknown_name(
        &self,
        scope: &Scope,
        name: &ast::Ident,
        extra: &[&str],
    ) -> Diagnostic {
        let mut d = Diagnostic::error("E0102", name.span, format!("unknown name `{}`", name.name))
            .with_label("not defined or imported here");
        let in_modules: Vec<&str> = self
            .modules
            .iter()
            .filter(|(_, t)| t.contains_key(&name.name))
            .map(|(m, _)| m.as_str())
            .collect();
        if let Some(m) = in_modules.first() {
            return d.with_help(format!(
                "`{}` is defined in `{m}`: add `import {m}.{{{}}}` at the top of the file",
                name.name, name.name
            ));
        }
        let candidates: Vec<&str> = scope
            .names
            .keys()
            .map(String::as_str)
            .chain(extra.iter().copied())
            .collect();
        if let Some(s) = did_you_mean(&name.name, candidates) {
            d = d.with_help(format!("did you mean `{s}`?"));
            return d;
        }
        // A close spelling in a module that is not imported.
        for (m, table) in &self.modules {
            if let Some(s) = did_you_mean(&name.name, table.keys().map(String::as_str)) {
                return d.with_help(format!(
                    "did you mean `{s}` from `{m}`? add `import {m}.{{{s}}}`"
                ));
            }
        }
        d.with_help("check the spelling, or define it before use")
    }
}

pub(crate) fn join_ticked(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn type_name(ty: &TypeExpr) -> String {
    match ty {
        TypeExpr::Scalar(s) => s.name().to_string(),
        TypeExpr::List(s) => format!("[{}]", s.name()),
        TypeExpr::Map(k, v) => format!("{{{}: {}}}", k.name(), v.name()),
    }
}

pub(crate) fn span_of_def(cx: &Checker, id: DefId) -> Span {
    cx.program.defs.get(id).map(|d| d.span).unwrap_or_default()
}

/// A parameter type as written (`real`, `[real]`, `{int: real}`).
pub fn type_name_pub(ty: &TypeExpr) -> String {
    type_name(ty)
}
