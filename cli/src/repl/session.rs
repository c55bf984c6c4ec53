//! The REPL's session: the definitions entered so far (compiled together after every
//! change), the model being trained and its optimizer state, the runs made, and the `:`
//! commands. Entry point: `Session::eval`, which takes one complete entry and returns the
//! text to print or an error to show; the line editor, script mode and unit tests all
//! drive the session through it. Training (`:step`, `:run`, `:runs`) is in `train`,
//! inspection (`:show`, `:plot`) in `inspect`.

mod inspect;
mod train;

pub use train::{INTERRUPTED, TRAINING};

use crate::run::{RunArgs, Setup};
use crate::Backend;
use anneal_compiler::ir::{self, Recipe};
use anneal_compiler::source::Sources;
use anneal_compiler::{compile, diagnostic, syntax, Compilation};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use train::{Record, Training};

/// The commands, for `:help` and completion: (name, arguments, what it does).
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (":help", "", "this list"),
    (":load", "FILE", "enter the definitions of a recipe file"),
    (
        ":model",
        "SPEC",
        "the model to train: mlp:64,128,10:tanh, softmax:64,10, linear:10,1, rosenbrock, quadratic:DIM:COND",
    ),
    (":data", "FILE", "the CSV data set to train on"),
    (":use", "RECIPE", "the recipe :step and :run train with (default: the last defined)"),
    (":step", "[N]", "N more steps (default 1) from where training stands"),
    (":run", "[N]", "a fresh run of N steps (default: the recipe's `steps`), kept for comparison"),
    (":runs", "", "the runs so far: steps, final loss, test accuracy"),
    (":show", "NAME", "a parameter, a state buffer (`v` or `AdamW.v`) or a schedule"),
    (":explain", "", "the fused step's passes and bytes per parameter"),
    (":backend", "NAME", "who runs the step: auto, interp, cranelift, llvm or wgsl (GPU); triton runs from Python"),
    (":plot", "loss|lr|gradnorm [FILE]", "a PNG of every run's curve, and a sparkline here"),
    (":list", "", "the definitions entered so far"),
    (":reset", "", "forget the weights, optimizer state and runs (definitions stay)"),
    (":save", "FILE", "the definitions as a recipe file that `anneal check` accepts"),
    (":quit", "", "leave (Ctrl-D too)"),
];

/// One top-level item the user entered, as its source text (with the comments above it).
#[derive(Clone)]
struct Item {
    key: Key,
    text: String,
}

/// What an item defines: a redefinition replaces the item with the same key.
#[derive(Clone, PartialEq, Debug)]
enum Key {
    Import(String),
    Def(&'static str, String),
    Recipe(String),
}

/// What one entry printed and how long compiling it took.
pub struct Reply {
    pub text: String,
    /// Front end plus code generation, when the entry defined something.
    pub compile_ms: Option<f64>,
    /// `:quit`.
    pub quit: bool,
}

impl Reply {
    fn text(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            compile_ms: None,
            quit: false,
        }
    }
}

pub struct Session {
    items: Vec<Item>,
    compiled: Option<Compilation>,
    /// The recipe `:step` and `:run` train.
    current: Option<String>,
    /// The folder recipe data paths are relative to (the last loaded file's).
    base: PathBuf,
    model: Option<String>,
    data: Option<PathBuf>,
    backend: Backend,
    training: Option<Training>,
    runs: Vec<Record>,
    /// Color in diagnostics.
    pub color: bool,
    /// A progress bar on `:run` (terminals only).
    pub progress: bool,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    pub fn new() -> Session {
        Session {
            items: Vec::new(),
            compiled: None,
            current: None,
            base: PathBuf::from("."),
            model: None,
            data: None,
            backend: Backend::Auto,
            training: None,
            runs: Vec::new(),
            color: false,
            progress: false,
        }
    }

    /// Runs one complete entry: a `:command` or one or more definitions.
    pub fn eval(&mut self, input: &str) -> Result<Reply, String> {
        let input = input.trim();
        if input
            .lines()
            .all(|l| l.trim().is_empty() || l.trim().starts_with("//"))
        {
            return Ok(Reply::text(""));
        }
        if let Some(cmd) = input.strip_prefix(':') {
            return self.command(cmd);
        }
        self.define(input)
    }

    /// Every name completion offers: keywords, the library's definitions and modules, the
    /// session's definitions and recipes, and the model's parameters.
    pub fn words(&self) -> Vec<String> {
        let mut out: Vec<String> = KEYWORDS.iter().map(|k| k.to_string()).collect();
        out.extend(library_names().iter().cloned());
        for item in &self.items {
            match &item.key {
                Key::Def(_, n) | Key::Recipe(n) => out.push(n.clone()),
                Key::Import(_) => {}
            }
        }
        if let Some(t) = &self.training {
            out.extend(t.names.iter().cloned());
        }
        out.sort();
        out.dedup();
        out
    }

    fn command(&mut self, line: &str) -> Result<Reply, String> {
        let mut parts = line.splitn(2, char::is_whitespace);
        let name = parts.next().unwrap_or("");
        let arg = parts.next().map(str::trim).unwrap_or("");
        match name {
            "help" | "h" | "?" => Ok(Reply::text(help())),
            "quit" | "q" | "exit" => Ok(Reply {
                quit: true,
                ..Reply::text("")
            }),
            "load" => {
                let path = Path::new(need(arg, ":load FILE")?);
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}; check the path", path.display()))?;
                let reply = self.define_from(&text, &path.display().to_string())?;
                self.base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
                Ok(reply)
            }
            "model" => {
                self.model = Some(need(arg, ":model mlp:64,128,10:tanh")?.to_string());
                self.forget_training();
                Ok(Reply::text(format!(
                    "model {arg} (checked against the data at the next :step or :run)"
                )))
            }
            "data" => {
                let path = PathBuf::from(need(arg, ":data FILE.csv")?);
                // Load it now, so a wrong path is reported here rather than at :run.
                anneal_runtime::data::load_csv(&path)?;
                self.data = Some(path);
                self.forget_training();
                Ok(Reply::text(format!("data {arg}")))
            }
            "use" => {
                let name = need(arg, ":use RECIPE")?;
                self.recipe(Some(name))?;
                self.current = Some(name.to_string());
                Ok(Reply::text(format!("training recipe `{name}`")))
            }
            "step" => {
                let n = count(arg, 1)?;
                self.advance(n, false).map(Reply::text)
            }
            "run" => {
                let n = match arg {
                    "" => self
                        .recipe(None)?
                        .steps
                        .ok_or("how many steps? write `:run N` or give the recipe `steps N`")?
                        as usize,
                    _ => count(arg, 1)?,
                };
                self.training = None;
                self.advance(n, true).map(Reply::text)
            }
            "runs" => Ok(Reply::text(self.runs_table())),
            "show" => self.show(need(arg, ":show NAME")?).map(Reply::text),
            "explain" => {
                let (c, recipe) = self.compiled_recipe(None)?;
                anneal_compiler::kernel::explain::explain(&c.program, recipe)
                    .map(|e| Reply::text(e.to_string()))
                    .map_err(|why| {
                        format!(
                            "recipe `{}` has no fused step: {why}; it runs on the interpreter",
                            recipe.name
                        )
                    })
            }
            "backend" => {
                let b = match Backend::parse(arg) {
                    Some(b) => b,
                    None if arg.is_empty() => {
                        return Ok(Reply::text(format!("back end: {}", self.backend.name())))
                    }
                    None => {
                        return Err(format!(
                            "unknown back end `{arg}`; choose {}",
                            Backend::choices()
                        ))
                    }
                };
                self.backend = b;
                // The optimizer state is the same on every back end: training goes on.
                Ok(Reply::text(format!(
                    "back end: {} (from the next step)",
                    b.name()
                )))
            }
            "plot" => self.plot(arg).map(Reply::text),
            "list" => Ok(Reply::text(self.list())),
            "reset" => {
                self.training = None;
                self.runs.clear();
                Ok(Reply::text(
                    "weights, optimizer state and runs forgotten; definitions kept",
                ))
            }
            "save" => self
                .save(Path::new(need(arg, ":save FILE")?))
                .map(Reply::text),
            other => {
                let names = COMMANDS.iter().map(|(n, _, _)| &n[1..]);
                Err(match diagnostic::did_you_mean(other, names) {
                    Some(s) => format!("unknown command `:{other}`; did you mean `:{s}`?"),
                    None => format!("unknown command `:{other}`; `:help` lists them"),
                })
            }
        }
    }

    fn define(&mut self, input: &str) -> Result<Reply, String> {
        self.define_from(input, "<repl>")
    }

    /// Enters the items of `text`: each replaces the item of the same name or is added;
    /// the whole session is compiled, and nothing changes when it has errors.
    fn define_from(&mut self, text: &str, name: &str) -> Result<Reply, String> {
        let start = Instant::now();
        let mut sources = Sources::default();
        let file = sources.add(name, text);
        let (ast, errors) = syntax::parse(file, text);
        if diagnostic::has_errors(&errors) {
            return Err(diagnostic::render(&errors, &sources, self.color));
        }
        if let Some(m) = &ast.module {
            return Err(format!(
                "a session has no module line (`module {}`); enter the definitions alone",
                m.name
            ));
        }
        let new = split_items(text, &ast);
        if new.is_empty() {
            return Err(
                "nothing to define; enter an optimizer, transform, schedule, recipe or import, \
                 or a :command (`:help`)"
                    .into(),
            );
        }
        let mut items = self.items.clone();
        let mut replaced = Vec::new();
        for item in &new {
            match items.iter_mut().find(|i| i.key == item.key) {
                Some(old) => {
                    replaced.push(old.text != item.text);
                    old.text = item.text.clone();
                }
                None => {
                    replaced.push(false);
                    items.push(item.clone());
                }
            }
        }
        let session_text = join(&items);
        let c = compile("<repl>", &session_text);
        if c.has_errors() {
            return Err(diagnostic::render(&c.diagnostics, &c.sources, self.color));
        }
        let check_ms = start.elapsed().as_secs_f64() * 1e3;
        let mut out = String::new();
        if !c.diagnostics.is_empty() {
            out.push_str(&diagnostic::render(&c.diagnostics, &c.sources, self.color));
        }
        let mut codegen_ms = 0.0;
        for (item, was_replaced) in new.iter().zip(&replaced) {
            let verb = if *was_replaced {
                "redefined"
            } else {
                "defined"
            };
            match &item.key {
                Key::Import(text) => {
                    let _ = writeln!(out, "{text}");
                }
                Key::Def(kind, n) => {
                    let _ = writeln!(out, "{verb} {kind} {n}");
                }
                Key::Recipe(n) => {
                    let recipe = c.recipes().iter().find(|r| &r.name == n);
                    let (line, ms) = match recipe {
                        Some(r) => self.codegen(&c, r),
                        None => (String::new(), 0.0),
                    };
                    codegen_ms += ms;
                    let _ = writeln!(out, "{verb} recipe {n}{line}");
                    self.current = Some(n.clone());
                }
            }
        }
        // A changed definition may change what the training runs: start it afresh.
        if replaced.iter().any(|r| *r) && self.training.is_some() {
            self.training = None;
            out.push_str("(training restarts at the next :step: a definition changed)\n");
        }
        self.items = items;
        self.compiled = Some(c);
        let total = check_ms + codegen_ms;
        let _ = write!(out, "checked in {check_ms:.1} ms");
        if codegen_ms > 0.0 {
            let _ = write!(out, ", code generated in {codegen_ms:.1} ms");
        }
        Ok(Reply {
            text: out,
            compile_ms: Some(total),
            quit: false,
        })
    }

    /// Compiles `recipe`'s fused step on the session's back end, as `:step` will run it;
    /// says which back end and what it cost.
    fn codegen(&self, c: &Compilation, recipe: &Recipe) -> (String, f64) {
        use anneal_compiler::backends::{self, Backend as B};
        let chain: Vec<&str> = recipe
            .stages
            .iter()
            .map(|s| written_name(c, recipe, s))
            .collect();
        let chain = if chain.is_empty() {
            String::new()
        } else {
            format!(": {}", chain.join(" |> "))
        };
        let backend = self.backend;
        if backend == B::Interp
            || recipe.stages.is_empty()
            || backends::is_builtin(&c.program, recipe)
        {
            return (chain, 0.0);
        }
        let start = Instant::now();
        let kernel = match anneal_compiler::kernel::lower(&c.program, recipe) {
            Ok(k) => k,
            Err(why) => return (format!("{chain} (runs on the interpreter: {why})"), 0.0),
        };
        if backend == B::Wgsl {
            let ms = start.elapsed().as_secs_f64() * 1e3;
            return match backends::wgsl::shaders(&kernel) {
                Ok(s) => (format!("{chain} (wgsl, {} shaders)", s.len()), ms),
                Err(e) => (format!("{chain} (code generation failed: {e})"), ms),
            };
        }
        // `auto` compiles with Cranelift, as the stepper does.
        let native = if backend == B::Llvm {
            B::Llvm
        } else {
            B::Cranelift
        };
        let (compiled, name) = (backends::compile(&kernel, native), native.name());
        let ms = start.elapsed().as_secs_f64() * 1e3;
        match compiled {
            Ok(code) if code.cached => (format!("{chain} ({name}, cached)"), ms),
            Ok(_) => (format!("{chain} ({name} {ms:.1} ms)"), ms),
            Err(e) => (format!("{chain} (code generation failed: {e})"), ms),
        }
    }

    /// The recipe `name` (or the current one) in the compiled session.
    fn compiled_recipe(&self, name: Option<&str>) -> Result<(&Compilation, &Recipe), String> {
        let c = self
            .compiled
            .as_ref()
            .ok_or("no recipe yet; define one (`recipe NAME { update = ... }`) or `:load FILE`")?;
        let name = name
            .or(self.current.as_deref())
            .ok_or("no recipe yet; define one (`recipe NAME { update = ... }`) or `:load FILE`")?;
        let recipe = c.recipes().iter().find(|r| r.name == name).ok_or_else(|| {
            let names = c.recipes().iter().map(|r| r.name.as_str());
            match diagnostic::did_you_mean(name, names) {
                Some(s) => format!("no recipe `{name}`; did you mean `{s}`?"),
                None => format!("no recipe `{name}`; `:list` shows the definitions"),
            }
        })?;
        Ok((c, recipe))
    }

    fn recipe(&self, name: Option<&str>) -> Result<&Recipe, String> {
        self.compiled_recipe(name).map(|(_, r)| r)
    }

    fn forget_training(&mut self) {
        self.training = None;
    }

    fn list(&self) -> String {
        if self.items.is_empty() {
            return "no definitions yet".into();
        }
        self.items
            .iter()
            .map(|i| match &i.key {
                Key::Import(t) => t.clone(),
                Key::Def(kind, n) => format!("{kind} {n}"),
                Key::Recipe(n) if self.current.as_deref() == Some(n) => {
                    format!("recipe {n}   (current)")
                }
                Key::Recipe(n) => format!("recipe {n}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The session's definitions as one recipe file; the model and data chosen with
    /// commands go in a comment.
    fn save(&self, path: &Path) -> Result<String, String> {
        if self.items.is_empty() {
            return Err("nothing to save: no definitions yet".into());
        }
        let mut text = String::from("// Saved from an anneal REPL session.\n");
        if let Some(m) = &self.model {
            let _ = writeln!(text, "// :model {m}");
        }
        if let Some(d) = &self.data {
            let _ = writeln!(text, "// :data {}", d.display());
        }
        text.push('\n');
        text.push_str(&join(&self.items));
        text.push('\n');
        anneal_runtime::atomic::write_with(path, |f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(format!(
            "wrote {} ({} definition{})",
            path.display(),
            self.items.len(),
            if self.items.len() == 1 { "" } else { "s" }
        ))
    }
}

/// The language's keywords, for completion and highlighting.
pub const KEYWORDS: &[&str] = &[
    "import",
    "optimizer",
    "transform",
    "schedule",
    "function",
    "recipe",
    "state",
    "let",
    "if",
    "then",
    "else",
    "and",
    "or",
    "not",
    "in",
    "steps",
    "update",
    "model",
    "data",
    "groups",
    "rest",
    "except",
    "precision",
    "curriculum",
    "after",
    "observe",
    "skip",
    "builtin",
    "true",
    "false",
    "real",
    "int",
    "bool",
    "str",
    "tensor",
    "scalar",
    "element",
    "row",
    "col",
    "param",
    "grad",
    "count",
    "chain",
];

/// The standard library's definitions and modules, computed once.
fn library_names() -> &'static [String] {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let c = compile("<names>", "");
        let mut out: Vec<String> = anneal_compiler::doc::library_docs(&c)
            .into_iter()
            .map(|d| d.name)
            .collect();
        out.extend(
            anneal_compiler::stdlib::MODULES
                .iter()
                .map(|(m, _, _)| m.to_string()),
        );
        out
    })
}

/// Each import, definition and recipe of `text`, with the comments above it.
fn split_items(text: &str, ast: &anneal_compiler::ast::Ast) -> Vec<Item> {
    let mut spans: Vec<(usize, usize, Key)> = Vec::new();
    for i in &ast.imports {
        let r = i.span.range();
        spans.push((
            r.start,
            r.end,
            Key::Import(text[r.clone()].trim().to_string()),
        ));
    }
    for d in &ast.defs {
        let r = d.span.range();
        spans.push((
            r.start,
            r.end,
            Key::Def(d.kind.keyword(), d.name.name.clone()),
        ));
    }
    for rc in &ast.recipes {
        let r = rc.span.range();
        spans.push((r.start, r.end, Key::Recipe(rc.name.name.clone())));
    }
    spans.sort_by_key(|s| s.0);
    let mut out = Vec::new();
    let mut from = 0;
    for (start, end, key) in spans {
        // The comments between the previous item and this one belong to this one.
        let lead = text.get(from..start).unwrap_or("");
        let lead: String = lead
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        out.push(Item {
            key,
            text: format!("{lead}{}", text.get(start..end).unwrap_or("").trim_end()),
        });
        from = end;
    }
    out
}

/// A stage's name as the recipe wrote it (`AdamW`) rather than the definition it
/// elaborates to (`Adam`), when that call made this one stage; the definition's name for
/// the stages of a chain (optax's `sgd` is `trace` then `scale`).
fn written_name<'c>(c: &'c Compilation, recipe: &Recipe, stage: &ir::StageInst) -> &'c str {
    let def = c.program.defs[stage.def].name.as_str();
    if recipe
        .stages
        .iter()
        .filter(|s| s.span == stage.span)
        .count()
        != 1
    {
        return def;
    }
    c.sources
        .text(stage.span.file)
        .get(stage.span.range())
        .and_then(|t| {
            t.split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .next()
        })
        .filter(|n| !n.is_empty())
        .unwrap_or(def)
}

fn join(items: &[Item]) -> String {
    items
        .iter()
        .map(|i| i.text.as_str())
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn need<'a>(arg: &'a str, usage: &str) -> Result<&'a str, String> {
    if arg.is_empty() {
        Err(format!("missing argument; write `{usage}`"))
    } else {
        Ok(arg)
    }
}

fn count(arg: &str, default: usize) -> Result<usize, String> {
    if arg.is_empty() {
        return Ok(default);
    }
    match arg.replace('_', "").parse::<usize>() {
        Ok(0) | Err(_) => Err(format!(
            "`{arg}` is not a step count; give a whole number of at least 1"
        )),
        Ok(n) if n > 100_000_000 => Err(format!("{n} steps is too many; use at most 100000000")),
        Ok(n) => Ok(n),
    }
}

fn help() -> String {
    let mut out = String::from(
        "Enter definitions (optimizer, transform, schedule, recipe, import); a definition \
         continues until its braces close, and entering a name again redefines it.\n",
    );
    for (name, args, what) in COMMANDS {
        let _ = writeln!(out, "  {:<34} {what}", format!("{name} {args}"));
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(text: &str) -> Vec<Item> {
        let (ast, errors) = syntax::parse(0, text);
        assert!(errors.is_empty(), "{errors:?}");
        split_items(text, &ast)
    }

    #[test]
    fn each_item_keeps_the_comments_above_it() {
        let got = items(
            "import std.optax.{sgd}\n\n// first\n/// documented\noptimizer o(lr: real = 0.1) {\n  param -= lr * grad\n}\nrecipe r { update = o() }\n",
        );
        let keys: Vec<&Key> = got.iter().map(|i| &i.key).collect();
        assert_eq!(
            keys,
            [
                &Key::Import("import std.optax.{sgd}".into()),
                &Key::Def("optimizer", "o".into()),
                &Key::Recipe("r".into()),
            ]
        );
        assert!(got[1]
            .text
            .starts_with("// first\n/// documented\noptimizer o("));
        assert!(got[1].text.ends_with('}'));
        assert_eq!(got[2].text, "recipe r { update = o() }");
    }

    #[test]
    fn a_redefinition_replaces_the_item_in_place() {
        let mut s = Session::new();
        s.eval("optimizer a(lr: real = 0.1) { param -= lr * grad }")
            .expect("defines a");
        s.eval("optimizer b(lr: real = 0.1) { param -= lr * grad }")
            .expect("defines b");
        let reply = s
            .eval("optimizer a(lr: real = 0.2) { param -= lr * grad }")
            .expect("redefines a");
        assert!(
            reply.text.contains("redefined optimizer a"),
            "{}",
            reply.text
        );
        assert!(reply.compile_ms.is_some());
        assert_eq!(s.list(), "optimizer a\noptimizer b");
        assert!(s.items[0].text.contains("0.2"));
        // A failed entry changes nothing.
        assert!(s
            .eval("optimizer a(lr: real = 0.3) { param -= lr * gradd }")
            .is_err());
        assert!(s.items[0].text.contains("0.2"));
    }
}
