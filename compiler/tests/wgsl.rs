//! The WGSL back end: the shaders it writes (snapshots, naga validation, the dispatch
//! formula) and, on a GPU (lavapipe in CI), what running them guarantees: tensors split
//! over several bindings and dispatches beyond 65,535 workgroups agree with the
//! interpreter. (Pipeline reuse is counted in `wgsl_pipelines.rs`, a process of its own.)

use anneal_compiler::backends::gpu::{self, GpuPasses};
use anneal_compiler::backends::wgsl::{self, dispatch, shaders};
use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::compile;
use anneal_compiler::interp::Interpreter;
use anneal_compiler::kernel::exec::Fused;
use anneal_compiler::kernel::lower;

fn wgsl_of(src: &str) -> String {
    let c = compile("t.anneal", src);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let kernel = lower(&c.program, &c.program.recipes[0]).unwrap();
    let mut out = String::new();
    for s in shaders(&kernel).unwrap() {
        wgsl::validate(&s.source).unwrap_or_else(|e| panic!("pass {}: {e}", s.pass));
        out.push_str(&s.source);
        out.push('\n');
    }
    out
}

#[test]
fn adamw_is_one_map_shader() {
    insta::assert_snapshot!(wgsl_of(
        "import std.optax.{adamw}
recipe r { update = adamw(learning_rate: 0.001, weight_decay: 0.01) }"
    ));
}

#[test]
fn clip_then_adamw_is_a_reduction_tree_and_a_map() {
    insta::assert_snapshot!(wgsl_of(
        "import std.optax.{clip_by_global_norm, adamw}
recipe r { update = clip_by_global_norm(max_norm: 1.0) |> adamw(learning_rate: 0.001) }"
    ));
}

#[test]
fn a_skipping_chain_guards_its_stores() {
    insta::assert_snapshot!(wgsl_of(
        "import std.optax.{MultiSteps, lion}
recipe r { update = MultiSteps(every_k_schedule: 4) |> lion(learning_rate: 0.0001) }"
    ));
}

#[test]
fn dispatches_beyond_65535_workgroups_use_a_second_dimension() {
    assert_eq!(dispatch(0, 256), (1, 1));
    assert_eq!(dispatch(256, 256), (1, 1));
    assert_eq!(dispatch(257, 256), (2, 1));
    assert_eq!(dispatch(65_535 * 256, 256), (65_535, 1));
    assert_eq!(dispatch(65_535 * 256 + 1, 256), (65_535, 2));
    assert_eq!(dispatch(2049, 2048), (2, 1));
    // Every element is covered and no dimension passes the limit.
    for n in [1usize, 1 << 20, 1 << 26, 3_000_000_000] {
        let (x, y) = dispatch(n, 256);
        assert!(x <= 65_535 && y <= 65_535);
        assert!(x as usize * y as usize * 256 >= n);
    }
}

/// Deterministic values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-6 + 2e-5 * y.abs(),
            "{what}: element {i}: wgsl {x}, interpreter {y}"
        );
    }
}

/// Runs `steps` steps of `src` over tensors of `sizes` on the interpreter and on the GPU
/// with at most `segment` elements per binding (0: the device's limit).
fn agree(src: &str, sizes: &[usize], steps: usize, segment: usize) -> Vec<usize> {
    let c = compile("t.anneal", src);
    let recipe = &c.program.recipes[0];
    let names: Vec<String> = (0..sizes.len()).map(|i| format!("w{i}")).collect();
    let shapes: Vec<Vec<usize>> = sizes.iter().map(|&n| vec![n]).collect();
    let init: Vec<Vec<f32>> = sizes.iter().map(|&n| noise(n, 5)).collect();
    let (mut reference, _) = Stepper::new(
        Backend::Interp,
        &c.program,
        recipe,
        &names,
        &shapes,
        &init,
        1,
    )
    .unwrap();
    let kernel = lower(&c.program, recipe).unwrap();
    let device = GpuPasses::new(&kernel, sizes, segment, anneal_compiler::ir::Dtype::F32).unwrap();
    let segments = device.segments();
    let (interp, mut state) =
        Interpreter::with_shapes(&c.program, recipe, &names, &shapes, &init).unwrap();
    let mut fused = Fused::on_device(interp, kernel, Box::new(device)).unwrap();
    let (mut a, mut b) = (init.clone(), init);
    for k in 0..steps {
        let g: Vec<Vec<f32>> = sizes
            .iter()
            .map(|&n| noise(n, 100 + k as u64).iter().map(|x| x * 3.0).collect())
            .collect();
        fused.step(&mut state, &mut a, &g, None).unwrap();
        reference.step(&mut b, &g).unwrap();
    }
    for t in 0..sizes.len() {
        close(&a[t], &b[t], &format!("{src} tensor {t}"));
    }
    segments
}

const CLIP_ADAMW: &str = "import std.optax.{clip_by_global_norm, adamw}
recipe r { update = clip_by_global_norm(max_norm: 1.0) |> adamw(learning_rate: 0.01, weight_decay: 0.1) }";

#[test]
fn tensors_split_over_several_bindings_agree_with_the_interpreter() {
    if gpu::for_tests().is_none() {
        return;
    }
    // Segments of 2,048 elements (the least: one reduction workgroup): the 5,000-element
    // tensor is three bindings, the last partial; the global norm combines their
    // partials in element order.
    for src in [
        CLIP_ADAMW,
        "import std.optax.{lamb}\nrecipe r { update = lamb(learning_rate: 0.01) }",
        // A wrapper's per-tensor mask count and norm, and schedules on β₁ and the decay.
        "import std.research.{cautious, mars}\nimport std.optax.{adamw, linear_schedule}\n\
         recipe r { update = cautious(optimizer: mars(optimizer: adamw(learning_rate: 0.01, \
         b1: linear_schedule(init_value: 0.5, end_value: 0.9, transition_steps: 2), \
         weight_decay: 0.1 * linear_schedule(init_value: 1, end_value: 0, transition_steps: 3)))) }",
    ] {
        assert_eq!(agree(src, &[5000, 7, 2048], 3, 2048), [3, 1, 1]);
    }
}

#[test]
fn a_tensor_beyond_65535_workgroups_agrees_with_the_interpreter() {
    if gpu::for_tests().is_none() {
        return;
    }
    // 65,537 workgroups of 256: the dispatch needs its y dimension.
    let n = 65_537 * 256 - 3;
    assert!(dispatch(n, 256).1 == 2);
    assert_eq!(agree(CLIP_ADAMW, &[n], 1, 0), [1]);
}

/// Values that exercise rounding to a half type: ties (to even), the f16 maximum and
/// the first value that overflows it, subnormals and the smallest ones, signed zeros,
/// infinities and NaN, then ordinary ones.
fn rounding_cases() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        1.0 + 2f32.powi(-8),
        1.0 + 3.0 * 2f32.powi(-8),
        1.0 + 2f32.powi(-11),
        1.0 + 3.0 * 2f32.powi(-11),
        65504.0,
        65519.0,
        65520.0,
        -65520.0,
        1e-5,
        6.0e-8,
        2.9e-8,
        3.0e-8,
        -1e-7,
        1e-40,
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        3.0e38,
    ];
    v.extend(noise(1000, 9).iter().map(|x| x * 300.0));
    v.extend(noise(500, 10).iter().map(|x| x * 1e-6));
    v
}

/// With `precision { params: bf16 | f16 }` the map pass also writes the parameters in
/// that type: bit for bit what the `half` crate rounds to (nearest, ties to even), both
/// for values a step leaves alone and for values an optimizer just computed.
#[test]
fn half_precision_weights_round_as_the_half_crate_does() {
    if gpu::for_tests().is_none() {
        return;
    }
    for dtype in ["bf16", "f16"] {
        for chain in [
            "sgd(learning_rate: 0.0)",
            "adamw(learning_rate: 0.01, weight_decay: 0.1)",
        ] {
            let src = format!(
                "import std.optax.{{sgd, adamw}}\nrecipe r {{\n  precision {{ params: {dtype} }}\n  update = {chain}\n}}"
            );
            let c = compile("t.anneal", &src);
            assert!(!c.has_errors(), "{:?}", c.diagnostics);
            let recipe = &c.program.recipes[0];
            let init = rounding_cases();
            // A tensor that splits an element pair across no boundary, and an odd one.
            let params = vec![init.clone(), init[..7].to_vec()];
            let names = vec!["a".to_string(), "b".to_string()];
            let shapes = vec![vec![params[0].len()], vec![7]];
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
            let mut p = params.clone();
            for k in 0..3 {
                let g: Vec<Vec<f32>> = p.iter().map(|t| noise(t.len(), 40 + k)).collect();
                s.step(&mut p, &g).unwrap();
                let stored = s.stored_params().expect("the map pass writes the weights");
                for (t, (master, half)) in p.iter().zip(stored).enumerate() {
                    for (i, (m, h)) in master.iter().zip(half).enumerate() {
                        let want = if dtype == "bf16" {
                            half::bf16::from_f32(*m).to_f32()
                        } else {
                            half::f16::from_f32(*m).to_f32()
                        };
                        assert!(
                            want.to_bits() == h.to_bits() || (want.is_nan() && h.is_nan()),
                            "{dtype} {chain} step {k} tensor {t} element {i}: {m:e} stored as {h:e}, half gives {want:e}"
                        );
                    }
                }
            }
        }
    }
}

/// States stay on the device between steps; restoring a snapshot must replace them, so
/// replaying steps from it gives what those steps gave the first time.
#[test]
fn a_restored_snapshot_replaces_the_states_on_the_device() {
    if gpu::for_tests().is_none() {
        return;
    }
    let c = compile("t.anneal", CLIP_ADAMW);
    let recipe = &c.program.recipes[0];
    let names = vec!["w".to_string()];
    let shapes = vec![vec![3000]];
    let init = vec![noise(3000, 1)];
    let (mut s, _) =
        Stepper::new(Backend::Wgsl, &c.program, recipe, &names, &shapes, &init, 1).unwrap();
    let grads = |k: u64| vec![noise(3000, 50 + k)];
    let mut p = init.clone();
    for k in 0..3 {
        s.step(&mut p, &grads(k)).unwrap();
    }
    let (snap, p3) = (s.snapshot(), p.clone());
    let mut first = Vec::new();
    for k in 3..5 {
        s.step(&mut p, &grads(k)).unwrap();
        first.push((p.clone(), s.snapshot()));
    }
    s.restore(snap).unwrap();
    let mut p = p3;
    for (i, k) in (3..5).enumerate() {
        s.step(&mut p, &grads(k)).unwrap();
        assert_eq!(p, first[i].0, "parameters after replayed step {k}");
        assert_eq!(s.snapshot(), first[i].1, "states after replayed step {k}");
    }
}
