//! Documentation of the standard library, read from the library itself: each
//! definition's `///` comment, its typed signature (ranges, defaults), and a generated
//! example recipe that compiles. `anneal doc NAME` prints one entry; `spec/stdlib/
//! reference.md` is all of them (`anneal doc --markdown`), kept current by a test.

use crate::ir::{fmt_num, Def, DefBody, DefKind, HyperParam, Program, TypeExpr, ValueRange};
use crate::print::value_text;
use crate::source::Sources;
use crate::Compilation;

/// One library definition, ready to print.
#[derive(Debug, Clone)]
pub struct DefDoc {
    pub module: String,
    pub name: String,
    pub kind: DefKind,
    /// The `///` lines above the definition, joined into paragraphs.
    pub text: String,
    pub params: Vec<ParamDoc>,
    /// For chain definitions: the stages, e.g. `scale_by_adam |> scale_by_learning_rate`.
    pub chain: Option<String>,
    /// A recipe that uses the definition with every required argument filled in.
    pub example: String,
    /// Where it is defined: `stdlib/optax.anneal:143`.
    pub location: String,
}

#[derive(Debug, Clone)]
pub struct ParamDoc {
    pub name: String,
    pub ty: String,
    pub range: Option<String>,
    pub default: Option<String>,
}

/// Every definition of the library modules in `c`, in module and file order.
pub fn library_docs(c: &Compilation) -> Vec<DefDoc> {
    let mut out: Vec<DefDoc> = c
        .program
        .defs
        .iter()
        .filter(|d| d.module.starts_with("std."))
        .map(|d| def_doc(&c.program, &c.sources, d))
        .collect();
    out.sort_by(|a, b| a.module.cmp(&b.module));
    out
}

/// Finds `name` (or `module.name`) among `docs`; ambiguous names return every match.
pub fn lookup<'a>(docs: &'a [DefDoc], name: &str) -> Vec<&'a DefDoc> {
    docs.iter()
        .filter(|d| d.name == name || format!("{}.{}", d.module, d.name) == name)
        .collect()
}

fn def_doc(p: &Program, sources: &Sources, d: &Def) -> DefDoc {
    let text = doc_comment(sources.text(d.span.file), d.span.start);
    let (line, _) = sources.line_col(d.span.file, d.span.start);
    let chain = match &d.body {
        DefBody::Chain(calls) => Some(
            calls
                .iter()
                .map(|c| p.defs[c.def].name.clone())
                .collect::<Vec<_>>()
                .join(" |> "),
        ),
        _ => None,
    };
    DefDoc {
        module: d.module.clone(),
        name: d.name.clone(),
        kind: d.kind,
        text,
        params: d.params.iter().map(|prm| param_doc(p, prm)).collect(),
        chain,
        example: example(d),
        location: format!("{}:{line}", sources.name(d.span.file)),
    }
}

fn param_doc(p: &Program, prm: &HyperParam) -> ParamDoc {
    let range = match (&prm.range, &prm.choices) {
        (Some(r), _) => Some(range_text(r)),
        (None, Some(cs)) => Some(format!(
            "one of {}",
            cs.iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => None,
    };
    ParamDoc {
        name: prm.name.clone(),
        ty: crate::check::type_name_pub(&prm.ty),
        range,
        default: prm.default.as_ref().map(|v| value_text(p, v)),
    }
}

fn range_text(r: &ValueRange) -> String {
    let d = r.describe();
    if d.starts_with('[') || d.starts_with('(') {
        format!("in {d}")
    } else {
        d
    }
}

/// The `///` lines directly above the line holding `offset`.
fn doc_comment(text: &str, offset: usize) -> String {
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let mut lines = Vec::new();
    let mut end = line_start;
    while end > 0 {
        let prev_end = end - 1;
        let start = text[..prev_end].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line = text[start..prev_end].trim();
        match line.strip_prefix("///") {
            Some(rest) => lines.push(rest.trim().to_string()),
            None => break,
        }
        end = start;
    }
    lines.reverse();
    lines.join(" ")
}

/// A value inside a parameter's range for the generated example; `int_sample` is the value of
/// a whole-number parameter before its range is applied.
fn sample(prm: &HyperParam, int_sample: f64) -> String {
    if let Some(cs) = &prm.choices {
        return format!("\"{}\"", cs.first().map(String::as_str).unwrap_or(""));
    }
    let pick = |lo: f64, int: bool| -> String {
        let r = prm.range.unwrap_or(ValueRange { lo: None, hi: None });
        let mut v = if int { int_sample } else { lo };
        if !r.contains(v) {
            if let Some((hi, _)) = r.hi {
                v = if int { hi.floor() } else { hi / 2.0 };
            }
            if let Some((l, closed)) = r.lo {
                if !r.contains(v) {
                    v = if closed {
                        l
                    } else if int {
                        l + 1.0
                    } else {
                        l + 0.5
                    };
                }
            }
        }
        if int {
            format!("{}", v as i64)
        } else {
            let t = fmt_num(v);
            if t.contains(['.', 'e']) {
                t
            } else {
                format!("{t}.0")
            }
        }
    };
    match &prm.ty {
        TypeExpr::Scalar(crate::ast::ScalarType::Int) => pick(int_sample, true),
        TypeExpr::Scalar(crate::ast::ScalarType::Bool) => "false".into(),
        TypeExpr::Scalar(crate::ast::ScalarType::Schedule) => "0.001".into(),
        TypeExpr::Scalar(crate::ast::ScalarType::Chain) => "sgd(learning_rate: 0.1)".into(),
        TypeExpr::Scalar(_) => pick(0.1, false),
        TypeExpr::List(crate::ast::ScalarType::Schedule) => "[0.1, 0.01]".into(),
        TypeExpr::List(crate::ast::ScalarType::Int) => "[10]".into(),
        TypeExpr::List(_) => "[0.9, 0.999]".into(),
        TypeExpr::Map(..) => "{10: 0.5}".into(),
    }
}

/// A whole recipe using `d`, with its required arguments filled in. Where `d` `requires`
/// something of its arguments, the first of these that compiles: the optional arguments
/// that default to `none` given too, or one of them, or none; whole numbers 10 each, or
/// 10, 20, 30, … (a warmup shorter than the run).
fn example(d: &Def) -> String {
    if d.kind == DefKind::Function {
        return function_example(d);
    }
    let first = example_with(d, Optional::All, false);
    if d.requires.is_empty() {
        return first;
    }
    let mut choices = vec![Optional::All];
    choices.extend(
        d.params
            .iter()
            .filter(|p| is_none_default(p))
            .map(|p| Optional::Only(p.name.as_str())),
    );
    choices.push(Optional::Neither);
    for rising in [false, true] {
        for &given in &choices {
            let text = example_with(d, given, rising);
            if !crate::compile("example.anneal", &text).has_errors() {
                return text;
            }
        }
    }
    first
}

/// A function's example: a transform that calls it on the gradient — as a matrix, or per
/// element, whichever the function takes — with sample values for its other parameters (a
/// list from a parameter of the transform).
fn function_example(d: &Def) -> String {
    use crate::ast::ScalarType;
    let lists: Vec<&HyperParam> = d
        .params
        .iter()
        .filter(|p| matches!(p.ty, TypeExpr::List(_)))
        .collect();
    let hypers: Vec<String> = lists
        .iter()
        .map(|p| format!("{}: [real] = [1.5, -0.5, 0.0]", p.name))
        .collect();
    let text = |value: &str, wrap: (&str, &str)| {
        let args: Vec<String> = d
            .params
            .iter()
            .map(|p| match &p.ty {
                TypeExpr::List(_) => p.name.clone(),
                TypeExpr::Scalar(ScalarType::Int) => "5".to_string(),
                TypeExpr::Scalar(ScalarType::Bool) => "true".to_string(),
                _ => value.to_string(),
            })
            .collect();
        format!(
            "import {}.{{{}}}

transform uses_it({}) {{
  grad = {}{}({}){}
}}

recipe example {{
  steps 100
  update = uses_it()
}}
",
            d.module,
            d.name,
            hypers.join(", "),
            wrap.0,
            d.name,
            args.join(", "),
            wrap.1
        )
    };
    let as_matrix = text(
        "matrix(grad) / (norm(grad, tensor) + 1)",
        ("elements(", ")"),
    );
    if crate::compile("example.anneal", &as_matrix)
        .diagnostics
        .is_empty()
    {
        return as_matrix;
    }
    text("grad", ("", ""))
}

/// Which of the optional arguments that default to `none` an example gives.
#[derive(Clone, Copy)]
enum Optional<'a> {
    All,
    Only(&'a str),
    Neither,
}

fn is_none_default(p: &HyperParam) -> bool {
    p.default
        .as_ref()
        .is_some_and(|v| v.as_f64().is_some_and(f64::is_nan))
}

/// The example recipe with the required arguments and the optional ones `given` picks.
fn example_with(d: &Def, given: Optional, rising: bool) -> String {
    let given = |p: &HyperParam| match given {
        Optional::All => is_none_default(p),
        Optional::Only(name) => p.name == name,
        Optional::Neither => false,
    };
    let mut ints = 0.0;
    let args: Vec<String> = d
        .params
        .iter()
        .filter(|p| p.default.is_none() || (!d.requires.is_empty() && given(p)))
        .map(|p| {
            if p.ty == TypeExpr::Scalar(crate::ast::ScalarType::Int) {
                ints += 1.0;
            }
            let int_sample = if rising { 10.0 * ints } else { 10.0 };
            format!("{}: {}", p.name, sample(p, int_sample))
        })
        .collect();
    let call = format!("{}({})", d.name, args.join(", "));
    let item = if d.kind == DefKind::Schedule {
        format!("schedule lr = {call}")
    } else {
        format!("update = {call}")
    };
    // A chain argument's sample stage is Optax's sgd.
    let chain = TypeExpr::Scalar(crate::ast::ScalarType::Chain);
    let imports = match d
        .params
        .iter()
        .any(|p| p.default.is_none() && p.ty == chain)
    {
        true if d.module == "std.optax" => format!("import std.optax.{{{}, sgd}}\n", d.name),
        true => format!(
            "import {}.{{{}}}\nimport std.optax.{{sgd}}\n",
            d.module, d.name
        ),
        false => format!("import {}.{{{}}}\n", d.module, d.name),
    };
    format!("{imports}\nrecipe example {{\n  steps 100\n  {item}\n}}\n")
}

/// One entry as terminal text.
pub fn render_text(d: &DefDoc) -> String {
    let mut s = format!(
        "{} {}.{}    ({})\n\n",
        d.kind.keyword(),
        d.module,
        d.name,
        d.location
    );
    if !d.text.is_empty() {
        s.push_str(&wrap(&d.text, 88));
        s.push_str("\n\n");
    }
    if let Some(c) = &d.chain {
        s.push_str(&format!("  = {c}\n\n"));
    }
    if d.params.is_empty() {
        s.push_str("parameters: none\n");
    } else {
        s.push_str("parameters:\n");
        for p in &d.params {
            s.push_str(&format!("  {}: {}", p.name, p.ty));
            if let Some(r) = &p.range {
                s.push_str(&format!("  {r}"));
            }
            match &p.default {
                Some(v) => s.push_str(&format!("  = {v}")),
                None => s.push_str("  (required)"),
            }
            s.push('\n');
        }
    }
    s.push_str("\nexample:\n");
    for line in d.example.lines() {
        s.push_str(&format!("  {line}\n"));
    }
    s
}

/// Every entry as the markdown reference (`spec/stdlib/reference.md`).
pub fn render_markdown(docs: &[DefDoc]) -> String {
    let mut s = String::from(
        "# Standard library reference\n\n\
         Generated from the library's own source by `anneal doc --markdown`; a test keeps it\n\
         current. Formulas, sources and the differences between the Optax and PyTorch\n\
         variants are in each entry's text; `spec/stdlib.md` compares the two families.\n",
    );
    let mut module = "";
    for d in docs {
        if d.module != module {
            module = &d.module;
            s.push_str(&format!("\n## `{module}`\n"));
        }
        s.push_str(&format!("\n### `{}` ({})\n\n", d.name, d.kind.keyword()));
        if !d.text.is_empty() {
            s.push_str(&d.text);
            s.push_str("\n\n");
        }
        if let Some(c) = &d.chain {
            s.push_str(&format!("Chain: `{c}`.\n\n"));
        }
        if !d.params.is_empty() {
            s.push_str("| parameter | type | range | default |\n|---|---|---|---|\n");
            for p in &d.params {
                s.push_str(&format!(
                    "| `{}` | `{}` | {} | {} |\n",
                    p.name,
                    p.ty,
                    p.range
                        .as_deref()
                        .map(|r| format!("`{r}`"))
                        .unwrap_or_default(),
                    p.default
                        .as_deref()
                        .map(|v| format!("`{v}`"))
                        .unwrap_or_else(|| "required".into())
                ));
            }
            s.push('\n');
        }
        s.push_str(&format!("```anneal\n{}```\n", d.example));
    }
    s
}

fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for w in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + w.len() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    out.push_str(&line);
    out
}
