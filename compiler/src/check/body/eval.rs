//! `eval param = ...`: a stage's evaluation view, the parameters a run evaluates when they
//! are not the ones gradients are taken at (schedule-free's average x from y and z). It is
//! computed between steps, so it reads the parameters, the states, hyperparameters and
//! `step` (the updates made), never a value of a step being taken (`grad`, `let`s, `loss`,
//! model calls, random signs).

use super::*;

impl BodyCx<'_> {
    pub(super) fn eval_view(&mut self, value: &ast::Expr, span: Span) {
        let v = self.expr(value);
        self.require_number(v, "param");
        if self.body.eval.is_some() {
            self.cx.diags.push(
                Diagnostic::error("E0147", span, "a stage has one `eval param`")
                    .with_label("a second evaluation view")
                    .with_help("combine them into one expression"),
            );
            return;
        }
        if let Some((at, what)) = self.read_during_a_step(v) {
            self.cx.diags.push(
                Diagnostic::error(
                    "E0147",
                    self.body.spans[at],
                    format!("`eval param` is computed between steps and cannot read {what}"),
                )
                .with_label("only exists while a step is taken")
                .with_help("write it over `param`, the states, hyperparameters and `step`"),
            );
            return;
        }
        self.body.eval = Some(v);
    }

    /// The first operand of `e` that only a running step has, and what it is.
    fn read_during_a_step(&self, e: ExprId) -> Option<(ExprId, &'static str)> {
        let what = match &self.body.exprs[e] {
            Expr::Grad => Some("`grad`"),
            Expr::Local(_) => Some("a `let` of the step"),
            Expr::Loss => Some("`loss`"),
            Expr::GradAt(_) | Expr::Hvp(_) => Some("a model call"),
            Expr::Rademacher => Some("random signs"),
            _ => None,
        };
        match what {
            Some(w) => Some((e, w)),
            None => self.body.exprs[e]
                .operands()
                .into_iter()
                .find_map(|o| self.read_during_a_step(o)),
        }
    }
}
