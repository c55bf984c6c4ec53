//! Matrix values (`matrix(x)`, `@`, `transpose`, `eye`, `repeat`): what the checker
//! refuses, what a step refuses at run time (an error, never a panic), and Newton–Schulz
//! written in the language against the same iteration written here in f64 loops, on the
//! interpreter and every CPU back end.

use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::compile;
use anneal_compiler::diagnostic::Diagnostic;

fn errors(src: &str) -> Vec<Diagnostic> {
    let c = compile("recipe.anneal", src);
    c.diagnostics.into_iter().filter(|d| d.is_error()).collect()
}

fn one_error(src: &str) -> (Diagnostic, String) {
    let errs = errors(src);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    let d = errs[0].clone();
    let text = src[d.span.start..d.span.end].to_string();
    (d, text)
}

#[test]
fn a_matrix_does_not_silently_meet_a_per_element_value() {
    let (d, at) =
        one_error("transform t() {\n  let m = matrix(grad) + grad\n  grad = elements(m)\n}\n");
    assert_eq!(d.code, "E0133");
    assert_eq!(at, "grad");
    assert!(d.help.as_deref().unwrap().contains("elements(M)"), "{d:?}");
}

#[test]
fn a_matrix_is_not_stored_as_the_update() {
    let (d, at) = one_error("transform t() {\n  grad = transpose(matrix(grad))\n}\n");
    assert_eq!(d.code, "E0133");
    assert_eq!(at, "transpose(matrix(grad))");
}

#[test]
fn matrix_functions_name_a_per_element_argument() {
    let (d, at) = one_error("transform t() {\n  grad = elements(grad @ matrix(grad))\n}\n");
    assert_eq!(d.code, "E0133");
    assert_eq!(at, "grad");
    assert!(d.message.contains("`@` works on matrices"), "{}", d.message);
}

#[test]
fn repeat_updates_a_matrix_let() {
    let (d, _) = one_error(
        "transform t() {\n  state s = 0\n  repeat 3 {\n    s = s + 1\n  }\n  grad = grad + s\n}\n",
    );
    assert_eq!(d.code, "E0134");
    let (d, _) = one_error(
        "transform t(n: real = 2) {\n  let x = matrix(grad)\n  repeat n {\n    x = x @ x\n  }\n  grad = elements(x)\n}\n",
    );
    assert_eq!(d.code, "E0134");
    assert!(d.message.contains("whole number"), "{}", d.message);
}

#[test]
fn schedules_have_no_matrices() {
    let errs = errors("schedule s() {\n  eye(2)\n}\n");
    assert!(errs.iter().any(|d| d.code == "E0132"), "{errs:#?}");
}

/// One step of `src`'s recipe on a tensor of `shape`, or the step's error.
fn step(src: &str, backend: Backend, shape: &[usize], g: &[f32]) -> Result<Vec<f32>, String> {
    let c = compile("t.anneal", src);
    assert!(!c.has_errors(), "{src}\n{:?}", c.diagnostics);
    let recipe = &c.program.recipes[0];
    let n: usize = shape.iter().product();
    let mut params = vec![vec![0f32; n]];
    let (mut s, _) = Stepper::new(
        backend,
        &c.program,
        recipe,
        &["w".to_string()],
        &[shape.to_vec()],
        &params,
        1,
    )
    .map_err(|e| e.to_string())?;
    s.step(&mut params, &[g.to_vec()])
        .map_err(|e| e.to_string())?;
    Ok(params.remove(0))
}

const CPU: [Backend; 3] = [Backend::Interp, Backend::Cranelift, Backend::Llvm];

#[test]
fn a_matrix_of_the_wrong_shape_is_an_error_on_every_back_end() {
    let src = "transform t() {\n  grad = elements(transpose(matrix(grad)))\n}\nrecipe r {\n  update = t()\n}\n";
    for b in CPU {
        let e = step(src, b, &[2, 3], &[1.0; 6]).expect_err("a 3×2 result for a 2×3 tensor");
        assert!(e.contains("transpose it back"), "{}: {e}", b.name());
    }
    let src = "transform t() {\n  let m = matrix(grad)\n  grad = elements(m @ m)\n}\nrecipe r {\n  update = t()\n}\n";
    for b in CPU {
        let e = step(src, b, &[2, 3], &[1.0; 6]).expect_err("2×3 @ 2×3");
        assert!(e.contains("columns"), "{}: {e}", b.name());
    }
}

/// Newton–Schulz as `scale_by_muon` writes it, here in f64 with plain loops: X = G/‖G‖
/// (the wide way round), then X ← aX + (bA + cA²)X with A = XXᵀ.
fn newton_schulz(g: &[f64], rows: usize, cols: usize, steps: usize) -> Vec<f64> {
    let (a, b, c) = (3.4445, -4.7750, 2.0315);
    let wide = rows > cols;
    let (r, k) = if wide { (cols, rows) } else { (rows, cols) };
    let at = |i: usize, j: usize| {
        if wide {
            g[j * cols + i]
        } else {
            g[i * cols + j]
        }
    };
    let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut x: Vec<f64> = (0..r * k).map(|i| at(i / k, i % k) / norm).collect();
    let mul = |p: &[f64], q: &[f64], m: usize, n: usize, l: usize| -> Vec<f64> {
        let mut o = vec![0.0; m * l];
        for i in 0..m {
            for j in 0..l {
                o[i * l + j] = (0..n).map(|t| p[i * n + t] * q[t * l + j]).sum();
            }
        }
        o
    };
    for _ in 0..steps {
        let xt: Vec<f64> = (0..k * r).map(|i| x[(i % r) * k + i / r]).collect();
        let am = mul(&x, &xt, r, k, r);
        let a2 = mul(&am, &am, r, r, r);
        let bm: Vec<f64> = am.iter().zip(&a2).map(|(p, q)| b * p + c * q).collect();
        let bx = mul(&bm, &x, r, r, k);
        x = x.iter().zip(&bx).map(|(p, q)| a * p + q).collect();
    }
    if wide {
        (0..rows * cols)
            .map(|i| x[(i % cols) * k + i / cols])
            .collect()
    } else {
        x
    }
}

#[test]
fn newton_schulz_in_the_language_matches_the_iteration_on_every_back_end() {
    // From zero parameters, with no momentum, one step leaves the orthogonalized matrix
    // (a chain's update is added to the parameters).
    let src = "import std.optax.{scale_by_muon}\nrecipe r {\n  update = scale_by_muon(beta: 0, nesterov: false)\n}\n";
    for (rows, cols) in [(3, 5), (6, 4)] {
        let g: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
        let mut want = newton_schulz(&g64, rows, cols, 5);
        let scale = (1f64).max(cols as f64 / rows as f64).sqrt();
        want.iter_mut().for_each(|v| *v *= scale);
        for b in CPU {
            let got = step(src, b, &[rows, cols], &g).unwrap();
            for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*x as f64 - y).abs() <= 1e-4 * (1.0 + y.abs()),
                    "{rows}×{cols} on {}: entry {i} is {x}, the iteration gives {y}",
                    b.name()
                );
            }
        }
    }
}

#[test]
fn matrix_values_do_not_depend_on_the_thread_count() {
    // The fused step spreads the tensors' matrices over its threads, one tensor to a
    // thread: Muon, Shampoo and SOAP on tensors of several shapes give the same bits on
    // one thread and on three.
    let recipes = [
        "import std.torch.{Muon}\nrecipe r { update = Muon(lr: 0.02) }",
        "import std.pytorch_optimizer.{Shampoo}\nrecipe r { update = Shampoo(lr: 0.01, matrix_eps: 1e-3) }",
        "import std.research.{soap}\nrecipe r { update = soap(learning_rate: 0.01, precondition_frequency: 2) }",
    ];
    let shapes: Vec<Vec<usize>> = vec![vec![6, 4], vec![3, 9], vec![5], vec![2, 3, 4], vec![8, 8]];
    let names: Vec<String> = (0..shapes.len()).map(|t| format!("t{t}")).collect();
    let init: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(t, s)| {
            let n: usize = s.iter().product();
            (0..n)
                .map(|i| ((i * 7 + t * 3) % 11) as f32 / 10.0 - 0.5)
                .collect()
        })
        .collect();
    let grads = |k: usize| -> Vec<Vec<f32>> {
        init.iter()
            .map(|p| {
                (0..p.len())
                    .map(|i| ((i * 13 + k * 5) % 17) as f32 / 8.0 - 1.0)
                    .collect()
            })
            .collect()
    };
    for src in recipes {
        let c = compile("t.anneal", src);
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        for b in [Backend::Cranelift, Backend::Llvm] {
            let mut runs = Vec::new();
            for threads in [1, 3] {
                let recipe = &c.program.recipes[0];
                let (mut s, _) =
                    Stepper::new(b, &c.program, recipe, &names, &shapes, &init, threads).unwrap();
                let mut p = init.clone();
                for k in 0..6 {
                    s.step(&mut p, &grads(k)).unwrap();
                }
                let products = s.matrix_products().expect("a fused step");
                assert!(!products.is_empty(), "{src}: no products recorded");
                runs.push((p, products));
            }
            assert_eq!(runs[0], runs[1], "{src} on {}", b.name());
        }
    }
}

#[test]
fn the_library_writes_no_shape_that_holds_only_for_square_tensors() {
    // Library modules are checked without warnings; each file is checked here as a
    // user's, where W0020 would show.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stdlib");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("stdlib/") {
        let path = entry.expect("an entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("anneal") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a stdlib file");
        let src: String = text
            .lines()
            .filter(|l| !l.starts_with("module "))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = compile("lib.anneal", &src);
        let shapes: Vec<_> = c.diagnostics.iter().filter(|d| d.code == "W0020").collect();
        assert!(shapes.is_empty(), "{}: {shapes:#?}", path.display());
        assert!(!c.has_errors(), "{}: {:#?}", path.display(), c.diagnostics);
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} stdlib files");
}

#[test]
fn a_shape_that_holds_only_for_square_tensors_is_a_warning_and_the_step_names_it() {
    // `G @ G`: W0020 when checked (the recipe may be meant for square tensors only), and
    // on a 2×3 tensor the step's error.
    let src = "transform t() {\n  let G = matrix(grad)\n  grad = elements(G @ G)\n}\nrecipe r {\n  update = t()\n}\n";
    let c = compile("t.anneal", src);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let w: Vec<_> = c.diagnostics.iter().filter(|d| d.code == "W0020").collect();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(&src[w[0].span.start..w[0].span.end], "G @ G");
    let square = step(src, Backend::Interp, &[2, 2], &[1.0, 2.0, 3.0, 4.0]).expect("2×2");
    // [1 2; 3 4]² = [7 10; 15 22], added to zero parameters.
    assert_eq!(square, vec![7.0, 10.0, 15.0, 22.0]);
    assert!(step(src, Backend::Interp, &[2, 3], &[1.0; 6]).is_err());
}
