//! `anneal build --emit ir`: the typed IR as text. Each definition a recipe uses is shown
//! with its arena (`%n: type extent = op`), its states and statements; then the recipe
//! with its groups, schedules and flattened stages.

use crate::ir::*;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Prints every recipe and the definitions it reaches.
pub fn print_program(p: &Program) -> String {
    let mut used = BTreeSet::new();
    for r in &p.recipes {
        for s in &r.stages {
            used.insert(s.def);
            for a in &s.args {
                reach_value(p, a, &mut used);
            }
        }
        for (_, s, _) in &r.schedules {
            reach_sched(p, s, &mut used);
        }
    }
    let mut out = String::new();
    for id in &used {
        print_def(p, *id, &mut out);
        out.push('\n');
    }
    for r in &p.recipes {
        print_recipe(p, r, &mut out);
    }
    out
}

fn reach_value(p: &Program, v: &HyperValue, used: &mut BTreeSet<DefId>) {
    match v {
        HyperValue::Schedule(s) => reach_sched(p, s, used),
        HyperValue::List(items) | HyperValue::PerGroup(items) => {
            items.iter().for_each(|x| reach_value(p, x, used))
        }
        HyperValue::Map(entries) => entries.iter().for_each(|(_, x)| reach_value(p, x, used)),
        _ => {}
    }
}

fn reach_sched(p: &Program, s: &Sched, used: &mut BTreeSet<DefId>) {
    match s {
        Sched::Const(_) => {}
        Sched::Call(d, args) => {
            if used.insert(*d) {
                if let DefBody::Schedule(b) = &p.defs[*d].body {
                    for e in &b.exprs {
                        if let Expr::SchedCall(inner, _, _) = e {
                            reach_sched(p, &Sched::Call(*inner, Vec::new()), used);
                        }
                    }
                }
            }
            args.iter().for_each(|a| reach_value(p, a, used));
        }
        Sched::Unary(_, a) => reach_sched(p, a, used),
        Sched::Binary(_, a, b) => {
            reach_sched(p, a, used);
            reach_sched(p, b, used);
        }
    }
}

fn print_def(p: &Program, id: DefId, out: &mut String) {
    let d = &p.defs[id];
    let _ = writeln!(out, "{} {}.{}", d.kind.keyword(), d.module, d.name);
    for prm in &d.params {
        let _ = write!(
            out,
            "  param {}: {}",
            prm.name,
            crate::check::type_name_pub(&prm.ty)
        );
        if let Some(r) = &prm.range {
            let _ = write!(out, " {}", r.describe());
        }
        if let Some(v) = &prm.default {
            let _ = write!(out, " = {}", value_text(p, v));
        }
        out.push('\n');
    }
    let body = match &d.body {
        DefBody::Stage(b) | DefBody::Schedule(b) => b,
        DefBody::Builtin(name) => {
            let _ = writeln!(out, "  builtin {name:?}");
            return;
        }
        DefBody::Function => {
            let _ = writeln!(out, "  function (expanded where it is called)");
            return;
        }
        DefBody::Chain(calls) => {
            for c in calls {
                let _ = writeln!(out, "  chain {}", p.defs[c.def].name);
            }
            return;
        }
    };
    for (i, e) in body.exprs.iter().enumerate() {
        let t = body.types[i];
        let _ = writeln!(
            out,
            "  %{i}: {} {} = {}",
            t.kind.name(),
            t.extent.describe(),
            expr_text(p, d, body, e)
        );
    }
    for s in &body.states {
        let _ = writeln!(
            out,
            "  state {}: {} = %{}",
            s.name,
            s.extent.describe(),
            s.init
        );
    }
    for s in &body.stmts {
        let _ = match s {
            Stmt::Let(l, e) => writeln!(out, "  let {} = %{e}", body.locals[*l]),
            Stmt::SetState(id, e) => writeln!(out, "  {} <- %{e}", body.states[*id].name),
            Stmt::SetGrad(e) => writeln!(out, "  grad <- %{e}"),
            Stmt::SetParam(e) => writeln!(out, "  param <- %{e}"),
            Stmt::Skip(e) => writeln!(out, "  skip if %{e}"),
            Stmt::Run(i) => writeln!(out, "  run ${i}"),
        };
    }
    if !body.observe.is_empty() {
        let _ = writeln!(out, "  observe:");
        for s in &body.observe {
            let _ = match s {
                Stmt::Let(l, e) => writeln!(out, "    let {} = %{e}", body.locals[*l]),
                Stmt::SetState(id, e) => writeln!(out, "    {} <- %{e}", body.states[*id].name),
                _ => Ok(()),
            };
        }
    }
    if let Some(r) = body.result {
        let _ = writeln!(out, "  result %{r}");
    }
}

fn expr_text(p: &Program, d: &Def, b: &Body, e: &Expr) -> String {
    let hp = |i: &usize| d.params.get(*i).map(|x| x.name.clone()).unwrap_or_default();
    match e {
        Expr::Const(v) => fmt_num(*v),
        Expr::Hyper(i) => format!("hyper {}", hp(i)),
        Expr::HyperIndex(i, k) => format!("hyper {}[{k}]", hp(i)),
        Expr::State(s) => format!(
            "state {}",
            b.states.get(*s).map(|x| x.name.as_str()).unwrap_or("?")
        ),
        Expr::Local(l) => format!(
            "let {}",
            b.locals.get(*l).map(String::as_str).unwrap_or("?")
        ),
        Expr::Grad => "grad".into(),
        Expr::Param => "param".into(),
        Expr::Step => "step".into(),
        Expr::StrEq(i, s) => format!("hyper {} == {s:?}", hp(i)),
        Expr::Count => "count".into(),
        Expr::Metric => "metric".into(),
        Expr::GradAt(x) => format!("grad_at(%{x})"),
        Expr::Hvp(x) => format!("hvp(%{x})"),
        Expr::Rademacher => "rademacher()".into(),
        Expr::Loss => "loss".into(),
        Expr::Shape(i) => format!("{i:?}()").to_lowercase(),
        Expr::Unary(op, a) => format!("{} %{a}", if *op == UnOp::Neg { "neg" } else { "not" }),
        Expr::Binary(op, a, c) => format!("%{a} {} %{c}", op.symbol()),
        Expr::Select(c, a, x) => format!("select %{c} %{a} %{x}"),
        Expr::Call(f, xs) => format!("{}({})", f.name(), ids(xs)),
        Expr::Reduce(op, s, x) => format!("{}(%{x}, {})", op.name(), s.name()),
        Expr::ScheduleAt(i, x) => format!("{}(%{x})", hp(i)),
        Expr::List(op, i, xs) => format!("{op:?}({}, {})", hp(i), ids(xs)),
        Expr::SchedCall(def, _, at) => format!("{}(...) at %{at}", p.defs[*def].name),
        Expr::Mat(op, xs) => format!("{}({})", op.name(), ids(xs)),
        Expr::Fold {
            init,
            count,
            var,
            step,
        } => format!(
            "repeat %{count} from %{init}: {} = %{step}",
            b.locals.get(*var).map(String::as_str).unwrap_or("?")
        ),
    }
}

fn ids(xs: &[ExprId]) -> String {
    xs.iter()
        .map(|x| format!("%{x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_recipe(p: &Program, r: &Recipe, out: &mut String) {
    let _ = writeln!(out, "recipe {}", r.name);
    if let Some(s) = r.steps {
        let _ = writeln!(out, "  steps {s}");
    }
    for g in &r.groups {
        let pats = match &g.patterns {
            None => "rest".to_string(),
            Some(ps) => ps
                .iter()
                .map(|x| format!("{x:?}"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let except = if g.except.is_empty() {
            String::new()
        } else {
            format!(
                " except {}",
                g.except
                    .iter()
                    .map(|x| format!("{x:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let _ = writeln!(out, "  group {} = {pats}{except}", g.name);
    }
    for (n, s, _) in &r.schedules {
        let _ = writeln!(out, "  schedule {n} = {}", sched_text(p, s));
    }
    for (i, s) in r.stages.iter().enumerate() {
        let d = &p.defs[s.def];
        let args: Vec<String> = d
            .params
            .iter()
            .zip(&s.args)
            .map(|(prm, v)| format!("{}: {}", prm.name, value_text(p, v)))
            .collect();
        let _ = writeln!(
            out,
            "  stage {i}: {}.{}({})",
            d.module,
            d.name,
            args.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "  {}",
        if r.applies_updates {
            "apply_updates: param += grad after the last stage"
        } else {
            "the optimizer writes param"
        }
    );
}

/// A value as recipe text.
pub fn value_text(p: &Program, v: &HyperValue) -> String {
    match v {
        HyperValue::Real(x) => fmt_num(*x),
        HyperValue::Int(x) => x.to_string(),
        HyperValue::Bool(b) => b.to_string(),
        HyperValue::Str(s) => format!("{s:?}"),
        HyperValue::Schedule(s) => sched_text(p, s),
        HyperValue::List(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|x| value_text(p, x))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        HyperValue::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, x)| format!("{}: {}", value_text(p, k), value_text(p, x)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        HyperValue::PerGroup(items) => format!(
            "per-group[{}]",
            items
                .iter()
                .map(|x| value_text(p, x))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        HyperValue::Chain(stages) => stages
            .iter()
            .map(|s| {
                let def = &p.defs[s.def];
                let args: Vec<String> = def
                    .params
                    .iter()
                    .zip(&s.args)
                    .map(|(prm, v)| format!("{}: {}", prm.name, value_text(p, v)))
                    .collect();
                format!("{}({})", def.name, args.join(", "))
            })
            .collect::<Vec<_>>()
            .join(" |> "),
    }
}

/// A schedule as recipe text.
pub fn sched_text(p: &Program, s: &Sched) -> String {
    match s {
        Sched::Const(x) => fmt_num(*x),
        Sched::Call(d, args) => {
            let def = &p.defs[*d];
            let a: Vec<String> = def
                .params
                .iter()
                .zip(args)
                .map(|(prm, v)| format!("{}: {}", prm.name, value_text(p, v)))
                .collect();
            format!("{}({})", def.name, a.join(", "))
        }
        Sched::Unary(op, a) => format!(
            "{}({})",
            if *op == UnOp::Neg { "-" } else { "not " },
            sched_text(p, a)
        ),
        Sched::Binary(op, a, b) => format!(
            "({} {} {})",
            sched_text(p, a),
            op.symbol(),
            sched_text(p, b)
        ),
    }
}
