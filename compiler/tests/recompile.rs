//! Only structure is compiled: changing a hyperparameter's value, or a schedule moving the
//! learning rate every step, never compiles again. Its own test binary, so no other test
//! compiles kernels in this process while the counter is read.

use anneal_compiler::backends::{cranelift, Backend, Stepper};
use anneal_compiler::compile;
use anneal_compiler::kernel::lower;

fn steps(src: &str, n: usize) -> f64 {
    let c = compile("t.anneal", src);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let names = vec!["w".to_string(), "b".to_string()];
    let shapes = vec![vec![10], vec![3]];
    let mut params = vec![vec![0.5f32; 10], vec![-0.25f32; 3]];
    let grads = vec![vec![0.1f32; 10], vec![-1.0f32; 3]];
    let (mut s, choice) = Stepper::new(
        Backend::Cranelift,
        &c.program,
        &c.program.recipes[0],
        &names,
        &shapes,
        &params,
        1,
    )
    .unwrap();
    for _ in 0..n {
        s.step(&mut params, &grads).unwrap();
    }
    choice.compile_ms
}

const ADAMW_CLIP: &str = "import std.optax.{clip_by_global_norm, adamw}
recipe r {
  update = clip_by_global_norm(max_norm: 1.0) |> adamw(learning_rate: 0.01, weight_decay: 0.1)
}";

#[test]
fn changing_hyperparameters_never_recompiles() {
    assert_eq!(cranelift::compiles(), 0);
    let first_ms = steps(ADAMW_CLIP, 1);
    assert_eq!(cranelift::compiles(), 1);
    assert!(first_ms > 0.0);
    for (lr, wd, clip) in [(0.1, 0.0, 2.0), (3e-4, 0.5, 0.1), (1.0, 1e-4, 10.0)] {
        let src = ADAMW_CLIP
            .replace("0.01", &lr.to_string())
            .replace("0.1)", &format!("{wd})"))
            .replace("1.0)", &format!("{clip})"));
        assert_eq!(steps(&src, 2), 0.0, "{src} compiled again");
    }
    assert_eq!(cranelift::compiles(), 1);

    // A schedule changes the learning rate every step: one compile, then none.
    let scheduled = "import std.optax.{adamw, cosine_decay_schedule}
recipe r {
  schedule lr = cosine_decay_schedule(init_value: 0.1, decay_steps: 5)
  update = adamw(learning_rate: lr)
}";
    steps(scheduled, 8);
    assert_eq!(cranelift::compiles(), 2);
    steps(&scheduled.replace("0.1", "0.7"), 8);
    assert_eq!(cranelift::compiles(), 2);

    let c1 = compile("a.anneal", ADAMW_CLIP);
    let c2 = compile("b.anneal", &ADAMW_CLIP.replace("0.01", "0.5"));
    assert_eq!(
        lower(&c1.program, &c1.program.recipes[0]).unwrap(),
        lower(&c2.program, &c2.program.recipes[0]).unwrap(),
        "the kernel (and so the compiled code) depends on a hyperparameter value"
    );
}
