//! The evaluator of matrix expressions for one tensor (`eval`): matrices memoized per
//! `repeat` round and, where their leaves cannot change, per stage run (`Shared`); numbers
//! computed from matrices with the host's f64 arithmetic; products through the caller's `Gemm`.

use std::collections::HashMap;
use std::sync::Arc;

use super::{
    derived, leaves, linalg, pure, Gemm, Leaf, LeafKind, Mat, Product, MAX_EYE, MAX_REPEAT,
};
use crate::error::{Error, Result};
use crate::ir::{BinOp, Body, Expr, ExprId, Extent, LocalId, MatOp, UnOp};
use crate::math::{arith, builtin};

/// Matrix expression `root` for one tensor whose matrix view is `rows × cols`; `leaf`
/// gives the value of each of `leaves(body, root)` for that tensor; `shared`, the values
/// the stage's run has computed for it so far; `gemm`, how `@` multiplies.
#[allow(clippy::too_many_arguments)]
pub fn eval<'l>(
    body: &Body,
    root: ExprId,
    rows: usize,
    cols: usize,
    leaf: &mut dyn FnMut(ExprId) -> Result<Leaf<'l>>,
    shared: Option<&mut HashMap<ExprId, Arc<Mat>>>,
    products: &mut Vec<Product>,
    gemm: &dyn Gemm,
) -> Result<Mat> {
    let mut ev = Ev {
        body,
        rows,
        cols,
        leaf,
        memo: HashMap::new(),
        vars: HashMap::new(),
        shared,
        pure: HashMap::new(),
        derived: HashMap::new(),
        products,
        gemm,
    };
    ev.mat(root).map(|m| (*m).clone())
}

/// An operand of an entry-wise operation: a matrix, or a number broadcast over one.
enum Operand {
    M(Arc<Mat>),
    S(f32),
}

struct Ev<'a, 'l> {
    body: &'a Body,
    rows: usize,
    cols: usize,
    leaf: &'a mut dyn FnMut(ExprId) -> Result<Leaf<'l>>,
    /// Values computed in the current round of every enclosing `repeat` (cleared when a
    /// round begins, so a value that depends on the loop is never stale).
    memo: HashMap<ExprId, Arc<Mat>>,
    /// The loop values of the `repeat`s being evaluated.
    vars: HashMap<LocalId, Arc<Mat>>,
    /// The stage run's values for this tensor (`Shared`), outside every `repeat`.
    shared: Option<&'a mut HashMap<ExprId, Arc<Mat>>>,
    /// `pure` of the leaves seen so far.
    pure: HashMap<ExprId, bool>,
    /// `derived` of the numbers seen so far.
    derived: HashMap<ExprId, bool>,
    /// The shapes of the products computed, in order.
    products: &'a mut Vec<Product>,
    /// How `@` multiplies.
    gemm: &'a dyn Gemm,
}

impl Ev<'_, '_> {
    fn scalar(&mut self, id: ExprId) -> Result<f64> {
        if derived(self.body, id, &mut self.derived) {
            return self.number(id);
        }
        match (self.leaf)(id)? {
            Leaf::Scalar(v) => Ok(v),
            Leaf::Elements(_) | Leaf::Matrix(..) => {
                Err(Error::internal("a matrix leaf read as a number"))
            }
        }
    }

    /// A number computed from a matrix, with the host's f64 arithmetic on numbers.
    fn number(&mut self, id: ExprId) -> Result<f64> {
        let body = self.body;
        Ok(match &body.exprs[id] {
            Expr::Mat(op, _) if op.gives_number() => f64::from(self.mat(id)?.data[0]),
            Expr::Local(l) => {
                let def = body
                    .let_def(*l)
                    .ok_or_else(|| Error::internal("a number local without a definition"))?;
                self.scalar(def)?
            }
            Expr::Unary(UnOp::Neg, a) => -self.scalar(*a)?,
            Expr::Unary(UnOp::Not, a) => f64::from(u8::from(self.scalar(*a)? == 0.0)),
            Expr::Binary(op, a, b) => arith(*op, self.scalar(*a)?, self.scalar(*b)?),
            Expr::Select(c, a, b) => {
                let pick = if self.scalar(*c)? != 0.0 { *a } else { *b };
                self.scalar(pick)?
            }
            Expr::Call(f, args) => {
                let xs = args
                    .iter()
                    .map(|a| self.scalar(*a))
                    .collect::<Result<Vec<_>>>()?;
                builtin(*f, &xs)
            }
            other => {
                return Err(Error::internal(format!(
                    "{other:?} is not a number computed from a matrix"
                )))
            }
        })
    }

    fn operand(&mut self, id: ExprId) -> Result<Operand> {
        if self.body.types[id].extent == Extent::Matrix {
            Ok(Operand::M(self.mat(id)?))
        } else {
            Ok(Operand::S(self.scalar(id)? as f32))
        }
    }

    fn whole(&mut self, id: ExprId, what: &str, limit: f64) -> Result<usize> {
        let v = self.scalar(id)?;
        if !(v >= 0.0 && v <= limit && v.fract() == 0.0) {
            return Err(Error::user(format!(
                "`{what}` needs a whole number from 0 to {limit}, got {v}"
            )));
        }
        Ok(v as usize)
    }

    fn mat(&mut self, id: ExprId) -> Result<Arc<Mat>> {
        if let Some(m) = self.memo.get(&id) {
            return Ok(m.clone());
        }
        if let Expr::Local(l) = &self.body.exprs[id] {
            // A loop value, or a `let`: its definition's matrix, shared, not copied.
            if let Some(m) = self.vars.get(l) {
                return Ok(m.clone());
            }
            let def = self
                .body
                .let_def(*l)
                .ok_or_else(|| Error::internal("a matrix local without a definition"))?;
            return self.mat(def);
        }
        let share = self.shared.is_some() && self.vars.is_empty() && self.shareable(id);
        if share {
            if let Some(m) = self.shared.as_ref().and_then(|s| s.get(&id)) {
                return Ok(m.clone());
            }
        }
        let m = Arc::new(self.compute(id)?);
        self.memo.insert(id, m.clone());
        if share {
            if let Some(s) = self.shared.as_mut() {
                s.insert(id, m.clone());
            }
        }
        Ok(m)
    }

    /// An operand of `@`: `transpose(Y)` (not computed yet) is Y read transposed, in place.
    fn operand_of_product(&mut self, id: ExprId) -> Result<(Arc<Mat>, bool)> {
        if let Expr::Mat(MatOp::Transpose, xs) = &self.body.exprs[id] {
            if xs.len() == 1 && !self.memo.contains_key(&id) {
                return Ok((self.mat(xs[0])?, true));
            }
        }
        Ok((self.mat(id)?, false))
    }

    /// Whether matrix `id`'s value is the same wherever the stage evaluates it: every
    /// leaf is a matrix state (as the stage began) or `pure`.
    fn shareable(&mut self, id: ExprId) -> bool {
        let body = self.body;
        leaves(body, id).into_iter().all(|(l, kind)| match kind {
            LeafKind::State(_) => true,
            LeafKind::Elements | LeafKind::Scalar => pure(body, l, &mut self.pure),
        })
    }

    fn compute(&mut self, id: ExprId) -> Result<Mat> {
        let body = self.body;
        Ok(match &body.exprs[id] {
            Expr::Mat(MatOp::FromElements, xs) => {
                let x = *xs
                    .first()
                    .ok_or_else(|| Error::internal("matrix() without x"))?;
                match (self.leaf)(x)? {
                    Leaf::Elements(v) if v.len() == self.rows * self.cols => Mat {
                        rows: self.rows,
                        cols: self.cols,
                        data: v.to_vec(),
                    },
                    Leaf::Elements(_) => {
                        return Err(Error::internal("a tensor's matrix view has another size"))
                    }
                    Leaf::Scalar(v) => Mat::filled(self.rows, self.cols, v as f32),
                    Leaf::Matrix(..) => return Err(Error::internal("matrix() of a matrix state")),
                }
            }
            Expr::Mat(MatOp::MatMul, xs) if xs.len() == 2 => {
                let ((a, ta), (b, tb)) = (
                    self.operand_of_product(xs[0])?,
                    self.operand_of_product(xs[1])?,
                );
                let p = a.matmul_with(self.gemm, ta, &b, tb)?;
                self.products
                    .push((p.rows, if ta { a.rows } else { a.cols }, p.cols));
                p
            }
            Expr::Mat(MatOp::Transpose, xs) if xs.len() == 1 => self.mat(xs[0])?.transpose(),
            Expr::Mat(MatOp::InverseRoot, xs) if xs.len() == 3 => {
                let a = self.mat(xs[0])?;
                let (p, eps) = (self.scalar(xs[1])?, self.scalar(xs[2])?);
                linalg::inverse_root(&a, p, eps)?
            }
            Expr::Mat(MatOp::Eigh, xs) if xs.len() == 1 => linalg::eigh(&*self.mat(xs[0])?)?,
            Expr::Mat(MatOp::Qr, xs) if xs.len() == 1 => linalg::qr(&*self.mat(xs[0])?)?,
            Expr::Mat(MatOp::DiagonalOrder, xs) if xs.len() == 1 => {
                linalg::diagonal_order(&*self.mat(xs[0])?)?
            }
            // A number, kept as a 1 × 1 matrix so that the memos hold it.
            Expr::Mat(op, xs) if op.gives_number() && xs.len() == 1 => {
                let a = self.mat(xs[0])?;
                let v = match op {
                    MatOp::Trace => linalg::trace(&a),
                    MatOp::FrobeniusNorm => linalg::frobenius_norm(&a),
                    _ => linalg::spectral_norm(&a)?,
                };
                Mat::filled(1, 1, v)
            }
            Expr::State(_) => match (self.leaf)(id)? {
                Leaf::Matrix(rows, cols, data) => Mat {
                    rows,
                    cols,
                    data: data.to_vec(),
                },
                _ => return Err(Error::internal("a matrix state read as a number")),
            },
            Expr::Mat(MatOp::Eye, xs) if xs.len() == 1 => {
                let n = self.whole(xs[0], "eye", MAX_EYE)?;
                let mut m = Mat::filled(n, n, 0.0);
                for i in 0..n {
                    m.data[i * n + i] = 1.0;
                }
                m
            }
            Expr::Unary(op, a) => {
                let mut m = (*self.mat(*a)?).clone();
                for v in &mut m.data {
                    *v = match op {
                        UnOp::Neg => -*v,
                        UnOp::Not => f32::from(u8::from(*v == 0.0)),
                    };
                }
                m
            }
            Expr::Binary(op, a, b) => {
                let (x, y) = (self.operand(*a)?, self.operand(*b)?);
                // One loop per arithmetic operator, so that it vectorizes; the same f32
                // operations as `arith`.
                match op {
                    BinOp::Add => self.zip(&x, &y, |x, y| x + y)?,
                    BinOp::Sub => self.zip(&x, &y, |x, y| x - y)?,
                    BinOp::Mul => self.zip(&x, &y, |x, y| x * y)?,
                    BinOp::Div => self.zip(&x, &y, |x, y| x / y)?,
                    &op => self.zip(&x, &y, |x, y| arith(op, x, y))?,
                }
            }
            Expr::Call(f, args) => {
                let xs = args
                    .iter()
                    .map(|a| self.operand(*a))
                    .collect::<Result<Vec<_>>>()?;
                let f = *f;
                self.entrywise(&xs, |v| builtin(f, v))?
            }
            Expr::Select(c, a, b) if body.types[*c].extent != Extent::Matrix => {
                // A per-tensor condition picks one branch; only that one is computed.
                let pick = if self.scalar(*c)? != 0.0 { *a } else { *b };
                match self.operand(pick)? {
                    Operand::M(m) => (*m).clone(),
                    Operand::S(v) => Mat::filled(self.rows, self.cols, v),
                }
            }
            Expr::Select(c, a, b) => {
                let xs = [self.operand(*c)?, self.operand(*a)?, self.operand(*b)?];
                self.entrywise(&xs, |v| if v[0] != 0.0 { v[1] } else { v[2] })?
            }
            Expr::Fold {
                init,
                count,
                var,
                step,
            } => {
                let n = self.whole(*count, "repeat", MAX_REPEAT)?;
                let mut x = self.mat(*init)?;
                let outer = std::mem::take(&mut self.memo);
                for _ in 0..n {
                    self.memo.clear();
                    self.vars.insert(*var, x);
                    x = self.mat(*step)?;
                }
                self.vars.remove(var);
                self.memo = outer;
                (*x).clone()
            }
            other => {
                return Err(Error::internal(format!(
                    "{other:?} is not a matrix expression"
                )))
            }
        })
    }

    /// `f` entry by entry over matrices of one shape, numbers broadcast.
    /// `f` entry by entry on two operands (a number broadcast).
    fn zip(&self, x: &Operand, y: &Operand, f: impl Fn(f32, f32) -> f32) -> Result<Mat> {
        let data = match (x, y) {
            (Operand::M(a), Operand::M(b)) => {
                if (a.rows, a.cols) != (b.rows, b.cols) {
                    return Err(Error::user(format!(
                        "entry-wise operation on a {} and a {} matrix: the shapes must match",
                        a.shape(),
                        b.shape()
                    )));
                }
                let data = a.data.iter().zip(&b.data).map(|(&p, &q)| f(p, q));
                (a.rows, a.cols, data.collect())
            }
            (Operand::M(a), &Operand::S(q)) => {
                (a.rows, a.cols, a.data.iter().map(|&p| f(p, q)).collect())
            }
            (&Operand::S(p), Operand::M(b)) => {
                (b.rows, b.cols, b.data.iter().map(|&q| f(p, q)).collect())
            }
            (&Operand::S(p), &Operand::S(q)) => {
                (self.rows, self.cols, vec![f(p, q); self.rows * self.cols])
            }
        };
        Ok(Mat {
            rows: data.0,
            cols: data.1,
            data: data.2,
        })
    }

    fn entrywise(&self, xs: &[Operand], f: impl Fn(&[f32]) -> f32) -> Result<Mat> {
        let mut shape: Option<(usize, usize)> = None;
        for x in xs {
            if let Operand::M(m) = x {
                match shape {
                    None => shape = Some((m.rows, m.cols)),
                    Some((r, c)) if (r, c) != (m.rows, m.cols) => {
                        return Err(Error::user(format!(
                            "entry-wise operation on a {r}×{c} and a {} matrix: the shapes must match",
                            m.shape()
                        )))
                    }
                    Some(_) => {}
                }
            }
        }
        let (rows, cols) = shape.unwrap_or((self.rows, self.cols));
        let mut out = Mat::filled(rows, cols, 0.0);
        let mut args = vec![0f32; xs.len()];
        for (i, o) in out.data.iter_mut().enumerate() {
            for (a, x) in args.iter_mut().zip(xs) {
                *a = match x {
                    Operand::M(m) => m.data[i],
                    Operand::S(v) => *v,
                };
            }
            *o = f(&args);
        }
        Ok(out)
    }
}
