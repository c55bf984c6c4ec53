//! `anneal export --target deepspeed`: what a recipe becomes in a DeepSpeed config, what it
//! refuses to drop, and — when `import deepspeed` works (pip install deepspeed; CPU is
//! enough) — what DeepSpeed's own parser and scheduler make of the file.

mod common;

use common::{anneal, root, stderr as err};
use std::path::PathBuf;
use std::process::{Command, Output};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anneal-ds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// Exports `recipe` (a file under the repo, or text) and reads the JSON written.
fn export(recipe: &str, name: &str, extra: &[&str]) -> (Output, Option<serde_json::Value>) {
    let file = if recipe.ends_with(".anneal") {
        recipe.to_string()
    } else {
        let p = temp(&format!("{name}.anneal"));
        std::fs::write(&p, recipe).expect("write recipe");
        p.display().to_string()
    };
    let out = temp(&format!("{name}.json"));
    let _ = std::fs::remove_file(&out);
    let mut args = vec!["export", file.as_str(), "--target", "deepspeed", "-o"];
    let out_s = out.display().to_string();
    args.push(&out_s);
    args.extend_from_slice(extra);
    let o = anneal(&args);
    let v = std::fs::read_to_string(&out)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("the config is JSON"));
    (o, v)
}

#[test]
fn the_zero2_example_maps_every_setting_and_says_what_the_warmup_loses() {
    let (o, v) = export("examples/deepspeed_zero2.anneal", "zero2", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(v.is_none(), "nothing is written without --allow-lossy");
    let e = err(&o);
    assert!(e.contains("WarmupCosineLR runs step 1 at rate 0"), "{e}");
    assert!(e.contains("--allow-lossy"), "{e}");
    let (o, v) = export(
        "examples/deepspeed_zero2.anneal",
        "zero2",
        &["--allow-lossy"],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("warning: the config does not carry"));
    let v = v.expect("written");
    // The recipe's own numbers, each where DeepSpeed reads it.
    assert_eq!(v["zero_optimization"]["stage"], 2);
    assert_eq!(v["train_micro_batch_size_per_gpu"], 16);
    assert_eq!(v["gradient_accumulation_steps"], 4);
    assert_eq!(v["train_batch_size"], 16 * 4 * 8);
    assert_eq!(v["gradient_clipping"], 1.0);
    assert_eq!(v["optimizer"]["type"], "AdamW");
    assert_eq!(v["optimizer"]["params"]["lr"], 1e-4);
    assert_eq!(
        v["optimizer"]["params"]["betas"],
        serde_json::json!([0.9, 0.98])
    );
    assert_eq!(v["optimizer"]["params"]["eps"], 1e-6);
    assert_eq!(v["optimizer"]["params"]["weight_decay"], 0.01);
    // GradScaler(init_scale 2^16, growth_interval 1000), backing off at once as torch does.
    assert_eq!(v["fp16"]["initial_scale_power"], 16);
    assert_eq!(v["fp16"]["loss_scale_window"], 1000);
    assert_eq!(v["fp16"]["hysteresis"], 1);
    assert_eq!(v["fp16"]["loss_scale"], 0);
    // SequentialLR(LinearLR 0.01 over 500, CosineAnnealingLR T_max 9500 to 1e-6).
    let s = &v["scheduler"];
    assert_eq!(s["type"], "WarmupCosineLR");
    assert_eq!(s["params"]["total_num_steps"], 10_000);
    assert_eq!(s["params"]["warmup_num_steps"], 500);
    assert_eq!(s["params"]["warmup_min_ratio"], 0.01);
    assert!((s["params"]["cos_min_ratio"].as_f64().unwrap() - 0.01).abs() < 1e-15);
}

#[test]
fn what_the_config_cannot_carry_is_listed_not_dropped() {
    let (o, v) = export("examples/gpt_plan.anneal", "gpt", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(v.is_none());
    let e = err(&o);
    for item in [
        "tensor parallelism 2",
        "pipeline parallelism 4",
        "activation checkpointing",
    ] {
        assert!(e.contains(item), "{item}: {e}");
    }
    let (o, _) = export(
        "import std.optax.{adam}\nrecipe r {\n  update = adam(learning_rate: 1e-3)\n  curriculum { difficulty = loss  pace = linear(start: 0.2, total_steps: 100) }\n}\n",
        "curriculum",
        &[],
    );
    assert!(err(&o).contains("the curriculum"), "{}", err(&o));
    let (o, _) = export(
        "import std.optax.{lion}\nrecipe r { update = lion(learning_rate: 1e-4) }\n",
        "lion",
        &[],
    );
    assert!(err(&o).contains("the stage `scale_by_lion`"), "{}", err(&o));
    // A scheduled beta or weight decay has no place in DeepSpeed's config: named, not
    // exported as its first value.
    let (o, v) = export(
        "import std.optax.{adamw, linear_schedule}\nrecipe r {\n  update = adamw(learning_rate: 1e-3, b1: linear_schedule(init_value: 0.5, end_value: 0.9, transition_steps: 100), weight_decay: 0.1 * linear_schedule(init_value: 1, end_value: 0, transition_steps: 100))\n}\n",
        "scheduled_betas",
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(v.is_none());
    for item in [
        "`scale_by_adam`'s `b1` follows a schedule",
        "`add_decayed_weights`'s `weight_decay` follows a schedule",
    ] {
        assert!(err(&o).contains(item), "{item}: {}", err(&o));
    }
}

#[test]
fn exact_recipes_export_without_a_flag() {
    // A constant rate, torch Adam with L2 decay (DeepSpeed's Adam needs adam_w_mode off),
    // ZeRO-1 over 4 data ranks.
    let (o, v) = export(
        "import std.torch.{Adam}\nrecipe r {\n  update = Adam(lr: 3e-4, weight_decay: 1e-4)\n  parallel { data: 4, zero: 1, micro_batch: 8, micro_batches: 2 }\n}\n",
        "adam_l2",
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    let v = v.expect("written");
    assert_eq!(v["optimizer"]["type"], "Adam");
    assert_eq!(v["optimizer"]["params"]["adam_w_mode"], false);
    assert_eq!(v["optimizer"]["params"]["weight_decay"], 1e-4);
    assert!(v.get("scheduler").is_none());
    assert_eq!(v["train_batch_size"], 64);
    assert_eq!(v["zero_optimization"]["stage"], 1);
    // optax's adamw chain (scale_by_adam |> add_decayed_weights |> scale_by_learning_rate).
    let (o, v) = export(
        "import std.optax.{adamw}\nrecipe r {\n  update = adamw(learning_rate: 1e-3, b2: 0.95, weight_decay: 0.1)\n  precision { params: bf16 }\n}\n",
        "optax_adamw",
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    let v = v.expect("written");
    assert_eq!(v["optimizer"]["type"], "AdamW");
    assert_eq!(
        v["optimizer"]["params"]["betas"],
        serde_json::json!([0.9, 0.95])
    );
    assert_eq!(v["bf16"]["enabled"], true);
}

fn have_deepspeed() -> bool {
    Command::new("python3")
        .args(["-c", "import deepspeed"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn deepspeeds_own_parser_and_scheduler_read_the_config_as_the_recipe_means_it() {
    if !have_deepspeed() {
        eprintln!("skipped: `import deepspeed` fails here (pip install deepspeed to run this)");
        return;
    }
    let (o, v) = export(
        "examples/deepspeed_zero2.anneal",
        "parsed",
        &["--allow-lossy"],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(v.is_some());
    let steps = 1200;
    let parsed = Command::new("python3")
        .arg(root().join("cli/tests/deepspeed/parse_config.py"))
        .arg(temp("parsed.json"))
        .arg("8")
        .arg(steps.to_string())
        .output()
        .expect("python3");
    assert!(parsed.status.success(), "{}", err(&parsed));
    let text = String::from_utf8_lossy(&parsed.stdout);
    let line = |tag: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(tag))
            .unwrap_or_else(|| panic!("no {tag}line in:\n{text}"))
            .to_string()
    };
    let cfg: serde_json::Value = serde_json::from_str(&line("CONFIG ")).unwrap();
    let ds_lrs: Vec<f64> = serde_json::from_str(&line("RATES ")).unwrap();
    assert_eq!(cfg["train_batch_size"], 512);
    assert_eq!(cfg["zero_stage"], 2);
    assert_eq!(cfg["fp16"], true);
    assert_eq!(cfg["optimizer"], "adamw");
    assert_eq!(cfg["fp16_config"]["initial_scale_power"], 16);
    // The recipe's rates, step by step, from anneal.
    let o = anneal(&[
        "schedule",
        "examples/deepspeed_zero2.anneal",
        "--steps",
        &steps.to_string(),
        "--json",
    ]);
    let ours: serde_json::Value = serde_json::from_slice(&o.stdout).expect("schedule JSON");
    let ours: Vec<f64> = ours["schedules"]["lr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    // As reported: step 1 at 0, warmup steps one late, then the same rates.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 + 1e-9 * b.abs();
    assert_eq!(ds_lrs[0], 0.0);
    for k in 1..=500 {
        assert!(
            close(ds_lrs[k], ours[k - 1]),
            "step {k}: {} vs {}",
            ds_lrs[k],
            ours[k - 1]
        );
    }
    for k in 501..steps {
        assert!(
            close(ds_lrs[k], ours[k]),
            "step {k}: {} vs {}",
            ds_lrs[k],
            ours[k]
        );
    }
}
