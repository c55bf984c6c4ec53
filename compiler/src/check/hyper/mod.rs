//! Checking hyperparameter expressions: literals, defaults, call arguments (keywords,
//! types, ranges), chain definitions and schedule calls. These expressions are evaluated
//! when a recipe is elaborated, never per element.

use super::{join_ticked, type_name, Checker, Scope};
use crate::ast::{self, BinOp, CmpOp, DefKind, ExprKind, MapKey, ScalarType, TypeExpr, UnOp};
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::ir::{fmt_num, ChainCall, DefId, HyperExpr, HyperParam, HyperValue, ValueRange};
use crate::source::Span;
use crate::value::eval_hyper;
use std::collections::HashMap;

mod call;
mod steps;
pub(crate) use call::{
    check_call_args, check_chain_def, check_choice, check_range, check_stage_call,
};
pub(crate) use steps::{check_scheduled_ranges, Origin};

/// The type of a hyperparameter expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HType {
    Real,
    Int,
    Bool,
    Schedule,
    Str,
    /// `none`: the absent value of an optional number.
    None,
    List(Box<HType>),
    EmptyList,
    Map(Box<HType>, Box<HType>),
    /// A per-group value (`{decay: 0.1, no_decay: 0}`) of the inner type.
    Groups(Box<HType>),
    /// A chain of stages (`normalize() |> sgd(learning_rate: 0.05)`).
    Chain,
}

impl HType {
    pub fn name(&self) -> String {
        match self {
            HType::Real => "real".into(),
            HType::Int => "int".into(),
            HType::Bool => "bool".into(),
            HType::Schedule => "schedule".into(),
            HType::Str => "str".into(),
            HType::None => "none".into(),
            HType::List(t) => format!("[{}]", t.name()),
            HType::EmptyList => "[]".into(),
            HType::Map(k, v) => format!("{{{}: {}}}", k.name(), v.name()),
            HType::Groups(t) => format!("per-group {}", t.name()),
            HType::Chain => "chain".into(),
        }
    }

    fn of_scalar(s: ScalarType) -> HType {
        match s {
            ScalarType::Real => HType::Real,
            ScalarType::Int => HType::Int,
            ScalarType::Bool => HType::Bool,
            ScalarType::Schedule => HType::Schedule,
            ScalarType::Str => HType::Str,
            ScalarType::Chain => HType::Chain,
        }
    }

    pub fn of_type(t: &TypeExpr) -> HType {
        match t {
            TypeExpr::Scalar(s) => HType::of_scalar(*s),
            TypeExpr::List(s) => HType::List(Box::new(HType::of_scalar(*s))),
            TypeExpr::Map(k, v) => HType::Map(
                Box::new(HType::of_scalar(*k)),
                Box::new(HType::of_scalar(*v)),
            ),
        }
    }
}

/// Whether a value of type `from` may be passed where `to` is expected.
pub(crate) fn assignable(from: &HType, to: &HType) -> bool {
    match (from, to) {
        (HType::Groups(inner), to) => assignable(inner, to),
        (a, b) if a == b => true,
        (HType::Int, HType::Real) => true,
        (HType::None, HType::Real | HType::Int | HType::Schedule | HType::Str) => true,
        (HType::Int | HType::Real, HType::Schedule) => true,
        (HType::EmptyList, HType::List(_)) => true,
        (HType::List(a), HType::List(b)) => assignable(a, b),
        (HType::Map(ka, va), HType::Map(kb, vb)) => assignable(ka, kb) && assignable(va, vb),
        _ => false,
    }
}

/// What names mean in a hyperparameter expression.
pub(crate) enum HyperNames<'a> {
    /// Inside a chain definition or a schedule: the definition's own parameters.
    Params(&'a [HyperParam]),
    /// Inside a recipe: earlier `schedule` bindings and the recipe's groups.
    Recipe {
        bindings: &'a HashMap<String, (HyperValue, HType)>,
        groups: &'a [String],
    },
}

/// A literal value: numbers, booleans, negation, lists and number-keyed maps.
pub(crate) fn const_value(cx: &mut Checker, e: &ast::Expr) -> Option<HyperValue> {
    let scope = Scope::default();
    let (h, _) = check_hyper(cx, &scope, &HyperNames::Params(&[]), e)?;
    match eval_hyper(&h, &[]) {
        Ok(v) => Some(v),
        Err(msg) => {
            cx.diags.push(
                Diagnostic::error(
                    "E0180",
                    e.span,
                    format!("cannot evaluate this value: {msg}"),
                )
                .with_label("here")
                .with_help("write a literal such as `0.9`, `1e-8`, `true` or `[0.9, 0.999]`"),
            );
            None
        }
    }
}

/// Checks `v` against a parameter type, converting ints to reals where a real is expected.
pub(crate) fn coerce_value(
    cx: &mut Checker,
    v: HyperValue,
    ty: &TypeExpr,
    span: Span,
    pname: &str,
) -> Option<HyperValue> {
    let vt = value_type(&v);
    if !assignable(&vt, &HType::of_type(ty)) {
        cx.diags
            .push(type_mismatch(span, pname, &HType::of_type(ty), &vt));
        return None;
    }
    Some(v)
}

pub(crate) fn value_type(v: &HyperValue) -> HType {
    match v {
        HyperValue::Real(v) if v.is_nan() => HType::None,
        HyperValue::Real(_) => HType::Real,
        HyperValue::Int(_) => HType::Int,
        HyperValue::Bool(_) => HType::Bool,
        HyperValue::Schedule(_) => HType::Schedule,
        HyperValue::Str(_) => HType::Str,
        HyperValue::List(items) => match items.first() {
            None => HType::EmptyList,
            Some(first) => {
                let t = items
                    .iter()
                    .skip(1)
                    .fold(value_type(first), |acc, x| join(&acc, &value_type(x)));
                HType::List(Box::new(t))
            }
        },
        HyperValue::Map(entries) => match entries.first() {
            None => HType::Map(Box::new(HType::Int), Box::new(HType::Real)),
            Some((k, v)) => HType::Map(Box::new(value_type(k)), Box::new(value_type(v))),
        },
        HyperValue::PerGroup(items) => {
            let t = items.first().map(value_type).unwrap_or(HType::Real);
            HType::Groups(Box::new(t))
        }
        HyperValue::Chain(_) => HType::Chain,
    }
}

fn join(a: &HType, b: &HType) -> HType {
    match (a, b) {
        (HType::Int, HType::Real) | (HType::Real, HType::Int) => HType::Real,
        (HType::Schedule, HType::Real | HType::Int)
        | (HType::Real | HType::Int, HType::Schedule) => HType::Schedule,
        _ => a.clone(),
    }
}

pub(crate) fn type_mismatch(
    span: Span,
    pname: &str,
    expected: &HType,
    found: &HType,
) -> Diagnostic {
    let help = match (expected, found) {
        (HType::Int, HType::Real) => {
            format!("`{pname}` counts steps: write a whole number such as `1000`")
        }
        (HType::Bool, _) => format!("`{pname}` is a switch: write `true` or `false`"),
        (HType::List(_), _) => format!("`{pname}` takes a list such as `[0.9, 0.999]`"),
        _ => format!("pass a {} for `{pname}`", expected.name()),
    };
    Diagnostic::error(
        "E0120",
        span,
        format!(
            "`{pname}` expects {}, found {}",
            expected.name(),
            found.name()
        ),
    )
    .with_label(format!("this is {}", found.name()))
    .with_help(help)
}

/// Checks one hyperparameter expression; returns it with its type.
pub(crate) fn check_hyper(
    cx: &mut Checker,
    scope: &Scope,
    names: &HyperNames,
    e: &ast::Expr,
) -> Option<(HyperExpr, HType)> {
    match &e.kind {
        ExprKind::Number { value, is_int } => {
            if *is_int && value.abs() < 9.0e15 {
                Some((HyperExpr::Value(HyperValue::Int(*value as i64)), HType::Int))
            } else {
                Some((HyperExpr::Value(HyperValue::Real(*value)), HType::Real))
            }
        }
        ExprKind::Bool(b) => Some((HyperExpr::Value(HyperValue::Bool(*b)), HType::Bool)),
        ExprKind::Str(s) => Some((HyperExpr::Value(HyperValue::Str(s.clone())), HType::Str)),
        ExprKind::Name(n) => resolve_name(cx, scope, names, n, e.span),
        ExprKind::Unary(op, a) => {
            let (h, t) = check_hyper(cx, scope, names, a)?;
            let ok = match op {
                UnOp::Neg => matches!(strip_groups(&t), HType::Real | HType::Int | HType::Schedule),
                UnOp::Not => matches!(strip_groups(&t), HType::Bool),
            };
            if !ok {
                cx.diags.push(
                    Diagnostic::error("E0120", e.span, format!("cannot negate {}", t.name()))
                        .with_label("wrong type")
                        .with_help("`-` applies to numbers and schedules, `not` to booleans"),
                );
                return None;
            }
            Some((HyperExpr::Unary(*op, Box::new(h)), t))
        }
        ExprKind::Binary(op, a, b) => {
            let (ha, ta) = check_hyper(cx, scope, names, a)?;
            let (hb, tb) = check_hyper(cx, scope, names, b)?;
            let t = binary_type(*op, &ta, &tb);
            let Some(t) = t else {
                cx.diags.push(
                    Diagnostic::error(
                        "E0120",
                        e.span,
                        format!(
                            "`{}` does not combine {} and {}",
                            op.symbol(),
                            ta.name(),
                            tb.name()
                        ),
                    )
                    .with_label("these operands do not fit")
                    .with_help(
                        "arithmetic applies to numbers and schedules; `and`/`or` to booleans",
                    ),
                );
                return None;
            };
            Some((HyperExpr::Binary(*op, Box::new(ha), Box::new(hb)), t))
        }
        ExprKind::Call { callee, args } if callee.name == "is_none" && args.len() == 1 => {
            // `requires is_none(min_lr) or ...`: `none` is NaN here as in bodies (where
            // `is_none` is the NaN test), so x != x is the same test on a constant.
            let (h, t) = check_hyper(cx, scope, names, &args[0].value)?;
            if !matches!(strip_groups(&t), HType::Real | HType::Int | HType::None) {
                cx.diags.push(
                    Diagnostic::error(
                        "E0120",
                        args[0].value.span,
                        format!("`is_none` tests a number, found {}", t.name()),
                    )
                    .with_label("not a number"),
                );
                return None;
            }
            let ne = BinOp::Cmp(CmpOp::Ne);
            Some((
                HyperExpr::Binary(ne, Box::new(h.clone()), Box::new(h)),
                HType::Bool,
            ))
        }
        ExprKind::Call { callee, args } => {
            let id = cx.lookup_def(scope, callee)?;
            let def = &cx.program.defs[id];
            if def.kind != DefKind::Schedule {
                let kind = def.kind.keyword();
                cx.diags.push(
                    Diagnostic::error(
                        "E0144",
                        callee.span,
                        format!(
                            "`{}` is {} {kind}, not a schedule",
                            callee.name,
                            article(kind)
                        ),
                    )
                    .with_label("not a value")
                    .with_help(
                        "transforms and optimizers go in a recipe's `update = ... |> ...` chain",
                    ),
                );
                return None;
            }
            let args = check_call_args(cx, scope, names, id, args, callee)?;
            Some((HyperExpr::Call(id, args), HType::Schedule))
        }
        ExprKind::List(items) => {
            let mut hs = Vec::new();
            let mut t: Option<HType> = None;
            for it in items {
                let (h, ti) = check_hyper(cx, scope, names, it)?;
                t = Some(match t {
                    None => ti,
                    Some(prev) => join(&prev, &ti),
                });
                hs.push(h);
            }
            let t = t
                .map(|t| HType::List(Box::new(t)))
                .unwrap_or(HType::EmptyList);
            Some((HyperExpr::List(hs), t))
        }
        ExprKind::Map(entries) => check_map(cx, scope, names, entries, e.span),
        ExprKind::If(c, a, b) => {
            let (hc, tc) = check_hyper(cx, scope, names, c)?;
            let (ha, ta) = check_hyper(cx, scope, names, a)?;
            let (hb, tb) = check_hyper(cx, scope, names, b)?;
            if tc != HType::Bool {
                cx.diags.push(
                    Diagnostic::error(
                        "E0120",
                        c.span,
                        format!("the condition of `if` must be bool, found {}", tc.name()),
                    )
                    .with_label("not a condition")
                    .with_help("compare it: e.g. `if x > 0 then a else b`"),
                );
                return None;
            }
            if !(assignable(&ta, &tb) || assignable(&tb, &ta)) {
                cx.diags.push(
                    Diagnostic::error(
                        "E0120",
                        e.span,
                        format!(
                            "the branches of `if` differ: {} and {}",
                            ta.name(),
                            tb.name()
                        ),
                    )
                    .with_label("branches must have the same type")
                    .with_help("make both branches the same kind of value"),
                );
                return None;
            }
            Some((
                HyperExpr::If(Box::new(hc), Box::new(ha), Box::new(hb)),
                join(&ta, &tb),
            ))
        }
        ExprKind::Index(..) => {
            cx.diags.push(
                Diagnostic::error("E0120", e.span, "this expression is not allowed in a hyperparameter")
                    .with_label("not a hyperparameter value")
                    .with_help("a hyperparameter is a number, a boolean, a list, a schedule call or arithmetic on those"),
            );
            None
        }
        ExprKind::Pipe(_) => {
            cx.diags.push(
                Diagnostic::error("E0144", e.span, "a chain (`|>`) is not a value")
                    .with_label("chain used as a value")
                    .with_help(
                        "chains belong in `update = ...` or in a definition's `= a |> b` body",
                    ),
            );
            None
        }
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

pub(super) fn strip_groups(t: &HType) -> &HType {
    match t {
        HType::Groups(inner) => inner,
        other => other,
    }
}

fn binary_type(op: ast::BinOp, a: &HType, b: &HType) -> Option<HType> {
    use ast::BinOp::*;
    let grouped = matches!(a, HType::Groups(_)) || matches!(b, HType::Groups(_));
    let (a, b) = (strip_groups(a), strip_groups(b));
    let t = match op {
        And | Or => (a == &HType::Bool && b == &HType::Bool).then_some(HType::Bool)?,
        Cmp(_) => {
            let numeric = |t: &HType| matches!(t, HType::Real | HType::Int);
            ((numeric(a) && numeric(b)) || (a == &HType::Bool && b == &HType::Bool))
                .then_some(HType::Bool)?
        }
        _ => match (a, b) {
            (HType::Schedule, HType::Real | HType::Int | HType::Schedule)
            | (HType::Real | HType::Int, HType::Schedule) => HType::Schedule,
            (HType::Int, HType::Int) if !matches!(op, Div | Pow) => HType::Int,
            (HType::Real | HType::Int, HType::Real | HType::Int) => HType::Real,
            _ => return None,
        },
    };
    Some(if grouped {
        HType::Groups(Box::new(t))
    } else {
        t
    })
}

fn resolve_name(
    cx: &mut Checker,
    scope: &Scope,
    names: &HyperNames,
    n: &str,
    span: Span,
) -> Option<(HyperExpr, HType)> {
    if n == "inf" {
        return Some((
            HyperExpr::Value(HyperValue::Real(f64::INFINITY)),
            HType::Real,
        ));
    }
    if n == "none" {
        // An absent optional value; bodies test it with `is_none`.
        return Some((HyperExpr::Value(HyperValue::Real(f64::NAN)), HType::None));
    }
    match names {
        HyperNames::Params(params) => {
            if let Some(i) = params.iter().position(|p| p.name == n) {
                return Some((HyperExpr::Param(i), HType::of_type(&params[i].ty)));
            }
        }
        HyperNames::Recipe { bindings, .. } => {
            if let Some((v, t)) = bindings.get(n) {
                return Some((HyperExpr::Value(v.clone()), t.clone()));
            }
        }
    }
    if matches!(n, "grad" | "param") {
        cx.diags.push(
            Diagnostic::error(
                "E0130",
                span,
                format!("per-element value `{n}` used where a step-uniform value is needed"),
            )
            .with_label(format!("`{n}` has one value per element"))
            .with_help(format!(
                "hyperparameters such as a learning rate are one number per step (a literal or a schedule); \
                 `{n}` can only be used inside a transform's body"
            )),
        );
        return None;
    }
    let ident = ast::Ident {
        name: n.to_string(),
        span,
    };
    let extra: Vec<&str> = match names {
        HyperNames::Params(params) => params.iter().map(|p| p.name.as_str()).collect(),
        HyperNames::Recipe { bindings, .. } => bindings.keys().map(String::as_str).collect(),
    };
    if scope.names.contains_key(n) {
        cx.diags.push(
            Diagnostic::error("E0120", span, format!("`{n}` is a definition, not a value"))
                .with_label("needs arguments")
                .with_help(format!("call it: `{n}(...)` with its keyword arguments")),
        );
        return None;
    }
    cx.diags.push(cx.unknown_name(scope, &ident, &extra));
    None
}

fn check_map(
    cx: &mut Checker,
    scope: &Scope,
    names: &HyperNames,
    entries: &[(MapKey, ast::Expr)],
    span: Span,
) -> Option<(HyperExpr, HType)> {
    let by_name = entries.iter().any(|(k, _)| matches!(k, MapKey::Name(_)));
    if !by_name {
        let mut out = Vec::new();
        let mut vt = HType::Real;
        for (k, v) in entries {
            let MapKey::Number(kv, _) = k else { continue };
            let key = if *kv == kv.trunc() {
                HyperValue::Int(*kv as i64)
            } else {
                HyperValue::Real(*kv)
            };
            let (h, t) = check_hyper(cx, scope, names, v)?;
            vt = t;
            out.push((HyperExpr::Value(key), h));
        }
        return Some((
            HyperExpr::Map(out),
            HType::Map(Box::new(HType::Int), Box::new(vt)),
        ));
    }
    let HyperNames::Recipe { groups, .. } = names else {
        cx.diags.push(
            Diagnostic::error("E0161", span, "per-group values belong in a recipe")
                .with_label("groups are not known here")
                .with_help("pass a single value here, and write `{group: value, ...}` in the recipe's call"),
        );
        return None;
    };
    let mut slots: Vec<Option<HyperExpr>> = vec![None; groups.len()];
    let mut inner_t: Option<HType> = None;
    let mut ok = true;
    for (k, v) in entries {
        let MapKey::Name(key) = k else {
            cx.diags.push(
                Diagnostic::error("E0161", v.span, "a per-group value is keyed by group names")
                    .with_label("mixes numbers and group names")
                    .with_help(
                        "write `{decay: 0.1, no_decay: 0.0}` with the names of the recipe's groups",
                    ),
            );
            return None;
        };
        let Some(gi) = groups.iter().position(|g| *g == key.name) else {
            let help = match did_you_mean(&key.name, groups.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if groups.is_empty() => {
                    "declare parameter groups in a `groups { ... }` block first".to_string()
                }
                None => format!(
                    "the groups are {}",
                    join_ticked(&groups.iter().map(String::as_str).collect::<Vec<_>>())
                ),
            };
            cx.diags.push(
                Diagnostic::error(
                    "E0161",
                    key.span,
                    format!("there is no group `{}`", key.name),
                )
                .with_label("unknown group")
                .with_help(help),
            );
            ok = false;
            continue;
        };
        if let Some((h, t)) = check_hyper(cx, scope, names, v) {
            if matches!(t, HType::Groups(_)) {
                ok = false;
                continue;
            }
            inner_t = Some(inner_t.map(|p| join(&p, &t)).unwrap_or(t));
            slots[gi] = Some(h);
        } else {
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let missing: Vec<&str> = groups
        .iter()
        .zip(&slots)
        .filter(|(_, s)| s.is_none())
        .map(|(g, _)| g.as_str())
        .collect();
    if !missing.is_empty() {
        cx.diags.push(
            Diagnostic::error(
                "E0161",
                span,
                format!("no value for group {}", join_ticked(&missing)),
            )
            .with_label("every group needs a value")
            .with_help(format!("add `{}: ...` to this map", missing[0])),
        );
        return None;
    }
    let items = slots.into_iter().flatten().collect();
    Some((
        HyperExpr::PerGroup(items),
        HType::Groups(Box::new(inner_t.unwrap_or(HType::Real))),
    ))
}
