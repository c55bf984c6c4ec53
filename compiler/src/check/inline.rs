//! Inlining `run` statements. A transform that wraps a chain (`cautious(optimizer:
//! adamw(...))`, `mars(optimizer: ...)`) becomes one stage whose body is its own
//! statements with the chain's stage bodies spliced in where it says `run`: every back
//! end then sees, fuses and checkpoints a plain stage, and the wrapper costs no pass of
//! its own. Statements of a body already run one after another over every tensor, so the
//! spliced body computes what the stages would in sequence; the wrapped stages share the
//! wrapper's count, which is theirs too, since they run exactly when it does.

use super::recipe::{check_stage_order, expand};
use super::Checker;
use crate::ast::{ScalarType, TypeExpr};
use crate::diagnostic::Diagnostic;
use crate::ir::{
    Body, Def, DefBody, DefId, Expr, HyperExpr, HyperParam, HyperValue, Program, StageInst,
    StateDecl, Stmt,
};
use crate::source::Span;

/// Where one body's arena, states and locals landed in the spliced body, and where its
/// hyperparameters went among the merged definition's parameters.
struct Placed {
    exprs: usize,
    states: usize,
    locals: usize,
    hypers: Vec<Option<usize>>,
}

struct Merge {
    body: Body,
    params: Vec<HyperParam>,
    args: Vec<HyperValue>,
    /// The names of the stages spliced in so far.
    spliced: Vec<String>,
}

impl Merge {
    /// Copies `src`'s arena, states and locals into the merged body; `prefix` keeps state
    /// and local names apart (checkpoints name states).
    fn place(
        &mut self,
        src: &Body,
        hypers: Vec<Option<usize>>,
        prefix: &str,
    ) -> Result<Placed, String> {
        let at = Placed {
            exprs: self.body.exprs.len(),
            states: self.body.states.len(),
            locals: self.body.locals.len(),
            hypers,
        };
        for (i, e) in src.exprs.iter().enumerate() {
            let e = remap(e, &at)?;
            self.body.push(e, src.types[i], src.spans[i]);
        }
        for s in &src.states {
            self.body.states.push(StateDecl {
                name: format!("{prefix}{}", s.name),
                extent: s.extent,
                shape: s.shape,
                init: s.init + at.exprs,
                span: s.span,
            });
        }
        for l in &src.locals {
            self.body.locals.push(format!("{prefix}{l}"));
        }
        if let Some(e) = src.eval {
            if self.body.eval.is_some() {
                return Err(
                    "two of the stages it joins have an evaluation view (`eval param`)".into(),
                );
            }
            self.body.eval = Some(e + at.exprs);
        }
        Ok(at)
    }

    /// Appends `stmts` (of a body placed at `at`), splicing chains in at `run`.
    fn statements(
        &mut self,
        program: &Program,
        stmts: &[Stmt],
        at: &Placed,
        chains: &[(usize, Vec<StageInst>)],
    ) -> Result<(), String> {
        for (k, s) in stmts.iter().enumerate() {
            let stmt = match s {
                Stmt::Let(l, e) => Stmt::Let(l + at.locals, e + at.exprs),
                Stmt::SetState(id, e) => Stmt::SetState(id + at.states, e + at.exprs),
                Stmt::SetGrad(e) => Stmt::SetGrad(e + at.exprs),
                Stmt::SetParam(e) => Stmt::SetParam(e + at.exprs),
                Stmt::Skip(e) => Stmt::Skip(e + at.exprs),
                Stmt::Run(i) => {
                    let stages = chains
                        .iter()
                        .find(|(pi, _)| pi == i)
                        .map(|(_, st)| st.as_slice())
                        .ok_or("a `run` of a chain that was not given")?;
                    let last = k + 1 == stmts.len();
                    self.splice(program, stages, last)?;
                    continue;
                }
            };
            self.body.stmts.push(stmt);
        }
        Ok(())
    }

    fn splice(
        &mut self,
        program: &Program,
        stages: &[StageInst],
        last: bool,
    ) -> Result<(), String> {
        for s in stages {
            let def = &program.defs[s.def];
            let DefBody::Stage(body) = &def.body else {
                return Err(format!(
                    "`{}` runs in the runtime, outside the fused step, so nothing can wrap it",
                    def.name
                ));
            };
            if !last && body.stmts.iter().any(|s| matches!(s, Stmt::SetParam(_))) {
                return Err(format!(
                    "`{}` assigns `param` itself, so the wrapper's statements after `run` would see no update",
                    def.name
                ));
            }
            let hypers = (0..def.params.len())
                .map(|i| Some(self.params.len() + i))
                .collect();
            self.params.extend(def.params.iter().cloned());
            self.args.extend(s.args.iter().cloned());
            // Checkpoints name states, so a stage wrapped twice gets a numbered prefix.
            let seen = self.spliced.iter().filter(|n| **n == def.name).count();
            self.spliced.push(def.name.clone());
            let prefix = match seen {
                0 => format!("{}.", def.name),
                k => format!("{}#{}.", def.name, k + 1),
            };
            let at = self.place(body, hypers, &prefix)?;
            self.statements(program, &body.stmts, &at, &[])?;
        }
        Ok(())
    }
}

/// Expands a wrapper's call: its chains are flattened (checked as a recipe's chain is),
/// then spliced into one stage, which is expanded as the stage it now is.
pub(super) fn expand_wrapper(
    cx: &mut Checker,
    def: DefId,
    args: &[HyperValue],
    span: Span,
    depth: usize,
    out: &mut Vec<StageInst>,
) -> bool {
    let mut ok = true;
    let mut chains = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let HyperValue::Chain(calls) = a else {
            continue;
        };
        let mut inner = Vec::new();
        for c in calls {
            ok &= expand(cx, c.def, c.args.clone(), c.span, depth + 1, &mut inner);
        }
        ok &= check_stage_order(cx, &inner);
        chains.push((i, inner));
    }
    if !ok {
        return false;
    }
    match inline_runs(&mut cx.program, def, args, &chains, span) {
        Ok(stage) => expand(cx, stage.def, stage.args, span, depth, out),
        Err(msg) => {
            let name = &cx.program.defs[def].name;
            cx.diags.push(
                Diagnostic::error("E0148", span, format!("`{name}` cannot wrap these stages: {msg}"))
                    .with_label("in this call")
                    .with_help("wrap an optimizer whose stages add to `grad`, such as `adamw(...)` or `lion(...)`"),
            );
            false
        }
    }
}

/// The stage `def(args)` with the chains it runs (`chains`: the chain parameter's index
/// and its flattened stages) spliced into its body: a new definition in `program`, and the
/// stage instance that calls it.
fn inline_runs(
    program: &mut Program,
    def: DefId,
    args: &[HyperValue],
    chains: &[(usize, Vec<StageInst>)],
    span: Span,
) -> Result<StageInst, String> {
    let outer = program.defs[def].clone();
    let DefBody::Stage(body) = &outer.body else {
        return Err("only a transform's body can `run` a chain".into());
    };
    let mut m = Merge {
        body: Body::default(),
        params: Vec::new(),
        args: Vec::new(),
        spliced: Vec::new(),
    };
    let mut hypers = Vec::new();
    for (p, a) in outer.params.iter().zip(args) {
        if p.ty == TypeExpr::Scalar(ScalarType::Chain) {
            hypers.push(None);
        } else {
            hypers.push(Some(m.params.len()));
            m.params.push(p.clone());
            m.args.push(a.clone());
        }
    }
    let at = m.place(body, hypers, "")?;
    m.statements(program, &body.stmts, &at, chains)?;
    // The wrapper's name: its states read `cautious.scale_by_adam.mu`.
    program.defs.push(Def {
        name: outer.name.clone(),
        module: outer.module.clone(),
        kind: outer.kind,
        params: m.params,
        requires: Vec::new(),
        body: DefBody::Stage(m.body),
        span: outer.span,
    });
    Ok(StageInst {
        def: program.defs.len() - 1,
        args: m.args,
        span,
    })
}

fn hyper(at: &Placed, i: usize) -> Result<usize, String> {
    at.hypers
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| "a chain parameter read as a number".to_string())
}

fn remap_hyper_expr(h: &HyperExpr, at: &Placed) -> Result<HyperExpr, String> {
    let all = |xs: &[HyperExpr]| {
        xs.iter()
            .map(|x| remap_hyper_expr(x, at))
            .collect::<Result<Vec<_>, _>>()
    };
    let one = |x: &HyperExpr| remap_hyper_expr(x, at).map(Box::new);
    Ok(match h {
        HyperExpr::Value(v) => HyperExpr::Value(v.clone()),
        HyperExpr::Param(i) => HyperExpr::Param(hyper(at, *i)?),
        HyperExpr::Unary(op, a) => HyperExpr::Unary(*op, one(a)?),
        HyperExpr::Binary(op, a, b) => HyperExpr::Binary(*op, one(a)?, one(b)?),
        HyperExpr::Call(d, xs) => HyperExpr::Call(*d, all(xs)?),
        HyperExpr::If(c, a, b) => HyperExpr::If(one(c)?, one(a)?, one(b)?),
        HyperExpr::List(xs) => HyperExpr::List(all(xs)?),
        HyperExpr::Map(kv) => HyperExpr::Map(
            kv.iter()
                .map(|(k, v)| Ok((remap_hyper_expr(k, at)?, remap_hyper_expr(v, at)?)))
                .collect::<Result<Vec<_>, String>>()?,
        ),
        HyperExpr::PerGroup(xs) => HyperExpr::PerGroup(all(xs)?),
        HyperExpr::Chain(_) => return Err("a chain inside a body expression".into()),
    })
}

/// `e` with its operands, states, locals and hyperparameters moved to where `at` says.
fn remap(e: &Expr, at: &Placed) -> Result<Expr, String> {
    let x = |id: &usize| id + at.exprs;
    let xs = |ids: &[usize]| ids.iter().map(x).collect::<Vec<_>>();
    Ok(match e {
        Expr::Hyper(i) => Expr::Hyper(hyper(at, *i)?),
        Expr::HyperIndex(i, k) => Expr::HyperIndex(hyper(at, *i)?, *k),
        Expr::State(s) => Expr::State(s + at.states),
        Expr::Local(l) => Expr::Local(l + at.locals),
        Expr::Unary(op, a) => Expr::Unary(*op, x(a)),
        Expr::Binary(op, a, b) => Expr::Binary(*op, x(a), x(b)),
        Expr::Select(c, a, b) => Expr::Select(x(c), x(a), x(b)),
        Expr::Call(f, args) => Expr::Call(*f, xs(args)),
        Expr::Reduce(op, scope, a) => Expr::Reduce(*op, *scope, x(a)),
        Expr::ScheduleAt(i, a) => Expr::ScheduleAt(hyper(at, *i)?, x(a)),
        Expr::StrEq(i, s) => Expr::StrEq(hyper(at, *i)?, s.clone()),
        Expr::List(op, i, args) => Expr::List(*op, hyper(at, *i)?, xs(args)),
        Expr::GradAt(a) => Expr::GradAt(x(a)),
        Expr::Hvp(a) => Expr::Hvp(x(a)),
        Expr::Mat(op, args) => Expr::Mat(*op, xs(args)),
        Expr::Fold {
            init,
            count,
            var,
            step,
        } => Expr::Fold {
            init: x(init),
            count: x(count),
            var: var + at.locals,
            step: x(step),
        },
        Expr::SchedCall(d, hs, a) => Expr::SchedCall(
            *d,
            hs.iter()
                .map(|h| remap_hyper_expr(h, at))
                .collect::<Result<_, _>>()?,
            x(a),
        ),
        Expr::Const(_)
        | Expr::Grad
        | Expr::Param
        | Expr::Step
        | Expr::Count
        | Expr::Metric
        | Expr::Rademacher
        | Expr::Loss
        | Expr::Shape(_) => e.clone(),
    })
}
