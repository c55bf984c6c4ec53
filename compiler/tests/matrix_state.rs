//! Matrix states (`state L: matrix(rows, rows) = ...`), `every k steps { ... }` and the
//! decompositions (`inverse_root`, `eigh`, `qr`): what the checker refuses, what a step
//! refuses at run time, and what they compute over several steps on the interpreter and
//! every CPU back end, against the same quantities computed here in f64 loops.

use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::compile;
use anneal_compiler::diagnostic::Diagnostic;

const CPU: [Backend; 3] = [Backend::Interp, Backend::Cranelift, Backend::Llvm];

fn one_error(src: &str) -> (Diagnostic, String) {
    let c = compile("recipe.anneal", src);
    let errs: Vec<Diagnostic> = c.diagnostics.into_iter().filter(|d| d.is_error()).collect();
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    let d = errs[0].clone();
    let text = src[d.span.start..d.span.end].to_string();
    (d, text)
}

/// `grads.len()` steps of `src`'s recipe on one tensor of `shape` from zero parameters:
/// the parameters after each step, or the first error.
fn run(
    src: &str,
    b: Backend,
    shape: &[usize],
    grads: &[Vec<f32>],
) -> Result<Vec<Vec<f32>>, String> {
    let c = compile("t.anneal", src);
    assert!(!c.has_errors(), "{src}\n{:?}", c.diagnostics);
    let n: usize = shape.iter().product();
    let mut params = vec![vec![0f32; n]];
    let (mut s, _) = Stepper::new(
        b,
        &c.program,
        &c.program.recipes[0],
        &["w".to_string()],
        &[shape.to_vec()],
        &params,
        1,
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for g in grads {
        s.step(&mut params, std::slice::from_ref(g))
            .map_err(|e| e.to_string())?;
        out.push(params[0].clone());
    }
    Ok(out)
}

fn grads(n: usize, steps: usize) -> Vec<Vec<f32>> {
    (0..steps)
        .map(|s| {
            (0..n)
                .map(|i| (((i * 7 + s * 5) % 13) as f32 - 6.0) / 4.0)
                .collect()
        })
        .collect()
}

#[test]
fn a_matrix_state_holds_matrices_only() {
    let (d, at) = one_error(
        "transform t() {\n  state L: matrix(rows, rows) = 0\n  L = grad\n  grad = elements(L @ matrix(grad))\n}\n",
    );
    assert_eq!((d.code, at.as_str()), ("E0136", "grad"));
    let (d, at) = one_error(
        "transform t() {\n  state L: matrix(rows, cols) = param\n  grad = elements(L)\n}\n",
    );
    assert_eq!((d.code, at.as_str()), ("E0136", "param"));
}

#[test]
fn every_takes_a_whole_period_and_assignments() {
    let (d, at) = one_error(
        "transform t(k: real = 2) {\n  state c = 0\n  every k steps {\n    c = c + 1\n  }\n  grad = grad + c\n}\n",
    );
    assert_eq!((d.code, at.as_str()), ("E0135", "k"));
    let (d, _) = one_error("transform t() {\n  every 2 steps {\n    skip if true\n  }\n}\n");
    assert_eq!(d.code, "E0135");
}

#[test]
fn every_k_steps_takes_effect_at_multiples_of_k() {
    // c counts the refreshes; the update leaves it in the parameters (a chain's update is
    // added to them): after step s they hold the sum over t ≤ s of floor(t / 3).
    let src = "transform t() {\n  state c = 0\n  every 3 steps {\n    c = c + 1\n  }\n  grad = grad * 0 + c\n}\nrecipe r {\n  update = t()\n}\n";
    let want = [0.0, 0.0, 1.0, 2.0, 3.0, 5.0, 7.0];
    for b in CPU {
        let got = run(src, b, &[2], &grads(2, 7)).unwrap();
        let got: Vec<f32> = got.iter().map(|p| p[0]).collect();
        assert_eq!(got, want, "{}", b.name());
    }
}

/// L = I + Σ G Gᵀ over the steps so far, in f64.
fn accumulated(grads: &[Vec<f32>], rows: usize, cols: usize, upto: usize) -> Vec<f64> {
    let mut l = vec![0.0; rows * rows];
    for i in 0..rows {
        l[i * rows + i] = 1.0;
    }
    for g in &grads[..upto] {
        for i in 0..rows {
            for j in 0..rows {
                l[i * rows + j] += (0..cols)
                    .map(|k| g[i * cols + k] as f64 * g[j * cols + k] as f64)
                    .sum::<f64>();
            }
        }
    }
    l
}

#[test]
fn an_accumulated_matrix_state_and_its_inverse_roots() {
    // `inverse_root(L, 1, 0)` is L⁻¹, and `X @ X` with X = inverse_root(L, 2, 0) is too:
    // each step's update U must solve L U = G, for L accumulated as the state is.
    let (rows, cols) = (3, 4);
    for root in [
        "inverse_root(L, 1, 0)",
        "inverse_root(L, 2, 0) @ inverse_root(L, 2, 0)",
    ] {
        let src = format!(
            "transform t() {{\n  state L: matrix(rows, rows) = eye(rows())\n  let G = matrix(grad)\n  L += G @ transpose(G)\n  grad = elements({root} @ G) - param\n}}\nrecipe r {{\n  update = t()\n}}\n"
        );
        let gs = grads(rows * cols, 4);
        for b in CPU {
            let got = run(&src, b, &[rows, cols], &gs).unwrap();
            for (s, u) in got.iter().enumerate() {
                let l = accumulated(&gs, rows, cols, s + 1);
                for i in 0..rows {
                    for j in 0..cols {
                        let lu: f64 = (0..rows)
                            .map(|k| l[i * rows + k] * u[k * cols + j] as f64)
                            .sum();
                        let g = gs[s][i * cols + j] as f64;
                        assert!(
                            (lu - g).abs() < 1e-3 * (1.0 + g.abs()),
                            "{root} on {}, step {s}: (L U)[{i},{j}] = {lu}, G = {g}",
                            b.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_read_before_an_assignment_sees_the_old_matrix() {
    // `old` is bound before L changes and read (by `elements`) after: it is L as the step
    // began, so the update after step s is the sum of the gradients before it.
    let src = "transform t() {\n  state L: matrix(rows, cols) = 0\n  let old = L\n  L = L + matrix(grad)\n  grad = elements(old) - param\n}\nrecipe r {\n  update = t()\n}\n";
    let gs = grads(6, 3);
    for b in CPU {
        let got = run(src, b, &[2, 3], &gs).unwrap();
        for (s, p) in got.iter().enumerate() {
            for (i, v) in p.iter().enumerate() {
                let want: f32 = gs[..s].iter().map(|g| g[i]).sum();
                assert_eq!(*v, want, "{}: step {s}, entry {i}", b.name());
            }
        }
    }
}

#[test]
fn a_matrix_state_of_the_wrong_shape_is_an_error_on_every_back_end() {
    let src = "transform t() {\n  state L: matrix(rows, rows) = 0\n  L = matrix(grad)\n  grad = elements(L @ matrix(grad))\n}\nrecipe r {\n  update = t()\n}\n";
    for b in CPU {
        let e = run(src, b, &[2, 3], &grads(6, 1)).expect_err("a 2×3 value for a 2×2 state");
        assert!(e.contains("matrix state `L` is 2×2"), "{}: {e}", b.name());
    }
}

#[test]
fn eigenvectors_and_q_factors_are_orthonormal() {
    // eigh(G Gᵀ) and qr(G) have orthonormal columns: Qᵀ Q = I, written to the update.
    for f in ["eigh(G @ transpose(G))", "qr(transpose(G))"] {
        let src = format!(
            "transform t() {{\n  let G = matrix(grad)\n  let Q = {f}\n  grad = elements(transpose(Q) @ Q) - param\n}}\nrecipe r {{\n  update = t()\n}}\n"
        );
        for b in CPU {
            let got = run(&src, b, &[3, 3], &grads(9, 1)).unwrap();
            for (i, v) in got[0].iter().enumerate() {
                let want = if i % 4 == 0 { 1.0 } else { 0.0 };
                assert!(
                    (v - want).abs() < 1e-5,
                    "{f} on {}: entry {i} is {v}",
                    b.name()
                );
            }
        }
    }
}

#[test]
fn a_matrix_let_keeps_the_values_it_was_written_with() {
    // M reads `grad` where it is bound; `grad` changes before `elements(M)` is read, and
    // the update must still be the first gradient (as for any `let`), so the parameters
    // after step s hold the sum of the gradients so far.
    let src = "transform t() {\n  let M = matrix(grad) * norm(grad, tensor) / norm(grad, tensor)\n  grad = grad * 0\n  grad = elements(M)\n}\nrecipe r {\n  update = t()\n}\n";
    let gs = grads(6, 2);
    for b in CPU {
        let got = run(src, b, &[2, 3], &gs).unwrap();
        for (i, v) in got[1].iter().enumerate() {
            let want = gs[0][i] + gs[1][i];
            assert!(
                (v - want).abs() < 1e-6,
                "{}: entry {i} is {v}, not {want}",
                b.name()
            );
        }
    }
}
