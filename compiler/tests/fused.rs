//! The compiled back ends (Cranelift, LLVM, and WGSL on a GPU where there is one) against
//! the reference interpreter: random recipes (chains of standard-library transforms with
//! random hyperparameters, random tensor sizes including 0, 1, 3, 4, 5 and 1023) must
//! agree within f32 tolerance, and every shader they produce must pass naga's validator;
//! results must not depend on the thread count. (Recompiles are counted in `recompile.rs`, a process of its own.)

use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::compile;
use anneal_compiler::interp::Oracle;
use anneal_compiler::kernel::explain::explain;
use proptest::prelude::*;

/// Deterministic gradients: a xorshift stream in [-1, 1), scaled per step.
fn grads(sizes: &[usize], step: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut z = seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    sizes
        .iter()
        .map(|&n| {
            (0..n)
                .map(|_| {
                    z ^= z << 13;
                    z ^= z >> 7;
                    z ^= z << 17;
                    let u = (z >> 40) as f32 / (1u64 << 24) as f32;
                    (2.0 * u - 1.0) * (1.0 + step as f32)
                })
                .collect()
        })
        .collect()
}

/// Runs `steps` steps of the file's first recipe on `backend` over vectors of `sizes`.
fn run(
    src: &str,
    backend: Backend,
    threads: usize,
    sizes: &[usize],
    steps: usize,
) -> Vec<Vec<f32>> {
    let shapes: Vec<Vec<usize>> = sizes.iter().map(|&n| vec![n]).collect();
    run_shapes(src, backend, threads, &shapes, steps)
}

/// Runs `steps` steps of the file's first recipe on `backend` over tensors of `shapes`;
/// the final parameters.
fn run_shapes(
    src: &str,
    backend: Backend,
    threads: usize,
    shapes: &[Vec<usize>],
    steps: usize,
) -> Vec<Vec<f32>> {
    let c = compile("t.anneal", src);
    assert!(!c.has_errors(), "{src}\n{:?}", c.diagnostics);
    let recipe = &c.program.recipes[0];
    let names: Vec<String> = (0..shapes.len()).map(|i| format!("{i}.weight")).collect();
    let sizes: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
    let sizes = &sizes[..];
    let shapes = shapes.to_vec();
    let mut params = grads(sizes, 99, 7);
    let (mut s, choice) = Stepper::new(
        backend, &c.program, recipe, &names, &shapes, &params, threads,
    )
    .unwrap();
    assert_eq!(choice.backend, backend.name());
    for k in 0..steps {
        s.step(&mut params, &grads(sizes, k, 3)).unwrap();
    }
    params
}

/// Within f32 tolerance of the interpreter: 1e-5 relative, plus, for the GPU, 1e-5 of
/// the tensor's largest value (as the golden cases' atol): a GPU contracts `a·b + c` into
/// one rounding and WGSL allows 2.5-ULP division, so a value that is the difference of
/// two large ones (a parameter near 0 after a big update) carries their rounding.
fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    for (t, (x, y)) in a.iter().zip(b).enumerate() {
        let scale = if what.starts_with("wgsl") {
            y.iter().fold(0f32, |m, v| m.max(v.abs()))
        } else {
            0.0
        };
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            let tol = 1e-6 + 1e-5 * (q.abs() + scale);
            let ok = (p - q).abs() <= tol || (p.is_nan() && q.is_nan());
            assert!(
                ok,
                "{what}: tensor {t} element {i}: compiled {p}, interpreter {q}"
            );
        }
    }
}

const ADAMW_CLIP: &str = "import std.optax.{clip_by_global_norm, adamw}
recipe r {
  update = clip_by_global_norm(max_norm: 1.0) |> adamw(learning_rate: 0.01, weight_decay: 0.1)
}";

#[test]
fn clip_and_adamw_fuse_into_one_reduction_and_one_map() {
    let c = compile("t.anneal", ADAMW_CLIP);
    let e = explain(&c.program, &c.program.recipes[0]).unwrap();
    assert_eq!(e.passes.len(), 2, "{e}");
    assert_eq!(e.passes[0].reductions, ["norm(global)"]);
    assert_eq!(e.passes[0].reads, ["grad"]);
    // grad, param, mu, nu read; param, mu, nu written: 7 × 4 bytes, plus 4 for the norm.
    assert_eq!(e.bytes_per_param, 32, "{e}");
    assert!(e.unfused_bytes_per_param > e.bytes_per_param, "{e}");
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    // Tensors of several chunks each, so reductions combine many partial results.
    let sizes = [100_003, 70_001, 5];
    let one = run(ADAMW_CLIP, Backend::Cranelift, 1, &sizes, 3);
    for threads in [2, 3, 8] {
        let many = run(ADAMW_CLIP, Backend::Cranelift, threads, &sizes, 3);
        assert!(
            one.iter()
                .flatten()
                .zip(many.iter().flatten())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{threads} threads changed the result"
        );
    }
    let reference = run(ADAMW_CLIP, Backend::Interp, 1, &sizes, 3);
    assert_close(&one, &reference, "clip + adamw");
    // LLVM: the same independence of the thread count.
    let llvm_one = run(ADAMW_CLIP, Backend::Llvm, 1, &sizes, 3);
    let llvm_two = run(ADAMW_CLIP, Backend::Llvm, 2, &sizes, 3);
    assert!(llvm_one
        .iter()
        .flatten()
        .zip(llvm_two.iter().flatten())
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_close(&llvm_one, &reference, "clip + adamw on llvm");
}

#[test]
fn a_skip_suppresses_the_update_as_on_the_interpreter() {
    let src = "import std.torch.{GradScaler, SGD}
recipe r { update = GradScaler(init_scale: 4, growth_interval: 2) |> SGD(lr: 0.1, momentum: 0.9) }";
    let c = compile("t.anneal", src);
    let recipe = &c.program.recipes[0];
    let names = vec!["w".to_string()];
    let shapes = vec![vec![6]];
    let init = vec![vec![0.5f32; 6]];
    for backend in compiled_backends() {
        let (mut a, _) =
            Stepper::new(backend, &c.program, recipe, &names, &shapes, &init, 1).unwrap();
        let (mut b, _) = Stepper::new(
            Backend::Interp,
            &c.program,
            recipe,
            &names,
            &shapes,
            &init,
            1,
        )
        .unwrap();
        let (mut pa, mut pb) = (init.clone(), init.clone());
        for k in 0..6 {
            let g = if k % 3 == 1 {
                vec![vec![f32::INFINITY; 6]]
            } else {
                grads(&[6], k, 1)
            };
            a.step(&mut pa, &g).unwrap();
            b.step(&mut pb, &g).unwrap();
            assert_eq!(a.last_skipped(), b.last_skipped(), "step {k}");
            assert_eq!(a.snapshot(), b.snapshot(), "{} step {k}", backend.name());
            assert_close(&pa, &pb, &format!("{} step {k}", backend.name()));
        }
    }
}

#[test]
fn a_state_saved_on_one_back_end_continues_on_another() {
    // The stepper owns the step state; a snapshot is all of it (counts, bias
    // corrections' step, moments, the loss scale and its growth tracker), so the
    // interpreter's three steps continued by a fused step equal six steps on either.
    let src = "import std.torch.{GradScaler, Adam}
recipe r { update = GradScaler(init_scale: 4, growth_interval: 2) |> Adam(lr: 0.05) }";
    let c = compile("t.anneal", src);
    let recipe = &c.program.recipes[0];
    let names = vec!["w".to_string(), "b".to_string()];
    let shapes = vec![vec![3, 4], vec![4]];
    let init = vec![vec![0.5f32; 12], vec![-0.25f32; 4]];
    let sizes = [12, 4];
    let steps = |s: &mut Stepper, p: &mut Vec<Vec<f32>>, ks: std::ops::Range<usize>| {
        for k in ks {
            let g = if k == 4 {
                vec![vec![f32::NAN; 12], vec![0.0; 4]]
            } else {
                grads(&sizes, k, 7)
            };
            s.step(p, &g).unwrap();
        }
    };
    let new = |b| {
        Stepper::new(b, &c.program, recipe, &names, &shapes, &init, 1)
            .unwrap()
            .0
    };
    let mut whole = new(Backend::Interp);
    let mut want = init.clone();
    steps(&mut whole, &mut want, 0..6);
    for backend in compiled_backends() {
        let mut first = new(Backend::Interp);
        let mut got = init.clone();
        steps(&mut first, &mut got, 0..3);
        let mut then = new(backend);
        then.restore(first.snapshot()).unwrap();
        steps(&mut then, &mut got, 3..6);
        assert_eq!(then.state().count(), 6, "{}", backend.name());
        assert_eq!(
            then.stage_counts(),
            whole.stage_counts(),
            "{}",
            backend.name()
        );
        assert_close(&got, &want, &format!("{} resumed", backend.name()));
        let mut fused = new(backend);
        let mut alone = init.clone();
        steps(&mut fused, &mut alone, 0..6);
        assert_close(
            &got,
            &alone,
            &format!("{} resumed against its own", backend.name()),
        );
    }
}

#[test]
fn tensors_of_the_wrong_size_are_a_user_error_naming_the_tensor() {
    let c = compile("t.anneal", ADAMW_CLIP);
    let recipe = &c.program.recipes[0];
    let names = vec!["w".to_string(), "b".to_string()];
    let shapes = vec![vec![8], vec![3]];
    let init = vec![vec![0.5f32; 8], vec![0.1f32; 3]];
    let mut backends = compiled_backends();
    backends.push(Backend::Interp);
    for backend in backends {
        let (mut s, _) =
            Stepper::new(backend, &c.program, recipe, &names, &shapes, &init, 1).unwrap();
        let mut params = init.clone();
        let err = s
            .step(&mut params, &[vec![0.0; 8], vec![0.0; 4]])
            .unwrap_err();
        assert!(!err.is_internal(), "{}: {err}", backend.name());
        let text = err.to_string();
        assert!(
            text.contains("tensor #1 (`b`) has 3 values and its gradient 4"),
            "{}: {text}",
            backend.name()
        );
        let err = s.step(&mut params, &[vec![0.0; 8]]).unwrap_err();
        assert!(err.to_string().contains("1 gradient tensors"), "{err}");
        assert_eq!(
            params,
            init,
            "{}: a refused step changes nothing",
            backend.name()
        );
    }
}

/// A transform that may precede an optimizer, and an optimizer, with random arguments.
fn transform() -> impl Strategy<Value = String> {
    prop_oneof![
        (0.01f64..5.0).prop_map(|x| format!("clip_by_global_norm(max_norm: {x})")),
        (0.01f64..2.0).prop_map(|x| format!("clip(max_delta: {x})")),
        (0.0f64..0.5).prop_map(|x| format!("add_decayed_weights(weight_decay: {x})")),
        (-2.0f64..2.0).prop_map(|x| format!("scale(step_size: {x})")),
        Just("scale_by_sign()".to_string()),
        (0.0f64..1.0, any::<bool>()).prop_map(|(d, n)| format!("trace(decay: {d}, nesterov: {n})")),
        (0.01f64..5.0, 1.0f64..3.0)
            .prop_map(|(x, p)| format!("clip_grad_norm_(max_norm: {x}, norm_type: {p})")),
        (0.0f64..2.0).prop_map(|x| format!("clip_grad_value_(clip_value: {x})")),
        (0.5f64..0.99).prop_map(|d| format!("ema(decay: {d})")),
        (0.5f64..0.99).prop_map(|d| format!("scale_by_stddev(decay: {d})")),
        (0.1f64..2.0).prop_map(|f| format!("normalize_by_update_norm(scale_factor: {f})")),
        Just("centralize()".to_string()),
        Just("scale_by_trust_ratio()".to_string()),
        Just("clip_by_block_rms(threshold: 1.0)".to_string()),
    ]
}

fn optimizer() -> impl Strategy<Value = String> {
    let lr = 1e-4f64..0.5;
    prop_oneof![
        (lr.clone(), 0.0f64..0.99, any::<bool>())
            .prop_map(|(l, m, n)| format!("sgd(learning_rate: {l}, momentum: {m}, nesterov: {n})")),
        (lr.clone(), 0.0f64..0.99, 0.5f64..0.999)
            .prop_map(|(l, b1, b2)| format!("adam(learning_rate: {l}, b1: {b1}, b2: {b2})")),
        (lr.clone(), 0.0f64..0.3)
            .prop_map(|(l, w)| format!("adamw(learning_rate: {l}, weight_decay: {w})")),
        // Schedules on β₁, β₂ and the weight decay, read at the stage's count.
        (lr.clone(), 0.0f64..0.9, 1i64..4, 0.0f64..0.3).prop_map(|(l, b, t, w)| format!(
            "adamw(learning_rate: {l}, \
             b1: linear_schedule(init_value: {b}, end_value: 0.9, transition_steps: {t}), \
             b2: 0.999 - linear_schedule(init_value: 0.2, end_value: 0, transition_steps: {t}), \
             weight_decay: cosine_decay_schedule(init_value: {w}, decay_steps: {t}))"
        )),
        (lr.clone(), 0.0f64..0.9, 1i64..4, 0.0f64..0.1).prop_map(|(l, b, t, w)| format!(
            "Adam(lr: {l}, betas: [linear_schedule(init_value: {b}, end_value: 0.95, \
             transition_steps: {t}), 0.99], weight_decay: {w} * exponential_decay(init_value: 1, \
             transition_steps: 1, decay_rate: 0.5))"
        )),
        lr.clone().prop_map(|l| format!("lion(learning_rate: {l})")),
        // Wrappers, each spliced into one stage around the optimizer it runs.
        (lr.clone(), wrapped())
            .prop_map(|(l, o)| format!("cautious(optimizer: {o}(learning_rate: {l}))")),
        (lr.clone(), 0.0f64..0.1, 0.5f64..0.99, wrapped()).prop_map(|(l, g, b, o)| format!(
            "mars(gamma: {g}, b1: {b}, optimizer: {o}(learning_rate: {l}))"
        )),
        (lr.clone(), 0.0f64..0.1).prop_map(|(l, g)| format!(
            "cautious(optimizer: clip_by_global_norm(max_norm: 1.0) \
             |> mars(gamma: {g}, optimizer: adamw(learning_rate: {l})))"
        )),
        lr.clone().prop_map(|l| format!("lamb(learning_rate: {l})")),
        lr.clone().prop_map(|l| format!("lars(learning_rate: {l})")),
        lr.clone()
            .prop_map(|l| format!("adagrad(learning_rate: {l})")),
        lr.clone()
            .prop_map(|l| format!("adamax(learning_rate: {l})")),
        lr.clone()
            .prop_map(|l| format!("amsgrad(learning_rate: {l})")),
        lr.clone()
            .prop_map(|l| format!("nadam(learning_rate: {l})")),
        (lr.clone(), 0.0f64..0.3, any::<bool>()).prop_map(|(l, w, n)| format!(
            "nadamw(learning_rate: {l}, weight_decay: {w}, nesterov: {n})"
        )),
        (lr.clone(), 0.0f64..0.3)
            .prop_map(|(l, w)| format!("adamaxw(learning_rate: {l}, weight_decay: {w})")),
        (lr.clone(), 0.0f64..0.99)
            .prop_map(|(l, b)| format!("signum(learning_rate: {l}, beta: {b})")),
        (lr.clone(), 0.0f64..0.2)
            .prop_map(|(l, w)| format!("adan(learning_rate: {l}, weight_decay: {w})")),
        (lr.clone(), 0.0f64..8.0)
            .prop_map(|(l, a)| format!("ademamix(learning_rate: {l}, alpha: {a})")),
        (lr.clone(), 0.0f64..8.0, 0i64..6).prop_map(|(l, a, w)| format!(
            "ademamix(learning_rate: {l}, alpha: ademamix_alpha(alpha: {a}, warmup: {w}), \
             b3: ademamix_beta3(beta_end: 0.999, beta_start: 0.9, warmup: {w}))"
        )),
        (
            lr.clone(),
            0i64..4,
            4i64..9,
            prop_oneof![
                Just("get_cosine_schedule_with_warmup"),
                Just("get_linear_schedule_with_warmup"),
                Just("get_cosine_with_hard_restarts_schedule_with_warmup"),
                Just("get_polynomial_decay_schedule_with_warmup"),
            ]
        )
            .prop_map(|(l, w, t, f)| format!(
                "AdamW(lr: {f}(base_lr: {l}, num_warmup_steps: {w}, num_training_steps: {t}))"
            )),
        (lr.clone(), 0i64..4, 1i64..4).prop_map(|(l, w, d)| format!(
            "SGD(lr: get_wsd_schedule(base_lr: {l}, num_warmup_steps: {w}, num_decay_steps: {d}, \
             num_stable_steps: 2, decay_type: \"1-sqrt\"), momentum: 0.9)"
        )),
        (lr.clone(), 0.0f64..3.0)
            .prop_map(|(l, a)| format!("simplified_ademamix(learning_rate: {l}, alpha: {a})")),
        (lr.clone(), any::<bool>(), any::<bool>()).prop_map(|(l, n, c)| format!(
            "adopt(learning_rate: {l}, nesterov: {n}, use_clipping: {c})"
        )),
        (lr.clone(), 0.0f64..2.0).prop_map(|(l, b)| format!(
            "optimistic_gradient_descent(learning_rate: {l}, beta: {b})"
        )),
        lr.clone()
            .prop_map(|l| format!("optimistic_adam_v2(learning_rate: {l})")),
        (lr.clone(), 0.0f64..0.99)
            .prop_map(|(l, m)| format!("madgrad(learning_rate: {l}, momentum: {m})")),
        (
            lr.clone(),
            prop_oneof![Just("heuristic"), Just("distance"), Just("learning_rate")]
        )
            .prop_map(|(l, i)| format!(
                "dog(learning_rate: {l}, init_step: \"{i}\", init_step_value: 1e-3)"
            )),
        lr.clone().prop_map(|l| format!("dowg(learning_rate: {l})")),
        (0.1f64..1.0, 0.0f64..0.1)
            .prop_map(|(l, w)| format!("prodigy(learning_rate: {l}, weight_decay: {w})")),
        (0.1f64..1.0).prop_map(|l| format!("dadapt_adamw(learning_rate: {l})")),
        (0.1f64..1.0, 10.0f64..200.0)
            .prop_map(|(l, a)| format!("cocob(learning_rate: {l}, alpha: {a})")),
        (lr.clone(), 0.1f64..1.0)
            .prop_map(|(l, b)| format!("schedule_free_sgd(learning_rate: {l}, b1: {b})")),
        (lr.clone(), 1i64..5, 0.0f64..0.2).prop_map(|(l, w, d)| format!(
            "schedule_free_adamw(learning_rate: {l}, warmup_steps: {w}, weight_decay: {d})"
        )),
        lr.clone()
            .prop_map(|l| format!("radam(learning_rate: {l})")),
        lr.clone()
            .prop_map(|l| format!("adabelief(learning_rate: {l})")),
        lr.clone().prop_map(|l| format!("yogi(learning_rate: {l})")),
        lr.clone()
            .prop_map(|l| format!("novograd(learning_rate: {l})")),
        lr.clone()
            .prop_map(|l| format!("fromage(learning_rate: {l})")),
        lr.clone()
            .prop_map(|l| format!("rprop(learning_rate: {l})")),
        lr.clone()
            .prop_map(|l| format!("adadelta(learning_rate: {l})")),
        (lr.clone(), any::<bool>())
            .prop_map(|(l, c)| format!("rmsprop(learning_rate: {l}, centered: {c})")),
        (lr.clone(), 0.0f64..0.99, 0.0f64..0.1, any::<bool>()).prop_map(|(l, m, w, n)| format!(
            "SGD(lr: {l}, momentum: {m}, weight_decay: {w}, nesterov: {})",
            n && m > 0.0
        )),
        (lr.clone(), 0.0f64..0.1, any::<bool>())
            .prop_map(|(l, w, a)| format!("Adam(lr: {l}, weight_decay: {w}, amsgrad: {a})")),
        lr.clone().prop_map(|l| format!("AdamW(lr: {l})")),
        (lr.clone(), any::<bool>(), 0.0f64..0.9)
            .prop_map(|(l, c, m)| format!("RMSprop(lr: {l}, centered: {c}, momentum: {m})")),
        lr.clone().prop_map(|l| format!("Adagrad(lr: {l})")),
        lr.clone().prop_map(|l| format!("Adamax(lr: {l})")),
        lr.clone().prop_map(|l| format!("NAdam(lr: {l})")),
        lr.clone().prop_map(|l| format!("RAdam(lr: {l})")),
        lr.clone().prop_map(|l| format!("Adadelta(lr: {l})")),
        lr.clone().prop_map(|l| format!("ASGD(lr: {l})")),
        lr.clone().prop_map(|l| format!("Rprop(lr: {l})")),
        (lr.clone(), -1.0f64..-0.3, 0.0f64..0.2, any::<bool>()).prop_map(|(l, b, w, m)| format!(
            "Adafactor(lr: {l}, beta2_decay: {b}, weight_decay: {w}, maximize: {m})"
        )),
        (lr.clone(), 0.0f64..0.1, any::<bool>(), any::<bool>()).prop_map(|(l, w, d, a)| format!(
            "CAME(lr: {l}, weight_decay: {w}, weight_decouple: {d}, ams_bound: {a})"
        )),
        (lr.clone(), 0.0f64..0.1, any::<bool>()).prop_map(|(l, w, d)| format!(
            "StableAdamW(lr: {l}, weight_decay: {w}, weight_decouple: {d})"
        )),
        lr.clone()
            .prop_map(|l| format!("adabound(learning_rate: {l})")),
        lr.clone()
            .prop_map(|l| format!("adafactor(learning_rate: {l}, min_dim_size_to_factor: 2)")),
        lr.clone()
            .prop_map(|l| format!("adafactor(learning_rate: {l})")),
        lr.clone().prop_map(|l| format!("sm3(learning_rate: {l})")),
        (lr, 0.01f64..0.5).prop_map(|(l, c)| format!(
            "adaptive_grad_clip(clipping: {c}) |> sgd(learning_rate: {l})"
        )),
    ]
}

/// Optimizers a wrapper may run: their stages add to `grad` (none assigns `param`).
fn wrapped() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("sgd"),
        Just("adam"),
        Just("adamw"),
        Just("lion"),
        Just("adagrad"),
        Just("nadamw"),
        Just("adan"),
        Just("lamb"),
        Just("adafactor"),
    ]
}

/// A tensor shape: a vector of `size()`, or a matrix or rank-3 tensor (factored
/// optimizers slice those into rows and columns).
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        size().prop_map(|n| vec![n]),
        (1usize..12, 1usize..40).prop_map(|(r, c)| vec![r, c]),
        (1usize..4, 1usize..5, 2usize..9).prop_map(|(a, b, c)| vec![a, b, c]),
    ]
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(3),
        Just(4),
        Just(5),
        Just(1023),
        2usize..40
    ]
}

/// The back ends that compile the fused kernel: the GPU's too where there is one.
fn compiled_backends() -> Vec<Backend> {
    let mut out = vec![Backend::Cranelift, Backend::Llvm];
    if anneal_compiler::backends::gpu::for_tests().is_some() {
        out.push(Backend::Wgsl);
    }
    out
}

/// Every shader of the recipe's kernel is WGSL that naga accepts.
fn validate_wgsl(src: &str) {
    let c = compile("t.anneal", src);
    let kernel = anneal_compiler::kernel::lower(&c.program, &c.program.recipes[0]).unwrap();
    for s in anneal_compiler::backends::wgsl::shaders(&kernel).unwrap() {
        if let Err(e) = anneal_compiler::backends::wgsl::validate(&s.source) {
            panic!("{src}\npass {}: {e}\n{}", s.pass, s.source);
        }
    }
}

const IMPORTS: &str = "import std.optax.*\nimport std.torch.*\nimport std.research.*\nimport std.pytorch_optimizer.*\nimport std.formula.*\nimport std.hf.*\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_recipes_agree_with_the_interpreter(
        pre in proptest::collection::vec(transform(), 0..3),
        opt in optimizer(),
        shapes in proptest::collection::vec(shape(), 1..4),
        steps in 1usize..5,
    ) {
        let mut chain = pre.clone();
        chain.push(opt);
        let src = format!("{IMPORTS}recipe r {{\n  update = {}\n}}\n", chain.join(" |> "));
        let reference = run_shapes(&src, Backend::Interp, 1, &shapes, steps);
        validate_wgsl(&src);
        for backend in compiled_backends() {
            let fused = run_shapes(&src, backend, 1, &shapes, steps);
            assert_close(&fused, &reference, &format!("{} {src}", backend.name()));
        }
    }
}

/// A quadratic with a tridiagonal Hessian H (dᵢ on the diagonal, 0.3 beside it, per
/// tensor): grad_at(x) = H x and hvp(p, v) = H v, so u ⊙ Hu depends on the signs of u.
struct Diagonal {
    d: Vec<Vec<f32>>,
    /// The parameters the step starts from, where `loss` is read.
    at: Vec<Vec<f32>>,
}

impl Oracle for Diagonal {
    fn grad_at(
        &mut self,
        params: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, anneal_compiler::error::Error> {
        Ok(params
            .iter()
            .zip(&self.d)
            .map(|(p, d)| {
                (0..p.len())
                    .map(|i| {
                        let left = if i > 0 { p[i - 1] } else { 0.0 };
                        let right = p.get(i + 1).copied().unwrap_or(0.0);
                        d[i] * p[i] + 0.3 * (left + right)
                    })
                    .collect()
            })
            .collect())
    }

    fn hvp(
        &mut self,
        _params: &[Vec<f32>],
        v: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, anneal_compiler::error::Error> {
        self.grad_at(v)
    }

    /// ½ xᵀAx at the step's parameters, whose gradient `grad_at` gives.
    fn loss(&mut self) -> Result<f64, anneal_compiler::error::Error> {
        let at = self.at.clone();
        let g = self.grad_at(&at)?;
        Ok(at
            .iter()
            .flatten()
            .zip(g.iter().flatten())
            .map(|(x, g)| 0.5 * f64::from(*x) * f64::from(*g))
            .sum())
    }
}

/// Runs with the quadratic as the model: the gradient and the mid-step calls come from it.
fn run_model(src: &str, backend: Backend, sizes: &[usize], steps: usize) -> Vec<Vec<f32>> {
    let c = compile("t.anneal", src);
    assert!(!c.has_errors(), "{src}\n{:?}", c.diagnostics);
    let recipe = &c.program.recipes[0];
    let names: Vec<String> = (0..sizes.len()).map(|i| format!("{i}.weight")).collect();
    let shapes: Vec<Vec<usize>> = sizes.iter().map(|&n| vec![n]).collect();
    let mut params = grads(sizes, 99, 7);
    let mut model = Diagonal {
        d: grads(sizes, 5, 11)
            .into_iter()
            .map(|t| t.into_iter().map(|x| 0.5 + x.abs()).collect())
            .collect(),
        at: Vec::new(),
    };
    let (mut s, choice) =
        Stepper::new(backend, &c.program, recipe, &names, &shapes, &params, 1).unwrap();
    assert_eq!(choice.backend, backend.name());
    for _ in 0..steps {
        let g = model.grad_at(&params).unwrap();
        model.at = params.clone();
        s.step_with(&mut params, &g, Some(&mut model)).unwrap();
    }
    params
}

#[test]
fn model_calls_mid_step_agree_with_the_interpreter() {
    for chain in [
        "SAM(rho: 0.1) |> SGD(lr: 0.1, momentum: 0.9)",
        "clip_grad_norm_(max_norm: 1.0) |> SAM(rho: 0.05) |> AdamW(lr: 0.01)",
        "sophia(learning_rate: 0.05, k: 3)",
        "sophia(learning_rate: 0.01, k: 1, weight_decay: 0.0)",
        "polyak_sgd(max_learning_rate: 0.5)",
        "clip_by_global_norm(max_norm: 1.0) |> polyak_sgd(scaling: 0.5, f_min: -1.0, variant: \"sps+\")",
        "adam(learning_rate: 0.1) |> reduce_on_plateau(factor: 0.5, patience: 1, atol: 0.01, accumulation_size: 2)",
    ] {
        let src = format!("{IMPORTS}recipe r {{\n  update = {chain}\n}}\n");
        for sizes in [vec![5, 1023], vec![0, 3]] {
            let reference = run_model(&src, Backend::Interp, &sizes, 7);
            for backend in compiled_backends() {
                let fused = run_model(&src, backend, &sizes, 7);
                assert_close(&fused, &reference, &format!("{} {src}", backend.name()));
            }
        }
    }
}

#[test]
fn wrappers_agree_with_the_interpreter_on_every_optimizer_they_can_run() {
    let shapes = [vec![7], vec![5, 9], vec![3, 4, 6]];
    let mut recipes = Vec::new();
    for inner in [
        "sgd",
        "adam",
        "adamw",
        "lion",
        "adagrad",
        "nadamw",
        "adan",
        "lamb",
        "adafactor",
    ] {
        recipes.push(format!("cautious(optimizer: {inner}(learning_rate: 0.01))"));
        recipes.push(format!(
            "mars(gamma: 0.05, b1: 0.9, optimizer: {inner}(learning_rate: 0.01))"
        ));
        recipes.push(format!(
            "cautious(optimizer: mars(optimizer: {inner}(learning_rate: 0.01)))"
        ));
    }
    // A torch optimizer writes `param` itself: mars runs it last.
    recipes.push("mars(optimizer: AdamW(lr: 0.01, weight_decay: 0.1))".into());
    for wrapper in recipes {
        let src = format!("{IMPORTS}recipe r {{\n  update = {wrapper}\n}}\n");
        let reference = run_shapes(&src, Backend::Interp, 1, &shapes, 4);
        validate_wgsl(&src);
        for backend in compiled_backends() {
            let fused = run_shapes(&src, backend, 2, &shapes, 4);
            assert_close(&fused, &reference, &format!("{} {src}", backend.name()));
        }
    }
}
