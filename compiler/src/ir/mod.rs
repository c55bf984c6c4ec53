//! The typed IR: what the checker produces and every back end reads. Definitions live in
//! `Program::defs` and are referred to by `DefId`; each body keeps its expressions in an
//! arena (`Body::exprs`) addressed by `ExprId`, with types and spans in side tables of the
//! same length. Nothing here can be ill-typed: the checker only builds what it validated.

pub use crate::ast::{BinOp, CmpOp, DefKind, MatDim, ScalarType, StateExtent, TypeExpr, UnOp};
use crate::source::Span;

mod plan;
mod types;
pub use plan::*;
pub use types::*;

pub type DefId = usize;
pub type ExprId = usize;
pub type StateId = usize;
pub type LocalId = usize;

/// Every definition of every loaded module, and the user's recipes.
#[derive(Debug, Clone, Default)]
pub struct Program {
    pub defs: Vec<Def>,
    pub recipes: Vec<Recipe>,
}

impl Program {
    /// Finds a definition by module and name.
    pub fn find(&self, module: &str, name: &str) -> Option<DefId> {
        self.defs
            .iter()
            .position(|d| d.module == module && d.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Def {
    pub name: String,
    pub module: String,
    pub kind: DefKind,
    pub params: Vec<HyperParam>,
    /// Conditions on the arguments (`requires`), checked at every call with constant ones.
    pub requires: Vec<Requirement>,
    pub body: DefBody,
    pub span: Span,
}

/// `requires cond else "message"`: `cond` over the definition's parameters.
#[derive(Debug, Clone)]
pub struct Requirement {
    pub cond: HyperExpr,
    pub message: String,
    pub span: Span,
}

impl Def {
    /// Whether the stage updates the parameters itself (a builtin optimizer always does), so
    /// nothing may follow it and its chain's final `grad` is not applied.
    pub fn writes_param(&self) -> bool {
        match &self.body {
            DefBody::Stage(b) => b.writes_param(),
            DefBody::Builtin(_) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HyperParam {
    pub name: String,
    pub ty: TypeExpr,
    pub range: Option<ValueRange>,
    /// The allowed values of a `str` parameter.
    pub choices: Option<Vec<String>>,
    pub default: Option<HyperValue>,
    pub span: Span,
}

/// A checked range on a hyperparameter: `in [0, 1)`, `> 0`, ...
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueRange {
    /// Lower bound and whether it is included.
    pub lo: Option<(f64, bool)>,
    pub hi: Option<(f64, bool)>,
}

impl ValueRange {
    pub fn contains(&self, v: f64) -> bool {
        let lo_ok = match self.lo {
            None => true,
            Some((lo, true)) => v >= lo,
            Some((lo, false)) => v > lo,
        };
        let hi_ok = match self.hi {
            None => true,
            Some((hi, true)) => v <= hi,
            Some((hi, false)) => v < hi,
        };
        lo_ok && hi_ok
    }

    /// The range as the user wrote it: `[0, 1)`, `> 0`, `<= 1`.
    pub fn describe(&self) -> String {
        match (self.lo, self.hi) {
            (Some((lo, lc)), Some((hi, hc))) => format!(
                "{}{}, {}{}",
                if lc { "[" } else { "(" },
                fmt_num(lo),
                fmt_num(hi),
                if hc { "]" } else { ")" }
            ),
            (Some((lo, true)), None) => format!(">= {}", fmt_num(lo)),
            (Some((lo, false)), None) => format!("> {}", fmt_num(lo)),
            (None, Some((hi, true))) => format!("<= {}", fmt_num(hi)),
            (None, Some((hi, false))) => format!("< {}", fmt_num(hi)),
            (None, None) => "any value".into(),
        }
    }
}

/// Prints a number the way a user writes it (`0.9`, `1e-08`, `100`).
pub fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        return "none".into();
    }
    if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e15) {
        return format!("{v:e}");
    }
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[derive(Debug, Clone)]
pub enum DefBody {
    /// A transform or optimizer written as statements.
    Stage(Body),
    /// A definition written as a chain of others: `= a(...) |> b(...)`.
    Chain(Vec<ChainCall>),
    /// A schedule: a scalar function of `count`.
    Schedule(Body),
    /// An optimizer the runtime supplies (`= builtin "lbfgs"`); see `interp::lbfgs`.
    Builtin(String),
    /// A function: its statements are checked, and become part of the caller's body,
    /// where a transform or optimizer calls it (`check::body::function`).
    Function,
}

/// The builtin optimizers, by name, with what they need from the model.
pub const BUILTINS: &[(&str, &[Capability])] = &[
    ("lbfgs", &[Capability::LossClosure]),
    // Optax's transparent-mode SAM: runs two chains of its own (their needs count too).
    ("sam", &[]),
];

/// One call in a chain definition; `args` has one entry per parameter of `def`, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainCall {
    pub def: DefId,
    pub args: Vec<HyperExpr>,
    pub span: Span,
}

/// An expression over hyperparameters, evaluated when a recipe is elaborated (never per
/// element): defaults, chain-call arguments, recipe bindings.
#[derive(Debug, Clone, PartialEq)]
pub enum HyperExpr {
    Value(HyperValue),
    /// A parameter of the enclosing chain definition.
    Param(usize),
    Unary(UnOp, Box<HyperExpr>),
    Binary(BinOp, Box<HyperExpr>, Box<HyperExpr>),
    /// A schedule call; `args` has one entry per parameter.
    Call(DefId, Vec<HyperExpr>),
    If(Box<HyperExpr>, Box<HyperExpr>, Box<HyperExpr>),
    List(Vec<HyperExpr>),
    /// `{5: 0.5}`
    Map(Vec<(HyperExpr, HyperExpr)>),
    /// A per-group value, one entry per recipe group in group order.
    PerGroup(Vec<HyperExpr>),
    /// A chain argument: its calls, in order.
    Chain(Vec<ChainCall>),
}

/// A hyperparameter's value after elaboration.
#[derive(Debug, Clone, PartialEq)]
pub enum HyperValue {
    Real(f64),
    Int(i64),
    Bool(bool),
    Str(String),
    Schedule(Sched),
    List(Vec<HyperValue>),
    /// `{5: 0.5, 10: 0.1}`: keys and values in the order written.
    Map(Vec<(HyperValue, HyperValue)>),
    /// One value per parameter group of the recipe, in group order.
    PerGroup(Vec<HyperValue>),
    /// A chain argument: its stages, flattened when the recipe is elaborated.
    Chain(Vec<StageInst>),
}

impl HyperValue {
    /// Whether a per-group value holds the same value for every group (plain values do).
    pub fn same_in_every_group(&self) -> bool {
        match self {
            HyperValue::PerGroup(vs) => vs.windows(2).all(|w| w[0] == w[1]),
            _ => true,
        }
    }

    /// Whether the value changes from step to step: a schedule other than a constant,
    /// alone, per group or in a list.
    pub fn varies(&self) -> bool {
        match self {
            HyperValue::Schedule(s) => !matches!(s, Sched::Const(_)),
            HyperValue::List(vs) | HyperValue::PerGroup(vs) => vs.iter().any(HyperValue::varies),
            _ => false,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            HyperValue::Real(v) => Some(*v),
            HyperValue::Int(v) => Some(*v as f64),
            HyperValue::Bool(b) => Some(f64::from(u8::from(*b))),
            HyperValue::Schedule(Sched::Const(v)) => Some(*v),
            _ => None,
        }
    }
}

/// A schedule value: a scalar function of the step count, evaluated once per step.
#[derive(Debug, Clone, PartialEq)]
pub enum Sched {
    Const(f64),
    /// A schedule definition applied to its arguments (one per parameter).
    Call(DefId, Vec<HyperValue>),
    Unary(UnOp, Box<Sched>),
    Binary(BinOp, Box<Sched>, Box<Sched>),
}

/// Where a value varies: the same for the whole step, per parameter group, per tensor,
/// per slice of a tensor, or per element. Slices follow Optax's factoring of a tensor over
/// its two largest dimensions, d0 (the largest) and d1 (the next): a per-row value has one
/// entry per index of every axis but d0, a per-column value per index of every axis but
/// d1, a per-outer value per index of the other axes; per-unit is Optax's unitwise norm
/// layout (every axis but the first for rank 2 and 3, but the first three for rank 4);
/// per-lead is one entry per index of the first axis (optax's `centralize`). Rank-1
/// tensors have one row, and a column per element. The extents form a lattice;
/// `join` gives an operation's result extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Euclidean norm: sqrt of the sum of squares.
    Norm,
    Sum,
    Mean,
    Max,
    Min,
    /// True when no element is inf or NaN.
    AllFinite,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Norm => "norm",
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::AllFinite => "all_finite",
        }
    }
}

/// Elementwise (or scalar) math functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    Sqrt,
    Exp,
    Log,
    Abs,
    /// sign(0) = 0, as every optimizer means it (not `f32::signum`).
    Sign,
    Min,
    Max,
    Pow,
    Clamp,
    /// torch's `lerp(a, b, w)`, with its two-branch formula for accuracy.
    Lerp,
    Floor,
    Ceil,
    Cos,
    Sin,
    Tanh,
    IsFinite,
    /// `is_none(x)`: whether an optional hyperparameter was left at `none`.
    IsNone,
}

impl Builtin {
    pub const ALL: [(&'static str, Builtin, usize); 17] = [
        ("sqrt", Builtin::Sqrt, 1),
        ("exp", Builtin::Exp, 1),
        ("log", Builtin::Log, 1),
        ("abs", Builtin::Abs, 1),
        ("sign", Builtin::Sign, 1),
        ("min", Builtin::Min, 2),
        ("max", Builtin::Max, 2),
        ("pow", Builtin::Pow, 2),
        ("clamp", Builtin::Clamp, 3),
        ("lerp", Builtin::Lerp, 3),
        ("floor", Builtin::Floor, 1),
        ("ceil", Builtin::Ceil, 1),
        ("cos", Builtin::Cos, 1),
        ("sin", Builtin::Sin, 1),
        ("tanh", Builtin::Tanh, 1),
        ("is_finite", Builtin::IsFinite, 1),
        ("is_none", Builtin::IsNone, 1),
    ];

    pub fn name(self) -> &'static str {
        Builtin::ALL
            .iter()
            .find(|(_, b, _)| *b == self)
            .map(|(n, _, _)| *n)
            .unwrap_or("?")
    }

    /// How many arguments it takes.
    pub fn arity(self) -> usize {
        Builtin::ALL
            .iter()
            .find(|(_, b, _)| *b == self)
            .map(|(_, _, n)| *n)
            .unwrap_or(0)
    }
}

/// Every builtin function, in `Builtin::ALL`'s order.
pub fn builtins() -> impl Iterator<Item = Builtin> {
    Builtin::ALL.iter().map(|(_, b, _)| *b)
}

/// Per-tensor shape facts: `rank()`, `numel()`, `factor_dim()` (the size of d1, the
/// second-largest dimension, which decides whether Optax factors a tensor; 0 below rank 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShapeInfo {
    Rank,
    Numel,
    FactorDim,
    /// Rows and columns of the tensor viewed as a matrix (`matrix(x)`): leading
    /// dimensions flattened into rows; a vector is one row, a scalar 1 × 1.
    Rows,
    Cols,
}

/// Operations on matrices (`Extent::Matrix`), evaluated by `crate::matrix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatOp {
    /// `matrix(x)`: a per-element value as its tensor's matrix.
    FromElements,
    /// `elements(M)`: a matrix of the tensor's shape back as a per-element value.
    ToElements,
    /// `A @ B`
    MatMul,
    Transpose,
    /// `eye(n)`: the n × n identity.
    Eye,
    /// `inverse_root(A, p, eps)`: (A + eps·I)^(−1/p) of a symmetric matrix (Shampoo).
    InverseRoot,
    /// `eigh(A)`: a symmetric matrix's eigenvectors, as columns, eigenvalues ascending.
    Eigh,
    /// `qr(A)`: the orthonormal factor of A = QR (SOAP's refresh by power iteration).
    Qr,
    /// `diagonal_order(A)`: the permutation matrix sorting A's diagonal descending (SOAP).
    DiagonalOrder,
    /// `matrix_trace(A)`: the sum of A's main diagonal, a number per tensor.
    Trace,
    /// `frobenius_norm(A)`: sqrt of the sum of A's squared entries, a number per tensor.
    FrobeniusNorm,
    /// `spectral_norm(A)`: A's largest singular value, a number per tensor.
    SpectralNorm,
}

impl MatOp {
    pub const ALL: [(&'static str, MatOp, usize); 12] = [
        ("matrix", MatOp::FromElements, 1),
        ("elements", MatOp::ToElements, 1),
        ("matmul", MatOp::MatMul, 2),
        ("transpose", MatOp::Transpose, 1),
        ("eye", MatOp::Eye, 1),
        ("inverse_root", MatOp::InverseRoot, 3),
        ("eigh", MatOp::Eigh, 1),
        ("qr", MatOp::Qr, 1),
        ("diagonal_order", MatOp::DiagonalOrder, 1),
        ("matrix_trace", MatOp::Trace, 1),
        ("frobenius_norm", MatOp::FrobeniusNorm, 1),
        ("spectral_norm", MatOp::SpectralNorm, 1),
    ];

    /// Whether it maps a matrix to a number per tensor (`matrix_trace`, the norms) rather than
    /// giving a matrix (or, `elements`, a per-element value).
    pub fn gives_number(self) -> bool {
        matches!(
            self,
            MatOp::Trace | MatOp::FrobeniusNorm | MatOp::SpectralNorm
        )
    }

    /// How a diagnostic names it: `@` for `matmul`, else its function name.
    pub fn symbol(self) -> &'static str {
        if self == MatOp::MatMul {
            "@"
        } else {
            self.name()
        }
    }

    pub fn name(self) -> &'static str {
        MatOp::ALL
            .iter()
            .find(|(_, m, _)| *m == self)
            .map(|(n, _, _)| *n)
            .unwrap_or("?")
    }
}

/// Schedule-body functions over list- and map-valued hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListOp {
    /// `count_le(xs, x)`: how many of xs are <= x.
    CountLe,
    /// `prod_le(map, x)`: the product of the values whose key is <= x (1 if none).
    ProdLe,
    /// `join(schedules, boundaries, x)`: schedules[i](x - boundaries[i-1]) where i is the
    /// number of boundaries <= x (optax `join_schedules`, torch `SequentialLR`).
    Join,
    /// `len(xs)`
    Len,
    /// `nth(xs, i)`: xs[i] (0-based), the last item past the end and the first before
    /// the start, so a one-item list serves every index.
    Nth,
    /// `sum_first(xs, k)`: the sum of the first k items (k clamped to 0..=len).
    SumFirst,
    /// `count_cum_le(xs, x)`: how many of the running sums xs[0], xs[0] + xs[1], ... are
    /// <= x (the number of whole cycles of lengths xs completed by x).
    CountCumLe,
    /// `last_key_le(map, x)`: the largest key <= x (none if there is none).
    LastKeyLe,
    /// `first_key_gt(map, x)`: the smallest key > x (none if there is none).
    FirstKeyGt,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Const(f64),
    /// A scalar hyperparameter (a schedule is evaluated at the current count).
    Hyper(usize),
    /// `betas[1]`: an element of a list hyperparameter.
    HyperIndex(usize, usize),
    State(StateId),
    Local(LocalId),
    /// The update flowing through the chain (the gradient, as earlier stages left it).
    Grad,
    /// The parameter tensor.
    Param,
    /// The optimizer step number: 1 at the first update.
    Step,
    /// In schedules: updates already made (0 at the first step).
    Count,
    /// Inside a schedule's `observe` block: the metric observed at the step.
    Metric,
    Unary(UnOp, ExprId),
    Binary(BinOp, ExprId, ExprId),
    Select(ExprId, ExprId, ExprId),
    Call(Builtin, Vec<ExprId>),
    Reduce(ReduceOp, Scope, ExprId),
    /// `s(x)`: a schedule-valued hyperparameter evaluated at count x.
    ScheduleAt(usize, ExprId),
    /// `mode == "cos"`: whether a `str` hyperparameter holds this value.
    StrEq(usize, String),
    /// A list function; the first operand is a hyperparameter index.
    List(ListOp, usize, Vec<ExprId>),
    /// The model's gradient (on this step's batch) at another point (capability `GradAt`).
    GradAt(ExprId),
    /// Hessian-vector product at the current parameters (capability `Hvp`).
    Hvp(ExprId),
    /// A random ±1 per element, fixed by (seed, step, stage, tensor, element).
    Rademacher,
    /// The loss at the step's parameters (capability `Loss`), step-uniform.
    Loss,
    /// A fact about each tensor's shape.
    Shape(ShapeInfo),
    /// In schedules: another schedule, called with arguments over this one's parameters,
    /// evaluated at a count (`at(s(...), x)`; the current count when written plainly).
    SchedCall(DefId, Vec<HyperExpr>, ExprId),
    /// A matrix operation (a matrix value, except `elements(M)`, which is per element).
    Mat(MatOp, Vec<ExprId>),
    /// `repeat count { ...; X = step }`: `init` updated `count` times, `Local(var)` being
    /// the value of the round before inside `step` (a matrix).
    Fold {
        init: ExprId,
        count: ExprId,
        var: LocalId,
        step: ExprId,
    },
}

impl Expr {
    /// The expressions this one reads directly.
    pub fn operands(&self) -> Vec<ExprId> {
        match self {
            Expr::Unary(_, a)
            | Expr::Reduce(_, _, a)
            | Expr::ScheduleAt(_, a)
            | Expr::SchedCall(_, _, a)
            | Expr::GradAt(a)
            | Expr::Hvp(a) => vec![*a],
            Expr::Binary(_, a, b) => vec![*a, *b],
            Expr::Select(c, a, b) => vec![*c, *a, *b],
            Expr::Call(_, xs) | Expr::List(_, _, xs) | Expr::Mat(_, xs) => xs.clone(),
            Expr::Fold {
                init, count, step, ..
            } => vec![*init, *count, *step],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateDecl {
    pub name: String,
    pub extent: Extent,
    /// A matrix state's sides (`extent` is `Matrix`): per tensor, rows or columns of its
    /// matrix view.
    pub shape: Option<(MatDim, MatDim)>,
    /// Evaluated once, when the state is created (may read `param` and hyperparameters).
    pub init: ExprId,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Let(LocalId, ExprId),
    SetState(StateId, ExprId),
    SetGrad(ExprId),
    SetParam(ExprId),
    /// `skip if cond`: when true, the step changes no parameter and later stages do not run.
    Skip(ExprId),
    /// `run NAME`: the stages of chain parameter NAME run here. Elaborating a recipe inlines
    /// them (`check::inline`), so no stage a back end sees holds one.
    Run(usize),
}

/// A checked body: the expression arena, its side tables, and the statements in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Body {
    pub exprs: Vec<Expr>,
    pub types: Vec<Type>,
    pub spans: Vec<Span>,
    pub states: Vec<StateDecl>,
    pub locals: Vec<String>,
    pub stmts: Vec<Stmt>,
    /// The value of a schedule body.
    pub result: Option<ExprId>,
    /// A schedule's `observe` block: run after each step with that step's metric.
    pub observe: Vec<Stmt>,
    /// `eval param = ...`: the parameters to evaluate, from the parameters and the states
    /// between steps (schedule-free's average x); none when they are the parameters.
    pub eval: Option<ExprId>,
}

impl Body {
    pub fn push(&mut self, e: Expr, ty: Type, span: Span) -> ExprId {
        self.exprs.push(e);
        self.types.push(ty);
        self.spans.push(span);
        self.exprs.len() - 1
    }

    /// What this body needs from the model beyond the gradient.
    pub fn capabilities(&self) -> Vec<Capability> {
        let mut out = Vec::new();
        for e in &self.exprs {
            let c = match e {
                Expr::GradAt(_) => Capability::GradAt,
                Expr::Hvp(_) => Capability::Hvp,
                Expr::Loss => Capability::Loss,
                _ => continue,
            };
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// The expression `let` local `l` is bound to (matrix values are evaluated from their
    /// definitions, `crate::matrix`).
    pub fn let_def(&self, l: LocalId) -> Option<ExprId> {
        self.stmts.iter().find_map(|s| match s {
            Stmt::Let(k, e) if *k == l => Some(*e),
            _ => None,
        })
    }

    pub fn writes_param(&self) -> bool {
        self.stmts.iter().any(|s| matches!(s, Stmt::SetParam(_)))
    }

    /// The hyperparameters (by index) that decide something for the whole step: their
    /// value reaches a `scalar` state or a `skip if` condition, so a recipe must not give
    /// them per group. A dataflow over the arena, iterated until states settle.
    pub fn step_uniform_params(&self) -> Vec<usize> {
        let mut deps = vec![0u128; self.exprs.len()];
        let mut local_deps = vec![0u128; self.locals.len()];
        let mut state_deps = vec![0u128; self.states.len()];
        let bit = |h: usize| if h < 128 { 1u128 << h } else { 0 };
        for _ in 0..=self.states.len() + self.locals.len() {
            for (i, e) in self.exprs.iter().enumerate() {
                let own = match e {
                    Expr::Hyper(h)
                    | Expr::HyperIndex(h, _)
                    | Expr::StrEq(h, _)
                    | Expr::ScheduleAt(h, _) => bit(*h),
                    Expr::List(_, h, _) => bit(*h),
                    Expr::Local(l) => local_deps[*l],
                    Expr::State(s) => state_deps[*s],
                    _ => 0,
                };
                deps[i] = e.operands().iter().fold(own, |acc, o| acc | deps[*o]);
            }
            for s in &self.stmts {
                match s {
                    Stmt::Let(l, e) => local_deps[*l] = deps[*e],
                    Stmt::SetState(s, e) => state_deps[*s] |= deps[*e],
                    _ => {}
                }
            }
            for (s, st) in self.states.iter().enumerate() {
                state_deps[s] |= deps[st.init];
            }
        }
        let mut sinks = 0u128;
        for s in &self.stmts {
            match s {
                Stmt::Skip(e) => sinks |= deps[*e],
                Stmt::SetState(id, e) if self.states[*id].extent == Extent::Uniform => {
                    sinks |= deps[*e]
                }
                _ => {}
            }
        }
        (0..128).filter(|h| sinks & (1u128 << h) != 0).collect()
    }
}

/// A storage type for weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Dtype {
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        }
    }
}

/// What a recipe can need from the model, beyond its gradient at the current parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// The gradient at a shifted point (SAM, look-ahead Nesterov): `grad_at(x)`.
    GradAt,
    /// Hessian-vector products (Sophia, Hutchinson estimators): `hvp(v)`.
    Hvp,
    /// The loss (and gradient) at any point, evaluated repeatedly in one step (L-BFGS).
    LossClosure,
    /// The loss at the step's parameters, the value whose gradient it was given (Polyak
    /// step sizes): `loss`.
    Loss,
}

impl Capability {
    pub fn describe(self) -> &'static str {
        match self {
            Capability::GradAt => "the gradient at a shifted point (`grad_at`)",
            Capability::Hvp => "Hessian-vector products (`hvp`)",
            Capability::LossClosure => "a loss closure (the loss and gradient at any point)",
            Capability::Loss => "the loss at the current parameters (`loss`)",
        }
    }
}

/// A recipe after elaboration: its chain flattened into stage instances with values.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub span: Span,
    pub steps: Option<u64>,
    /// `schedule NAME = ...` bindings, in order.
    pub schedules: Vec<(String, Sched, Span)>,
    pub groups: Vec<Group>,
    pub stages: Vec<StageInst>,
    /// No stage writes `param`: the final update is added to the parameters
    /// (optax's `apply_updates`).
    pub applies_updates: bool,
    /// What the recipe needs from the model beyond the gradient at the current point.
    pub capabilities: Vec<Capability>,
    /// `model = mlp(...)`: the built-in model to train, if the recipe names one.
    pub model: Option<ModelSpec>,
    /// `data = csv(...)`: the data set, if the recipe names one.
    pub data: Option<DataSpec>,
    /// `precision { params: ... }`: the storage type of the model's weights (the optimizer
    /// keeps f32 master weights); f32 when not given.
    pub param_dtype: Dtype,
    /// `curriculum { ... }` blocks in step order: what each step samples. Empty: uniform
    /// epochs.
    pub curriculum: Vec<CurriculumPhase>,
    /// `parallel { ... }`: how the training is split over devices.
    pub parallel: Option<ParallelPlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    /// `None`: `rest`, every tensor no earlier group took.
    pub patterns: Option<Vec<String>>,
    pub except: Vec<String>,
}

/// One transform or optimizer of a recipe's chain, with its hyperparameter values (one per
/// parameter of `def`, defaults filled in).
#[derive(Debug, Clone, PartialEq)]
pub struct StageInst {
    pub def: DefId,
    pub args: Vec<HyperValue>,
    pub span: Span,
}

impl StageInst {
    /// The value of the definition's parameter `name`, if it has one.
    pub fn arg<'a>(&'a self, program: &Program, name: &str) -> Option<&'a HyperValue> {
        program.defs[self.def]
            .params
            .iter()
            .position(|p| p.name == name)
            .and_then(|i| self.args.get(i))
    }
}
