//! Schedule curves for `anneal schedule`: every schedule a recipe binds or passes to a
//! stage, evaluated at counts 0..N (the learning rate used at each step).

use anneal_compiler::error::{Error, Result};
use anneal_compiler::interp::eval_sched;
use anneal_compiler::ir::{HyperValue, Program, Recipe, Sched};

/// One schedule's values at counts 0..N.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub name: String,
    pub values: Vec<f64>,
}

/// The curves of every schedule in `recipe`: its `schedule NAME = ...` bindings, then the
/// schedule-valued arguments of its stages that are not a binding (named `stage.param`,
/// with `[group]` for per-group values).
pub fn curves(program: &Program, recipe: &Recipe, steps: u64) -> Result<Vec<Curve>> {
    let mut out = Vec::new();
    let mut seen: Vec<Sched> = Vec::new();
    for (name, s, _) in &recipe.schedules {
        out.push(curve(program, name.clone(), s, 0, steps)?);
        seen.push(s.clone());
    }
    for stage in &recipe.stages {
        let def = &program.defs[stage.def];
        for (p, v) in def.params.iter().zip(&stage.args) {
            let mut push = |label: String, v: &HyperValue, group: usize| -> Result<()> {
                if let HyperValue::Schedule(s) = v {
                    if !seen.contains(s) && !matches!(s, Sched::Const(_)) {
                        seen.push(s.clone());
                        out.push(curve(program, label, s, group, steps)?);
                    }
                }
                Ok(())
            };
            match v {
                HyperValue::PerGroup(vs) => {
                    for (g, x) in vs.iter().enumerate() {
                        let gname = recipe.groups.get(g).map(|g| g.name.as_str()).unwrap_or("?");
                        push(format!("{}.{}[{gname}]", def.name, p.name), x, g)?;
                    }
                }
                other => push(format!("{}.{}", def.name, p.name), other, 0)?,
            }
        }
    }
    Ok(out)
}

fn curve(program: &Program, name: String, s: &Sched, group: usize, steps: u64) -> Result<Curve> {
    let values = (0..steps)
        .map(|k| eval_sched(program, s, k as f64, group))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::user(format!("schedule `{name}`: {e}")))?;
    Ok(Curve { name, values })
}
