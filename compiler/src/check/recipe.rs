//! Checking and elaborating recipes: steps, parameter groups, schedule bindings and the
//! update chain. Elaboration evaluates every hyperparameter and flattens chain
//! definitions into one list of stage instances (`ir::Recipe::stages`).

use super::args::named_args;
use super::hyper::{self, HType, HyperNames};
use super::inline;
use super::{Checker, Scope};
use crate::ast::{self, ExprKind, RecipeItem};
use crate::diagnostic::Diagnostic;
use crate::ir::{self, DefBody, DefId, Group, HyperValue, StageInst, Stmt};
use crate::source::Span;
use crate::value::{as_sched, eval_hyper};
use std::collections::HashMap;

/// Chains nest (adamw = scale_by_adam |> ...); deeper than this is a definition calling itself.
const MAX_CHAIN_DEPTH: usize = 32;

pub(crate) fn check_recipe(
    cx: &mut Checker,
    scope: &Scope,
    r: &ast::Recipe,
    warn_unused: bool,
) -> Option<ir::Recipe> {
    if scope.is_library {
        cx.diags.push(
            Diagnostic::error("E0160", r.name.span, "library modules cannot hold recipes")
                .with_label("recipe in a library")
                .with_help("move the recipe to its own file"),
        );
        return None;
    }
    let mut seen: HashMap<&'static str, Span> = HashMap::new();
    let mut once = |cx: &mut Checker, what: &'static str, span: Span| -> bool {
        if let Some(prev) = seen.get(what) {
            cx.diags.push(
                Diagnostic::error(
                    "E0160",
                    span,
                    format!("`{what}` is given twice in recipe `{}`", r.name.name),
                )
                .with_label("second one")
                .with_secondary(*prev, "first one")
                .with_help(format!("keep one `{what}`")),
            );
            return false;
        }
        seen.insert(what, span);
        true
    };
    let mut ok = true;
    // Groups first: per-group values anywhere in the recipe refer to them.
    let mut groups: Vec<Group> = Vec::new();
    for item in &r.items {
        if let RecipeItem::Groups(defs, span) = item {
            if once(cx, "groups", *span) {
                ok &= check_groups(cx, defs, &mut groups);
            }
        }
    }
    let group_names: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
    let mut steps = None;
    let mut origins: Vec<hyper::Origin> = Vec::new();
    let mut model = None;
    let mut data = None;
    let mut param_dtype = ir::Dtype::F32;
    let mut parallel_block = None;
    let mut bindings: HashMap<String, (HyperValue, HType)> = HashMap::new();
    let mut binding_spans: Vec<(String, Span, bool)> = Vec::new();
    let mut schedules = Vec::new();
    let mut stages = Vec::new();
    for item in &r.items {
        match item {
            RecipeItem::Groups(..) | RecipeItem::Curriculum { .. } => {}
            RecipeItem::Unknown { name, rest, span } => {
                cx.diags
                    .push(super::foreign::unknown_item(name, rest, *span));
                ok = false;
            }
            RecipeItem::Parallel(entries, span) => {
                if once(cx, "parallel", *span) {
                    parallel_block = Some((entries, *span));
                }
            }
            RecipeItem::Precision(entries, span) => {
                if once(cx, "precision", *span) {
                    for (k, v) in entries {
                        let dtype = match v.name.as_str() {
                            "f32" => Some(ir::Dtype::F32),
                            "bf16" => Some(ir::Dtype::Bf16),
                            "f16" => Some(ir::Dtype::F16),
                            _ => None,
                        };
                        match (k.name.as_str(), dtype) {
                            ("params", Some(d)) => param_dtype = d,
                            ("master", Some(ir::Dtype::F32)) => {}
                            ("params" | "master", _) => {
                                cx.diags.push(
                                    Diagnostic::error("E0166", v.span, format!("`{}` cannot be `{}`", k.name, v.name))
                                        .with_label("unsupported type")
                                        .with_help("weights are `f32`, `bf16` or `f16`; master weights are `f32`"),
                                );
                                ok = false;
                            }
                            _ => {
                                cx.diags.push(
                                    Diagnostic::error("E0166", k.span, format!("`precision` has no setting `{}`", k.name))
                                        .with_label("unknown setting")
                                        .with_help("write `precision { params: bf16, master: f32 }`; loss scaling is the `GradScaler` stage"),
                                );
                                ok = false;
                            }
                        }
                    }
                }
            }
            RecipeItem::Model(e, span) => {
                if once(cx, "model", *span) {
                    match model_spec(e) {
                        Ok(m) => model = Some(m),
                        Err(d) => {
                            cx.diags.push(d);
                            ok = false;
                        }
                    }
                }
            }
            RecipeItem::Data(e, span) => {
                if once(cx, "data", *span) {
                    match data_spec(e) {
                        Ok(d) => data = Some(d),
                        Err(d) => {
                            cx.diags.push(d);
                            ok = false;
                        }
                    }
                }
            }
            RecipeItem::Steps(e, span) => {
                if once(cx, "steps", *span) {
                    match &e.kind {
                        ExprKind::Number {
                            value,
                            is_int: true,
                        } if *value >= 1.0 && *value <= 9.0e15 => steps = Some(*value as u64),
                        _ => {
                            cx.diags.push(
                                Diagnostic::error(
                                    "E0163",
                                    e.span,
                                    "`steps` must be a positive whole number",
                                )
                                .with_label("not a step count")
                                .with_help("write e.g. `steps 10_000`"),
                            );
                            ok = false;
                        }
                    }
                }
            }
            RecipeItem::Schedule(name, e, _) => {
                if let Some((_, prev, _)) = binding_spans.iter().find(|(n, ..)| *n == name.name) {
                    cx.diags.push(
                        Diagnostic::error(
                            "E0104",
                            name.span,
                            format!("schedule `{}` is bound twice", name.name),
                        )
                        .with_label("bound again here")
                        .with_secondary(*prev, "first bound here")
                        .with_help("give the second schedule its own name"),
                    );
                    ok = false;
                    continue;
                }
                let names = HyperNames::Recipe {
                    bindings: &bindings,
                    groups: &group_names,
                };
                // Mark earlier bindings used when this one reads them.
                mark_used(&mut binding_spans, e);
                let Some((h, t)) = hyper::check_hyper(cx, scope, &names, e) else {
                    // Bind the name anyway so later uses do not report it as unknown.
                    poison(&mut bindings, &mut binding_spans, name);
                    ok = false;
                    continue;
                };
                if !hyper::assignable(&t, &HType::Schedule) {
                    cx.diags.push(hyper::type_mismatch(
                        e.span,
                        &name.name,
                        &HType::Schedule,
                        &t,
                    ));
                    ok = false;
                    continue;
                }
                match eval_hyper(&h, &[]) {
                    Ok(v) => {
                        if let Some(s) = as_sched(&v) {
                            schedules.push((name.name.clone(), s, name.span));
                        }
                        bindings.insert(name.name.clone(), (v, t));
                        binding_spans.push((name.name.clone(), name.span, false));
                    }
                    Err(msg) => {
                        cx.diags.push(
                            Diagnostic::error("E0120", e.span, format!("cannot evaluate schedule `{}`: {msg}", name.name))
                                .with_label("here")
                                .with_help("a schedule binding is a schedule call, a number, or arithmetic on those"),
                        );
                        ok = false;
                    }
                }
            }
            RecipeItem::Update(e, span) => {
                if !once(cx, "update", *span) {
                    continue;
                }
                mark_used(&mut binding_spans, e);
                let names = HyperNames::Recipe {
                    bindings: &bindings,
                    groups: &group_names,
                };
                let calls: Vec<&ast::Expr> = match &e.kind {
                    ExprKind::Pipe(items) => items.iter().collect(),
                    _ => vec![e],
                };
                for c in calls {
                    let Some(call) = hyper::check_stage_call(cx, scope, &names, c) else {
                        ok = false;
                        continue;
                    };
                    let mut args = Vec::new();
                    for a in &call.args {
                        match eval_hyper(a, &[]) {
                            Ok(v) => args.push(v),
                            Err(msg) => {
                                cx.diags.push(
                                    Diagnostic::error("E0120", call.span, format!("cannot evaluate an argument: {msg}"))
                                        .with_label("here")
                                        .with_help("arguments are numbers, booleans, lists, schedules or per-group maps"),
                                );
                                ok = false;
                            }
                        }
                    }
                    if args.len() == call.args.len() {
                        let first = stages.len();
                        ok &= expand(cx, call.def, args, call.span, 0, &mut stages);
                        if let ExprKind::Call { callee, args } = &c.kind {
                            origins.push(hyper::Origin {
                                stages: first..stages.len(),
                                callee: callee.name.clone(),
                                args: args
                                    .iter()
                                    .filter_map(|a| {
                                        Some((a.name.as_ref()?.name.clone(), a.value.span))
                                    })
                                    .collect(),
                            });
                        }
                    }
                }
            }
        }
    }
    ok &= check_stage_order(cx, &stages);
    if let (true, Some(n)) = (ok, steps) {
        ok &= hyper::check_scheduled_ranges(&cx.program, &stages, &origins, n, &mut cx.diags);
    }
    // A recipe without `update` studies its schedules: nothing to warn about.
    if warn_unused && seen.contains_key("update") {
        for (name, span, used) in &binding_spans {
            if !used {
                cx.diags.push(
                    Diagnostic::warning("W0003", *span, format!("schedule `{name}` is never used"))
                        .with_label("not passed to any stage")
                        .with_help(format!("pass it to an optimizer, e.g. `adam(learning_rate: {name})`, or remove it")),
                );
            }
        }
    }
    // The plan is checked against the model and data, wherever they are written.
    let mut parallel = None;
    if let Some((entries, span)) = parallel_block {
        parallel = super::parallel::check_plan(
            entries,
            span,
            model.as_ref(),
            data.as_ref(),
            &mut cx.diags,
        );
        ok &= parallel.is_some();
    }
    // Curricula last: they are checked against the model.
    let mut curriculum: Vec<ir::CurriculumPhase> = Vec::new();
    for item in &r.items {
        if let RecipeItem::Curriculum {
            after,
            entries,
            span,
        } = item
        {
            match super::curriculum::check_phase(after.as_ref(), entries, *span, model.as_ref()) {
                Ok(p) => {
                    if let Some(prev) = curriculum.iter().find(|q| q.after >= p.after) {
                        cx.diags.push(
                            Diagnostic::error("E0167", *span, format!("curriculum phases must start at increasing steps; this one starts at {}", p.after))
                                .with_label("out of order")
                                .with_help(format!("an earlier phase starts at step {}: order the blocks by their `after`", prev.after)),
                        );
                        ok = false;
                    } else {
                        curriculum.push(p);
                    }
                }
                Err(ds) => {
                    cx.diags.extend(ds);
                    ok = false;
                }
            }
        }
    }
    if !ok {
        return None;
    }
    let applies_updates = !stages
        .iter()
        .any(|s: &StageInst| cx.program.defs[s.def].writes_param());
    let mut capabilities = Vec::new();
    // The stages of chain arguments (sam's) ask the model too.
    let mut all = stages.clone();
    let mut i = 0;
    while i < all.len() {
        let nested: Vec<StageInst> = all[i]
            .args
            .iter()
            .filter_map(|a| match a {
                HyperValue::Chain(inner) => Some(inner.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        all.extend(nested);
        i += 1;
    }
    for s in &all {
        let needs = match &cx.program.defs[s.def].body {
            DefBody::Stage(b) => b.capabilities(),
            DefBody::Builtin(name) => ir::BUILTINS
                .iter()
                .filter(|(n, _)| n == name)
                .flat_map(|(_, c)| c.iter().copied())
                .collect(),
            _ => Vec::new(),
        };
        for c in needs {
            if !capabilities.contains(&c) {
                capabilities.push(c);
            }
        }
    }
    capabilities.sort();
    if groups.is_empty() {
        groups.push(Group {
            name: "all".into(),
            patterns: None,
            except: Vec::new(),
        });
    }
    Some(ir::Recipe {
        name: r.name.name.clone(),
        span: r.name.span,
        steps,
        schedules,
        groups,
        stages,
        applies_updates,
        capabilities,
        model,
        data,
        param_dtype,
        curriculum,
        parallel,
    })
}

// Diagnostics are returned only on the error path; their size does not matter here.
#[allow(clippy::result_large_err)]
fn model_spec(e: &ast::Expr) -> Result<ir::ModelSpec, Diagnostic> {
    let help = "write e.g. `model = mlp(layers: [64, 128, 10], activation: \"tanh\")`, \
                `model = quadratic(dim: 50, condition: 1000)` or `model = rosenbrock()`";
    let kind = match &e.kind {
        ExprKind::Call { callee, .. }
            if matches!(callee.name.as_str(), "quadratic" | "rosenbrock") =>
        {
            callee.name.clone()
        }
        _ => "mlp".to_string(),
    };
    let allowed: &[&str] = match kind.as_str() {
        "quadratic" => &["dim", "condition"],
        "rosenbrock" => &[],
        _ => &["layers", "activation"],
    };
    let args = named_args(e, &kind, allowed, help)?;
    let mut spec = ir::ModelSpec {
        kind: kind.clone(),
        condition: 1.0,
        layers: Vec::new(),
        activation: "tanh".into(),
    };
    let bad = |k: &str, v: &ast::Expr| {
        Diagnostic::error("E0120", v.span, format!("bad value for `{k}`"))
            .with_label("wrong type or out of range")
            .with_help(help)
    };
    for (k, v) in args {
        match (k, &v.kind) {
            ("layers", ExprKind::List(items)) => {
                for it in items {
                    match it.kind {
                        ExprKind::Number {
                            value,
                            is_int: true,
                        } if (1.0..1e9).contains(&value) => spec.layers.push(value as usize),
                        _ => {
                            return Err(Diagnostic::error(
                                "E0120",
                                it.span,
                                "a layer width is a positive whole number",
                            )
                            .with_label("not a width")
                            .with_help(help))
                        }
                    }
                }
            }
            ("activation", ExprKind::Str(s)) if s == "tanh" || s == "relu" => {
                spec.activation = s.clone()
            }
            (
                "dim",
                ExprKind::Number {
                    value,
                    is_int: true,
                },
            ) if (1.0..1e9).contains(value) => spec.layers = vec![*value as usize],
            ("condition", ExprKind::Number { value, .. }) if *value >= 1.0 && value.is_finite() => {
                spec.condition = *value
            }
            _ => return Err(bad(k, v)),
        }
    }
    let complete = match kind.as_str() {
        "mlp" => spec.layers.len() >= 2,
        "quadratic" => spec.layers.len() == 1,
        _ => true,
    };
    if !complete {
        return Err(
            Diagnostic::error("E0120", e.span, "the model is missing its sizes")
                .with_label("incomplete model")
                .with_help(help),
        );
    }
    Ok(spec)
}

#[allow(clippy::result_large_err)]
fn data_spec(e: &ast::Expr) -> Result<ir::DataSpec, Diagnostic> {
    let help = "write e.g. `data = csv(file: \"data/digits.csv\", standardize: true, batch: 64, test_fraction: 0.2)`";
    let args = named_args(
        e,
        "csv",
        &[
            "file",
            "standardize",
            "batch",
            "test_fraction",
            "label_noise",
        ],
        help,
    )?;
    let mut spec = ir::DataSpec {
        file: String::new(),
        standardize: true,
        batch: 64,
        test_fraction: 0.2,
        label_noise: 0.0,
    };
    for (k, v) in args {
        match (k, &v.kind) {
            ("file", ExprKind::Str(s)) => spec.file = s.clone(),
            ("standardize", ExprKind::Bool(b)) => spec.standardize = *b,
            (
                "batch",
                ExprKind::Number {
                    value,
                    is_int: true,
                },
            ) if *value >= 1.0 && *value < 1e9 => spec.batch = *value as usize,
            ("test_fraction", ExprKind::Number { value, .. }) if (0.0..1.0).contains(value) => {
                spec.test_fraction = *value
            }
            ("label_noise", ExprKind::Number { value, .. }) if (0.0..1.0).contains(value) => {
                spec.label_noise = *value
            }
            _ => {
                return Err(
                    Diagnostic::error("E0120", v.span, format!("bad value for `{k}`"))
                        .with_label("wrong type or out of range")
                        .with_help(help),
                )
            }
        }
    }
    if spec.file.is_empty() {
        return Err(Diagnostic::error("E0111", e.span, "`csv` needs `file`")
            .with_label("no file")
            .with_help(help));
    }
    Ok(spec)
}

fn poison(
    bindings: &mut HashMap<String, (HyperValue, HType)>,
    spans: &mut Vec<(String, Span, bool)>,
    name: &ast::Ident,
) {
    bindings.insert(
        name.name.clone(),
        (HyperValue::Real(f64::NAN), HType::Schedule),
    );
    spans.push((name.name.clone(), name.span, true));
}

fn mark_used(bindings: &mut [(String, Span, bool)], e: &ast::Expr) {
    let mut names = Vec::new();
    collect_names(e, &mut names);
    for (n, _, used) in bindings.iter_mut() {
        if names.iter().any(|x| x == n) {
            *used = true;
        }
    }
}

fn collect_names(e: &ast::Expr, out: &mut Vec<String>) {
    match &e.kind {
        ExprKind::Name(n) => out.push(n.clone()),
        ExprKind::Unary(_, a) => collect_names(a, out),
        ExprKind::Binary(_, a, b) | ExprKind::Index(a, b) => {
            collect_names(a, out);
            collect_names(b, out);
        }
        ExprKind::If(a, b, c) => {
            collect_names(a, out);
            collect_names(b, out);
            collect_names(c, out);
        }
        ExprKind::Call { args, .. } => args.iter().for_each(|a| collect_names(&a.value, out)),
        ExprKind::List(items) | ExprKind::Pipe(items) => {
            items.iter().for_each(|a| collect_names(a, out))
        }
        ExprKind::Map(entries) => entries.iter().for_each(|(_, v)| collect_names(v, out)),
        ExprKind::Number { .. } | ExprKind::Bool(_) | ExprKind::Str(_) => {}
    }
}

/// Flattens a call into stage instances, evaluating chain definitions' arguments and
/// checking every inner definition's ranges against the values it receives.
pub(super) fn expand(
    cx: &mut Checker,
    def: DefId,
    args: Vec<HyperValue>,
    span: Span,
    depth: usize,
    out: &mut Vec<StageInst>,
) -> bool {
    if depth > MAX_CHAIN_DEPTH {
        let name = cx.program.defs[def].name.clone();
        cx.diags.push(
            Diagnostic::error("E0145", span, format!("`{name}` expands into itself"))
                .with_label("chain definitions nest too deeply")
                .with_help("a chain definition must not call itself, directly or through others"),
        );
        return false;
    }
    let mut ok = true;
    let d = cx.program.defs[def].clone();
    for (p, v) in d.params.iter().zip(&args) {
        if let Some(r) = &p.range {
            if depth > 0 && !hyper::check_range(cx, v, r, span, &p.name, &d.name) {
                ok = false;
            }
        }
    }
    match &d.body {
        DefBody::Chain(calls) => {
            for c in calls {
                let mut inner = Vec::new();
                for a in &c.args {
                    match eval_hyper(a, &args) {
                        Ok(v) => inner.push(v),
                        Err(msg) => {
                            cx.diags.push(
                                Diagnostic::error(
                                    "E0120",
                                    span,
                                    format!("cannot evaluate an argument of `{}`: {msg}", d.name),
                                )
                                .with_label("in this call")
                                .with_help("check the types of the values passed"),
                            );
                            return false;
                        }
                    }
                }
                ok &= expand(cx, c.def, inner, span, depth + 1, out);
            }
        }
        DefBody::Stage(body) if body.stmts.iter().any(|s| matches!(s, Stmt::Run(_))) => {
            ok &= inline::expand_wrapper(cx, def, &args, span, depth, out);
        }
        DefBody::Stage(body) => {
            for h in body.step_uniform_params() {
                if let (Some(p), Some(HyperValue::PerGroup(_))) = (d.params.get(h), args.get(h)) {
                    cx.diags.push(
                        Diagnostic::error(
                            "E0130",
                            span,
                            format!("`{}` of `{}` cannot differ between groups", p.name, d.name),
                        )
                        .with_label("given per group here")
                        .with_help(format!(
                            "`{}` decides for the whole step (a scalar state or `skip if`); give one value",
                            p.name
                        )),
                    );
                    ok = false;
                }
            }
            out.push(StageInst { def, args, span });
        }
        DefBody::Builtin(_) => {
            // A chain argument (sam's two chains) is flattened like the recipe's own chain.
            let mut flat = Vec::with_capacity(args.len());
            for a in args {
                let HyperValue::Chain(calls) = a else {
                    flat.push(a);
                    continue;
                };
                let mut inner = Vec::new();
                for c in calls {
                    ok &= expand(cx, c.def, c.args, c.span, depth + 1, &mut inner);
                }
                ok &= check_stage_order(cx, &inner);
                flat.push(HyperValue::Chain(inner));
            }
            out.push(StageInst {
                def,
                args: flat,
                span,
            });
        }
        DefBody::Schedule(_) => out.push(StageInst { def, args, span }),
        // Refused where the chain names it (E0144): a function is no stage.
        DefBody::Function => ok = false,
    }
    ok
}

/// A stage after one that updated the parameters would see an update nobody applies.
/// A builtin optimizer evaluates the model itself, so it must be the whole chain.
pub(super) fn check_stage_order(cx: &mut Checker, stages: &[StageInst]) -> bool {
    if stages.len() > 1 {
        if let Some(b) = stages
            .iter()
            .find(|s| matches!(cx.program.defs[s.def].body, DefBody::Builtin(_)))
        {
            let name = cx.program.defs[b.def].name.clone();
            cx.diags.push(
                Diagnostic::error("E0146", b.span, format!("`{name}` must be the only stage of its chain"))
                    .with_label("combined with other stages")
                    .with_help(format!(
                        "`{name}` evaluates the loss and gradient itself, several times per step; remove the other stages"
                    )),
            );
            return false;
        }
    }
    let Some(first) = stages
        .iter()
        .position(|s| cx.program.defs[s.def].writes_param())
    else {
        return true;
    };
    let Some(later) = stages[first + 1..]
        .iter()
        .find(|s| s.span != stages[first].span)
    else {
        return true;
    };
    let opt = cx.program.defs[stages[first].def].name.clone();
    let name = cx.program.defs[later.def].name.clone();
    cx.diags.push(
        Diagnostic::error(
            "E0142",
            later.span,
            format!("`{name}` comes after `{opt}`, which already updated the parameters"),
        )
        .with_label("this stage would have no effect")
        .with_secondary(stages[first].span, "parameters are updated here")
        .with_help(format!("put `{name}` before `{opt}` in the chain")),
    );
    false
}

fn check_groups(cx: &mut Checker, defs: &[ast::GroupDef], out: &mut Vec<Group>) -> bool {
    let mut ok = true;
    let mut rest_at: Option<Span> = None;
    let mut spans: Vec<Span> = Vec::new();
    for g in defs {
        if let Some(i) = out.iter().position(|x| x.name == g.name.name) {
            cx.diags.push(
                Diagnostic::error(
                    "E0162",
                    g.name.span,
                    format!("group `{}` is declared twice", g.name.name),
                )
                .with_label("declared again")
                .with_secondary(spans[i], "first declared here")
                .with_help("merge the patterns into one group"),
            );
            ok = false;
            continue;
        }
        if g.patterns.is_none() {
            if let Some(prev) = rest_at {
                cx.diags.push(
                    Diagnostic::error("E0162", g.span, "only one group can be `rest`")
                        .with_label("second `rest`")
                        .with_secondary(prev, "first `rest`")
                        .with_help("`rest` takes every tensor no other group matched; keep one"),
                );
                ok = false;
                continue;
            }
            rest_at = Some(g.span);
        }
        for (p, span) in g.patterns.iter().flatten().chain(&g.except) {
            if let Err(msg) = crate::glob::validate(p) {
                cx.diags.push(
                    Diagnostic::error("E0164", *span, format!("bad pattern: {msg}"))
                        .with_label("invalid glob")
                        .with_help("patterns use `*` (any run), `?` (one character) and `[abc]` sets, as Python's fnmatch"),
                );
                ok = false;
            }
        }
        spans.push(g.name.span);
        out.push(Group {
            name: g.name.name.clone(),
            patterns: g
                .patterns
                .as_ref()
                .map(|ps| ps.iter().map(|(p, _)| p.clone()).collect()),
            except: g.except.iter().map(|(p, _)| p.clone()).collect(),
        });
    }
    ok
}
