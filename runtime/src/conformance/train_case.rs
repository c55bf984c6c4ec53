//! Training cases (`"kind": "train"`, ../shared/conformance/FORMAT-TRAIN.md): the case's
//! recipe becomes `std.torch` recipe text (parameter groups and their overrides as
//! per-group values, the scheduler scaled from each group's own learning rate), the model
//! and data are built, and the run's losses, gradient norms, learning rates, momenta and
//! weights are compared with PyTorch's.

use super::case::{self, Case};
use super::source::{call_text, torch_scheduler, value_text};
use crate::data::load_csv;
use crate::model::{Activation, Loss, Mlp};
use crate::train::{train, Run};
use anneal_compiler::backends::Backend;
use anneal_compiler::error::{Error, Result};
use anneal_compiler::glob;
use anneal_compiler::ir::Program;
use serde_json::{Map, Value};

/// The recipe text a training case stands for (`--emit-recipe`).
pub fn train_recipe_source(case: &Case) -> Result<String> {
    let model = build_model(
        case.json
            .get("model")
            .ok_or("missing object field `model`")?,
    )?;
    let names: Vec<String> = model.param_specs().into_iter().map(|(n, _)| n).collect();
    recipe_source(case, &names)
}

pub fn run_train_case(case: &Case, _lib: &Program, backend: Backend) -> Result<()> {
    let model = build_model(
        case.json
            .get("model")
            .ok_or("missing object field `model`")?,
    )?;
    let specs = model.param_specs();
    let names: Vec<String> = specs.iter().map(|(n, _)| n.clone()).collect();
    let shapes: Vec<Vec<usize>> = specs.iter().map(|(_, s)| s.clone()).collect();
    let src = recipe_source(case, &names)?;
    let c = super::compile_case(case, &src)?;
    let recipe = c.recipes().first().ok_or("the case produced no recipe")?;
    let data_spec = case.json.get("data").ok_or("missing object field `data`")?;
    let file = data_spec
        .get("file")
        .and_then(Value::as_str)
        .ok_or("`data.file` must be a file name")?;
    if file.contains(['/', '\\']) || file.contains("..") {
        return Err(Error::user(format!(
            "`data.file` must be a bare file name, not `{file}`"
        )));
    }
    let dir = case
        .path
        .parent()
        .map(|p| p.join("../data"))
        .unwrap_or_default();
    let mut data = load_csv(&dir.join(file))?;
    if data_spec
        .get("standardize")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        data.standardize();
    }
    let init = case
        .json
        .get("init")
        .and_then(Value::as_object)
        .ok_or("missing object field `init`")?;
    let mut params = names
        .iter()
        .map(|n| {
            let data = init
                .get(n)
                .and_then(|t| t.get("data"))
                .ok_or_else(|| Error::user(format!("`init` has no tensor `{n}` with `data`")))?;
            case::f32_list(data, &format!("init.{n}.data"))
        })
        .collect::<Result<Vec<_>>>()?;
    for ((p, s), n) in params.iter().zip(&shapes).zip(&names) {
        if p.len() != s.iter().product::<usize>() {
            return Err(Error::user(format!(
                "init.{n} has {} values for shape {s:?}",
                p.len()
            )));
        }
    }
    let batches: Vec<Vec<usize>> = case
        .json
        .get("batches")
        .and_then(Value::as_array)
        .ok_or("missing list field `batches`")?
        .iter()
        .map(|b| {
            b.as_array()
                .ok_or("each batch is a list of row indices")?
                .iter()
                .map(|r| {
                    r.as_u64()
                        .map(|r| r as usize)
                        .filter(|r| *r < data.rows)
                        .ok_or_else(|| Error::user(format!("batch row {r} is not a row of {file}")))
                })
                .collect::<Result<Vec<usize>>>()
        })
        .collect::<Result<_>>()?;
    let accumulate = case
        .json
        .get("recipe")
        .and_then(|r| r.get("accumulate"))
        .and_then(Value::as_u64)
        .unwrap_or(1) as usize;
    let run = Run {
        program: &c.program,
        recipe,
        model: &model,
        data: &data,
        batches: &batches,
        curriculum: None,
        accumulate,
        steps: case.steps,
        backend,
        threads: 1,
    };
    super::runs_on(backend, &c.program, recipe)?;
    let trace = train(&run, &names, &shapes, &mut params)?;
    let expected = case
        .json
        .get("expected")
        .ok_or("missing object field `expected`")?;
    let check = |what: &str, i: usize, want: f64, got: f64| -> Result<()> {
        let tol = case.atol + case.rtol * want.abs();
        if (got - want).abs() <= tol {
            Ok(())
        } else {
            Err(Error::user(format!(
                "{what}[{i}]: expected {want:e}, got {got:e} (tolerance {tol:.3e})"
            )))
        }
    };
    let series = |key: &str| -> Result<Option<Vec<f64>>> {
        expected
            .get(key)
            .map(|v| case::f64_list(v, &format!("expected.{key}")))
            .transpose()
    };
    let compare = |key: &str, got: Vec<f64>| -> Result<()> {
        if let Some(want) = series(key)? {
            if want.len() != got.len() {
                return Err(Error::user(format!(
                    "expected.{key} has {} values, the run made {}",
                    want.len(),
                    got.len()
                )));
            }
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                check(key, i, *w, *g)?;
            }
        }
        Ok(())
    };
    compare("loss", trace.loss.iter().map(|v| f64::from(*v)).collect())?;
    compare("grad_norm", trace.grad_norm.clone())?;
    compare(
        "loss_perturbed",
        trace.loss_perturbed.iter().map(|v| f64::from(*v)).collect(),
    )?;
    compare("grad_norm_perturbed", trace.grad_norm_perturbed.clone())?;
    for (key, got) in [("lr", &trace.lr), ("momentum", &trace.momentum)] {
        let Some(want) = expected.get(key).and_then(Value::as_array) else {
            continue;
        };
        for (t, row) in want.iter().enumerate() {
            let row = case::f64_list(row, &format!("expected.{key}[{t}]"))?;
            let got = got
                .get(t)
                .ok_or_else(|| Error::user(format!("the run reported no {key} at step {t}")))?;
            if row.len() != got.len() {
                return Err(Error::user(format!(
                    "expected.{key}[{t}] has {} groups, the recipe {}",
                    row.len(),
                    got.len()
                )));
            }
            for (g, (w, v)) in row.iter().zip(got).enumerate() {
                check(&format!("{key}[{t}] group"), g, *w, *v)?;
            }
        }
    }
    for (key, got) in [
        ("params_step1", &trace.params_step1),
        ("params_final", &params.to_vec()),
    ] {
        let Some(want) = expected.get(key) else {
            continue;
        };
        let want = case::per_tensor(want, &names, &format!("expected.{key}"))?;
        for ((w, g), n) in want.iter().zip(got).zip(&names) {
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                check(&format!("{key}.{n}"), i, f64::from(*a), f64::from(*b))?;
            }
        }
    }
    Ok(())
}

fn build_model(spec: &Value) -> Result<Mlp> {
    let layers: Vec<usize> = spec
        .get("layers")
        .and_then(Value::as_array)
        .ok_or("`model.layers` must be a list of widths")?
        .iter()
        .map(|v| {
            v.as_u64()
                .map(|v| v as usize)
                .ok_or("`model.layers` holds a non-integer")
        })
        .collect::<Result<_, _>>()?;
    let activation = match spec.get("activation").and_then(Value::as_str) {
        None | Some("tanh") => Activation::Tanh,
        Some("relu") => Activation::Relu,
        Some(other) => {
            return Err(Error::user(format!(
                "unknown activation `{other}`: use tanh or relu"
            )))
        }
    };
    let loss = match spec.get("loss").and_then(Value::as_str) {
        Some("cross_entropy") => Loss::CrossEntropy,
        Some("mse") => Loss::Mse,
        other => {
            return Err(Error::user(format!(
                "unknown loss {other:?}: use cross_entropy or mse"
            )))
        }
    };
    Mlp::new(layers, activation, loss)
}

/// The case's recipe as `std.torch` source.
fn recipe_source(case: &Case, names: &[String]) -> Result<String> {
    let recipe = case
        .json
        .get("recipe")
        .and_then(Value::as_object)
        .ok_or("missing object field `recipe`")?;
    let update = recipe
        .get("update")
        .and_then(Value::as_array)
        .ok_or("`recipe.update` must be a list")?;
    let (last, transforms) = update.split_last().ok_or("`recipe.update` is empty")?;
    let last = last.as_object().ok_or("each update entry is an object")?;
    let opt_name = last
        .get("fn")
        .and_then(Value::as_str)
        .ok_or("an update entry has no `fn`")?
        .to_string();
    let mut opt_args = last
        .get("args")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // Parameter groups: the listed globs in order, then the unmatched parameters.
    let listed: Vec<(String, Map<String, Value>)> = match recipe.get("param_groups") {
        None => Vec::new(),
        Some(v) => v
            .as_array()
            .ok_or("`param_groups` must be a list")?
            .iter()
            .map(|g| {
                let pat = g
                    .get("match")
                    .and_then(Value::as_str)
                    .ok_or("a param group needs `match`")?;
                let args = g
                    .get("args")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                Ok::<_, String>((pat.to_string(), args))
            })
            .collect::<Result<_, _>>()?,
    };
    let unmatched = names
        .iter()
        .any(|n| !listed.iter().any(|(p, _)| glob::matches(p, n)));
    let mut group_names: Vec<String> = (0..listed.len()).map(|i| format!("g{i}")).collect();
    if unmatched || listed.is_empty() {
        group_names.push("others".into());
    }
    let group_override = |gi: usize, key: &str| -> Option<Value> {
        listed.get(gi).and_then(|(_, a)| a.get(key).cloned())
    };
    let per_group =
        |key: &str, base: &Value, text: &dyn Fn(&Value) -> Result<String>| -> Result<String> {
            if listed.is_empty() {
                return text(base);
            }
            let parts = group_names
                .iter()
                .enumerate()
                .map(|(gi, g)| {
                    Ok(format!(
                        "{g}: {}",
                        text(&group_override(gi, key).unwrap_or_else(|| base.clone()))?
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(format!("{{{}}}", parts.join(", ")))
        };
    let mut body = format!("  steps {}\n", case.steps);
    if !listed.is_empty() {
        body.push_str("  groups {\n");
        for (gi, (pat, _)) in listed.iter().enumerate() {
            body.push_str(&format!("    g{gi} = \"{pat}\"\n"));
        }
        if group_names.last().map(String::as_str) == Some("others") {
            body.push_str("    others = rest\n");
        }
        body.push_str("  }\n");
    }
    let overridden: Vec<String> = {
        let mut keys: Vec<String> = listed.iter().flat_map(|(_, a)| a.keys().cloned()).collect();
        keys.sort();
        keys.dedup();
        keys
    };
    let base_lr = opt_args.get("lr").cloned().unwrap_or(Value::from(0.001));
    let mut arg_text: Vec<(String, String)> = Vec::new();
    if let Some(sched) = recipe.get("scheduler").and_then(Value::as_object) {
        let sname = sched
            .get("fn")
            .and_then(Value::as_str)
            .ok_or("the scheduler has no `fn`")?;
        let mut sargs = sched
            .get("args")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        sargs.remove("last_epoch");
        if sname == "OneCycleLR" {
            let cycle = sargs
                .remove("cycle_momentum")
                .and_then(|v| v.as_bool())
                .unwrap_or(true);
            let mut margs = Map::new();
            for k in [
                "total_steps",
                "pct_start",
                "anneal_strategy",
                "base_momentum",
                "max_momentum",
                "three_phase",
            ] {
                if let Some(v) = sargs.get(k) {
                    margs.insert(k.into(), v.clone());
                }
            }
            sargs.remove("base_momentum");
            sargs.remove("max_momentum");
            arg_text.push(("lr".into(), call_text(sname, &sargs)?));
            if cycle {
                let m = call_text("OneCycleMomentum", &margs)?;
                match opt_args.get("betas").and_then(Value::as_array) {
                    Some(betas) if betas.len() == 2 => {
                        arg_text
                            .push(("betas".into(), format!("[{m}, {}]", value_text(&betas[1])?)));
                        opt_args.remove("betas");
                    }
                    _ => {
                        arg_text.push(("momentum".into(), m));
                        opt_args.remove("momentum");
                    }
                }
            }
        } else {
            let mut entry = Map::new();
            entry.insert("fn".into(), Value::from(sname));
            entry.insert("args".into(), Value::Object(sargs.clone()));
            let text = |lr: &Value| -> Result<String> { torch_scheduler(&entry, &value_text(lr)?) };
            arg_text.push(("lr".into(), per_group("lr", &base_lr, &text)?));
        }
        opt_args.remove("lr");
    }
    for (k, v) in &opt_args {
        if overridden.contains(k) {
            arg_text.push((k.clone(), per_group(k, v, &|x: &Value| value_text(x))?));
        } else {
            arg_text.push((k.clone(), value_text(v)?));
        }
    }
    for k in &overridden {
        if !opt_args.contains_key(k) && !arg_text.iter().any(|(n, _)| n == k) {
            return Err(Error::user(format!(
                "a param group overrides `{k}`, which the optimizer's args do not list"
            )));
        }
    }
    let mut stages = Vec::new();
    for t in transforms {
        let t = t.as_object().ok_or("each update entry is an object")?;
        let name = t
            .get("fn")
            .and_then(Value::as_str)
            .ok_or("an update entry has no `fn`")?;
        let args = t
            .get("args")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        stages.push(call_text(name, &args)?);
    }
    let args: Vec<String> = arg_text.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    stages.push(format!("{opt_name}({})", args.join(", ")));
    body.push_str(&format!("  update = {}\n", stages.join("\n        |> ")));
    Ok(format!(
        "// {}\nimport std.torch.*\n\nrecipe train {{\n{body}}}\n",
        case.name
    ))
}
