//! The C header of `anneal export --target c`: declarations of the compiled passes (the
//! object file's symbols), the hyperparameter and state structs, and the step driver as
//! `static inline` C: the host arithmetic of `kernel::exec` (per tensor, in double),
//! the chunk loop and the fixed-order combination of partial results, so a C program gets
//! the same numbers as `anneal` on the Cranelift back end. Entry point: `header`.
//!
//! Scope: one parameter group; tensors are flat (rank 1); state initial values built from
//! constants, hyperparameters and `param`. Anything else is refused with the reason.

use crate::error::{Error, Result};
use std::fmt::Write as _;

use crate::ast::{BinOp, UnOp};
use crate::interp::str_value;
use crate::ir::{
    Body, Builtin, DefBody, Expr, ExprId, Extent, HyperValue, Program, Recipe, ShapeInfo,
};
use crate::kernel::exec::CHUNK;
use crate::kernel::legalize::{expand, Prim, Unary};
use crate::kernel::{Buf, Host, Kernel, PassKind};

/// A hyperparameter's value at the first step (a schedule's at count 0).
fn value_at_start(program: &Program, v: &HyperValue) -> Result<f64> {
    match v {
        HyperValue::Schedule(s) => crate::interp::eval_sched(program, s, 0.0, 0),
        other => other
            .as_f64()
            .ok_or_else(|| Error::user("a hyperparameter the exported step cannot hold")),
    }
}

/// A C identifier made of the recipe name.
pub fn c_name(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

struct Cx<'a> {
    program: &'a Program,
    recipe: &'a Recipe,
    p: String,
}

impl Cx<'_> {
    fn body(&self, stage: usize) -> Option<&Body> {
        match &self.program.defs[self.recipe.stages[stage].def].body {
            DefBody::Stage(b) => Some(b),
            _ => None,
        }
    }

    fn hyper_field(&self, stage: usize, index: usize) -> String {
        let def = &self.program.defs[self.recipe.stages[stage].def];
        let name = &def.params[index].name;
        // A wrapper's stage holds its own parameters and its optimizer's, which may share
        // a name (mars's `b1` and Adam's): later ones are numbered.
        match def.params[..index]
            .iter()
            .filter(|p| p.name == *name)
            .count()
        {
            0 => format!("s{stage}_{}", c_name(name)),
            k => format!("s{stage}_{}_{}", c_name(name), k + 1),
        }
    }

    fn state_field(&self, stage: usize, state: usize) -> String {
        let name = self
            .body(stage)
            .map(|b| b.states[state].name.as_str())
            .unwrap_or("state");
        format!("s{stage}_{}", c_name(name))
    }
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "NAN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "INFINITY" } else { "(-INFINITY)" }.into()
    } else {
        format!("{x:?}")
    }
}

/// A builtin applied to C operands: a call of its helper (`pre` is `{prefix}_d` for
/// double, `{prefix}_f` for float), which `helpers` defines.
fn call(b: Builtin, a: &[String], pre: &str) -> String {
    format!("{pre}_{}({})", b.name(), a.join(", "))
}

/// The helper functions `text` calls: each builtin, in double and float, as the
/// straight-line primitive code `kernel::legalize` expands it to (the interpreter's
/// formulas, operation for operation).
fn helpers(text: &str, p: &str) -> String {
    let mut out = String::new();
    for b in crate::ir::builtins() {
        for (ty, f) in [("double", "d"), ("float", "f")] {
            let name = format!("{p}_{f}_{}", b.name());
            if !text.contains(&format!("{name}(")) {
                continue;
            }
            let suffix = if f == "f" { "f" } else { "" };
            let args: Vec<String> = (0..b.arity()).map(|i| format!("a{i}")).collect();
            let mut body = String::new();
            let mut n = 0;
            let result = expand(b, &args, &mut |prim| {
                let (t, e) = c_prim(&prim, ty, suffix);
                let v = format!("t{n}");
                n += 1;
                let _ = write!(body, " {t} {v} = {e};");
                v
            });
            let params: Vec<String> = args.iter().map(|a| format!("{ty} {a}")).collect();
            let _ = writeln!(
                out,
                "static inline {ty} {name}({}) {{{body} return {result}; }}",
                params.join(", ")
            );
        }
    }
    out
}

/// One primitive op as C: its type (masks are `int`) and expression.
fn c_prim(p: &Prim<String>, ty: &'static str, f: &str) -> (&'static str, String) {
    match p {
        // Typed constants: float arithmetic must not widen to double and round twice.
        Prim::Const(c) => (ty, format!("({ty}){}", num(*c))),
        Prim::Unary(u, x) => (
            ty,
            match u {
                Unary::Neg => format!("-{x}"),
                Unary::Sqrt => format!("sqrt{f}({x})"),
                Unary::Abs => format!("fabs{f}({x})"),
                Unary::Floor => format!("floor{f}({x})"),
                Unary::Ceil => format!("ceil{f}({x})"),
            },
        ),
        Prim::Binary(b, x, y) => (ty, format!("{x} {} {y}", b.symbol())),
        Prim::Libm(l, x, y) => {
            // The C names are the float ones (`expf`); the double ones drop the `f`.
            let name = l.c_name().trim_end_matches('f');
            let args = match y {
                Some(y) => format!("{x}, {y}"),
                None => x.clone(),
            };
            (ty, format!("{name}{f}({args})"))
        }
        // C's `!=` holds for a NaN operand, as the op means; the others are ordered.
        Prim::Compare(c, x, y) => ("int", format!("{x} {} {y}", c.symbol())),
        Prim::IsNan(x) => ("int", format!("isnan({x})")),
        Prim::IsFinite(x) => ("int", format!("isfinite({x})")),
        Prim::And(x, y) => ("int", format!("{x} && {y}")),
        Prim::Or(x, y) => ("int", format!("{x} || {y}")),
        Prim::Select(m, x, y) => (ty, format!("{m} ? {x} : {y}")),
    }
}

fn binary(op: BinOp, x: &str, y: &str, f: &str) -> String {
    match op {
        BinOp::Add => format!("({x} + {y})"),
        BinOp::Sub => format!("({x} - {y})"),
        BinOp::Mul => format!("({x} * {y})"),
        BinOp::Div => format!("({x} / {y})"),
        BinOp::Pow => format!("pow{f}({x}, {y})"),
        BinOp::And => format!("(({x}) != 0 && ({y}) != 0 ? 1.0 : 0.0)"),
        BinOp::Or => format!("(({x}) != 0 || ({y}) != 0 ? 1.0 : 0.0)"),
        // The language's comparison symbols are C's.
        BinOp::Cmp(c) => format!("(({x}) {} ({y}) ? 1.0 : 0.0)", c.symbol()),
    }
}

/// One host value as a C expression over `hp`, `st`, `t`, `numel`, `red`, `nt` and the
/// host values before it (`h[i]`).
fn host_expr(cx: &Cx, h: &Host) -> Result<String> {
    let p = &cx.p;
    Ok(match h {
        Host::Const(c) => num(*c),
        Host::Hyper { stage, index } => format!("hp->{}", cx.hyper_field(*stage, *index)),
        Host::HyperIndex { stage, index, k } => {
            format!("hp->{}[{k}]", cx.hyper_field(*stage, *index))
        }
        Host::StrEq { stage, index, lit } => {
            let v = cx.recipe.stages[*stage]
                .args
                .get(*index)
                .ok_or_else(|| Error::internal("missing argument"))?;
            num(f64::from(u8::from(str_value(v, 0)? == lit)))
        }
        Host::Step { stage } => format!("(double)(st->runs[{stage}] + 1)"),
        Host::Loss => {
            return Err(
                "the recipe reads the loss (`loss`), which exported steps are not given".into(),
            )
        }
        Host::Shape(ShapeInfo::Numel) => "(double)numel".into(),
        Host::Shape(_) => {
            return Err(
                "the recipe reads a tensor's rank or factored dimension, and exported \
                        steps see flat tensors"
                    .into(),
            )
        }
        Host::State { stage, state } => {
            let body = cx
                .body(*stage)
                .ok_or_else(|| Error::internal("not a stage"))?;
            let f = cx.state_field(*stage, *state);
            match body.states[*state].extent {
                Extent::Uniform => format!("st->{f}"),
                _ => format!("st->{f}[t]"),
            }
        }
        Host::Unary(UnOp::Neg, a) => format!("(-h[{a}])"),
        Host::Unary(UnOp::Not, a) => format!("(h[{a}] == 0.0 ? 1.0 : 0.0)"),
        Host::Binary(op, a, b) => binary(*op, &format!("h[{a}]"), &format!("h[{b}]"), ""),
        Host::Select(c, a, b) => format!("(h[{c}] != 0.0 ? h[{a}] : h[{b}])"),
        Host::Call(f, xs) => {
            let a: Vec<String> = xs.iter().map(|x| format!("h[{x}]")).collect();
            call(*f, &a, &format!("{p}_d"))
        }
        Host::Reduce(r) => format!("red[{r} * (nt + 1) + t]"),
        Host::SliceState { .. } | Host::SliceReduce(_) | Host::HostReduce { .. } => {
            return Err(
                "the step keeps per-row or per-column values (Adafactor, SM3), which \
                        the exported step does not handle yet"
                    .into(),
            )
        }
    })
}

/// A state's initial value per element, as C: (code, reads `param`). Interpreter
/// semantics: coarse values in double, rounded to float when stored.
fn init_expr(cx: &Cx, stage: usize, body: &Body, e: ExprId) -> Result<(String, bool)> {
    let p = &cx.p;
    let sub = |x: &ExprId| init_expr(cx, stage, body, *x);
    Ok(match &body.exprs[e] {
        Expr::Const(c) => (num(*c), false),
        Expr::Hyper(i) => (format!("hp->{}", cx.hyper_field(stage, *i)), false),
        Expr::HyperIndex(i, k) => (format!("hp->{}[{k}]", cx.hyper_field(stage, *i)), false),
        Expr::Param => ("p".into(), true),
        Expr::Shape(ShapeInfo::Numel) => ("(double)numel".into(), false),
        Expr::Unary(UnOp::Neg, a) => {
            let (x, el) = sub(a)?;
            (format!("(-{x})"), el)
        }
        Expr::Binary(op, a, b) => {
            let ((x, ex), (y, ey)) = (sub(a)?, sub(b)?);
            let el = ex || ey;
            let f = if el { "f" } else { "" };
            let (x, y) = if el {
                (format!("(float)({x})"), format!("(float)({y})"))
            } else {
                (x, y)
            };
            (binary(*op, &x, &y, f), el)
        }
        Expr::Select(c, a, b) => {
            let ((c, ec), (x, ex), (y, ey)) = (sub(c)?, sub(a)?, sub(b)?);
            (format!("(({c}) != 0 ? ({x}) : ({y}))"), ec || ex || ey)
        }
        Expr::StrEq(i, lit) => {
            let v = cx.recipe.stages[stage]
                .args
                .get(*i)
                .ok_or_else(|| Error::internal("missing argument"))?;
            (num(f64::from(u8::from(str_value(v, 0)? == lit))), false)
        }
        Expr::Call(b, xs) => {
            let parts = xs.iter().map(sub).collect::<Result<Vec<_>, _>>()?;
            let el = parts.iter().any(|(_, e)| *e);
            let a: Vec<String> = parts.into_iter().map(|(c, _)| c).collect();
            let pre = if el {
                format!("{p}_f")
            } else {
                format!("{p}_d")
            };
            (call(*b, &a, &pre), el)
        }
        _ => {
            return Err(Error::user(format!(
                "a state of `{}` starts from a value the exported step cannot compute",
                cx.program.defs[cx.recipe.stages[stage].def].name
            )))
        }
    })
}

/// The header for `kernel`, whose passes the object file defines as `{prefix}_pass{i}`.
pub fn header(program: &Program, recipe: &Recipe, kernel: &Kernel, prefix: &str) -> Result<String> {
    super::exportable(recipe, kernel)?;
    let cx = Cx {
        program,
        recipe,
        p: prefix.to_string(),
    };
    let p = prefix;
    let up = p.to_uppercase();
    let nst = recipe.stages.len();
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(
        w,
        "/* {p}.h — the fused update step of recipe `{}`, exported by anneal.\n *",
        recipe.name
    );
    let _ = writeln!(
        w,
        " * Link {p}.o and the C math library (-lm). To drive it:\n\
         *   {p}_hypers hp; {p}_default_hypers(&hp);    // the recipe's values\n\
         *   {p}_state st;  {p}_init(&st, &hp, n, numel, params);\n\
         *   each step: {p}_step(&st, &hp, n, numel, params, grads);\n\
         *   {p}_free(&st);\n\
         * `params[t]` and `grads[t]` point at tensor t's `numel[t]` floats; the step updates\n\
         * params in place (grads are read only). A schedule-valued hyperparameter holds its\n\
         * value at step 0 after {p}_default_hypers: set the field to the schedule's value\n\
         * before each step (`anneal schedule` prints them). Scalar arithmetic runs in\n\
         * double, per-element arithmetic in float, as on every anneal back end.\n *"
    );
    let _ = writeln!(w, " * Passes over memory:");
    for (i, pass) in kernel.passes.iter().enumerate() {
        let kind = if pass.kind == PassKind::SkipMap {
            "map on skipped steps"
        } else if pass.kind == PassKind::Map {
            "map"
        } else {
            "reduce"
        };
        let bufs: Vec<String> = pass
            .bufs
            .iter()
            .map(|b| match b {
                Buf::Param => "param".to_string(),
                Buf::Grad => "grad".to_string(),
                Buf::State { stage, state } => cx.state_field(*stage, *state),
                other => format!("{other:?}"),
            })
            .collect();
        let _ = writeln!(w, " *   {p}_pass{i}: {kind} over {}", bufs.join(", "));
    }
    let _ = writeln!(w, " */\n#ifndef {up}_H\n#define {up}_H\n");
    let _ = writeln!(
        w,
        "#include <math.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <stdlib.h>\n#include <string.h>\n"
    );
    let _ = writeln!(
        w,
        "#define {up}_CHUNK {CHUNK}u\n#define {up}_STAGES {nst}\n"
    );
    let _ = writeln!(
        w,
        "/* One pass over elements [start, end) of one tensor: its scalar slots, one pointer\n \
         * per buffer it touches, and one double per reduction it accumulates. */"
    );
    for i in 0..kernel.passes.len() {
        let _ = writeln!(
            w,
            "void {p}_pass{i}(const float *scalars, float *const *bufs, uint64_t start, uint64_t end, double *partials);"
        );
    }
    // Hyperparameters.
    let _ = writeln!(
        w,
        "\n/* The hyperparameters, one field per stage argument. */\ntypedef struct {{"
    );
    let mut defaults = String::new();
    for (si, stage) in recipe.stages.iter().enumerate() {
        let def = &program.defs[stage.def];
        for (i, (hp, v)) in def.params.iter().zip(&stage.args).enumerate() {
            let field = cx.hyper_field(si, i);
            let v = match v {
                HyperValue::PerGroup(vs) => vs.first().unwrap_or(v),
                other => other,
            };
            match v {
                HyperValue::List(items) => {
                    let _ = writeln!(
                        w,
                        "  double {field}[{}]; /* {}.{} */",
                        items.len().max(1),
                        def.name,
                        hp.name
                    );
                    for (k, it) in items.iter().enumerate() {
                        let x = value_at_start(program, it)?;
                        let _ = writeln!(defaults, "  hp->{field}[{k}] = {};", num(x));
                    }
                }
                HyperValue::Str(s) => {
                    let _ = writeln!(
                        w,
                        "  /* {}.{} = \"{s}\" (compiled in) */",
                        def.name, hp.name
                    );
                }
                HyperValue::Map(_) => {
                    let _ = writeln!(
                        w,
                        "  /* {}.{}: a map, read by schedules only */",
                        def.name, hp.name
                    );
                }
                other => {
                    let x = value_at_start(program, other)?;
                    let sched = other.varies();
                    let _ = writeln!(
                        w,
                        "  double {field}; /* {}.{}{} */",
                        def.name,
                        hp.name,
                        if sched {
                            ", a schedule: set it every step"
                        } else {
                            ""
                        }
                    );
                    let _ = writeln!(defaults, "  hp->{field} = {};", num(x));
                }
            }
        }
    }
    let _ = writeln!(w, "  int unused_;\n}} {p}_hypers;\n");
    // State.
    let _ = writeln!(w, "/* The optimizer state: element states hold one float array per tensor. */\ntypedef struct {{");
    let _ = writeln!(w, "  size_t n_tensors;\n  uint64_t runs[{}]; /* per stage: updates made */\n  int last_skipped;", nst.max(1));
    for si in 0..nst {
        let Some(body) = cx.body(si) else { continue };
        for (id, s) in body.states.iter().enumerate() {
            let f = cx.state_field(si, id);
            let _ = match s.extent {
                Extent::Element => writeln!(w, "  float **{f}; /* {} */", s.name),
                Extent::Uniform => writeln!(w, "  double {f}; /* {} */", s.name),
                _ => writeln!(w, "  double *{f}; /* {}: one per tensor */", s.name),
            };
        }
    }
    let _ = writeln!(w, "}} {p}_state;\n");
    // Helpers.
    let _ = writeln!(w, "{HELPERS_HERE}");
    let _ = writeln!(w, "static inline void {p}_default_hypers({p}_hypers *hp) {{\n  memset(hp, 0, sizeof *hp);\n{defaults}}}\n");
    // Init.
    let _ = writeln!(
        w,
        "/* Allocates and fills the state; 0 on success, -1 when out of memory. */\n\
         static inline int {p}_init({p}_state *st, const {p}_hypers *hp, size_t n, const size_t *numel, float *const *params) {{\n  \
         memset(st, 0, sizeof *st);\n  st->n_tensors = n;\n  (void)hp; (void)params; (void)numel;"
    );
    for si in 0..nst {
        let Some(body) = cx.body(si) else { continue };
        for (id, s) in body.states.iter().enumerate() {
            let f = cx.state_field(si, id);
            let (code, _) = init_expr(&cx, si, body, s.init)?;
            match s.extent {
                Extent::Element => {
                    let _ = writeln!(
                        w,
                        "  st->{f} = (float **)calloc(n ? n : 1, sizeof(float *));\n  if (!st->{f}) return -1;\n  \
                         for (size_t t = 0; t < n; t++) {{\n    size_t numel_t = numel[t];\n    \
                         st->{f}[t] = (float *)malloc((numel_t ? numel_t : 1) * sizeof(float));\n    if (!st->{f}[t]) return -1;\n    \
                         for (size_t i = 0; i < numel_t; i++) {{ float p = params[t][i]; (void)p; size_t numel = numel_t; (void)numel; st->{f}[t][i] = (float)({code}); }}\n  }}"
                    );
                }
                Extent::Uniform => {
                    let _ = writeln!(
                        w,
                        "  {{ size_t numel = 0; (void)numel; st->{f} = {code}; }}"
                    );
                }
                _ => {
                    let _ = writeln!(
                        w,
                        "  st->{f} = (double *)calloc(n ? n : 1, sizeof(double));\n  if (!st->{f}) return -1;\n  \
                         for (size_t t = 0; t < n; t++) {{ size_t numel_t = numel[t]; {{ size_t numel = numel_t; (void)numel; st->{f}[t] = {code}; }} }}"
                    );
                }
            }
        }
    }
    let _ = writeln!(w, "  return 0;\n}}\n");
    // Free.
    let _ = writeln!(w, "static inline void {p}_free({p}_state *st) {{");
    for si in 0..nst {
        let Some(body) = cx.body(si) else { continue };
        for (id, s) in body.states.iter().enumerate() {
            let f = cx.state_field(si, id);
            match s.extent {
                Extent::Element => {
                    let _ = writeln!(w, "  if (st->{f}) {{ for (size_t t = 0; t < st->n_tensors; t++) free(st->{f}[t]); free(st->{f}); }}");
                }
                Extent::Uniform => {}
                _ => {
                    let _ = writeln!(w, "  free(st->{f});");
                }
            }
        }
    }
    let _ = writeln!(w, "  memset(st, 0, sizeof *st);\n}}\n");
    // Host values.
    let nh = kernel.host.len().max(1);
    let nred = kernel.reductions.len();
    let _ = writeln!(
        w,
        "/* Every host value for tensor t (t == nt: the step-uniform values). */\n\
         static inline void {p}_host(const {p}_state *st, const {p}_hypers *hp, size_t t, size_t nt, size_t numel, const double *red, double *h) {{\n  \
         (void)st; (void)hp; (void)t; (void)nt; (void)numel; (void)red; (void)h;"
    );
    for (i, h) in kernel.host.iter().enumerate() {
        let _ = writeln!(w, "  h[{i}] = {};", host_expr(&cx, h)?);
    }
    let _ = writeln!(w, "}}\n");
    // Run a pass over every tensor in chunks, combining partials in order.
    let _ = writeln!(
        w,
        "typedef void (*{p}_pass_fn)(const float *, float *const *, uint64_t, uint64_t, double *);\n\n\
         /* Runs a pass; acc[j * n + t] gathers reduction j of tensor t (sum, or max/min by kind). */\n\
         static inline void {p}_run(size_t pass, {p}_pass_fn f, size_t nslots, size_t nbufs, size_t nr, const int *kind,\n\
                                    {p}_state *st, const {p}_hypers *hp, size_t n, const size_t *numel, float *const *params,\n\
                                    const float *const *grads, const double *red, const float *extra, size_t nextra, double *acc) {{\n  \
         double h[{nh}];\n  float slots[{}];\n  float *bufs[{}];\n  double part[{}];\n  \
         for (size_t j = 0; j < nr; j++) for (size_t t = 0; t < n; t++) acc[j * n + t] = kind[j] == 1 ? -INFINITY : (kind[j] == 2 ? INFINITY : 0.0);\n  \
         for (size_t t = 0; t < n; t++) {{\n    \
         {p}_host(st, hp, t, n, numel[t], red, h);\n    \
         {p}_fill(pass, h, slots, bufs, st, params, grads, t);\n    \
         for (size_t k = 0; k < nextra; k++) slots[nslots + k] = extra[k];\n    \
         for (uint64_t s = 0; s < numel[t]; s += {up}_CHUNK) {{\n      \
         uint64_t e = s + {up}_CHUNK < numel[t] ? s + {up}_CHUNK : numel[t];\n      \
         f(slots, bufs, s, e, part);\n      \
         for (size_t j = 0; j < nr; j++) {{\n        double *a = &acc[j * n + t];\n        \
         if (kind[j] == 1) *a = fmax(*a, part[j]); else if (kind[j] == 2) *a = fmin(*a, part[j]); else *a += part[j];\n      }}\n    }}\n  }}\n  \
         (void)nbufs;\n}}\n",
        kernel.passes.iter().map(|x| x.scalars.len() + 1 + x.reductions.len()).max().unwrap_or(1).max(1),
        kernel.passes.iter().map(|x| x.bufs.len()).max().unwrap_or(1).max(1),
        kernel.passes.iter().map(|x| x.reductions.len()).max().unwrap_or(1).max(1),
    );
    // The per-pass slot and buffer filler must precede `_run`: emit it as a prototype
    // above by writing it into a separate string, spliced in below.
    let mut fill = format!(
        "static inline void {p}_fill(size_t pass, const double *h, float *slots, float **bufs, {p}_state *st, float *const *params, const float *const *grads, size_t t) {{\n  \
         (void)h; (void)slots; (void)bufs; (void)st; (void)params; (void)grads; (void)t;\n  switch (pass) {{\n"
    );
    for (i, pass) in kernel.passes.iter().enumerate() {
        let _ = writeln!(fill, "  case {i}:");
        for (k, h) in pass.scalars.iter().enumerate() {
            let _ = writeln!(fill, "    slots[{k}] = (float)h[{h}];");
        }
        for (k, b) in pass.bufs.iter().enumerate() {
            let ptr = match b {
                Buf::Param => "params[t]".to_string(),
                Buf::Grad => "(float *)grads[t]".to_string(),
                Buf::State { stage, state } => format!("st->{}[t]", cx.state_field(*stage, *state)),
                _ => "NULL".to_string(),
            };
            let _ = writeln!(fill, "    bufs[{k}] = {ptr};");
        }
        let _ = writeln!(fill, "    break;");
    }
    let _ = writeln!(fill, "  default: break;\n  }}\n}}\n");
    let at = o
        .find(&format!("typedef void (*{p}_pass_fn)"))
        .unwrap_or(o.len());
    o.insert_str(at, &fill);
    let w = &mut o;
    // The step.
    let _ = writeln!(
        w,
        "/* One update: grads in, params updated in place. */\n\
         static inline int {p}_step({p}_state *st, const {p}_hypers *hp, size_t n, const size_t *numel, float *const *params, const float *const *grads) {{\n  \
         double h[{nh}];\n  \
         double *red = (double *)malloc(sizeof(double) * ({nred} * (n + 1) + 1));\n  \
         double *acc = (double *)malloc(sizeof(double) * ({maxr} * n + 1));\n  \
         double *fin = (double *)malloc(sizeof(double) * ({hs} * (n + 1) + 1));\n  \
         if (!red || !acc || !fin) {{ free(red); free(acc); free(fin); return -1; }}\n  \
         for (size_t k = 0; k < {nred} * (n + 1); k++) red[k] = NAN;",
        maxr = kernel.passes.iter().map(|x| x.reductions.len()).max().unwrap_or(0),
        hs = kernel.host_states.len(),
    );
    for (i, pass) in kernel.passes.iter().enumerate() {
        if pass.kind != PassKind::Reduce {
            continue;
        }
        let nr = pass.reductions.len();
        let kinds: Vec<&str> = pass
            .reductions
            .iter()
            .map(|&r| match kernel.reductions[r].op {
                crate::ir::ReduceOp::Max => "1",
                crate::ir::ReduceOp::Min => "2",
                _ => "0",
            })
            .collect();
        let _ = writeln!(
            w,
            "  {{\n    static const int kind[{nr}] = {{{}}};\n    \
             {p}_run({i}, {p}_pass{i}, {}, {}, {nr}, kind, st, hp, n, numel, params, grads, red, NULL, 0, acc);",
            kinds.join(", "),
            pass.scalars.len() + usize::from(pass.guarded),
            pass.bufs.len()
        );
        for (j, &r) in pass.reductions.iter().enumerate() {
            let red = &kernel.reductions[r];
            let finish = |v: &str, count: &str| match red.op {
                crate::ir::ReduceOp::Norm => format!("sqrt({v})"),
                crate::ir::ReduceOp::Mean => format!("({v}) / (double)({count})"),
                crate::ir::ReduceOp::AllFinite => format!("(isfinite({v}) ? 1.0 : 0.0)"),
                _ => v.to_string(),
            };
            let combine = match red.op {
                crate::ir::ReduceOp::Max => "g = fmax(g, acc[{j} * n + t]);",
                crate::ir::ReduceOp::Min => "g = fmin(g, acc[{j} * n + t]);",
                _ => "g += acc[{j} * n + t];",
            }
            .replace("{j}", &j.to_string());
            let init = match red.op {
                crate::ir::ReduceOp::Max => "-INFINITY",
                crate::ir::ReduceOp::Min => "INFINITY",
                _ => "0.0",
            };
            match red.scope {
                crate::ir::Scope::Tensor => {
                    let _ = writeln!(
                        w,
                        "    for (size_t t = 0; t < n; t++) red[{r} * (n + 1) + t] = {};\n    red[{r} * (n + 1) + n] = NAN;",
                        finish(&format!("acc[{j} * n + t]"), "numel[t]")
                    );
                }
                _ => {
                    let _ = writeln!(
                        w,
                        "    {{ double g = {init}; size_t cnt = 0; for (size_t t = 0; t < n; t++) {{ {combine} cnt += numel[t]; }}\n      \
                         (void)cnt;\n      for (size_t t = 0; t <= n; t++) red[{r} * (n + 1) + t] = {}; }}",
                        finish("g", "cnt")
                    );
                }
            }
        }
        let _ = writeln!(w, "  }}");
    }
    // Skips, on the step-uniform values.
    let _ = writeln!(
        w,
        "  {p}_host(st, hp, n ? 0 : n, n, n ? numel[0] : 0, red, h);\n  size_t active = {nst};\n  int skipped = 0;"
    );
    for (stage, cond) in &kernel.skips {
        let _ = writeln!(
            w,
            "  if (!skipped && {stage} < active && h[{cond}] != 0.0) {{ active = {stage} + 1; skipped = 1; }}"
        );
    }
    // Host states: computed before the map pass changes anything, stored after it.
    for (k, (stage, _, hid)) in kernel.host_states.iter().enumerate() {
        let _ = writeln!(
            w,
            "  for (size_t t = 0; t < (n ? n : 1); t++) {{ {p}_host(st, hp, t, n, n ? numel[t] : 0, red, h); fin[{k} * (n + 1) + t] = h[{hid}]; }}\n  (void){stage};"
        );
    }
    for (i, pass) in kernel.passes.iter().enumerate() {
        let when = match pass.kind {
            PassKind::Reduce | PassKind::Prepare => continue,
            PassKind::Map if kernel.passes.iter().any(|x| x.kind == PassKind::SkipMap) => {
                "!skipped"
            }
            PassKind::Map => "1",
            PassKind::SkipMap => "skipped",
        };
        let _ = writeln!(
            w,
            "  if ({when}) {{\n    float flag = (float)active;\n    static const int kind[1] = {{0}};\n    \
             {p}_run({i}, {p}_pass{i}, {}, {}, 0, kind, st, hp, n, numel, params, grads, red, &flag, {}, acc);\n  }}",
            pass.scalars.len(),
            pass.bufs.len(),
            usize::from(pass.guarded)
        );
    }
    for (k, (stage, state, _)) in kernel.host_states.iter().enumerate() {
        let f = cx.state_field(*stage, *state);
        let body = cx
            .body(*stage)
            .ok_or_else(|| Error::internal("not a stage"))?;
        let _ = match body.states[*state].extent {
            Extent::Uniform => writeln!(w, "  if ({stage} < active) st->{f} = fin[{k} * (n + 1)];"),
            _ => writeln!(
                w,
                "  if ({stage} < active) for (size_t t = 0; t < n; t++) st->{f}[t] = fin[{k} * (n + 1) + t];"
            ),
        };
    }
    let _ = writeln!(
        w,
        "  for (size_t s = 0; s < active; s++) st->runs[s]++;\n  st->last_skipped = skipped;\n  free(red); free(acc); free(fin);\n  return 0;\n}}\n\n#endif"
    );
    // The builtins' helpers, now that every call to them is written.
    let helpers = helpers(&o, p);
    Ok(o.replacen(HELPERS_HERE, &helpers, 1))
}

/// Where the helper functions go, replaced once the rest of the header is written.
const HELPERS_HERE: &str = "/* anneal: helpers */";
