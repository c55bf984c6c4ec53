//! `anneal run` on recipes that follow the training loss: the loop hands each step's loss
//! to ReduceLROnPlateau (as a metric) and to stages that read `loss` (polyak_sgd), the same
//! on the interpreter and on Cranelift.

mod common;

use common::{anneal, json_output, root, temp};
use std::path::Path;

/// torch.optim.lr_scheduler.ReduceLROnPlateau (mode "min", threshold_mode "rel", no
/// cooldown, min_lr 0), written from torch's documentation: the rate of each step, the
/// one before that step's metric is observed.
fn plateau_rates(
    base: f64,
    factor: f64,
    patience: usize,
    threshold: f64,
    metrics: &[f64],
) -> Vec<f64> {
    let (mut lr, mut best, mut bad) = (base, f64::INFINITY, 0usize);
    let mut out = Vec::new();
    for &m in metrics {
        out.push(lr);
        if m < best * (1.0 - threshold) {
            best = m;
            bad = 0;
        } else {
            bad += 1;
        }
        if bad > patience {
            if lr - lr * factor > 1e-8 {
                lr *= factor;
            }
            bad = 0;
        }
    }
    out
}

/// `anneal run RECIPE --metrics` on the interpreter and on Cranelift: each back end's
/// metrics lines.
fn metrics_on_two_back_ends(recipe: &Path) -> Vec<(&'static str, Vec<serde_json::Value>)> {
    ["interp", "cranelift"]
        .into_iter()
        .map(|backend| {
            let metrics = recipe.with_extension(format!("{backend}.jsonl"));
            let o = anneal(&[
                "run",
                recipe.to_str().unwrap(),
                "--backend",
                backend,
                "--json",
                "--metrics",
                metrics.to_str().unwrap(),
            ]);
            json_output(&o);
            let lines = std::fs::read_to_string(&metrics)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            (backend, lines)
        })
        .collect()
}

#[test]
fn run_follows_the_training_loss_with_reduce_lr_on_plateau() {
    let recipe = temp(
        "plateau.anneal",
        "import std.torch.{AdamW, ReduceLROnPlateau}\nrecipe plateau {\n  steps 120\n  model = mlp(layers: [64, 16, 10], activation: \"tanh\")\n  data = csv(file: \"EXAMPLES/data/digits.csv\", standardize: true, batch: 32, test_fraction: 0.2)\n  schedule lr = ReduceLROnPlateau(base_lr: 1e-2, factor: 0.5, patience: 3, threshold: 0.05)\n  update = AdamW(lr: lr)\n}\n"
            .replace("EXAMPLES", root().join("examples").to_str().unwrap())
            .as_str(),
    );
    let mut runs = Vec::new();
    for (backend, lines) in metrics_on_two_back_ends(&recipe) {
        let series = |key: &str| -> Vec<f64> {
            lines
                .iter()
                .map(|l| {
                    let v = &l[key];
                    v.as_f64()
                        .or_else(|| v[0].as_f64())
                        .unwrap_or_else(|| panic!("{key} in {l}"))
                })
                .collect()
        };
        // The loss is an f32 printed in JSON: round it back to the f32 the run observed.
        let loss: Vec<f64> = series("loss")
            .iter()
            .map(|l| f64::from(*l as f32))
            .collect();
        let lr = series("lr");
        assert_eq!(lr.len(), 120);
        let expected = plateau_rates(1e-2, 0.5, 3, 0.05, &loss);
        for (t, (a, e)) in lr.iter().zip(&expected).enumerate() {
            assert!(
                (a - e).abs() <= 1e-12 * e,
                "{backend} step {t}: lr {a}, torch's rule {e}"
            );
        }
        // The plateau was reached: the rate fell at least once.
        assert!(lr[119] < 1e-2, "{backend}: {lr:?}");
        runs.push(loss);
    }
    assert_eq!(
        runs[0], runs[1],
        "cranelift and the interpreter trained differently"
    );
}

#[test]
fn run_gives_polyak_sgd_the_training_loss() {
    // polyak_sgd reads `loss`: the run provides each step's training loss, and the step
    // size (loss − f_min)/‖g‖², capped at max_learning_rate, takes the loss down.
    let recipe = temp(
        "polyak.anneal",
        "import std.optax.{polyak_sgd}\nrecipe polyak {\n  steps 60\n  model = mlp(layers: [64, 16, 10], activation: \"tanh\")\n  data = csv(file: \"EXAMPLES/data/digits.csv\", standardize: true, batch: 32, test_fraction: 0.2)\n  update = polyak_sgd(max_learning_rate: 0.5)\n}\n"
            .replace("EXAMPLES", root().join("examples").to_str().unwrap())
            .as_str(),
    );
    let mut runs = Vec::new();
    for (backend, lines) in metrics_on_two_back_ends(&recipe) {
        let loss: Vec<f64> = lines.iter().map(|l| l["loss"].as_f64().unwrap()).collect();
        assert_eq!(loss.len(), 60);
        let head: f64 = loss[..10].iter().sum::<f64>() / 10.0;
        let tail: f64 = loss[50..].iter().sum::<f64>() / 10.0;
        assert!(tail < 0.5 * head, "{backend}: loss {head} -> {tail}");
        runs.push(loss);
    }
    assert_eq!(
        runs[0], runs[1],
        "cranelift and the interpreter trained differently"
    );
}
