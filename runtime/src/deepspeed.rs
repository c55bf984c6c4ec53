//! A recipe as a DeepSpeed config (`anneal export --target deepspeed`). Entry point:
//! `config`. DeepSpeed's JSON covers the optimizer, one of five schedulers, gradient
//! clipping, accumulation, micro-batching, fp16/bf16 with dynamic loss scaling and the ZeRO
//! stage; the rest of a training setup lives in the model code and the launcher. Whatever
//! the recipe says that the config cannot carry exactly is listed, item by item, never
//! dropped silently: the CLI refuses to write the config unless told to accept the list.
//!
//! DeepSpeed's schedulers start before their first step (`last_batch_iteration = -1`):
//! the first optimizer step runs at learning rate 0 and step k at the rate of iteration
//! k − 1. A warmup therefore lags the recipe's by one step (the cosine part after it
//! matches exactly); that is reported as a loss too.
//!
//! The mappings (DeepSpeed's documented semantics):
//! - `clip_grad_norm_(max_norm, norm_type: 2)` / `clip_by_global_norm` → `gradient_clipping`;
//! - torch `Adam` (L2 decay) → `Adam` with `adam_w_mode: false` (DeepSpeed's Adam is
//!   decoupled by default); torch `AdamW` and optax `adamw` → `AdamW`; torch `SGD` and
//!   `Adagrad` → the torch optimizers of the same name (DeepSpeed falls back to
//!   `torch.optim`);
//! - a torch `SequentialLR` of a `LinearLR` warmup and a `CosineAnnealingLR`, or optax's
//!   `warmup_cosine_decay_schedule` → `WarmupCosineLR`; a lone `LinearLR` warmup → `WarmupLR`
//!   (linear); a constant → no scheduler;
//! - `GradScaler` with f16 weights → `fp16` dynamic loss scaling (`initial_scale_power`,
//!   `loss_scale_window`, `hysteresis: 1`, since torch backs off at the first overflow);
//!   bf16 weights → `bf16`;
//! - optax `MultiSteps(every_k_schedule)` or the plan's `micro_batches` →
//!   `gradient_accumulation_steps`; the plan's `micro_batch` →
//!   `train_micro_batch_size_per_gpu`, and their product with `data` → `train_batch_size`;
//!   `zero` → `zero_optimization.stage`.

use anneal_compiler::ir::{Dtype, HyperValue, Program, Recipe, Sched, StageInst};
use serde_json::{json, Map, Value};

/// A stage or schedule call: its definition's name and its arguments by parameter name.
struct Call<'a> {
    name: &'a str,
    args: Vec<(&'a str, &'a HyperValue)>,
}

impl<'a> Call<'a> {
    fn get(&self, key: &str) -> Option<&'a HyperValue> {
        self.args.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn num(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(number)
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some(HyperValue::Bool(true)))
    }
}

fn number(v: &HyperValue) -> Option<f64> {
    match v {
        HyperValue::PerGroup(vs) if v.same_in_every_group() => vs.first().and_then(number),
        other => other.as_f64(),
    }
}

fn stage_call<'a>(program: &'a Program, s: &'a StageInst) -> Call<'a> {
    let def = &program.defs[s.def];
    Call {
        name: def.name.as_str(),
        args: def
            .params
            .iter()
            .map(|p| p.name.as_str())
            .zip(&s.args)
            .collect(),
    }
}

fn sched_call<'a>(program: &'a Program, s: &'a Sched) -> Option<Call<'a>> {
    let Sched::Call(def, args) = s else {
        return None;
    };
    let d = &program.defs[*def];
    Some(Call {
        name: d.name.as_str(),
        args: d.params.iter().map(|p| p.name.as_str()).zip(args).collect(),
    })
}

/// The learning rate as DeepSpeed takes it: the optimizer's `lr` and, for a schedule, the
/// `scheduler` section; or why it cannot.
fn scheduler(program: &Program, lr: &HyperValue) -> Result<(f64, Option<Value>), String> {
    let sched = match lr {
        HyperValue::Schedule(Sched::Const(v)) => return Ok((*v, None)),
        HyperValue::Schedule(s) => s,
        HyperValue::PerGroup(vs) if lr.same_in_every_group() => {
            return vs
                .first()
                .map(|v| scheduler(program, v))
                .unwrap_or_else(|| Err("an empty per-group learning rate".into()))
        }
        HyperValue::PerGroup(_) => {
            return Err("a learning rate that differs between parameter groups (DeepSpeed's config has one; groups are set in the model code)".into())
        }
        other => {
            return other
                .as_f64()
                .map(|v| (v, None))
                .ok_or_else(|| "a learning rate that is not a number or schedule".into())
        }
    };
    let call = sched_call(program, sched)
        .ok_or("a learning-rate schedule written as arithmetic on schedules")?;
    let linear_warmup = |c: &Call| -> Option<(f64, f64, f64)> {
        // torch LinearLR from start_factor to end_factor 1 over total_iters.
        (c.name == "LinearLR" && c.num("end_factor") == Some(1.0))
            .then(|| {
                Some((
                    c.num("base_lr")?,
                    c.num("start_factor")?,
                    c.num("total_iters")?,
                ))
            })
            .flatten()
    };
    match call.name {
        "SequentialLR" => {
            let parts = match call.get("schedulers") {
                Some(HyperValue::List(items)) => items,
                _ => return Err("a SequentialLR without a list of schedulers".into()),
            };
            let milestones = match call.get("milestones") {
                Some(HyperValue::List(ms)) => ms.iter().filter_map(number).collect::<Vec<_>>(),
                _ => Vec::new(),
            };
            let inner: Vec<Call> = parts
                .iter()
                .filter_map(|p| match p {
                    HyperValue::Schedule(s) => sched_call(program, s),
                    _ => None,
                })
                .collect();
            if let ([warm, cos], [m]) = (inner.as_slice(), milestones.as_slice()) {
                if let (Some((base, start, iters)), "CosineAnnealingLR") = (linear_warmup(warm), cos.name) {
                    let t_max = cos.num("T_max").unwrap_or(0.0);
                    let eta_min = cos.num("eta_min").unwrap_or(0.0);
                    if iters == *m && cos.num("base_lr") == Some(base) && base > 0.0 {
                        return Ok((
                            base,
                            Some(json!({"type": "WarmupCosineLR", "params": {
                                "total_num_steps": (m + t_max) as u64,
                                "warmup_min_ratio": start,
                                "warmup_num_steps": *m as u64,
                                "cos_min_ratio": eta_min / base,
                                "warmup_type": "linear",
                            }})),
                        ));
                    }
                }
            }
            Err("a SequentialLR other than a LinearLR warmup (to factor 1) followed at its end by a CosineAnnealingLR of the same base_lr".into())
        }
        "LinearLR" => match linear_warmup(&call) {
            Some((base, start, iters)) => Ok((
                base,
                Some(json!({"type": "WarmupLR", "params": {
                    "warmup_min_lr": start * base,
                    "warmup_max_lr": base,
                    "warmup_num_steps": iters as u64,
                    "warmup_type": "linear",
                }})),
            )),
            None => Err("a LinearLR that does not end at factor 1 (DeepSpeed's WarmupLR warms up to the base rate)".into()),
        },
        "warmup_cosine_decay_schedule" => {
            let peak = call.num("peak_value").unwrap_or(0.0);
            if call.num("exponent").unwrap_or(1.0) != 1.0 || peak <= 0.0 {
                return Err("a warmup_cosine_decay_schedule with an exponent other than 1 or a peak of 0".into());
            }
            Ok((
                peak,
                Some(json!({"type": "WarmupCosineLR", "params": {
                    "total_num_steps": call.num("decay_steps").unwrap_or(0.0) as u64,
                    "warmup_min_ratio": call.num("init_value").unwrap_or(0.0) / peak,
                    "warmup_num_steps": call.num("warmup_steps").unwrap_or(0.0) as u64,
                    "cos_min_ratio": call.num("end_value").unwrap_or(0.0) / peak,
                    "warmup_type": "linear",
                }})),
            ))
        }
        "constant_schedule" => Ok((call.num("value").unwrap_or(0.0), None)),
        other => Err(format!(
            "the schedule `{other}` (DeepSpeed has WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle and LRRangeTest)"
        )),
    }
}

/// The DeepSpeed config for `recipe`, and every part of the recipe it does not carry
/// exactly (empty when it is exact).
pub fn config(program: &Program, recipe: &Recipe) -> (Value, Vec<String>) {
    let mut lost = Vec::new();
    let mut cfg = Map::new();
    let calls: Vec<Call> = recipe
        .stages
        .iter()
        .map(|s| stage_call(program, s))
        .collect();
    let mut accumulate: Option<u64> = None;
    let mut scaler: Option<&Call> = None;
    let mut optimizer: Option<Value> = None;
    // DeepSpeed schedules only the learning rate; its betas and weight decay are numbers.
    for c in &calls {
        for (name, v) in &c.args {
            if !matches!(*name, "lr" | "learning_rate") && v.varies() {
                lost.push(format!(
                    "`{}`'s `{name}` follows a schedule (DeepSpeed's config holds it constant)",
                    c.name
                ));
            }
        }
    }
    let mut i = 0;
    while i < calls.len() {
        let c = &calls[i];
        let last = i + 1 == calls.len();
        match c.name {
            "clip_grad_norm_" | "clip_by_global_norm" if !last => {
                if c.num("norm_type").unwrap_or(2.0) != 2.0 {
                    lost.push(format!("`{}` with norm_type {} (DeepSpeed clips the 2-norm)", c.name, c.num("norm_type").unwrap_or(0.0)));
                }
                match c.num("max_norm") {
                    Some(v) if !cfg.contains_key("gradient_clipping") => {
                        cfg.insert("gradient_clipping".into(), json!(v));
                    }
                    _ => lost.push(format!("a second clipping stage `{}`", c.name)),
                }
            }
            "GradScaler" if !last => scaler = Some(c),
            "MultiSteps" if !last => accumulate = c.num("every_k_schedule").map(|k| k as u64),
            // optax adamw: scale_by_adam |> add_decayed_weights |> scale_by_learning_rate.
            "scale_by_adam"
                if calls.get(i + 1).map(|c| c.name) == Some("add_decayed_weights")
                    && calls.get(i + 2).map(|c| c.name) == Some("scale_by_learning_rate")
                    && i + 3 == calls.len() =>
            {
                let wd = &calls[i + 1];
                let lr = calls[i + 2].get("learning_rate");
                if c.num("eps_root").unwrap_or(0.0) != 0.0 || c.flag("nesterov") {
                    lost.push("adamw's eps_root or nesterov (DeepSpeed's AdamW has neither)".into());
                }
                if wd.get("mask").is_some_and(|m| !matches!(m, HyperValue::Real(x) if x.is_nan())) {
                    lost.push("adamw's weight-decay mask (set in the model's parameter groups)".into());
                }
                optimizer = Some(adam_section(program, "AdamW", lr, c.num("b1"), c.num("b2"), c.num("eps"), wd.num("weight_decay"), &mut lost, &mut cfg));
                i += 3;
                continue;
            }
            "Adam" if last => {
                if c.flag("amsgrad") || c.flag("maximize") {
                    lost.push("Adam's amsgrad or maximize (DeepSpeed's Adam has neither)".into());
                }
                let betas: Vec<f64> = match c.get("betas") {
                    Some(HyperValue::List(b)) => b.iter().filter_map(number).collect(),
                    _ => Vec::new(),
                };
                let decoupled = c.flag("decoupled_weight_decay");
                let kind = if decoupled { "AdamW" } else { "Adam" };
                let mut section = adam_section(program, kind, c.get("lr"), betas.first().copied(), betas.get(1).copied(), c.num("eps"), c.num("weight_decay"), &mut lost, &mut cfg);
                if !decoupled {
                    // DeepSpeed's Adam decouples weight decay unless told not to.
                    section["params"]["adam_w_mode"] = json!(false);
                }
                optimizer = Some(section);
            }
            "SGD" | "Adagrad" if last => {
                let (lr, sched) = match c.get("lr").map(|v| scheduler(program, v)) {
                    Some(Ok(x)) => x,
                    Some(Err(e)) => {
                        lost.push(format!("the learning rate: {e}"));
                        (0.0, None)
                    }
                    None => (0.0, None),
                };
                if let Some(s) = sched {
                    cfg.insert("scheduler".into(), s);
                }
                let mut params = Map::new();
                params.insert("lr".into(), json!(lr));
                for (k, v) in &c.args {
                    if *k == "lr" {
                        continue;
                    }
                    match (v, number(v)) {
                        (HyperValue::Bool(b), _) => {
                            params.insert((*k).into(), json!(b));
                        }
                        (_, Some(x)) if x.is_finite() => {
                            params.insert((*k).into(), json!(x));
                        }
                        _ => lost.push(format!("{}'s `{k}`", c.name)),
                    }
                }
                optimizer = Some(json!({"type": c.name, "params": params}));
            }
            other => lost.push(format!(
                "the stage `{other}` (DeepSpeed's config holds one optimizer — Adam, AdamW, SGD, Adagrad — after optional gradient clipping, loss scaling and accumulation)"
            )),
        }
        i += 1;
    }
    match optimizer {
        Some(o) => {
            cfg.insert("optimizer".into(), o);
        }
        None if lost.is_empty() => {
            lost.push("an optimizer: the recipe's chain has none DeepSpeed knows".into())
        }
        None => {}
    }
    // Precision and loss scaling.
    match (recipe.param_dtype, scaler) {
        (Dtype::F16, Some(s)) => {
            let init = s.num("init_scale").unwrap_or(65536.0);
            let power = init.log2();
            if power.fract() != 0.0 {
                lost.push(format!(
                    "GradScaler's init_scale {init} (DeepSpeed starts at a power of two)"
                ));
            }
            if s.num("growth_factor").unwrap_or(2.0) != 2.0
                || s.num("backoff_factor").unwrap_or(0.5) != 0.5
            {
                lost.push("GradScaler's growth_factor/backoff_factor other than 2 and 0.5 (DeepSpeed's are fixed)".into());
            }
            cfg.insert(
                "fp16".into(),
                json!({
                    "enabled": true,
                    "loss_scale": 0,
                    "initial_scale_power": power as i64,
                    "loss_scale_window": s.num("growth_interval").unwrap_or(2000.0) as u64,
                    "hysteresis": 1,
                    "min_loss_scale": 1,
                }),
            );
        }
        (Dtype::F16, None) => {
            cfg.insert("fp16".into(), json!({"enabled": true, "loss_scale": 0}));
        }
        (Dtype::Bf16, None) => {
            cfg.insert("bf16".into(), json!({"enabled": true}));
        }
        (_, Some(_)) => lost.push(
            "GradScaler loss scaling without f16 weights (DeepSpeed scales the loss only in fp16)"
                .into(),
        ),
        (Dtype::F32, None) => {}
    }
    // The plan.
    if let Some(p) = &recipe.parallel {
        if p.tensor > 1 {
            lost.push(format!("tensor parallelism {} (set by the model code, e.g. Megatron-DeepSpeed's --tensor-model-parallel-size)", p.tensor));
        }
        if p.pipeline > 1 {
            lost.push(format!("pipeline parallelism {} with schedule {} (set by deepspeed.pipe.PipelineModule in the model code)", p.pipeline, p.schedule.name()));
        }
        if p.checkpointing {
            lost.push(
                "activation checkpointing (the model code calls deepspeed.checkpointing)".into(),
            );
        }
        if let Some(k) = accumulate {
            if p.micro_batches != 1 && p.micro_batches != k {
                lost.push(format!(
                    "MultiSteps every {k} steps against the plan's {} micro-batches",
                    p.micro_batches
                ));
            }
        }
        let m = accumulate.unwrap_or(p.micro_batches);
        cfg.insert("gradient_accumulation_steps".into(), json!(m));
        if let Some(b) = p.micro_batch {
            cfg.insert("train_micro_batch_size_per_gpu".into(), json!(b));
            cfg.insert("train_batch_size".into(), json!(b * m * p.data));
        }
        cfg.insert("zero_optimization".into(), json!({"stage": p.zero}));
    } else if let Some(k) = accumulate {
        cfg.insert("gradient_accumulation_steps".into(), json!(k));
    }
    if let Some(d) = &recipe.data {
        if !cfg.contains_key("train_batch_size") {
            cfg.insert("train_batch_size".into(), json!(d.batch));
        }
    }
    if recipe.groups.len() > 1 {
        let names: Vec<&str> = recipe.groups.iter().map(|g| g.name.as_str()).collect();
        let differ = recipe
            .stages
            .iter()
            .any(|s| s.args.iter().any(|a| !a.same_in_every_group()));
        if differ {
            lost.push(format!("per-group hyperparameters for groups {} (parameter groups are built in the model code)", names.join(", ")));
        }
    }
    if !recipe.curriculum.is_empty() {
        lost.push("the curriculum (DeepSpeed's curriculum_learning varies sequence length; it does not choose which examples are drawn)".into());
    }
    if let Some(s) = cfg.get("scheduler") {
        let steps = s["params"]["warmup_num_steps"].as_u64().unwrap_or(0);
        lost.push(format!(
            "the warmup's first {} steps' exact rates: DeepSpeed's {} runs step 1 at rate 0 and step k at the recipe's rate of step k − 1 until the warmup ends (later steps match)",
            steps + 1,
            s["type"].as_str().unwrap_or("scheduler")
        ));
    }
    (Value::Object(cfg), lost)
}

#[allow(clippy::too_many_arguments)]
fn adam_section(
    program: &Program,
    kind: &str,
    lr: Option<&HyperValue>,
    b1: Option<f64>,
    b2: Option<f64>,
    eps: Option<f64>,
    weight_decay: Option<f64>,
    lost: &mut Vec<String>,
    cfg: &mut Map<String, Value>,
) -> Value {
    let (lr, sched) = match lr.map(|v| scheduler(program, v)) {
        Some(Ok(x)) => x,
        Some(Err(e)) => {
            lost.push(format!("the learning rate: {e}"));
            (0.0, None)
        }
        None => (1e-3, None),
    };
    if let Some(s) = sched {
        cfg.insert("scheduler".into(), s);
    }
    json!({"type": kind, "params": {
        "lr": lr,
        "betas": [b1.unwrap_or(0.9), b2.unwrap_or(0.999)],
        "eps": eps.unwrap_or(1e-8),
        "weight_decay": weight_decay.unwrap_or(0.0),
    }})
}
