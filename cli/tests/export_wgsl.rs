//! `anneal export --target wgsl`: the shaders and manifest it writes run, through the
//! host in examples/wgsl_host (which reads nothing but those files), to the numbers the
//! interpreter computes, across the library; recipes it cannot describe are refused with
//! the reason. GPU tests fail under CI (which installs lavapipe) and are skipped
//! elsewhere when there is no GPU.

mod common;

use common::{anneal, stderr};
use std::path::{Path, PathBuf};

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("anneal-wgsl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Exports `chain` with a reference of `steps` steps into a fresh folder.
fn export(name: &str, chain: &str, steps: usize) -> PathBuf {
    let dir = out_dir(name);
    let recipe = dir.join("r.anneal");
    std::fs::write(
        &recipe,
        format!("import std.optax.*\nimport std.torch.*\nimport std.research.*\nrecipe {name} {{ update = {chain} }}\n"),
    )
    .unwrap();
    let out = anneal(&[
        "export",
        recipe.to_str().unwrap(),
        "--target",
        "wgsl",
        "-o",
        dir.to_str().unwrap(),
        "--reference",
        &steps.to_string(),
    ]);
    assert!(out.status.success(), "{chain}: {}", stderr(&out));
    dir
}

/// The interpreter's values from NAME.reference.txt: per step, per tensor, per element.
fn reference(path: &Path) -> Vec<Vec<Vec<f32>>> {
    let mut out: Vec<Vec<Vec<f32>>> = Vec::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (k, t, x): (usize, usize, f32) = (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[3].parse().unwrap(),
        );
        while out.len() < k {
            out.push(Vec::new());
        }
        while out[k - 1].len() <= t {
            out[k - 1].push(Vec::new());
        }
        out[k - 1][t].push(x);
    }
    out
}

#[test]
fn exported_shaders_match_the_interpreter_across_the_library() {
    if anneal_compiler::backends::gpu::for_tests().is_none() {
        return;
    }
    let chains = [
        "sgd(learning_rate: 0.1, momentum: 0.9, nesterov: true)",
        "clip_by_global_norm(max_norm: 1.0) |> adamw(learning_rate: 0.05, weight_decay: 0.01)",
        "clip(max_delta: 0.3) |> adam(learning_rate: 0.05)",
        "add_decayed_weights(weight_decay: 0.1) |> lion(learning_rate: 0.01)",
        "lamb(learning_rate: 0.02)",
        "clip_grad_norm_(max_norm: 0.5, norm_type: 3) |> Adam(lr: 0.01, amsgrad: true)",
        "RMSprop(lr: 0.01, centered: true, momentum: 0.5)",
        "NAdam(lr: 0.01)",
        "RAdam(lr: 0.01)",
        "Rprop(lr: 0.01)",
        "Adagrad(lr: 0.1)",
        "novograd(learning_rate: 0.01)",
        "GradScaler(init_scale: 2, growth_interval: 3) |> AdamW(lr: 0.01)",
        "MultiSteps(every_k_schedule: 3) |> lion(learning_rate: 0.01)",
        "ema(decay: 0.9) |> rprop(learning_rate: 0.01)",
    ];
    let steps = 7;
    for (k, chain) in chains.iter().enumerate() {
        let name = format!("lib{k}");
        let dir = export(&name, chain, steps);
        let want = reference(&dir.join(format!("{name}.reference.txt")));
        let got =
            anneal_wgsl_host::run_reference(&dir, steps).unwrap_or_else(|e| panic!("{chain}: {e}"));
        assert_eq!(got.len(), want.len(), "{chain}");
        for (s, (g, w)) in got.iter().zip(&want).enumerate() {
            let scale = w.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
            for (t, (gt, wt)) in g.iter().zip(w).enumerate() {
                assert_eq!(gt.len(), wt.len());
                for (i, (x, y)) in gt.iter().zip(wt).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-5 * (y.abs() + scale),
                        "{chain}: step {} tensor {t} element {i}: wgsl {x}, interpreter {y}",
                        s + 1
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn the_manifest_names_every_binding_of_every_shader() {
    // No GPU needed: the files themselves.
    let dir = export(
        "m",
        "clip_by_global_norm(max_norm: 1.0) |> adamw(learning_rate: 0.01)",
        1,
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["format"], "anneal-wgsl/1");
    let passes = m["passes"].as_array().unwrap();
    assert_eq!(passes.len(), 2);
    for pass in passes {
        let src = std::fs::read_to_string(dir.join(pass["file"].as_str().unwrap())).unwrap();
        let bindings = pass["bindings"].as_array().unwrap();
        // Each binding the manifest lists is declared in the shader, and no other.
        assert_eq!(src.matches("@binding(").count(), bindings.len());
        for b in bindings {
            assert!(src.contains(&format!("@binding({})", b["binding"])));
        }
    }
    assert_eq!(m["reductions"][0]["op"], "norm");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_recipe_that_calls_the_model_is_refused_with_the_reason() {
    let dir = out_dir("refused");
    let out = anneal(&[
        "export",
        "examples/sophia_quadratic.anneal",
        "--target",
        "wgsl",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot be exported") && err.contains("model"),
        "{err}"
    );
    assert!(!dir.join("manifest.json").exists());
}

#[test]
fn a_machine_without_a_gpu_is_told_how_to_get_one() {
    // No Vulkan driver to find: the loader is pointed at none.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anneal"))
        .args([
            "run",
            "examples/digits_mlp.anneal",
            "--backend",
            "wgsl",
            "--steps",
            "1",
        ])
        .current_dir(common::root())
        .env("VK_ICD_FILENAMES", "/nonexistent.json")
        .env("VK_DRIVER_FILES", "/nonexistent.json")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("no GPU adapter found") && err.contains("mesa-vulkan-drivers libvulkan1"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
