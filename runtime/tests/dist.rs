//! Data-parallel and ZeRO training with ranks as threads, against the single-process run
//! with the same global batches: the same weights within f32 summation tolerance, 2 and 3
//! ranks (3 do not divide the batch: uneven shares), each rank's optimizer state 1/N under
//! ZeRO, and a rank that dies making the others stop with an error instead of hanging.

use anneal_compiler::backends::Backend;
use anneal_compiler::compile;
use anneal_runtime::data::{self, Dataset, Epochs, Rng};
use anneal_runtime::dist::threads::ThreadComm;
use anneal_runtime::dist::train::{train_data_parallel, DistOutcome};
use anneal_runtime::model::{Activation, Loss, Mlp};
use anneal_runtime::train::{train, Run};
use std::time::Duration;

const ADAMW: &str = "import std.optax.{adamw}\nrecipe r { update = adamw(learning_rate: 3e-3, weight_decay: 1e-2) }\n";

fn digits() -> (Dataset, Vec<usize>) {
    let mut d = data::load_csv(std::path::Path::new("digits.csv")).expect("bundled digits");
    d.standardize();
    let (train_rows, _) = data::split(d.rows, 0.2, &mut Rng::new(0));
    (d, train_rows)
}

fn init(model: &Mlp) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(7);
    model
        .param_specs()
        .iter()
        .map(|(_, s)| {
            (0..s.iter().product::<usize>())
                .map(|_| (rng.uniform() as f32 - 0.5) * 0.2)
                .collect()
        })
        .collect()
}

/// The single-process run and `ranks` thread ranks under ZeRO `zero`, 25 steps of 60 rows.
fn compare(
    src: &str,
    ranks: usize,
    zero: u8,
    backend: Backend,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<DistOutcome>) {
    let c = compile("r.anneal", src);
    assert!(!c.has_errors());
    let recipe = &c.recipes()[0];
    let model = Mlp::new(vec![64, 32, 10], Activation::Tanh, Loss::CrossEntropy).unwrap();
    let (data, rows) = digits();
    let batches = Epochs::new(&rows, 60, 11);
    let specs = model.param_specs();
    let names: Vec<String> = specs.iter().map(|(n, _)| n.clone()).collect();
    let shapes: Vec<Vec<usize>> = specs.iter().map(|(_, s)| s.clone()).collect();
    let steps = 25;
    let mut single = init(&model);
    let run = Run {
        program: &c.program,
        recipe,
        model: &model,
        data: &data,
        batches: &batches,
        curriculum: None,
        accumulate: 1,
        steps,
        backend,
        threads: 1,
    };
    train(&run, &names, &shapes, &mut single).unwrap();
    let comms = ThreadComm::group(ranks, Duration::from_secs(30));
    let results: Vec<(Vec<Vec<f32>>, DistOutcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .iter()
            .map(|comm| {
                let (c, model, data, rows, names, shapes) =
                    (&c, &model, &data, &rows, &names, &shapes);
                s.spawn(move || {
                    let batches = Epochs::new(rows, 60, 11);
                    let dist = Run {
                        program: &c.program,
                        recipe: &c.recipes()[0],
                        model,
                        data,
                        batches: &batches,
                        curriculum: None,
                        accumulate: 1,
                        steps,
                        backend,
                        threads: 1,
                    };
                    let mut params = init(model);
                    let out =
                        train_data_parallel(&dist, zero, comm, names, shapes, &mut params).unwrap();
                    (params, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let params = results[0].0.clone();
    for (p, _) in &results {
        assert_eq!(p, &params, "every rank ends with the same weights");
    }
    (
        single,
        params,
        results.into_iter().map(|(_, o)| o).collect(),
    )
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn data_parallel_and_zero_match_the_single_process_run() {
    for (ranks, zero) in [(2, 0), (3, 0), (2, 1), (3, 1), (2, 2), (3, 2)] {
        let (single, dist, outs) = compare(ADAMW, ranks, zero, Backend::Auto);
        let d = max_diff(&single, &dist);
        // The gradient is summed in another order (per share, then across ranks): f32
        // rounding, which Adam's normalization can carry to ~1e-5 of a weight in 25 steps.
        assert!(
            d < 1e-4,
            "{ranks} ranks, ZeRO-{zero}: weights differ by {d}"
        );
        let total: usize = single.iter().map(Vec::len).sum();
        for (r, o) in outs.iter().enumerate() {
            // adamw keeps two f32 moments per parameter; ZeRO-1/2 shard them, ZeRO-2 the
            // gradients too.
            let share = anneal_runtime::dist::shares(total, ranks)[r];
            let mine = share.1 - share.0;
            let (state, grads) = match zero {
                0 => (2 * total, total),
                1 => (2 * mine, total),
                _ => (2 * mine, mine),
            };
            assert_eq!(o.state_values, state, "rank {r}, ZeRO-{zero}");
            assert_eq!(o.grad_values, grads, "rank {r}, ZeRO-{zero}");
            assert_eq!(o.trace.loss.len(), 25);
        }
    }
}

#[test]
fn zero_refuses_steps_that_reduce_over_a_tensor() {
    let c = compile(
        "r.anneal",
        "import std.torch.{clip_grad_norm_, AdamW}\nrecipe r { update = clip_grad_norm_(max_norm: 1.0) |> AdamW(lr: 1e-3) }\n",
    );
    let model = Mlp::new(vec![64, 10], Activation::Tanh, Loss::CrossEntropy).unwrap();
    let (data, rows) = digits();
    let batches = Epochs::new(&rows, 60, 1);
    let dist = Run {
        program: &c.program,
        recipe: &c.recipes()[0],
        model: &model,
        data: &data,
        batches: &batches,
        curriculum: None,
        accumulate: 1,
        steps: 1,
        backend: Backend::Auto,
        threads: 1,
    };
    let comm = &ThreadComm::group(1, Duration::from_secs(5))[0];
    let mut params = init(&model);
    let specs = model.param_specs();
    let names: Vec<String> = specs.iter().map(|(n, _)| n.clone()).collect();
    let shapes: Vec<Vec<usize>> = specs.iter().map(|(_, s)| s.clone()).collect();
    let e = train_data_parallel(&dist, 1, comm, &names, &shapes, &mut params).unwrap_err();
    assert!(
        e.to_string().contains("reduces over tensors") && e.to_string().contains("zero: 0"),
        "{e}"
    );
    // ZeRO-0 runs it: every rank has the whole step.
    train_data_parallel(&dist, 0, comm, &names, &shapes, &mut params).unwrap();
    // Half-precision weights are refused rather than trained as f32.
    let half = compile(
        "r.anneal",
        "import std.optax.{adamw}\nrecipe r {\n  update = adamw(learning_rate: 1e-3)\n  precision { params: bf16 }\n}\n",
    );
    let dist = Run {
        program: &half.program,
        recipe: &half.recipes()[0],
        ..dist
    };
    let e = train_data_parallel(&dist, 0, comm, &names, &shapes, &mut params).unwrap_err();
    assert!(e.to_string().contains("half precision"), "{e}");
}

#[test]
fn a_rank_that_dies_stops_the_others_with_an_error() {
    let c = compile("r.anneal", ADAMW);
    let model = Mlp::new(vec![64, 10], Activation::Tanh, Loss::CrossEntropy).unwrap();
    let (data, rows) = digits();
    let batches = Epochs::new(&rows, 60, 1);
    let specs = model.param_specs();
    let names: Vec<String> = specs.iter().map(|(n, _)| n.clone()).collect();
    let shapes: Vec<Vec<usize>> = specs.iter().map(|(_, s)| s.clone()).collect();
    drop(batches);
    let comms = ThreadComm::group(3, Duration::from_millis(500));
    let errors: Vec<Result<DistOutcome, anneal_compiler::error::Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .iter()
            .map(|comm| {
                let (c, model, data, rows, names, shapes) =
                    (&c, &model, &data, &rows, &names, &shapes);
                s.spawn(move || {
                    let batches = &Epochs::new(rows, 60, 1);
                    // Rank 2 dies after its first step.
                    let steps = if comm_rank(comm) == 2 { 1 } else { 10 };
                    let dist = Run {
                        program: &c.program,
                        recipe: &c.recipes()[0],
                        model,
                        data,
                        batches,
                        curriculum: None,
                        accumulate: 1,
                        steps,
                        backend: Backend::Interp,
                        threads: 1,
                    };
                    let mut params = init(model);
                    train_data_parallel(&dist, 1, comm, names, shapes, &mut params)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(errors[2].is_ok());
    for r in [0, 1] {
        let e = errors[r].as_ref().unwrap_err();
        assert!(
            e.to_string().contains("timed out") && e.to_string().contains("rank(s) 2"),
            "rank {r}: {e}"
        );
    }
}

fn comm_rank(c: &ThreadComm) -> usize {
    anneal_runtime::dist::Comm::rank(c)
}
