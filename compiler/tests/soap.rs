//! SOAP (`std.research.soap`) on every back end, against a float64 NumPy transcription of
//! the paper (`python/tests/soap_reference.py`, which `test_soap.py` checks against
//! pytorch_optimizer's `SOAP` and against the fixture read here) and by its identities:
//! with no side preconditioned it is Adam one step late, and a problem rotated on both
//! sides (W ↦ U W Vᵀ, G ↦ U G Vᵀ) is stepped to the rotated weights, as Adam's is not.

use anneal_compiler::backends::gpu;
use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::compile;
use serde_json::Value;

/// Every back end; wgsl where a GPU is found (with `CI` set, a missing one fails).
fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Interp, Backend::Cranelift, Backend::Llvm];
    if gpu::for_tests().is_some() {
        out.push(Backend::Wgsl);
    }
    out
}

struct Tensor {
    name: String,
    shape: Vec<usize>,
    init: Vec<f32>,
}

/// `c`'s first recipe on `tensors` on back end `b`, and their starting values.
fn stepper<'p>(
    c: &'p anneal_compiler::Compilation,
    b: Backend,
    tensors: &[Tensor],
) -> (Stepper<'p>, Vec<Vec<f32>>) {
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let names: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
    let shapes: Vec<Vec<usize>> = tensors.iter().map(|t| t.shape.clone()).collect();
    let params: Vec<Vec<f32>> = tensors.iter().map(|t| t.init.clone()).collect();
    let (s, _) = Stepper::new(
        b,
        &c.program,
        &c.program.recipes[0],
        &names,
        &shapes,
        &params,
        1,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
    (s, params)
}

/// The parameters after each step of `src`'s recipe, one gradient list per step.
fn run(src: &str, b: Backend, tensors: &[Tensor], grads: &[Vec<Vec<f32>>]) -> Vec<Vec<Vec<f32>>> {
    let c = compile("t.anneal", src);
    let (mut s, mut params) = stepper(&c, b, tensors);
    grads
        .iter()
        .map(|g| {
            s.step(&mut params, g)
                .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
            params.clone()
        })
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("a list of numbers")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

fn soap(hyper: &serde_json::Map<String, Value>) -> String {
    let args: Vec<String> = hyper.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!(
        "import std.research.{{soap}}\nrecipe r {{ update = soap({}) }}",
        args.join(", ")
    )
}

#[test]
fn soap_follows_the_float64_transcription_of_the_paper_on_every_back_end() {
    let text = include_str!("soap/reference.json");
    let fixture: Value = serde_json::from_str(text).expect("the fixture is JSON");
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() >= 3);
    for case in cases {
        let name = case["name"].as_str().expect("a name");
        let src = soap(
            case["hyperparameters"]
                .as_object()
                .expect("hyperparameters"),
        );
        let ts = case["tensors"].as_array().expect("tensors");
        let tensors: Vec<Tensor> = ts
            .iter()
            .map(|t| Tensor {
                name: t["name"].as_str().expect("a name").to_string(),
                shape: floats(&t["shape"]).iter().map(|&d| d as usize).collect(),
                init: floats(&t["init"]),
            })
            .collect();
        let steps = ts[0]["grads"].as_array().expect("grads").len();
        let grads: Vec<Vec<Vec<f32>>> = (0..steps)
            .map(|s| ts.iter().map(|t| floats(&t["grads"][s])).collect())
            .collect();
        for b in backends() {
            let got = run(&src, b, &tensors, &grads);
            for (s, after) in got.iter().enumerate() {
                for (t, (p, spec)) in after.iter().zip(ts).enumerate() {
                    let want = floats(&spec["expected"][s]);
                    for (i, (g, w)) in p.iter().zip(&want).enumerate() {
                        // f32 entries against f64: the eigenbases carry the rounding of
                        // the accumulated preconditioners into every later step.
                        assert!(
                            (g - w).abs() <= 2e-5 + 2e-5 * w.abs(),
                            "{name} on {}: tensor {} element {i} after step {}: {g} vs {w}",
                            b.name(),
                            tensors[t].name,
                            s + 1
                        );
                    }
                }
            }
        }
    }
}

/// A tensor of `shape` starting from `noise(numel, seed)`.
fn tensor(name: &str, shape: &[usize], seed: u64) -> Tensor {
    Tensor {
        name: name.into(),
        shape: shape.to_vec(),
        init: noise(shape.iter().product(), seed),
    }
}

/// A deterministic spread of values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn with_no_side_preconditioned_soap_is_adam_one_step_late() {
    // max_precondition_dim 1 keeps every basis here the identity; the first step only starts
    // the (unused) preconditioner, so step k + 1 is Adam's step k on the same gradient.
    // eps 0: SOAP adds eps to √v, optax to √v̂.
    let tensors = [tensor("w", &[3, 4], 1), tensor("b", &[5], 2)];
    let grads: Vec<Vec<Vec<f32>>> = (0..9)
        .map(|s| vec![noise(12, 10 + s), noise(5, 30 + s)])
        .collect();
    let soap = "import std.research.{soap}\nrecipe r { update = soap(learning_rate: 0.01, b1: 0.9, b2: 0.99, eps: 0, weight_decay: 0, max_precondition_dim: 1, precondition_frequency: 2) }";
    let adam = "import std.optax.{adam}\nrecipe r { update = adam(learning_rate: 0.01, b1: 0.9, b2: 0.99, eps: 0) }";
    for b in backends() {
        let ours = run(soap, b, &tensors, &grads);
        let theirs = run(adam, b, &tensors, &grads[1..]);
        assert_eq!(
            ours[0],
            vec![tensors[0].init.clone(), tensors[1].init.clone()]
        );
        for (s, (a, d)) in ours[1..].iter().zip(&theirs).enumerate() {
            for (x, y) in a.iter().flatten().zip(d.iter().flatten()) {
                assert!(
                    (x - y).abs() <= 1e-6,
                    "{} step {}: soap {x} vs adam {y}",
                    b.name(),
                    s + 2
                );
            }
        }
    }
}

/// An n × n orthogonal matrix: the Q of a QR of noise, by Gram–Schmidt in f64.
fn orthogonal(n: usize, seed: u64) -> Vec<f64> {
    let a: Vec<f64> = noise(n * n, seed).iter().map(|&v| f64::from(v)).collect();
    let mut q = vec![0.0; n * n];
    for j in 0..n {
        let mut c: Vec<f64> = (0..n).map(|i| a[i * n + j]).collect();
        for k in 0..j {
            let d: f64 = (0..n).map(|i| q[i * n + k] * c[i]).sum();
            for (i, ci) in c.iter_mut().enumerate() {
                *ci -= d * q[i * n + k];
            }
        }
        let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
        for i in 0..n {
            q[i * n + j] = c[i] / norm;
        }
    }
    q
}

/// U X Vᵀ for n × n matrices.
fn rotate(u: &[f64], x: &[f32], v: &[f64], n: usize) -> Vec<f32> {
    let at = |m: &[f64], i: usize, j: usize| m[i * n + j];
    let ux: Vec<f64> = (0..n * n)
        .map(|ij| {
            let (i, j) = (ij / n, ij % n);
            (0..n).map(|k| at(u, i, k) * f64::from(x[k * n + j])).sum()
        })
        .collect();
    (0..n * n)
        .map(|ij| {
            let (i, j) = (ij / n, ij % n);
            (0..n).map(|k| ux[i * n + k] * at(v, j, k)).sum::<f64>() as f32
        })
        .collect()
}

#[test]
fn soap_steps_a_rotated_problem_to_the_rotated_weights_and_adam_does_not() {
    // Square gradients drawn independently: every preconditioner is full rank with
    // distinct eigenvalues, so the eigenbases of the rotated problem are U Q_L and V Q_R
    // (up to signs, which the update does not see) — refreshes included.
    let n = 5;
    let (u, v) = (orthogonal(n, 7), orthogonal(n, 8));
    let init = noise(n * n, 3);
    let grads: Vec<Vec<f32>> = (0..10).map(|s| noise(n * n, 50 + s)).collect();
    let tensor = |init: Vec<f32>| {
        [Tensor {
            name: "w".into(),
            shape: vec![n, n],
            init,
        }]
    };
    let plain = tensor(init.clone());
    let rotated = tensor(rotate(&u, &init, &v, n));
    let gs: Vec<Vec<Vec<f32>>> = grads.iter().map(|g| vec![g.clone()]).collect();
    let rgs: Vec<Vec<Vec<f32>>> = grads.iter().map(|g| vec![rotate(&u, g, &v, n)]).collect();
    // The largest distance between the rotated run and the rotated weights of the plain run.
    let gap = |src: &str, b: Backend| {
        let (a, r) = (run(src, b, &plain, &gs), run(src, b, &rotated, &rgs));
        let (a, r) = (a.last().expect("steps"), r.last().expect("steps"));
        let want = rotate(&u, &a[0], &v, n);
        let moved = a[0].iter().zip(&init).map(|(x, y)| (x - y).abs());
        let moved = moved.fold(0f32, f32::max);
        let gap = r[0].iter().zip(&want).map(|(x, y)| (x - y).abs());
        (gap.fold(0f32, f32::max), moved)
    };
    let soap = "import std.research.{soap}\nrecipe r { update = soap(learning_rate: 0.01, weight_decay: 0.1, precondition_frequency: 3) }";
    let adam = "import std.optax.{adam}\nrecipe r { update = adam(learning_rate: 0.01) }";
    for b in backends() {
        let (g, moved) = gap(soap, b);
        assert!(moved > 0.02, "{}: soap moved only {moved}", b.name());
        assert!(g <= 2e-5, "{}: soap's rotated run is {g} away", b.name());
        let (g, moved) = gap(adam, b);
        assert!(
            g > 100.0 * 2e-5 && g > 0.1 * moved,
            "{}: adam {g}, moved {moved}",
            b.name()
        );
    }
}

#[test]
fn a_side_that_is_not_preconditioned_keeps_no_matrices() {
    use anneal_compiler::state::StateValue;
    // 6 × 3 with max_precondition_dim 4: the rows' side (6) is not preconditioned, the
    // columns' (3) is; a vector has neither without precondition_1d.
    let src = "import std.research.{soap}\nrecipe r { update = soap(max_precondition_dim: 4) }";
    let tensors = [tensor("w", &[6, 3], 1), tensor("b", &[5], 2)];
    let c = compile("t.anneal", src);
    for b in backends() {
        let (mut s, mut p) = stepper(&c, b, &tensors);
        for k in 0..4 {
            s.step(&mut p, &[noise(18, 10 + k), noise(5, 20 + k)])
                .unwrap();
        }
        let snap = s.snapshot();
        let sizes: Vec<Vec<usize>> = snap.states()[0]
            .iter()
            .filter_map(|v| match v {
                StateValue::Matrix(m) => Some(m.iter().map(Vec::len).collect()),
                _ => None,
            })
            .collect();
        // gg_rows, gg_cols, q_rows, q_cols; per tensor (w, b).
        assert_eq!(sizes, [[0, 0], [9, 0], [0, 0], [9, 0]], "{}", b.name());
        assert!(p.iter().flatten().all(|v| v.is_finite()));
    }
}
