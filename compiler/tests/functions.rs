//! Functions (`function f(x: real, ...) { ... value }`): a call is expanded into the
//! caller's body, so it computes exactly what the same statements written there do, on
//! every back end; a function sees only its arguments; and what a function cannot be
//! (recursive, a stage, reading `grad`) is a diagnostic, said once however often it is
//! called.

use anneal_compiler::backends::gpu;
use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::compile;
use anneal_compiler::diagnostic::Diagnostic;

fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Interp, Backend::Cranelift, Backend::Llvm];
    if gpu::for_tests().is_some() {
        out.push(Backend::Wgsl);
    }
    out
}

/// Three steps of `src`'s recipe on a 6×4 and a 5-element tensor.
fn run(src: &str, b: Backend) -> Vec<Vec<f32>> {
    let c = compile("t.anneal", src);
    assert!(!c.has_errors(), "{src}\n{:?}", c.diagnostics);
    let shapes = vec![vec![6, 4], vec![5]];
    let names = vec!["w".to_string(), "b".to_string()];
    let mut params: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| {
            (0..s.iter().product())
                .map(|i| (i % 7) as f32 / 7.0 - 0.4)
                .collect()
        })
        .collect();
    let (mut s, _) = Stepper::new(
        b,
        &c.program,
        &c.program.recipes[0],
        &names,
        &shapes,
        &params,
        1,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
    for k in 0..3 {
        let grads: Vec<Vec<f32>> = params
            .iter()
            .map(|p| {
                p.iter()
                    .enumerate()
                    .map(|(i, x)| x + ((i + k) % 5) as f32 / 10.0)
                    .collect()
            })
            .collect();
        s.step(&mut params, &grads)
            .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
    }
    params
}

#[test]
fn a_call_computes_what_its_statements_written_in_place_compute() {
    // A per-element function with a `let`, and a matrix one with a `repeat` reading a list
    // parameter, a default and a number computed from its matrix.
    let functions = "function soft_sign(x: real, eps: real = 1e-3) {\n  let a = abs(x) + eps\n  x / a\n}\n\nfunction orthogonalize(X: real, rounds: int, c: [real]) {\n  let Y = X / frobenius_norm(X)\n  repeat rounds {\n    Y = c[0] * Y + c[1] * (Y @ transpose(Y)) @ Y\n  }\n  Y\n}\n";
    let called = format!("{functions}\noptimizer o(lr: real = 0.05, cs: [real] = [1.5, -0.5]) {{\n  let u = soft_sign(grad)\n  param -= lr * (u + elements(orthogonalize(matrix(grad), 4, cs)))\n}}\nrecipe r {{\n  update = o()\n}}\n");
    let inline = "optimizer o(lr: real = 0.05, cs: [real] = [1.5, -0.5]) {\n  let a = abs(grad) + 1e-3\n  let u = grad / a\n  let X = matrix(grad)\n  let Y = X / frobenius_norm(X)\n  repeat 4 {\n    Y = cs[0] * Y + cs[1] * (Y @ transpose(Y)) @ Y\n  }\n  param -= lr * (u + elements(Y))\n}\nrecipe r {\n  update = o()\n}\n";
    for b in backends() {
        let (got, want) = (run(&called, b), run(inline, b));
        assert_eq!(got, want, "{}", b.name());
        assert!(got.iter().flatten().all(|v| v.is_finite()));
    }
}

#[test]
fn the_library_writes_newton_schulz_once() {
    // torch's Muon and optax's scale_by_muon and muon all call std.linalg's function.
    let lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stdlib");
    let mut calls = 0;
    for f in ["torch.anneal", "optax.anneal"] {
        let text = std::fs::read_to_string(lib.join(f)).expect("a stdlib file");
        assert!(
            !text.contains("repeat ns_steps"),
            "{f} iterates Newton–Schulz itself"
        );
        calls += text.matches("newton_schulz(").count();
    }
    assert_eq!(calls, 3);
}

fn errors(src: &str) -> Vec<Diagnostic> {
    compile("t.anneal", src)
        .diagnostics
        .into_iter()
        .filter(|d| d.is_error())
        .collect()
}

#[test]
fn what_a_function_cannot_do_is_said_once() {
    let reads_grad = "function f(x: real) {\n  x * grad\n}\ntransform t() {\n  grad = f(grad) + f(2 * grad)\n}\n";
    let errs = errors(reads_grad);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].code, "E0102");
    assert!(
        errs[0].message.contains("in a function"),
        "{}",
        errs[0].message
    );
    let recursive = "function f(x: real) {\n  f(x)\n}\ntransform t() {\n  grad = f(grad)\n}\n";
    assert_eq!(errors(recursive)[0].code, "E0145");
    let stage = "function f(x: real) {\n  x\n}\nrecipe r {\n  update = f(x: 1)\n}\n";
    assert_eq!(errors(stage)[0].code, "E0144");
    let literal_list = "function f(x: real, c: [real]) {\n  c[0] * x\n}\ntransform t() {\n  grad = f(grad, [1.0])\n}\n";
    assert_eq!(errors(literal_list)[0].code, "E0170");
    let missing =
        "function f(x: real, y: real) {\n  x * y\n}\ntransform t() {\n  grad = f(grad)\n}\n";
    assert_eq!(errors(missing)[0].code, "E0111");
    let state =
        "function f(x: real) {\n  state s = 0\n  x\n}\ntransform t() {\n  grad = f(grad)\n}\n";
    assert_eq!(errors(state)[0].code, "E0135");
}
