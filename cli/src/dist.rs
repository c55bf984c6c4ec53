//! `anneal run` across data-parallel ranks: `--ranks N` runs them as threads of this
//! process; under `mpirun` (a build with `--features mpi`) each process is a rank. The
//! recipe's `parallel` block gives the ZeRO stage; every rank builds the same model, data
//! split, batches and initial weights from the seed, and rank 0 reports.

use crate::run::{compile_file, RunArgs, Setup, Summary};
use anneal_runtime::dist::threads::ThreadComm;
use anneal_runtime::dist::train::{train_data_parallel, DistOutcome};
use anneal_runtime::dist::Comm;
use anneal_runtime::train::Run;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a collective may wait for the other ranks.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Whether this run is data-parallel: `--ranks N > 1`, or started by mpirun.
pub fn wanted(args: &RunArgs) -> bool {
    args.ranks.is_some_and(|n| n > 1) || mpi_launched()
}

#[cfg(feature = "mpi")]
fn mpi_launched() -> bool {
    anneal_runtime::dist::mpi::launched_by_mpirun()
}

#[cfg(not(feature = "mpi"))]
fn mpi_launched() -> bool {
    false
}

/// What one rank ends with.
struct RankResult {
    out: DistOutcome,
    recipe: String,
    zero: u8,
    test_accuracy: Option<f64>,
    test_mse: Option<f64>,
}

/// One rank's whole run: its own setup (identical on every rank), then the loop.
fn rank_run(file: &Path, args: &RunArgs, comm: &dyn Comm) -> Result<RankResult, String> {
    let c = compile_file(file)?;
    let recipe = c
        .recipes()
        .first()
        .ok_or_else(|| format!("{} has no recipe", file.display()))?;
    let plan = recipe.parallel.clone();
    if let Some(p) = &plan {
        if p.tensor > 1 || p.pipeline > 1 {
            return Err(format!(
                "recipe `{}` plans tensor or pipeline parallelism, which `anneal plan` costs but `anneal run` does not run; use data parallelism (and ZeRO) only",
                recipe.name
            ));
        }
        if p.data > 1 && p.data as usize != comm.size() {
            return Err(format!(
                "recipe `{}` plans data: {}, but {} ranks are running; start {} (or change the plan)",
                recipe.name,
                p.data,
                comm.size(),
                p.data
            ));
        }
    }
    let zero = plan.as_ref().map_or(0, |p| p.zero);
    let setup = Setup::new(recipe, file.parent().unwrap_or(Path::new(".")), args)?;
    let steps = args.steps_for(recipe)?;
    let mut params = setup.init_params()?;
    let (names, shapes) = setup.tensors();
    let batches = setup.batches();
    let run = Run {
        program: &c.program,
        recipe,
        model: setup.model(),
        data: &setup.data,
        batches: batches.as_ref(),
        curriculum: None,
        accumulate: 1,
        steps,
        backend: args.backend,
        threads: args.threads.max(1),
    };
    let out = train_data_parallel(&run, zero, comm, &names, &shapes, &mut params)?;
    let (test_accuracy, test_mse) = setup.test_quality(&params);
    Ok(RankResult {
        out,
        recipe: recipe.name.clone(),
        zero,
        test_accuracy,
        test_mse,
    })
}

fn summary(results: &[RankResult], seconds: f64, ranks: usize) -> Summary {
    let r = &results[0];
    let steps = r.out.trace.loss.len();
    Summary {
        recipe: r.recipe.clone(),
        steps,
        skipped_steps: 0,
        final_loss: r.out.trace.loss.last().copied().unwrap_or(f32::NAN),
        test_accuracy: r.test_accuracy,
        test_mse: r.test_mse,
        seconds,
        steps_per_second: steps as f64 / seconds.max(1e-9),
        backend: r.out.backend.clone(),
        ranks: Some(ranks),
        zero: Some(r.zero),
        optimizer_state_per_rank: Some(results.iter().map(|r| r.out.state_values).collect()),
        quiet: false,
    }
}

pub fn run(file: &Path, args: &RunArgs) -> Result<Summary, String> {
    if mpi_launched() {
        return run_mpi(file, args);
    }
    let n = args.ranks.unwrap_or(1);
    let start = Instant::now();
    let comms = ThreadComm::group(n, TIMEOUT);
    let results: Vec<Result<_, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .iter()
            .map(|comm| s.spawn(move || rank_run(file, args, comm)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a rank panicked".into())))
            .collect()
    });
    let results = results.into_iter().collect::<Result<Vec<_>, String>>()?;
    Ok(summary(&results, start.elapsed().as_secs_f64(), n))
}

#[cfg(feature = "mpi")]
fn run_mpi(file: &Path, args: &RunArgs) -> Result<Summary, String> {
    let comm = anneal_runtime::dist::mpi::MpiComm::init(TIMEOUT)?;
    let start = Instant::now();
    let result = rank_run(file, args, &comm).map_err(|e| format!("rank {}: {e}", comm.rank()))?;
    // Every rank's optimizer-state size, for the report.
    let mine = [result.out.state_values as f32];
    let all = comm.all_gather(&mine, &vec![1; comm.size()])?;
    let mut s = summary(&[result], start.elapsed().as_secs_f64(), comm.size());
    s.optimizer_state_per_rank = Some(all.iter().map(|v| *v as usize).collect());
    s.quiet = comm.rank() != 0;
    Ok(s)
}

#[cfg(not(feature = "mpi"))]
fn run_mpi(_: &Path, _: &RunArgs) -> Result<Summary, String> {
    Err("this anneal was built without MPI; rebuild with `--features mpi`".into())
}
