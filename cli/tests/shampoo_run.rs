//! `anneal run` trains the digits MLP with Shampoo (examples/shampoo_digits.anneal:
//! pytorch_optimizer's Shampoo, its preconditioners matrix states refreshed every 10
//! steps): the loss falls, a checkpoint holds every tensor's preconditioners at their
//! declared sizes, and a run resumed from a checkpoint ends bit-identical to one that was
//! not interrupted.

mod common;

use anneal_compiler::state::StateValue;
use anneal_runtime::checkpoint;
use common::{anneal, json_output, stderr};
use std::path::{Path, PathBuf};

const RECIPE: &str = "examples/shampoo_digits.anneal";

fn dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("anneal-shampoo-{name}-{}", std::process::id()))
}

fn run(steps: &str, ck: &Path, resume: bool) -> serde_json::Value {
    let mut args = vec![
        "run",
        RECIPE,
        "--steps",
        steps,
        "--json",
        "--checkpoint-dir",
        ck.to_str().unwrap(),
    ];
    if resume {
        args.push("--resume");
    }
    let o = anneal(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    json_output(&o)
}

#[test]
fn shampoo_trains_checkpoints_its_preconditioners_and_resumes_exactly() {
    let (full, part) = (dir("full"), dir("part"));
    let s = run("45", &full, false);
    assert!(s["final_loss"].as_f64().unwrap() < 1.0, "{s}");
    run("23", &part, false);
    run("45", &part, true);
    let a = std::fs::read(full.join("checkpoint.bin")).unwrap();
    let b = std::fs::read(part.join("checkpoint.bin")).unwrap();
    assert!(a == b, "the resumed run ends elsewhere");

    let text = std::fs::read_to_string(common::root().join(RECIPE)).unwrap();
    let c = anneal_compiler::compile(RECIPE, &text);
    let names: Vec<String> = ["0.weight", "0.bias", "2.weight", "2.bias"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let shapes = vec![vec![128, 64], vec![128], vec![10, 128], vec![10]];
    let ck = checkpoint::load(
        &full.join("checkpoint.bin"),
        checkpoint::recipe_hash(&c.program),
        &names,
        &shapes,
    )
    .unwrap();
    // Shampoo's states: the momentum buffer, then L, R and their inverse roots, each
    // rows × rows or cols × cols of the tensor's matrix view (a vector is one row).
    let stage = ck.snapshot.states().last().unwrap();
    let sides = [(128, 64), (1, 128), (10, 128), (1, 10)];
    for (j, side) in [(1, 0), (2, 1), (3, 0), (4, 1)] {
        let StateValue::Matrix(per) = &stage[j] else {
            panic!("state {j} is a matrix state");
        };
        let want: Vec<usize> = sides
            .iter()
            .map(|&(r, c)| if side == 0 { r * r } else { c * c })
            .collect();
        assert_eq!(
            per.iter().map(Vec::len).collect::<Vec<_>>(),
            want,
            "state {j}"
        );
        assert!(per.iter().flatten().all(|v| v.is_finite()));
    }
    let _ = std::fs::remove_dir_all(full);
    let _ = std::fs::remove_dir_all(part);
}
