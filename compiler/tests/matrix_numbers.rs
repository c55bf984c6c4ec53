//! Numbers computed from matrices — `frobenius_norm(A)`, `spectral_norm(A)`,
//! `matrix_trace(A)` — read by the per-element world and inside matrix expressions,
//! including a `repeat` that reads them from its loop value: against their definitions
//! computed here in f64 loops (a power iteration for the largest singular value), on the
//! interpreter and every back end: the CPU back ends bit-identical to the interpreter, wgsl
//! (whose products run on the GPU, summed in another order) within f32 rounding.

use anneal_compiler::backends::gpu;
use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::compile;

/// Every back end; wgsl where a GPU is found (with `CI` set, a missing one fails).
fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Interp, Backend::Cranelift, Backend::Llvm];
    if gpu::for_tests().is_some() {
        out.push(Backend::Wgsl);
    }
    out
}

/// `got` on back end `b` against the interpreter's `want`: the same bits on a CPU back
/// end, within f32 rounding on wgsl.
fn agrees(got: &[Vec<f32>], want: &[Vec<f32>], b: Backend, what: &str) {
    if b != Backend::Wgsl {
        assert_eq!(got, want, "`{what}` on {} against interp", b.name());
        return;
    }
    for (x, y) in got.iter().flatten().zip(want.iter().flatten()) {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "`{what}` on wgsl: {x}, interp {y}"
        );
    }
}

/// The parameters after one step of `body` (an optimizer's statements) from zero
/// parameters on tensors of `shapes` with gradients `grads`.
fn step(body: &str, b: Backend, shapes: &[Vec<usize>], grads: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let src = format!("optimizer o() {{\n{body}\n}}\nrecipe r {{\n  update = o()\n}}\n");
    let c = compile("t.anneal", &src);
    assert!(!c.has_errors(), "{src}\n{:?}", c.diagnostics);
    let names: Vec<String> = (0..shapes.len()).map(|t| format!("t{t}")).collect();
    let mut params: Vec<Vec<f32>> = grads.iter().map(|g| vec![0.0; g.len()]).collect();
    let (mut s, _) = Stepper::new(
        b,
        &c.program,
        &c.program.recipes[0],
        &names,
        shapes,
        &params,
        1,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
    s.step(&mut params, grads)
        .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
    params
}

/// Two tensors, a 3×4 and a 5×2 (as matrices), with entries of mixed signs.
fn problem() -> (Vec<Vec<usize>>, Vec<Vec<f32>>) {
    let shapes = vec![vec![3, 4], vec![5, 2]];
    let grads = shapes
        .iter()
        .enumerate()
        .map(|(t, s)| {
            let n: usize = s.iter().product();
            (0..n)
                .map(|i| ((i * 7 + t * 5) % 13) as f32 / 4.0 - 1.5)
                .collect()
        })
        .collect();
    (shapes, grads)
}

fn frobenius(g: &[f32]) -> f64 {
    g.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt()
}

/// The largest singular value of the `rows × cols` row-major `g`: the square root of the
/// largest eigenvalue of gᵀg, by 500 rounds of power iteration in f64.
fn largest_singular_value(g: &[f32], rows: usize, cols: usize) -> f64 {
    let at = |i: usize, j: usize| f64::from(g[i * cols + j]);
    // A start with a part along every direction (a vector of ones can miss the top one).
    let mut v: Vec<f64> = (0..cols).map(|j| 1.0 + 0.37 * j as f64).collect();
    let mut sigma = 0.0;
    for _ in 0..500 {
        let gv: Vec<f64> = (0..rows)
            .map(|i| (0..cols).map(|j| at(i, j) * v[j]).sum())
            .collect();
        let w: Vec<f64> = (0..cols)
            .map(|j| (0..rows).map(|i| at(i, j) * gv[i]).sum())
            .collect();
        let n = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        sigma = n.sqrt();
        v = w.iter().map(|x| x / n).collect();
    }
    sigma
}

/// A number's definition for a row-major `rows × cols` matrix.
type Definition = dyn Fn(&[f32], usize, usize) -> f64;

fn close(got: f32, want: f64, what: &str) {
    assert!(
        (f64::from(got) - want).abs() <= 1e-5 * (1.0 + want.abs()),
        "{what}: {got}, the definition gives {want}"
    );
}

#[test]
fn the_norms_and_the_trace_reach_the_update_on_every_back_end() {
    let (shapes, grads) = problem();
    // One recipe per number, so that a wrong one is named; the last reads the norms in a
    // per-tensor `if`.
    let cases: [(&str, Box<Definition>); 4] = [
        (
            "param = 0 * grad + frobenius_norm(matrix(grad))",
            Box::new(|g, _, _| frobenius(g)),
        ),
        (
            "let G = matrix(grad)\n  let s = spectral_norm(G)\n  param = 0 * grad + s",
            Box::new(largest_singular_value),
        ),
        (
            "let G = matrix(grad)\n  param = 0 * grad + matrix_trace(G @ transpose(G))",
            Box::new(|g, _, _| frobenius(g).powi(2)),
        ),
        (
            "let G = matrix(grad)\n  param = 0 * grad + (if spectral_norm(G) < frobenius_norm(G) then 1 else -1)",
            // A matrix of rank above one has ‖G‖₂ < ‖G‖_F.
            Box::new(|_, _, _| 1.0),
        ),
    ];
    for (body, want) in &cases {
        let reference = step(body, Backend::Interp, &shapes, &grads);
        for b in backends() {
            let got = step(body, b, &shapes, &grads);
            agrees(&got, &reference, b, body);
            for (t, (p, g)) in got.iter().zip(&grads).enumerate() {
                let (rows, cols) = (shapes[t][0], shapes[t][1]);
                let w = want(g, rows, cols);
                for &v in p {
                    close(v, w, &format!("`{body}`, tensor {t} on {}", b.name()));
                }
            }
        }
    }
}

#[test]
fn a_number_from_a_matrix_scales_a_matrix_and_a_repeat_reads_it_each_round() {
    let (shapes, grads) = problem();
    // G / ‖G‖_F; then the power iteration in the language: V ← GᵀG V / ‖GᵀG V‖_F from
    // V = I tends to v vᵀ (v the top right singular vector), so ‖G V‖_F tends to σ₁.
    let normalized = "let G = matrix(grad)\n  param = elements(G / frobenius_norm(G))";
    let power = "let G = matrix(grad)\n  let V = eye(cols())\n  repeat 60 {\n    let W = transpose(G) @ (G @ V)\n    V = W / frobenius_norm(W)\n  }\n  param = 0 * grad + frobenius_norm(G @ V) - spectral_norm(G)";
    for body in [normalized, power] {
        let reference = step(body, Backend::Interp, &shapes, &grads);
        for b in backends() {
            let got = step(body, b, &shapes, &grads);
            agrees(&got, &reference, b, body);
        }
    }
    let got = step(normalized, Backend::Interp, &shapes, &grads);
    for (p, g) in got.iter().zip(&grads) {
        let n = frobenius(g);
        for (x, y) in p.iter().zip(g) {
            close(*x, f64::from(*y) / n, "G / frobenius_norm(G)");
        }
    }
    // The iteration's estimate meets faer's largest singular value.
    let got = step(power, Backend::Interp, &shapes, &grads);
    for (t, p) in got.iter().enumerate() {
        let sigma = largest_singular_value(&grads[t], shapes[t][0], shapes[t][1]);
        for &v in p {
            assert!(
                f64::from(v).abs() <= 1e-4 * sigma,
                "tensor {t}: power iteration minus spectral_norm is {v} (σ₁ = {sigma})"
            );
        }
    }
}

#[test]
fn a_matrix_number_needs_a_matrix() {
    let c = compile(
        "t.anneal",
        "transform t() {\n  grad = grad * frobenius_norm(grad)\n}\n",
    );
    let errs: Vec<_> = c.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].code, "E0133");
    assert!(
        errs[0]
            .message
            .contains("`frobenius_norm` works on matrices"),
        "{}",
        errs[0].message
    );
}

#[test]
fn numbers_from_matrices_in_states_skips_and_periodic_blocks_agree_with_the_interpreter() {
    let (shapes, grads) = problem();
    let bodies = [
        // A per-tensor state and a matrix state that start from / take such numbers.
        "state s: tensor = 0\n  state L: matrix(cols, cols) = 0\n  let G = matrix(grad)\n  L = transpose(G) @ G / spectral_norm(G)\n  s = s + matrix_trace(L)\n  param = param - 0.1 * grad / s",
        // A skip that reads one: no tensor's norm is that large, so the step is taken.
        "let G = matrix(grad)\n  skip if max(0 * grad + frobenius_norm(G), global) > 1e6\n  param = param - grad / frobenius_norm(G)",
        // Inside `every` (due at every step).
        "state s: tensor = 1\n  every 1 steps {\n    s = spectral_norm(matrix(grad))\n  }\n  param = param - grad * s",
    ];
    for body in bodies {
        let reference = step(body, Backend::Interp, &shapes, &grads);
        assert!(
            reference.iter().flatten().any(|v| *v != 0.0),
            "`{body}` left the parameters at 0"
        );
        for b in backends() {
            let got = step(body, b, &shapes, &grads);
            agrees(&got, &reference, b, body);
        }
    }
}

#[test]
fn a_per_element_value_that_reads_a_matrix_number_keeps_the_value_it_had_where_written() {
    // `u` reads `grad` before `grad` changes: it is a statement run where it is written,
    // not a definition evaluated where it is read (only numbers from matrices are).
    let (shapes, grads) = problem();
    let body = "let G = matrix(grad)\n  let u = grad / frobenius_norm(G)\n  let v = matrix(grad / frobenius_norm(G))\n  grad = 0 * grad\n  param = u + elements(v)";
    for b in backends() {
        let got = step(body, b, &shapes, &grads);
        for (p, g) in got.iter().zip(&grads) {
            let n = frobenius(g);
            for (x, y) in p.iter().zip(g) {
                close(
                    *x,
                    2.0 * f64::from(*y) / n,
                    &format!("`{body}` on {}", b.name()),
                );
            }
        }
    }
}
