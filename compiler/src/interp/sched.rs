//! Schedules and hyperparameters at a step: a schedule is a pure function of the count
//! (and of the metrics observed before it, replayed through its `observe` block).

use super::*;
use crate::error::{Error, Result};

/// What schedules are evaluated against: the program, and the metrics observed so far
/// (`metrics[k]` after step k) for schedules that `observe` them.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub program: &'a Program,
    pub metrics: &'a [f64],
    /// Where replays of `observe` blocks over `metrics` are kept between evaluations
    /// (the memo of the state that observed them); `None` replays from the start.
    pub replays: Option<&'a Replays>,
}

/// Evaluates a schedule at `count` (updates already made) for parameter group `group`.
/// A schedule that observes metrics fails here; use `eval_sched_observed`.
pub fn eval_sched(program: &Program, s: &Sched, count: f64, group: usize) -> Result<f64> {
    eval_sched_observed(
        Env {
            program,
            metrics: &[],
            replays: None,
        },
        s,
        count,
        group,
    )
}

/// Evaluates a schedule at `count` with the metrics observed so far.
pub fn eval_sched_observed(env: Env, s: &Sched, count: f64, group: usize) -> Result<f64> {
    match s {
        Sched::Const(v) => Ok(*v),
        Sched::Unary(op, a) => {
            let x = eval_sched_observed(env, a, count, group)?;
            Ok(match op {
                UnOp::Neg => -x,
                UnOp::Not => f64::from(u8::from(x == 0.0)),
            })
        }
        Sched::Binary(op, a, b) => Ok(arith(
            *op,
            eval_sched_observed(env, a, count, group)?,
            eval_sched_observed(env, b, count, group)?,
        )),
        Sched::Call(def, args) => {
            let d = env
                .program
                .defs
                .get(*def)
                .ok_or_else(|| Error::internal("unknown schedule"))?;
            let DefBody::Schedule(body) = &d.body else {
                return Err(Error::internal(format!("`{}` is not a schedule", d.name)));
            };
            let mut cx = SchedCx {
                env,
                body,
                args,
                count: 0.0,
                group,
                locals: vec![0.0; body.locals.len()],
                states: Vec::with_capacity(body.states.len()),
                metric: f64::NAN,
            };
            // A schedule with state replays its `observe` block over the metrics of the
            // steps before `count`: it stays a pure function of (count, metrics).
            for st in &body.states {
                let v = cx.eval(st.init)?;
                cx.states.push(v);
            }
            if !body.observe.is_empty() {
                let steps = if count > 0.0 {
                    count.floor() as usize
                } else {
                    0
                };
                if steps > env.metrics.len() {
                    return Err(Error::user(format!(
                        "schedule `{}` follows a metric: it needs the metric of every step before step {steps}, \
                         but {} were observed",
                        d.name,
                        env.metrics.len()
                    )));
                }
                let from = match env
                    .replays
                    .and_then(|r| r.resume(*def, group, args, env.metrics, steps))
                {
                    Some((k, states)) if states.len() == cx.states.len() => {
                        cx.states = states;
                        k
                    }
                    _ => 0,
                };
                for (k, m) in env.metrics[..steps].iter().enumerate().skip(from) {
                    cx.count = k as f64;
                    cx.metric = *m;
                    cx.run(&body.observe)?;
                }
                if let (Some(r), true) = (env.replays, from < steps) {
                    r.keep(*def, group, args, env.metrics, steps, &cx.states);
                }
            }
            cx.count = count;
            cx.metric = f64::NAN;
            cx.run(&body.stmts)?;
            let r = body
                .result
                .ok_or_else(|| Error::user(format!("schedule `{}` has no value", d.name)))?;
            cx.eval(r)
        }
    }
}

/// The scalar value of a hyperparameter for one group at one count.
pub(super) fn hyper_scalar(env: Env, v: &HyperValue, count: f64, group: usize) -> Result<f64> {
    match v {
        HyperValue::PerGroup(vs) => {
            let g = vs
                .get(group)
                .ok_or_else(|| Error::internal("per-group value has no entry for this group"))?;
            hyper_scalar(env, g, count, group)
        }
        HyperValue::Schedule(s) => eval_sched_observed(env, s, count, group),
        other => other
            .as_f64()
            .ok_or_else(|| Error::internal("expected a number")),
    }
}

pub(crate) fn str_value(v: &HyperValue, group: usize) -> Result<&str> {
    match v {
        HyperValue::Str(s) => Ok(s),
        HyperValue::PerGroup(vs) => str_value(
            vs.get(group)
                .ok_or_else(|| Error::internal("no value for this group"))?,
            group,
        ),
        _ => Err(Error::internal("expected a string")),
    }
}

pub(super) fn hyper_list(v: &HyperValue, group: usize) -> Result<&[HyperValue]> {
    match v {
        HyperValue::List(items) => Ok(items),
        HyperValue::PerGroup(vs) => hyper_list(
            vs.get(group)
                .ok_or_else(|| Error::internal("no value for this group"))?,
            group,
        ),
        _ => Err(Error::internal("expected a list")),
    }
}

pub(super) struct SchedCx<'a> {
    env: Env<'a>,
    body: &'a Body,
    args: &'a [HyperValue],
    count: f64,
    group: usize,
    locals: Vec<f64>,
    states: Vec<f64>,
    /// Inside `observe`: the metric of the step being replayed.
    metric: f64,
}

impl SchedCx<'_> {
    pub(super) fn run(&mut self, stmts: &[Stmt]) -> Result<()> {
        for s in stmts {
            match s {
                Stmt::Let(l, e) => self.locals[*l] = self.eval(*e)?,
                Stmt::SetState(id, e) => self.states[*id] = self.eval(*e)?,
                _ => {
                    return Err(Error::internal(
                        "a schedule only binds values and updates its states",
                    ))
                }
            }
        }
        Ok(())
    }

    pub(super) fn arg(&self, i: usize) -> Result<&HyperValue> {
        self.args
            .get(i)
            .ok_or_else(|| Error::internal(format!("missing argument #{i}")))
    }

    pub(super) fn eval(&self, id: ExprId) -> Result<f64> {
        Ok(match &self.body.exprs[id] {
            Expr::Const(v) => *v,
            Expr::Count => self.count,
            Expr::Local(l) => self.locals[*l],
            Expr::Hyper(i) => hyper_scalar(self.env, self.arg(*i)?, self.count, self.group)?,
            Expr::HyperIndex(i, k) => {
                let items = hyper_list(self.arg(*i)?, self.group)?;
                let item = items
                    .get(*k)
                    .ok_or_else(|| Error::user(format!("list has no element {k}")))?;
                hyper_scalar(self.env, item, self.count, self.group)?
            }
            Expr::Unary(op, a) => {
                let x = self.eval(*a)?;
                match op {
                    UnOp::Neg => -x,
                    UnOp::Not => f64::from(u8::from(x == 0.0)),
                }
            }
            Expr::Binary(op, a, b) => arith(*op, self.eval(*a)?, self.eval(*b)?),
            Expr::Select(c, a, b) => {
                if self.eval(*c)? != 0.0 {
                    self.eval(*a)?
                } else {
                    self.eval(*b)?
                }
            }
            Expr::Call(b, xs) => {
                let vals = xs
                    .iter()
                    .map(|x| self.eval(*x))
                    .collect::<Result<Vec<_>, _>>()?;
                builtin(*b, &vals)
            }
            Expr::ScheduleAt(i, x) => {
                let at = self.eval(*x)?;
                hyper_scalar(self.env, self.arg(*i)?, at, self.group)?
            }
            Expr::SchedCall(def, hargs, at) => {
                let vals = hargs
                    .iter()
                    .map(|h| eval_hyper(h, self.args))
                    .collect::<Result<Vec<_>, _>>()?;
                let at = self.eval(*at)?;
                eval_sched_observed(self.env, &Sched::Call(*def, vals), at, self.group)?
            }
            Expr::List(op, i, rest) => self.list_op(*op, *i, rest)?,
            Expr::StrEq(i, lit) => {
                f64::from(u8::from(str_value(self.arg(*i)?, self.group)? == lit))
            }
            Expr::State(s) => self.states[*s],
            Expr::Metric => self.metric,
            Expr::Shape(_)
            | Expr::Grad
            | Expr::Param
            | Expr::Step
            | Expr::Reduce(..)
            | Expr::GradAt(_)
            | Expr::Hvp(_)
            | Expr::Mat(..)
            | Expr::Fold { .. }
            | Expr::Rademacher
            | Expr::Loss => return Err(Error::internal("per-step tensor value inside a schedule")),
        })
    }

    pub(super) fn list_op(&self, op: ListOp, i: usize, rest: &[ExprId]) -> Result<f64> {
        let arg = self.arg(i)?;
        match op {
            ListOp::Len => Ok(hyper_list(arg, self.group)?.len() as f64),
            ListOp::Nth | ListOp::SumFirst | ListOp::CountCumLe => {
                let x = self.eval(rest[0])?;
                let items = hyper_list(arg, self.group)?
                    .iter()
                    .map(|it| hyper_scalar(self.env, it, self.count, self.group))
                    .collect::<Result<Vec<f64>, _>>()?;
                Ok(match op {
                    ListOp::Nth => {
                        let last = items
                            .len()
                            .checked_sub(1)
                            .ok_or_else(|| Error::internal("nth of an empty list"))?;
                        // NaN and negative indices take the first item.
                        items[(x.max(0.0) as usize).min(last)]
                    }
                    ListOp::SumFirst => items.iter().take(x.max(0.0) as usize).sum(),
                    _ => {
                        let mut total = 0.0;
                        let mut n = 0.0;
                        for it in &items {
                            total += it;
                            if total > x {
                                break;
                            }
                            n += 1.0;
                        }
                        n
                    }
                })
            }
            ListOp::CountLe => {
                let x = self.eval(rest[0])?;
                let items = hyper_list(arg, self.group)?;
                let mut n = 0.0;
                for it in items {
                    if hyper_scalar(self.env, it, self.count, self.group)? <= x {
                        n += 1.0;
                    }
                }
                Ok(n)
            }
            ListOp::ProdLe | ListOp::LastKeyLe | ListOp::FirstKeyGt => {
                let x = self.eval(rest[0])?;
                let HyperValue::Map(entries) = arg else {
                    return Err(Error::internal("expected a map"));
                };
                let mut p = 1.0;
                // NaN is `none`: no key found yet.
                let mut key = f64::NAN;
                for (k, v) in entries {
                    let k = k
                        .as_f64()
                        .ok_or_else(|| Error::internal("map key is not a number"))?;
                    match op {
                        ListOp::ProdLe if k <= x => {
                            p *= hyper_scalar(self.env, v, self.count, self.group)?
                        }
                        ListOp::LastKeyLe if k <= x && (key.is_nan() || k > key) => key = k,
                        ListOp::FirstKeyGt if k > x && (key.is_nan() || k < key) => key = k,
                        _ => {}
                    }
                }
                Ok(if op == ListOp::ProdLe { p } else { key })
            }
            ListOp::Join => {
                let Expr::Hyper(bi) = &self.body.exprs[rest[0]] else {
                    return Err(Error::internal("join needs a boundaries parameter"));
                };
                let bounds = hyper_list(self.arg(*bi)?, self.group)?
                    .iter()
                    .map(|b| {
                        b.as_f64()
                            .ok_or_else(|| Error::internal("boundary is not a number"))
                    })
                    .collect::<Result<Vec<f64>, _>>()?;
                let scheds = hyper_list(arg, self.group)?;
                let x = self.eval(rest[1])?;
                let i = bounds.iter().filter(|b| **b <= x).count();
                let offset = if i == 0 { 0.0 } else { bounds[i - 1] };
                let s = scheds
                    .get(i)
                    .ok_or_else(|| Error::internal("join: fewer schedules than boundaries + 1"))?;
                hyper_scalar(self.env, s, x - offset, self.group)
            }
        }
    }
}
