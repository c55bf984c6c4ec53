//! The conformance runner (`anneal conformance`): each case file becomes recipe source
//! (`source::recipe_source`), is compiled like a user's file, run for its steps, and
//! compared value by value with the golden numbers: pass iff
//! |got − expected| ≤ atol + rtol·|expected| for every value.

mod case;
mod source;
mod train_case;

pub use case::{load_case, Case};
pub use source::function_names;

use crate::model::{Model, Rosenbrock};
use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::error::{Error, Result};
use anneal_compiler::interp::{eval_sched_observed, Env};
use anneal_compiler::state::StateValue;
use anneal_compiler::{compile, diagnostic, ir::Program};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    /// The back end cannot run this recipe (it runs on the interpreter); not a failure.
    pub unsupported: bool,
    pub message: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub cases: Vec<CaseResult>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed() - self.unsupported()
    }

    pub fn unsupported(&self) -> usize {
        self.cases.iter().filter(|c| c.unsupported).count()
    }

    /// `{"passed": N, "failed": M, "cases": [{"name", "status", "message"}]}`
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "passed": self.passed(),
            "failed": self.failed(),
            "unsupported": self.unsupported(),
            "cases": self.cases.iter().map(|c| serde_json::json!({
                "name": c.name,
                "status": if c.passed { "passed" } else if c.unsupported { "unsupported" } else { "failed" },
                "message": c.message,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Case files under `paths` (files as given; directories searched recursively for
/// `*.json` other than `index.json`), sorted.
pub fn collect_cases(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)
                .map_err(|e| Error::user(format!("cannot read directory {}: {e}", p.display())))?;
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(Error::user(format!(
                "{} does not exist; pass a case file or a directory of cases",
                p.display()
            )));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json")
            && path.file_name().is_some_and(|n| n != "index.json")
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The standard library alone, compiled once per run.
pub fn library() -> Program {
    compile("<library>", "").program
}

/// The recipe source for one case (`--emit-recipe`).
pub fn recipe_source(case: &Case) -> Result<String> {
    if case.kind == "train" {
        return train_case::train_recipe_source(case);
    }
    source::recipe_source(case, &library())
}

/// The recipe a case stands for, as an optimizer a framework drives step by step (the
/// Python package's runner): a schedule case gets the optimizer its generator stepped
/// (`SGD(lr, momentum: 0.9)`), so its learning rate is read from that optimizer.
pub fn optimizer_recipe_source(case: &Case) -> Result<String> {
    let src = recipe_source(case)?;
    if case.kind != "schedule" {
        return Ok(src);
    }
    let end = src
        .rfind('}')
        .ok_or_else(|| Error::internal("a recipe without a closing brace"))?;
    let update = if case.module == "torch" {
        "  update = SGD(lr: lr, momentum: 0.9)\n"
    } else {
        "  update = sgd(learning_rate: lr, momentum: 0.9)\n"
    };
    let mut out = format!("{}{update}{}", &src[..end], &src[end..]);
    if case.module == "formula" {
        out = format!("import std.optax.{{sgd}}\n{out}");
    }
    Ok(out)
}

/// Runs every case file; a file that cannot be read or parsed is one failed case.
pub fn run_files(files: &[PathBuf], backend: Backend) -> Report {
    let lib = library();
    let mut report = Report::default();
    for f in files {
        let result = match load_case(f) {
            Ok(case) => {
                let name = case.name.clone();
                match run_case_on(&case, &lib, backend) {
                    Ok(()) => CaseResult {
                        name,
                        passed: true,
                        unsupported: false,
                        message: String::new(),
                    },
                    Err(e) => {
                        let message = e.to_string();
                        CaseResult {
                            name,
                            passed: false,
                            unsupported: message.starts_with(UNSUPPORTED),
                            message,
                        }
                    }
                }
            }
            Err(e) => CaseResult {
                name: f.display().to_string(),
                passed: false,
                unsupported: false,
                message: format!("malformed case file {}: {e}", f.display()),
            },
        };
        report.cases.push(result);
    }
    report
}

/// Compiles a case's recipe text; a failure carries the first error and the text.
pub(crate) fn compile_case(case: &Case, src: &str) -> Result<anneal_compiler::Compilation> {
    let c = compile(&format!("<case {}>", case.name), src);
    if let Some(first) = c.diagnostics.iter().find(|d| d.is_error()) {
        return Err(Error::user(format!(
            "the recipe for this case does not compile:\n{}\n{src}",
            diagnostic::render(std::slice::from_ref(first), &c.sources, false)
        )));
    }
    Ok(c)
}

/// How a case's error begins when the chosen back end cannot run its recipe.
pub const UNSUPPORTED: &str = "unsupported on this back end: ";

/// Runs one case on the interpreter: Err carries the first mismatch (or why it could not
/// run).
pub fn run_case(case: &Case, lib: &Program) -> Result<()> {
    run_case_on(case, lib, Backend::Interp)
}

/// Runs one case on `backend`; a recipe the back end cannot run is an error starting with
/// `UNSUPPORTED`.
pub fn run_case_on(case: &Case, lib: &Program, backend: Backend) -> Result<()> {
    if case.kind == "train" {
        return train_case::run_train_case(case, lib, backend);
    }
    let module = source::library_module(case)?;
    for f in function_names(case) {
        // `optax.contrib` names live in `std.optax`.
        let name = f.strip_prefix("contrib.").unwrap_or(&f);
        if lib.find(module, name).is_none() {
            return Err(Error::user(format!("not implemented: {f}")));
        }
    }
    let src = source::recipe_source(case, lib)?;
    let c = compile_case(case, &src)?;
    let recipe = c.recipes().first().ok_or("the case produced no recipe")?;
    match case.kind.as_str() {
        "schedule" => {
            let (_, sched, _) = recipe
                .schedules
                .first()
                .ok_or("the case produced no schedule")?;
            let expected = case::f64_list(
                case.json.get("expected").ok_or("missing `expected`")?,
                "expected",
            )?;
            if expected.len() != case.steps {
                return Err(Error::user(format!(
                    "`expected` has {} values for {} steps",
                    expected.len(),
                    case.steps
                )));
            }
            // Metric-driven schedules (ReduceLROnPlateau) see the metrics of earlier steps.
            let metrics = match case.json.get("metrics") {
                Some(m) => case::f64_list(m, "metrics")?,
                None => Vec::new(),
            };
            for (k, want) in expected.iter().enumerate() {
                let env = Env {
                    program: &c.program,
                    metrics: &metrics[..k.min(metrics.len())],
                    replays: None,
                };
                let got = eval_sched_observed(env, sched, k as f64, 0)?;
                check_value(case, want, got, || format!("step {k}"))?;
            }
            Ok(())
        }
        "optimizer" => run_optimizer(case, &c.program, recipe, backend),
        "loss_scale" => run_loss_scale(case, &c.program, recipe, backend),
        other => Err(Error::user(format!("unknown case kind `{other}`"))),
    }
}

fn check_value(case: &Case, want: &f64, got: f64, at: impl Fn() -> String) -> Result<()> {
    let tol = case.atol + case.rtol * want.abs();
    if (got - want).abs() <= tol {
        return Ok(());
    }
    Err(Error::user(format!(
        "{}: expected {want:e}, got {got:e} (|diff| {:.3e} > tolerance {tol:.3e})",
        at(),
        (got - want).abs()
    )))
}

/// The recipe bound to tensors on `backend` (strictly: no silent fallback).
pub(crate) fn stepper<'p>(
    backend: Backend,
    program: &'p Program,
    recipe: &anneal_compiler::ir::Recipe,
    names: &[String],
    shapes: &[Vec<usize>],
    params: &[Vec<f32>],
) -> Result<Stepper<'p>> {
    runs_on(backend, program, recipe)?;
    Ok(Stepper::new(backend, program, recipe, names, shapes, params, 1)?.0)
}

/// Err starting with `UNSUPPORTED` when `backend` cannot run the recipe (it does not lower
/// to a fused kernel); the interpreter and builtin optimizers run everything.
pub(crate) fn runs_on(
    backend: Backend,
    program: &Program,
    recipe: &anneal_compiler::ir::Recipe,
) -> Result<()> {
    if backend != Backend::Interp && !anneal_compiler::backends::is_builtin(program, recipe) {
        if let Err(why) = anneal_compiler::kernel::lower(program, recipe) {
            return Err(Error::user(format!("{UNSUPPORTED}{why}")));
        }
    }
    Ok(())
}

fn run_optimizer(
    case: &Case,
    program: &Program,
    recipe: &anneal_compiler::ir::Recipe,
    backend: Backend,
) -> Result<()> {
    let tensors = case::params(case)?;
    let names: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
    let shapes: Vec<Vec<usize>> = tensors.iter().map(|t| t.shape.clone()).collect();
    let mut params: Vec<Vec<f32>> = tensors.into_iter().map(|t| t.data).collect();
    let grads_src = gradient_source(case, &names)?;
    let expected = case
        .json
        .get("expected")
        .and_then(Value::as_array)
        .ok_or("missing list field `expected`")?;
    if expected.len() != case.steps {
        return Err(Error::user(format!(
            "`expected` has {} entries for {} steps",
            expected.len(),
            case.steps
        )));
    }
    let mut interp = stepper(backend, program, recipe, &names, &shapes, &params)?;
    for (k, want) in expected.iter().enumerate() {
        let grads = grads_src.at(k, &params)?;
        if !recipe.capabilities.is_empty() {
            // A loss-driven case (L-BFGS): the case's loss is the model.
            let mut model = LossModel {
                source: &grads_src,
                step: k,
                params: params.clone(),
            };
            interp.step_with(&mut params, &grads, Some(&mut model))?;
            compare_step(case, k, want, &names, &params)?;
            continue;
        }
        for (i, g) in grads.iter().enumerate() {
            if g.len() != params[i].len() {
                return Err(Error::user(format!(
                    "step {k}: gradient of `{}` has {} values, param has {}",
                    names[i],
                    g.len(),
                    params[i].len()
                )));
            }
        }
        interp.step(&mut params, &grads)?;
        compare_step(case, k, want, &names, &params)?;
        // lookahead cases also give the slow weights.
        if let Some(slow) = case.json.get("expected_slow").and_then(|v| v.get(k)) {
            let want = case::per_tensor(slow, &names, &format!("expected_slow[{k}]"))?;
            let Some(StateValue::Element(got)) = interp.state_value("lookahead", "slow") else {
                return Err("the recipe has no lookahead stage with slow weights".into());
            };
            for (ti, (w, g)) in want.iter().zip(got).enumerate() {
                for (i, (w, g)) in w.iter().zip(g).enumerate() {
                    check_value(case, &f64::from(*w), f64::from(*g), || {
                        format!("step {k}, slow weights of `{}`, index {i}", names[ti])
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// GradScaler cases: an inf gradient on overflow steps, a finite one otherwise; the
/// scale after each step and whether the step was skipped are compared.
fn run_loss_scale(
    case: &Case,
    program: &Program,
    recipe: &anneal_compiler::ir::Recipe,
    backend: Backend,
) -> Result<()> {
    let overflow = case
        .json
        .get("overflow")
        .and_then(Value::as_array)
        .ok_or("missing list field `overflow`")?;
    let expected = case.json.get("expected").ok_or("missing `expected`")?;
    let scales = case::f64_list(
        expected.get("scale").ok_or("missing `expected.scale`")?,
        "expected.scale",
    )?;
    let skipped = expected
        .get("skipped")
        .and_then(Value::as_array)
        .ok_or("missing list field `expected.skipped`")?;
    if overflow.len() != case.steps || scales.len() != case.steps || skipped.len() != case.steps {
        return Err(Error::user(format!(
            "`overflow` and `expected` need {} entries each",
            case.steps
        )));
    }
    let names = vec!["x".to_string()];
    let mut params = vec![vec![0.0f32]];
    let mut interp = stepper(backend, program, recipe, &names, &[vec![1]], &params)?;
    for k in 0..case.steps {
        let inf = overflow[k]
            .as_bool()
            .ok_or("`overflow` holds a non-boolean")?;
        let g = if inf { f32::INFINITY } else { 1.0 };
        interp.step(&mut params, &[vec![g]])?;
        let scale = match interp.state_value("GradScaler", "scale") {
            Some(StateValue::Scalar(s)) => *s,
            _ => return Err("the recipe has no GradScaler scale".into()),
        };
        check_value(case, &scales[k], scale, || format!("step {k}, scale"))?;
        let want = skipped[k]
            .as_bool()
            .ok_or("`expected.skipped` holds a non-boolean")?;
        if interp.last_skipped() != want {
            return Err(Error::user(format!(
                "step {k}: expected skipped = {want}, got {}",
                interp.last_skipped()
            )));
        }
    }
    Ok(())
}

fn compare_step(
    case: &Case,
    k: usize,
    want: &Value,
    names: &[String],
    params: &[Vec<f32>],
) -> Result<()> {
    let want = case::per_tensor(want, names, &format!("expected[{k}]"))?;
    for (ti, (w, g)) in want.iter().zip(params).enumerate() {
        if w.len() != g.len() {
            return Err(Error::user(format!(
                "expected[{k}].{} has {} values, param has {}",
                names[ti],
                w.len(),
                g.len()
            )));
        }
        for (i, (w, g)) in w.iter().zip(g).enumerate() {
            check_value(case, &f64::from(*w), f64::from(*g), || {
                format!("step {k}, tensor `{}`, index {i}", names[ti])
            })?;
        }
    }
    Ok(())
}

/// A case's loss as the model: its gradient anywhere and, for loss-driven optimizers, its
/// value.
struct LossModel<'a> {
    source: &'a Gradients,
    step: usize,
    /// The parameters the step starts from (where `loss` is read).
    params: Vec<Vec<f32>>,
}

impl anneal_compiler::interp::Oracle for LossModel<'_> {
    fn grad_at(&mut self, params: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, Error> {
        self.source.at(self.step, params)
    }

    fn hvp(&mut self, _params: &[Vec<f32>], _v: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, Error> {
        Err("golden cases give no Hessian-vector products".into())
    }

    fn loss_at(&mut self, params: &[Vec<f32>]) -> Result<(f64, Vec<Vec<f32>>), Error> {
        let loss = self.source.loss(params)?;
        Ok((f64::from(loss), self.source.at(self.step, params)?))
    }

    fn loss(&mut self) -> Result<f64, Error> {
        Ok(f64::from(self.source.loss(&self.params)?))
    }
}

/// Where a case's gradients come from: a fixed list, or a loss written out (FORMAT.md).
enum Gradients {
    Given(Vec<Vec<Vec<f32>>>),
    Quadratic { a: Vec<Vec<f32>>, c: Vec<Vec<f32>> },
    Rosenbrock(Rosenbrock),
}

fn gradient_source(case: &Case, names: &[String]) -> Result<Gradients> {
    if let Some(list) = case.json.get("grads") {
        let list = list.as_array().ok_or("`grads` must be a list")?;
        if list.len() < case.steps {
            return Err(Error::user(format!(
                "`grads` has {} entries for {} steps",
                list.len(),
                case.steps
            )));
        }
        let all = list
            .iter()
            .enumerate()
            .map(|(k, g)| case::per_tensor(g, names, &format!("grads[{k}]")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Gradients::Given(all));
    }
    let loss = case
        .json
        .get("loss")
        .ok_or("a case needs `grads` or `loss`")?;
    let fname = loss
        .get("fn")
        .and_then(Value::as_str)
        .ok_or("`loss` has no `fn`")?;
    let args = loss.get("args").ok_or("`loss` has no `args`")?;
    match fname {
        "quadratic" => Ok(Gradients::Quadratic {
            a: case::per_tensor(
                args.get("a").ok_or("quadratic loss needs `a`")?,
                names,
                "loss.args.a",
            )?,
            c: case::per_tensor(
                args.get("c").ok_or("quadratic loss needs `c`")?,
                names,
                "loss.args.c",
            )?,
        }),
        "rosenbrock" => {
            if names.len() != 1 {
                return Err("rosenbrock takes exactly one parameter `xy` of shape [2]".into());
            }
            let get = |k: &str| args.get(k).and_then(Value::as_f64).map(|v| v as f32);
            Ok(Gradients::Rosenbrock(Rosenbrock {
                a: get("a").ok_or("rosenbrock needs `a`")?,
                b: get("b").ok_or("rosenbrock needs `b`")?,
            }))
        }
        other => Err(Error::user(format!("not implemented: loss `{other}`"))),
    }
}

impl Gradients {
    /// The loss value, in f32 as the libraries computed it.
    fn loss(&self, params: &[Vec<f32>]) -> Result<f32> {
        match self {
            Gradients::Given(_) => {
                Err("a case with fixed gradients has no loss to evaluate".into())
            }
            Gradients::Quadratic { a, c } => {
                let mut total = 0f32;
                for (i, p) in params.iter().enumerate() {
                    let mut sum = 0f32;
                    for ((x, a), c) in p.iter().zip(&a[i]).zip(&c[i]) {
                        let d = x - c;
                        sum += 0.5 * a * d * d;
                    }
                    total += sum;
                }
                Ok(total)
            }
            Gradients::Rosenbrock(m) => m.loss_and_grad(params, &[], &[]).map(|(l, _)| l),
        }
    }

    fn at(&self, k: usize, params: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        match self {
            Gradients::Given(all) => Ok(all[k].clone()),
            Gradients::Quadratic { a, c } => {
                let mut out = Vec::new();
                for (i, p) in params.iter().enumerate() {
                    if a[i].len() != p.len() || c[i].len() != p.len() {
                        return Err(
                            "quadratic loss coefficients do not match the parameter sizes".into(),
                        );
                    }
                    out.push(
                        p.iter()
                            .zip(&a[i])
                            .zip(&c[i])
                            .map(|((x, a), c)| a * (x - c))
                            .collect(),
                    );
                }
                Ok(out)
            }
            Gradients::Rosenbrock(m) => m.loss_and_grad(params, &[], &[]).map(|(_, g)| g),
        }
    }
}
