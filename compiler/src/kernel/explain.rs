//! The fusion report of `anneal build --explain`: the passes of a recipe's fused step, the
//! buffers each reads and writes, bytes moved per parameter per step, and the same figure
//! for an unfused implementation (one sweep per transform). Entry point: `explain`.

use serde::Serialize;

use super::{lower, unfused_cost, Buf, Kernel, PassKind, Unsupported};
use crate::ir::{DefBody, Program, Recipe};

#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    /// `reduce` or `map`.
    pub kind: &'static str,
    /// `norm(global)`, `all_finite(global)`, ...
    pub reductions: Vec<String>,
    pub reads: Vec<String>,
    pub writes: Vec<String>,
    pub bytes_per_param: usize,
    /// Runs only on steps whose host `if` takes the branch that needs it (not counted in
    /// the step's total).
    pub conditional: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Explain {
    pub recipe: String,
    pub passes: Vec<PassReport>,
    pub bytes_per_param: usize,
    /// Bytes per parameter the host itself moves per step: spreading per-row/column
    /// values over the elements, summing element values into rows and columns (included
    /// in `bytes_per_param`).
    pub host_bytes_per_param: usize,
    pub unfused_passes: usize,
    pub unfused_bytes_per_param: usize,
    /// Host values computed per tensor per step (schedules, bias corrections, norms).
    pub host_values: usize,
    pub element_ops: usize,
}

/// A buffer's name as a user reads it: `param`, `grad`, `adamw.mu`.
pub fn buf_name(program: &Program, recipe: &Recipe, b: Buf) -> String {
    match b {
        Buf::Param => "param".into(),
        Buf::Grad => "grad".into(),
        Buf::CallArg(k) => format!("call{k}.arg"),
        Buf::CallPoint(k) => format!("call{k}.point"),
        Buf::CallOut(k) => format!("call{k}.result"),
        Buf::Noise(s) => format!("rademacher{s}"),
        Buf::Spread(h) => format!("spread{h}"),
        Buf::SliceIn(s) => format!("slice{s}.input"),
        Buf::MatIn(k, i) => format!("call{k}.input{i}"),
        Buf::State { stage, state } => {
            let def = &program.defs[recipe.stages[stage].def];
            let name = match &def.body {
                DefBody::Stage(body) => body.states[state].name.as_str(),
                _ => "?",
            };
            format!("{}.{name}", def.name)
        }
    }
}

/// Lowers `recipe` and describes its passes.
pub fn explain(program: &Program, recipe: &Recipe) -> Result<Explain, Unsupported> {
    let kernel = lower(program, recipe)?;
    let (unfused_passes, unfused_bytes_per_param) = unfused_cost(program, recipe)?;
    Ok(report(
        program,
        recipe,
        &kernel,
        unfused_passes,
        unfused_bytes_per_param,
    ))
}

fn report(
    program: &Program,
    recipe: &Recipe,
    kernel: &Kernel,
    unfused_passes: usize,
    unfused_bytes_per_param: usize,
) -> Explain {
    let name = |b: &Buf| buf_name(program, recipe, *b);
    let passes: Vec<PassReport> = kernel
        .passes
        .iter()
        .filter(|p| p.kind != PassKind::SkipMap)
        .map(|p| {
            let writes = p.writes(kernel);
            PassReport {
                kind: match p.kind {
                    PassKind::Reduce => "reduce",
                    PassKind::Map | PassKind::SkipMap => "map",
                    PassKind::Prepare => "prepare (model call or sliced reduction)",
                },
                reductions: p
                    .reductions
                    .iter()
                    .map(|&r| {
                        let r = &kernel.reductions[r];
                        format!("{}({})", r.op.name(), r.scope.name())
                    })
                    .collect(),
                reads: p.reads.iter().map(name).collect(),
                writes: writes.iter().map(name).collect(),
                bytes_per_param: 4 * (p.reads.len() + writes.len()),
                conditional: p.conditional,
            }
        })
        .collect();
    let mut spreads: Vec<Buf> = kernel
        .passes
        .iter()
        .flat_map(|p| p.bufs.iter().copied())
        .filter(|b| matches!(b, Buf::Spread(_)))
        .collect();
    spreads.sort();
    spreads.dedup();
    let host_bytes_per_param = 4 * (spreads.len() + kernel.slice_reds.len());
    Explain {
        recipe: recipe.name.clone(),
        host_bytes_per_param,
        bytes_per_param: host_bytes_per_param
            + passes
                .iter()
                .filter(|p| !p.conditional)
                .map(|p| p.bytes_per_param)
                .sum::<usize>(),
        passes,
        unfused_passes,
        unfused_bytes_per_param,
        host_values: kernel.host.len(),
        element_ops: kernel.elems.len(),
    }
}

impl Explain {
    /// The passes every step runs.
    pub fn step_passes(&self) -> usize {
        self.passes.iter().filter(|p| !p.conditional).count()
    }
}

impl std::fmt::Display for Explain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "recipe `{}`: {} pass{} over memory, {} bytes per parameter per step",
            self.recipe,
            self.step_passes(),
            if self.step_passes() == 1 { "" } else { "es" },
            self.bytes_per_param
        )?;
        for (i, p) in self.passes.iter().enumerate() {
            let what = if p.reductions.is_empty() {
                String::new()
            } else {
                format!(" {}", p.reductions.join(", "))
            };
            let when = if p.conditional {
                " (only on steps whose `if` needs it)"
            } else {
                ""
            };
            writeln!(f, "  pass {} {}{what}{when}", i + 1, p.kind)?;
            writeln!(f, "    reads  {}", list(&p.reads))?;
            writeln!(f, "    writes {}", list(&p.writes))?;
            writeln!(f, "    {} bytes per parameter", p.bytes_per_param)?;
        }
        if self.host_bytes_per_param > 0 {
            writeln!(
                f,
                "  host: spreads per-row/column values and sums rows/columns: {} bytes per parameter",
                self.host_bytes_per_param
            )?;
        }
        writeln!(
            f,
            "  host: {} values per tensor per step; {} element operations",
            self.host_values, self.element_ops
        )?;
        write!(
            f,
            "unfused (one sweep per transform): {} passes, {} bytes per parameter ({:.2}x the fused traffic)",
            self.unfused_passes,
            self.unfused_bytes_per_param,
            self.unfused_bytes_per_param as f64 / self.bytes_per_param.max(1) as f64
        )
    }
}

fn list(xs: &[String]) -> String {
    if xs.is_empty() {
        "-".into()
    } else {
        xs.join(", ")
    }
}
