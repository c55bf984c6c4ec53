//! `runtime::session`: a recipe bound to caller-owned tensors, against the reference
//! interpreter stepping its own copies.

use anneal_compiler::backends::Backend;
use anneal_compiler::interp::Interpreter;
use anneal_runtime::session::{CheckedRecipe, Session};

const CLIP_ADAMW: &str = "import std.torch.{AdamW, clip_grad_norm_}
recipe r {
  groups { w = \"*.weight\"
           b = rest }
  update = clip_grad_norm_(max_norm: 0.5) |> AdamW(lr: 0.01, weight_decay: { w: 0.1, b: 0.0 })
}";

fn tensors() -> (Vec<String>, Vec<Vec<usize>>, Vec<Vec<f32>>) {
    let names = vec!["fc.weight".to_string(), "fc.bias".to_string()];
    let shapes = vec![vec![3, 4], vec![3]];
    let params = vec![
        (0..12).map(|i| (i as f32 * 0.37).sin()).collect(),
        vec![0.1, -0.2, 0.3],
    ];
    (names, shapes, params)
}

fn grads(k: usize) -> Vec<Vec<f32>> {
    vec![
        (0..12).map(|i| ((i + 7 * k) as f32 * 0.91).cos()).collect(),
        (0..3).map(|i| ((i + k) as f32 * 1.3).sin()).collect(),
    ]
}

fn step(s: &mut Session, params: &mut [Vec<f32>], g: &[Vec<f32>]) {
    let mut ps: Vec<&mut [f32]> = params.iter_mut().map(|p| p.as_mut_slice()).collect();
    let gs: Vec<&[f32]> = g.iter().map(|g| g.as_slice()).collect();
    s.step(&mut ps, &gs, None).unwrap();
}

#[test]
fn steps_in_place_like_the_interpreter_on_every_back_end() {
    let recipe = CheckedRecipe::compile("r.anneal", CLIP_ADAMW, None).unwrap();
    let (names, shapes, init) = tensors();
    let program = &anneal_compiler::compile("r.anneal", CLIP_ADAMW).program;
    let (reference, mut st) =
        Interpreter::with_shapes(program, &program.recipes[0], &names, &shapes, &init).unwrap();
    let mut want = init.clone();
    for k in 0..6 {
        reference.step(&mut st, &mut want, &grads(k)).unwrap();
    }
    for backend in [Backend::Interp, Backend::Cranelift, Backend::Llvm] {
        let mut s = Session::new(&recipe, &names, &shapes, &init, backend, 1).unwrap();
        let mut got = init.clone();
        for k in 0..6 {
            step(&mut s, &mut got, &grads(k));
        }
        assert_eq!(got, want, "{backend:?}");
        assert_eq!(s.group_of(), vec![0, 1]);
        assert_eq!(s.learning_rates(), vec![Some(0.01), Some(0.01)]);
    }
}

#[test]
fn saved_progress_resumes_bit_identical_and_is_refused_elsewhere() {
    let recipe = CheckedRecipe::compile("r.anneal", CLIP_ADAMW, None).unwrap();
    let (names, shapes, init) = tensors();
    let mut straight =
        Session::new(&recipe, &names, &shapes, &init, Backend::Cranelift, 1).unwrap();
    let mut a = init.clone();
    for k in 0..6 {
        step(&mut straight, &mut a, &grads(k));
    }
    let mut first = Session::new(&recipe, &names, &shapes, &init, Backend::Cranelift, 1).unwrap();
    let mut b = init.clone();
    for k in 0..3 {
        step(&mut first, &mut b, &grads(k));
    }
    let bytes = first.progress_bytes().unwrap();
    let elements: Vec<(String, Vec<Vec<f32>>)> = first
        .element_states()
        .into_iter()
        .map(|e| (e.key, e.per_tensor))
        .collect();
    // std.torch's AdamW is Adam with decoupled decay: its states are Adam's.
    let keys: Vec<&str> = elements.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["Adam.m", "Adam.v", "Adam.v_max"]);
    let mut resumed = Session::new(&recipe, &names, &shapes, &b, Backend::Cranelift, 1).unwrap();
    resumed.restore(&bytes, &elements).unwrap();
    for k in 3..6 {
        step(&mut resumed, &mut b, &grads(k));
    }
    assert_eq!(a, b);

    let other =
        CheckedRecipe::compile("o.anneal", &CLIP_ADAMW.replace("0.01", "0.02"), None).unwrap();
    let mut s = Session::new(&other, &names, &shapes, &init, Backend::Interp, 1).unwrap();
    let err = s.restore(&bytes, &elements).unwrap_err();
    assert!(err.to_string().contains("another recipe"), "{err}");
    let mut s = Session::new(
        &recipe,
        &names,
        &[vec![4, 3], vec![3]],
        &init,
        Backend::Interp,
        1,
    )
    .unwrap();
    let err = s.restore(&bytes, &elements).unwrap_err();
    assert!(
        err.to_string().contains("other tensors") && err.to_string().contains("fc.weight"),
        "{err}"
    );
    let err = s.restore(&bytes[..bytes.len() / 2], &elements).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
}

#[test]
fn a_frozen_tensor_and_its_states_stay() {
    let recipe = CheckedRecipe::compile("r.anneal", CLIP_ADAMW, None).unwrap();
    let (names, shapes, init) = tensors();
    let mut s = Session::new(&recipe, &names, &shapes, &init, Backend::Cranelift, 1).unwrap();
    let mut p = init.clone();
    step(&mut s, &mut p, &grads(0));
    let before_states: Vec<Vec<f32>> = s
        .element_states()
        .into_iter()
        .map(|e| e.per_tensor[1].clone())
        .collect();
    let bias = p[1].clone();
    let g = grads(1);
    let mut ps: Vec<&mut [f32]> = p.iter_mut().map(|t| t.as_mut_slice()).collect();
    let gs: Vec<&[f32]> = g.iter().map(|t| t.as_slice()).collect();
    s.step_except(&mut ps, &gs, None, &[false, true]).unwrap();
    assert_eq!(p[1], bias);
    let after: Vec<Vec<f32>> = s
        .element_states()
        .into_iter()
        .map(|e| e.per_tensor[1].clone())
        .collect();
    assert_eq!(before_states, after);
}

#[test]
fn errors_are_reported_not_panicked() {
    let bad = CheckedRecipe::compile("bad.anneal", "recipe r { update = nope() }", None)
        .err()
        .unwrap();
    assert!(bad.rendered.contains("bad.anneal"), "{}", bad.rendered);
    assert!(bad.diagnostics.as_array().is_some_and(|d| !d.is_empty()));
    let recipe = CheckedRecipe::compile("r.anneal", CLIP_ADAMW, None).unwrap();
    let (names, shapes, init) = tensors();
    let mut s = Session::new(&recipe, &names, &shapes, &init, Backend::Cranelift, 1).unwrap();
    let mut short = [vec![0.0f32; 11], vec![0.0; 3]];
    let mut ps: Vec<&mut [f32]> = short.iter_mut().map(|t| t.as_mut_slice()).collect();
    let g = grads(0);
    let gs: Vec<&[f32]> = g.iter().map(|t| t.as_slice()).collect();
    let err = s.step(&mut ps, &gs, None).unwrap_err();
    assert!(err.to_string().contains("fc.weight"), "{err}");
    let sam = CheckedRecipe::compile(
        "s.anneal",
        "import std.torch.{SAM, SGD}\nrecipe s { update = SAM() |> SGD(lr: 0.1) }",
        None,
    )
    .unwrap();
    let mut s = Session::new(&sam, &names, &shapes, &init, Backend::Auto, 1).unwrap();
    let mut p = init.clone();
    let mut ps: Vec<&mut [f32]> = p.iter_mut().map(|t| t.as_mut_slice()).collect();
    assert!(s.step(&mut ps, &gs, None).is_err());
}
