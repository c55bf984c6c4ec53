//! What a recipe trains and how, beside its update chain: the built-in model and data set,
//! the parallelism plan, and curricula (paces, difficulties, sampling, phases).

use super::*;

/// A built-in model: `mlp(layers: [64, 128, 10], activation: "tanh")`. Two widths make a
/// linear (one output, MSE) or softmax (cross-entropy) regression.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// `mlp`, `quadratic` (`dim`, `condition`: an ill-conditioned quadratic) or `rosenbrock`.
    pub kind: String,
    /// For quadratics: `[dim]`; the condition number is `condition`.
    pub condition: f64,
    pub layers: Vec<usize>,
    /// `tanh` or `relu`.
    pub activation: String,
}

/// A CSV data set: `csv(file: "data/digits.csv", standardize: true, batch: 64,
/// test_fraction: 0.2)`; `file` is relative to the recipe file.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    pub file: String,
    pub standardize: bool,
    pub batch: usize,
    pub test_fraction: f64,
    /// The share of training labels replaced by another class, drawn with the run's seed
    /// (label-noise experiments); the test rows keep theirs.
    pub label_noise: f64,
}

/// How micro-batches flow through pipeline stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeSchedule {
    /// All forwards, then all backwards (Huang et al. 2019): every micro-batch's
    /// activations are live at once.
    Gpipe,
    /// One forward, one backward (PipeDream-Flush, Narayanan et al. 2021): at most
    /// `pipeline` micro-batches in flight.
    OneFOneB,
    /// 1F1B over `chunks` model chunks per device (Narayanan et al. 2021): a smaller bubble
    /// for more communication.
    Interleaved { chunks: u64 },
}

impl PipeSchedule {
    pub fn name(self) -> &'static str {
        match self {
            PipeSchedule::Gpipe => "gpipe",
            PipeSchedule::OneFOneB => "one_f_one_b",
            PipeSchedule::Interleaved { .. } => "interleaved",
        }
    }
}

/// `parallel { ... }`: data, tensor and pipeline degrees, ZeRO stage, micro-batching.
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelPlan {
    pub data: u64,
    pub tensor: u64,
    pub pipeline: u64,
    /// ZeRO stage (Rajbhandari et al. 2020): 1 shards optimizer state over the data-parallel
    /// ranks, 2 gradients too, 3 parameters too.
    pub zero: u8,
    /// Micro-batches per step on each data-parallel rank (gradient accumulation steps).
    pub micro_batches: u64,
    /// Rows per micro-batch per rank (DeepSpeed's train_micro_batch_size_per_gpu).
    pub micro_batch: Option<u64>,
    pub schedule: PipeSchedule,
    /// Activation checkpointing: keep each layer's input, recompute the rest.
    pub checkpointing: bool,
    /// The world size the recipe is written for, when it says.
    pub world: Option<u64>,
    pub span: Span,
}

impl ParallelPlan {
    /// One device: no parallelism.
    pub fn single(span: Span) -> ParallelPlan {
        ParallelPlan {
            data: 1,
            tensor: 1,
            pipeline: 1,
            zero: 0,
            micro_batches: 1,
            micro_batch: None,
            schedule: PipeSchedule::OneFOneB,
            checkpointing: false,
            world: None,
            span,
        }
    }

    pub fn world_size(&self) -> u64 {
        self.data * self.tensor * self.pipeline
    }

    /// The share of a step pipeline stages sit idle: (p − 1)/(m + p − 1), and
    /// (p − 1)/(v·m + p − 1) with v chunks interleaved.
    pub fn bubble_fraction(&self) -> f64 {
        let (p, m) = (self.pipeline as f64, self.micro_batches as f64);
        let v = match self.schedule {
            PipeSchedule::Interleaved { chunks } => chunks as f64,
            _ => 1.0,
        };
        (p - 1.0) / (v * m + p - 1.0)
    }
}

/// How much of the difficulty-ordered data is visible at a step, as a fraction in (0, 1].
#[derive(Debug, Clone, PartialEq)]
pub enum Pace {
    /// Everything, from the first step.
    Full,
    /// `start + (1 − start)·t/steps`, then 1.
    Linear { start: f64, steps: u64 },
    /// Platanios et al. (2019) competence of degree p: `(t(1 − start^p)/steps + start^p)^(1/p)`.
    Root { start: f64, steps: u64, degree: f64 },
    /// `fractions[i]` while `t < boundaries[i]`, then the last fraction.
    Discrete {
        fractions: Vec<f64>,
        boundaries: Vec<u64>,
    },
    /// Hacohen & Weinshall (2019): `start · growth^⌊t/every⌋`, capped at 1.
    Exponential { start: f64, growth: f64, every: u64 },
    /// DeepSpeed's `fixed_root` (`fixed_linear` is degree 1) on its difficulty scale: the
    /// visible fraction is the difficulty over `max_difficulty`.
    FixedRoot {
        min_difficulty: f64,
        max_difficulty: f64,
        total_curriculum_step: u64,
        difficulty_step: f64,
        root_degree: f64,
    },
    /// DeepSpeed's `fixed_discrete`: `difficulty[i]` while `t <= max_step[i]`.
    FixedDiscrete {
        difficulty: Vec<f64>,
        max_step: Vec<u64>,
    },
}

/// What orders the examples, easiest first.
#[derive(Debug, Clone, PartialEq)]
pub enum Difficulty {
    /// A feature column of the data file, by name.
    Column(String),
    /// The model's per-example loss, refreshed every `refresh` steps.
    Loss,
    /// 1 − the probability the model gives the true class: 1 − e^(−cross-entropy).
    OneMinusConfidence,
    /// A number in a difficulty expression.
    Const(f64),
    Unary(UnOp, Box<Difficulty>),
    Binary(BinOp, Box<Difficulty>, Box<Difficulty>),
    /// A math function of the language (`log`, `sqrt`, `min`, `max`, `abs`, ...).
    Call(Builtin, Vec<Difficulty>),
}

impl Difficulty {
    fn any(&self, leaf: &dyn Fn(&Difficulty) -> bool) -> bool {
        leaf(self)
            || match self {
                Difficulty::Unary(_, a) => a.any(leaf),
                Difficulty::Binary(_, a, b) => a.any(leaf) || b.any(leaf),
                Difficulty::Call(_, xs) => xs.iter().any(|x| x.any(leaf)),
                _ => false,
            }
    }

    /// Whether it reads the model's per-example losses (`loss` or `confidence`).
    pub fn reads_losses(&self) -> bool {
        self.any(&|d| matches!(d, Difficulty::Loss | Difficulty::OneMinusConfidence))
    }

    /// Whether it reads class probabilities (`confidence`).
    pub fn reads_confidence(&self) -> bool {
        self.any(&|d| matches!(d, Difficulty::OneMinusConfidence))
    }

    /// The data columns it reads, in order of first use.
    pub fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        fn walk(d: &Difficulty, out: &mut Vec<String>) {
            match d {
                Difficulty::Column(c) if !out.contains(c) => out.push(c.clone()),
                Difficulty::Unary(_, a) => walk(a, out),
                Difficulty::Binary(_, a, b) => {
                    walk(a, out);
                    walk(b, out)
                }
                Difficulty::Call(_, xs) => xs.iter().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        walk(self, &mut out);
        out
    }
}

/// How a batch is drawn from the visible set.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    Uniform,
    /// Keep example i while its loss ≤ λ; λ is multiplied by μ every epoch.
    SelfPaced {
        lambda: f64,
        mu: f64,
    },
    /// P(i) = (1 − floor)·loss_i^α / Σ loss^α + floor/n.
    HardMining {
        alpha: f64,
        floor: f64,
    },
    /// Backpropagate only the top `top` fraction of each batch by loss.
    Ohem {
        top: f64,
    },
    /// Keep an example with probability (percentile of its loss among the last `history`
    /// losses)^β.
    SelectiveBackprop {
        beta: f64,
        history: usize,
    },
}

/// One phase of a `curriculum` block, in force from step `after` until the next phase.
#[derive(Debug, Clone, PartialEq)]
pub struct CurriculumPhase {
    /// The step this phase starts at; its pace counts from here.
    pub after: u64,
    /// Loss-based difficulties are recomputed over the training set every `refresh` steps.
    pub refresh: u64,
    pub difficulty: Difficulty,
    pub pace: Pace,
    pub sampling: Sampling,
}

impl CurriculumPhase {
    /// Whether the phase reads per-example losses from the model at all.
    pub fn needs_example_losses(&self) -> bool {
        self.difficulty.reads_losses() || !matches!(self.sampling, Sampling::Uniform)
    }

    /// Whether it needs the losses of every training row (to order or weight them), as
    /// opposed to those of each drawn batch only (OHEM, selective backprop).
    pub fn ranks_by_loss(&self) -> bool {
        self.difficulty.reads_losses()
            || matches!(
                self.sampling,
                Sampling::SelfPaced { .. } | Sampling::HardMining { .. }
            )
    }
}
