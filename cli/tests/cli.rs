//! The `anneal` binary as a user runs it: exit codes, output formats, and bad input.

mod common;

use common::{anneal, fails_with, json_output, root, stderr, stdout, temp};
use std::path::Path;

#[test]
fn check_accepts_an_example() {
    let o = anneal(&["check", "examples/quickstart.anneal"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 recipe, 0 warnings"));
}

#[test]
fn check_reports_every_error_and_exits_1() {
    let p = temp(
        "five.anneal",
        "import std.optax.{adam}\nrecipe r {\n  schedule lr = cosine_decay_schedule(init_value: 1, decay_steps: 10)\n  update = adma(learning_rate: 0.1) |> adam(learning_rate: 0.1, b1: 2.0, beta2: 0.9)\n}\ntransform t() {\n  state s: scalar = 0\n  s = grad\n  grad = grad + s\n}\n",
    );
    let o = anneal(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for code in ["E0102", "E0121", "E0110", "E0130"] {
        assert!(err.contains(code), "missing {code} in:\n{err}");
    }
    assert!(err.contains("has 5 errors"), "{err}");
    assert!(err.contains("Help:"));
}

#[test]
fn check_json_lists_diagnostics_with_positions() {
    let p = temp(
        "one.anneal",
        "import std.optax.*\nrecipe r {\n  update = adam(learning_rate: 0.1, b1: 1.5)\n}\n",
    );
    let o = anneal(&["check", "--json", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let d = &v[0];
    assert_eq!(d["code"], "E0121");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["line"], 3);
    assert!(d["help"].as_str().unwrap().contains("b1"));
}

#[test]
fn missing_and_binary_files_are_errors_not_panics() {
    let o = anneal(&["check", "no/such/file.anneal"]);
    fails_with(&o, "cannot read no/such/file.anneal");
    let p = temp("binary.anneal", "");
    std::fs::write(&p, [0xff, 0xfe, 0x00, 0x12]).unwrap();
    let o = anneal(&["check", p.to_str().unwrap()]);
    fails_with(&o, "not UTF-8");
}

#[test]
fn schedule_json_matches_the_formula() {
    let o = anneal(&[
        "schedule",
        "examples/torch_sgd.anneal",
        "--steps",
        "65",
        "--json",
    ]);
    let v = json_output(&o);
    let lr = v["schedules"]["lr"].as_array().unwrap();
    assert_eq!(lr.len(), 65);
    // StepLR(base 0.1, step 30, gamma 0.1): 0.1 for k < 30, 0.01 for k < 60, then 0.001.
    let at = |k: usize| lr[k].as_f64().unwrap();
    assert!((at(0) - 0.1).abs() < 1e-12 && (at(29) - 0.1).abs() < 1e-12);
    assert!((at(30) - 0.01).abs() < 1e-12 && (at(64) - 0.001).abs() < 1e-12);
}

#[test]
fn schedule_plot_writes_png_and_svg() {
    for ext in ["png", "svg"] {
        let out = std::env::temp_dir().join(format!("anneal-plot-{}.{ext}", std::process::id()));
        let o = anneal(&[
            "schedule",
            "examples/quickstart.anneal",
            "--plot",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.len() > 1000);
        if ext == "png" {
            assert_eq!(&bytes[1..4], b"PNG");
        } else {
            assert!(String::from_utf8_lossy(&bytes).contains("<svg"));
        }
        let _ = std::fs::remove_file(out);
    }
    let o = anneal(&[
        "schedule",
        "examples/quickstart.anneal",
        "--plot",
        "/tmp/x.jpg",
    ]);
    fails_with(&o, ".png or .svg");
}

#[test]
fn build_emits_the_typed_ir() {
    let o = anneal(&["build", "examples/quickstart.anneal", "--emit", "ir"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ir = stdout(&o);
    assert!(ir.contains("transform std.optax.scale_by_adam"));
    assert!(ir.contains("norm(%"));
    assert!(ir.contains("stage 1: std.optax.scale_by_adam"));
    assert!(ir.contains("per-group[0.1, 0]"));
}

#[test]
fn conformance_last_line_and_json() {
    let dir = temp("case.json", "{not json")
        .parent()
        .unwrap()
        .to_path_buf();
    let good = root().join("../shared/conformance/cases/optax/optax__sgd__plain.json");
    // A case naming a function the library does not have.
    let sgd = std::fs::read_to_string(&good).unwrap();
    let missing = temp(
        "missing.json",
        &sgd.replace("\"fn\": \"sgd\"", "\"fn\": \"no_such_optimizer\""),
    );
    let o = anneal(&[
        "conformance",
        good.to_str().unwrap(),
        missing.to_str().unwrap(),
        dir.join("case.json").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert_eq!(out.lines().last(), Some("1 passed, 2 failed"), "{out}");
    assert!(out.contains("not implemented: no_such_optimizer"), "{out}");
    assert!(out.contains("malformed case file"));
    let o = anneal(&["conformance", "--json", good.to_str().unwrap()]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["passed"], 1);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["cases"][0]["name"], "optax/sgd/plain");
    assert_eq!(v["cases"][0]["status"], "passed");
}

#[test]
fn conformance_emits_recipe_source() {
    let good = root().join("../shared/conformance/cases/torch/torch__SGD__CosineAnnealingLR.json");
    let o = anneal(&["conformance", "--emit-recipe", good.to_str().unwrap()]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("import std.torch.*"));
    assert!(
        out.contains("schedule lr = CosineAnnealingLR(") && out.contains("base_lr: 0.1"),
        "{out}"
    );
    assert!(out.contains("SGD("), "{out}");
}

#[test]
fn run_trains_the_digits_mlp_and_writes_metrics_and_a_plot() {
    let dir = std::env::temp_dir().join(format!("anneal-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let metrics = dir.join("m.jsonl");
    let plot = dir.join("run.png");
    let o = anneal(&[
        "run",
        "examples/digits_mlp.anneal",
        "--model",
        "mlp:64,32,10:tanh",
        "--data",
        "examples/data/digits.csv",
        "--steps",
        "150",
        "--json",
        "--metrics",
        metrics.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let s = json_output(&o);
    assert_eq!(s["steps"], 150);
    // A tenth of the budget already separates digits far better than chance (0.1).
    assert!(s["test_accuracy"].as_f64().unwrap() > 0.8, "{s}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 150);
    let first = lines[0]["loss"].as_f64().unwrap();
    let last: f64 = lines[140..]
        .iter()
        .map(|l| l["loss"].as_f64().unwrap())
        .sum::<f64>()
        / 10.0;
    assert!(last < first / 3.0, "loss {first} -> {last}");
    assert_eq!(&std::fs::read(&plot).unwrap()[1..4], b"PNG");
}

#[test]
fn run_reads_model_and_data_from_the_recipe() {
    let o = anneal(&[
        "run",
        "examples/digits_mlp.anneal",
        "--steps",
        "40",
        "--json",
    ]);
    let s = json_output(&o);
    assert!(s["test_accuracy"].as_f64().unwrap() > 0.5, "{s}");
}

#[test]
fn run_explains_bad_models_and_data() {
    let o = anneal(&[
        "run",
        "examples/digits_mlp.anneal",
        "--model",
        "mlp:63,10:tanh",
        "--data",
        "examples/data/digits.csv",
    ]);
    fails_with(&o, "first width must be 64");
    let bad = temp("bad.csv", "a,b,target\n1,2,0\n3,x,1\n");
    let o = anneal(&[
        "run",
        "examples/digits_mlp.anneal",
        "--model",
        "mlp:2,2:tanh",
        "--data",
        bad.to_str().unwrap(),
    ]);
    fails_with(&o, "bad.csv:3:2: `x` in column `b` is not a number");
    let o = anneal(&[
        "run",
        "examples/torch_sgd.anneal",
        "--data",
        "examples/data/digits.csv",
    ]);
    assert!(stderr(&o).contains("pass --model"), "{}", stderr(&o));
}

#[test]
fn a_run_stopped_and_resumed_ends_bit_identical() {
    let base = std::env::temp_dir().join(format!("anneal-resume-{}", std::process::id()));
    let (full, part) = (base.join("full"), base.join("part"));
    let args = |steps: &str, dir: &Path| -> Vec<String> {
        [
            "run",
            "examples/mixed_schedule.anneal",
            "--model",
            "mlp:64,16,10:relu",
            "--data",
            "examples/data/digits.csv",
            "--batch",
            "32",
            "--steps",
            steps,
            "--checkpoint-dir",
            dir.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = anneal(&refs);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run(args("60", &full));
    // Stop at 23: inside the warmup and inside an accumulation cycle of MultiSteps(k = 3).
    run(args("23", &part));
    let mut resumed = args("60", &part);
    resumed.push("--resume".into());
    run(resumed);
    let a = std::fs::read(full.join("checkpoint.bin")).unwrap();
    let b = std::fs::read(part.join("checkpoint.bin")).unwrap();
    assert!(
        a == b,
        "the resumed run's weights and state differ from the uninterrupted run's"
    );

    // A damaged checkpoint is refused and left as it was.
    let mut damaged = b.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    std::fs::write(part.join("checkpoint.bin"), &damaged).unwrap();
    let mut again = args("60", &part);
    again.push("--resume".into());
    let refs: Vec<&str> = again.iter().map(String::as_str).collect();
    let o = anneal(&refs);
    fails_with(&o, "checksum does not match");
    assert_eq!(std::fs::read(part.join("checkpoint.bin")).unwrap(), damaged);
    // A truncated one too.
    std::fs::write(part.join("checkpoint.bin"), &b[..b.len() / 3]).unwrap();
    let o = anneal(&refs);
    assert!(stderr(&o).contains("refused"), "{}", stderr(&o));
    // And one from another recipe.
    std::fs::write(part.join("checkpoint.bin"), &b).unwrap();
    let mut other = again.clone();
    other[1] = "examples/digits_mlp.anneal".into();
    let refs: Vec<&str> = other.iter().map(String::as_str).collect();
    let o = anneal(&refs);
    assert!(stderr(&o).contains("different recipe"), "{}", stderr(&o));
}

#[test]
fn plot_draws_a_metrics_file_and_missing_capabilities_stop_a_run_early() {
    let m = temp("m.jsonl", "{\"step\":0,\"loss\":2.0,\"lr\":[0.1],\"grad_norm\":1.0}\n{\"step\":1,\"loss\":1.5,\"lr\":[0.1],\"grad_norm\":0.8}\n");
    let out = m.with_file_name("plot.svg");
    let o = anneal(&["plot", m.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&out).unwrap().contains("<svg"));
    let bad = temp("bad.jsonl", "{\"loss\": 1}\nnot json\n");
    let o = anneal(&["plot", bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("bad.jsonl:2: not a JSON object"),
        "{}",
        stderr(&o)
    );
    let o = anneal(&[
        "run",
        "examples/second_order.anneal",
        "--model",
        "mlp:64,10:tanh",
        "--data",
        "examples/data/digits.csv",
    ]);
    fails_with(&o, "Hessian-vector products");
}

#[test]
fn mixed_precision_skips_overflowing_steps_and_backs_off() {
    let o = anneal(&[
        "run",
        "examples/mixed_precision_digits.anneal",
        "--steps",
        "120",
        "--json",
    ]);
    let s = json_output(&o);
    // From 1e12, halving each overflowing step reaches the f16-safe range (~1e6 for
    // gradients near 1e-2 to 1) after a couple of dozen skipped steps.
    let skipped = s["skipped_steps"].as_u64().unwrap();
    assert!((10..60).contains(&skipped), "{s}");
    assert!(s["test_accuracy"].as_f64().unwrap() > 0.8, "{s}");
}

#[test]
fn standalone_models_train_and_provide_hessian_products() {
    // Sophia needs Hessian-vector products: the quadratic model computes them exactly.
    let o = anneal(&["run", "examples/sophia_quadratic.anneal", "--json"]);
    let s = json_output(&o);
    // From x = 0 the loss is ½ Σ aᵢ ≈ 7.3e3 for curvatures 1..1000 over 50 dimensions.
    assert!(s["final_loss"].as_f64().unwrap() < 1e-2, "{s}");
    // Lion on Rosenbrock from (−1.2, 1): the loss (24.2 at the start) falls.
    let o = anneal(&[
        "run",
        "examples/custom_optimizer.anneal",
        "--model",
        "rosenbrock",
        "--steps",
        "500",
        "--json",
    ]);
    let s = json_output(&o);
    assert!(s["final_loss"].as_f64().unwrap() < 24.2, "{s}");
    let o = anneal(&[
        "run",
        "examples/custom_optimizer.anneal",
        "--model",
        "quadratic:5",
        "--steps",
        "5",
    ]);
    assert!(stderr(&o).contains("quadratic:DIM:COND"), "{}", stderr(&o));
}

#[test]
fn curriculum_runs_its_phases_and_reports_them_per_step() {
    let dir = std::env::temp_dir().join(format!("anneal-cur-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let metrics = dir.join("c.jsonl");
    let o = anneal(&[
        "run",
        "examples/curriculum_digits.anneal",
        "--steps",
        "200",
        "--json",
        "--metrics",
        metrics.to_str().unwrap(),
    ]);
    let s = json_output(&o);
    assert!(s["test_accuracy"].as_f64().unwrap() > 0.8, "{s}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = |t: usize, k: &str| lines[t][k].as_f64().unwrap();
    // Phase 1: Platanios et al.'s root-2 competence, sqrt(t(1 − c0²)/T + c0²), c0 = 0.3,
    // T = 150; every drawn example is backpropagated.
    for t in [0usize, 40, 149] {
        let expect = (t as f64 * (1.0 - 0.09) / 150.0 + 0.09).sqrt();
        assert!(
            (at(t, "visible_fraction") - expect).abs() < 1e-9,
            "step {t}"
        );
        assert_eq!(at(t, "kept_fraction"), 1.0);
    }
    // Phase 2 (after 150): the whole set, OHEM keeps the hardest half of each batch.
    for t in [150usize, 199] {
        assert_eq!(at(t, "visible_fraction"), 1.0);
        assert_eq!(at(t, "kept_fraction"), 0.5);
    }
    // Self-paced learning draws only examples whose loss is at most λ = 2 (at the start,
    // the untrained model's losses are near ln 10 ≈ 2.3).
    assert!(
        at(0, "mean_difficulty") <= 2.0,
        "{}",
        at(0, "mean_difficulty")
    );
    assert!(at(0, "mean_difficulty") > 0.5);
    // The same seed draws the same batches.
    let again = anneal(&[
        "run",
        "examples/curriculum_digits.anneal",
        "--steps",
        "200",
        "--json",
    ]);
    let s2: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(s["final_loss"], s2["final_loss"]);
}

#[test]
fn curriculum_on_a_missing_column_names_the_file_and_the_columns() {
    let recipe = temp(
        "colcur.anneal",
        "import std.optax.{adam}\nrecipe r {\n  steps 5\n  model = mlp(layers: [4, 3])\n  data = csv(file: \"data/iris.csv\", batch: 8)\n  curriculum {\n    difficulty = column(\"petal_size\")\n    pace = linear(start: 0.5, total_steps: 4)\n  }\n  update = adam(learning_rate: 0.01)\n}\n",
    );
    let o = anneal(&["run", recipe.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("iris.csv") && e.contains("petal_size") && e.contains("petal_length"),
        "{e}"
    );
}

#[test]
fn bench_json_has_the_documented_keys() {
    let o = anneal(&[
        "bench",
        "benches/recipes/clip_adamw_finite.anneal",
        "--params",
        "100000",
        "--threads",
        "2",
        "--json",
    ]);
    let v = json_output(&o);
    for key in [
        "backend",
        "params",
        "threads",
        "step_ms",
        "gbps",
        "roofline_gbps",
        "ratio",
        "unfused_ratio",
        "compile_ms",
        "passes",
        "bytes_per_param",
    ] {
        assert!(v.get(key).is_some(), "missing `{key}` in {v}");
    }
    assert_eq!(v["backend"], "cranelift");
    assert_eq!(v["passes"], 2);
    // clip_grad_norm_ + AdamW + a finite check: grad read for the norm, then the
    // AdamW-shaped map (read 4, write 3).
    assert_eq!(v["bytes_per_param"], 32);
    assert!(v["gbps"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_on_matrices_counts_the_products_of_newton_schulz() {
    let v = json_output(&anneal(&[
        "bench",
        "benches/recipes/muon.anneal",
        "--shapes",
        "32x32*2,32x64",
        "--threads",
        "2",
        "--json",
    ]));
    // Five Newton–Schulz rounds of X Xᵀ, A A and (b A + c A²) X for each matrix, the
    // 32 × 64 one the wide way round: 2·m·k·n operations per product.
    let round = |r: f64, c: f64| 2.0 * (r * c * r + r * r * r + r * r * c);
    let want = 5.0 * (2.0 * round(32.0, 32.0) + round(32.0, 64.0)) / 1e9;
    assert_eq!(v["products"], 45, "{v}");
    assert!((v["gflop"].as_f64().unwrap() - want).abs() < 1e-12, "{v}");
    assert_eq!(
        (v["tensors"].as_u64(), v["params"].as_u64()),
        (Some(3), Some(4096))
    );
    for key in ["step_ms", "gemm_ms", "step_gflops", "gemm_gflops", "ratio"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "`{key}` in {v}");
    }
    fails_with(
        &anneal(&["bench", "benches/recipes/muon.anneal", "--shapes", "32x"]),
        "is not a shape",
    );
    fails_with(
        &anneal(&["bench", "benches/recipes/adamw.anneal", "--shapes", "8x8"]),
        "computes no matrix products",
    );
}

#[test]
fn build_explain_lists_passes_and_refuses_what_does_not_fuse() {
    let v = json_output(&anneal(&[
        "build",
        "benches/recipes/adamw.anneal",
        "--explain",
        "--json",
    ]));
    assert_eq!(v["passes"].as_array().unwrap().len(), 1);
    assert_eq!(v["bytes_per_param"], 28);
    // L-BFGS is runtime code (line searches, a history), not a fused kernel.
    let lbfgs = temp(
        "lbfgs.anneal",
        "import std.torch.{LBFGS}\nrecipe r { update = LBFGS(lr: 1) }\n",
    );
    let o = anneal(&["build", lbfgs.to_str().unwrap(), "--explain"]);
    fails_with(&o, "has no fused step");
}

#[test]
fn bench_and_export_refuse_bad_input_with_a_message() {
    fails_with(
        &anneal(&["bench", "benches/recipes/adamw.anneal", "--params", "0"]),
        "out of range",
    );
    fails_with(
        &anneal(&[
            "export",
            "examples/sharpness_aware.anneal",
            "-o",
            "target/x",
        ]),
        "cannot be exported",
    );
    fails_with(
        &anneal(&["export", "does/not/exist.anneal", "-o", "target/x"]),
        "exist.anneal",
    );
}

#[test]
fn label_noise_and_periodic_test_accuracy_feed_a_multi_run_plot() {
    let dir = std::env::temp_dir().join(format!("anneal-noise-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for r in ["uniform", "ohem"] {
        let m = dir.join(format!("{r}.jsonl"));
        let o = anneal(&[
            "run",
            &format!("examples/curriculum/{r}.anneal"),
            "--steps",
            "40",
            "--eval-every",
            "10",
            "--metrics",
            m.to_str().unwrap(),
            "--json",
        ]);
        let summary = json_output(&o);
        let text = std::fs::read_to_string(&m).unwrap();
        let evals: Vec<(u64, f64)> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|v| Some((v["step"].as_u64()?, v["test_accuracy"].as_f64()?)))
            .collect();
        assert_eq!(
            evals.iter().map(|e| e.0).collect::<Vec<_>>(),
            [9, 19, 29, 39],
            "{text}"
        );
        // The last evaluation is the summary's test accuracy.
        assert_eq!(Some(evals[3].1), summary["test_accuracy"].as_f64());
        files.push(m);
    }
    let png = dir.join("acc.png");
    let mut args = vec!["plot"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    args.extend(["--metric", "test_accuracy", "-o", png.to_str().unwrap()]);
    let o = anneal(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
    // A metric no file has is an error naming the file and the metrics there are.
    let o = anneal(&[
        "plot",
        files[0].to_str().unwrap(),
        "--metric",
        "accuracy",
        "-o",
        png.to_str().unwrap(),
    ]);
    fails_with(&o, "has no `accuracy`");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn label_noise_needs_a_share_and_a_classifier() {
    fails_with(
        &anneal(&["run", "examples/digits_mlp.anneal", "--label-noise", "1.5"]),
        "out of range",
    );
    fails_with(
        &anneal(&[
            "run",
            "examples/digits_mlp.anneal",
            "--model",
            "linear:64,1",
            "--label-noise",
            "0.1",
            "--steps",
            "2",
        ]),
        "needs a classifier",
    );
}

#[test]
fn a_curriculum_run_stopped_and_resumed_ends_bit_identical() {
    let base = std::env::temp_dir().join(format!("anneal-cresume-{}", std::process::id()));
    let (full, part) = (base.join("full"), base.join("part"));
    let run = |steps: &str, dir: &Path, resume: bool| {
        let mut a = vec![
            "run",
            "examples/curriculum_digits.anneal",
            "--steps",
            steps,
            "--checkpoint-dir",
            dir.to_str().unwrap(),
        ];
        if resume {
            a.push("--resume");
        }
        let o = anneal(&a);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run("200", &full, false);
    // Stop at 137: inside the self-paced phase, between loss refreshes (every 25), before
    // the OHEM phase at 150.
    run("137", &part, false);
    run("200", &part, true);
    let a = std::fs::read(full.join("checkpoint.bin")).unwrap();
    let b = std::fs::read(part.join("checkpoint.bin")).unwrap();
    assert!(
        a == b,
        "the resumed curriculum run differs from the uninterrupted one"
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn sgdr_cycles_restart_at_their_lengths_and_one_item_lists_serve_every_cycle() {
    // Cycles of 2 and 4 counts, no warmup, peak 1, end 0: within a cycle of length L the
    // value is ½(1 + cos(π·t/L)) at its own count t; the last cycle then holds 0.
    let p = temp(
        "sgdr.anneal",
        "import std.optax.{sgdr_schedule}\nrecipe r {\n  schedule lr = sgdr_schedule(init_value: [0], \
         peak_value: [1], warmup_steps: [0], decay_steps: [2, 4])\n}\n",
    );
    let v = json_output(&anneal(&[
        "schedule",
        p.to_str().unwrap(),
        "--steps",
        "8",
        "--json",
    ]));
    let got: Vec<f64> = v["schedules"]["lr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let half_cos = |t: f64, l: f64| 0.5 * (1.0 + (std::f64::consts::PI * t / l).cos());
    let want = [
        half_cos(0.0, 2.0),
        half_cos(1.0, 2.0),
        half_cos(0.0, 4.0),
        half_cos(1.0, 4.0),
        half_cos(2.0, 4.0),
        half_cos(3.0, 4.0),
        0.0,
        0.0,
    ];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
    }
}
