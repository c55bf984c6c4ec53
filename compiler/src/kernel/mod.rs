//! The kernel IR and the fuser: a recipe's whole update step as a short list of passes
//! over the parameter buffers (DESIGN.md §3). Entry point: `lower`.
//!
//! Every value of the step is either a *host* value (step-uniform, per group or per tensor;
//! f64, computed once per tensor per step, never per element) or an *element* value (f32,
//! computed per element inside a pass). Element values are pure functions of the buffers
//! as they were when the step began and of host values: a state written by one stage and
//! read by the next is the same graph node, never a round trip through memory. So the
//! fuser needs no buffer for intermediates: a reduction pass recomputes whatever element
//! values feed its reductions, and the one map pass at the end recomputes everything the
//! stores need. Passes are ordered by *level*: a reduction whose input needs the result of
//! another reduction (`norm(grad / norm(grad))`) runs one pass later. Clip-by-global-norm
//! + finite check + AdamW is therefore one reduction pass over `grad` and one map pass.
//!
//! A model call mid-step (`grad_at`, `hvp`) is a round of its own, like a reduction: a
//! prepare pass writes its argument, the host calls the model, and the result is one more
//! buffer the later passes read. `rademacher()` is a buffer the host fills each step.
//!
//! Per-row/column/outer/unit values (Adafactor, SM3, adaptive_grad_clip) are host values
//! with one f64 per slot (`Kernel::host_slice`): a reduction of an element value into
//! slots is a round too (a prepare pass writes the value, the host sums it slot by slot),
//! and a slot value read per element is a buffer the host spreads (`Buf::Spread`).
//!
//! Builtin optimizers (L-BFGS) are refused with `Unsupported`: they are runtime code.

use crate::ast::{BinOp, UnOp};
use crate::interp::Slice;
use crate::ir::{Builtin, ReduceOp, Scope, ShapeInfo};

pub mod exec;
pub mod explain;
mod host;
pub mod legalize;
mod lower;

pub use lower::{lower, unfused_cost};

pub type HId = usize;
pub type EId = usize;
pub type RId = usize;

/// A buffer the step reads or writes, one per tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Buf {
    Param,
    Grad,
    /// Element state `state` of stage `stage`.
    State {
        stage: usize,
        state: usize,
    },
    /// The point (or vector) model call k is made at, written by a prepare pass.
    CallArg(usize),
    /// For a Hessian-vector product: the parameters it is taken at, when a stage changed
    /// them before the call.
    CallPoint(usize),
    /// What model call k returned.
    CallOut(usize),
    /// `rademacher()` of a stage: ±1 per element, filled by the host each step.
    Noise(usize),
    /// A per-row/column/outer/unit host value spread over the elements (each element
    /// holds its slot's value, as f32), filled by the host.
    Spread(HId),
    /// The element value sliced reduction s reduces, written by a prepare pass.
    SliceIn(usize),
    /// Input i ≥ 1 of matrix call k (input 0 is `CallArg(k)`), written by a prepare pass.
    MatIn(usize, usize),
}

impl Buf {
    /// A buffer the step keeps for itself (not a parameter, gradient or state).
    pub fn is_temporary(self) -> bool {
        matches!(
            self,
            Buf::CallArg(_)
                | Buf::CallPoint(_)
                | Buf::CallOut(_)
                | Buf::Noise(_)
                | Buf::Spread(_)
                | Buf::SliceIn(_)
                | Buf::MatIn(..)
        )
    }
}

/// What a recipe asks of the model in the middle of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `grad_at(x)`: the gradient on this step's batch at the point x.
    GradAt,
    /// `hvp(v)`: the Hessian at the current parameters times v.
    Hvp,
    /// `elements(M)` or an assignment to a matrix state: matrix expression
    /// `Kernel::matrices[m]`, evaluated on the host by `crate::matrix` from the per-element
    /// inputs the prepare pass wrote.
    Matrix(usize),
}

/// A model call: its argument is written to `CallArg(k)` by a prepare pass (and, for an
/// `hvp` at changed parameters, the parameters to `CallPoint(k)`); the host calls the
/// model; the result is `CallOut(k)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCall {
    pub kind: CallKind,
    pub arg: EId,
    pub point: Option<EId>,
    /// A matrix call's further per-element inputs, written to `MatIn(k, 1..)`.
    pub more: Vec<EId>,
    pub stage: usize,
    /// The round it runs in, as a reduction's level.
    pub level: usize,
}

impl ModelCall {
    /// The element values the call is made with, in buffer order: `CallArg`, `CallPoint`
    /// (an `hvp`'s point) or `MatIn(k, 1..)` (a matrix call's further inputs).
    pub fn inputs(&self) -> Vec<EId> {
        let mut roots = vec![self.arg];
        roots.extend(self.point);
        roots.extend(&self.more);
        roots
    }
}

/// A matrix expression under `elements(...)`: stage `stage`'s body expression `root`,
/// whose leaves are the call's per-element inputs (in order: `CallArg`, then `MatIn`) and
/// per-tensor host values.
#[derive(Debug, Clone, PartialEq)]
pub struct MatCall {
    pub stage: usize,
    pub root: crate::ir::ExprId,
    pub leaves: Vec<(crate::ir::ExprId, MatLeaf)>,
    /// The matrix state of `stage` the value is assigned to; none for `elements(M)`. A
    /// store's result is written to the state when the step's map pass has run, if its
    /// stage ran (as host states are).
    pub store: Option<crate::ir::StateId>,
}

impl MatCall {
    /// The host values the matrix reads.
    pub fn scalars(&self) -> Vec<HId> {
        self.leaves
            .iter()
            .filter_map(|(_, l)| match l {
                MatLeaf::Scalar(h) => Some(*h),
                MatLeaf::Input(_) | MatLeaf::State(_) => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MatLeaf {
    /// Input i of the call (0: `CallArg(k)`, i ≥ 1: `MatIn(k, i)`).
    Input(usize),
    Scalar(HId),
    /// Matrix state `id` of the call's stage, as the step began.
    State(crate::ir::StateId),
}

/// A host value: evaluated in f64 once per tensor per step, as the interpreter evaluates
/// everything coarser than an element.
#[derive(Debug, Clone, PartialEq)]
pub enum Host {
    Const(f64),
    /// Hyperparameter `index` of stage `stage` (its schedule read at the stage's count).
    Hyper {
        stage: usize,
        index: usize,
    },
    HyperIndex {
        stage: usize,
        index: usize,
        k: usize,
    },
    StrEq {
        stage: usize,
        index: usize,
        lit: String,
    },
    /// The stage's step number (1 at its first update).
    Step {
        stage: usize,
    },
    /// The loss the step was given (`loss`).
    Loss,
    Shape(ShapeInfo),
    /// A scalar or per-tensor state as it was when the step began.
    State {
        stage: usize,
        state: usize,
    },
    Unary(UnOp, HId),
    Binary(BinOp, HId, HId),
    Select(HId, HId, HId),
    Call(Builtin, Vec<HId>),
    /// The result of a reduction (per tensor, per group or global, by its scope).
    Reduce(RId),
    /// A per-row/column/outer/unit state as the step began (a sliced value).
    SliceState {
        stage: usize,
        state: usize,
    },
    /// The result of sliced reduction s (a sliced value, one per slot of its target).
    SliceReduce(usize),
    /// A reduction of a sliced host value: to its outer slices (sliced), or to one value
    /// per tensor, group or step.
    HostReduce {
        op: ReduceOp,
        scope: Scope,
        input: HId,
    },
}

/// A reduction of an element value into rows, columns, outer slices or units: a prepare
/// pass writes the value, the host sums it slot by slot in f64 (the interpreter's order).
#[derive(Debug, Clone, PartialEq)]
pub struct SliceRed {
    pub op: ReduceOp,
    pub target: Slice,
    pub input: EId,
    pub stage: usize,
    pub level: usize,
}

/// An element value: f32, computed per element inside a pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Elem {
    Load(Buf),
    /// A host value rounded to f32 and broadcast over the tensor.
    Scalar(HId),
    Unary(UnOp, EId),
    Binary(BinOp, EId, EId),
    Select(EId, EId, EId),
    Call(Builtin, Vec<EId>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reduction {
    pub op: ReduceOp,
    pub scope: Scope,
    pub input: EId,
    /// The pass it runs in: one more than the deepest reduction its input depends on.
    pub level: usize,
}

/// Where an element value is written at the end of the step.
#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    pub buf: Buf,
    pub value: EId,
    /// The stage the write belongs to: skipped with it when an earlier `skip if` fires.
    /// The parameter write has `Kernel::stages` (after every stage).
    pub stage: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    Reduce,
    Map,
    /// Writes the arguments of the model calls of one round (`Pass::calls`).
    Prepare,
    /// The map pass as it runs on a step a `skip if` stops: only the stages up to the
    /// skipping one store (the count of those is its last scalar slot).
    SkipMap,
}

/// One sweep over the buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    pub kind: PassKind,
    pub reductions: Vec<RId>,
    /// Indices into `Kernel::stores`.
    pub stores: Vec<usize>,
    /// The buffers the pass reads, in the order its code receives them (written ones too).
    pub bufs: Vec<Buf>,
    /// The buffers it loads from (a subset of `bufs`).
    pub reads: Vec<Buf>,
    /// The host values its code reads, in slot order (constants are inlined instead).
    pub scalars: Vec<HId>,
    /// Whether the last slot after `scalars` holds how many stages are active (only when
    /// some store can be skipped by a `skip if`).
    pub guarded: bool,
    /// A reduction pass that runs only on steps whose host `if` needs its reduction.
    pub conditional: bool,
    /// A prepare pass: the model calls whose arguments it writes.
    pub calls: Vec<usize>,
    /// A prepare pass: the sliced reductions whose inputs it writes.
    pub slice_reds: Vec<usize>,
}

impl Pass {
    /// Which of the pointers the pass's code receives is `buf`'s, if it receives it.
    pub fn slot(&self, buf: Buf) -> Option<usize> {
        self.bufs.iter().position(|b| *b == buf)
    }

    pub fn writes(&self, kernel: &Kernel) -> Vec<Buf> {
        let mut out: Vec<Buf> = self.stores.iter().map(|&s| kernel.stores[s].buf).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// A recipe's step as passes over memory plus host arithmetic.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub host: Vec<Host>,
    pub elems: Vec<Elem>,
    pub reductions: Vec<Reduction>,
    /// The step's writes: the map pass's (parameters and element states), then the
    /// prepare passes' (model-call arguments, temporary buffers).
    pub stores: Vec<Store>,
    pub calls: Vec<ModelCall>,
    /// The matrix expressions `CallKind::Matrix` calls evaluate.
    pub matrices: Vec<MatCall>,
    pub slice_reds: Vec<SliceRed>,
    /// Per host value: its slicing, when it is one value per row/column/outer/unit.
    pub host_slice: Vec<Option<Slice>>,
    /// `skip if` conditions, in stage order.
    pub skips: Vec<(usize, HId)>,
    /// Final values of scalar and per-tensor states: (stage, state, value).
    pub host_states: Vec<(usize, usize, HId)>,
    pub passes: Vec<Pass>,
    pub stages: usize,
}

/// Why a recipe has no fused kernel (it still runs on the interpreter).
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Kernel {
    /// The buffers and (non-constant) host values the element graphs under `roots` read,
    /// in first-use order.
    pub fn uses(&self, roots: &[EId]) -> (Vec<Buf>, Vec<HId>) {
        graph_uses(&self.host, &self.elems, roots)
    }
}

fn graph_uses(host: &[Host], elems: &[Elem], roots: &[EId]) -> (Vec<Buf>, Vec<HId>) {
    let mut seen = vec![false; elems.len()];
    let mut bufs = Vec::new();
    let mut scalars = Vec::new();
    let mut stack: Vec<EId> = roots.iter().rev().copied().collect();
    while let Some(e) = stack.pop() {
        if std::mem::replace(&mut seen[e], true) {
            continue;
        }
        match &elems[e] {
            Elem::Load(b) => {
                if !bufs.contains(b) {
                    bufs.push(*b)
                }
            }
            Elem::Scalar(h) => {
                if !matches!(host[*h], Host::Const(_)) && !scalars.contains(h) {
                    scalars.push(*h)
                }
            }
            Elem::Unary(_, a) => stack.push(*a),
            Elem::Binary(_, a, b) => stack.extend([*b, *a]),
            Elem::Select(c, a, b) => stack.extend([*b, *a, *c]),
            Elem::Call(_, xs) => stack.extend(xs.iter().rev().copied()),
        }
    }
    (bufs, scalars)
}

/// The slicing a reduction scope reduces into (none for tensor, group, global).
pub fn slice_of_scope(scope: Scope) -> Option<Slice> {
    match scope {
        Scope::Row => Some(Slice::Row),
        Scope::Col => Some(Slice::Col),
        Scope::Outer => Some(Slice::Outer),
        Scope::Unit => Some(Slice::Unit),
        Scope::Lead => Some(Slice::Lead),
        Scope::Tensor | Scope::Group | Scope::Global => None,
    }
}
