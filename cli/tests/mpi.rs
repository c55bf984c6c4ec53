//! `mpirun -np N anneal run`: ranks as processes over OpenMPI (a build with `--features
//! mpi`; .ci/run installs openmpi-bin libopenmpi-dev libclang-dev and runs this). The
//! result matches the single-process run with the same global batch, and each rank keeps
//! 1/N of the optimizer state under ZeRO. Without mpirun on the PATH the test fails under
//! CI and is skipped elsewhere.
#![cfg(feature = "mpi")]

mod common;

use common::root;
use std::process::{Command, Output};

fn have_mpirun() -> bool {
    let ok = Command::new("mpirun").arg("--version").output().is_ok();
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "mpirun is missing but CI is set: .ci/run installs openmpi-bin"
    );
    ok
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text.lines().find(|l| l.starts_with('{')).unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn mpirun_ranks_match_the_single_process_run() {
    if !have_mpirun() {
        eprintln!("skipped: no mpirun");
        return;
    }
    let dir = std::env::temp_dir().join(format!("anneal-mpi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let recipe = dir.join("dp.anneal");
    std::fs::write(
        &recipe,
        "import std.optax.{adamw}\nrecipe dp {\n  steps 120\n  model = mlp(layers: [64, 32, 10])\n  \
         data = csv(file: \"digits.csv\", batch: 64)\n  update = adamw(learning_rate: 3e-3)\n  \
         parallel { zero: 1 }\n}\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_anneal");
    let file = recipe.to_str().unwrap();
    let single = json(
        &Command::new(bin)
            .args(["run", file, "--json"])
            .current_dir(root())
            .output()
            .unwrap(),
    );
    let loss = single["final_loss"].as_f64().unwrap();
    for n in ["2", "3"] {
        let o = Command::new("mpirun")
            .args([
                "--allow-run-as-root",
                "--oversubscribe",
                "-np",
                n,
                bin,
                "run",
                file,
                "--json",
            ])
            .current_dir(root())
            .output()
            .unwrap();
        let v = json(&o);
        assert_eq!(v["ranks"].as_u64(), n.parse().ok(), "{v}");
        assert_eq!(v["zero"], 1);
        let d = (v["final_loss"].as_f64().unwrap() - loss).abs();
        assert!(
            d < 1e-4 * loss.max(1e-3),
            "{n} ranks: loss {} vs {loss}",
            v["final_loss"]
        );
        assert_eq!(v["test_accuracy"], single["test_accuracy"], "{v}");
        // AdamW's two moments of 64·32 + 32 + 32·10 + 10 = 2410 weights, split N ways.
        let per: Vec<u64> = v["optimizer_state_per_rank"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(per.iter().sum::<u64>(), 2 * 2410, "{v}");
        let n: u64 = n.parse().unwrap();
        assert!(
            per.iter().all(|&k| k.abs_diff(2 * 2410 / n) <= 2),
            "{per:?}"
        );
    }
    // Only rank 0 reports.
    let o = Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            "2",
            bin,
            "run",
            file,
        ])
        .current_dir(root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.matches("dp: 120 steps").count(), 1, "{text}");
}
