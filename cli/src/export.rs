//! `anneal export FILE --target c -o DIR`: the recipe's fused step as an object file
//! (Cranelift) and a C header with the step driver (`backends::c`). `--target wgsl`: one
//! WGSL compute shader per pass and `manifest.json` (`backends::wgsl::manifest`), for a
//! program's own wgpu or WebGPU code. With `--reference N` it also writes what the
//! interpreter computes for N steps of a small fixed problem (the one `examples/c/demo.c`
//! and `examples/wgsl_host` run), so a host can check the exported step against it.

use std::io::Write as _;
use std::path::PathBuf;

use anneal_compiler::backends::{self, c, wgsl};
use anneal_compiler::error::Error;
use anneal_compiler::interp::Interpreter;
use anneal_compiler::kernel::lower;
use anneal_runtime::atomic::write_with;
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, ValueEnum)]
pub enum Target {
    /// An object file and a C header (`NAME.o`, `NAME.h`).
    C,
    /// WGSL compute shaders (`passN.wgsl`) and `manifest.json`.
    Wgsl,
    /// A DeepSpeed config (`-o` names the JSON file).
    Deepspeed,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The recipe file (its first recipe is exported).
    pub file: PathBuf,
    /// What to write.
    #[arg(long, value_enum, default_value_t = Target::C)]
    pub target: Target,
    /// The compiler that writes the object file (the same ABI and header either way).
    #[arg(long, value_parser = crate::BackendParser::NATIVE, default_value = "cranelift")]
    pub backend: crate::Backend,
    /// The folder to write into (created if missing); for `deepspeed`, the JSON file.
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,
    /// Also write NAME.reference.txt: the interpreter's parameters after each of N steps
    /// of the reference problem (see `reference_problem`).
    #[arg(long, value_name = "N")]
    pub reference: Option<usize>,
    /// `deepspeed`: write the config even though it does not carry everything the recipe
    /// says (each loss is printed as a warning).
    #[arg(long)]
    pub allow_lossy: bool,
}

/// The reference problem, also written out in C in `examples/c/demo.c`: tensors of 5 and
/// 1027 elements starting at `0.1·((7i + 3t) mod 11) − 0.5`, the gradient of
/// `Σ (p − 0.25)²` at each step, computed in f32 as `2·(p − 0.25)`.
pub fn reference_problem() -> (Vec<usize>, Vec<Vec<f32>>) {
    let sizes = vec![5usize, 1027];
    let params = sizes
        .iter()
        .enumerate()
        .map(|(t, &n)| {
            (0..n)
                .map(|i| 0.1f32 * ((7 * i + 3 * t) % 11) as f32 - 0.5)
                .collect()
        })
        .collect();
    (sizes, params)
}

pub fn export(args: &ExportArgs) -> Result<(), String> {
    let Some(comp) = crate::load(&args.file, false) else {
        return Err(format!(
            "{} does not compile; fix the errors above",
            args.file.display()
        ));
    };
    let recipe = comp.recipes().first().ok_or_else(|| {
        format!(
            "{} has no recipe; add `recipe NAME {{ update = ... }}`",
            args.file.display()
        )
    })?;
    if let Target::Deepspeed = args.target {
        return deepspeed(&comp.program, recipe, &args.output, args.allow_lossy);
    }
    let kernel = lower(&comp.program, recipe)
        .map_err(|why| format!("recipe `{}` cannot be exported: {why}", recipe.name))?;
    let name = c::c_name(&recipe.name);
    if let Target::Wgsl = args.target {
        return export_wgsl(args, &comp.program, recipe, &kernel, &name);
    }
    let header = c::header(&comp.program, recipe, &kernel, &name)
        .map_err(|why| format!("recipe `{}` cannot be exported: {why}", recipe.name))?;
    let object = backends::object(&kernel, args.backend, &format!("{name}_pass"))?;
    std::fs::create_dir_all(&args.output).map_err(|e| {
        format!(
            "cannot create {}: {e}; choose a writable folder with -o",
            args.output.display()
        )
    })?;
    let o = write_out(args, &format!("{name}.o"), &object)?;
    let h = write_out(args, &format!("{name}.h"), header.as_bytes())?;
    eprintln!(
        "wrote {} ({} passes) and {}",
        o.display(),
        kernel.passes.len(),
        h.display()
    );
    if let Some(steps) = args.reference {
        reference(args, &comp.program, recipe, &name, steps)?;
    }
    Ok(())
}

/// Writes `file` into the output folder, atomically.
fn write_out(args: &ExportArgs, file: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let path = args.output.join(file);
    write_with(&path, |f| f.write_all(bytes))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// NAME.reference.txt: the interpreter's parameters after each of `steps` steps of the
/// reference problem, one `step tensor index value` line per element.
fn reference(
    args: &ExportArgs,
    program: &anneal_compiler::ir::Program,
    recipe: &anneal_compiler::ir::Recipe,
    name: &str,
    steps: usize,
) -> Result<(), String> {
    let (sizes, mut params) = reference_problem();
    let names: Vec<String> = (0..sizes.len()).map(|t| format!("{t}.weight")).collect();
    let (interp, mut state) = Interpreter::new(program, recipe, &names, &params)?;
    let mut text = String::new();
    for k in 0..steps {
        let grads: Vec<Vec<f32>> = params
            .iter()
            .map(|p| p.iter().map(|x| 2.0 * (x - 0.25)).collect())
            .collect();
        interp.step(&mut state, &mut params, &grads)?;
        for (t, p) in params.iter().enumerate() {
            for (i, x) in p.iter().enumerate() {
                text.push_str(&format!("{} {t} {i} {x:.9e}\n", k + 1));
            }
        }
    }
    let r = write_out(args, &format!("{name}.reference.txt"), text.as_bytes())?;
    eprintln!("wrote {} ({steps} steps, interpreter)", r.display());
    Ok(())
}

/// `--target wgsl`: the shaders, each validated by naga first, and the manifest.
fn export_wgsl(
    args: &ExportArgs,
    program: &anneal_compiler::ir::Program,
    recipe: &anneal_compiler::ir::Recipe,
    kernel: &anneal_compiler::kernel::Kernel,
    name: &str,
) -> Result<(), String> {
    let cannot = |why: anneal_compiler::error::Error| {
        format!("recipe `{}` cannot be exported: {why}", recipe.name)
    };
    let manifest = wgsl::manifest(program, recipe, kernel).map_err(cannot)?;
    let shaders = wgsl::shaders(kernel).map_err(cannot)?;
    for s in &shaders {
        wgsl::validate(&s.source)
            .map_err(|e| Error::internal(format!("pass {} is invalid WGSL: {e}", s.pass)))?;
    }
    std::fs::create_dir_all(&args.output).map_err(|e| {
        format!(
            "cannot create {}: {e}; choose a writable folder with -o",
            args.output.display()
        )
    })?;
    for s in &shaders {
        write_out(args, &format!("pass{}.wgsl", s.pass), s.source.as_bytes())?;
    }
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::internal(format!("cannot write the manifest: {e}")))?;
    let m = write_out(args, "manifest.json", text.as_bytes())?;
    eprintln!(
        "wrote {} and {} shader(s) (pass0.wgsl ...) for recipe `{}`",
        m.display(),
        shaders.len(),
        recipe.name
    );
    if let Some(steps) = args.reference {
        reference(args, program, recipe, name, steps)?;
    }
    Ok(())
}

/// Writes the recipe's DeepSpeed config, or lists everything it cannot carry.
fn deepspeed(
    program: &anneal_compiler::ir::Program,
    recipe: &anneal_compiler::ir::Recipe,
    path: &std::path::Path,
    allow_lossy: bool,
) -> Result<(), String> {
    let (cfg, lost) = anneal_runtime::deepspeed::config(program, recipe);
    let list = lost
        .iter()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    if !lost.is_empty() && !allow_lossy {
        return Err(format!(
            "recipe `{}` cannot be written as a DeepSpeed config without losing:\n{list}\n\
             (DeepSpeed keeps some of these in the model code or launcher.) Change the recipe, \
             or pass --allow-lossy to write the config anyway",
            recipe.name
        ));
    }
    if !lost.is_empty() {
        eprintln!("warning: the config does not carry:\n{list}");
    }
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())? + "\n";
    write_with(path, |f| f.write_all(text.as_bytes())).map_err(|e| {
        format!(
            "cannot write {}: {e}; choose a writable path with -o",
            path.display()
        )
    })?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
