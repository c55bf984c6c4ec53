//! `anneal run`: trains a built-in model on a CSV data set with a recipe — seeded split
//! and batches, the compiled step, a progress bar on terminals (plain lines otherwise),
//! metrics as JSON lines, a plot, and test accuracy at the end.

use anneal_compiler::ir::Recipe;
use anneal_runtime::checkpoint::{self, Checkpoint};
use anneal_runtime::curriculum::Sampler;
use anneal_runtime::data::{self, BatchSource, Dataset, Epochs, Rng};
use anneal_runtime::model::{Activation, Loss, Mlp, Model, Quadratic, Rosenbrock};
use anneal_runtime::schedule::Curve;
use anneal_runtime::train::{train_with_progress, Resume, Run, Trace};
use indicatif::{ProgressBar, ProgressStyle};
use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// What `anneal run` was asked to do.
#[derive(clap::Args, Default)]
pub struct RunArgs {
    /// The model: `mlp:64,128,10:tanh`, `softmax:64,10` or `linear:10,1` (default: the
    /// recipe's `model = ...`).
    #[arg(long)]
    pub model: Option<String>,
    /// The data set (CSV: features, then `target`; default: the recipe's `data = ...`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Optimizer steps (default: the recipe's `steps`).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Seed of the split, the batches and the initial weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per batch (default: the recipe's `data`, else 64).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Share of the rows held out for testing (default: the recipe's, else 0.2).
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Use the features as they are (default: standardize each column).
    #[arg(long)]
    pub raw: bool,
    /// Write one JSON object per step (loss, lr, gradient norm).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Plot loss, learning rate and gradient norm (.png or .svg).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep a checkpoint (DIR/checkpoint.bin) of the weights and optimizer state.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Write the checkpoint every N steps (default: at the end).
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Continue from the checkpoint in --checkpoint-dir.
    #[arg(long)]
    pub resume: bool,
    /// Who runs the update step (auto: the fused Cranelift step when the recipe lowers).
    #[arg(long, value_parser = crate::BackendParser::ANY, default_value = "auto")]
    pub backend: crate::Backend,
    /// Threads for the compiled update step (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Replace this share of the training labels by another class, drawn with the seed
    /// (label-noise experiments; default: the recipe's `label_noise`, else 0).
    #[arg(long, value_name = "FRACTION")]
    pub label_noise: Option<f64>,
    /// Measure test accuracy every N steps (a `test_accuracy` entry in --metrics).
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    /// Data-parallel ranks as threads of this process (the recipe's `parallel` block gives
    /// the ZeRO stage). Under mpirun each process is a rank instead (built with
    /// `--features mpi`).
    #[arg(long, value_name = "N")]
    pub ranks: Option<usize>,
}

impl RunArgs {
    /// Optimizer steps: `--steps`, else the recipe's `steps`.
    pub fn steps_for(&self, recipe: &Recipe) -> Result<usize, String> {
        self.steps
            .or(recipe.steps)
            .map(|n| n as usize)
            .ok_or_else(|| "how many steps? give the recipe `steps N` or pass --steps".into())
    }
}

/// The outcome, for `--json` and the summary line.
#[derive(serde::Serialize)]
pub struct Summary {
    pub recipe: String,
    pub steps: usize,
    /// Steps skipped by loss scaling (overflowing gradients).
    pub skipped_steps: usize,
    pub final_loss: f32,
    pub test_accuracy: Option<f64>,
    pub test_mse: Option<f64>,
    pub seconds: f64,
    pub steps_per_second: f64,
    /// The back end that ran the update step.
    pub backend: String,
    /// Data-parallel runs: the ranks, the ZeRO stage, and the optimizer-state values each
    /// rank kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranks: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizer_state_per_rank: Option<Vec<usize>>,
    /// A rank other than 0 of an MPI job: it prints nothing.
    #[serde(skip)]
    pub quiet: bool,
}

/// `mlp:64,128,10:tanh`, `softmax:64,10`, `linear:10,1`.
pub fn parse_model(spec: &str, data: &Dataset) -> Result<Mlp, String> {
    let mut parts = spec.split(':');
    let kind = parts.next().unwrap_or("");
    let layers: Vec<usize> = match parts.next() {
        Some(l) => l
            .split(',')
            .map(|w| {
                w.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("`{w}` in --model {spec} is not a width"))
            })
            .collect::<Result<_, _>>()?,
        None => {
            return Err(format!(
                "--model {spec}: write e.g. `mlp:64,128,10:tanh`, `softmax:64,10` or `linear:10,1`"
            ))
        }
    };
    let activation = match parts.next() {
        None | Some("tanh") => Activation::Tanh,
        Some("relu") => Activation::Relu,
        Some(a) => {
            return Err(format!(
                "--model {spec}: unknown activation `{a}`; use tanh or relu"
            ))
        }
    };
    let loss = match (kind, layers.last()) {
        ("linear", _) | ("mlp", Some(1)) => Loss::Mse,
        ("softmax", _) | ("mlp", _) => Loss::CrossEntropy,
        _ => {
            return Err(format!(
                "--model {spec}: the kind must be mlp, softmax or linear"
            ))
        }
    };
    if (kind == "linear" || kind == "softmax") && layers.len() != 2 {
        return Err(format!(
            "--model {spec}: a {kind} model has two widths, inputs and outputs"
        ));
    }
    if layers.first() != Some(&data.cols) {
        return Err(format!(
            "--model {spec}: the data has {} features, so the first width must be {}",
            data.cols, data.cols
        ));
    }
    if loss == Loss::CrossEntropy {
        let classes = data.y.iter().fold(0f32, |m, v| m.max(*v)) as usize + 1;
        if layers.last() != Some(&classes) {
            return Err(format!(
                "--model {spec}: the data has {classes} classes, so the last width must be {classes}"
            ));
        }
    }
    Ok(Mlp::new(layers, activation, loss)?)
}

/// `rosenbrock` and `quadratic:DIM:COND`: models with no data.
fn parse_free_model(spec: &str) -> Result<Option<Box<dyn Model>>, String> {
    let mut parts = spec.split(':');
    Ok(match parts.next() {
        Some("rosenbrock") => Some(Box::new(Rosenbrock { a: 1.0, b: 100.0 })),
        Some("quadratic") => {
            let dim = parts.next().and_then(|d| d.parse::<usize>().ok());
            let cond = parts.next().and_then(|c| c.parse::<f64>().ok());
            let (Some(dim), Some(cond)) = (dim, cond) else {
                return Err(format!(
                    "--model {spec}: write `quadratic:DIM:COND`, e.g. `quadratic:100:1000`"
                ));
            };
            Some(Box::new(Quadratic::new(dim, cond)?))
        }
        _ => None,
    })
}

/// Initial weights as `nn.Linear` draws them: uniform(−1/√in, 1/√in), seeded.
fn init(model: &Mlp, rng: &mut Rng) -> Vec<Vec<f32>> {
    model
        .param_specs()
        .iter()
        .map(|(name, shape)| {
            let fan_in = if name.ends_with(".weight") {
                shape[1]
            } else {
                model.layers[name_layer(name)]
            };
            let bound = 1.0 / (fan_in as f64).sqrt();
            (0..shape.iter().product::<usize>())
                .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                .collect()
        })
        .collect()
}

fn name_layer(name: &str) -> usize {
    name.split('.')
        .next()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        / 2
}

/// What a run trains on: the model, the data set and its split, and the seeded streams
/// that draw batches and initial weights. `anneal run` and the REPL build it the same way.
pub struct Setup {
    /// The model as `--model` spells it.
    pub spec: String,
    /// The MLP, for data models; `None` for Rosenbrock and the quadratics.
    pub mlp: Option<Mlp>,
    free: Option<Box<dyn Model>>,
    pub data: Dataset,
    pub data_path: PathBuf,
    pub train_rows: Vec<usize>,
    pub test_rows: Vec<usize>,
    pub batch_size: usize,
    pub seed: u64,
}

impl Setup {
    /// The model and data `recipe` declares, overridden by `args`; a declared data file is
    /// relative to `base` (the recipe file's folder).
    pub fn new(recipe: &Recipe, base: &Path, args: &RunArgs) -> Result<Setup, String> {
        let spec = match (&args.model, &recipe.model) {
            (Some(s), _) => s.clone(),
            (None, Some(m)) => match m.kind.as_str() {
                "quadratic" => format!(
                    "quadratic:{}:{}",
                    m.layers.first().copied().unwrap_or(1),
                    m.condition
                ),
                "rosenbrock" => "rosenbrock".to_string(),
                _ => format!(
                    "mlp:{}:{}",
                    m.layers
                        .iter()
                        .map(|w| w.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    m.activation
                ),
            },
            (None, None) => {
                return Err(
                    "which model? add `model = mlp(layers: [...])` to the recipe or pass \
                            --model, e.g. --model mlp:64,128,10:tanh"
                        .into(),
                )
            }
        };
        // Rosenbrock and the quadratics stand alone: no data, one (ignored) batch per step.
        let free = parse_free_model(&spec)?;
        // Flags override what the recipe declares; the recipe's data file is relative to it.
        let declared = recipe.data.as_ref();
        let data_path = if free.is_some() {
            PathBuf::new()
        } else {
            match (&args.data, declared) {
                (Some(p), _) => p.clone(),
                (None, Some(d)) => base.join(&d.file),
                (None, None) => {
                    return Err(
                        "which data? add `data = csv(file: \"...\")` to the recipe or \
                                pass --data FILE.csv"
                            .into(),
                    )
                }
            }
        };
        let mut data = if free.is_some() {
            Dataset {
                features: Vec::new(),
                x: Vec::new(),
                y: vec![0.0],
                rows: 1,
                cols: 0,
            }
        } else {
            data::load_csv(&data_path)?
        };
        if free.is_none() && !args.raw && declared.is_none_or(|d| d.standardize) {
            data.standardize();
        }
        let batch_size = args.batch.or(declared.map(|d| d.batch)).unwrap_or(64);
        if batch_size == 0 {
            return Err("--batch must be at least 1".into());
        }
        let test_fraction = args
            .test_fraction
            .or(declared.map(|d| d.test_fraction))
            .unwrap_or(0.2);
        let mlp = match free {
            Some(_) => None,
            None => Some(parse_model(&spec, &data)?),
        };
        // Separate streams for the split, the batches, the weights (and the label noise),
        // so that none depends on how much another consumed (a 40-step run starts like a
        // 100-step one).
        let mut rng = Rng::new(args.seed);
        let (train_rows, test_rows) = match free {
            Some(_) => (vec![0], Vec::new()),
            None => data::split(data.rows, test_fraction, &mut rng),
        };
        if train_rows.is_empty() {
            return Err("no training rows: lower --test-fraction".into());
        }
        let label_noise = args
            .label_noise
            .or(declared.map(|d| d.label_noise))
            .unwrap_or(0.0);
        if !(0.0..1.0).contains(&label_noise) {
            return Err(format!(
                "--label-noise {label_noise} is out of range; give a share in [0, 1), e.g. 0.2"
            ));
        }
        if label_noise > 0.0 {
            let classes = match &mlp {
                Some(m) if m.loss == Loss::CrossEntropy => m.layers[m.layers.len() - 1],
                _ => {
                    return Err(
                        "label noise flips classes: it needs a classifier (an mlp or \
                                softmax model with several outputs)"
                            .into(),
                    )
                }
            };
            // Its own stream (the curriculum sampler draws from seed + 3).
            let mut noise_rng = Rng::new(args.seed.wrapping_add(4));
            data::flip_labels(
                &mut data.y,
                &train_rows,
                classes,
                label_noise,
                &mut noise_rng,
            );
        }
        Ok(Setup {
            spec,
            mlp,
            free,
            data,
            data_path,
            train_rows,
            test_rows,
            batch_size,
            seed: args.seed,
        })
    }

    pub fn model(&self) -> &dyn Model {
        match (&self.free, &self.mlp) {
            (Some(f), _) => f.as_ref(),
            (None, Some(m)) => m,
            // `new` sets one of the two.
            (None, None) => &Rosenbrock { a: 1.0, b: 100.0 },
        }
    }

    /// The batches, epoch by epoch: a longer run starts with the same batches.
    pub fn batches(&self) -> Box<dyn BatchSource> {
        match self.free {
            Some(_) => Box::new(vec![vec![0]]),
            None => Box::new(Epochs::new(
                &self.train_rows,
                self.batch_size,
                self.seed.wrapping_add(1),
            )),
        }
    }

    /// The model's tensors: their names and shapes, in model order.
    pub fn tensors(&self) -> (Vec<String>, Vec<Vec<usize>>) {
        self.model().param_specs().into_iter().unzip()
    }

    /// The initial weights: `nn.Linear`'s draw for an MLP, the model's start otherwise.
    pub fn init_params(&self) -> Result<Vec<Vec<f32>>, String> {
        match (&self.mlp, self.model().start()) {
            (Some(m), _) => Ok(init(m, &mut Rng::new(self.seed.wrapping_add(2)))),
            (None, Some(p)) => Ok(p),
            (None, None) => Err("this model has no starting point".into()),
        }
    }

    /// Says what the model cannot do for `recipe` before any step runs.
    pub fn check_capabilities(&self, recipe: &Recipe, params: &[Vec<f32>]) -> Result<(), String> {
        let needs_hvp = recipe
            .capabilities
            .contains(&anneal_compiler::ir::Capability::Hvp);
        if needs_hvp && self.model().hvp(params, params).is_none() {
            return Err(format!(
                "recipe `{}` needs Hessian-vector products (`hvp`) from the model, which `{}` does \
                 not provide; use `rosenbrock` or `quadratic:DIM:COND`, or an optimizer without it \
                 (e.g. AdamW instead of sophia)",
                recipe.name, self.spec
            ));
        }
        Ok(())
    }

    /// The recipe's curriculum sampler over the training rows, if it has a curriculum.
    pub fn sampler(&self, recipe: &Recipe) -> Result<Option<RefCell<Sampler>>, String> {
        curriculum_sampler(
            recipe,
            &self.data,
            &self.data_path,
            &self.train_rows,
            self.batch_size,
            self.seed,
        )
    }

    /// Test accuracy (classifiers) or mean squared error (regressions) on the held-out rows.
    pub fn test_quality(&self, params: &[Vec<f32>]) -> (Option<f64>, Option<f64>) {
        let Some(model) = &self.mlp else {
            return (None, None);
        };
        if self.test_rows.is_empty() {
            return (None, None);
        }
        if model.loss == Loss::CrossEntropy {
            return (
                test_accuracy(model, &self.data, &self.test_rows, params),
                None,
            );
        }
        let (x, y) = self.data.gather(&self.test_rows);
        let out = model.predict(params, &x, self.test_rows.len());
        let k = model.layers[model.layers.len() - 1];
        let se: f64 = (0..self.test_rows.len())
            .map(|r| f64::from(out[r * k] - y[r]).powi(2))
            .sum();
        (None, Some(se / self.test_rows.len() as f64))
    }
}

/// Compiles a recipe file, printing its diagnostics; an error when it does not compile.
pub fn compile_file(file: &Path) -> Result<anneal_compiler::Compilation, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}; check the path", file.display()))?;
    let c = anneal_compiler::compile(&file.display().to_string(), &text);
    if !c.diagnostics.is_empty() {
        let color = std::io::stderr().is_terminal();
        eprint!(
            "{}",
            anneal_compiler::diagnostic::render(&c.diagnostics, &c.sources, color)
        );
    }
    if c.has_errors() {
        return Err(format!(
            "{} does not compile; fix the errors above",
            file.display()
        ));
    }
    Ok(c)
}

/// `anneal run` in one process (`dist::run` takes data-parallel runs; `main` chooses).
pub fn run(file: &Path, args: &RunArgs) -> Result<Summary, String> {
    let c = compile_file(file)?;
    let recipe = c
        .recipes()
        .first()
        .ok_or_else(|| format!("{} has no recipe", file.display()))?;
    if recipe.stages.is_empty() {
        return Err(format!(
            "recipe `{}` has no `update = ...` chain to train with",
            recipe.name
        ));
    }
    let setup = Setup::new(recipe, file.parent().unwrap_or(Path::new(".")), args)?;
    let steps = args.steps_for(recipe)?;
    if steps == 0 {
        return Err("nothing to do: --steps (or the recipe's `steps`) must be at least 1".into());
    }
    if args.eval_every == Some(0) {
        return Err("--eval-every must be at least 1".into());
    }
    let batches = setup.batches();
    let mut params = setup.init_params()?;
    setup.check_capabilities(recipe, &params)?;
    let model = setup.model();
    let (data, test_rows, mlp) = (&setup.data, &setup.test_rows, &setup.mlp);
    let (names, shapes) = setup.tensors();
    let hash = checkpoint::recipe_hash(&c.program);
    let ck_path = args
        .checkpoint_dir
        .as_ref()
        .map(|d| d.join("checkpoint.bin"));
    if let Some(dir) = &args.checkpoint_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut curriculum_state = None;
    let resume = match (&ck_path, args.resume) {
        (Some(path), true) => {
            let ck = checkpoint::load(path, hash, &names, &shapes)?;
            params = ck.params;
            curriculum_state = ck.curriculum;
            eprintln!("resuming from {} at step {}", path.display(), ck.step);
            Some(Resume {
                step: ck.step as usize,
                snapshot: ck.snapshot,
            })
        }
        (None, true) => return Err("--resume needs --checkpoint-dir DIR".into()),
        _ => None,
    };
    let ck_every = args.checkpoint_every.unwrap_or(steps).max(1);
    let sampler = setup.sampler(recipe)?;
    if let (Some(s), Some(_)) = (&sampler, &resume) {
        let state = curriculum_state.take().ok_or(
            "the checkpoint holds no curriculum state (it was written by a run without \
             one); rerun from the start",
        )?;
        s.borrow_mut().restore(state).map_err(|e| {
            format!(
                "checkpoint {} is refused: {e}",
                ck_path.as_deref().unwrap_or(Path::new("?")).display()
            )
        })?;
    }
    let run = Run {
        program: &c.program,
        recipe,
        model,
        data,
        batches: batches.as_ref(),
        curriculum: sampler.as_ref(),
        accumulate: 1,
        steps,
        backend: args.backend,
        threads: args.threads,
    };
    let bar = if std::io::stderr().is_terminal() && !args.json {
        let b = ProgressBar::new(steps as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{per_sec}, eta {eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let every = (steps / 10).max(1);
    let start = std::time::Instant::now();
    let mut evals: Vec<(usize, f64)> = Vec::new();
    // The parameters the run is judged at: the stages' evaluation view (`eval param`,
    // schedule-free's average x) when one is declared, after the last step.
    let mut final_view: Option<Vec<Vec<f32>>> = None;
    let mut on_step =
        |t: usize, tr: &Trace, params: &[Vec<f32>], interp: &anneal_compiler::backends::Stepper| {
            let last = t + 1 == steps;
            let test_now = mlp.is_some()
                && args
                    .eval_every
                    .is_some_and(|every| (t + 1).is_multiple_of(every) || last);
            let save_now = ck_path.is_some() && ((t + 1).is_multiple_of(ck_every) || last);
            let view = match test_now || last || save_now {
                true => interp.eval_params(params)?,
                false => None,
            };
            if let Some(path) = &ck_path {
                if save_now {
                    checkpoint::save(
                        path,
                        &Checkpoint {
                            recipe_hash: hash,
                            step: t as u64 + 1,
                            names: names.clone(),
                            shapes: shapes.clone(),
                            params: params.to_vec(),
                            eval_params: view.clone(),
                            snapshot: interp.snapshot(),
                            curriculum: sampler.as_ref().map(|s| s.borrow().save()),
                        },
                    )?;
                }
            }
            if test_now || last {
                if let (true, Some(m)) = (test_now, &mlp) {
                    if let Some(a) =
                        test_accuracy(m, data, test_rows, view.as_deref().unwrap_or(params))
                    {
                        evals.push((t, a));
                    }
                }
                if last {
                    final_view = view;
                }
            }
            let loss = tr.loss.last().copied().unwrap_or(f32::NAN);
            let lr = tr
                .lr
                .last()
                .and_then(|g| g.first())
                .copied()
                .unwrap_or(f64::NAN);
            match &bar {
                Some(b) => {
                    b.set_position(t as u64 + 1);
                    b.set_message(format!("loss {loss:.4} lr {lr:.2e}"));
                }
                None if !args.json && ((t + 1).is_multiple_of(every) || t + 1 == steps) => {
                    eprintln!("step {:>6}/{steps}  loss {loss:.4}  lr {lr:.3e}", t + 1);
                }
                None => {}
            }
            Ok(())
        };
    let trace = train_with_progress(&run, &names, &shapes, &mut params, resume, &mut on_step)?;
    let seconds = start.elapsed().as_secs_f64();
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(why) = trace.backend.as_ref().and_then(|c| c.fallback.as_ref()) {
        if !args.json {
            eprintln!("note: the update step ran on the interpreter: {why}");
        }
    }
    if let Some(gpu) = trace.backend.as_ref().and_then(|c| c.device.as_ref()) {
        if !args.json {
            eprintln!("note: the update step ran on the GPU `{gpu}`");
        }
    }
    if final_view.is_some() && !args.json {
        eprintln!(
            "note: tested at the recipe's evaluation view (`eval param`), not the training iterate"
        );
    }
    let (acc, mse) = setup.test_quality(final_view.as_deref().unwrap_or(&params));
    if let Some(path) = &args.metrics {
        write_metrics(path, &trace, &evals)?;
    }
    if let Some(path) = &args.plot {
        let per_step = |v: &[f64], name: &str| Curve {
            name: name.into(),
            values: v.to_vec(),
        };
        let loss: Vec<f64> = trace.loss.iter().map(|v| f64::from(*v)).collect();
        let lr: Vec<f64> = trace
            .lr
            .iter()
            .map(|g| g.first().copied().unwrap_or(f64::NAN))
            .collect();
        crate::plot::run(
            path,
            &recipe.name,
            &[
                ("loss", vec![per_step(&loss, "train loss (batch)")]),
                ("learning rate", vec![per_step(&lr, "lr")]),
                ("gradient norm", vec![per_step(&trace.grad_norm, "‖g‖")]),
            ],
        )?;
    }
    Ok(Summary {
        recipe: recipe.name.clone(),
        steps,
        skipped_steps: trace.skipped.iter().filter(|s| **s).count(),
        final_loss: trace.loss.last().copied().unwrap_or(f32::NAN),
        test_accuracy: acc,
        test_mse: mse,
        seconds,
        steps_per_second: steps as f64 / seconds.max(1e-9),
        backend: trace
            .backend
            .as_ref()
            .map(|c| c.backend.to_string())
            .unwrap_or_default(),
        ranks: None,
        zero: None,
        optimizer_state_per_rank: None,
        quiet: false,
    })
}

/// The recipe's curriculum over the training rows, on its own seeded stream; `None` without
/// one. A column difficulty is looked up by name among the data file's features.
fn curriculum_sampler(
    recipe: &anneal_compiler::ir::Recipe,
    data: &Dataset,
    data_path: &Path,
    train_rows: &[usize],
    batch: usize,
    seed: u64,
) -> Result<Option<RefCell<Sampler>>, String> {
    if recipe.curriculum.is_empty() {
        return Ok(None);
    }
    let mut sampler = Sampler::new(
        recipe.curriculum.clone(),
        train_rows.to_vec(),
        batch,
        seed.wrapping_add(3),
    );
    for name in recipe
        .curriculum
        .iter()
        .flat_map(|phase| phase.difficulty.columns())
    {
        let name = &name;
        let j = data.features.iter().position(|f| f == name).ok_or_else(|| {
            format!(
                "{}: no feature column `{name}` for the curriculum's difficulty; the columns are {}",
                data_path.display(),
                data.features.join(", ")
            )
        })?;
        let values = train_rows
            .iter()
            .map(|r| data.x[r * data.cols + j])
            .collect();
        sampler.set_column(name, values);
    }
    Ok(Some(RefCell::new(sampler)))
}

/// The share of `rows` a classifier gets right; `None` for a regression or no rows.
fn test_accuracy(model: &Mlp, data: &Dataset, rows: &[usize], params: &[Vec<f32>]) -> Option<f64> {
    if model.loss != Loss::CrossEntropy || rows.is_empty() {
        return None;
    }
    let (x, y) = data.gather(rows);
    let out = model.predict(params, &x, rows.len());
    let k = model.layers[model.layers.len() - 1];
    let correct = (0..rows.len())
        .filter(|&r| {
            let o = &out[r * k..(r + 1) * k];
            let best = (0..k).fold(0, |b, j| if o[j] > o[b] { j } else { b });
            best as f32 == y[r]
        })
        .count();
    Some(correct as f64 / rows.len() as f64)
}

/// One JSON object per step, written to a temporary file, synced, then renamed.
fn write_metrics(path: &Path, trace: &Trace, evals: &[(usize, f64)]) -> Result<(), String> {
    anneal_runtime::atomic::write_with(path, |f| {
        for t in 0..trace.grad_norm.len() {
            let mut line = serde_json::json!({
                "step": t,
                "loss": trace.loss.get(t),
                "lr": trace.lr.get(t),
                "grad_norm": trace.grad_norm[t],
                "grad_norm_per_tensor": trace.tensor_norms.get(t),
                "loss_scale": trace.loss_scale.get(t),
                "skipped": trace.skipped.get(t),
            });
            if let (Some((_, a)), Some(obj)) =
                (evals.iter().find(|(s, _)| *s == t), line.as_object_mut())
            {
                obj.insert("test_accuracy".into(), (*a).into());
            }
            if let (Some(c), Some(obj)) = (trace.curriculum.get(t), line.as_object_mut()) {
                obj.insert("visible_fraction".into(), c.visible_fraction.into());
                obj.insert("mean_difficulty".into(), c.mean_difficulty.into());
                obj.insert("kept_fraction".into(), c.kept_fraction.into());
            }
            writeln!(f, "{line}")?;
        }
        Ok(())
    })
    .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
