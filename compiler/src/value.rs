//! Evaluation of hyperparameter expressions (`HyperExpr`) to values: used when a recipe is
//! elaborated and when a schedule calls another schedule. Arithmetic on a schedule builds a
//! new schedule; arithmetic on a per-group value applies group by group.

use crate::ast::{BinOp, CmpOp, UnOp};
use crate::ir::{HyperExpr, HyperValue, Sched};
use crate::math::{arith, compare};

/// Evaluates `e` with `params` bound to the enclosing definition's parameters.
pub fn eval_hyper(e: &HyperExpr, params: &[HyperValue]) -> Result<HyperValue, String> {
    Ok(match e {
        HyperExpr::Value(v) => v.clone(),
        HyperExpr::Param(i) => params
            .get(*i)
            .cloned()
            .ok_or_else(|| format!("parameter #{i} has no value"))?,
        HyperExpr::Unary(op, a) => unary(*op, eval_hyper(a, params)?)?,
        HyperExpr::Binary(op, a, b) => binary(*op, eval_hyper(a, params)?, eval_hyper(b, params)?)?,
        HyperExpr::Chain(calls) => HyperValue::Chain(
            calls
                .iter()
                .map(|c| {
                    Ok(crate::ir::StageInst {
                        def: c.def,
                        args: c
                            .args
                            .iter()
                            .map(|a| eval_hyper(a, params))
                            .collect::<Result<Vec<_>, String>>()?,
                        span: c.span,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?,
        ),
        HyperExpr::Call(def, args) => {
            let args = args
                .iter()
                .map(|a| eval_hyper(a, params))
                .collect::<Result<Vec<_>, _>>()?;
            HyperValue::Schedule(Sched::Call(*def, args))
        }
        HyperExpr::If(c, a, b) => match eval_hyper(c, params)? {
            HyperValue::Bool(true) => eval_hyper(a, params)?,
            HyperValue::Bool(false) => eval_hyper(b, params)?,
            _ => return Err("the condition is not a boolean".into()),
        },
        HyperExpr::List(items) => HyperValue::List(
            items
                .iter()
                .map(|a| eval_hyper(a, params))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        HyperExpr::Map(entries) => HyperValue::Map(
            entries
                .iter()
                .map(|(k, v)| Ok((eval_hyper(k, params)?, eval_hyper(v, params)?)))
                .collect::<Result<Vec<_>, String>>()?,
        ),
        HyperExpr::PerGroup(items) => HyperValue::PerGroup(
            items
                .iter()
                .map(|a| eval_hyper(a, params))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    })
}

/// A value as a schedule: numbers become constant schedules.
pub fn as_sched(v: &HyperValue) -> Option<Sched> {
    match v {
        HyperValue::Schedule(s) => Some(s.clone()),
        HyperValue::Real(x) => Some(Sched::Const(*x)),
        HyperValue::Int(x) => Some(Sched::Const(*x as f64)),
        _ => None,
    }
}

fn unary(op: UnOp, a: HyperValue) -> Result<HyperValue, String> {
    Ok(match (op, a) {
        (UnOp::Neg, HyperValue::Real(x)) => HyperValue::Real(-x),
        (UnOp::Neg, HyperValue::Int(x)) => {
            HyperValue::Int(x.checked_neg().ok_or("integer overflow")?)
        }
        (UnOp::Not, HyperValue::Bool(b)) => HyperValue::Bool(!b),
        (op, HyperValue::Schedule(s)) => HyperValue::Schedule(Sched::Unary(op, Box::new(s))),
        (op, HyperValue::PerGroup(vs)) => HyperValue::PerGroup(
            vs.into_iter()
                .map(|v| unary(op, v))
                .collect::<Result<_, _>>()?,
        ),
        (op, v) => return Err(format!("cannot apply `{op:?}` to {v:?}")),
    })
}

/// Arithmetic and comparison on two values. Int op Int stays Int for + - *.
pub fn binary(op: BinOp, a: HyperValue, b: HyperValue) -> Result<HyperValue, String> {
    use HyperValue::*;
    Ok(match (a, b) {
        (PerGroup(xs), PerGroup(ys)) => {
            if xs.len() != ys.len() {
                return Err("per-group values with different group counts".into());
            }
            PerGroup(
                xs.into_iter()
                    .zip(ys)
                    .map(|(x, y)| binary(op, x, y))
                    .collect::<Result<_, _>>()?,
            )
        }
        (PerGroup(xs), y) => PerGroup(
            xs.into_iter()
                .map(|x| binary(op, x, y.clone()))
                .collect::<Result<_, _>>()?,
        ),
        (x, PerGroup(ys)) => PerGroup(
            ys.into_iter()
                .map(|y| binary(op, x.clone(), y))
                .collect::<Result<_, _>>()?,
        ),
        (a @ Schedule(_), b) | (a, b @ Schedule(_)) => {
            let (Some(x), Some(y)) = (as_sched(&a), as_sched(&b)) else {
                return Err("a schedule combines only with numbers and schedules".into());
            };
            Schedule(Sched::Binary(op, Box::new(x), Box::new(y)))
        }
        (Int(x), Int(y)) if matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul) => {
            let r = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                _ => x.checked_mul(y),
            };
            Int(r.ok_or("integer overflow")?)
        }
        (Bool(x), Bool(y)) => match op {
            BinOp::And => Bool(x && y),
            BinOp::Or => Bool(x || y),
            BinOp::Cmp(CmpOp::Eq) => Bool(x == y),
            BinOp::Cmp(CmpOp::Ne) => Bool(x != y),
            _ => return Err(format!("`{}` does not apply to booleans", op.symbol())),
        },
        (a, b) => {
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return Err(format!("`{}` does not apply to these values", op.symbol()));
            };
            match op {
                BinOp::Cmp(c) => Bool(compare(c, x, y)),
                _ => Real(arith(op, x, y)),
            }
        }
    })
}
