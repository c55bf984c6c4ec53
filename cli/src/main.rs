//! The `anneal` command: check, build, schedule and conformance over recipe files.
//! Each subcommand is a thin shell over the compiler and runtime crates; all user-facing
//! errors come back as diagnostics or as one-line messages naming a path and a fix.

mod plot;
mod repl;
mod run;

/// `print!` that ignores a closed stdout (`anneal doc | head`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `println!` that ignores a closed stdout.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod bench;
mod dist;
mod export;
mod plan;

use anneal_compiler::{compile, diagnostic, Compilation};
use anneal_runtime::conformance;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "anneal",
    version,
    about = "A typed, compiled language for deep-learning training recipes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Type-check a recipe file and report every mistake at once.
    Check {
        /// The recipe file.
        file: PathBuf,
        /// Print diagnostics as JSON instead of rendered reports.
        #[arg(long)]
        json: bool,
    },
    /// Compile a recipe and print an intermediate form, or explain its fused step.
    Build {
        file: PathBuf,
        /// What to print.
        #[arg(long, value_enum, default_value_t = Emit::Ir)]
        emit: Emit,
        /// Print the fused step's passes: buffers read and written, bytes per parameter,
        /// and the same figure without fusion.
        #[arg(long)]
        explain: bool,
        /// With --explain: print one JSON object.
        #[arg(long, requires = "explain")]
        json: bool,
    },
    /// Time the compiled update step against the memory-bandwidth roofline.
    Bench {
        #[command(flatten)]
        args: bench::BenchArgs,
    },
    /// Write the fused step for other projects: an object file and a C header.
    Export {
        #[command(flatten)]
        args: export::ExportArgs,
    },
    /// What a recipe's parallelism plan costs: memory per device, communication, bubble.
    Plan {
        #[command(flatten)]
        args: plan::PlanArgs,
    },
    /// Train a built-in model on a CSV data set with a recipe.
    Run {
        /// The recipe file.
        file: PathBuf,
        #[command(flatten)]
        args: run::RunArgs,
    },
    /// Define, compile and try recipes interactively: step a model, inspect, plot.
    ///
    /// With input from a pipe or file, runs it as a script and exits non-zero at the first
    /// error.
    Repl {
        /// A recipe file to load first.
        file: Option<PathBuf>,
    },
    /// Plot runs' metrics files (from `anneal run --metrics`): one curve per file.
    Plot {
        /// Metrics files: one JSON object per step each.
        #[arg(required = true)]
        metrics: Vec<PathBuf>,
        /// Plot only this metric (e.g. `test_accuracy`, `loss`), one panel.
        #[arg(long)]
        metric: Option<String>,
        /// The image to write (.png or .svg).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Print or plot the learning rate of every schedule in a recipe.
    Schedule {
        file: PathBuf,
        /// Number of steps to evaluate (default: the recipe's `steps`, else 100).
        #[arg(long)]
        steps: Option<u64>,
        /// Print one JSON object: {"steps": N, "schedules": {name: [values]}}.
        #[arg(long)]
        json: bool,
        /// Write a plot (.png or .svg) instead of printing a table.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
    /// Show the documentation of a standard-library definition (or list them all).
    Doc {
        /// A name such as `adamw` or `std.torch.AdamW`; omit to list every definition.
        name: Option<String>,
        /// Print the whole library reference as markdown.
        #[arg(long)]
        markdown: bool,
    },
    /// Check anneal against golden numbers from Optax and PyTorch.
    Conformance {
        /// Case files or directories (searched recursively for *.json).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The back end that runs the cases.
        #[arg(long, value_parser = BackendParser::ANY, default_value = "interp")]
        backend: Backend,
        /// Print {"passed", "failed", "cases": [...]} as JSON.
        #[arg(long)]
        json: bool,
        /// Print the recipe source each case becomes, and nothing else.
        #[arg(long)]
        emit_recipe: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Emit {
    /// The typed IR: definitions, arenas and the elaborated recipe.
    Ir,
    /// The fused step's passes as LLVM IR, after the O3 pipeline for this CPU.
    LlvmIr,
    /// The fused step's passes as a Python module of Triton kernels (`backend="triton"`).
    Triton,
}

pub use anneal_compiler::backends::Backend;

/// `--backend`'s values: the compiler's registry of back ends (`backends::BACKENDS`), with
/// their help; `native` keeps those that write native code (for `export`).
#[derive(Clone, Copy)]
pub struct BackendParser {
    native: bool,
}

impl BackendParser {
    pub const ANY: BackendParser = BackendParser { native: false };
    pub const NATIVE: BackendParser = BackendParser { native: true };

    fn entries(self) -> impl Iterator<Item = &'static anneal_compiler::backends::Entry> {
        anneal_compiler::backends::BACKENDS
            .iter()
            .filter(move |e| e.native || !self.native)
    }
}

impl clap::builder::TypedValueParser for BackendParser {
    type Value = Backend;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Backend, clap::Error> {
        // clap's own parser for the names gives the usual "invalid value … possible
        // values" error.
        let names: Vec<&str> = self.entries().map(|e| e.name).collect();
        let name = clap::builder::PossibleValuesParser::new(names).parse_ref(cmd, arg, value)?;
        Backend::parse(&name).ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("unknown back end `{name}`\n"),
            )
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(self.entries().map(|e| {
            clap::builder::PossibleValue::new(e.name).help(e.about)
        })))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The front end recurses over expressions; a big stack keeps long (but legal) recipe
    // expressions from overflowing it.
    let worker = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || dispatch(cli));
    match worker.map(|h| h.join()) {
        Ok(Ok(code)) => code,
        _ => fail(anneal_compiler::error::Error::internal(
            "the command thread stopped unexpectedly",
        )),
    }
}

fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { file, json } => cmd_check(&file, json),
        Command::Build {
            file,
            emit,
            explain,
            json,
        } => cmd_build(&file, emit, explain, json),
        Command::Bench { args } => match bench::bench(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Command::Plan { args } => match plan::plan(&args) {
            Ok(text) => {
                outln!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Export { args } => match export::export(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Command::Schedule {
            file,
            steps,
            json,
            plot,
        } => cmd_schedule(&file, steps, json, plot.as_deref()),
        Command::Doc { name, markdown } => cmd_doc(name.as_deref(), markdown),
        Command::Repl { file } => repl::repl(file.as_deref()),
        Command::Plot {
            metrics,
            metric,
            output,
        } => match plot_metrics(&metrics, metric.as_deref(), &output) {
            Ok(()) => {
                eprintln!("wrote {}", output.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Run { file, args } => match if dist::wanted(&args) {
            dist::run(&file, &args)
        } else {
            run::run(&file, &args)
        } {
            Ok(s) if s.quiet => ExitCode::SUCCESS,
            Ok(s) if args.json => {
                outln!("{}", serde_json::to_string(&s).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(s) => {
                let quality = match (s.test_accuracy, s.test_mse) {
                    (Some(a), _) => format!("test accuracy {a:.4}"),
                    (_, Some(m)) => format!("test mse {m:.4}"),
                    _ => String::new(),
                };
                outln!(
                    "{}: {} steps in {:.2} s ({:.0} steps/s), final loss {:.4}{}{quality}",
                    s.recipe,
                    s.steps,
                    s.seconds,
                    s.steps_per_second,
                    s.final_loss,
                    if quality.is_empty() { "" } else { ", " }
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Conformance {
            paths,
            backend,
            json,
            emit_recipe,
        } => cmd_conformance(&paths, backend, json, emit_recipe),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

/// Reads and compiles a recipe file; prints its diagnostics (errors and warnings) unless
/// `quiet`. `None` when the file cannot be read or has errors.
fn load(file: &Path, quiet: bool) -> Option<Compilation> {
    let text = match std::fs::read(file) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                eprintln!(
                    "error: {} is not UTF-8 text; save the recipe as UTF-8",
                    file.display()
                );
                return None;
            }
        },
        Err(e) => {
            eprintln!("error: cannot read {}: {e}; check the path", file.display());
            return None;
        }
    };
    let c = compile(&file.display().to_string(), &text);
    if !quiet && !c.diagnostics.is_empty() {
        let color = std::io::stderr().is_terminal();
        eprint!("{}", diagnostic::render(&c.diagnostics, &c.sources, color));
    }
    if c.has_errors() {
        let errors = c.diagnostics.iter().filter(|d| d.is_error()).count();
        let warnings = c.diagnostics.len() - errors;
        if !quiet {
            eprintln!(
                "error: {} has {errors} error{} and {warnings} warning{}",
                file.display(),
                if errors == 1 { "" } else { "s" },
                if warnings == 1 { "" } else { "s" }
            );
        }
        return None;
    }
    Some(c)
}

fn cmd_check(file: &Path, json: bool) -> ExitCode {
    if json {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                return fail(format!(
                    "cannot read {}: {e}; check the path",
                    file.display()
                ))
            }
        };
        let c = compile(&file.display().to_string(), &text);
        outln!("{}", diagnostic::to_json(&c.diagnostics, &c.sources));
        return if c.has_errors() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match load(file, false) {
        Some(c) => {
            for r in c.recipes() {
                if !r.capabilities.is_empty() {
                    let needs: Vec<&str> = r.capabilities.iter().map(|c| c.describe()).collect();
                    eprintln!(
                        "recipe `{}` needs from the model: {}",
                        r.name,
                        needs.join(", ")
                    );
                }
            }
            let warnings = c.diagnostics.len();
            let recipes = c.recipes().len();
            eprintln!(
                "checked {}: {recipes} recipe{}, {warnings} warning{}",
                file.display(),
                if recipes == 1 { "" } else { "s" },
                if warnings == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

fn cmd_build(file: &Path, emit: Emit, explain: bool, json: bool) -> ExitCode {
    let Some(c) = load(file, false) else {
        return ExitCode::FAILURE;
    };
    if explain {
        let Some(recipe) = c.recipes().first() else {
            return fail(format!(
                "{} has no recipe to explain; add `recipe NAME {{ update = ... }}`",
                file.display()
            ));
        };
        return match anneal_compiler::kernel::explain::explain(&c.program, recipe) {
            Ok(e) if json => {
                outln!("{}", serde_json::to_string(&e).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(e) => {
                outln!("{e}");
                ExitCode::SUCCESS
            }
            Err(why) => fail(format!(
                "recipe `{}` has no fused step: {why}; it runs on the interpreter",
                recipe.name
            )),
        };
    }
    match emit {
        Emit::Ir => out!("{}", anneal_compiler::print::print_program(&c.program)),
        Emit::LlvmIr | Emit::Triton => {
            let Some(recipe) = c.recipes().first() else {
                return fail(format!("{} has no recipe to compile", file.display()));
            };
            let ir = anneal_compiler::kernel::lower(&c.program, recipe)
                .map_err(|why| format!("recipe `{}` has no fused step: {why}", recipe.name))
                .and_then(|k| {
                    let text = match emit {
                        Emit::Triton => {
                            anneal_compiler::backends::triton::module(&k).map(|m| m.source)
                        }
                        _ => anneal_compiler::backends::llvm::ir(&k),
                    };
                    text.map_err(String::from)
                });
            match ir {
                Ok(text) => out!("{text}"),
                Err(e) => return fail(e),
            }
        }
    }
    ExitCode::SUCCESS
}

fn cmd_schedule(file: &Path, steps: Option<u64>, json: bool, plot_path: Option<&Path>) -> ExitCode {
    let Some(c) = load(file, false) else {
        return ExitCode::FAILURE;
    };
    let Some(recipe) = c.recipes().first() else {
        return fail(format!(
            "{} has no recipe; add `recipe NAME {{ schedule lr = ... }}`",
            file.display()
        ));
    };
    let n = steps.or(recipe.steps).unwrap_or(100);
    if n > 10_000_000 {
        return fail(format!(
            "--steps {n} is too many to print; use at most 10000000"
        ));
    }
    let curves = match anneal_runtime::schedule::curves(&c.program, recipe, n) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if curves.is_empty() {
        return fail(format!(
            "recipe `{}` has no schedules; bind one with `schedule lr = ...` or pass a schedule to an optimizer",
            recipe.name
        ));
    }
    if let Some(path) = plot_path {
        return match plot::schedules(path, &recipe.name, &curves) {
            Ok(()) => {
                eprintln!("wrote {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    if json {
        let map: serde_json::Map<String, serde_json::Value> = curves
            .iter()
            .map(|c| (c.name.clone(), serde_json::json!(c.values)))
            .collect();
        outln!("{}", serde_json::json!({"steps": n, "schedules": map}));
        return ExitCode::SUCCESS;
    }
    let names: Vec<&str> = curves.iter().map(|c| c.name.as_str()).collect();
    outln!(
        "{:>8}  {}",
        "step",
        names.iter().map(|n| format!("{n:>14}")).collect::<String>()
    );
    for k in 0..n as usize {
        let row: String = curves
            .iter()
            .map(|c| format!("{:>14.6e}", c.values[k]))
            .collect();
        outln!("{k:>8}  {row}");
    }
    ExitCode::SUCCESS
}

/// Reads a metrics file (one JSON object per line) and plots loss, lr and gradient norm.
/// One metric of a metrics file, per step; a step without it repeats the last value seen
/// (test accuracy is measured every few steps).
fn read_metric(path: &Path, name: &str) -> Result<Vec<f64>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut last = f64::NAN;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("{}:{}: not a JSON object: {e}", path.display(), i + 1))?;
        let x = &v[name];
        // Per-group values (lr): the first group's.
        if let Some(n) = x.as_f64().or_else(|| x.get(0).and_then(|g| g.as_f64())) {
            last = n;
        }
        out.push(last);
    }
    if out.is_empty() {
        return Err(format!(
            "{} holds no metrics; write one with `anneal run --metrics`",
            path.display()
        ));
    }
    if out.iter().all(|v| v.is_nan()) {
        return Err(format!(
            "{} has no `{name}`; metrics are loss, lr, grad_norm, loss_scale, and \
             test_accuracy with `anneal run --eval-every N`",
            path.display()
        ));
    }
    Ok(out)
}

/// Loss, learning rate and gradient norm (or just `metric`), one curve per file.
fn plot_metrics(paths: &[PathBuf], metric: Option<&str>, out: &Path) -> Result<(), String> {
    let label = |p: &PathBuf| {
        p.file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let panels: Vec<(&str, &str)> = match metric {
        Some(m) => vec![(m, m)],
        None => vec![
            ("loss", "loss"),
            ("lr", "learning rate"),
            ("grad_norm", "gradient norm"),
        ],
    };
    let mut drawn = Vec::new();
    for (key, title) in &panels {
        let mut curves = Vec::new();
        for p in paths {
            curves.push(anneal_runtime::schedule::Curve {
                name: if paths.len() == 1 {
                    (*key).to_string()
                } else {
                    label(p)
                },
                values: read_metric(p, key)?,
            });
        }
        drawn.push((*title, curves));
    }
    let title = if paths.len() == 1 {
        paths[0]
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        format!("{} runs", paths.len())
    };
    plot::run(out, &title, &drawn)
}

fn cmd_doc(name: Option<&str>, markdown: bool) -> ExitCode {
    use anneal_compiler::doc;
    let c = compile("<doc>", "");
    let docs = doc::library_docs(&c);
    if markdown {
        out!("{}", doc::render_markdown(&docs));
        return ExitCode::SUCCESS;
    }
    let Some(name) = name else {
        let mut module = "";
        for d in &docs {
            if d.module != module {
                module = &d.module;
                outln!("{module}");
            }
            let mut first: String = d.text.chars().take(72).collect();
            if d.text.chars().count() > 72 {
                first.push('…');
            }
            outln!(
                "  {:<38} {}",
                format!("{} {}", d.kind.keyword(), d.name),
                first
            );
        }
        return ExitCode::SUCCESS;
    };
    let found = doc::lookup(&docs, name);
    if found.is_empty() {
        let names = docs.iter().map(|d| d.name.as_str());
        let hint = match diagnostic::did_you_mean(name, names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "`anneal doc` lists every definition".to_string(),
        };
        return fail(format!("the standard library has no `{name}`; {hint}"));
    }
    for (i, d) in found.iter().enumerate() {
        if i > 0 {
            outln!();
        }
        out!("{}", doc::render_text(d));
    }
    ExitCode::SUCCESS
}

fn cmd_conformance(paths: &[PathBuf], backend: Backend, json: bool, emit_recipe: bool) -> ExitCode {
    let files = match conformance::collect_cases(paths) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    if emit_recipe {
        for f in &files {
            match conformance::load_case(f).and_then(|c| conformance::recipe_source(&c)) {
                Ok(src) => outln!("// {}\n{src}", f.display()),
                Err(e) => outln!("// {}: {e}", f.display()),
            }
        }
        return ExitCode::SUCCESS;
    }
    let report = conformance::run_files(&files, backend);
    if json {
        outln!("{}", report.to_json());
    } else {
        for case in &report.cases {
            if case.unsupported {
                outln!("UNSUPPORTED {}: {}", case.name, case.message);
            } else if !case.passed {
                outln!("FAIL {}: {}", case.name, case.message);
            }
        }
        let unsupported = match report.unsupported() {
            0 => String::new(),
            n => format!(", {n} unsupported on this back end (they run on the interpreter)"),
        };
        outln!(
            "{} passed, {} failed{unsupported}",
            report.passed(),
            report.failed()
        );
    }
    if report.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
