//! The golden cases from Optax and PyTorch (`../shared/conformance/cases`, beside the
//! project's checkout; `ANNEAL_CONFORMANCE` overrides the folder) run inside `cargo test`.
//! Every case passes or fails only as "not implemented"; every case whose functions are
//! all in the core library must pass.

use anneal_compiler::backends::Backend;
use anneal_runtime::conformance::{
    collect_cases, function_names, library, load_case, run_case, run_case_on,
};
use std::path::PathBuf;

/// The functions of the core library (issue: foundation), by module.
const CORE: &[&str] = &[
    "sgd",
    "adam",
    "adamw",
    "clip_by_global_norm",
    "clip",
    "add_decayed_weights",
    "constant_schedule",
    "linear_schedule",
    "polynomial_schedule",
    "exponential_decay",
    "cosine_decay_schedule",
    "warmup_cosine_decay_schedule",
    "piecewise_constant_schedule",
    "join_schedules",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale",
    "scale_by_sign",
    "sign_sgd",
    "SGD",
    "Adam",
    "AdamW",
    "clip_grad_norm_",
    "clip_grad_value_",
    "StepLR",
    "CosineAnnealingLR",
    "LinearLR",
    "SequentialLR",
    "MultiStepLR",
    "ExponentialLR",
    "ConstantLR",
    "PolynomialLR",
];

fn cases_dir() -> PathBuf {
    let dir = std::env::var_os("ANNEAL_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/conformance/cases"
            ))
        });
    assert!(
        dir.is_dir(),
        "golden cases not found at {}: check the project out beside shared/, or set ANNEAL_CONFORMANCE",
        dir.display()
    );
    dir
}

/// Cases known to mismatch, with the reason (runtime/tests/known_mismatches.txt).
fn known_mismatches() -> Vec<String> {
    include_str!("known_mismatches.txt")
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn golden_cases_pass_or_are_not_implemented() {
    let known = known_mismatches();
    let lib = library();
    let files = collect_cases(&[cases_dir()]).unwrap();
    assert!(
        files.len() >= 100,
        "expected the golden cases, found {}",
        files.len()
    );
    let mut core_passed = 0;
    let mut failures = Vec::new();
    for f in &files {
        let case = load_case(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let fns = function_names(&case);
        let core = !fns.is_empty() && fns.iter().all(|n| CORE.contains(&n.as_str()));
        let result = run_case(&case, &lib);
        if known.contains(&case.name) {
            assert!(
                result.is_err(),
                "{} passes now: remove it from known_mismatches.txt",
                case.name
            );
            continue;
        }
        match result {
            Ok(()) => core_passed += usize::from(core),
            Err(msg) if !core && msg.to_string().starts_with("not implemented: ") => {}
            Err(msg) => failures.push(format!("{}: {msg}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(core_passed >= 50, "only {core_passed} core cases ran");
}

/// Every case the interpreter passes must pass on a compiled back end.
fn every_passing_case_passes_on(backend: Backend) {
    let lib = library();
    let files = collect_cases(&[cases_dir(), cases_dir().join("../train")]).unwrap();
    let mut passed = 0;
    let mut failures = Vec::new();
    for f in &files {
        let case = load_case(f).unwrap();
        let reference = run_case(&case, &lib);
        match (&reference, run_case_on(&case, &lib, backend)) {
            (Ok(()), Ok(())) => passed += 1,
            (Ok(()), Err(m)) => failures.push(format!("{}: {m}", case.name)),
            (Err(_), _) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ on {}:\n{}",
        failures.len(),
        backend.name(),
        failures.join("\n")
    );
    assert!(
        passed >= 150,
        "only {passed} cases ran on {}",
        backend.name()
    );
}

#[test]
fn every_case_the_interpreter_passes_passes_on_cranelift() {
    every_passing_case_passes_on(Backend::Cranelift);
}

#[test]
fn every_case_the_interpreter_passes_passes_on_llvm() {
    every_passing_case_passes_on(Backend::Llvm);
}

/// The modern set (`../shared/conformance/modern`, FORMAT-MODERN.md): every case passes,
/// on the interpreter and on every compiled back end — the matrix optimizers (optax
/// `contrib.muon`, torch `Muon`, pytorch_optimizer `Shampoo`) included.
#[test]
fn modern_cases_pass_on_every_back_end() {
    let lib = library();
    let files = collect_cases(&[cases_dir().join("../modern")]).unwrap();
    assert!(
        files.len() >= 40,
        "expected the modern set, found {}",
        files.len()
    );
    let mut backends = vec![Backend::Cranelift, Backend::Llvm];
    if anneal_compiler::backends::gpu::for_tests().is_some() {
        backends.push(Backend::Wgsl);
    }
    let (mut passed, mut failures) = (0, Vec::new());
    for f in &files {
        let case = load_case(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        match run_case(&case, &lib) {
            Ok(()) => {
                passed += 1;
                for &b in &backends {
                    if let Err(m) = run_case_on(&case, &lib, b) {
                        failures.push(format!("{} on {}: {m}", case.name, b.name()));
                    }
                }
            }
            Err(m) => failures.push(format!("{}: {m}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(passed >= 48, "only {passed} modern cases passed");
}

/// On lavapipe in CI; skipped (said on stderr) only where there is no GPU and no `CI`.
#[test]
fn every_case_the_interpreter_passes_passes_on_wgsl() {
    if anneal_compiler::backends::gpu::for_tests().is_some() {
        every_passing_case_passes_on(Backend::Wgsl);
    }
}

#[test]
fn training_cases_reproduce_pytorch() {
    let lib = library();
    let dir = cases_dir().join("../train");
    let files = collect_cases(&[dir]).unwrap();
    assert!(
        files.len() >= 14,
        "expected the training cases, found {}",
        files.len()
    );
    for f in &files {
        let case = load_case(f).unwrap();
        if let Err(e) = run_case(&case, &lib) {
            panic!("{}: {e}", case.name);
        }
    }
}

#[test]
fn a_wrong_training_rule_fails_the_case() {
    // AdamW's decoupled decay without the learning rate (w *= 1 − wd) is a mistake the
    // cases were built to catch (FORMAT-TRAIN §9).
    let lib = library();
    let path = cases_dir().join("../train/example_iris_softmax_tiny.json");
    let mut case = load_case(&path).unwrap();
    case.json["recipe"]["update"][1]["args"]["weight_decay"] = serde_json::json!(0.2);
    assert!(run_case(&case, &lib).is_err());
}

#[test]
fn a_wrong_rule_fails_the_cases() {
    // The runner must be able to fail: torch's AdamW with optax's default weight decay
    // (1e-4 instead of 1e-2) gives different numbers.
    let lib = library();
    let path = cases_dir().join("torch/torch__AdamW__defaults.json");
    let mut case = load_case(&path).unwrap();
    let update = case.json.get_mut("update").unwrap();
    update[0]["args"]["weight_decay"] = serde_json::json!(1e-4);
    let err = run_case(&case, &lib).unwrap_err();
    assert!(
        err.to_string().contains("expected") && err.to_string().contains("got"),
        "{err}"
    );
}

#[test]
fn a_rosenbrock_case_with_the_wrong_shape_is_an_error_not_a_panic() {
    // Case files are untrusted: a one-value `xy` reaches the Rosenbrock loss and gradient
    // through L-BFGS's closure and must come back as an error naming the loss.
    let lib = library();
    let path = cases_dir().join("torch/torch__LBFGS__rosenbrock_strong_wolfe.json");
    let mut case = load_case(&path).unwrap();
    case.json["params"]["xy"] = serde_json::json!({"shape": [1], "data": [0.5]});
    let err = run_case(&case, &lib).unwrap_err();
    assert!(err.to_string().contains("rosenbrock"), "{err}");
}

#[test]
fn optax_sam_matches_optax_beyond_the_shared_case() {
    // runtime/tests/golden: numbers made by optax itself (gen_optax_sam.py there) for other
    // sync periods, reset_state=False, stateful inner chains and a clip inside a chain.
    let lib = library();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let files = collect_cases(&[dir]).unwrap();
    assert_eq!(files.len(), 4, "{files:?}");
    for f in &files {
        let case = load_case(f).unwrap();
        for backend in [Backend::Interp, Backend::Cranelift, Backend::Llvm] {
            if let Err(e) = run_case_on(&case, &lib, backend) {
                panic!("{} on {}: {e}", case.name, backend.name());
            }
        }
    }
}
