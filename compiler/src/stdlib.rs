//! The standard library's source files, embedded in the binary so a recipe compiles
//! anywhere. The library is written in the language itself (`stdlib/*.anneal`); Rust
//! only supplies the primitives it is built from.

/// (module name, file name shown in diagnostics, source text)
pub const MODULES: &[(&str, &str, &str)] = &[
    (
        "std.optax",
        "stdlib/optax.anneal",
        include_str!("../../stdlib/optax.anneal"),
    ),
    (
        "std.torch",
        "stdlib/torch.anneal",
        include_str!("../../stdlib/torch.anneal"),
    ),
    (
        "std.pytorch_optimizer",
        "stdlib/pytorch_optimizer.anneal",
        include_str!("../../stdlib/pytorch_optimizer.anneal"),
    ),
    (
        "std.formula",
        "stdlib/formula.anneal",
        include_str!("../../stdlib/formula.anneal"),
    ),
    (
        "std.hf",
        "stdlib/hf.anneal",
        include_str!("../../stdlib/hf.anneal"),
    ),
    (
        "std.research",
        "stdlib/research.anneal",
        include_str!("../../stdlib/research.anneal"),
    ),
    (
        "std.linalg",
        "stdlib/linalg.anneal",
        include_str!("../../stdlib/linalg.anneal"),
    ),
    (
        "std.schedule",
        "stdlib/schedule.anneal",
        include_str!("../../stdlib/schedule.anneal"),
    ),
];

/// The names of the library modules, for messages.
pub fn module_names() -> Vec<&'static str> {
    MODULES.iter().map(|(m, _, _)| *m).collect()
}
