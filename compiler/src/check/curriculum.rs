//! Checking `curriculum` blocks: each becomes one `ir::CurriculumPhase`. The checker
//! knows every pace and sampling rule, their parameters and ranges, and refuses a
//! curriculum the recipe's model cannot feed (loss-driven rules need per-example losses).

// Diagnostics are returned only on the error path; their size does not matter here.
#![allow(clippy::result_large_err)]

use super::args::{named_args, whole};
use crate::ast::{self, ExprKind};
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::ir::{Builtin, CurriculumPhase, Difficulty, ModelSpec, Pace, Sampling};
use crate::source::Span;

const HELP: &str = "write e.g. `curriculum { difficulty = loss  pace = linear(start: 0.2, total_steps: 1000)  sampling = uniform()  refresh = 100 }`";
const PACES: &[&str] = &[
    "full",
    "linear",
    "root",
    "discrete",
    "exponential",
    "fixed_linear",
    "fixed_root",
    "fixed_discrete",
];
const SAMPLINGS: &[&str] = &[
    "uniform",
    "self_paced",
    "hard_mining",
    "ohem",
    "selective_backprop",
];

/// One `curriculum [after N] { ... }` block. `model` is the recipe's model, when it names one.
pub(crate) fn check_phase(
    after: Option<&ast::Expr>,
    entries: &[(ast::Ident, ast::Expr)],
    span: Span,
    model: Option<&ModelSpec>,
) -> Result<CurriculumPhase, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut phase = CurriculumPhase {
        after: 0,
        refresh: 100,
        difficulty: Difficulty::Loss,
        pace: Pace::Full,
        sampling: Sampling::Uniform,
    };
    if let Some(a) = after {
        match whole(a) {
            Some(n) => phase.after = n,
            None => diags.push(out_of_range(a, "`after` is a step: a whole number ≥ 0")),
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in entries {
        if seen.contains(&k.name.as_str()) {
            diags.push(
                Diagnostic::error("E0167", k.span, format!("`{}` is given twice", k.name))
                    .with_label("second one")
                    .with_help("keep one"),
            );
            continue;
        }
        seen.push(&k.name);
        let r = match k.name.as_str() {
            "difficulty" => difficulty(v).map(|d| phase.difficulty = d),
            "pace" => pace(v).map(|p| phase.pace = p),
            "sampling" => sampling(v).map(|s| phase.sampling = s),
            "refresh" => match whole(v) {
                Some(n) if n >= 1 => {
                    phase.refresh = n;
                    Ok(())
                }
                _ => Err(out_of_range(v, "`refresh` is a step count ≥ 1")),
            },
            _ => Err(Diagnostic::error(
                "E0167",
                k.span,
                format!("a curriculum has no setting `{}`", k.name),
            )
            .with_label("unknown setting")
            .with_help("the settings are `difficulty`, `pace`, `sampling` and `refresh`")),
        };
        if let Err(d) = r {
            diags.push(d);
        }
    }
    if diags.is_empty() {
        if let Some(d) = model_can_feed(&phase, model, span) {
            diags.push(d);
        }
    }
    if diags.is_empty() {
        Ok(phase)
    } else {
        Err(diags)
    }
}

/// Loss-driven difficulty or sampling needs a model with per-example losses; confidence
/// needs class probabilities.
fn model_can_feed(
    phase: &CurriculumPhase,
    model: Option<&ModelSpec>,
    span: Span,
) -> Option<Diagnostic> {
    let model = model?;
    if phase.needs_example_losses() && model.kind != "mlp" {
        return Some(
            Diagnostic::error(
                "E0168",
                span,
                format!("this curriculum needs per-example losses, and a `{}` model has none", model.kind),
            )
            .with_label("loss-driven curriculum")
            .with_help("train a data model (`model = mlp(...)` with `data = csv(...)`), or order by a data column with `difficulty = column(\"name\")` and `sampling = uniform()`"),
        );
    }
    let classes = model.layers.last().copied().unwrap_or(0);
    if phase.difficulty.reads_confidence() && model.kind == "mlp" && classes < 2 {
        return Some(
            Diagnostic::error("E0168", span, "`difficulty = confidence` needs class probabilities, and a one-output model is a regression")
                .with_label("no classes")
                .with_help("use `difficulty = loss`, or give the model one output per class"),
        );
    }
    None
}

fn difficulty(e: &ast::Expr) -> Result<Difficulty, Diagnostic> {
    let help = "`difficulty` is `loss`, `confidence` (1 − the probability of the true class), `column(\"name\")`, or an expression of those: numbers, + − * / ^ and the math functions (`0.5 * loss + column(\"length\")`, `log(1 + loss)`)";
    match &e.kind {
        ExprKind::Name(n) if n == "loss" => Ok(Difficulty::Loss),
        ExprKind::Name(n) if n == "confidence" => Ok(Difficulty::OneMinusConfidence),
        ExprKind::Number { value, .. } => Ok(Difficulty::Const(*value)),
        ExprKind::Unary(op, a) => Ok(Difficulty::Unary(*op, Box::new(difficulty(a)?))),
        ExprKind::Binary(op, a, b) => Ok(Difficulty::Binary(
            *op,
            Box::new(difficulty(a)?),
            Box::new(difficulty(b)?),
        )),
        ExprKind::Call { callee, args }
            if Builtin::ALL.iter().any(|(n, _, _)| *n == callee.name) =>
        {
            let (_, f, arity) = Builtin::ALL
                .iter()
                .find(|(n, _, _)| *n == callee.name)
                .copied()
                .unwrap_or(("", Builtin::Abs, 1));
            if args.len() != arity || args.iter().any(|a| a.name.is_some()) {
                return Err(Diagnostic::error(
                    "E0167",
                    e.span,
                    format!(
                        "`{}` takes {arity} argument{}",
                        callee.name,
                        if arity == 1 { "" } else { "s" }
                    ),
                )
                .with_label("here")
                .with_help(help));
            }
            let xs = args
                .iter()
                .map(|a| difficulty(&a.value))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Difficulty::Call(f, xs))
        }
        ExprKind::Call { callee, args } if callee.name == "column" => match args.as_slice() {
            [a] => match &a.value.kind {
                ExprKind::Str(s) => Ok(Difficulty::Column(s.clone())),
                _ => Err(out_of_range(&a.value, help)),
            },
            _ => Err(
                Diagnostic::error("E0167", e.span, "`column` takes one column name")
                    .with_label("here")
                    .with_help(help),
            ),
        },
        _ => Err(
            Diagnostic::error("E0167", e.span, "unknown difficulty measure")
                .with_label("not a difficulty")
                .with_help(help),
        ),
    }
}

fn callee_in<'a>(e: &'a ast::Expr, known: &[&str], what: &str) -> Result<&'a str, Diagnostic> {
    // A bare name is a call without arguments: `sampling = uniform`.
    let name = match &e.kind {
        ExprKind::Call { callee, .. } => &callee.name,
        ExprKind::Name(n) => n,
        _ => "",
    };
    if known.contains(&name) {
        return Ok(name);
    }
    let mut d = Diagnostic::error("E0167", e.span, format!("unknown {what}"))
        .with_label(format!("not a {what}"));
    if let Some(s) = did_you_mean(name, known.iter().copied()) {
        d = d.with_help(format!(
            "did you mean `{s}`? the {what}s are {}",
            super::join_ticked(known)
        ));
    } else {
        d = d.with_help(format!("the {what}s are {}", super::join_ticked(known)));
    }
    Err(d)
}

/// The named arguments of `e` (none for a bare name), checked against `allowed`.
fn args_of<'a>(
    e: &'a ast::Expr,
    name: &str,
    allowed: &[&str],
) -> Result<Vec<(&'a str, &'a ast::Expr)>, Diagnostic> {
    match &e.kind {
        ExprKind::Name(_) => Ok(Vec::new()),
        _ => named_args(e, name, allowed, HELP),
    }
}

struct Args<'a> {
    call: &'a ast::Expr,
    name: &'a str,
    args: Vec<(&'a str, &'a ast::Expr)>,
}

impl<'a> Args<'a> {
    fn get(&self, key: &str) -> Option<&'a ast::Expr> {
        self.args.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn missing(&self, key: &str) -> Diagnostic {
        Diagnostic::error(
            "E0111",
            self.call.span,
            format!("`{}` needs `{key}`", self.name),
        )
        .with_label(format!("no `{key}`"))
        .with_help(HELP)
    }

    /// A real in `range`, `default` when absent (`None`: required).
    fn real(
        &self,
        key: &str,
        default: Option<f64>,
        ok: impl Fn(f64) -> bool,
        rule: &str,
    ) -> Result<f64, Diagnostic> {
        match self.get(key) {
            None => default.ok_or_else(|| self.missing(key)),
            Some(v) => match number(v) {
                Some(x) if ok(x) => Ok(x),
                _ => Err(out_of_range(
                    v,
                    &format!("`{key}` of `{}` {rule}", self.name),
                )),
            },
        }
    }

    fn steps(&self, key: &str, default: Option<u64>) -> Result<u64, Diagnostic> {
        match self.get(key) {
            None => default.ok_or_else(|| self.missing(key)),
            Some(v) => match whole(v) {
                Some(n) if n >= 1 => Ok(n),
                _ => Err(out_of_range(
                    v,
                    &format!("`{key}` is a whole number of steps ≥ 1"),
                )),
            },
        }
    }

    /// A list of whole step numbers, each at least `min`.
    fn step_list(&self, key: &str, min: f64, rule: &str) -> Result<Vec<u64>, Diagnostic> {
        let steps = self.list(key, |x| x >= min && x.fract() == 0.0, rule)?;
        Ok(steps.into_iter().map(|x| x as u64).collect())
    }

    fn list(
        &self,
        key: &str,
        ok: impl Fn(f64) -> bool,
        rule: &str,
    ) -> Result<Vec<f64>, Diagnostic> {
        let v = self.get(key).ok_or_else(|| self.missing(key))?;
        let bad = |at: &ast::Expr| {
            out_of_range(
                at,
                &format!("`{key}` of `{}` is a list whose items {rule}", self.name),
            )
        };
        let ExprKind::List(items) = &v.kind else {
            return Err(bad(v));
        };
        if items.is_empty() {
            return Err(bad(v));
        }
        items
            .iter()
            .map(|it| number(it).filter(|x| ok(*x)).ok_or_else(|| bad(it)))
            .collect()
    }
}

fn fraction(x: f64) -> bool {
    x > 0.0 && x <= 1.0
}

fn pace(e: &ast::Expr) -> Result<Pace, Diagnostic> {
    let name = callee_in(e, PACES, "pace")?;
    let allowed: &[&str] = match name {
        "linear" => &["start", "total_steps"],
        "root" => &["start", "total_steps", "degree"],
        "discrete" => &["fractions", "boundaries"],
        "exponential" => &["start", "growth", "every"],
        "fixed_linear" => &[
            "min_difficulty",
            "max_difficulty",
            "total_curriculum_step",
            "difficulty_step",
        ],
        "fixed_root" => &[
            "min_difficulty",
            "max_difficulty",
            "total_curriculum_step",
            "difficulty_step",
            "root_degree",
        ],
        "fixed_discrete" => &["difficulty", "max_step"],
        _ => &[],
    };
    let a = Args {
        call: e,
        name,
        args: args_of(e, name, allowed)?,
    };
    let in01 = "is a visible fraction in (0, 1]";
    Ok(match name {
        "linear" => Pace::Linear {
            start: a.real("start", None, fraction, in01)?,
            steps: a.steps("total_steps", None)?,
        },
        "root" => Pace::Root {
            start: a.real("start", None, fraction, in01)?,
            steps: a.steps("total_steps", None)?,
            degree: a.real("degree", Some(2.0), |x| x >= 1.0 && x.is_finite(), "is ≥ 1")?,
        },
        "exponential" => Pace::Exponential {
            start: a.real("start", None, fraction, in01)?,
            growth: a.real("growth", None, |x| x > 1.0 && x.is_finite(), "is > 1")?,
            every: a.steps("every", None)?,
        },
        "discrete" => {
            let fractions = a.list("fractions", fraction, "are visible fractions in (0, 1]")?;
            let boundaries = a.step_list("boundaries", 1.0, "are whole steps ≥ 1")?;
            if boundaries.len() + 1 != fractions.len()
                || boundaries.windows(2).any(|w| w[0] >= w[1])
            {
                return Err(Diagnostic::error(
                    "E0120",
                    e.span,
                    "`discrete` needs one more fraction than boundaries, and increasing boundaries",
                )
                .with_label("fractions and boundaries disagree")
                .with_help(
                    "e.g. `discrete(fractions: [0.25, 0.5, 1.0], boundaries: [1000, 2000])`",
                ));
            }
            Pace::Discrete {
                fractions,
                boundaries,
            }
        }
        "fixed_linear" | "fixed_root" => {
            let max = a.real(
                "max_difficulty",
                None,
                |x| x > 0.0 && x.is_finite(),
                "is > 0",
            )?;
            let min = a.real(
                "min_difficulty",
                None,
                |x| x > 0.0 && x <= max,
                "is in (0, max_difficulty]",
            )?;
            Pace::FixedRoot {
                min_difficulty: min,
                max_difficulty: max,
                total_curriculum_step: a.steps("total_curriculum_step", None)?,
                difficulty_step: a.real(
                    "difficulty_step",
                    Some(1.0),
                    |x| x >= 1.0 && x.is_finite(),
                    "is ≥ 1",
                )?,
                root_degree: if name == "fixed_root" {
                    a.real(
                        "root_degree",
                        Some(2.0),
                        |x| x >= 1.0 && x.is_finite(),
                        "is ≥ 1",
                    )?
                } else {
                    1.0
                },
            }
        }
        "fixed_discrete" => {
            let difficulty = a.list(
                "difficulty",
                |x| x > 0.0 && x.is_finite(),
                "are difficulties > 0",
            )?;
            let max_step = a.step_list("max_step", 0.0, "are whole steps")?;
            if max_step.len() + 1 != difficulty.len() {
                return Err(Diagnostic::error("E0120", e.span, "`fixed_discrete` needs one more difficulty than max_step entries")
                    .with_label("lists disagree")
                    .with_help("as in DeepSpeed: `fixed_discrete(difficulty: [8, 16, 32], max_step: [1000, 2000])`"));
            }
            Pace::FixedDiscrete {
                difficulty,
                max_step,
            }
        }
        _ => Pace::Full,
    })
}

fn sampling(e: &ast::Expr) -> Result<Sampling, Diagnostic> {
    let name = callee_in(e, SAMPLINGS, "sampling rule")?;
    let allowed: &[&str] = match name {
        "self_paced" => &["lambda", "mu"],
        "hard_mining" => &["alpha", "floor"],
        "ohem" => &["top"],
        "selective_backprop" => &["beta", "history"],
        _ => &[],
    };
    let a = Args {
        call: e,
        name,
        args: args_of(e, name, allowed)?,
    };
    Ok(match name {
        "self_paced" => Sampling::SelfPaced {
            lambda: a.real("lambda", None, |x| x > 0.0 && x.is_finite(), "is > 0")?,
            mu: a.real(
                "mu",
                Some(1.0),
                |x| x >= 1.0 && x.is_finite(),
                "is ≥ 1 (λ grows)",
            )?,
        },
        "hard_mining" => Sampling::HardMining {
            alpha: a.real("alpha", Some(1.0), |x| x >= 0.0 && x.is_finite(), "is ≥ 0")?,
            floor: a.real(
                "floor",
                Some(0.1),
                |x| (0.0..=1.0).contains(&x),
                "is in [0, 1]",
            )?,
        },
        "ohem" => Sampling::Ohem {
            top: a.real(
                "top",
                None,
                fraction,
                "is a fraction of the batch in (0, 1]",
            )?,
        },
        "selective_backprop" => Sampling::SelectiveBackprop {
            beta: a.real("beta", Some(1.0), |x| x >= 0.0 && x.is_finite(), "is ≥ 0")?,
            history: a.steps("history", Some(1024))? as usize,
        },
        _ => Sampling::Uniform,
    })
}

fn number(e: &ast::Expr) -> Option<f64> {
    match &e.kind {
        ExprKind::Number { value, .. } => Some(*value),
        ExprKind::Unary(ast::UnOp::Neg, inner) => number(inner).map(|x| -x),
        _ => None,
    }
}

fn out_of_range(e: &ast::Expr, rule: &str) -> Diagnostic {
    Diagnostic::error("E0120", e.span, "value out of range")
        .with_label("here")
        .with_help(rule.to_string())
}
