//! A run's step state: everything that changes from one update to the next — every
//! stage's state buffers, the step counts, the metrics observed after each step, the seed
//! of the `rademacher()` stream and the builtin optimizers' progress. Entry point:
//! `StepState`.
//!
//! The stepper owns it (`backends::Stepper`); the interpreter and the fused executor both
//! read and write it through the methods below, and a checkpoint is a copy of it, so a
//! run restored from one continues exactly, on any back end.

use crate::error::Result;
use crate::interp::lbfgs::LbfgsState;
use crate::interp::view::Slice;
use crate::interp::Replays;

/// One declared state of a stage: its buffers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum StateValue {
    Element(Vec<Vec<f32>>),
    /// Per row or per column (Adafactor's factored moments, SM3's accumulators).
    Slice(Slice, Vec<Vec<f64>>),
    Tensor(Vec<f64>),
    Scalar(f64),
    /// One matrix per tensor (`state L: matrix(rows, rows)`), row-major, its sides from
    /// the declaration and the tensor's matrix view.
    Matrix(Vec<Vec<f32>>),
}

impl StateValue {
    /// Same kind and sizes (values may differ).
    pub fn same_layout(&self, other: &StateValue) -> bool {
        match (self, other) {
            (StateValue::Element(a), StateValue::Element(b))
            | (StateValue::Matrix(a), StateValue::Matrix(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.len() == y.len())
            }
            (StateValue::Tensor(a), StateValue::Tensor(b)) => a.len() == b.len(),
            (StateValue::Slice(k, a), StateValue::Slice(l, b)) => {
                k == l && a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.len() == y.len())
            }
            (StateValue::Scalar(_), StateValue::Scalar(_)) => true,
            _ => false,
        }
    }
}

/// The progress of a builtin stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum BuiltinState {
    Lbfgs(LbfgsState),
    Sam(SamState),
}

/// What the builtin `sam` keeps between calls.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamState {
    /// Calls since the last outer update (Optax's `steps_since_sync`).
    pub since_sync: u64,
    /// The outer parameters, cached at the first call of each period.
    pub cache: Vec<Vec<f32>>,
    /// The adversarial and the outer chain's own step states.
    pub adv: StepState,
    pub outer: StepState,
}

/// Everything that changes from step to step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepState {
    /// Steps taken so far (skipped ones included).
    count: u64,
    /// Per stage: the updates it has made (runs that were not skipped); its `step` is
    /// this + 1 and its schedules are read at this count.
    runs: Vec<u64>,
    /// Per stage, per declared state.
    states: Vec<Vec<StateValue>>,
    /// Metrics observed after each step, oldest first, for schedules that follow one.
    metrics: Vec<f64>,
    /// Seed of the `rademacher()` stream.
    seed: u64,
    /// Per stage: the state of a builtin optimizer.
    builtins: Vec<Option<BuiltinState>>,
    /// Whether the last step was skipped: an outcome of that step, not carried by a
    /// checkpoint.
    #[serde(skip)]
    last_skipped: bool,
    /// The loss at the parameters of the step being taken (capability `Loss`), read from
    /// the model when the step begins; an input of that step, not carried by a checkpoint.
    #[serde(skip)]
    loss: f64,
    /// Metric-following schedules' replays of `metrics` so far: a memo, not carried by a
    /// checkpoint (a state read back replays once, then goes on from there).
    #[serde(skip)]
    replays: Replays,
}

impl StepState {
    /// The state before the first step: per stage its initial buffers and builtin state.
    pub(crate) fn initial(
        states: Vec<Vec<StateValue>>,
        builtins: Vec<Option<BuiltinState>>,
    ) -> StepState {
        StepState {
            count: 0,
            runs: vec![0; states.len()],
            states,
            metrics: Vec::new(),
            seed: 0,
            builtins,
            last_skipped: false,
            loss: 0.0,
            replays: Replays::default(),
        }
    }

    /// A state read back from a checkpoint (builtin stages start afresh: checkpoints
    /// hold no builtin progress).
    pub fn resumed(
        count: u64,
        runs: Vec<u64>,
        states: Vec<Vec<StateValue>>,
        metrics: Vec<f64>,
        seed: u64,
    ) -> StepState {
        StepState {
            count,
            builtins: vec![None; runs.len()],
            runs,
            states,
            metrics,
            seed,
            last_skipped: false,
            loss: 0.0,
            replays: Replays::default(),
        }
    }

    /// Steps taken so far, skipped ones included.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Per stage: the updates it has made (its schedules are read at this count).
    pub fn stage_counts(&self) -> &[u64] {
        &self.runs
    }

    /// Per stage, per declared state: the buffers.
    pub fn states(&self) -> &[Vec<StateValue>] {
        &self.states
    }

    /// The buffers, to edit a copy (a frozen tensor's states put back, element states
    /// left out of a save): the stages and their states stay as they are.
    pub fn states_mut(&mut self) -> &mut [Vec<StateValue>] {
        &mut self.states
    }

    /// The metrics observed so far (`observe`), oldest first.
    pub fn metrics(&self) -> &[f64] {
        &self.metrics
    }

    /// The memo of metric-following schedules' replays over `metrics`.
    pub fn replays(&self) -> &Replays {
        &self.replays
    }

    /// Records the metric observed at the step just taken (e.g. a validation loss), for
    /// schedules such as ReduceLROnPlateau that follow one.
    pub fn observe(&mut self, metric: f64) {
        self.metrics.push(metric);
    }

    /// Seed of the `rademacher()` stream.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    /// Whether the last step was skipped (`skip if`): parameters unchanged, later stages
    /// not run.
    pub fn last_skipped(&self) -> bool {
        self.last_skipped
    }

    /// The loss this step was given (`loss` in a body); 0 before any (not NaN: states
    /// compare equal across back ends).
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// Reads this step's loss from the model when the recipe's bodies use `loss`.
    pub(crate) fn take_loss(
        &mut self,
        recipe: &crate::ir::Recipe,
        oracle: Option<&mut (dyn crate::interp::Oracle + '_)>,
    ) -> crate::error::Result<()> {
        if recipe.capabilities.contains(&crate::ir::Capability::Loss) {
            let oracle = oracle.ok_or_else(|| {
                crate::error::Error::user(format!(
                    "recipe `{}` reads the loss (`loss`); give the step a model that provides it",
                    recipe.name
                ))
            })?;
            self.loss = oracle.loss()?;
        }
        Ok(())
    }

    /// Whether a builtin optimizer (L-BFGS, sam) holds progress, which checkpoints do
    /// not carry yet.
    pub fn has_builtin_progress(&self) -> bool {
        self.builtins.iter().any(Option::is_some)
    }

    /// Same stages, same states of the same kinds and sizes (values may differ).
    pub fn same_layout(&self, other: &StepState) -> bool {
        self.runs.len() == other.runs.len()
            && self.states.len() == other.states.len()
            && self
                .states
                .iter()
                .zip(&other.states)
                .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_layout(y)))
    }

    /// Continues from `saved`, a state of the same recipe and tensors.
    pub fn restore(&mut self, saved: StepState) -> Result<()> {
        if !self.same_layout(&saved) {
            return Err(
                "the snapshot was taken from a different recipe or different tensors".into(),
            );
        }
        *self = saved;
        Ok(())
    }

    // Stage and state indices below come from the recipe the state was made for (the
    // interpreter and the kernel number stages alike), so they index directly, as the
    // buffers of a pass do.

    /// The updates stage `stage` has made.
    pub(crate) fn runs(&self, stage: usize) -> u64 {
        self.runs[stage]
    }

    /// State `state` of stage `stage`.
    pub(crate) fn value(&self, stage: usize, state: usize) -> &StateValue {
        &self.states[stage][state]
    }

    pub(crate) fn value_mut(&mut self, stage: usize, state: usize) -> &mut StateValue {
        &mut self.states[stage][state]
    }

    /// Stage `stage`'s states, taken out for the stage to run on (`put_stage` returns
    /// them).
    pub(crate) fn take_stage(&mut self, stage: usize) -> Vec<StateValue> {
        std::mem::take(&mut self.states[stage])
    }

    /// Stage `stage`'s states, read in place.
    pub(crate) fn stage_states(&self, stage: usize) -> &[StateValue] {
        &self.states[stage]
    }

    pub(crate) fn put_stage(&mut self, stage: usize, states: Vec<StateValue>) {
        self.states[stage] = states;
    }

    /// Stage `stage`'s builtin progress, taken out for the builtin to run on.
    pub(crate) fn take_builtin(&mut self, stage: usize) -> Option<BuiltinState> {
        self.builtins[stage].take()
    }

    pub(crate) fn put_builtin(&mut self, stage: usize, state: BuiltinState) {
        self.builtins[stage] = Some(state);
    }

    /// Stage `stage` made an update.
    pub(crate) fn stage_ran(&mut self, stage: usize) {
        self.runs[stage] += 1;
    }

    /// The step ended, skipped or not.
    pub(crate) fn step_done(&mut self, skipped: bool) {
        self.count += 1;
        self.last_skipped = skipped;
    }
}
