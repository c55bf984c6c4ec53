//! Writes the recipe source text a conformance case stands for: its `update` chain (or
//! schedule) in the language, importing `std.optax`, `std.torch`, `std.pytorch_optimizer` or
//! `std.formula` by the case's module. The runner then compiles that text like any user file.

use super::case::Case;
use anneal_compiler::error::{Error, Result};
use anneal_compiler::ir::{HyperValue, Program};
use serde_json::{Map, Value};

/// The library module a case's names live in.
pub fn library_module(case: &Case) -> Result<&'static str> {
    match case.module.as_str() {
        "optax" => Ok("std.optax"),
        "torch" => Ok("std.torch"),
        "pytorch_optimizer" => Ok("std.pytorch_optimizer"),
        "formula" => Ok("std.formula"),
        other => Err(Error::user(format!(
            "unknown module `{other}`: expected optax, torch, pytorch_optimizer or formula"
        ))),
    }
}

/// Every function name a case uses (stages, wrappers, schedules), for the
/// "not implemented" check.
pub fn function_names(case: &Case) -> Vec<String> {
    let mut out = Vec::new();
    if case.kind == "loss_scale" {
        out.push("GradScaler".to_string());
    }
    for key in ["update", "schedule", "scheduler"] {
        if let Some(v) = case.json.get(key) {
            collect_fns(v, &mut out);
        }
    }
    out
}

fn collect_fns(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(f)) = o.get("fn") {
                if !out.contains(f) {
                    out.push(f.clone());
                }
            }
            for x in o.values() {
                collect_fns(x, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|x| collect_fns(x, out)),
        _ => {}
    }
}

/// The recipe text for `case`. `library` is the compiled standard library, used for
/// PyTorch's default learning rates when a torch case leaves `lr` out.
pub fn recipe_source(case: &Case, library: &Program) -> Result<String> {
    let module = library_module(case)?;
    let mut body = String::new();
    body.push_str(&format!("  steps {}\n", case.steps.max(1)));
    match case.kind.as_str() {
        "optimizer" => {
            let update = case
                .json
                .get("update")
                .and_then(Value::as_array)
                .ok_or("missing list field `update`")?;
            if update.is_empty() {
                return Err("`update` is empty".into());
            }
            let mut stages = Vec::new();
            let last = update.len() - 1;
            for (i, entry) in update.iter().enumerate() {
                let entry = entry
                    .as_object()
                    .ok_or("each `update` entry must be an object")?;
                let (name, mut args) = fn_and_args(entry)?;
                // A torch scheduler drives the optimizer's (last stage's) learning rate.
                if i == last && case.module == "torch" {
                    if let Some(sched) = case.json.get("scheduler") {
                        let mut sched = sched
                            .as_object()
                            .ok_or("`scheduler` must be an object")?
                            .clone();
                        let sname = sched
                            .get("fn")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        if matches!(sname.as_str(), "OneCycleLR" | "CyclicLR") {
                            // PyTorch cycles the optimizer's momentum too unless told not to.
                            if let Some(Value::Object(a)) = sched.get_mut("args") {
                                if a.remove("cycle_momentum") != Some(Value::Bool(false)) {
                                    return Err(Error::user(format!(
                                        "not implemented: {sname} momentum cycling"
                                    )));
                                }
                            }
                        }
                        let sched = &sched;
                        let base = match args.get("lr") {
                            Some(v) => value_text(v)?,
                            None => default_lr(library, module, &name)?,
                        };
                        body.push_str(&format!(
                            "  schedule lr = {}\n",
                            torch_scheduler(sched, &base)?
                        ));
                        args.insert("lr".into(), Value::String("@lr".into()));
                    }
                }
                if case.module == "optax" {
                    stages.extend(optax_stage(entry)?);
                } else {
                    stages.push(call_text(&name, &args)?);
                }
            }
            body.push_str(&format!("  update = {}\n", stages.join("\n        |> ")));
        }
        "loss_scale" => {
            let args = match case.json.get("args") {
                Some(Value::Object(a)) => a.clone(),
                None => Map::new(),
                Some(_) => return Err("`args` must be an object".into()),
            };
            body.push_str(&format!("  update = {}\n", call_text("GradScaler", &args)?));
        }
        "schedule" => {
            let sched = case
                .json
                .get("schedule")
                .and_then(Value::as_object)
                .ok_or("missing object field `schedule`")?;
            let text = if case.module == "torch" {
                let base = case
                    .json
                    .get("base_lr")
                    .map(value_text)
                    .transpose()?
                    .unwrap_or_else(|| "0.1".into());
                // Momentum cycling changes the optimizer, not the learning rate a schedule case reads.
                let mut sched = sched.clone();
                if let Some(Value::Object(args)) = sched.get_mut("args") {
                    for k in ["cycle_momentum", "base_momentum", "max_momentum"] {
                        args.remove(k);
                    }
                }
                torch_scheduler(&sched, &base)?
            } else {
                let (name, mut args) = fn_and_args(sched)?;
                if name == "sgdr_schedule" {
                    args = sgdr_args(&args)?;
                }
                call_text(&name, &args)?
            };
            body.push_str(&format!("  schedule lr = {text}\n"));
        }
        other => {
            return Err(Error::user(format!(
                "cases of kind `{other}` are not recipes"
            )))
        }
    }
    Ok(format!(
        "// {} ({})\nimport {module}.*\n\nrecipe case {{\n{body}}}\n",
        case.name,
        case.json
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or("golden case")
    ))
}

/// One optax `update` entry as stages. Wrappers become stages around their inner chain:
/// `MultiSteps` before it (the inner chain runs on its boundary steps), `lookahead` after
/// its fast chain; `contrib.sam` takes its two chains as arguments. `optax.contrib` names
/// live in `std.optax`.
fn optax_stage(entry: &Map<String, Value>) -> Result<Vec<String>> {
    let (name, mut args) = fn_and_args(entry)?;
    let name = name.strip_prefix("contrib.").unwrap_or(&name).to_string();
    let inner = |key: &str| -> Result<Vec<String>> {
        let list = entry
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| Error::user(format!("`{name}` needs a `{key}` chain")))?;
        let mut out = Vec::new();
        for e in list {
            out.extend(optax_stage(
                e.as_object().ok_or("each chain entry must be an object")?,
            )?);
        }
        Ok(out)
    };
    match name.as_str() {
        "MultiSteps" => {
            let mut out = vec![call_text(&name, &args)?];
            out.extend(inner("inner")?);
            Ok(out)
        }
        "lookahead" => {
            if args
                .remove("reset_state")
                .is_some_and(|v| v != Value::Bool(false))
            {
                return Err("not implemented: lookahead reset_state".into());
            }
            let mut out = inner("fast")?;
            out.push(call_text(&name, &args)?);
            Ok(out)
        }
        "sam" => {
            for key in ["optimizer", "adv_optimizer"] {
                let chain = inner(key)?.join(" |> ");
                args.insert(key.into(), Value::String(format!("@{chain}")));
            }
            Ok(vec![call_text(&name, &args)?])
        }
        _ => Ok(vec![call_text(&name, &args)?]),
    }
}

/// optax's `sgdr_schedule(cosine_kwargs=[{...}, ...])` (a dict per cycle) as anneal's
/// keyword-per-list form: `init_value: [..], peak_value: [..], ...`, an entry per cycle.
/// A cycle without `end_value` or `exponent` takes warmup_cosine_decay_schedule's default.
fn sgdr_args(args: &Map<String, Value>) -> Result<Map<String, Value>> {
    let cycles = args
        .get("cosine_kwargs")
        .and_then(Value::as_array)
        .ok_or("sgdr_schedule needs `cosine_kwargs`, a list of keyword objects")?;
    let mut keys: Vec<&String> = Vec::new();
    for c in cycles {
        let c = c
            .as_object()
            .ok_or("each `cosine_kwargs` entry must be an object")?;
        for k in c.keys() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let mut out = Map::new();
    for k in keys {
        let default = match k.as_str() {
            "end_value" => Some(Value::from(0.0)),
            "exponent" => Some(Value::from(1.0)),
            _ => None,
        };
        let column = cycles
            .iter()
            .map(|c| {
                c.get(k)
                    .cloned()
                    .or_else(|| default.clone())
                    .ok_or_else(|| Error::user(format!("sgdr_schedule: a cycle has no `{k}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(k.clone(), Value::Array(column));
    }
    Ok(out)
}

fn fn_and_args(entry: &Map<String, Value>) -> Result<(String, Map<String, Value>)> {
    let name = entry
        .get("fn")
        .and_then(Value::as_str)
        .ok_or("an entry has no string `fn`")?
        .to_string();
    let args = match entry.get("args") {
        None => Map::new(),
        Some(Value::Object(a)) => a.clone(),
        Some(_) => return Err(Error::user(format!("`{name}`: `args` must be an object"))),
    };
    Ok((name, args))
}

/// A torch scheduler call with its `base_lr`; SequentialLR passes it to its parts.
pub(crate) fn torch_scheduler(entry: &Map<String, Value>, base_lr: &str) -> Result<String> {
    let (name, mut args) = fn_and_args(entry)?;
    if name == "SequentialLR" {
        let parts = args
            .get("schedulers")
            .and_then(Value::as_array)
            .ok_or("SequentialLR needs a `schedulers` list")?;
        let texts = parts
            .iter()
            .map(|p| {
                p.as_object()
                    .ok_or_else(|| Error::user("each scheduler must be an object"))
                    .and_then(|o| torch_scheduler(o, base_lr))
            })
            .collect::<Result<Vec<_>, _>>()?;
        args.insert(
            "schedulers".into(),
            Value::String(format!("@[{}]", texts.join(", "))),
        );
        return call_text(&name, &args);
    }
    if !matches!(name.as_str(), "CyclicLR" | "OneCycleLR") {
        let mut with_base = Map::new();
        with_base.insert("base_lr".into(), Value::String(format!("@{base_lr}")));
        with_base.extend(args);
        args = with_base;
    }
    call_text(&name, &args)
}

fn default_lr(library: &Program, module: &str, name: &str) -> Result<String> {
    let id = library
        .find(module, name)
        .ok_or_else(|| Error::user(format!("not implemented: {name}")))?;
    let p = library.defs[id]
        .params
        .iter()
        .find(|p| p.name == "lr")
        .ok_or_else(|| Error::user(format!("`{name}` has no `lr`")))?;
    match &p.default {
        Some(HyperValue::Real(v)) => Ok(format!("{v:?}")),
        Some(HyperValue::Int(v)) => Ok(v.to_string()),
        _ => Err(Error::user(format!("`{name}` has no default `lr`"))),
    }
}

/// `name(key: value, ...)`. A string value starting with `@` is recipe text already.
pub(crate) fn call_text(name: &str, args: &Map<String, Value>) -> Result<String> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::user(format!("not implemented: {name}")));
    }
    let mut parts = Vec::new();
    for (k, v) in args {
        if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::user(format!(
                "`{name}`: argument name `{k}` is not a name"
            )));
        }
        parts.push(format!("{k}: {}", value_text(v)?));
    }
    Ok(format!("{name}({})", parts.join(", ")))
}

/// A JSON argument as recipe text.
pub(crate) fn value_text(v: &Value) -> Result<String> {
    Ok(match v {
        Value::Null => "none".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.is_finite() => format!("{f:?}"),
            _ => return Err(Error::user(format!("unsupported number {n}"))),
        },
        Value::String(s) => match s.strip_prefix('@') {
            Some(text) => text.to_string(),
            // Any text a recipe's string literal holds as it is ("1-sqrt"); a quote, a
            // backslash or a control character would end or bend the literal.
            None if !s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) => {
                format!("\"{s}\"")
            }
            None => return Err(Error::user(format!("unsupported string argument {s:?}"))),
        },
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(value_text)
                .collect::<Result<Vec<_>, _>>()?
                .join(", ")
        ),
        Value::Object(o) => {
            if let Some(s) = o.get("schedule").and_then(Value::as_object) {
                let (name, args) = fn_and_args(s)?;
                call_text(&name, &args)?
            } else {
                // {"5": 0.5, "10": 0.2}: a map keyed by step numbers.
                let mut entries = Vec::new();
                for (k, x) in o {
                    let key: i64 = k
                        .parse()
                        .map_err(|_| format!("unsupported argument object key {k:?}"))?;
                    entries.push(format!("{key}: {}", value_text(x)?));
                }
                format!("{{{}}}", entries.join(", "))
            }
        }
    })
}
