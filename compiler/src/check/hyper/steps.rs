//! Ranges over a run: a parameter declared `real in [0, 1)` and given a schedule (a β₁
//! warming from 0.5 to 0.9) must stay in its range at every step the recipe runs. The
//! schedule is evaluated at each count of the run, so the error names the first step it
//! leaves the range, before the run starts rather than hours into it.

use super::call::range_help;
use crate::diagnostic::Diagnostic;
use crate::ir::{fmt_num, HyperValue, Program, Sched, StageInst, ValueRange};
use crate::source::Span;
use std::ops::Range;

/// A call in the recipe's `update` and the stages it expanded into, so that a scheduled
/// argument is reported where the user wrote it, under the name they called
/// (`adamw(b1: ...)`, not the `scale_by_adam` it reaches).
pub(crate) struct Origin {
    pub stages: Range<usize>,
    pub callee: String,
    /// The call's keyword arguments and their spans.
    pub args: Vec<(String, Span)>,
}

/// Counts evaluated at most per schedule; longer runs are sampled evenly, and the
/// runtime's own check (`Interp::hypers`) covers the counts between samples.
const MAX_COUNTS: u64 = 100_000;

/// The first count in `0..steps` at which a schedule in `v` leaves `r`, with its value.
/// Schedules that need observations (a metric, the loss) cannot be evaluated yet and are
/// left to the runtime.
fn first_outside(
    program: &Program,
    v: &HyperValue,
    r: &ValueRange,
    steps: u64,
) -> Option<(u64, f64)> {
    let check = |s: &Sched, group: usize| -> Option<(u64, f64)> {
        let n = steps.clamp(1, MAX_COUNTS);
        (0..n)
            .map(|i| {
                if n == steps {
                    i
                } else {
                    i * (steps - 1) / (n - 1).max(1)
                }
            })
            .find_map(|k| {
                let x = crate::interp::eval_sched(program, s, k as f64, group).ok()?;
                (!x.is_nan() && !r.contains(x)).then_some((k, x))
            })
    };
    match v {
        HyperValue::Schedule(s) if v.varies() => check(s, 0),
        HyperValue::PerGroup(vs) => vs.iter().enumerate().find_map(|(g, x)| match x {
            HyperValue::Schedule(s) if x.varies() => check(s, g),
            other => first_outside(program, other, r, steps),
        }),
        HyperValue::List(vs) => vs.iter().find_map(|x| first_outside(program, x, r, steps)),
        _ => None,
    }
}

/// Reports every scheduled argument of `stages` that leaves its parameter's range within
/// the recipe's `steps`; true when none does.
pub(crate) fn check_scheduled_ranges(
    program: &Program,
    stages: &[StageInst],
    origins: &[Origin],
    steps: u64,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let mut ok = true;
    for (si, s) in stages.iter().enumerate() {
        let def = &program.defs[s.def];
        let origin = origins.iter().find(|o| o.stages.contains(&si));
        for (p, v) in def.params.iter().zip(&s.args) {
            if let HyperValue::Chain(inner) = v {
                ok &= check_scheduled_ranges(program, inner, &[], steps, diags);
                continue;
            }
            let Some(r) = &p.range else { continue };
            if !v.varies() {
                continue;
            }
            if let Some((k, x)) = first_outside(program, v, r, steps) {
                // The argument of the same name in the user's call, when there is one.
                let (name, span) = origin
                    .and_then(|o| {
                        let (_, at) = o.args.iter().find(|(n, _)| *n == p.name)?;
                        Some((o.callee.as_str(), *at))
                    })
                    .unwrap_or((def.name.as_str(), s.span));
                diags.push(
                    Diagnostic::error(
                        "E0121",
                        span,
                        format!(
                            "`{}` of `{}` must be in {}, but its schedule is {} at step {}",
                            p.name,
                            name,
                            r.describe(),
                            fmt_num(x),
                            k + 1
                        ),
                    )
                    .with_label(format!("leaves {} during the run", r.describe()))
                    .with_help(range_help(&p.name, r)),
                );
                ok = false;
            }
        }
    }
    ok
}
