//! Matrix shapes in a checked body, in the terms a recipe knows them: each side of a matrix
//! is the tensor's `rows()`, its `cols()`, or not known here (a branch on the shape, `qr`'s
//! thin side, `eye(n)` of another number). The step checks shapes exactly when it runs;
//! this pass reads the body once, before any tensor is seen, and warns (W0020) where a
//! shape holds only for tensors with rows() == cols() — `G @ G` on a gradient, `elements`
//! of a transposed matrix, a state assigned the other side's matrix — which a recipe for a
//! model with any non-square tensor gets wrong on its first step. Entry point:
//! `warn_shapes`.

use std::collections::HashMap;

use crate::diagnostic::Diagnostic;
use crate::ir::{Body, Expr, ExprId, Extent, LocalId, MatDim, MatOp, ShapeInfo, Stmt};

/// One side of a matrix, as far as the recipe says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Rows,
    Cols,
    Unknown,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Rows => "rows",
            Side::Cols => "cols",
            Side::Unknown => "n",
        }
    }

    /// Two sides that must be equal, and are unless rows() == cols().
    fn clash(self, other: Side) -> bool {
        self != Side::Unknown && other != Side::Unknown && self != other
    }

    /// What is known of a side that is either `self` or `other`.
    fn join(self, other: Side) -> Side {
        if self == other {
            self
        } else {
            Side::Unknown
        }
    }

    /// Of two sides that are equal when the step runs, the one that is known.
    fn meet(self, other: Side) -> Side {
        if self == Side::Unknown {
            other
        } else {
            self
        }
    }
}

impl From<MatDim> for Side {
    fn from(d: MatDim) -> Side {
        match d {
            MatDim::Rows => Side::Rows,
            MatDim::Cols => Side::Cols,
        }
    }
}

type Shape = (Side, Side);

fn describe((r, c): Shape) -> String {
    format!("{} × {}", r.name(), c.name())
}

const HELP_SQUARE: &str =
    "this holds only for tensors with rows() == cols(); a gradient G is rows × cols, \
     so `G @ transpose(G)` is rows × rows and `transpose(G) @ G` cols × cols";

struct Shapes<'a> {
    body: &'a Body,
    memo: HashMap<ExprId, Shape>,
    /// A `repeat`'s loop value: the matrix it starts from.
    loops: HashMap<LocalId, ExprId>,
    diags: Vec<Diagnostic>,
}

/// The W0020 warnings of `body`, in the order its expressions were written.
pub(super) fn warn_shapes(body: &Body) -> Vec<Diagnostic> {
    let mut loops = HashMap::new();
    for e in &body.exprs {
        if let Expr::Fold { init, var, .. } = e {
            loops.insert(*var, *init);
        }
    }
    let mut s = Shapes {
        body,
        memo: HashMap::new(),
        loops,
        diags: Vec::new(),
    };
    for id in 0..body.exprs.len() {
        if body.types[id].extent == Extent::Matrix
            || matches!(body.exprs[id], Expr::Mat(MatOp::ToElements, _))
        {
            s.shape(id);
        }
    }
    for st in &body.states {
        if let (Some((a, b)), true) = (st.shape, body.types[st.init].extent == Extent::Matrix) {
            s.assigned(st.init, (a.into(), b.into()), &st.name);
        }
    }
    for stmt in &body.stmts {
        if let Stmt::SetState(id, e) = stmt {
            if let Some((a, b)) = body.states[*id].shape {
                s.assigned(*e, (a.into(), b.into()), &body.states[*id].name);
            }
        }
    }
    s.diags
}

impl Shapes<'_> {
    /// W0020 at `at`, with `also` (an operand and its shape) as secondary labels.
    fn warn(&mut self, at: ExprId, message: String, label: String, also: &[(ExprId, Shape)]) {
        let mut d = Diagnostic::warning("W0020", self.body.spans[at], message)
            .with_label(label)
            .with_help(HELP_SQUARE);
        for &(x, shape) in also {
            d = d.with_secondary(self.body.spans[x], describe(shape));
        }
        self.diags.push(d);
    }

    /// A matrix state declared `want` given value `e`.
    fn assigned(&mut self, e: ExprId, want: Shape, name: &str) {
        let got = self.shape(e);
        // An assignment stores a hidden `let`: point at the value it binds.
        let mut at = e;
        while let Some(def) = match self.body.exprs[at] {
            Expr::Local(l) => self.body.let_def(l),
            _ => None,
        } {
            at = def;
        }
        if got.0.clash(want.0) || got.1.clash(want.1) {
            let message = format!(
                "matrix state `{name}` is {}, but this matrix is {}",
                describe(want),
                describe(got)
            );
            self.warn(at, message, describe(got), &[]);
        }
    }

    fn shape(&mut self, id: ExprId) -> Shape {
        if let Some(&s) = self.memo.get(&id) {
            return s;
        }
        // A cycle cannot occur (operands come first), but a loop value's start is looked
        // up by name: mark the node before descending.
        self.memo.insert(id, (Side::Unknown, Side::Unknown));
        let s = self.compute(id);
        self.memo.insert(id, s);
        s
    }

    fn compute(&mut self, id: ExprId) -> Shape {
        let any = (Side::Unknown, Side::Unknown);
        let body = self.body;
        let matrix = |x: ExprId| body.types[x].extent == Extent::Matrix;
        match &body.exprs[id] {
            Expr::Mat(op, xs) => match (op, xs.as_slice()) {
                (MatOp::FromElements, _) => (Side::Rows, Side::Cols),
                (MatOp::ToElements, [m]) => {
                    let got = self.shape(*m);
                    if got.0.clash(Side::Rows) || got.1.clash(Side::Cols) {
                        let hint = if got == (Side::Cols, Side::Rows) {
                            " (transpose it back)"
                        } else {
                            ""
                        };
                        let message = format!(
                            "`elements(...)` of a {} matrix, where the tensor's is rows × cols{hint}",
                            describe(got)
                        );
                        self.warn(*m, message, describe(got), &[]);
                    }
                    any
                }
                (MatOp::Transpose, [m]) => {
                    let (r, c) = self.shape(*m);
                    (c, r)
                }
                (MatOp::MatMul, [a, b]) => {
                    let (sa, sb) = (self.shape(*a), self.shape(*b));
                    if sa.1.clash(sb.0) {
                        let message = format!(
                            "`@` of a {} and a {} matrix: the first's columns are `{}()`, the second's rows `{}()`",
                            describe(sa),
                            describe(sb),
                            sa.1.name(),
                            sb.0.name()
                        );
                        let label = "the inner sides differ".to_string();
                        self.warn(id, message, label, &[(*a, sa), (*b, sb)]);
                    }
                    (sa.0, sb.1)
                }
                (MatOp::Eye, [n]) => match body.exprs[*n] {
                    Expr::Shape(ShapeInfo::Rows) => (Side::Rows, Side::Rows),
                    Expr::Shape(ShapeInfo::Cols) => (Side::Cols, Side::Cols),
                    _ => any,
                },
                (MatOp::InverseRoot | MatOp::Eigh | MatOp::DiagonalOrder, [m, ..]) => {
                    let (r, c) = self.shape(*m);
                    let side = r.meet(c);
                    (side, side)
                }
                (MatOp::Qr, [m]) => (self.shape(*m).0, Side::Unknown),
                _ => any,
            },
            Expr::State(s) => match body.states.get(*s).and_then(|d| d.shape) {
                Some((a, b)) => (a.into(), b.into()),
                None => any,
            },
            Expr::Local(l) => match (body.let_def(*l), self.loops.get(l)) {
                (Some(def), _) => self.shape(def),
                (None, Some(&init)) => self.shape(init),
                (None, None) => any,
            },
            Expr::Fold { init, step, .. } => {
                let (a, b) = (self.shape(*init), self.shape(*step));
                if a.0.clash(b.0) || a.1.clash(b.1) {
                    let message = format!(
                        "a `repeat` round turns its {} matrix into a {} one",
                        describe(a),
                        describe(b)
                    );
                    self.warn(*step, message, describe(b), &[]);
                }
                a
            }
            Expr::Unary(_, a) => self.shape(*a),
            Expr::Select(c, a, b) if !matrix(*c) => {
                let (x, y) = (self.branch(*a), self.branch(*b));
                match (x, y) {
                    (Some(x), Some(y)) => (x.0.join(y.0), x.1.join(y.1)),
                    (Some(s), None) | (None, Some(s)) => s,
                    (None, None) => any,
                }
            }
            e @ (Expr::Binary(..) | Expr::Select(..) | Expr::Call(..)) => {
                let ops: Vec<ExprId> = e.operands().into_iter().filter(|&x| matrix(x)).collect();
                self.entrywise(&ops)
            }
            _ => any,
        }
    }

    /// A branch of a per-tensor `if`: its shape, or none for a number.
    fn branch(&mut self, x: ExprId) -> Option<Shape> {
        (self.body.types[x].extent == Extent::Matrix).then(|| self.shape(x))
    }

    /// Matrices combined entry by entry: equal shapes.
    fn entrywise(&mut self, ops: &[ExprId]) -> Shape {
        let mut acc = (Side::Unknown, Side::Unknown);
        let mut first: Option<(ExprId, Shape)> = None;
        for &x in ops {
            let s = self.shape(x);
            if let Some((fx, fs)) = first {
                if s.0.clash(acc.0) || s.1.clash(acc.1) {
                    let message = format!(
                        "an entry-wise operation on a {} and a {} matrix: the shapes differ",
                        describe(fs),
                        describe(s)
                    );
                    self.warn(x, message, describe(s), &[(fx, fs)]);
                    return acc;
                }
            } else {
                first = Some((x, s));
            }
            acc = (acc.0.meet(s.0), acc.1.meet(s.1));
        }
        acc
    }
}
