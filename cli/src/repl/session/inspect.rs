//! Looking at a session: `:show` (a parameter, a state buffer or a schedule, summarized)
//! and `:plot` (every run's curve as a PNG, and a sparkline in the terminal).

use super::train::{Record, Training};
use super::{written_name, Session};
use anneal_compiler::diagnostic;
use anneal_compiler::interp::Interpreter;
use anneal_compiler::ir::{self, Recipe};
use anneal_compiler::state::StateValue;
use anneal_compiler::Compilation;
use anneal_runtime::schedule::Curve;
use std::fmt::Write as _;
use std::path::PathBuf;

impl Session {
    /// A parameter, a state buffer, or a schedule of the current recipe, summarized.
    pub(super) fn show(&self, name: &str) -> Result<String, String> {
        let (c, recipe) = self.compiled_recipe(None)?;
        // A schedule: its value now and its curve over the recipe's steps.
        let now = self
            .training
            .as_ref()
            .filter(|t| t.recipe == recipe.name)
            .map_or(0, |t| t.step);
        let horizon = recipe.steps.unwrap_or(100).max(now as u64 + 1);
        let curves = anneal_runtime::schedule::curves(&c.program, recipe, horizon)?;
        if let Some(curve) = curves.iter().find(|cv| cv.name == name) {
            let at = curve.values.get(now).copied().unwrap_or(f64::NAN);
            return Ok(format!(
                "{name} = {} at step {now}\n{}",
                num(at),
                sparkline_line("", &curve.values, horizon as usize)
            ));
        }
        let training = self.training.as_ref().filter(|t| t.recipe == recipe.name);
        if let Some(t) = training {
            if let Some(i) = t.names.iter().position(|n| n == name) {
                return Ok(summary(
                    name,
                    &t.shapes[i],
                    t.params[i].iter().map(|x| f64::from(*x)),
                ));
            }
            if let Some(text) = self.show_state(c, recipe, t, name)? {
                return Ok(text);
            }
        }
        let mut known: Vec<String> = curves.iter().map(|c| c.name.clone()).collect();
        if let Some(t) = training {
            known.extend(t.names.iter().cloned());
        }
        known.extend(state_names(c, recipe));
        let hint = match diagnostic::did_you_mean(name, known.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None if known.is_empty() => String::from("the recipe has no schedules"),
            None => format!("known: {}", known.join(", ")),
        };
        let when = if training.is_none() {
            " (parameters and state exist once training starts: `:step`)"
        } else {
            ""
        };
        Err(format!(
            "no `{name}` in recipe `{}`{when}; {hint}",
            recipe.name
        ))
    }

    /// A state buffer, `STAGE.NAME` or `NAME` (the first stage that has one).
    fn show_state(
        &self,
        c: &Compilation,
        recipe: &Recipe,
        t: &Training,
        name: &str,
    ) -> Result<Option<String>, String> {
        let Some(snapshot) = &t.snapshot else {
            return Ok(None);
        };
        let (stage, state) = match name.split_once('.') {
            Some((s, n)) => (Some(s), n),
            None => (None, name),
        };
        let found = recipe.stages.iter().find_map(|s| {
            let def = &c.program.defs[s.def];
            let ir::DefBody::Stage(body) = &def.body else {
                return None;
            };
            let fits = stage.is_none_or(|st| st == def.name || st == written_name(c, recipe, s))
                && body.states.iter().any(|d| d.name == state);
            fits.then_some((def.name.as_str(), written_name(c, recipe, s)))
        });
        let Some((def_name, written)) = found else {
            return Ok(None);
        };
        let (interp, mut now) =
            Interpreter::with_shapes(&c.program, recipe, &t.names, &t.shapes, &t.params)?;
        now.restore(snapshot.clone())?;
        let label = format!("{written}.{state}");
        Ok(interp.state(&now, def_name, state).map(|v| match v {
            StateValue::Scalar(x) => format!("{label} = {}", num(*x)),
            StateValue::Element(ts) => ts
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    summary(
                        &format!("{label}[{}]", t.names[i]),
                        &t.shapes[i],
                        v.iter().map(|x| f64::from(*x)),
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            StateValue::Matrix(ts) => ts
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    summary(
                        &format!("{label}[{}] (matrix)", t.names[i]),
                        &[v.len()],
                        v.iter().map(|x| f64::from(*x)),
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            StateValue::Slice(_, ts) => ts
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    summary(
                        &format!("{label}[{}]", t.names[i]),
                        &[v.len()],
                        v.iter().copied(),
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            StateValue::Tensor(v) => summary(&label, &[v.len()], v.iter().copied()),
        }))
    }

    pub(super) fn plot(&self, arg: &str) -> Result<String, String> {
        let mut parts = arg.split_whitespace();
        let metric = parts.next().unwrap_or("loss");
        let (title, pick): (&str, fn(&Record) -> &Vec<f64>) = match metric {
            "loss" => ("loss", |r| &r.loss),
            "lr" => ("learning rate", |r| &r.lr),
            "gradnorm" | "grad_norm" => ("gradient norm", |r| &r.grad_norm),
            other => {
                return Err(format!(
                    "`:plot {other}`: plot loss, lr or gradnorm, e.g. `:plot loss curves.png`"
                ))
            }
        };
        let file = PathBuf::from(
            parts
                .next()
                .map(str::to_string)
                .unwrap_or_else(|| format!("anneal-{metric}.png")),
        );
        let mut curves: Vec<Curve> = self
            .runs
            .iter()
            .filter(|r| !pick(r).is_empty())
            .map(|r| Curve {
                name: r.label.clone(),
                values: pick(r).clone(),
            })
            .collect();
        if curves.is_empty() && metric == "lr" {
            // Before any run: the current recipe's schedules.
            let (c, recipe) = self.compiled_recipe(None)?;
            curves =
                anneal_runtime::schedule::curves(&c.program, recipe, recipe.steps.unwrap_or(100))?;
        }
        if curves.is_empty() {
            return Err(format!(
                "nothing to plot yet; `:run N` first (then `:plot {metric}`)"
            ));
        }
        let width = curves
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for c in &curves {
            let label = format!("{:<width$}", c.name);
            let _ = writeln!(out, "{}", sparkline_line(&label, &c.values, c.values.len()));
        }
        crate::plot::run(&file, title, &[(title, curves)])?;
        let _ = write!(out, "wrote {}", file.display());
        Ok(out)
    }
}

fn state_names(c: &Compilation, recipe: &Recipe) -> Vec<String> {
    recipe
        .stages
        .iter()
        .filter_map(|s| {
            let def = &c.program.defs[s.def];
            match &def.body {
                ir::DefBody::Stage(b) => Some(
                    b.states
                        .iter()
                        .map(|st| format!("{}.{}", written_name(c, recipe, s), st.name))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            }
        })
        .flatten()
        .collect()
}

/// 4 significant digits, in plain or scientific notation.
fn num(x: f64) -> String {
    if x == 0.0 || (1e-3..1e5).contains(&x.abs()) {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

/// `name  shape [..]  min .. max .. mean .. norm ..`.
fn summary(name: &str, shape: &[usize], values: impl Iterator<Item = f64>) -> String {
    let (mut min, mut max, mut sum, mut sq, mut n, mut bad) =
        (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0, 0usize, 0usize);
    for v in values {
        if !v.is_finite() {
            bad += 1;
            continue;
        }
        min = min.min(v);
        max = max.max(v);
        sum += v;
        sq += v * v;
        n += 1;
    }
    let mut out = format!(
        "{name}  shape {shape:?}  min {}  max {}  mean {}  norm {}",
        num(min),
        num(max),
        num(sum / n.max(1) as f64),
        num(sq.sqrt())
    );
    if bad > 0 {
        let _ = write!(out, "  ({bad} not finite)");
    }
    out
}

/// `label first ▁▂▃▅▇ last (N steps)`: the series averaged into at most 48 buckets.
pub fn sparkline_line(label: &str, values: &[f64], steps: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return format!("{label} (no finite values)");
    }
    let width = values.len().min(48);
    let buckets: Vec<f64> = (0..width)
        .map(|b| {
            let lo = b * values.len() / width;
            let hi = ((b + 1) * values.len() / width).max(lo + 1);
            let part: Vec<f64> = values[lo..hi]
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            part.iter().sum::<f64>() / part.len().max(1) as f64
        })
        .collect();
    let lo = buckets.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = buckets.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let bars: String = buckets
        .iter()
        .map(|v| {
            let k = if hi > lo {
                ((v - lo) / (hi - lo) * 7.0).round() as usize
            } else {
                3
            };
            BARS[k.min(7)]
        })
        .collect();
    let first = finite.first().copied().unwrap_or(f64::NAN);
    let last = finite.last().copied().unwrap_or(f64::NAN);
    let sep = if label.is_empty() { "" } else { " " };
    format!(
        "{label}{sep}{} {bars} {} ({steps} steps)",
        num(first),
        num(last)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_rises_with_its_series() {
        let up: Vec<f64> = (0..8).map(f64::from).collect();
        assert_eq!(
            sparkline_line("x", &up, 8),
            "x 0.0000 ▁▂▃▄▅▆▇█ 7.0000 (8 steps)"
        );
        // Long series are averaged into 48 buckets; constants sit mid-height.
        let flat = vec![2.0; 1000];
        let line = sparkline_line("", &flat, 1000);
        assert_eq!(line.matches('▄').count(), 48, "{line}");
        assert!(sparkline_line("y", &[f64::NAN], 1).contains("no finite values"));
    }

    #[test]
    fn a_summary_gives_shape_range_mean_and_norm() {
        let s = summary("w", &[2, 2], [3.0, -4.0, 0.0, f64::INFINITY].into_iter());
        assert_eq!(
            s,
            "w  shape [2, 2]  min -4.0000  max 3.0000  mean -0.3333  norm 5.0000  (1 not finite)"
        );
    }
}
