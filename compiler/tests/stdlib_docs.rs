//! The standard library's own checks: every definition is documented, its generated
//! example compiles, `spec/stdlib/reference.md` is current, and every schedule and stage
//! resumes exactly: a run stopped at step k and continued from a snapshot ends
//! bit-identical to an uninterrupted run.

use anneal_compiler::doc::{library_docs, render_markdown};
use anneal_compiler::interp::{Interpreter, Oracle};
use anneal_compiler::ir::DefKind;
use anneal_compiler::{compile, diagnostic};

fn reference_path() -> std::path::PathBuf {
    std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/stdlib/reference.md"
    ))
    .to_path_buf()
}

#[test]
fn every_definition_is_documented_and_its_example_compiles() {
    let c = compile("<doc>", "");
    let docs = library_docs(&c);
    assert!(
        docs.len() > 80,
        "expected the whole library, found {}",
        docs.len()
    );
    for d in &docs {
        assert!(
            !d.text.is_empty(),
            "{}.{} has no `///` documentation",
            d.module,
            d.name
        );
        let ex = compile("example.anneal", &d.example);
        assert!(
            ex.diagnostics.is_empty(),
            "the example of {}.{} does not compile cleanly:\n{}",
            d.module,
            d.name,
            diagnostic::render(&ex.diagnostics, &ex.sources, false)
        );
    }
}

#[test]
fn the_reference_is_current() {
    let c = compile("<doc>", "");
    let want = render_markdown(&library_docs(&c));
    let have = std::fs::read_to_string(reference_path()).unwrap_or_default();
    assert!(
        have == want,
        "spec/stdlib/reference.md is out of date: run `cargo run -- doc --markdown > spec/stdlib/reference.md`"
    );
}

/// L = ½ Σ x²: the gradient is x and the Hessian the identity; `loss` is L at the
/// step's parameters.
struct Bowl {
    loss: f64,
}

impl Oracle for Bowl {
    fn grad_at(
        &mut self,
        params: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, anneal_compiler::error::Error> {
        Ok(params.to_vec())
    }
    fn hvp(
        &mut self,
        _params: &[Vec<f32>],
        v: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, anneal_compiler::error::Error> {
        Ok(v.to_vec())
    }
    fn loss_at(
        &mut self,
        params: &[Vec<f32>],
    ) -> Result<(f64, Vec<Vec<f32>>), anneal_compiler::error::Error> {
        let loss: f64 = params
            .iter()
            .flatten()
            .map(|x| 0.5 * f64::from(*x) * f64::from(*x))
            .sum();
        Ok((loss, params.to_vec()))
    }
    fn loss(&mut self) -> Result<f64, anneal_compiler::error::Error> {
        Ok(self.loss)
    }
}

/// Runs `steps` updates of `src`'s recipe, optionally stopping at `stop`, snapshotting,
/// and continuing in a fresh interpreter.
fn run(src: &str, steps: usize, stop: Option<usize>) -> (Vec<Vec<f32>>, Vec<f64>) {
    let c = compile("resume.anneal", src);
    assert!(
        !c.has_errors(),
        "{}\n{src}",
        diagnostic::render(&c.diagnostics, &c.sources, false)
    );
    let recipe = &c.recipes()[0];
    let names = vec!["0.weight".to_string(), "0.bias".to_string()];
    let mut params = vec![vec![1.0f32, -2.0, 0.5, 3.0], vec![0.25, -0.75]];
    let (mut interp, mut st) = Interpreter::new(&c.program, recipe, &names, &params).unwrap();
    let mut lrs = Vec::new();
    for k in 0..steps {
        if Some(k) == stop {
            let snap = st.clone();
            (interp, st) = Interpreter::new(&c.program, recipe, &names, &params).unwrap();
            st.restore(snap).unwrap();
        }
        // A gradient that varies with the step, and an occasional overflow for loss scaling.
        let s = 1.0 + (k % 5) as f32 * 0.3;
        let mut grads: Vec<Vec<f32>> = params
            .iter()
            .map(|p| p.iter().map(|x| x * s + 0.1).collect())
            .collect();
        if k == 7 {
            grads[1][0] = f32::INFINITY;
        }
        let (loss, _) = Bowl { loss: 0.0 }.loss_at(&params).unwrap();
        interp
            .step_with(&mut st, &mut params, &grads, Some(&mut Bowl { loss }))
            .unwrap();
        // A metric that improves, stalls and improves again, for ReduceLROnPlateau.
        st.observe(1.0 / (1.0 + (k / 4) as f64));
        lrs.push(f64::from(params[0][0]));
    }
    (params, lrs)
}

#[test]
fn every_schedule_and_stage_resumes_bit_identically() {
    let c = compile("<doc>", "");
    let mut n = 0;
    for d in library_docs(&c) {
        // Schedules drive SGD's learning rate; stages run as the whole chain.
        let src = if d.kind == DefKind::Schedule {
            let src = d.example.replace(
                "recipe example {",
                "import std.torch.{SGD}\n\nrecipe example {",
            );
            src.replacen("\n}\n", "\n  update = SGD(lr: lr)\n}\n", 1)
        } else {
            d.example.clone()
        };
        let (full, lr_full) = run(&src, 30, None);
        let (resumed, lr_resumed) = run(&src, 30, Some(13));
        let bits = |v: &[Vec<f32>]| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&full),
            bits(&resumed),
            "{}.{} does not resume exactly",
            d.module,
            d.name
        );
        assert_eq!(
            lr_full.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            lr_resumed.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "{}.{}: the trajectory differs after resuming",
            d.module,
            d.name
        );
        n += 1;
    }
    assert!(n > 80);
}
