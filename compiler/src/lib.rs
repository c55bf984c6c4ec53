//! anneal's compiler: source → AST → typed IR, plus the reference interpreter.
//!
//! Stages, each one module with one entry point (see ARCHITECTURE.md):
//! `syntax::parse` (text → `ast::Ast`), `check::check` (ASTs → `ir::Program`),
//! `interp::Interpreter` (runs a recipe's step), `print::print_program` (`--emit ir`).
//! `compile` runs the front end over a user file and the standard library.

pub mod ast;
pub mod backends;
pub mod check;
pub mod diagnostic;
pub mod doc;
pub mod error;
pub mod glob;
pub mod interp;
pub mod ir;
pub mod kernel;
pub mod math;
pub mod matrix;
pub mod print;
pub mod source;
pub mod state;
pub mod stdlib;
pub mod syntax;
pub mod value;

use diagnostic::Diagnostic;
use source::{FileId, Sources};

/// The result of compiling one user file against the standard library.
pub struct Compilation {
    pub sources: Sources,
    pub program: ir::Program,
    /// Every diagnostic, in source order per file, user file first.
    pub diagnostics: Vec<Diagnostic>,
    pub user_file: FileId,
}

impl Compilation {
    pub fn has_errors(&self) -> bool {
        diagnostic::has_errors(&self.diagnostics)
    }

    /// The user's recipes (in file order).
    pub fn recipes(&self) -> &[ir::Recipe] {
        &self.program.recipes
    }
}

/// The library's syntax trees, parsed once per process: every compilation shares them.
/// Library files are the first files of every `Sources`, so their `FileId`s are stable.
fn parsed_library() -> &'static [(ast::Ast, Vec<Diagnostic>)] {
    static PARSED: std::sync::OnceLock<Vec<(ast::Ast, Vec<Diagnostic>)>> =
        std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        stdlib::MODULES
            .iter()
            .enumerate()
            .map(|(id, (_, _, text))| syntax::parse(id, text))
            .collect()
    })
}

/// Parses and checks `text` (named `name` in diagnostics) with the standard library.
pub fn compile(name: &str, text: &str) -> Compilation {
    let mut sources = Sources::default();
    let mut modules = Vec::new();
    let mut diagnostics = Vec::new();
    for ((module, file, text), (ast, errs)) in stdlib::MODULES.iter().zip(parsed_library()) {
        let id = sources.add(*file, *text);
        let ast = ast.clone();
        diagnostics.extend(errs.iter().cloned());
        modules.push(check::Module {
            name: module.to_string(),
            file: id,
            ast,
            is_library: true,
        });
    }
    let user_file = sources.add(name, text);
    let (ast, errs) = syntax::parse(user_file, text);
    diagnostics.extend(errs);
    let module_name = ast
        .module
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_else(|| "main".into());
    modules.push(check::Module {
        name: module_name,
        file: user_file,
        ast,
        is_library: false,
    });
    let (program, check_diags) = check::check(&modules);
    diagnostics.extend(check_diags);
    // User file first, then by position, so reports read top to bottom.
    diagnostics.sort_by_key(|d| (d.span.file != user_file, d.span.file, d.span.start));
    Compilation {
        sources,
        program,
        diagnostics,
        user_file,
    }
}
