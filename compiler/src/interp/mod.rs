//! The reference interpreter: the semantics every back end must match.
//!
//! Numbers: per-element values (`grad`, `param`, element states) are f32, as in the
//! libraries anneal is compared with; everything coarser (hyperparameters, schedules,
//! reductions, scalar and per-tensor states) is f64 and is rounded to f32 where it meets a
//! per-element operand. Reductions accumulate in f64, tensor by tensor, element by element.
//! A step runs the recipe's stages in order; each stage runs its statements in order over
//! every tensor; when no stage writes `param`, the final update is added (`apply_updates`).

use crate::ast::{BinOp, UnOp};
use crate::glob::assign_groups;
use crate::ir::{
    Body, DefBody, Expr, ExprId, Extent, HyperValue, ListOp, Program, Recipe, ReduceOp, Sched,
    Scope, ShapeInfo, Stmt,
};
use crate::math::{arith, builtin};
use crate::value::eval_hyper;

pub mod lbfgs;
mod sam;
mod view;
pub use view::{Slice, TensorView};

/// What schedules are evaluated against: the program, and the metrics observed so far
/// (`metrics[k]` after step k) for schedules that `observe` them.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub program: &'a Program,
    pub metrics: &'a [f64],
}

/// Evaluates a schedule at `count` (updates already made) for parameter group `group`.
/// A schedule that observes metrics fails here; use `eval_sched_observed`.
pub fn eval_sched(program: &Program, s: &Sched, count: f64, group: usize) -> Result<f64, String> {
    eval_sched_observed(
        Env {
            program,
            metrics: &[],
        },
        s,
        count,
        group,
    )
}

/// Evaluates a schedule at `count` with the metrics observed so far.
pub fn eval_sched_observed(env: Env, s: &Sched, count: f64, group: usize) -> Result<f64, String> {
    match s {
        Sched::Const(v) => Ok(*v),
        Sched::Unary(op, a) => {
            let x = eval_sched_observed(env, a, count, group)?;
            Ok(match op {
                UnOp::Neg => -x,
                UnOp::Not => f64::from(u8::from(x == 0.0)),
            })
        }
        Sched::Binary(op, a, b) => Ok(arith(
            *op,
            eval_sched_observed(env, a, count, group)?,
            eval_sched_observed(env, b, count, group)?,
        )),
        Sched::Call(def, args) => {
            let d = env.program.defs.get(*def).ok_or("unknown schedule")?;
            let DefBody::Schedule(body) = &d.body else {
                return Err(format!("`{}` is not a schedule", d.name));
            };
            let mut cx = SchedCx {
                env,
                body,
                args,
                count: 0.0,
                group,
                locals: vec![0.0; body.locals.len()],
                states: Vec::with_capacity(body.states.len()),
                metric: f64::NAN,
            };
            // A schedule with state replays its `observe` block over the metrics of the
            // steps before `count`: it stays a pure function of (count, metrics).
            for st in &body.states {
                let v = cx.eval(st.init)?;
                cx.states.push(v);
            }
            if !body.observe.is_empty() {
                let steps = if count > 0.0 {
                    count.floor() as usize
                } else {
                    0
                };
                if steps > env.metrics.len() {
                    return Err(format!(
                        "schedule `{}` follows a metric: it needs the metric of every step before step {steps}, \
                         but {} were observed",
                        d.name,
                        env.metrics.len()
                    ));
                }
                for (k, m) in env.metrics[..steps].iter().enumerate() {
                    cx.count = k as f64;
                    cx.metric = *m;
                    cx.run(&body.observe)?;
                }
            }
            cx.count = count;
            cx.metric = f64::NAN;
            cx.run(&body.stmts)?;
            let r = body
                .result
                .ok_or_else(|| format!("schedule `{}` has no value", d.name))?;
            cx.eval(r)
        }
    }
}

/// The scalar value of a hyperparameter for one group at one count.
fn hyper_scalar(env: Env, v: &HyperValue, count: f64, group: usize) -> Result<f64, String> {
    match v {
        HyperValue::PerGroup(vs) => {
            let g = vs
                .get(group)
                .ok_or("per-group value has no entry for this group")?;
            hyper_scalar(env, g, count, group)
        }
        HyperValue::Schedule(s) => eval_sched_observed(env, s, count, group),
        other => other
            .as_f64()
            .ok_or_else(|| "expected a number".to_string()),
    }
}

pub(crate) fn str_value(v: &HyperValue, group: usize) -> Result<&str, String> {
    match v {
        HyperValue::Str(s) => Ok(s),
        HyperValue::PerGroup(vs) => {
            str_value(vs.get(group).ok_or("no value for this group")?, group)
        }
        _ => Err("expected a string".into()),
    }
}

fn hyper_list(v: &HyperValue, group: usize) -> Result<&[HyperValue], String> {
    match v {
        HyperValue::List(items) => Ok(items),
        HyperValue::PerGroup(vs) => {
            hyper_list(vs.get(group).ok_or("no value for this group")?, group)
        }
        _ => Err("expected a list".into()),
    }
}

struct SchedCx<'a> {
    env: Env<'a>,
    body: &'a Body,
    args: &'a [HyperValue],
    count: f64,
    group: usize,
    locals: Vec<f64>,
    states: Vec<f64>,
    /// Inside `observe`: the metric of the step being replayed.
    metric: f64,
}

impl SchedCx<'_> {
    fn run(&mut self, stmts: &[Stmt]) -> Result<(), String> {
        for s in stmts {
            match s {
                Stmt::Let(l, e) => self.locals[*l] = self.eval(*e)?,
                Stmt::SetState(id, e) => self.states[*id] = self.eval(*e)?,
                _ => return Err("a schedule only binds values and updates its states".into()),
            }
        }
        Ok(())
    }

    fn arg(&self, i: usize) -> Result<&HyperValue, String> {
        self.args
            .get(i)
            .ok_or_else(|| format!("missing argument #{i}"))
    }

    fn eval(&self, id: ExprId) -> Result<f64, String> {
        Ok(match &self.body.exprs[id] {
            Expr::Const(v) => *v,
            Expr::Count => self.count,
            Expr::Local(l) => self.locals[*l],
            Expr::Hyper(i) => hyper_scalar(self.env, self.arg(*i)?, self.count, self.group)?,
            Expr::HyperIndex(i, k) => {
                let items = hyper_list(self.arg(*i)?, self.group)?;
                let item = items
                    .get(*k)
                    .ok_or_else(|| format!("list has no element {k}"))?;
                hyper_scalar(self.env, item, self.count, self.group)?
            }
            Expr::Unary(op, a) => {
                let x = self.eval(*a)?;
                match op {
                    UnOp::Neg => -x,
                    UnOp::Not => f64::from(u8::from(x == 0.0)),
                }
            }
            Expr::Binary(op, a, b) => arith(*op, self.eval(*a)?, self.eval(*b)?),
            Expr::Select(c, a, b) => {
                if self.eval(*c)? != 0.0 {
                    self.eval(*a)?
                } else {
                    self.eval(*b)?
                }
            }
            Expr::Call(b, xs) => {
                let vals = xs
                    .iter()
                    .map(|x| self.eval(*x))
                    .collect::<Result<Vec<_>, _>>()?;
                builtin(*b, &vals)
            }
            Expr::ScheduleAt(i, x) => {
                let at = self.eval(*x)?;
                hyper_scalar(self.env, self.arg(*i)?, at, self.group)?
            }
            Expr::SchedCall(def, hargs, at) => {
                let vals = hargs
                    .iter()
                    .map(|h| eval_hyper(h, self.args))
                    .collect::<Result<Vec<_>, _>>()?;
                let at = self.eval(*at)?;
                eval_sched_observed(self.env, &Sched::Call(*def, vals), at, self.group)?
            }
            Expr::List(op, i, rest) => self.list_op(*op, *i, rest)?,
            Expr::StrEq(i, lit) => {
                f64::from(u8::from(str_value(self.arg(*i)?, self.group)? == lit))
            }
            Expr::State(s) => self.states[*s],
            Expr::Metric => self.metric,
            Expr::Shape(_)
            | Expr::Grad
            | Expr::Param
            | Expr::Step
            | Expr::Reduce(..)
            | Expr::GradAt(_)
            | Expr::Hvp(_)
            | Expr::Rademacher => return Err("per-step tensor value inside a schedule".into()),
        })
    }

    fn list_op(&self, op: ListOp, i: usize, rest: &[ExprId]) -> Result<f64, String> {
        let arg = self.arg(i)?;
        match op {
            ListOp::Len => Ok(hyper_list(arg, self.group)?.len() as f64),
            ListOp::Nth | ListOp::SumFirst | ListOp::CountCumLe => {
                let x = self.eval(rest[0])?;
                let items = hyper_list(arg, self.group)?
                    .iter()
                    .map(|it| hyper_scalar(self.env, it, self.count, self.group))
                    .collect::<Result<Vec<f64>, _>>()?;
                Ok(match op {
                    ListOp::Nth => {
                        let last = items.len().checked_sub(1).ok_or("nth of an empty list")?;
                        // NaN and negative indices take the first item.
                        items[(x.max(0.0) as usize).min(last)]
                    }
                    ListOp::SumFirst => items.iter().take(x.max(0.0) as usize).sum(),
                    _ => {
                        let mut total = 0.0;
                        let mut n = 0.0;
                        for it in &items {
                            total += it;
                            if total > x {
                                break;
                            }
                            n += 1.0;
                        }
                        n
                    }
                })
            }
            ListOp::CountLe => {
                let x = self.eval(rest[0])?;
                let items = hyper_list(arg, self.group)?;
                let mut n = 0.0;
                for it in items {
                    if hyper_scalar(self.env, it, self.count, self.group)? <= x {
                        n += 1.0;
                    }
                }
                Ok(n)
            }
            ListOp::ProdLe => {
                let x = self.eval(rest[0])?;
                let HyperValue::Map(entries) = arg else {
                    return Err("expected a map".into());
                };
                let mut p = 1.0;
                for (k, v) in entries {
                    let k = k.as_f64().ok_or("map key is not a number")?;
                    if k <= x {
                        p *= hyper_scalar(self.env, v, self.count, self.group)?;
                    }
                }
                Ok(p)
            }
            ListOp::Join => {
                let Expr::Hyper(bi) = &self.body.exprs[rest[0]] else {
                    return Err("join needs a boundaries parameter".into());
                };
                let bounds = hyper_list(self.arg(*bi)?, self.group)?
                    .iter()
                    .map(|b| b.as_f64().ok_or("boundary is not a number"))
                    .collect::<Result<Vec<f64>, _>>()?;
                let scheds = hyper_list(arg, self.group)?;
                let x = self.eval(rest[1])?;
                let i = bounds.iter().filter(|b| **b <= x).count();
                let offset = if i == 0 { 0.0 } else { bounds[i - 1] };
                let s = scheds
                    .get(i)
                    .ok_or("join: fewer schedules than boundaries + 1")?;
                hyper_scalar(self.env, s, x - offset, self.group)
            }
        }
    }
}

/// What the model computes for the step being taken, beyond the gradient at the current
/// parameters (the recipe's capabilities). Tensors are in the recipe's tensor order.
pub trait Oracle {
    /// The gradient, on this step's batch, at `params`.
    fn grad_at(&mut self, params: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, String>;
    /// The Hessian of the loss at `params` times `v`.
    fn hvp(&mut self, params: &[Vec<f32>], v: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, String>;
    /// The loss and its gradient at `params` (a closure evaluated many times a step).
    fn loss_at(&mut self, _params: &[Vec<f32>]) -> Result<(f64, Vec<Vec<f32>>), String> {
        Err("this model provides no loss closure".into())
    }
}

/// A deterministic ±1 for (seed, step, stage, tensor, element): splitmix64 of the tuple.
pub fn rademacher(seed: u64, step: u64, stage: usize, tensor: usize, element: usize) -> f32 {
    let mut z = seed
        ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (stage as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (tensor as u64).wrapping_mul(0x1656_67B1_9E37_79F9)
        ^ (element as u64).wrapping_mul(0x27D4_EB2F_1656_67C5);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    if z & 1 == 0 {
        1.0
    } else {
        -1.0
    }
}

/// A value during a step: step-uniform, one per tensor, or one per element.
#[derive(Debug, Clone)]
enum V {
    U(f64),
    T(Vec<f64>),
    /// One value per slot of a slicing (rows, columns, ...), per tensor.
    S(Slice, Vec<Vec<f64>>),
    E(Vec<Vec<f32>>),
}

pub(crate) fn slice_of_extent(e: Extent) -> Option<Slice> {
    match e {
        Extent::Outer => Some(Slice::Outer),
        Extent::Row => Some(Slice::Row),
        Extent::Col => Some(Slice::Col),
        Extent::Unit => Some(Slice::Unit),
        _ => None,
    }
}

/// One stage's state buffers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum StateValue {
    Element(Vec<Vec<f32>>),
    /// Per row or per column (Adafactor's factored moments, SM3's accumulators).
    Slice(Slice, Vec<Vec<f64>>),
    Tensor(Vec<f64>),
    Scalar(f64),
}

impl StateValue {
    /// Same kind and sizes (values may differ).
    pub fn same_layout(&self, other: &StateValue) -> bool {
        match (self, other) {
            (StateValue::Element(a), StateValue::Element(b)) => {
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

/// An interpreter's progress: step counts, every stage's state, observed metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub count: u64,
    pub runs: Vec<u64>,
    pub states: Vec<Vec<StateValue>>,
    pub metrics: Vec<f64>,
    pub seed: u64,
    pub builtins: Vec<Option<BuiltinState>>,
}

/// The progress of a builtin stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum BuiltinState {
    Lbfgs(lbfgs::LbfgsState),
    Sam(sam::SamState),
}

/// Runs a recipe's update step on host tensors: the reference every back end is tested
/// against.
pub struct Interpreter<'p> {
    program: &'p Program,
    pub(crate) recipe: Recipe,
    /// Group index of each tensor.
    pub(crate) group_of: Vec<usize>,
    pub(crate) sizes: Vec<usize>,
    pub(crate) views: Vec<TensorView>,
    /// Per stage, per declared state.
    pub states: Vec<Vec<StateValue>>,
    /// Steps taken so far (skipped ones included).
    pub count: u64,
    /// Per stage: the updates it has made (runs that were not skipped); its `step` is
    /// this + 1 and its schedules are read at this count.
    pub(crate) runs: Vec<u64>,
    pub(crate) last_skipped: bool,
    /// Metrics observed after each step, for schedules that follow one.
    metrics: Vec<f64>,
    /// Seed of the `rademacher()` stream.
    pub seed: u64,
    /// Per stage: the state of a builtin optimizer.
    builtins: Vec<Option<BuiltinState>>,
    /// The tensors' names and shapes, for the chains a builtin runs (sam's).
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
}

impl<'p> Interpreter<'p> {
    /// Binds a recipe to named tensors (each taken as a vector) and creates every stage's
    /// state from `params`.
    pub fn new(
        program: &'p Program,
        recipe: &Recipe,
        names: &[String],
        params: &[Vec<f32>],
    ) -> Result<Self, String> {
        let shapes: Vec<Vec<usize>> = params.iter().map(|p| vec![p.len()]).collect();
        Self::with_shapes(program, recipe, names, &shapes, params)
    }

    /// Binds a recipe to named tensors of the given shapes (row-major, `[]` a scalar).
    pub fn with_shapes(
        program: &'p Program,
        recipe: &Recipe,
        names: &[String],
        shapes: &[Vec<usize>],
        params: &[Vec<f32>],
    ) -> Result<Self, String> {
        if names.len() != params.len() || shapes.len() != params.len() {
            return Err("one name and one shape per tensor are needed".into());
        }
        for ((n, s), p) in names.iter().zip(shapes).zip(params) {
            if s.iter().product::<usize>() != p.len() {
                return Err(format!(
                    "tensor `{n}`: shape {s:?} does not hold {} values",
                    p.len()
                ));
            }
        }
        let group_of = assign_groups(&recipe.groups, names)?;
        let mut it = Interpreter {
            program,
            recipe: recipe.clone(),
            group_of,
            sizes: params.iter().map(Vec::len).collect(),
            views: shapes.iter().map(|s| TensorView::new(s)).collect(),
            states: Vec::new(),
            count: 0,
            runs: vec![0; recipe.stages.len()],
            last_skipped: false,
            metrics: Vec::new(),
            seed: 0,
            builtins: Vec::new(),
            names: names.to_vec(),
            shapes: shapes.to_vec(),
        };
        for si in 0..it.recipe.stages.len() {
            if let Some(name) = it.builtin_name(si) {
                it.states.push(Vec::new());
                let state = match name {
                    "sam" => BuiltinState::Sam(it.sam_init(si, params)?),
                    _ => BuiltinState::Lbfgs(lbfgs::LbfgsState::default()),
                };
                it.builtins.push(Some(state));
                continue;
            }
            it.builtins.push(None);
            let body = it.stage_body(si)?;
            let hypers = it.hypers(si, 0.0)?;
            let mut cx = StepCx {
                it: &it,
                body,
                args: &it.recipe.stages[si].args,
                hypers: &hypers,
                grad: Vec::new(),
                params: params.to_vec(),
                states: Vec::new(),
                locals: vec![V::U(0.0); body.locals.len()],
                step: 0.0,
                stage: si,
                oracle: std::cell::RefCell::new(None),
            };
            let mut states = Vec::new();
            for st in &body.states {
                let v = cx.eval(st.init)?;
                let sv = cx.to_state(v, st.extent);
                cx.states.push(sv.clone());
                states.push(sv);
            }
            it.states.push(states);
        }
        Ok(it)
    }

    fn builtin_name(&self, si: usize) -> Option<&'p str> {
        match &self.program.defs[self.recipe.stages[si].def].body {
            DefBody::Builtin(name) => Some(name),
            _ => None,
        }
    }

    /// One step of the builtin L-BFGS over every tensor flattened into one vector.
    fn run_lbfgs(
        &mut self,
        si: usize,
        count: f64,
        params: Vec<Vec<f32>>,
        oracle: &mut dyn Oracle,
    ) -> Result<Vec<Vec<f32>>, String> {
        let stage = &self.recipe.stages[si];
        let value = |name: &str| -> Result<f64, String> {
            let v = stage
                .arg(self.program, name)
                .ok_or_else(|| format!("LBFGS needs `{name}`"))?;
            hyper_scalar(self.env(), v, count, 0)
        };
        let search = stage
            .arg(self.program, "line_search_fn")
            .and_then(|v| str_value(v, 0).ok())
            .is_some_and(|s| s == "strong_wolfe");
        let max_iter = value("max_iter")?.max(1.0) as usize;
        let max_eval = value("max_eval")?;
        let cfg = lbfgs::LbfgsConfig {
            lr: value("lr")? as f32,
            max_iter,
            max_eval: if max_eval.is_nan() {
                max_iter * 5 / 4
            } else {
                max_eval as usize
            },
            tolerance_grad: value("tolerance_grad")? as f32,
            tolerance_change: value("tolerance_change")? as f32,
            history_size: value("history_size")?.max(1.0) as usize,
            strong_wolfe: search,
        };
        struct Closure<'a> {
            oracle: &'a mut dyn Oracle,
            sizes: &'a [usize],
        }
        impl lbfgs::Objective for Closure<'_> {
            fn eval(&mut self, x: &[f32]) -> Result<(f32, Vec<f32>), String> {
                let mut tensors = Vec::with_capacity(self.sizes.len());
                let mut at = 0;
                for &n in self.sizes {
                    tensors.push(x[at..at + n].to_vec());
                    at += n;
                }
                let (loss, grads) = self.oracle.loss_at(&tensors)?;
                let grads = check_shapes(grads, self.sizes, "loss closure")?;
                Ok((loss as f32, grads.concat()))
            }
        }
        let mut x: Vec<f32> = params.concat();
        let mut state = match self.builtins[si].take() {
            Some(BuiltinState::Lbfgs(s)) => s,
            _ => lbfgs::LbfgsState::default(),
        };
        let mut closure = Closure {
            oracle,
            sizes: &self.sizes,
        };
        let result = lbfgs::step(&cfg, &mut state, &mut x, &mut closure);
        self.builtins[si] = Some(BuiltinState::Lbfgs(state));
        result?;
        let mut out = Vec::with_capacity(self.sizes.len());
        let mut at = 0;
        for &n in &self.sizes {
            out.push(x[at..at + n].to_vec());
            at += n;
        }
        Ok(out)
    }

    pub(crate) fn stage_body(&self, si: usize) -> Result<&'p Body, String> {
        let def = self.recipe.stages[si].def;
        match &self.program.defs[def].body {
            DefBody::Stage(b) => Ok(b),
            _ => Err(format!("`{}` is not a stage", self.program.defs[def].name)),
        }
    }

    /// Every hyperparameter of stage `si`, per group, at `count`; `None` for lists.
    pub(crate) fn hypers(&self, si: usize, count: f64) -> Result<Vec<Option<Vec<f64>>>, String> {
        let groups = self.recipe.groups.len().max(1);
        let stage = &self.recipe.stages[si];
        let mut out = Vec::new();
        for v in &stage.args {
            let compound = |x: &HyperValue| {
                matches!(
                    x,
                    HyperValue::List(_) | HyperValue::Map(_) | HyperValue::Str(_)
                )
            };
            let scalar =
                !compound(v) && !matches!(v, HyperValue::PerGroup(vs) if vs.iter().any(compound));
            if scalar {
                let per = (0..groups)
                    .map(|g| hyper_scalar(self.env(), v, count, g))
                    .collect::<Result<Vec<_>, _>>()?;
                out.push(Some(per));
            } else {
                out.push(None);
            }
        }
        Ok(out)
    }

    /// One update: `grads` in, `params` updated in place.
    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) -> Result<(), String> {
        self.needs_no_model()?;
        self.step_with(params, grads, None)
    }

    /// An error when the recipe calls the model mid-step (a step without an oracle).
    pub fn needs_no_model(&self) -> Result<(), String> {
        match self.recipe.capabilities.first() {
            Some(c) => Err(format!(
                "recipe `{}` needs {} from the model; run it with a model that provides it",
                self.recipe.name,
                c.describe()
            )),
            None => Ok(()),
        }
    }

    /// One update, with the model's oracle for `grad_at` and `hvp`.
    pub fn step_with(
        &mut self,
        params: &mut [Vec<f32>],
        grads: &[Vec<f32>],
        oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<(), String> {
        let Some((mut ps, grad)) = self.run_chain(params, grads, oracle)? else {
            return Ok(());
        };
        if self.recipe.applies_updates {
            for (p, g) in ps.iter_mut().zip(&grad) {
                for (x, u) in p.iter_mut().zip(g) {
                    *x += *u;
                }
            }
        }
        for (dst, src) in params.iter_mut().zip(ps) {
            *dst = src;
        }
        Ok(())
    }

    /// The update one step computes at `params` (the states advance, the parameters stay):
    /// the final `grad` of a chain that leaves applying it to the caller (Optax's), the
    /// change the chain made to the parameters otherwise, zero when a stage skipped.
    pub fn update_at(
        &mut self,
        params: &[Vec<f32>],
        grads: &[Vec<f32>],
        oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<Vec<Vec<f32>>, String> {
        Ok(match self.run_chain(params, grads, oracle)? {
            None => params.iter().map(|p| vec![0.0; p.len()]).collect(),
            Some((_, grad)) if self.recipe.applies_updates => grad,
            Some((ps, _)) => ps
                .iter()
                .zip(params)
                .map(|(new, old)| new.iter().zip(old).map(|(n, o)| n - o).collect())
                .collect(),
        })
    }

    /// Runs every stage once: the parameters as the stages left them and the final
    /// `grad`; `None` when a stage skipped the step.
    #[allow(clippy::type_complexity)]
    fn run_chain(
        &mut self,
        params: &[Vec<f32>],
        grads: &[Vec<f32>],
        mut oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<Option<(Vec<Vec<f32>>, Vec<Vec<f32>>)>, String> {
        if params.len() != self.sizes.len() || grads.len() != self.sizes.len() {
            return Err(format!("expected {} tensors", self.sizes.len()));
        }
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            if p.len() != self.sizes[i] || g.len() != self.sizes[i] {
                return Err(format!("tensor #{i} changed size"));
            }
        }
        let mut grad = grads.to_vec();
        let mut ps = params.to_vec();
        let mut skipped = false;
        for si in 0..self.recipe.stages.len() {
            let count = self.runs[si] as f64;
            if let Some(name) = self.builtin_name(si) {
                ps = if name == "sam" {
                    let o = oracle.as_mut().map(|o| &mut **o as &mut dyn Oracle);
                    self.run_sam(si, ps, &grad, o)?
                } else {
                    let o = oracle
                        .as_mut()
                        .ok_or("a builtin optimizer needs the model's loss closure")?;
                    self.run_lbfgs(si, count, ps, &mut **o)?
                };
                self.runs[si] += 1;
                continue;
            }
            let body = self.stage_body(si)?;
            let hypers = self.hypers(si, count)?;
            let states = std::mem::take(&mut self.states[si]);
            let mut cx = StepCx {
                it: self,
                body,
                args: &self.recipe.stages[si].args,
                hypers: &hypers,
                grad,
                params: ps,
                states,
                locals: vec![V::U(0.0); body.locals.len()],
                step: count + 1.0,
                stage: si,
                oracle: std::cell::RefCell::new(
                    oracle.as_mut().map(|o| &mut **o as &mut dyn Oracle),
                ),
            };
            let skip = cx.run()?;
            let StepCx {
                grad: g,
                params: p,
                states,
                ..
            } = cx;
            grad = g;
            ps = p;
            self.states[si] = states;
            self.runs[si] += 1;
            if skip {
                skipped = true;
                break;
            }
        }
        self.count += 1;
        self.last_skipped = skipped;
        Ok((!skipped).then_some((ps, grad)))
    }

    /// Everything that changes from step to step, for checkpoints: restoring it into an
    /// interpreter of the same recipe and tensors continues the run exactly.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            count: self.count,
            runs: self.runs.clone(),
            states: self.states.clone(),
            metrics: self.metrics.clone(),
            seed: self.seed,
            builtins: self.builtins.clone(),
        }
    }

    /// Continues from a snapshot taken from an interpreter of the same recipe and tensors.
    pub fn restore(&mut self, s: Snapshot) -> Result<(), String> {
        let layout_matches = s.runs.len() == self.runs.len()
            && s.states.len() == self.states.len()
            && s.states
                .iter()
                .zip(&self.states)
                .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_layout(y)));
        if !layout_matches {
            return Err(
                "the snapshot was taken from a different recipe or different tensors".into(),
            );
        }
        self.count = s.count;
        self.runs = s.runs;
        self.states = s.states;
        self.metrics = s.metrics;
        self.seed = s.seed;
        self.builtins = s.builtins;
        Ok(())
    }

    /// Records the metric observed at the step just taken (e.g. a validation loss), for
    /// schedules such as ReduceLROnPlateau that follow one.
    pub fn observe(&mut self, metric: f64) {
        self.metrics.push(metric);
    }

    fn env(&self) -> Env<'_> {
        Env {
            program: self.program,
            metrics: &self.metrics,
        }
    }

    /// The metrics observed so far (`observe`), oldest first.
    pub fn metrics(&self) -> &[f64] {
        &self.metrics
    }

    /// Per stage: the updates it has made (its schedules are read at this count).
    pub fn stage_counts(&self) -> &[u64] {
        &self.runs
    }

    /// Whether the last step was skipped (`skip if`): parameters unchanged, later stages
    /// not run.
    pub fn last_skipped(&self) -> bool {
        self.last_skipped
    }

    /// Per stage: the name of its definition and the names of its declared states, in the
    /// order of `Snapshot::states` (builtin stages declare none).
    pub fn state_names(&self) -> Vec<(String, Vec<String>)> {
        (0..self.recipe.stages.len())
            .map(|si| {
                let def = self.program.defs[self.recipe.stages[si].def].name.clone();
                let names = match self.builtin_name(si) {
                    Some(_) => Vec::new(),
                    None => self
                        .stage_body(si)
                        .map(|b| b.states.iter().map(|st| st.name.clone()).collect())
                        .unwrap_or_default(),
                };
                (def, names)
            })
            .collect()
    }

    /// The parameter group (an index into the recipe's groups) of each tensor.
    pub fn group_of(&self) -> &[usize] {
        &self.group_of
    }

    /// The current value of state `name` of the first stage defined by `def_name`.
    pub fn state(&self, def_name: &str, name: &str) -> Option<&StateValue> {
        let si = self
            .recipe
            .stages
            .iter()
            .position(|s| self.program.defs[s.def].name == def_name)?;
        let body = self.stage_body(si).ok()?;
        let id = body.states.iter().position(|st| st.name == name)?;
        self.states.get(si)?.get(id)
    }

    /// The hyperparameter values a list-typed argument holds, for stage `si`.
    pub(crate) fn list_arg(
        &self,
        args: &[HyperValue],
        i: usize,
        group: usize,
        count: f64,
    ) -> Result<Vec<f64>, String> {
        let v = args.get(i).ok_or("missing argument")?;
        hyper_list(v, group)?
            .iter()
            .map(|x| hyper_scalar(self.env(), x, count, group))
            .collect()
    }
}

struct StepCx<'a, 'p, 'o> {
    it: &'a Interpreter<'p>,
    body: &'p Body,
    args: &'a [HyperValue],
    hypers: &'a [Option<Vec<f64>>],
    grad: Vec<Vec<f32>>,
    params: Vec<Vec<f32>>,
    states: Vec<StateValue>,
    locals: Vec<V>,
    step: f64,
    /// Which stage runs, for the random stream of `rademacher()`.
    stage: usize,
    oracle: std::cell::RefCell<Option<&'o mut dyn Oracle>>,
}

impl StepCx<'_, '_, '_> {
    /// Runs the body; true when a `skip if` fired.
    fn run(&mut self) -> Result<bool, String> {
        let mut skip = false;
        for s in &self.body.stmts {
            match s {
                Stmt::Skip(e) => {
                    if let V::U(c) = self.eval(*e)? {
                        skip |= c != 0.0;
                    }
                }
                Stmt::Let(l, e) => self.locals[*l] = self.eval(*e)?,
                Stmt::SetState(id, e) => {
                    let v = self.eval(*e)?;
                    let extent = self.body.states[*id].extent;
                    self.states[*id] = self.to_state(v, extent);
                }
                Stmt::SetGrad(e) => {
                    let v = self.eval(*e)?;
                    self.grad = self.elements(v);
                }
                Stmt::SetParam(e) => {
                    let v = self.eval(*e)?;
                    self.params = self.elements(v);
                }
            }
        }
        Ok(skip)
    }

    fn ntensors(&self) -> usize {
        self.it.sizes.len()
    }

    fn elements(&self, v: V) -> Vec<Vec<f32>> {
        match v {
            V::E(e) => e,
            V::S(k, s) => self
                .it
                .views
                .iter()
                .zip(s)
                .map(|(view, vals)| {
                    (0..view.numel)
                        .map(|i| vals[view.slot(k, i)] as f32)
                        .collect()
                })
                .collect(),
            V::U(x) => self.it.sizes.iter().map(|&n| vec![x as f32; n]).collect(),
            V::T(xs) => self
                .it
                .sizes
                .iter()
                .zip(xs)
                .map(|(&n, x)| vec![x as f32; n])
                .collect(),
        }
    }

    fn per_tensor(&self, v: &V) -> Vec<f64> {
        match v {
            V::U(x) => vec![*x; self.ntensors()],
            V::T(xs) => xs.clone(),
            V::S(..) | V::E(_) => Vec::new(),
        }
    }

    /// A value broadcast to (or kept at) slicing `k`.
    fn slices(&self, v: V, k: Slice) -> Vec<Vec<f64>> {
        match v {
            V::S(l, s) if l == k => s,
            V::S(Slice::Outer, s) => self
                .it
                .views
                .iter()
                .zip(s)
                .map(|(view, vals)| {
                    (0..view.count(k))
                        .map(|j| vals[view.outer_of(k, j)])
                        .collect()
                })
                .collect(),
            other => {
                let per = self.per_tensor(&other);
                self.it
                    .views
                    .iter()
                    .enumerate()
                    .map(|(t, view)| vec![per.get(t).copied().unwrap_or(f64::NAN); view.count(k)])
                    .collect()
            }
        }
    }

    fn to_state(&self, v: V, extent: Extent) -> StateValue {
        match extent {
            Extent::Element => StateValue::Element(self.elements(v)),
            Extent::Tensor | Extent::Group => StateValue::Tensor(self.per_tensor(&v)),
            Extent::Outer | Extent::Row | Extent::Col | Extent::Unit => {
                let k = slice_of_extent(extent).unwrap_or(Slice::Outer);
                StateValue::Slice(k, self.slices(v, k))
            }
            Extent::Uniform => StateValue::Scalar(match v {
                V::U(x) => x,
                _ => f64::NAN,
            }),
        }
    }

    fn eval(&self, id: ExprId) -> Result<V, String> {
        Ok(match &self.body.exprs[id] {
            Expr::Const(v) => V::U(*v),
            Expr::Step => V::U(self.step),
            Expr::Count => V::U(self.step - 1.0),
            Expr::Grad => V::E(self.grad.clone()),
            Expr::Param => V::E(self.params.clone()),
            Expr::Local(l) => self.locals[*l].clone(),
            Expr::State(s) => match &self.states[*s] {
                StateValue::Element(e) => V::E(e.clone()),
                StateValue::Slice(k, s) => V::S(*k, s.clone()),
                StateValue::Tensor(t) => V::T(t.clone()),
                StateValue::Scalar(x) => V::U(*x),
            },
            Expr::Hyper(i) => {
                let per_group = self
                    .hypers
                    .get(*i)
                    .and_then(|h| h.as_ref())
                    .ok_or("list used as a number")?;
                self.spread_groups(per_group)
            }
            Expr::HyperIndex(i, k) => {
                let groups = self.it.recipe.groups.len().max(1);
                let mut per = Vec::with_capacity(groups);
                for g in 0..groups {
                    let xs = self.it.list_arg(self.args, *i, g, self.step - 1.0)?;
                    per.push(
                        *xs.get(*k)
                            .ok_or_else(|| format!("list has {} elements, index {k}", xs.len()))?,
                    );
                }
                self.spread_groups(&per)
            }
            Expr::Unary(op, a) => {
                let x = self.eval(*a)?;
                map1(
                    x,
                    |v| match op {
                        UnOp::Neg => -v,
                        UnOp::Not => f64::from(u8::from(v == 0.0)),
                    },
                    |v| match op {
                        UnOp::Neg => -v,
                        UnOp::Not => f32::from(u8::from(v == 0.0)),
                    },
                )
            }
            Expr::Binary(op, a, b) => {
                let (x, y) = (self.eval(*a)?, self.eval(*b)?);
                if let Some(v) = self.arith_elements(*op, &x, &y) {
                    return Ok(v);
                }
                let op = *op;
                self.zip(
                    &[x, y],
                    |v| arith(op, v[0], v[1]),
                    |v| arith(op, v[0], v[1]),
                )
            }
            Expr::Select(c, a, b) => {
                let cond = self.eval(*c)?;
                // A step-uniform condition picks one branch: only that one is computed
                // (the same values; `clip_grad_norm_`'s p-norm branch is skipped at p = 2).
                if let V::U(u) = cond {
                    return self.eval(if u != 0.0 { *a } else { *b });
                }
                let vals = [cond, self.eval(*a)?, self.eval(*b)?];
                self.zip(
                    &vals,
                    |v| if v[0] != 0.0 { v[1] } else { v[2] },
                    |v| if v[0] != 0.0 { v[1] } else { v[2] },
                )
            }
            Expr::Call(b, xs) => {
                let vals = xs
                    .iter()
                    .map(|x| self.eval(*x))
                    .collect::<Result<Vec<_>, _>>()?;
                let b = *b;
                self.zip(&vals, |v| builtin(b, v), |v| builtin(b, v))
            }
            Expr::Reduce(op, scope, x) => {
                let x = self.eval(*x)?;
                self.reduce(*op, *scope, x)?
            }
            Expr::StrEq(i, lit) => {
                let groups = self.it.recipe.groups.len().max(1);
                let v = self.args.get(*i).ok_or("missing argument")?;
                let per = (0..groups)
                    .map(|g| str_value(v, g).map(|s| f64::from(u8::from(s == lit))))
                    .collect::<Result<Vec<_>, _>>()?;
                self.spread_groups(&per)
            }
            Expr::GradAt(x) => {
                let point = self.elements(self.eval(*x)?);
                let mut oracle = self.oracle.borrow_mut();
                let o = oracle
                    .as_mut()
                    .ok_or("`grad_at` needs a model that computes gradients at a point")?;
                V::E(check_shapes(o.grad_at(&point)?, &self.it.sizes, "grad_at")?)
            }
            Expr::Hvp(x) => {
                let v = self.elements(self.eval(*x)?);
                let mut oracle = self.oracle.borrow_mut();
                let o = oracle
                    .as_mut()
                    .ok_or("`hvp` needs a model that computes Hessian-vector products")?;
                V::E(check_shapes(
                    o.hvp(&self.params, &v)?,
                    &self.it.sizes,
                    "hvp",
                )?)
            }
            Expr::Shape(info) => V::T(
                self.it
                    .views
                    .iter()
                    .map(|v| match info {
                        ShapeInfo::Rank => v.rank as f64,
                        ShapeInfo::Numel => v.numel as f64,
                        ShapeInfo::FactorDim => v.factor_dim as f64,
                    })
                    .collect(),
            ),
            Expr::Rademacher => {
                let step = self.step as u64;
                V::E(
                    self.it
                        .sizes
                        .iter()
                        .enumerate()
                        .map(|(t, &n)| {
                            (0..n)
                                .map(|i| rademacher(self.it.seed, step, self.stage, t, i))
                                .collect()
                        })
                        .collect(),
                )
            }
            Expr::ScheduleAt(..) | Expr::SchedCall(..) | Expr::List(..) | Expr::Metric => {
                return Err("schedule-only expression in a stage".into())
            }
        })
    }

    fn spread_groups(&self, per_group: &[f64]) -> V {
        if per_group
            .iter()
            .all(|v| v.to_bits() == per_group[0].to_bits())
        {
            V::U(per_group[0])
        } else {
            V::T(self.it.group_of.iter().map(|&g| per_group[g]).collect())
        }
    }

    /// `+ - * /` where an operand is per element and the other per element, per tensor or
    /// uniform: the same f32 arithmetic as `zip`, with the operator chosen once per tensor
    /// instead of once per element (the interpreter's hot path).
    fn arith_elements<'v>(&self, op: BinOp, x: &'v V, y: &'v V) -> Option<V> {
        if !matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div) {
            return None;
        }
        // Each operand as, per tensor, either a slice or one scalar.
        enum Side<'v> {
            Slice(&'v [Vec<f32>]),
            Scalar(Vec<f32>),
        }
        let side = |v: &'v V| -> Option<Side<'v>> {
            Some(match v {
                V::E(e) => Side::Slice(e),
                V::U(u) => Side::Scalar(vec![*u as f32; self.ntensors()]),
                V::T(t) => Side::Scalar(t.iter().map(|x| *x as f32).collect()),
                V::S(..) => return None,
            })
        };
        let (a, b) = (side(x)?, side(y)?);
        if matches!((&a, &b), (Side::Scalar(_), Side::Scalar(_))) {
            return None;
        }
        fn apply(
            op: BinOp,
            out: &mut Vec<f32>,
            n: usize,
            a: impl Fn(usize) -> f32,
            b: impl Fn(usize) -> f32,
        ) {
            out.extend((0..n).map(|i| match op {
                BinOp::Add => a(i) + b(i),
                BinOp::Sub => a(i) - b(i),
                BinOp::Mul => a(i) * b(i),
                _ => a(i) / b(i),
            }));
        }
        let mut result = Vec::with_capacity(self.ntensors());
        for (t, &n) in self.it.sizes.iter().enumerate() {
            let mut out = Vec::with_capacity(n);
            match (&a, &b) {
                (Side::Slice(p), Side::Slice(q)) => {
                    let (p, q) = (&p[t], &q[t]);
                    match op {
                        BinOp::Add => out.extend(p.iter().zip(q).map(|(x, y)| x + y)),
                        BinOp::Sub => out.extend(p.iter().zip(q).map(|(x, y)| x - y)),
                        BinOp::Mul => out.extend(p.iter().zip(q).map(|(x, y)| x * y)),
                        _ => out.extend(p.iter().zip(q).map(|(x, y)| x / y)),
                    }
                }
                (Side::Slice(p), Side::Scalar(s)) => {
                    let (p, s) = (&p[t], s[t]);
                    apply(op, &mut out, n, |i| p[i], |_| s);
                }
                (Side::Scalar(s), Side::Slice(q)) => {
                    let (s, q) = (s[t], &q[t]);
                    apply(op, &mut out, n, |_| s, |i| q[i]);
                }
                (Side::Scalar(_), Side::Scalar(_)) => return None,
            }
            result.push(out);
        }
        Some(V::E(result))
    }

    /// Applies an elementwise function, broadcasting to the finest operand.
    fn zip(&self, vals: &[V], f64op: impl Fn(&[f64]) -> f64, f32op: impl Fn(&[f32]) -> f32) -> V {
        if vals.iter().all(|v| matches!(v, V::U(_))) {
            let xs: Vec<f64> = vals
                .iter()
                .map(|v| if let V::U(x) = v { *x } else { 0.0 })
                .collect();
            return V::U(f64op(&xs));
        }
        if vals.iter().all(|v| matches!(v, V::U(_) | V::T(_))) {
            let cols: Vec<Vec<f64>> = vals.iter().map(|v| self.per_tensor(v)).collect();
            return V::T(
                (0..self.ntensors())
                    .map(|t| {
                        let xs: Vec<f64> = cols.iter().map(|c| c[t]).collect();
                        f64op(&xs)
                    })
                    .collect(),
            );
        }
        // Sliced operands of one slicing (an outer one broadcasts into rows or columns)
        // stay sliced, in f64; anything finer becomes per element.
        let kinds: Vec<Slice> = vals
            .iter()
            .filter_map(|v| if let V::S(k, _) = v { Some(*k) } else { None })
            .collect();
        let finest = kinds
            .iter()
            .copied()
            .find(|k| *k != Slice::Outer)
            .unwrap_or(Slice::Outer);
        // One slicing throughout, or rows (columns) with outer slices broadcast into them.
        let one_slicing = kinds.iter().all(|k| *k == finest)
            || (matches!(finest, Slice::Row | Slice::Col)
                && kinds.iter().all(|k| *k == finest || *k == Slice::Outer));
        if !kinds.is_empty() && one_slicing && !vals.iter().any(|v| matches!(v, V::E(_))) {
            let cols: Vec<Vec<Vec<f64>>> = vals
                .iter()
                .map(|v| self.slices(v.clone(), finest))
                .collect();
            let mut out = Vec::with_capacity(self.ntensors());
            let mut xs = vec![0f64; vals.len()];
            for (t, view) in self.it.views.iter().enumerate() {
                let mut col = Vec::with_capacity(view.count(finest));
                for j in 0..view.count(finest) {
                    for (k, c) in cols.iter().enumerate() {
                        xs[k] = c[t][j];
                    }
                    col.push(f64op(&xs));
                }
                out.push(col);
            }
            return V::S(finest, out);
        }
        let mut out = Vec::with_capacity(self.ntensors());
        let mut xs = vec![0f32; vals.len()];
        for (t, &n) in self.it.sizes.iter().enumerate() {
            let mut col = Vec::with_capacity(n);
            let view = &self.it.views[t];
            for i in 0..n {
                for (k, v) in vals.iter().enumerate() {
                    xs[k] = match v {
                        V::U(x) => *x as f32,
                        V::T(ts) => ts[t] as f32,
                        V::S(s, vs) => vs[t][view.slot(*s, i)] as f32,
                        V::E(es) => es[t][i],
                    };
                }
                col.push(f32op(&xs));
            }
            out.push(col);
        }
        V::E(out)
    }

    fn reduce(&self, op: ReduceOp, scope: Scope, x: V) -> Result<V, String> {
        let finish = |p: &Partial| p.finish(op);
        // Reductions into a slicing: one partial per slot of the target.
        if let Some(target) = slice_of_extent(scope.extent()) {
            let mut out = Vec::with_capacity(self.ntensors());
            for (t, view) in self.it.views.iter().enumerate() {
                let mut acc = vec![Partial::empty(); view.count(target)];
                match &x {
                    V::E(es) => {
                        for (i, v) in es[t].iter().enumerate() {
                            acc[view.slot(target, i)].push(f64::from(*v));
                        }
                    }
                    V::S(k, s) if target == Slice::Outer => {
                        for (j, v) in s[t].iter().enumerate() {
                            acc[view.outer_of(*k, j)].push(*v);
                        }
                    }
                    _ => {
                        return Err(
                            "reduction of a value that does not vary within the scope".into()
                        )
                    }
                }
                out.push(acc.iter().map(finish).collect());
            }
            return Ok(V::S(target, out));
        }
        // Partial results per tensor: (sum, sum of squares, max, min, all finite, count).
        let parts: Vec<Partial> = match &x {
            V::E(es) => es.iter().map(|t| Partial::of(t)).collect(),
            V::S(_, s) => s
                .iter()
                .map(|vals| {
                    let mut p = Partial::empty();
                    vals.iter().for_each(|v| p.push(*v));
                    p
                })
                .collect(),
            _ => return Err("reduction of a value that is not per element".into()),
        };
        Ok(match scope {
            Scope::Tensor => V::T(parts.iter().map(finish).collect()),
            Scope::Global => V::U(finish(
                &parts.iter().fold(Partial::empty(), |a, b| a.merge(b)),
            )),
            Scope::Row | Scope::Col | Scope::Outer | Scope::Unit => {
                return Err("unreachable: sliced reductions return above".into())
            }
            Scope::Group => {
                let groups = self.it.recipe.groups.len().max(1);
                let mut acc = vec![Partial::empty(); groups];
                for (t, p) in parts.iter().enumerate() {
                    let g = self.it.group_of[t];
                    acc[g] = acc[g].merge(p);
                }
                V::T(self.it.group_of.iter().map(|&g| finish(&acc[g])).collect())
            }
        })
    }
}

fn check_shapes(out: Vec<Vec<f32>>, sizes: &[usize], what: &str) -> Result<Vec<Vec<f32>>, String> {
    if out.len() != sizes.len() || out.iter().zip(sizes).any(|(t, &n)| t.len() != n) {
        return Err(format!(
            "the model's `{what}` returned tensors of the wrong sizes"
        ));
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
/// Every statistic a reduction may finish with, over a run of values in order (f64): the
/// reference arithmetic of reductions, shared with the fused step's host side.
pub(crate) struct Partial {
    sum: f64,
    sumsq: f64,
    max: f64,
    min: f64,
    finite: bool,
    n: usize,
}

impl Partial {
    pub(crate) fn finish(&self, op: ReduceOp) -> f64 {
        match op {
            ReduceOp::Norm => self.sumsq.sqrt(),
            ReduceOp::Sum => self.sum,
            ReduceOp::Mean => self.sum / self.n as f64,
            ReduceOp::Max => self.max,
            ReduceOp::Min => self.min,
            ReduceOp::AllFinite => f64::from(u8::from(self.finite)),
        }
    }

    pub(crate) fn empty() -> Partial {
        Partial {
            sum: 0.0,
            sumsq: 0.0,
            max: f64::NEG_INFINITY,
            min: f64::INFINITY,
            finite: true,
            n: 0,
        }
    }

    fn of(xs: &[f32]) -> Partial {
        let mut p = Partial::empty();
        for &x in xs {
            p.push(f64::from(x));
        }
        p
    }

    pub(crate) fn push(&mut self, x: f64) {
        self.sum += x;
        self.sumsq += x * x;
        self.max = self.max.max(x);
        self.min = self.min.min(x);
        self.finite &= x.is_finite();
        self.n += 1;
    }

    pub(crate) fn merge(&self, o: &Partial) -> Partial {
        Partial {
            sum: self.sum + o.sum,
            sumsq: self.sumsq + o.sumsq,
            max: self.max.max(o.max),
            min: self.min.min(o.min),
            finite: self.finite && o.finite,
            n: self.n + o.n,
        }
    }
}

fn map1(x: V, f: impl Fn(f64) -> f64, g: impl Fn(f32) -> f32) -> V {
    match x {
        V::U(v) => V::U(f(v)),
        V::T(vs) => V::T(vs.into_iter().map(f).collect()),
        V::S(k, s) => V::S(
            k,
            s.into_iter()
                .map(|t| t.into_iter().map(&f).collect())
                .collect(),
        ),
        V::E(es) => V::E(
            es.into_iter()
                .map(|t| t.into_iter().map(&g).collect())
                .collect(),
        ),
    }
}
