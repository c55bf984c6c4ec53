//! `anneal plan` and data-parallel runs as a user runs them: the memory, communication
//! and bubble figures of a plan, and ranks as threads training like one process.

mod common;

use common::{anneal, fails_with, json_output, temp};

/// `anneal plan --json` on a recipe file.
fn plan_json(name: &str, recipe: &str, extra: &[&str]) -> serde_json::Value {
    let p = temp(name, recipe);
    let mut args = vec!["plan", p.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    json_output(&anneal(&args))
}

#[test]
fn plan_reproduces_the_zero_papers_memory_figures_from_the_recipe() {
    // Rajbhandari et al. 2020, Figure 1: 7.5B parameters on 64 data-parallel GPUs with
    // mixed-precision Adam need 120 GB per GPU unsharded, 31.4 GB with ZeRO-1, 16.6 GB with
    // ZeRO-2 and 1.9 GB with ZeRO-3. The 12 bytes of optimizer state per parameter come
    // from the recipe: AdamW's two f32 moments plus f32 master weights for bf16 storage.
    let recipe = "import std.torch.{AdamW}\nrecipe r {\n  update = AdamW(lr: 1e-3)\n  precision { params: bf16 }\n}\n";
    for (zero, gb) in [("0", 120.0), ("1", 31.4), ("2", 16.6), ("3", 1.9)] {
        let v = plan_json(
            "zero.anneal",
            recipe,
            &[
                "--params",
                "7.5e9",
                "--layers",
                "1",
                "--hidden",
                "1",
                "--heads",
                "1",
                "--seq",
                "1",
                "--world",
                "64",
                "--gpu-mem",
                "80GB",
                "--zero",
                zero,
            ],
        );
        let total = v["per_rank"]["total"].as_f64().unwrap() / 1e9;
        assert_eq!((total * 10.0).round() / 10.0, gb, "ZeRO-{zero}: {v}");
        assert_eq!(v["bytes_per_param"]["optimizer"], 12.0);
        assert_eq!(v["fits"], gb < 80.0);
        assert_eq!(v["bubble_fraction"], 0.0);
    }
    // SGD with momentum in f32: 4 bytes each of weights, gradients and momentum.
    let v = plan_json(
        "sgd_plan.anneal",
        "import std.torch.{SGD}\nrecipe r { update = SGD(lr: 0.1, momentum: 0.9) }\n",
        &[
            "--params",
            "1e9",
            "--layers",
            "4",
            "--hidden",
            "1024",
            "--seq",
            "512",
            "--world",
            "8",
            "--gpu-mem",
            "40GiB",
        ],
    );
    assert_eq!(v["bytes_per_param"]["weights"], 4.0);
    assert_eq!(v["bytes_per_param"]["optimizer"], 4.0);
    assert_eq!(v["plan"]["data"], 8);
    for key in ["params", "grads", "optimizer_state", "activations", "total"] {
        assert!(v["per_rank"][key].as_f64().unwrap() >= 0.0, "{key}: {v}");
    }
}

#[test]
fn plan_reports_the_pipeline_bubble_and_checks_the_world() {
    let recipe = "import std.optax.{adamw}\nrecipe r {\n  update = adamw(learning_rate: 1e-3)\n  parallel { data: 2, pipeline: 4, micro_batches: 12 }\n}\n";
    let shape = [
        "--params",
        "1e9",
        "--layers",
        "8",
        "--hidden",
        "2048",
        "--seq",
        "1024",
        "--gpu-mem",
        "80GiB",
    ];
    let mut args = shape.to_vec();
    args.extend(["--world", "8"]);
    let v = plan_json("bubble.anneal", recipe, &args);
    // (p − 1)/(m + p − 1) = 3/15.
    assert!(
        (v["bubble_fraction"].as_f64().unwrap() - 0.2).abs() < 1e-12,
        "{v}"
    );
    let p = temp("bubble.anneal", recipe);
    let mut bad = vec!["plan", p.to_str().unwrap()];
    bad.extend(shape);
    bad.extend(["--world", "16"]);
    fails_with(&anneal(&bad), "= 8 devices, not --world 16");
    let mut suggest = vec!["plan", p.to_str().unwrap(), "--suggest", "--json"];
    suggest.extend(shape);
    suggest.extend(["--world", "16"]);
    let plans = json_output(&anneal(&suggest));
    let plans = plans.as_array().unwrap();
    assert!(!plans.is_empty());
    for e in plans {
        let d = &e["plan"];
        let n = d["data"].as_u64().unwrap()
            * d["tensor"].as_u64().unwrap()
            * d["pipeline"].as_u64().unwrap();
        assert_eq!(n, 16, "{e}");
        assert_eq!(e["fits"], true);
    }
    let mut mem = vec!["plan", p.to_str().unwrap(), "--world", "8"];
    mem.extend(&shape[..8]);
    mem.extend(["--gpu-mem", "80 gigs"]);
    fails_with(&anneal(&mem), "unknown unit");
}

#[test]
fn ranks_as_threads_train_like_one_process_and_shard_the_state() {
    // examples/data_parallel.anneal: ZeRO-2 over 3 ranks; 64-row batches split 22/21/21.
    let one = json_output(&anneal(&[
        "run",
        "examples/data_parallel.anneal",
        "--steps",
        "60",
        "--json",
    ]));
    let three = json_output(&anneal(&[
        "run",
        "examples/data_parallel.anneal",
        "--steps",
        "60",
        "--ranks",
        "3",
        "--json",
    ]));
    let (a, b) = (
        one["final_loss"].as_f64().unwrap(),
        three["final_loss"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-4 * a, "{a} vs {b}");
    assert_eq!(three["ranks"], 3);
    assert_eq!(three["zero"], 2);
    // The MLP's 9,610 weights' two AdamW moments, a third per rank.
    assert_eq!(
        three["optimizer_state_per_rank"],
        serde_json::json!([6408, 6406, 6406])
    );
    fails_with(
        &anneal(&["run", "examples/data_parallel.anneal", "--ranks", "2"]),
        "plans data: 3, but 2 ranks are running",
    );
}
