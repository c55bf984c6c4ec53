//! Checkpoints of a recipe with an evaluation view (schedule-free's average x): `anneal
//! run` writes x beside the training iterate y, x is (y − (1 − b1) z) / b1 from the
//! checkpoint's own y and z (optax's `schedule_free_eval_params`), and a resumed run still
//! ends bit-identical. Recipes without a view write none.

mod common;

use anneal_compiler::state::StateValue;
use anneal_runtime::checkpoint;
use common::{anneal, stderr};
use std::path::{Path, PathBuf};

const B1: f32 = 0.9;

fn dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("anneal-eval-{name}-{}", std::process::id()))
}

fn run(recipe: &str, steps: &str, ck: &Path, resume: bool) {
    let mut args = vec![
        "run",
        recipe,
        "--model",
        "mlp:64,16,10:tanh",
        "--steps",
        steps,
        "--checkpoint-dir",
        ck.to_str().unwrap(),
    ];
    if resume {
        args.push("--resume");
    }
    let o = anneal(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn load(recipe: &str, ck: &Path) -> checkpoint::Checkpoint {
    let text = std::fs::read_to_string(common::root().join(recipe)).unwrap();
    let c = anneal_compiler::compile(recipe, &text);
    let hash = checkpoint::recipe_hash(&c.program);
    let names: Vec<String> = ["0.weight", "0.bias", "2.weight", "2.bias"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let shapes = vec![vec![16, 64], vec![16], vec![10, 16], vec![10]];
    checkpoint::load(&ck.join("checkpoint.bin"), hash, &names, &shapes).unwrap()
}

#[test]
fn a_schedule_free_checkpoint_holds_the_average_and_resumes_exactly() {
    let recipe = "examples/modern/schedule_free_adamw.anneal";
    let (full, part) = (dir("full"), dir("part"));
    run(recipe, "30", &full, false);
    run(recipe, "12", &part, false);
    run(recipe, "30", &part, true);
    let a = std::fs::read(full.join("checkpoint.bin")).unwrap();
    let b = std::fs::read(part.join("checkpoint.bin")).unwrap();
    assert!(a == b, "the resumed run ends elsewhere");

    let ck = load(recipe, &full);
    let x = ck.eval_params.as_ref().expect("an evaluation view");
    // z: the first state of the recipe's last stage, schedule_free.
    let stage = ck.snapshot.states().last().unwrap();
    let StateValue::Element(z) = &stage[0] else {
        panic!("z is an element state")
    };
    let mut moved = false;
    for ((xt, yt), zt) in x.iter().zip(&ck.params).zip(z) {
        for ((xi, yi), zi) in xt.iter().zip(yt).zip(zt) {
            let want = (yi - (1.0 - B1) * zi) / B1;
            assert!(
                (xi - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{xi} vs {want}"
            );
            moved |= xi != yi;
        }
    }
    assert!(moved, "x should differ from y");
    let _ = std::fs::remove_dir_all(full);
    let _ = std::fs::remove_dir_all(part);
}

#[test]
fn a_recipe_without_a_view_writes_the_parameters_only() {
    let recipe = "examples/modern/adamw_cosine.anneal";
    let ck_dir = dir("plain");
    run(recipe, "5", &ck_dir, false);
    assert!(load(recipe, &ck_dir).eval_params.is_none());
    let _ = std::fs::remove_dir_all(ck_dir);
}
