//! The manifest of `anneal export --target wgsl`: everything besides the shaders that a
//! program needs to run the exported step with its own wgpu or WebGPU code. Entry
//! point: `manifest`. `spec/export-wgsl.md` documents the format; `examples/wgsl_host`
//! is a host that reads nothing else.
//!
//! The shaders do the per-element work; the host does what is per tensor or per step, in
//! f64, as every anneal back end does: it evaluates the `host` expressions (learning rate,
//! bias corrections, clip factors from reductions) to fill each pass's scalar slots,
//! combines reduction partials, and updates scalar states. The expressions are a flat
//! list in dependency order, each node naming earlier ones by index.
//!
//! Scope, as for the C export: one parameter group, flat tensors, no model calls
//! mid-step, no noise, no per-row/column statistics. Anything else is refused with the
//! reason.

use crate::error::{Error, Result};
use serde_json::{json, Value};

use super::{buf_name, shaders, Shader, MAX_GROUPS_X, SCALARS_HEADER, WORKGROUP};
use crate::ast::{BinOp, UnOp};
use crate::interp::str_value;
use crate::ir::{
    Body, DefBody, Expr, ExprId, Extent, HyperValue, Program, Recipe, Scope, ShapeInfo,
};
use crate::kernel::{Buf, Host, Kernel, PassKind};

/// The manifest's format name; a host checks it before reading anything else.
pub const FORMAT: &str = "anneal-wgsl/1";

/// A number as JSON: non-finite values as the strings "inf", "-inf", "nan".
fn number(x: f64) -> Value {
    if x.is_nan() {
        json!("nan")
    } else if x.is_infinite() {
        json!(if x > 0.0 { "inf" } else { "-inf" })
    } else {
        json!(x)
    }
}

fn binop(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "add",
        BinOp::Sub => "sub",
        BinOp::Mul => "mul",
        BinOp::Div => "div",
        BinOp::Pow => "pow",
        BinOp::And => "and",
        BinOp::Or => "or",
        BinOp::Cmp(c) => match c {
            crate::ast::CmpOp::Lt => "lt",
            crate::ast::CmpOp::Le => "le",
            crate::ast::CmpOp::Gt => "gt",
            crate::ast::CmpOp::Ge => "ge",
            crate::ast::CmpOp::Eq => "eq",
            crate::ast::CmpOp::Ne => "ne",
        },
    }
}

fn unop(op: UnOp) -> &'static str {
    match op {
        UnOp::Neg => "neg",
        UnOp::Not => "not",
    }
}

struct Cx<'a> {
    program: &'a Program,
    recipe: &'a Recipe,
}

impl Cx<'_> {
    fn body(&self, stage: usize) -> Result<&Body> {
        match &self.program.defs[self.recipe.stages[stage].def].body {
            DefBody::Stage(b) => Ok(b),
            _ => Err("a builtin optimizer is runtime code, not an exportable step".into()),
        }
    }

    fn def_name(&self, stage: usize) -> &str {
        &self.program.defs[self.recipe.stages[stage].def].name
    }

    fn state_name(&self, stage: usize, state: usize) -> String {
        let name = self
            .body(stage)
            .map(|b| b.states[state].name.clone())
            .unwrap_or_default();
        format!("{}.{name}", self.def_name(stage))
    }

    fn buffer(&self, b: Buf) -> String {
        match b {
            Buf::State { stage, state } => format!("{stage}:{}", self.state_name(stage, state)),
            other => buf_name(other),
        }
    }

    fn str_eq(&self, stage: usize, index: usize, lit: &str) -> Result<Value> {
        let v = self.recipe.stages[stage]
            .args
            .get(index)
            .ok_or_else(|| Error::internal("missing argument"))?;
        Ok(number(f64::from(u8::from(str_value(v, 0)? == lit))))
    }

    /// A state's initial value as an expression list of its own (it may read `param`).
    fn init(&self, stage: usize, body: &Body, root: ExprId) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut ids = vec![usize::MAX; body.exprs.len()];
        self.init_node(stage, body, root, &mut out, &mut ids)?;
        Ok(out)
    }

    fn init_node(
        &self,
        stage: usize,
        body: &Body,
        e: ExprId,
        out: &mut Vec<Value>,
        ids: &mut Vec<usize>,
    ) -> Result<usize> {
        if ids[e] != usize::MAX {
            return Ok(ids[e]);
        }
        let mut sub = |x: ExprId, out: &mut Vec<Value>| self.init_node(stage, body, x, out, ids);
        let node = match &body.exprs[e] {
            Expr::Const(c) => json!({"op": "const", "value": number(*c)}),
            Expr::Hyper(i) => json!({"op": "hyper", "stage": stage, "index": i}),
            Expr::HyperIndex(i, k) => {
                json!({"op": "hyper", "stage": stage, "index": i, "element": k})
            }
            Expr::Param => json!({"op": "param"}),
            Expr::Shape(ShapeInfo::Numel) => json!({"op": "numel"}),
            Expr::StrEq(i, lit) => json!({"op": "const", "value": self.str_eq(stage, *i, lit)?}),
            Expr::Unary(op, a) => json!({"op": unop(*op), "args": [sub(*a, out)?]}),
            Expr::Binary(op, a, b) => {
                let (a, b) = (sub(*a, out)?, sub(*b, out)?);
                json!({"op": binop(*op), "args": [a, b]})
            }
            Expr::Select(c, a, b) => {
                let (c, a, b) = (sub(*c, out)?, sub(*a, out)?, sub(*b, out)?);
                json!({"op": "select", "args": [c, a, b]})
            }
            Expr::Call(f, xs) => {
                let args = xs
                    .iter()
                    .map(|x| sub(*x, out))
                    .collect::<Result<Vec<_>, _>>()?;
                json!({"op": f.name(), "args": args})
            }
            _ => {
                return Err(Error::user(format!(
                    "a state of `{}` starts from a value the exported step cannot describe",
                    self.def_name(stage)
                )))
            }
        };
        out.push(node);
        ids[e] = out.len() - 1;
        Ok(out.len() - 1)
    }
}

/// A host value as a manifest node.
fn host_node(cx: &Cx, h: &Host) -> Result<Value> {
    Ok(match h {
        Host::Const(c) => json!({"op": "const", "value": number(*c)}),
        Host::Hyper { stage, index } => json!({"op": "hyper", "stage": stage, "index": index}),
        Host::HyperIndex { stage, index, k } => {
            json!({"op": "hyper", "stage": stage, "index": index, "element": k})
        }
        Host::StrEq { stage, index, lit } => {
            json!({"op": "const", "value": cx.str_eq(*stage, *index, lit)?})
        }
        Host::Step { stage } => json!({"op": "step", "stage": stage}),
        Host::Loss => {
            return Err(
                "the recipe reads the loss (`loss`), which exported steps are not given".into(),
            )
        }
        Host::Shape(ShapeInfo::Numel) => json!({"op": "numel"}),
        Host::Shape(_) => {
            return Err(
                "the recipe reads a tensor's rank or factored dimension, and exported \
                        steps see flat tensors"
                    .into(),
            )
        }
        Host::State { stage, state } => json!({"op": "state", "stage": stage, "state": state}),
        Host::Unary(op, a) => json!({"op": unop(*op), "args": [a]}),
        Host::Binary(op, a, b) => json!({"op": binop(*op), "args": [a, b]}),
        Host::Select(c, a, b) => json!({"op": "select", "args": [c, a, b]}),
        Host::Call(f, xs) => json!({"op": f.name(), "args": xs}),
        Host::Reduce(r) => json!({"op": "reduce", "reduction": r}),
        Host::SliceState { .. } | Host::SliceReduce(_) | Host::HostReduce { .. } => {
            return Err(
                "the step keeps per-row or per-column values (Adafactor, SM3), which \
                        the exported step does not handle yet"
                    .into(),
            )
        }
    })
}

/// The manifest for `kernel`'s shaders, written as `pass{i}.wgsl` beside it.
pub fn manifest(program: &Program, recipe: &Recipe, kernel: &Kernel) -> Result<Value> {
    super::super::exportable(recipe, kernel)?;
    if !kernel.slice_reds.is_empty() || kernel.host_slice.iter().any(Option::is_some) {
        return Err(
            "the step keeps per-row or per-column values (Adafactor, SM3), which the \
                    exported step does not handle yet"
                .into(),
        );
    }
    let cx = Cx { program, recipe };
    let shaders: Vec<Shader> = shaders(kernel)?;
    let host = kernel
        .host
        .iter()
        .map(|h| host_node(&cx, h))
        .collect::<Result<Vec<_>, _>>()?;
    // Hyperparameters: the recipe's values; schedules at their first step.
    let mut hypers = Vec::new();
    for (si, stage) in recipe.stages.iter().enumerate() {
        let def = &program.defs[stage.def];
        for (i, (p, v)) in def.params.iter().zip(&stage.args).enumerate() {
            // One group: a per-group value is that group's.
            let v = match v {
                HyperValue::PerGroup(vs) => vs.first().unwrap_or(v),
                other => other,
            };
            let (value, schedule) = match v {
                HyperValue::Schedule(s) => (
                    json!(number(crate::interp::eval_sched(program, s, 0.0, 0)?)),
                    true,
                ),
                HyperValue::List(xs) => (
                    Value::Array(
                        xs.iter()
                            .map(|x| match x {
                                HyperValue::Schedule(s) => {
                                    crate::interp::eval_sched(program, s, 0.0, 0).map(number)
                                }
                                other => Ok(other.as_f64().map(number).unwrap_or(Value::Null)),
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                    v.varies(),
                ),
                other => (other.as_f64().map(number).unwrap_or(Value::Null), false),
            };
            hypers.push(json!({
                "stage": si, "index": i, "optimizer": def.name, "name": p.name,
                "value": value, "schedule": schedule,
            }));
        }
    }
    // States: element ones are buffers; scalar and per-tensor ones live on the host.
    let mut states = Vec::new();
    for si in 0..recipe.stages.len() {
        let body = cx.body(si)?;
        for (id, s) in body.states.iter().enumerate() {
            let update = kernel
                .host_states
                .iter()
                .find(|(st, state, _)| *st == si && *state == id)
                .map(|(_, _, h)| *h);
            let extent = match s.extent {
                Extent::Element => "element",
                // One group: a per-group state is one value.
                Extent::Uniform | Extent::Group => "scalar",
                Extent::Tensor => "tensor",
                _ => {
                    return Err("the step keeps per-row or per-column state, which the \
                                exported step does not handle yet"
                        .into())
                }
            };
            states.push(json!({
                "stage": si, "state": id, "name": cx.state_name(si, id), "extent": extent,
                "buffer": (s.extent == Extent::Element).then(|| cx.buffer(Buf::State { stage: si, state: id })),
                "init": cx.init(si, body, s.init)?,
                "update": update,
            }));
        }
    }
    let reductions: Vec<Value> = kernel
        .reductions
        .iter()
        .enumerate()
        .map(|(r, red)| {
            let (pass, index) = kernel
                .passes
                .iter()
                .enumerate()
                .find_map(|(p, pass)| pass.reductions.iter().position(|&x| x == r).map(|j| (p, j)))
                .unwrap_or((usize::MAX, 0));
            let scope = match red.scope {
                Scope::Tensor => "tensor",
                _ => "all",
            };
            json!({"op": red.op.name(), "scope": scope, "pass": pass, "index": index})
        })
        .collect();
    let passes: Vec<Value> = shaders
        .iter()
        .map(|s| {
            let pass = &kernel.passes[s.pass];
            let mut bindings = vec![json!({"binding": 0, "role": "scalars"})];
            for (i, b) in s.bufs.iter().enumerate() {
                bindings.push(json!({
                    "binding": i + 1,
                    "role": "buffer",
                    "buffer": cx.buffer(*b),
                    "access": if s.writes[i] { "read_write" } else { "read" },
                }));
            }
            if !s.reductions.is_empty() {
                bindings.push(json!({
                    "binding": s.partials_binding(), "role": "partials", "access": "read_write",
                }));
            }
            json!({
                "file": format!("pass{}.wgsl", s.pass),
                "kind": match s.kind {
                    PassKind::Reduce => "reduce",
                    PassKind::SkipMap => "skip_map",
                    _ => "map",
                },
                "guarded": pass.guarded,
                "bindings": bindings,
                "slots": pass.scalars,
                "uniform_bytes": s.uniform_bytes(),
                "elements_per_workgroup": s.per_group,
                "reductions": pass.reductions,
            })
        })
        .collect();
    let mut buffers = vec![cx.buffer(Buf::Param), cx.buffer(Buf::Grad)];
    for s in &states {
        if let Some(b) = s["buffer"].as_str() {
            buffers.push(b.to_string());
        }
    }
    Ok(json!({
        "format": FORMAT,
        "recipe": recipe.name,
        "workgroup_size": WORKGROUP,
        "element_type": "f32",
        "dispatch": {
            "workgroups": "max(1, ceil(n / elements_per_workgroup)), elements_per_workgroup from the pass",
            "x": "min(workgroups, max_groups_x)",
            "y": "ceil(workgroups / x)",
            "max_groups_x": MAX_GROUPS_X,
            "per": "tensor: one dispatch per pass per tensor, each with its own uniform block and bindings",
        },
        "uniform": {
            "n": {"offset": 0, "type": "u32", "meaning": "the tensor's element count"},
            "groups_x": {"offset": 4, "type": "u32", "meaning": "the dispatch's x workgroups"},
            "slots_offset": SCALARS_HEADER,
            "slot_type": "f32",
            "meaning": "slot k holds host[passes[p].slots[k]] for the tensor, rounded to f32",
        },
        "partials": {
            "layout": "[workgroup][reduction of the pass], f32",
            "combine": "in workgroup order, tensor by tensor, in f64: sum for sum/mean/norm (norm: sqrt at the end, mean: divide by the elements), max, min; all_finite: finite when every partial is 0",
        },
        "buffers": buffers,
        "hypers": hypers,
        "states": states,
        "stages": kernel.stages,
        "skips": kernel.skips.iter().map(|(stage, h)| json!({"stage": stage, "condition": h})).collect::<Vec<_>>(),
        "reductions": reductions,
        "host": host,
        "passes": passes,
        "step": [
            "a `step` node of stage s reads how many updates stage s has made, plus 1",
            "run every reduce pass in order: per tensor evaluate its slots, write the uniform block, dispatch, read the partials back; combine each reduction (scope tensor: per tensor; all: over every tensor)",
            "skips, in order: the first whose condition (host, tensor 0) is nonzero stops the step after its stage: active = that stage + 1; none fires: active = stages",
            "run the map pass when no skip fired, else the skip_map pass; a guarded pass's last slot, after `slots`, is stages + 1 for map and active for skip_map",
            "then each state of a stage below active with an `update` takes host[update] (per tensor for extent tensor), and each stage below active counts one more update",
        ],
    }))
}
