//! Matrix values: what `Extent::Matrix` expressions mean — `matrix(x)`, `A @ B`,
//! `transpose(A)`, `eye(n)`, the decompositions and norms of `linalg`, matrix states,
//! arithmetic and builtins entry by entry (numbers per tensor broadcast), `if` on a
//! per-tensor condition, and `repeat` — evaluated for one tensor at a time (`eval.rs`). Entry points: `leaves` (what an
//! expression reads from outside the matrix world), `eval` (one tensor) and `evaluate`
//! (every tensor, into `elements(M)`, a matrix state or a number per tensor).
//!
//! The interpreter and the fused executor both call `eval` (the executor after a prepare
//! pass has written the per-element inputs), so every back end computes a matrix value
//! with the same operations in the same order. Entries are f32, as per-element values
//! are; numbers are rounded to f32 where they meet a matrix, as `Elem::Scalar` does;
//! products run through `matrixmultiply`'s single-threaded `sgemm` (f32 accumulation,
//! a fixed order for given shapes). `evaluate` spreads the tensors over a thread pool
//! when given one, each tensor on one thread: results do not depend on the thread count.

mod eval;
mod linalg;

pub use eval::eval;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::interp::TensorView;
use crate::ir::{Body, Expr, ExprId, Extent, MatDim, MatOp, StateId};
use crate::state::StateValue;

/// The largest `repeat` count and `eye` size accepted: beyond them a recipe is mistaken.
const MAX_REPEAT: f64 = 100_000.0;
const MAX_EYE: f64 = 65_536.0;

/// A row-major matrix of f32 entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Mat {
    fn filled(rows: usize, cols: usize, v: f32) -> Mat {
        Mat {
            rows,
            cols,
            data: vec![v; rows * cols],
        }
    }

    fn shape(&self) -> String {
        format!("{}×{}", self.rows, self.cols)
    }

    fn transpose(&self) -> Mat {
        let mut data = vec![0f32; self.data.len()];
        for i in 0..self.rows {
            for j in 0..self.cols {
                data[j * self.rows + i] = self.data[i * self.cols + j];
            }
        }
        Mat {
            rows: self.cols,
            cols: self.rows,
            data,
        }
    }

    /// `self @ b` on the host, each operand transposed first where `ta` (`tb`) says so.
    #[cfg(test)]
    fn matmul(&self, ta: bool, b: &Mat, tb: bool) -> Result<Mat> {
        self.matmul_with(&HostGemm, ta, b, tb)
    }

    /// `self @ b` through `gemm`, each operand transposed first where `ta` (`tb`) says so.
    fn matmul_with(&self, gemm: &dyn Gemm, ta: bool, b: &Mat, tb: bool) -> Result<Mat> {
        let side = |x: &Mat, t: bool| {
            if t {
                (x.cols, x.rows)
            } else {
                (x.rows, x.cols)
            }
        };
        let ((m, k), (k2, n)) = (side(self, ta), side(b, tb));
        if k != k2 {
            return Err(Error::user(format!(
                "`@` of a {m}×{k} and a {k2}×{n} matrix: the first has {k} columns, the second {k2} rows"
            )));
        }
        let c = gemm.multiply((m, k, n), &self.data, ta, &b.data, tb)?;
        if c.len() != m * n {
            return Err(Error::internal("a matrix product of the wrong size"));
        }
        Ok(Mat {
            rows: m,
            cols: n,
            data: c,
        })
    }
}

/// How `@` multiplies: `HostGemm` (sgemm, the interpreter's and the CPU back ends'), or
/// a back end's device (`backends::gpu::DeviceGemm`). `a` holds the m × k operand row
/// major, or its transpose where `ta` says so; `b` likewise; the result is m × n.
pub trait Gemm: Sync {
    fn multiply(&self, p: Product, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Result<Vec<f32>>;
}

/// Products on the host through `matrixmultiply`'s single-threaded sgemm.
pub struct HostGemm;

impl Gemm for HostGemm {
    fn multiply(&self, p: Product, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Result<Vec<f32>> {
        Ok(multiply_strided(p, a, ta, b, tb))
    }
}

/// The product of an m × k and a k × n row-major matrix, as `@` computes it (`anneal
/// bench` times the step's products through this alone, for the GEMM library's peak).
/// `a` and `b` must hold m·k and k·n entries.
pub fn multiply(p: Product, a: &[f32], b: &[f32]) -> Vec<f32> {
    multiply_strided(p, a, false, b, false)
}

/// `multiply` where `ta` (`tb`) says `a` (`b`) holds the transpose of the operand, row
/// major: `transpose(X)` read in place, with the result the copy would give (the GEMM
/// packs its operands the same way whatever their strides).
fn multiply_strided((m, k, n): Product, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    if m > 0 && n > 0 && k > 0 && a.len() >= m * k && b.len() >= k * n {
        // SAFETY: `a` holds m×k entries, `b` k×n and `c` m×n (checked above), contiguous,
        // row-major or (transposed) column-major: every index sgemm forms lies inside.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                rsb,
                csb,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    }
    c
}

/// What a matrix expression reads from outside the matrix world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    /// The argument of `matrix(x)`: per element.
    Elements,
    /// A number per tensor (or coarser): a hyperparameter, `rows()`, a reduction.
    Scalar,
    /// A matrix state, as it was when the stage began (a stage writes its matrix states
    /// when it ends; reads after an assignment see the assigned value instead).
    State(StateId),
}

/// A leaf's value for the tensor being evaluated.
#[derive(Debug, Clone, Copy)]
pub enum Leaf<'a> {
    Elements(&'a [f32]),
    Scalar(f64),
    /// A matrix state: rows, columns, row-major entries.
    Matrix(usize, usize, &'a [f32]),
}

/// The sides of a matrix state declared `matrix(a, b)` for a tensor with matrix view `view`.
pub fn sides(view: &TensorView, (a, b): (MatDim, MatDim)) -> (usize, usize) {
    let side = |d| match d {
        MatDim::Rows => view.mat_rows,
        MatDim::Cols => view.mat_cols,
    };
    (side(a), side(b))
}

/// The leaves under matrix expression `root`, each once, in first-use order: what the
/// caller must compute (per element or per tensor) before `eval`.
pub fn leaves(body: &Body, root: ExprId) -> Vec<(ExprId, LeafKind)> {
    let mut out = Vec::new();
    let mut seen = vec![false; body.exprs.len()];
    collect(body, root, &mut seen, &mut HashMap::new(), &mut out);
    out
}

fn collect(
    body: &Body,
    id: ExprId,
    seen: &mut [bool],
    memo: &mut HashMap<ExprId, bool>,
    out: &mut Vec<(ExprId, LeafKind)>,
) {
    if std::mem::replace(&mut seen[id], true) {
        return;
    }
    if body.types[id].extent != Extent::Matrix && !derived(body, id, memo) {
        out.push((id, LeafKind::Scalar));
        return;
    }
    match &body.exprs[id] {
        Expr::Mat(MatOp::FromElements, xs) => {
            for &x in xs {
                if !std::mem::replace(&mut seen[x], true) {
                    out.push((x, LeafKind::Elements));
                }
            }
        }
        Expr::State(s) => out.push((id, LeafKind::State(*s))),
        Expr::Local(l) => {
            if let Some(def) = body.let_def(*l) {
                collect(body, def, seen, memo, out);
            }
        }
        e => {
            for x in e.operands() {
                collect(body, x, seen, memo, out);
            }
        }
    }
}

/// Whether number `id` is computed from a matrix (`frobenius_norm(X)`, `trace(A) / n`,
/// a `let` of one): `crate::matrix` evaluates it where it is read, as it does a matrix,
/// so it may read a `repeat`'s loop value. `elements(M)` and reductions of it are not: they
/// are per-element values and what passes compute from them.
pub fn derived(body: &Body, id: ExprId, memo: &mut HashMap<ExprId, bool>) -> bool {
    if let Some(&d) = memo.get(&id) {
        return d;
    }
    // A number: a per-element value that reads one (`grad / frobenius_norm(G)`) is an
    // ordinary value, computed where it is written, from the number's pinned leaves.
    let d = body.types[id].extent.fits_in(Extent::Tensor)
        && match &body.exprs[id] {
            Expr::Mat(op, _) => op.gives_number(),
            Expr::Local(l) => body.let_def(*l).is_some_and(|e| derived(body, e, memo)),
            e @ (Expr::Unary(..) | Expr::Binary(..) | Expr::Select(..) | Expr::Call(..)) => {
                e.operands().into_iter().any(|x| derived(body, x, memo))
            }
            _ => false,
        };
    memo.insert(id, d);
    d
}

/// Whether `let` (or other statement) value `e` is a definition that `crate::matrix`
/// evaluates where it is read — a matrix, or a number computed from one — rather than a
/// statement the interpreter and the passes run in order.
pub fn deferred(body: &Body, e: ExprId) -> bool {
    body.types[e].extent == Extent::Matrix || derived(body, e, &mut HashMap::new())
}

/// Matrix values already computed in one run of a stage, per tensor, for expressions
/// whose leaves no statement changes (`let`s, matrix states, hyperparameters, shapes): a
/// later evaluation in the same run takes them instead of computing them again (Shampoo's
/// inverse roots, stored in a state and used by the update). Start one per stage run.
#[derive(Debug, Default)]
pub struct Shared {
    per_tensor: Vec<HashMap<ExprId, Arc<Mat>>>,
    /// Per tensor, the shapes (m, k, n) of the products `A @ B` the run computed (an
    /// m × k by a k × n), in order: what `anneal bench` times the GEMM library on alone.
    products: Vec<Vec<Product>>,
}

/// A product's shape: an m × k matrix by a k × n one (2·m·k·n floating-point operations).
pub type Product = (usize, usize, usize);

impl Shared {
    fn reserve(&mut self, tensors: usize) {
        if self.per_tensor.len() < tensors {
            self.per_tensor.resize_with(tensors, HashMap::new);
        }
        if self.products.len() < tensors {
            self.products.resize_with(tensors, Vec::new);
        }
    }

    /// The products this run computed, tensor by tensor.
    pub fn products(&self) -> impl Iterator<Item = Product> + '_ {
        self.products.iter().flatten().copied()
    }
}

/// Whether `id` reads only what no statement of a body changes: `let` values (bound
/// once), constants, hyperparameters, shapes. Model calls, `grad`, `param`, states and
/// matrices computed elsewhere are not.
pub fn pure(body: &Body, id: ExprId, memo: &mut HashMap<ExprId, bool>) -> bool {
    if let Some(&p) = memo.get(&id) {
        return p;
    }
    let p = match &body.exprs[id] {
        Expr::Local(_) => true,
        Expr::Grad
        | Expr::Param
        | Expr::State(_)
        | Expr::GradAt(_)
        | Expr::Hvp(_)
        | Expr::Rademacher
        | Expr::Loss
        | Expr::Mat(..)
        | Expr::Fold { .. } => false,
        e => e.operands().into_iter().all(|x| pure(body, x, memo)),
    };
    memo.insert(id, p);
    p
}

/// A leaf's values for every tensor.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Elements(&'a [Vec<f32>]),
    Scalars(&'a [f64]),
    /// A matrix state's entries per tensor, declared with these sides.
    Matrices(&'a [Vec<f32>], (MatDim, MatDim)),
}

impl<'a> Source<'a> {
    /// Matrix state `id` of `body`, holding `value`.
    pub fn state(body: &Body, id: StateId, value: &'a StateValue) -> Result<Source<'a>> {
        match (value, body.states.get(id).and_then(|d| d.shape)) {
            (StateValue::Matrix(v), Some(shape)) => Ok(Source::Matrices(v, shape)),
            _ => Err(Error::internal("a matrix state that holds no matrices")),
        }
    }
}

/// Where a matrix value goes.
#[derive(Debug, Clone, Copy)]
pub enum Sink<'a> {
    /// `elements(M)`: the tensor's matrix view's shape, back as one value per element.
    Elements,
    /// A number computed from a matrix (`frobenius_norm(A)`), in the first of as many
    /// entries as the tensor has, the rest 0: what a per-tensor sum of them gives back
    /// exactly, so the passes read it as they read any reduction.
    Number,
    /// Matrix state `name`, declared with these sides.
    State(&'a str, (MatDim, MatDim)),
}

impl<'a> Sink<'a> {
    /// Matrix state `id` of `body`.
    pub fn state(body: &'a Body, id: StateId) -> Result<Sink<'a>> {
        match body.states.get(id) {
            Some(d) => match d.shape {
                Some(shape) => Ok(Sink::State(&d.name, shape)),
                None => Err(Error::internal("a matrix state without a shape")),
            },
            None => Err(Error::internal("a matrix store of no state")),
        }
    }
}

/// `root` for every tensor from `leaves` (the values of each of `leaves(body, root)`),
/// each result checked against the shape `sink` wants; row-major entries per tensor.
/// With `pool`, the tensors are spread over its threads (one tensor, one thread); the
/// first error in tensor order is the one reported.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    body: &Body,
    root: ExprId,
    views: &[TensorView],
    name: &dyn Fn(usize) -> String,
    leaves: &[(ExprId, Source<'_>)],
    sink: Sink<'_>,
    shared: &mut Shared,
    pool: Option<&rayon::ThreadPool>,
    gemm: &dyn Gemm,
) -> Result<Vec<Vec<f32>>> {
    let n = views.len();
    shared.reserve(n);
    let names: Vec<String> = (0..n).map(name).collect();
    let one = |t: usize, memo: &mut HashMap<ExprId, Arc<Mat>>, products: &mut Vec<Product>| {
        one_tensor(
            body, root, &views[t], &names[t], t, leaves, sink, memo, products, gemm,
        )
    };
    let (memos, products) = (&mut shared.per_tensor[..n], &mut shared.products[..n]);
    let Some(pool) = pool.filter(|_| n > 1) else {
        let each = memos.iter_mut().zip(products.iter_mut()).enumerate();
        return each.map(|(t, (m, p))| one(t, m, p)).collect();
    };
    // List scheduling, largest tensor first: each thread takes the next tensor in that
    // order when it finishes one, so a few large matrices do not end up on one thread.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&t| std::cmp::Reverse(views[t].mat_rows * views[t].mat_cols));
    let cells: Vec<Mutex<_>> = memos
        .iter_mut()
        .zip(products.iter_mut())
        .map(Mutex::new)
        .collect();
    let results: Vec<Mutex<Option<Result<Vec<f32>>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    pool.scope(|s| {
        for _ in 0..pool.current_num_threads().min(n) {
            s.spawn(|_| {
                while let Some(&t) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let mut cell = cells[t].lock().unwrap_or_else(|e| e.into_inner());
                    let (memo, products) = &mut *cell;
                    let r = one(t, memo, products);
                    *results[t].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(Error::internal("a tensor's matrix was not evaluated")))
        })
        .collect()
}

/// `evaluate` for tensor `t`.
#[allow(clippy::too_many_arguments)]
fn one_tensor(
    body: &Body,
    root: ExprId,
    view: &TensorView,
    name: &str,
    t: usize,
    leaves: &[(ExprId, Source<'_>)],
    sink: Sink<'_>,
    memo: &mut HashMap<ExprId, Arc<Mat>>,
    products: &mut Vec<Product>,
    gemm: &dyn Gemm,
) -> Result<Vec<f32>> {
    let mut leaf = |id: ExprId| -> Result<Leaf<'_>> {
        let (_, src) = leaves
            .iter()
            .find(|(e, _)| *e == id)
            .ok_or_else(|| Error::internal("a matrix leaf was not computed"))?;
        let v = match src {
            Source::Elements(v) => v.get(t).map(|v| Leaf::Elements(v)),
            Source::Scalars(v) => v.get(t).map(|v| Leaf::Scalar(*v)),
            Source::Matrices(v, shape) => {
                let (r, c) = sides(view, *shape);
                match v.get(t) {
                    Some(d) if d.len() == r * c => Some(Leaf::Matrix(r, c, d)),
                    // A state the tensor does not need holds nothing (0 × 0).
                    Some(d) if d.is_empty() => Some(Leaf::Matrix(0, 0, d)),
                    Some(_) => {
                        return Err(Error::internal(
                            "a matrix state does not have its declared size",
                        ))
                    }
                    None => None,
                }
            }
        };
        v.ok_or_else(|| Error::internal("a matrix leaf is missing a tensor"))
    };
    let r = eval(
        body,
        root,
        view.mat_rows,
        view.mat_cols,
        &mut leaf,
        Some(memo),
        products,
        gemm,
    )?;
    match sink {
        Sink::Elements => into_elements(r, view, name),
        Sink::Number => {
            let mut out = vec![0f32; view.mat_rows * view.mat_cols];
            if let (Some(o), Some(&v)) = (out.first_mut(), r.data.first()) {
                *o = v;
            }
            Ok(out)
        }
        Sink::State(state, shape) => into_state(r, sides(view, shape), state, name),
    }
}

/// A matrix state's new value must have the state's declared shape, or be 0 × 0 (`eye(0)`:
/// nothing, for a tensor that does not need the state — SOAP's sides beyond
/// `max_precondition_dim`, whose `matrix(rows, rows)` would not fit in memory).
fn into_state(m: Mat, (r, c): (usize, usize), state: &str, name: &str) -> Result<Vec<f32>> {
    if (m.rows, m.cols) != (r, c) && (m.rows, m.cols) != (0, 0) {
        return Err(Error::user(format!(
            "matrix state `{state}` is {r}×{c} for tensor `{name}`, but the value assigned to it is {}",
            m.shape()
        )));
    }
    Ok(m.data)
}

/// `elements(M)` for a tensor: M must be the tensor's matrix view's shape.
fn into_elements(m: Mat, view: &TensorView, name: &str) -> Result<Vec<f32>> {
    if (m.rows, m.cols) != (view.mat_rows, view.mat_cols) {
        let hint = if (m.cols, m.rows) == (view.mat_rows, view.mat_cols) {
            " (transpose it back)"
        } else {
            ""
        };
        return Err(Error::user(format!(
            "`elements(...)` of a {} matrix for tensor `{name}`, whose matrix is {}×{}{hint}",
            m.shape(),
            view.mat_rows,
            view.mat_cols
        )));
    }
    Ok(m.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_and_a_transpose_match_the_definitions() {
        let a = Mat {
            rows: 2,
            cols: 3,
            data: vec![1., 2., 3., 4., 5., 6.],
        };
        let p = a.matmul(false, &a.transpose(), false).expect("shapes fit");
        assert_eq!((p.rows, p.cols), (2, 2));
        // [1 2 3; 4 5 6] [1 4; 2 5; 3 6] = [14 32; 32 77]
        assert_eq!(p.data, vec![14., 32., 32., 77.]);
        assert!(a.matmul(false, &a, false).is_err());
        // Read transposed in place, either operand: the copy's result, bit for bit.
        assert_eq!(a.matmul(false, &a, true).expect("shapes fit").data, p.data);
        let q = a.transpose().matmul(false, &a, false).expect("shapes fit");
        assert_eq!(a.matmul(true, &a, false).expect("shapes fit").data, q.data);
        assert_eq!((q.rows, q.cols), (3, 3));
    }
}
