//! What people coming from other tools write as a recipe item (`accumulate 8`,
//! `gradient_accumulation_steps: 8`, `clip 1.0`, `warmup 500`, `fp16`): one E0169
//! diagnostic naming the anneal spelling, else a did-you-mean over the recipe items.
//! Entry point: `unknown_item`.

use crate::ast::Ident;
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::source::Span;

/// The recipe items, as the grammar has them.
const ITEMS: [&str; 9] = [
    "steps",
    "schedule",
    "groups",
    "update",
    "model",
    "data",
    "precision",
    "curriculum",
    "parallel",
];

/// The diagnostic for a recipe line that is no item: `name` its first word, `rest` what
/// follows it on the line.
pub(crate) fn unknown_item(name: &Ident, rest: &str, span: Span) -> Diagnostic {
    // The value as other tools write it, `k 8`, `k = 8` or `k: 8`, for the suggestion.
    let value = rest.trim_start_matches(['=', ':']).trim();
    let or = |default: &str| {
        if value.is_empty() || value.contains(char::is_whitespace) {
            default.to_string()
        } else {
            value.to_string()
        }
    };
    let word = name.name.to_lowercase();
    let (message, help) = match foreign(&word) {
        Some(Foreign::Accumulation) => (
            "gradient accumulation is a stage of the update chain".to_string(),
            format!(
                "write `update = MultiSteps(every_k_schedule: {}) |> AdamW(...)` (std.optax): the \
                 stages after it run once every k steps, on the mean of the k gradients",
                or("8")
            ),
        ),
        Some(Foreign::Clipping) => (
            "gradient clipping is a stage at the head of the update chain".to_string(),
            format!(
                "write `update = clip_grad_norm_(max_norm: {}) |> AdamW(...)` (std.torch) or \
                 `clip_by_global_norm(max_norm: ...)` (std.optax); `clip_grad_value_` and optax \
                 `clip` clip each element",
                or("1.0")
            ),
        ),
        Some(Foreign::Warmup) => (
            "a warmup is part of a learning-rate schedule".to_string(),
            format!(
                "write `schedule lr = warmup(base: CosineAnnealingLR(base_lr: 1e-3, T_max: 10_000), \
                 warmup_steps: {})` (std.schedule) and pass `lr: lr` to the optimizer, or use a \
                 schedule with its own warmup such as `get_cosine_schedule_with_warmup` (std.hf)",
                or("1000")
            ),
        ),
        Some(Foreign::Precision(dtype)) => (
            "mixed precision is the `precision` item".to_string(),
            format!(
                "write `precision {{ params: {dtype}, master: f32 }}` (weights stored in {dtype}, \
                 updated in f32){}",
                if dtype == "f16" {
                    "; fp16 loss scaling is the `GradScaler(...)` stage at the chain's head"
                } else {
                    ""
                }
            ),
        ),
        Some(Foreign::LearningRate) => (
            "the learning rate is an argument of the optimizer".to_string(),
            format!(
                "write `update = AdamW(lr: {})`, or bind a schedule, `schedule lr = ...`, and pass \
                 `lr: lr`",
                or("1e-3")
            ),
        ),
        Some(Foreign::Hyperparameter) => (
            format!("`{}` is an argument of the optimizer", name.name),
            format!(
                "pass it in the update chain, e.g. `update = {}`; `anneal doc {}` lists an \
                 optimizer's arguments",
                example_call(&word, &or("...")),
                if matches!(word.as_str(), "momentum" | "nesterov") { "SGD" } else { "AdamW" }
            ),
        ),
        Some(Foreign::Length) => (
            "the length of a run is the `steps` item".to_string(),
            if word.contains("epoch") {
                "write `steps 10_000`: updates, not epochs (an epoch is the data's rows / `batch`)"
                    .to_string()
            } else {
                format!("write `steps {}`", or("10_000"))
            },
        ),
        Some(Foreign::Batch) => (
            "the batch size is an argument of the data".to_string(),
            format!(
                "write `data = csv(file: \"...\", batch: {})`; with a `parallel` plan, \
                 `micro_batches` splits it",
                or("32")
            ),
        ),
        Some(Foreign::Scheduler) => (
            "a schedule is bound with `schedule NAME = ...`".to_string(),
            "write `schedule lr = CosineAnnealingLR(base_lr: 1e-3, T_max: 10_000)` and pass \
             `lr: lr` to the optimizer"
                .to_string(),
        ),
        Some(Foreign::Parallel) => (
            "parallelism is the `parallel` item".to_string(),
            "write `parallel { data: 8, zero: 1 }` (degrees `data`, `tensor`, `pipeline`; ZeRO \
             stage `zero`)"
                .to_string(),
        ),
        Some(Foreign::Seed) => (
            "the seed is not part of a recipe".to_string(),
            "give it to the run: `anneal run FILE --seed 1`".to_string(),
        ),
        None => match did_you_mean(&name.name, ITEMS) {
            Some(item) => (
                format!("unknown recipe item `{}`", name.name),
                format!("did you mean `{item}`?"),
            ),
            None => (
                format!("unknown recipe item `{}`", name.name),
                format!("a recipe holds {}", ITEMS.map(|i| format!("`{i}`")).join(", ")),
            ),
        },
    };
    let message = if message.starts_with("unknown") {
        message
    } else {
        format!("`{}` is not a recipe item: {message}", name.name)
    };
    Diagnostic::error("E0169", span, message)
        .with_label("not a recipe item")
        .with_help(help)
}

/// What another tool's setting of this name is.
#[derive(Debug, PartialEq)]
enum Foreign {
    Accumulation,
    Clipping,
    Warmup,
    Precision(&'static str),
    LearningRate,
    Hyperparameter,
    Length,
    Batch,
    Scheduler,
    Parallel,
    Seed,
}

fn foreign(word: &str) -> Option<Foreign> {
    Some(match word {
        "accumulate"
        | "accumulation"
        | "gradient_accumulation_steps"
        | "gradient_accumulation"
        | "grad_accum"
        | "grad_accum_steps"
        | "accumulate_grad_batches"
        | "accum_steps"
        | "accumulation_steps" => Foreign::Accumulation,
        "clip" | "clipping" | "clip_grad" | "clip_grad_norm" | "gradient_clipping"
        | "grad_clip" | "max_grad_norm" | "clip_norm" | "grad_norm_clip" => Foreign::Clipping,
        "warmup" | "warmup_steps" | "num_warmup_steps" | "warmup_ratio" | "lr_warmup"
        | "warmup_iters" => Foreign::Warmup,
        "fp16" | "f16" | "half" | "amp" | "mixed_precision" | "float16" => {
            Foreign::Precision("f16")
        }
        "bf16" | "bfloat16" => Foreign::Precision("bf16"),
        "lr" | "learning_rate" | "base_lr" | "max_lr" => Foreign::LearningRate,
        "weight_decay" | "momentum" | "betas" | "beta1" | "beta2" | "eps" | "epsilon"
        | "nesterov" => Foreign::Hyperparameter,
        "epochs" | "num_epochs" | "max_epochs" | "max_steps" | "total_steps"
        | "num_training_steps" | "num_train_steps" | "train_steps" | "iterations" | "max_iters"
        | "n_steps" | "step" => Foreign::Length,
        "batch_size"
        | "batch"
        | "train_batch_size"
        | "micro_batch_size"
        | "per_device_train_batch_size"
        | "train_micro_batch_size_per_gpu" => Foreign::Batch,
        "scheduler" | "lr_scheduler" | "lr_schedule" | "lr_scheduler_type" => Foreign::Scheduler,
        "zero_optimization" | "zero_stage" | "zero" | "data_parallel" | "tensor_parallel"
        | "pipeline_parallel" | "world_size" | "distributed" => Foreign::Parallel,
        "seed" | "random_seed" => Foreign::Seed,
        _ => return None,
    })
}

/// A torch optimizer call that takes the hyperparameter `word` (as torch names it).
fn example_call(word: &str, value: &str) -> String {
    match word {
        "momentum" | "nesterov" => format!("SGD(lr: 0.1, {word}: {value})"),
        "beta1" | "beta2" | "betas" => "AdamW(lr: 1e-3, betas: [0.9, 0.999])".to_string(),
        "epsilon" | "eps" => format!("AdamW(lr: 1e-3, eps: {value})"),
        w => format!("AdamW(lr: 1e-3, {w}: {value})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_word_is_left_to_the_grammar() {
        // A word that is an item must never be explained away as a foreign setting.
        for item in ITEMS {
            assert_eq!(foreign(item), None, "{item}");
        }
    }
}
