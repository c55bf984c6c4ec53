//! The Triton back end's kernel text (snapshots: the module `anneal build --emit triton`
//! prints and `anneal.torch` loads) and what the registry says of it. Running the
//! kernels needs Python: `python/tests/test_triton.py` runs them under Triton's
//! interpreter against the other back ends and compiles them for NVIDIA GPUs.

use anneal_compiler::backends::triton::{module, partial, MAP_BLOCK, REDUCE_BLOCK};
use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::compile;
use anneal_compiler::ir::ReduceOp;
use anneal_compiler::kernel::{lower, PassKind};

fn triton_of(src: &str) -> anneal_compiler::backends::triton::Module {
    let c = compile("t.anneal", src);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let kernel = lower(&c.program, &c.program.recipes[0]).unwrap();
    module(&kernel).unwrap()
}

/// The kernels after the shared header and helpers, which every module carries.
fn kernels(m: &anneal_compiler::backends::triton::Module) -> String {
    let at = m.source.find("\n# pass 0:").expect("a first kernel");
    m.source[at..].to_string()
}

#[test]
fn adamw_is_one_map_kernel_with_its_hyperparameters_as_scalars() {
    let m = triton_of(
        "import std.optax.{adamw}
recipe r { update = adamw(learning_rate: 0.001, weight_decay: 0.01) }",
    );
    assert_eq!(m.passes.len(), 1);
    let p = &m.passes[0];
    assert_eq!(
        (p.kind, p.block, p.name.as_str()),
        (PassKind::Map, MAP_BLOCK, "anneal_pass0")
    );
    // The parameter and both moments are written; the gradient is only read.
    assert_eq!(p.writes.iter().filter(|w| **w).count(), 3);
    // A learning rate is a scalar slot, never a constant of the kernel.
    assert!(!kernels(&m).contains("0.001"));
    insta::assert_snapshot!(kernels(&m));
}

#[test]
fn clip_then_adamw_is_a_reduction_with_f64_partials_and_a_map() {
    let m = triton_of(
        "import std.optax.{clip_by_global_norm, adamw}
recipe r { update = clip_by_global_norm(max_norm: 1.0) |> adamw(learning_rate: 0.001) }",
    );
    assert_eq!(m.passes.len(), 2);
    assert_eq!(m.passes[0].kind, PassKind::Reduce);
    assert_eq!(m.passes[0].block, REDUCE_BLOCK);
    assert_eq!(m.passes[0].reductions, vec![ReduceOp::Norm]);
    assert_eq!(m.passes[0].programs(0), 1);
    assert_eq!(m.passes[0].programs(REDUCE_BLOCK + 1), 2);
    insta::assert_snapshot!(kernels(&m));
}

#[test]
fn a_skipping_chain_masks_its_stores_by_the_active_stage_count() {
    let m = triton_of(
        "import std.optax.{MultiSteps, lion}
recipe r { update = MultiSteps(every_k_schedule: 4) |> lion(learning_rate: 0.0001) }",
    );
    let text = kernels(&m);
    assert!(text.contains("< active)"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn the_module_header_picks_libdevice_on_a_gpu_and_numpy_under_the_interpreter() {
    let m = triton_of(
        "import std.optax.{adamw}
recipe r { update = adamw(learning_rate: 0.001) }",
    );
    let head = &m.source[..m.source.find("\n# pass 0:").unwrap()];
    assert!(head.contains("if triton.knobs.runtime.interpret:"));
    assert!(head.contains("libdevice.pow(x, y)"));
    // IEEE division and square root, never the approximate ones.
    assert!(!m.source.contains("tl.sqrt("));
    assert!(m.source.contains("tl.div_rn("));
}

#[test]
fn a_finiteness_flag_becomes_the_cpu_back_ends_nan() {
    assert!(partial(ReduceOp::AllFinite, 1.0).is_nan());
    assert_eq!(partial(ReduceOp::AllFinite, 0.0), 0.0);
    assert_eq!(partial(ReduceOp::Norm, 2.5), 2.5);
}

#[test]
fn the_triton_back_end_is_registered_and_says_where_it_runs() {
    assert_eq!(Backend::parse("triton"), Some(Backend::Triton));
    let c = compile(
        "t.anneal",
        "import std.optax.{sgd}
recipe r { update = sgd(learning_rate: 0.1) }",
    );
    let recipe = &c.program.recipes[0];
    let err = Stepper::new(
        Backend::Triton,
        &c.program,
        recipe,
        &["w".into()],
        &[vec![2]],
        &[vec![1.0, 2.0]],
        1,
    )
    .err()
    .expect("the CLI has no Triton launcher");
    let msg = err.to_string();
    assert!(msg.contains("anneal.torch.Optimizer"), "{msg}");
    assert!(
        msg.contains("--emit triton") || msg.contains("export"),
        "{msg}"
    );
}

#[test]
fn hyperparameters_do_not_change_the_kernels() {
    // A new learning rate, beta or clipping threshold is a value in the scalar table: the
    // module text is the same, so Triton compiles nothing again.
    let a = triton_of(
        "import std.optax.{clip_by_global_norm, adamw}
recipe r { update = clip_by_global_norm(max_norm: 1.0) |> adamw(learning_rate: 0.001, b1: 0.9) }",
    );
    let b = triton_of(
        "import std.optax.{clip_by_global_norm, adamw}
recipe r { update = clip_by_global_norm(max_norm: 0.25) |> adamw(learning_rate: 0.3, b1: 0.5) }",
    );
    assert_eq!(a.source, b.source);
}

#[test]
fn every_kernel_reads_its_tensor_from_the_tile_table() {
    let m = triton_of(
        "import std.optax.{lamb}
recipe r { update = lamb(learning_rate: 0.01) }",
    );
    for p in &m.passes {
        let nbufs = p.bufs.len();
        let at = m.source.find(&format!("def {}(", p.name)).unwrap();
        let body = &m.source[at..];
        assert!(body.contains("t = tl.load(tiles + 2 * pid)"), "{}", p.name);
        assert!(
            body.contains(&format!("ptrs + t * {nbufs} + 0")),
            "{}: {body}",
            p.name
        );
    }
}
