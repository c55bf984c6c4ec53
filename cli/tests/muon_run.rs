//! `anneal run` trains the digits MLP with Muon (examples/muon_digits.anneal: optax's
//! contrib.muon, Newton–Schulz on the weight matrices, Adam on the biases): the loss
//! falls, the test accuracy is far above chance, and every CPU back end follows the
//! interpreter's run (matrices are evaluated by one evaluator for all; only reductions'
//! f64 summation order differs).

mod common;

use common::{anneal, json_output};

fn run(backend: &str, metrics: &std::path::Path) -> serde_json::Value {
    let o = anneal(&[
        "run",
        "examples/muon_digits.anneal",
        "--steps",
        "60",
        "--backend",
        backend,
        "--json",
        "--metrics",
        metrics.to_str().unwrap(),
    ]);
    json_output(&o)
}

#[test]
fn muon_trains_the_digits_mlp_the_same_on_every_cpu_back_end() {
    let dir = std::env::temp_dir().join(format!("anneal-muon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut losses = Vec::new();
    for backend in ["interp", "cranelift", "llvm"] {
        let metrics = dir.join(format!("{backend}.jsonl"));
        let s = run(backend, &metrics);
        assert_eq!(s["steps"], 60, "{s}");
        assert!(s["test_accuracy"].as_f64().unwrap() > 0.8, "{backend}: {s}");
        let curve: Vec<f64> = std::fs::read_to_string(&metrics)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        assert!(
            curve[59] < curve[0] / 3.0,
            "{backend}: loss {} -> {}",
            curve[0],
            curve[59]
        );
        losses.push((backend, curve));
    }
    for (backend, curve) in &losses[1..] {
        for (k, (a, b)) in curve.iter().zip(&losses[0].1).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{backend} at step {}: loss {a}, the interpreter's {b}",
                k + 1
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
