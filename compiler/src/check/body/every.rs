//! `every k steps { ... }` in a body: its assignments take effect at steps k, 2k, 3k, …
//! (`step` counts from 1), each one becoming `if due then new else old` (E0135).

use super::*;
use crate::ir::CmpOp;

impl BodyCx<'_> {
    /// The block: `let`s, assignments, `repeat`s and inner `every`s, whose assignments
    /// wait on `floor(step / k) * k == step` (and on the enclosing block's condition).
    pub(super) fn every(&mut self, period: &ast::Expr, stmts: &[ast::Stmt], span: Span) {
        let k = self.expr(period);
        let t = self.body.types[k];
        if t.kind != ValueKind::Int || !t.extent.fits_in(Extent::Tensor) {
            self.cx.diags.push(
                Diagnostic::error(
                    "E0135",
                    period.span,
                    format!(
                        "`every` needs a whole number of steps, found {} {}",
                        t.extent.describe(),
                        t.kind.name()
                    ),
                )
                .with_label("the period")
                .with_help("e.g. `every precondition_frequency steps { ... }` with `precondition_frequency: int > 0`"),
            );
        }
        let uniform = |kind| Self::ty(kind, t.extent.join(Extent::Uniform));
        let step = self.body.push(Expr::Step, uniform(ValueKind::Int), span);
        let q = self.body.push(
            Expr::Binary(BinOp::Div, step, k),
            uniform(ValueKind::Real),
            span,
        );
        let f = self.body.push(
            Expr::Call(Builtin::Floor, vec![q]),
            uniform(ValueKind::Real),
            span,
        );
        let back = self.body.push(
            Expr::Binary(BinOp::Mul, f, k),
            uniform(ValueKind::Real),
            span,
        );
        let mut due = self.body.push(
            Expr::Binary(BinOp::Cmp(CmpOp::Eq), back, step),
            uniform(ValueKind::Bool),
            span,
        );
        if let Some(outer) = self.every {
            let ty = Self::ty(
                ValueKind::Bool,
                self.body.types[outer]
                    .extent
                    .join(self.body.types[due].extent),
            );
            due = self
                .body
                .push(Expr::Binary(BinOp::And, outer, due), ty, span);
        }
        let saved = self.every.replace(due);
        let names = self.names.len();
        for s in stmts {
            match s {
                ast::Stmt::Let { .. }
                | ast::Stmt::Assign { .. }
                | ast::Stmt::Repeat { .. }
                | ast::Stmt::Every { .. } => self.stage_stmt(s),
                other => self.cx.diags.push(
                    Diagnostic::error(
                        "E0135",
                        other.span(),
                        "an `every` block holds `let`s and assignments",
                    )
                    .with_label("not allowed in `every`")
                    .with_help("declare states before the block; `skip if`, `run` and `eval` belong outside it"),
                ),
            }
        }
        // The block's `let`s go out of scope with it; what it assigned stays assigned.
        self.names.truncate(names);
        self.every = saved;
    }

    /// Inside an `every` block, assignment `new` of a value whose current value is `cur`
    /// becomes `if due then new else cur`; outside one, `new` itself.
    pub(super) fn every_select(&mut self, new: ExprId, cur: ExprId) -> ExprId {
        let Some(due) = self.every else {
            return new;
        };
        let (a, b) = (self.body.types[new], self.body.types[cur]);
        let ty = Self::ty(
            a.kind,
            self.body.types[due].extent.join(a.extent.join(b.extent)),
        );
        let span = self.body.spans[new];
        self.body.push(Expr::Select(due, new, cur), ty, span)
    }
}
