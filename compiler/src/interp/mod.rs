//! The reference interpreter: the semantics every back end must match.
//!
//! Numbers: per-element values (`grad`, `param`, element states) are f32, as in the
//! libraries anneal is compared with; everything coarser (hyperparameters, schedules,
//! reductions, scalar and per-tensor states) is f64 and is rounded to f32 where it meets a
//! per-element operand. Reductions accumulate in f64, tensor by tensor, element by element.
//! A step runs the recipe's stages in order; each stage runs its statements in order over
//! every tensor; when no stage writes `param`, the final update is added (`apply_updates`).

use crate::ast::{BinOp, UnOp};
use crate::error::{Error, Result};
use crate::glob::assign_groups;
use crate::ir::{
    Body, DefBody, Expr, ExprId, Extent, HyperValue, ListOp, MatOp, Program, Recipe, ReduceOp,
    Sched, Scope, ShapeInfo, StageInst, Stmt,
};
use crate::math::{arith, builtin};
use crate::matrix;
use crate::value::eval_hyper;

mod eval;
pub mod lbfgs;
mod replay;
mod sam;
mod sched;
mod stage;
pub(crate) mod view;
pub use replay::Replays;
pub(crate) use sched::str_value;
pub use sched::{eval_sched, eval_sched_observed, Env};
use sched::{hyper_list, hyper_scalar};
use stage::{check_shapes, StepCx};
pub use view::{Slice, TensorView};

use crate::state::{BuiltinState, StateValue, StepState};

/// What the model computes for the step being taken, beyond the gradient at the current
/// parameters (the recipe's capabilities). Tensors are in the recipe's tensor order.
pub trait Oracle {
    /// The gradient, on this step's batch, at `params`.
    fn grad_at(&mut self, params: &[Vec<f32>]) -> Result<Vec<Vec<f32>>>;
    /// The Hessian of the loss at `params` times `v`.
    fn hvp(&mut self, params: &[Vec<f32>], v: &[Vec<f32>]) -> Result<Vec<Vec<f32>>>;
    /// The loss and its gradient at `params` (a closure evaluated many times a step).
    fn loss_at(&mut self, _params: &[Vec<f32>]) -> Result<(f64, Vec<Vec<f32>>)> {
        Err("this model provides no loss closure".into())
    }
    /// The loss at the parameters of the step being taken, on its batch: the value whose
    /// gradient the step was given (Polyak step sizes read it as `loss`).
    fn loss(&mut self) -> Result<f64> {
        Err("this model provides no loss value".into())
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
        Extent::Lead => Some(Slice::Lead),
        _ => None,
    }
}

/// Runs a recipe's update step on host tensors: the reference every back end is tested
/// against. It holds the recipe bound to its tensors and nothing that changes from step
/// to step: that is the `StepState` each step reads and writes.
pub struct Interpreter<'p> {
    program: &'p Program,
    pub(crate) recipe: Recipe,
    /// Group index of each tensor.
    pub(crate) group_of: Vec<usize>,
    pub(crate) sizes: Vec<usize>,
    pub(crate) views: Vec<TensorView>,
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
    ) -> Result<(Self, StepState)> {
        let shapes: Vec<Vec<usize>> = params.iter().map(|p| vec![p.len()]).collect();
        Self::with_shapes(program, recipe, names, &shapes, params)
    }

    /// Binds a recipe to named tensors of the given shapes (row-major, `[]` a scalar);
    /// with the state before the first step, created from `params`.
    pub fn with_shapes(
        program: &'p Program,
        recipe: &Recipe,
        names: &[String],
        shapes: &[Vec<usize>],
        params: &[Vec<f32>],
    ) -> Result<(Self, StepState)> {
        if names.len() != params.len() || shapes.len() != params.len() {
            return Err(Error::user(format!(
                "one name and one shape per tensor are needed: {} names, {} shapes, {} tensors",
                names.len(),
                shapes.len(),
                params.len()
            )));
        }
        for ((n, s), p) in names.iter().zip(shapes).zip(params) {
            if s.iter().product::<usize>() != p.len() {
                return Err(Error::user(format!(
                    "tensor `{n}`: shape {s:?} does not hold {} values",
                    p.len()
                )));
            }
        }
        let group_of = assign_groups(&recipe.groups, names)?;
        let it = Interpreter {
            program,
            recipe: recipe.clone(),
            group_of,
            sizes: params.iter().map(Vec::len).collect(),
            views: shapes.iter().map(|s| TensorView::new(s)).collect(),
            names: names.to_vec(),
            shapes: shapes.to_vec(),
        };
        let state = it.initial_state(params)?;
        Ok((it, state))
    }

    /// Every stage's state before the first step, created from `params` (at seed 0: a
    /// run's seed is set afterwards, `StepState::set_seed`).
    fn initial_state(&self, params: &[Vec<f32>]) -> Result<StepState> {
        let it = self;
        let (mut all, mut builtins) = (Vec::new(), Vec::new());
        let before = StepState::initial(Vec::new(), Vec::new());
        for si in 0..it.recipe.stages.len() {
            if let Some(name) = it.builtin_name(si) {
                all.push(Vec::new());
                let state = match name {
                    "sam" => BuiltinState::Sam(it.sam_init(si, params, 0)?),
                    _ => BuiltinState::Lbfgs(lbfgs::LbfgsState::default()),
                };
                builtins.push(Some(state));
                continue;
            }
            builtins.push(None);
            let body = it.stage_body(si)?;
            let hypers = it.hypers(&before, si, 0.0)?;
            let mut cx = StepCx {
                it,
                st: &before,
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
                matrices: Default::default(),
            };
            let mut states = Vec::new();
            for (id, st) in body.states.iter().enumerate() {
                let sv = if st.extent == Extent::Matrix {
                    cx.mat_init(id)?
                } else {
                    let v = cx.eval(st.init)?;
                    cx.to_state(v, st.extent)
                };
                cx.states.push(sv.clone());
                states.push(sv);
            }
            all.push(states);
        }
        Ok(StepState::initial(all, builtins))
    }

    fn builtin_name(&self, si: usize) -> Option<&'p str> {
        match &self.program.defs[self.recipe.stages[si].def].body {
            DefBody::Builtin(name) => Some(name),
            _ => None,
        }
    }

    /// One step of the builtin L-BFGS over every tensor flattened into one vector.
    fn run_lbfgs(
        &self,
        st: &mut StepState,
        si: usize,
        count: f64,
        params: Vec<Vec<f32>>,
        oracle: &mut dyn Oracle,
    ) -> Result<Vec<Vec<f32>>> {
        let stage = &self.recipe.stages[si];
        let value = |name: &str| -> Result<f64> {
            let v = stage
                .arg(self.program, name)
                .ok_or_else(|| Error::internal(format!("LBFGS needs `{name}`")))?;
            hyper_scalar(self.env(st), v, count, 0)
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
            fn eval(&mut self, x: &[f32]) -> Result<(f32, Vec<f32>)> {
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
        let mut state = match st.take_builtin(si) {
            Some(BuiltinState::Lbfgs(s)) => s,
            _ => lbfgs::LbfgsState::default(),
        };
        let mut closure = Closure {
            oracle,
            sizes: &self.sizes,
        };
        let result = lbfgs::step(&cfg, &mut state, &mut x, &mut closure);
        st.put_builtin(si, BuiltinState::Lbfgs(state));
        result?;
        let mut out = Vec::with_capacity(self.sizes.len());
        let mut at = 0;
        for &n in &self.sizes {
            out.push(x[at..at + n].to_vec());
            at += n;
        }
        Ok(out)
    }

    /// Tensor t's name, as the caller gave it.
    pub(crate) fn tensor_name(&self, t: usize) -> &str {
        self.names.get(t).map(String::as_str).unwrap_or("?")
    }

    pub(crate) fn stage_body(&self, si: usize) -> Result<&'p Body> {
        let def = self.recipe.stages[si].def;
        match &self.program.defs[def].body {
            DefBody::Stage(b) => Ok(b),
            _ => Err(Error::internal(format!(
                "`{}` is not a stage",
                self.program.defs[def].name
            ))),
        }
    }

    /// Every hyperparameter of stage `si`, per group, at `count`; `None` for lists.
    pub(crate) fn hypers(
        &self,
        st: &StepState,
        si: usize,
        count: f64,
    ) -> Result<Vec<Option<Vec<f64>>>> {
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
                    .map(|g| hyper_scalar(self.env(st), v, count, g))
                    .collect::<Result<Vec<_>, _>>()?;
                if v.varies() {
                    self.check_range(stage, out.len(), &per, count)?;
                }
                out.push(Some(per));
            } else {
                out.push(None);
            }
        }
        Ok(out)
    }

    /// A scheduled hyperparameter must stay in its declared range at every step; the
    /// checker tries the recipe's steps ahead of time, this catches the rest (schedules
    /// that follow a metric, runs longer than the recipe says).
    fn check_range(&self, stage: &StageInst, i: usize, values: &[f64], count: f64) -> Result<()> {
        let def = &self.program.defs[stage.def];
        let Some(p) = def.params.get(i) else {
            return Ok(());
        };
        let Some(r) = &p.range else { return Ok(()) };
        match values.iter().find(|x| !x.is_nan() && !r.contains(**x)) {
            Some(x) => Err(Error::user(format!(
                "at step {}, `{}` of `{}` follows a schedule to {}, outside its range {}",
                count + 1.0,
                p.name,
                def.name,
                crate::ir::fmt_num(*x),
                r.describe()
            ))),
            None => Ok(()),
        }
    }

    /// One update of `st`: `grads` in, `params` updated in place.
    pub fn step(
        &self,
        st: &mut StepState,
        params: &mut [Vec<f32>],
        grads: &[Vec<f32>],
    ) -> Result<()> {
        self.needs_no_model()?;
        self.step_with(st, params, grads, None)
    }

    /// An error when the recipe calls the model mid-step (a step without an oracle).
    pub fn needs_no_model(&self) -> Result<()> {
        match self.recipe.capabilities.first() {
            Some(c) => Err(Error::user(format!(
                "recipe `{}` needs {} from the model; run it with a model that provides it",
                self.recipe.name,
                c.describe()
            ))),
            None => Ok(()),
        }
    }

    /// One update, with the model's oracle for `grad_at` and `hvp`.
    pub fn step_with(
        &self,
        st: &mut StepState,
        params: &mut [Vec<f32>],
        grads: &[Vec<f32>],
        oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<()> {
        let Some((mut ps, grad)) = self.run_chain(st, params, grads, oracle)? else {
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
        &self,
        st: &mut StepState,
        params: &[Vec<f32>],
        grads: &[Vec<f32>],
        oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<Vec<Vec<f32>>> {
        Ok(match self.run_chain(st, params, grads, oracle)? {
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
        &self,
        st: &mut StepState,
        params: &[Vec<f32>],
        grads: &[Vec<f32>],
        mut oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<Option<(Vec<Vec<f32>>, Vec<Vec<f32>>)>> {
        self.check_tensors(
            &params.iter().map(Vec::len).collect::<Vec<_>>(),
            &grads.iter().map(Vec::len).collect::<Vec<_>>(),
        )?;
        st.take_loss(&self.recipe, oracle.as_deref_mut())?;
        let mut grad = grads.to_vec();
        let mut ps = params.to_vec();
        let mut skipped = false;
        for si in 0..self.recipe.stages.len() {
            let count = st.runs(si) as f64;
            if let Some(name) = self.builtin_name(si) {
                ps = if name == "sam" {
                    let o = oracle.as_mut().map(|o| &mut **o as &mut dyn Oracle);
                    self.run_sam(st, si, ps, &grad, o)?
                } else {
                    let o = oracle
                        .as_mut()
                        .ok_or("a builtin optimizer needs the model's loss closure")?;
                    self.run_lbfgs(st, si, count, ps, &mut **o)?
                };
                st.stage_ran(si);
                continue;
            }
            let body = self.stage_body(si)?;
            let hypers = self.hypers(st, si, count)?;
            let states = st.take_stage(si);
            let mut cx = StepCx {
                it: self,
                st,
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
                matrices: Default::default(),
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
            st.put_stage(si, states);
            st.stage_ran(si);
            if skip {
                skipped = true;
                break;
            }
        }
        st.step_done(skipped);
        Ok((!skipped).then_some((ps, grad)))
    }

    /// An error unless a step's parameters and gradients (their lengths) are the tensors
    /// this interpreter was bound to.
    pub(crate) fn check_tensors(&self, params: &[usize], grads: &[usize]) -> Result<()> {
        let want = &self.sizes;
        if params.len() != want.len() || grads.len() != want.len() {
            return Err(Error::user(format!(
                "the step got {} parameter and {} gradient tensors; the optimizer was built \
                 for {}",
                params.len(),
                grads.len(),
                want.len()
            ))
            .fix("pass the tensors it was built with, in the same order"));
        }
        for (i, ((&p, &g), &n)) in params.iter().zip(grads).zip(want).enumerate() {
            if p != n || g != n {
                let name = self.names.get(i).map_or("?", String::as_str);
                return Err(Error::user(format!(
                    "tensor #{i} (`{name}`) has {p} values and its gradient {g}; it had {n} \
                     when the optimizer was built"
                ))
                .fix("build a new optimizer when a model's shapes change"));
            }
        }
        Ok(())
    }

    /// The schedules' environment: the program and the metrics `st` observed.
    fn env<'a>(&'a self, st: &'a StepState) -> Env<'a> {
        Env {
            program: self.program,
            metrics: st.metrics(),
            replays: Some(st.replays()),
        }
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

    /// The current value in `st` of state `name` of the first stage defined by
    /// `def_name`.
    pub fn state<'s>(
        &self,
        st: &'s StepState,
        def_name: &str,
        name: &str,
    ) -> Option<&'s StateValue> {
        let si = self
            .recipe
            .stages
            .iter()
            .position(|s| self.program.defs[s.def].name == def_name)?;
        let body = self.stage_body(si).ok()?;
        let id = body.states.iter().position(|st| st.name == name)?;
        st.states().get(si)?.get(id)
    }

    /// The hyperparameter values a list-typed argument holds, for stage `si`.
    pub(crate) fn list_arg(
        &self,
        st: &StepState,
        args: &[HyperValue],
        i: usize,
        group: usize,
        count: f64,
    ) -> Result<Vec<f64>> {
        let v = args
            .get(i)
            .ok_or_else(|| Error::internal("missing argument"))?;
        hyper_list(v, group)?
            .iter()
            .map(|x| hyper_scalar(self.env(st), x, count, group))
            .collect()
    }
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
