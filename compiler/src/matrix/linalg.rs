//! The decompositions matrix values use — `inverse_root(A, p, eps)`, `eigh(A)`, `qr(A)`,
//! `spectral_norm(A)` — through faer, in f64 on the f32 entries and rounded back,
//! sequentially (faer is built without rayon), so a result depends only on its input; the
//! permutation `diagonal_order(A)`; `matrix_trace` and `frobenius_norm`, summed in f64.
//!
//! Conventions are fixed here so that every back end, and a reader with NumPy, gets the
//! same matrix: symmetric inputs are symmetrized ((A + Aᵀ)/2) first; eigenvalues ascend;
//! each eigenvector's largest-magnitude entry is positive; Q of a QR is the thin one with
//! R's diagonal non-negative. A matrix with a NaN or an infinity gives a matrix of NaN,
//! as arithmetic on it would.

use faer::Side;

use super::Mat;
use crate::error::{Error, Result};

fn square(a: &Mat, what: &str) -> Result<()> {
    if a.rows != a.cols {
        return Err(Error::user(format!(
            "`{what}` needs a square matrix, got {}",
            a.shape()
        )));
    }
    Ok(())
}

fn finite(a: &Mat) -> bool {
    a.data.iter().all(|v| v.is_finite())
}

fn nan(rows: usize, cols: usize) -> Mat {
    Mat::filled(rows, cols, f32::NAN)
}

/// (A + Aᵀ)/2 in f64.
fn symmetric(a: &Mat) -> faer::Mat<f64> {
    let n = a.rows;
    faer::Mat::from_fn(n, n, |i, j| {
        0.5 * (f64::from(a.data[i * n + j]) + f64::from(a.data[j * n + i]))
    })
}

/// The eigenvalues (ascending) and eigenvectors (columns, signs fixed) of symmetric `a`.
fn eigen(a: &Mat, what: &str) -> Result<(Vec<f64>, faer::Mat<f64>)> {
    let s = symmetric(a);
    let e = s.self_adjoint_eigen(Side::Lower).map_err(|_| {
        Error::user(format!(
            "`{what}`: the eigendecomposition of a {} matrix did not converge",
            a.shape()
        ))
    })?;
    let n = a.rows;
    let vals: Vec<f64> = (0..n).map(|i| e.S().column_vector()[i]).collect();
    let u = e.U();
    let mut vecs = faer::Mat::from_fn(n, n, |i, j| u[(i, j)]);
    for j in 0..n {
        let mut big = 0.0f64;
        for i in 0..n {
            if vecs[(i, j)].abs() > big.abs() {
                big = vecs[(i, j)];
            }
        }
        if big < 0.0 {
            for i in 0..n {
                vecs[(i, j)] = -vecs[(i, j)];
            }
        }
    }
    Ok((vals, vecs))
}

fn to_mat(m: &faer::Mat<f64>) -> Mat {
    let (rows, cols) = (m.nrows(), m.ncols());
    let mut data = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            data.push(m[(i, j)] as f32);
        }
    }
    Mat { rows, cols, data }
}

/// `inverse_root(A, p, eps)`: (A + eps·I)^(−1/p) for symmetric A, as V diag(f(λ)) Vᵀ with
/// f(μ) = sign(μ)·|μ|^(−1/p) — what an inverse root through the singular value
/// decomposition gives (pytorch_optimizer's `compute_power_svd`), for which a negative
/// eigenvalue's singular value is |μ| and its singular vectors differ in sign.
pub(super) fn inverse_root(a: &Mat, p: f64, eps: f64) -> Result<Mat> {
    square(a, "inverse_root")?;
    if !(p.is_finite() && p > 0.0) {
        return Err(Error::user(format!(
            "`inverse_root(A, p, eps)` needs p > 0, got {p}"
        )));
    }
    let n = a.rows;
    if !finite(a) || !eps.is_finite() {
        return Ok(nan(n, n));
    }
    let (vals, v) = eigen(a, "inverse_root")?;
    let f: Vec<f64> = vals
        .iter()
        .map(|&l| {
            let mu = l + eps;
            mu.signum() * mu.abs().powf(-1.0 / p)
        })
        .collect();
    // V diag(f) Vᵀ as one product (faer's GEMM, sequential: no rayon).
    let scaled = faer::Mat::from_fn(n, n, |i, k| v[(i, k)] * f[k]);
    let out = &scaled * v.transpose();
    Ok(to_mat(&out))
}

/// `eigh(A)`: the eigenvectors of symmetric A as columns, eigenvalues ascending.
pub(super) fn eigh(a: &Mat) -> Result<Mat> {
    square(a, "eigh")?;
    if !finite(a) {
        return Ok(nan(a.rows, a.cols));
    }
    let (_, v) = eigen(a, "eigh")?;
    Ok(to_mat(&v))
}

/// `qr(A)`: the thin Q of A = QR (rows × min(rows, cols), orthonormal columns), signed
/// so that R's diagonal is non-negative.
pub(super) fn qr(a: &Mat) -> Result<Mat> {
    let (m, n) = (a.rows, a.cols);
    if !finite(a) {
        return Ok(nan(m, m.min(n)));
    }
    let x = faer::Mat::from_fn(m, n, |i, j| f64::from(a.data[i * n + j]));
    let d = x.qr();
    let mut q = d.compute_thin_Q();
    let r = d.thin_R();
    for j in 0..q.ncols() {
        if r[(j, j)] < 0.0 {
            for i in 0..m {
                q[(i, j)] = -q[(i, j)];
            }
        }
    }
    Ok(to_mat(&q))
}

/// `diagonal_order(A)`: the permutation matrix P for which Pᵀ A P has A's diagonal in
/// descending order — column i of A P is column s(i) of A for the stable descending
/// order s of the diagonal (equal entries keep their order; a NaN goes last). SOAP sorts
/// its eigenbasis by the estimated eigenvalues diag(Qᵀ L Q) this way before refreshing it.
pub(super) fn diagonal_order(a: &Mat) -> Result<Mat> {
    square(a, "diagonal_order")?;
    let n = a.rows;
    let diag: Vec<f32> = (0..n).map(|i| a.data[i * n + i]).collect();
    let mut order: Vec<usize> = (0..n).collect();
    // NaN sorts last: compare "is NaN" first, then the value, larger first.
    order.sort_by(|&i, &j| {
        let (x, y) = (diag[i], diag[j]);
        x.is_nan()
            .cmp(&y.is_nan())
            .then(y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal))
    });
    let mut p = Mat::filled(n, n, 0.0);
    for (i, &s) in order.iter().enumerate() {
        p.data[s * n + i] = 1.0;
    }
    Ok(p)
}

/// `matrix_trace(A)`: the sum of A's main diagonal (min(rows, cols) entries, as NumPy's
/// and torch's `trace` take it), accumulated in f64.
pub(super) fn trace(a: &Mat) -> f32 {
    let d = a.rows.min(a.cols);
    (0..d)
        .map(|i| f64::from(a.data[i * a.cols + i]))
        .sum::<f64>() as f32
}

/// `frobenius_norm(A)`: sqrt(Σ aᵢⱼ²), accumulated in f64 in row-major order.
pub(super) fn frobenius_norm(a: &Mat) -> f32 {
    a.data
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt() as f32
}

/// `spectral_norm(A)`: A's largest singular value (faer's SVD in f64), 0 for an empty
/// matrix, NaN for one with a NaN or an infinity.
pub(super) fn spectral_norm(a: &Mat) -> Result<f32> {
    let (m, n) = (a.rows, a.cols);
    if m == 0 || n == 0 {
        return Ok(0.0);
    }
    if !finite(a) {
        return Ok(f32::NAN);
    }
    let x = faer::Mat::from_fn(m, n, |i, j| f64::from(a.data[i * n + j]));
    let s = x.singular_values().map_err(|_| {
        Error::user(format!(
            "`spectral_norm`: the singular value decomposition of a {} matrix did not converge",
            a.shape()
        ))
    })?;
    Ok(s.first().copied().unwrap_or(0.0) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mat(rows: usize, cols: usize, data: &[f32]) -> Mat {
        Mat {
            rows,
            cols,
            data: data.to_vec(),
        }
    }

    #[test]
    fn an_inverse_square_root_squared_inverts_the_matrix() {
        // [[4, 1], [1, 3]]: X = A^(-1/2) satisfies X·A·X = I.
        let a = mat(2, 2, &[4.0, 1.0, 1.0, 3.0]);
        let x = inverse_root(&a, 2.0, 0.0).expect("square");
        let xax = x
            .matmul(false, &a, false)
            .and_then(|m| m.matmul(false, &x, false))
            .expect("shapes");
        for (i, v) in xax.data.iter().enumerate() {
            let want = if i % 3 == 0 { 1.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-5, "{xax:?}");
        }
    }

    #[test]
    fn eigenvectors_and_q_follow_the_stated_conventions() {
        // diag(2, 1) has eigenvalues 1, 2: eigenvectors e2, e1 with positive entries.
        let v = eigh(&mat(2, 2, &[2.0, 0.0, 0.0, 1.0])).expect("square");
        assert_eq!(v.data, vec![0.0, 1.0, 1.0, 0.0]);
        // -I = (-I)·I is its QR with R's diagonal non-negative.
        let q = qr(&mat(2, 2, &[-1.0, 0.0, 0.0, -1.0])).expect("qr");
        assert_eq!(q.data, vec![-1.0, 0.0, 0.0, -1.0]);
        assert!(eigh(&mat(1, 2, &[1.0, 2.0])).is_err());
    }

    #[test]
    fn the_norms_and_the_trace_match_their_definitions() {
        // [[3, 0], [4, 0]] = u vᵀ with |u| = 5, |v| = 1: rank one, so the spectral norm is
        // the Frobenius norm, 5; the trace is 3. A 2 × 3 matrix's trace takes 2 entries.
        let a = mat(2, 2, &[3.0, 0.0, 4.0, 0.0]);
        assert_eq!(frobenius_norm(&a), 5.0);
        assert!((spectral_norm(&a).expect("svd") - 5.0).abs() < 1e-6);
        assert_eq!(trace(&a), 3.0);
        assert_eq!(trace(&mat(2, 3, &[1.0, 9.0, 9.0, 9.0, 2.0, 9.0])), 3.0);
        // diag(1, -7, 2): singular values 7, 2, 1.
        let d = mat(3, 3, &[1.0, 0.0, 0.0, 0.0, -7.0, 0.0, 0.0, 0.0, 2.0]);
        assert!((spectral_norm(&d).expect("svd") - 7.0).abs() < 1e-6);
        assert_eq!(spectral_norm(&mat(0, 0, &[])).expect("empty"), 0.0);
        assert!(spectral_norm(&mat(1, 1, &[f32::INFINITY]))
            .expect("inf")
            .is_nan());
    }

    #[test]
    fn a_diagonal_order_sorts_the_diagonal_descending_and_stably() {
        // diag(1, 3, NaN, 3): columns 1 and 3 (both 3, in order), then 0, then the NaN.
        let a = mat(
            4,
            4,
            &[
                1.0,
                9.0,
                9.0,
                9.0,
                9.0,
                3.0,
                9.0,
                9.0,
                9.0,
                9.0,
                f32::NAN,
                9.0,
                9.0,
                9.0,
                9.0,
                3.0,
            ],
        );
        let p = diagonal_order(&a).expect("square");
        let col = |i: usize| (0..4).position(|r| p.data[r * 4 + i] == 1.0);
        assert_eq!(
            (0..4).map(col).collect::<Vec<_>>(),
            [Some(1), Some(3), Some(0), Some(2)]
        );
        assert_eq!(p.data.iter().filter(|v| **v == 1.0).count(), 4);
        assert!(diagonal_order(&mat(1, 2, &[1.0, 2.0])).is_err());
    }
}
