//! The GPU back end builds one pipeline per pass, once: hyperparameters (a schedule, a
//! clip that fires on some steps) travel in a uniform buffer, and a second stepper of the
//! same recipe finds the pipelines cached. A process of its own, so that no other test
//! builds pipelines while this one counts them.

use anneal_compiler::backends::gpu;
use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::compile;
use anneal_compiler::kernel::lower;

fn noise(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u64 + 1) * (seed + 7) * 2_654_435_761) % 2000) as f32 / 1000.0 - 1.0)
        .collect()
}

#[test]
fn pipelines_are_built_once_however_the_hyperparameters_change() {
    if gpu::for_tests().is_none() {
        return;
    }
    // A learning rate that changes every step, and a clip that fires on some steps.
    let src = "import std.optax.{clip_by_global_norm, adamw, warmup_cosine_decay_schedule}
recipe r {
  schedule lr = warmup_cosine_decay_schedule(init_value: 0.0, peak_value: 0.01, warmup_steps: 3, decay_steps: 20)
  update = clip_by_global_norm(max_norm: 0.5) |> adamw(learning_rate: lr, b1: 0.85)
}";
    let c = compile("t.anneal", src);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let recipe = &c.program.recipes[0];
    let passes = lower(&c.program, recipe).unwrap().passes.len();
    let names = vec!["w".to_string(), "b".to_string()];
    let shapes = vec![vec![300], vec![5]];
    let mut params = vec![noise(300, 1), noise(5, 2)];
    let before = gpu::pipelines_created();
    let (mut s, _) = Stepper::new(
        Backend::Wgsl,
        &c.program,
        recipe,
        &names,
        &shapes,
        &params,
        1,
    )
    .unwrap();
    for k in 0..12 {
        let g = vec![noise(300, 10 + k), noise(5, 20 + k)];
        s.step(&mut params, &g).unwrap();
    }
    // A second stepper of the same recipe reuses the same pipelines.
    let (mut again, _) = Stepper::new(
        Backend::Wgsl,
        &c.program,
        recipe,
        &names,
        &shapes,
        &params,
        1,
    )
    .unwrap();
    again
        .step(&mut params, &[noise(300, 3), noise(5, 4)])
        .unwrap();
    assert_eq!(gpu::pipelines_created() - before, passes);
}
