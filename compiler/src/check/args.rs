//! Helpers the recipe-item checkers share for the arguments of the calls in a recipe
//! (`mlp(...)`, `csv(...)`, curricula, `parallel { ... }`): named arguments, whole numbers.

use crate::ast::{self, ExprKind};
use crate::diagnostic::Diagnostic;

/// The named arguments of a call, each once, with the callee checked.
#[allow(clippy::result_large_err)]
pub(super) fn named_args<'a>(
    e: &'a ast::Expr,
    callee: &str,
    allowed: &[&str],
    help: &str,
) -> Result<Vec<(&'a str, &'a ast::Expr)>, Diagnostic> {
    let ExprKind::Call { callee: c, args } = &e.kind else {
        return Err(
            Diagnostic::error("E0165", e.span, format!("expected `{callee}(...)`"))
                .with_label("not a call")
                .with_help(help.to_string()),
        );
    };
    if c.name != callee {
        return Err(Diagnostic::error(
            "E0165",
            c.span,
            format!(
                "unknown {}: `{}`",
                if callee == "mlp" {
                    "model"
                } else {
                    "data source"
                },
                c.name
            ),
        )
        .with_label(format!("expected `{callee}`"))
        .with_help(help.to_string()));
    }
    let mut out: Vec<(&str, &ast::Expr)> = Vec::new();
    for a in args {
        let Some(n) = &a.name else {
            return Err(Diagnostic::error(
                "E0113",
                a.value.span,
                format!("arguments to `{callee}` must be named"),
            )
            .with_label("positional argument")
            .with_help(help.to_string()));
        };
        if !allowed.contains(&n.name.as_str()) || out.iter().any(|(k, _)| *k == n.name) {
            return Err(Diagnostic::error(
                "E0110",
                n.span,
                format!(
                    "`{callee}` has no parameter `{}` (or it is given twice)",
                    n.name
                ),
            )
            .with_label("unknown or repeated keyword")
            .with_help(format!("`{callee}` takes {}", super::join_ticked(allowed))));
        }
        out.push((n.name.as_str(), &a.value));
    }
    Ok(out)
}

/// A whole-number literal (written without a point or exponent), below 9e15.
pub(super) fn whole(e: &ast::Expr) -> Option<u64> {
    match &e.kind {
        ExprKind::Number {
            value,
            is_int: true,
        } if *value >= 0.0 && *value < 9e15 => Some(*value as u64),
        _ => None,
    }
}
