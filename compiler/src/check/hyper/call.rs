//! Checking calls in hyperparameter position: keyword arguments matched to a definition's
//! parameters, defaults filled, types, ranges and choices checked; chain definitions
//! (`= a(...) |> b(...)`) and their stage calls.

use super::*;

/// Reports values outside a parameter's declared range. Schedules other than constants
/// cannot be bounded here and pass.
pub(crate) fn check_range(
    cx: &mut Checker,
    v: &HyperValue,
    r: &ValueRange,
    span: Span,
    pname: &str,
    def: &str,
) -> bool {
    match v {
        HyperValue::List(items) | HyperValue::PerGroup(items) => items
            .iter()
            .all(|x| check_range(cx, x, r, span, pname, def)),
        // A map's range bounds its values (`{int: real} >= 0`: non-negative scales).
        HyperValue::Map(entries) => entries
            .iter()
            .all(|(_, x)| check_range(cx, x, r, span, pname, def)),
        _ => {
            let Some(x) = v.as_f64() else { return true };
            if x.is_nan() || r.contains(x) {
                return true;
            }
            cx.diags.push(
                Diagnostic::error(
                    "E0121",
                    span,
                    format!(
                        "`{pname}` of `{def}` must be in {}, but is {}",
                        r.describe(),
                        fmt_num(x)
                    ),
                )
                .with_label(format!("outside {}", r.describe()))
                .with_help(range_help(pname, r)),
            );
            false
        }
    }
}

/// Reports a string outside a `str` parameter's choices.
pub(crate) fn check_choice(
    cx: &mut Checker,
    v: &HyperValue,
    choices: &[String],
    span: Span,
    pname: &str,
    def: &str,
) -> bool {
    match v {
        HyperValue::PerGroup(items) => items
            .iter()
            .all(|x| check_choice(cx, x, choices, span, pname, def)),
        HyperValue::Str(s) if !choices.contains(s) => {
            let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
            let help = match did_you_mean(s, choices.iter().map(String::as_str)) {
                Some(c) => format!("did you mean \"{c}\"?"),
                None => format!("write one of {}", quoted.join(", ")),
            };
            cx.diags.push(
                Diagnostic::error(
                    "E0122",
                    span,
                    format!(
                        "`{pname}` of `{def}` must be one of {}, not \"{s}\"",
                        quoted.join(", ")
                    ),
                )
                .with_label("not an allowed value")
                .with_help(help),
            );
            false
        }
        _ => true,
    }
}

pub(super) fn range_help(pname: &str, r: &ValueRange) -> String {
    match (r.lo, r.hi) {
        (Some((lo, true)), Some((hi, false))) => format!(
            "`{pname}` must be at least {} and below {}; e.g. betas are decay rates such as 0.9 or 0.999",
            fmt_num(lo),
            fmt_num(hi)
        ),
        _ => format!("choose a value {} for `{pname}`", r.describe()),
    }
}

/// Matches keyword arguments to `def`'s parameters; fills defaults; checks types, and
/// ranges of arguments that are constants. Returns one expression per parameter.
pub(crate) fn check_call_args(
    cx: &mut Checker,
    scope: &Scope,
    names: &HyperNames,
    def: DefId,
    args: &[ast::Arg],
    callee: &ast::Ident,
) -> Option<Vec<HyperExpr>> {
    let params = cx.program.defs[def].params.clone();
    let def_name = cx.program.defs[def].name.clone();
    let mut slots: Vec<Option<HyperExpr>> = vec![None; params.len()];
    let mut given_at: Vec<Option<Span>> = vec![None; params.len()];
    let mut ok = true;
    for a in args {
        let Some(key) = &a.name else {
            let first = params.first().map(|p| p.name.as_str()).unwrap_or("name");
            cx.diags.push(
                Diagnostic::error(
                    "E0113",
                    a.value.span,
                    format!("arguments to `{def_name}` must be named"),
                )
                .with_label("positional argument")
                .with_help(format!(
                    "write `{first}: ...`; named arguments keep recipes readable and order-proof"
                )),
            );
            ok = false;
            continue;
        };
        let Some(pi) = params.iter().position(|p| p.name == key.name) else {
            let help = match did_you_mean(&key.name, params.iter().map(|p| p.name.as_str())) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "`{def_name}` takes {}",
                    join_ticked(&params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>())
                ),
            };
            cx.diags.push(
                Diagnostic::error(
                    "E0110",
                    key.span,
                    format!("`{def_name}` has no parameter `{}`", key.name),
                )
                .with_label("unknown keyword")
                .with_help(help)
                .with_secondary(crate::check::span_of_def(cx, def), "defined here"),
            );
            ok = false;
            continue;
        };
        if let Some(prev) = given_at[pi] {
            cx.diags.push(
                Diagnostic::error("E0112", key.span, format!("`{}` is given twice", key.name))
                    .with_label("given again here")
                    .with_secondary(prev, "first given here")
                    .with_help("keep one of them"),
            );
            ok = false;
            continue;
        }
        given_at[pi] = Some(key.span);
        if params[pi].ty == TypeExpr::Scalar(ScalarType::Chain) {
            // A chain argument is stages, checked as an update chain is.
            let stages: Vec<&ast::Expr> = match &a.value.kind {
                ExprKind::Pipe(items) => items.iter().collect(),
                _ => vec![&a.value],
            };
            let mut calls = Vec::new();
            for s in stages {
                match check_stage_call(cx, scope, names, s) {
                    Some(c) => calls.push(c),
                    None => ok = false,
                }
            }
            slots[pi] = Some(HyperExpr::Chain(calls));
            continue;
        }
        let Some((h, t)) = check_hyper(cx, scope, names, &a.value) else {
            ok = false;
            continue;
        };
        let want = HType::of_type(&params[pi].ty);
        let stage = cx.program.defs[def].kind != DefKind::Schedule;
        let fits = assignable(&t, &want) || (stage && schedule_fits(&t, &want));
        if !fits {
            let mut d = type_mismatch(a.value.span, &params[pi].name, &want, &t);
            if !stage && schedule_fits(&t, &want) {
                d = d.with_help(format!(
                    "a schedule's parameters are fixed numbers; a schedule may follow another \
                     by arithmetic (`0.5 * {def_name}(...)`) or `join_schedules`"
                ));
            }
            cx.diags.push(d);
            ok = false;
            continue;
        }
        // Constants are range-checked here, at the call, so the error points at the value.
        if let Ok(v) = eval_hyper(&h, &[]) {
            if let Some(r) = &params[pi].range {
                ok &= check_range(cx, &v, r, a.value.span, &params[pi].name, &def_name);
            }
            if let Some(cs) = &params[pi].choices {
                ok &= check_choice(cx, &v, cs, a.value.span, &params[pi].name, &def_name);
            }
        }
        slots[pi] = Some(h);
    }
    let mut out = Vec::new();
    for (pi, p) in params.iter().enumerate() {
        match slots[pi].take() {
            Some(h) => out.push(h),
            None => match &p.default {
                Some(v) => out.push(HyperExpr::Value(v.clone())),
                None => {
                    // A positional argument already failed the call; do not pile on.
                    if given_at[pi].is_none() && args.iter().all(|a| a.name.is_some()) {
                        cx.diags.push(
                            Diagnostic::error(
                                "E0111",
                                callee.span,
                                format!("`{def_name}` needs `{}`, which has no default", p.name),
                            )
                            .with_label(format!("`{}` missing", p.name))
                            .with_secondary(p.span, "declared here")
                            .with_help(format!(
                                "add `{}: ...` ({})",
                                p.name,
                                type_name(&p.ty)
                            )),
                        );
                    }
                    ok = false;
                }
            },
        }
    }
    if ok {
        ok = check_requires(cx, def, &out, callee);
    }
    ok.then_some(out)
}

/// Whether a schedule may stand where `to` is declared: a transform's or optimizer's
/// `real` parameter (or list of them) is read once per step, so any step-uniform value
/// fits, and a schedule is evaluated at the stage's count (as optax's `inject_hyperparams`
/// and a torch `param_group` written every step).
fn schedule_fits(from: &HType, to: &HType) -> bool {
    match (strip_groups(from), to) {
        (HType::Schedule, HType::Real) => true,
        (HType::List(a), HType::List(b)) => schedule_fits(a, b) || assignable(a, b),
        _ => false,
    }
}

/// Refuses a call whose constant arguments break one of the definition's `requires`; a
/// call with an argument known only later (a recipe schedule, a per-group value) is not
/// judged here.
fn check_requires(cx: &mut Checker, def: DefId, args: &[HyperExpr], callee: &ast::Ident) -> bool {
    let requires = cx.program.defs[def].requires.clone();
    if requires.is_empty() {
        return true;
    }
    let Ok(values) = args
        .iter()
        .map(|a| eval_hyper(a, &[]))
        .collect::<Result<Vec<_>, _>>()
    else {
        return true;
    };
    let mut ok = true;
    for r in &requires {
        if eval_hyper(&r.cond, &values) == Ok(HyperValue::Bool(false)) {
            let name = &cx.program.defs[def].name;
            cx.diags.push(
                Diagnostic::error("E0114", callee.span, format!("`{name}`: {}", r.message))
                    .with_label("these arguments are refused")
                    .with_secondary(r.span, "required here"),
            );
            ok = false;
        }
    }
    ok
}

/// A definition written as `= a(...) |> b(...)`: every stage a transform or optimizer.
pub(crate) fn check_chain_def(
    cx: &mut Checker,
    scope: &Scope,
    id: DefId,
    e: &ast::Expr,
) -> Vec<ChainCall> {
    let params = cx.program.defs[id].params.clone();
    let names = HyperNames::Params(&params);
    let stages: Vec<&ast::Expr> = match &e.kind {
        ExprKind::Pipe(items) => items.iter().collect(),
        _ => vec![e],
    };
    let mut out = Vec::new();
    for s in stages {
        if let Some(call) = check_stage_call(cx, scope, &names, s) {
            out.push(call);
        }
    }
    out
}

/// One stage of a chain: a call of a transform or optimizer.
pub(crate) fn check_stage_call(
    cx: &mut Checker,
    scope: &Scope,
    names: &HyperNames,
    s: &ast::Expr,
) -> Option<ChainCall> {
    let (callee, args) = match &s.kind {
        ExprKind::Call { callee, args } => (callee.clone(), args.as_slice()),
        ExprKind::Name(n) => (
            ast::Ident {
                name: n.clone(),
                span: s.span,
            },
            &[][..],
        ),
        _ => {
            cx.diags.push(
                Diagnostic::error(
                    "E0144",
                    s.span,
                    "each stage of a chain is a call of a transform or optimizer",
                )
                .with_label("not a call")
                .with_help(
                    "write e.g. `clip_by_global_norm(max_norm: 1.0) |> adam(learning_rate: 1e-3)`",
                ),
            );
            return None;
        }
    };
    let def = cx.lookup_def(scope, &callee)?;
    if cx.program.defs[def].kind == DefKind::Function {
        cx.diags.push(
            Diagnostic::error(
                "E0144",
                callee.span,
                format!(
                    "`{}` is a function, not a stage of an update chain",
                    callee.name
                ),
            )
            .with_label("function used as a transform")
            .with_help(
                "call it inside a transform's or optimizer's body, on values: `let Y = f(X, ...)`",
            ),
        );
        return None;
    }
    if cx.program.defs[def].kind == DefKind::Schedule {
        cx.diags.push(
            Diagnostic::error(
                "E0144",
                callee.span,
                format!(
                    "`{}` is a schedule, not a stage of an update chain",
                    callee.name
                ),
            )
            .with_label("schedule used as a transform")
            .with_help(format!(
                "bind it with `schedule lr = {}(...)` and pass `learning_rate: lr` to an optimizer",
                callee.name
            )),
        );
        return None;
    }
    let args = check_call_args(cx, scope, names, def, args, &callee)?;
    Some(ChainCall {
        def,
        args,
        span: s.span,
    })
}
