//! The wgsl back end's matrix products on the GPU (`backends::gpu::DeviceGemm`, lavapipe
//! in CI): against the product summed in f64 here, on shapes that do not fill its 16 × 16
//! tiles, either operand read transposed; the same bits on every call; and Muon's
//! Newton–Schulz on the wgsl back end multiplying there, within f32 rounding of the
//! interpreter's host products.

use anneal_compiler::backends::gpu::{self, DeviceGemm};
use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::compile;
use anneal_compiler::matrix::Gemm;

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 31 + seed * 17) % 23) as f32 / 11.0 - 1.0)
        .collect()
}

#[test]
fn device_products_match_the_definition_on_ragged_and_transposed_operands() {
    let Some(ctx) = gpu::for_tests() else {
        return;
    };
    let gemm = DeviceGemm::new(ctx);
    for (m, k, n) in [(1, 1, 1), (17, 33, 5), (40, 16, 31), (3, 70, 18)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (a, b) = (values(m * k, m), values(k * n, n));
            // Entry (i, p) of the left operand and (p, j) of the right, as stored.
            let left = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
            let right = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
            let got = gemm.multiply((m, k, n), &a, ta, &b, tb).expect("a product");
            assert_eq!(got.len(), m * n);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|p| f64::from(left(i, p)) * f64::from(right(p, j)))
                        .sum();
                    let v = f64::from(got[i * n + j]);
                    assert!(
                        (v - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{m}×{k}×{n} (ta {ta}, tb {tb}) entry ({i}, {j}): {v}, want {want}"
                    );
                }
            }
            let again = gemm.multiply((m, k, n), &a, ta, &b, tb).expect("a product");
            assert_eq!(got, again, "the same bits on a second call");
        }
    }
}

#[test]
fn newton_schulz_on_the_wgsl_back_end_multiplies_on_the_device() {
    if gpu::for_tests().is_none() {
        return;
    }
    let src = "import std.optax.{scale_by_muon}\nrecipe r {\n  update = scale_by_muon(beta: 0, nesterov: false)\n}\n";
    let c = compile("t.anneal", src);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let shapes = vec![vec![20, 36], vec![48, 17]];
    let names = vec!["a".to_string(), "b".to_string()];
    let grads: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(t, s)| values(s.iter().product(), t + 3))
        .collect();
    let run = |b: Backend| {
        let mut params: Vec<Vec<f32>> = grads.iter().map(|g| vec![0.0; g.len()]).collect();
        let recipe = &c.program.recipes[0];
        let (mut s, _) =
            Stepper::new(b, &c.program, recipe, &names, &shapes, &params, 1).expect("a stepper");
        s.step(&mut params, &grads).expect("a step");
        params
    };
    let before = gpu::device_products();
    let device = run(Backend::Wgsl);
    // Five rounds of three products per tensor.
    assert!(
        gpu::device_products() >= before + 30,
        "{} products on the device",
        gpu::device_products() - before
    );
    let host = run(Backend::Interp);
    for (t, (d, h)) in device.iter().zip(&host).enumerate() {
        for (i, (x, y)) in d.iter().zip(h).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "tensor {t} entry {i}: wgsl {x}, interp {y}"
            );
        }
    }
}
