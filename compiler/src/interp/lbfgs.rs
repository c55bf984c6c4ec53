//! L-BFGS with an optional strong-Wolfe line search, the one optimizer the language cannot
//! express (it loops over a history of vectors and re-evaluates the loss), given to it as
//! the builtin `"lbfgs"` behind `std.torch.LBFGS`. It follows torch.optim.LBFGS step for
//! step: one call of `step` is one `optimizer.step(closure)` (up to max_iter iterations),
//! over all parameters flattened into one vector, in f32 like PyTorch's tensors
//! (Nocedal & Wright, "Numerical Optimization", Alg. 7.4 two-loop recursion and
//! Alg. 3.5/3.6 for the line search).

use crate::error::{Error, Result};

/// The model as L-BFGS needs it: loss and flat gradient at a flat point.
pub trait Objective {
    fn eval(&mut self, x: &[f32]) -> Result<(f32, Vec<f32>)>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct LbfgsConfig {
    pub lr: f32,
    pub max_iter: usize,
    pub max_eval: usize,
    pub tolerance_grad: f32,
    pub tolerance_change: f32,
    pub history_size: usize,
    pub strong_wolfe: bool,
}

/// What persists between steps (PyTorch's `state` of the first parameter).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct LbfgsState {
    d: Vec<f32>,
    t: f32,
    old_dirs: Vec<Vec<f32>>,
    old_stps: Vec<Vec<f32>>,
    ro: Vec<f32>,
    h_diag: f32,
    prev_flat_grad: Option<Vec<f32>>,
    prev_loss: f64,
    n_iter: usize,
    func_evals: usize,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn abs_max(a: &[f32]) -> f32 {
    a.iter().fold(0f32, |m, x| m.max(x.abs()))
}

fn axpy(x: &[f32], alpha: f32, d: &[f32]) -> Vec<f32> {
    x.iter().zip(d).map(|(a, b)| a + alpha * b).collect()
}

/// One `optimizer.step(closure)`: updates `x` in place.
pub fn step(
    cfg: &LbfgsConfig,
    st: &mut LbfgsState,
    x: &mut Vec<f32>,
    f: &mut dyn Objective,
) -> Result<()> {
    let (first_loss, mut flat_grad) = f.eval(x)?;
    let mut loss = f64::from(first_loss);
    let mut current_evals = 1;
    st.func_evals += 1;
    if abs_max(&flat_grad) <= cfg.tolerance_grad {
        return Ok(());
    }
    let mut n_iter = 0;
    while n_iter < cfg.max_iter {
        n_iter += 1;
        st.n_iter += 1;
        if st.n_iter == 1 {
            st.d = flat_grad.iter().map(|g| -g).collect();
            st.old_dirs.clear();
            st.old_stps.clear();
            st.ro.clear();
            st.h_diag = 1.0;
        } else {
            let prev = st
                .prev_flat_grad
                .as_ref()
                .ok_or_else(|| Error::internal("L-BFGS lost its previous gradient"))?;
            let y: Vec<f32> = flat_grad.iter().zip(prev).map(|(a, b)| a - b).collect();
            let s: Vec<f32> = st.d.iter().map(|v| v * st.t).collect();
            let ys = dot(&y, &s);
            if ys > 1e-10 {
                if st.old_dirs.len() == cfg.history_size {
                    st.old_dirs.remove(0);
                    st.old_stps.remove(0);
                    st.ro.remove(0);
                }
                st.h_diag = ys / dot(&y, &y);
                st.old_dirs.push(y);
                st.old_stps.push(s);
                st.ro.push(1.0 / ys);
            }
            // Two-loop recursion (Nocedal & Wright, Alg. 7.4).
            let num_old = st.old_dirs.len();
            let mut al = vec![0f32; num_old];
            let mut q: Vec<f32> = flat_grad.iter().map(|g| -g).collect();
            for i in (0..num_old).rev() {
                al[i] = dot(&st.old_stps[i], &q) * st.ro[i];
                q = axpy(&q, -al[i], &st.old_dirs[i]);
            }
            let mut r: Vec<f32> = q.iter().map(|v| v * st.h_diag).collect();
            for (((y, s), ro), a) in st.old_dirs.iter().zip(&st.old_stps).zip(&st.ro).zip(&al) {
                let be_i = dot(y, &r) * ro;
                r = axpy(&r, a - be_i, s);
            }
            st.d = r;
        }
        st.prev_flat_grad = Some(flat_grad.clone());
        st.prev_loss = loss;
        st.t = if st.n_iter == 1 {
            let l1: f32 = flat_grad.iter().map(|g| g.abs()).sum();
            (1.0f32).min(1.0 / l1) * cfg.lr
        } else {
            cfg.lr
        };
        let gtd = dot(&flat_grad, &st.d);
        if gtd > -cfg.tolerance_change {
            break;
        }
        let mut ls_func_evals = 0;
        let opt_cond;
        if cfg.strong_wolfe {
            let (l, g, t, evals) = strong_wolfe(
                f,
                x,
                st.t,
                &st.d,
                loss,
                &flat_grad,
                gtd,
                cfg.tolerance_change,
                // The loop stops once `current_evals >= max_eval`, so at least 1 is left.
                cfg.max_eval.saturating_sub(current_evals),
            )?;
            loss = l;
            flat_grad = g;
            st.t = t;
            ls_func_evals = evals;
            *x = axpy(x, st.t, &st.d);
            opt_cond = abs_max(&flat_grad) <= cfg.tolerance_grad;
        } else {
            *x = axpy(x, st.t, &st.d);
            if n_iter != cfg.max_iter {
                let (l, g) = f.eval(x)?;
                loss = f64::from(l);
                flat_grad = g;
                ls_func_evals = 1;
                opt_cond = abs_max(&flat_grad) <= cfg.tolerance_grad;
            } else {
                opt_cond = false;
            }
        }
        current_evals += ls_func_evals;
        st.func_evals += ls_func_evals;
        if n_iter == cfg.max_iter || current_evals >= cfg.max_eval || opt_cond {
            break;
        }
        if abs_max(&st.d) * st.t.abs() <= cfg.tolerance_change {
            break;
        }
        if (loss - st.prev_loss).abs() < f64::from(cfg.tolerance_change) {
            break;
        }
    }
    Ok(())
}

/// The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to bounds.
fn cubic_interpolate(
    x1: f32,
    f1: f64,
    g1: f32,
    x2: f32,
    f2: f64,
    g2: f32,
    bounds: Option<(f32, f32)>,
) -> f32 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    // PyTorch's losses are Python floats: their difference is taken in f64.
    let slope = (3.0 * (f1 - f2) / (f64::from(x1) - f64::from(x2))) as f32;
    let d1 = g1 + g2 - slope;
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        min_pos.max(lo).min(hi)
    } else {
        (lo + hi) / 2.0
    }
}

/// A bracket end: step, loss, gradient, directional derivative.
#[derive(Clone)]
struct Point {
    t: f32,
    f: f64,
    g: Vec<f32>,
    gtd: f32,
}

/// Line search for the strong Wolfe conditions (c1 = 1e-4, c2 = 0.9), as PyTorch's
/// `_strong_wolfe`, with at most `max_ls` iterations: `LBFGS.step` passes what is left of
/// its evaluation budget (`max_eval - current_evals`), not the function's default of 25.
/// Returns (loss, gradient, step, evaluations).
#[allow(clippy::too_many_arguments)]
fn strong_wolfe(
    f: &mut dyn Objective,
    x: &[f32],
    mut t: f32,
    d: &[f32],
    f0: f64,
    g0: &[f32],
    gtd0: f32,
    tolerance_change: f32,
    max_ls: usize,
) -> Result<(f64, Vec<f32>, f32, usize)> {
    const C1: f32 = 1e-4;
    const C2: f32 = 0.9;
    let d_norm = abs_max(d);
    let mut eval = |t: f32| f.eval(&axpy(x, t, d)).map(|(l, g)| (f64::from(l), g));
    // The Armijo bound is a f32 tensor in PyTorch: the loss joins it in f32.
    let armijo = |t: f32| f64::from(f0 as f32 + C1 * t * gtd0);
    let (mut f_new, mut g_new) = eval(t)?;
    let mut evals = 1;
    let mut gtd_new = dot(&g_new, d);
    let mut prev = Point {
        t: 0.0,
        f: f0,
        g: g0.to_vec(),
        gtd: gtd0,
    };
    let mut done = false;
    let mut ls_iter = 0;
    let mut bracket: Vec<Point> = Vec::new();
    while ls_iter < max_ls {
        let cur = Point {
            t,
            f: f_new,
            g: g_new.clone(),
            gtd: gtd_new,
        };
        if f_new > armijo(t) || (ls_iter > 1 && f_new >= prev.f) {
            bracket = vec![prev.clone(), cur];
            break;
        }
        if gtd_new.abs() <= -C2 * gtd0 {
            bracket = vec![cur];
            done = true;
            break;
        }
        if gtd_new >= 0.0 {
            bracket = vec![prev.clone(), cur];
            break;
        }
        let min_step = t + 0.01 * (t - prev.t);
        let max_step = t * 10.0;
        let next = cubic_interpolate(
            prev.t,
            prev.f,
            prev.gtd,
            t,
            f_new,
            gtd_new,
            Some((min_step, max_step)),
        );
        prev = cur;
        t = next;
        let (fv, gv) = eval(t)?;
        f_new = fv;
        g_new = gv;
        evals += 1;
        gtd_new = dot(&g_new, d);
        ls_iter += 1;
    }
    if ls_iter == max_ls {
        bracket = vec![
            Point {
                t: 0.0,
                f: f0,
                g: g0.to_vec(),
                gtd: gtd0,
            },
            Point {
                t,
                f: f_new,
                g: g_new.clone(),
                gtd: gtd_new,
            },
        ];
    }
    // Zoom (Nocedal & Wright, Alg. 3.6).
    let mut insuf_progress = false;
    let order = |b: &[Point]| {
        if b[0].f <= b[b.len() - 1].f {
            (0, 1)
        } else {
            (1, 0)
        }
    };
    let (mut low, mut high) = order(&bracket);
    while !done && ls_iter < max_ls && bracket.len() == 2 {
        if (bracket[1].t - bracket[0].t).abs() * d_norm < tolerance_change {
            break;
        }
        t = cubic_interpolate(
            bracket[0].t,
            bracket[0].f,
            bracket[0].gtd,
            bracket[1].t,
            bracket[1].f,
            bracket[1].gtd,
            None,
        );
        let (bmin, bmax) = (
            bracket[0].t.min(bracket[1].t),
            bracket[0].t.max(bracket[1].t),
        );
        let eps = 0.1 * (bmax - bmin);
        if (bmax - t).min(t - bmin) < eps {
            if insuf_progress || t >= bmax || t <= bmin {
                t = if (t - bmax).abs() < (t - bmin).abs() {
                    bmax - eps
                } else {
                    bmin + eps
                };
                insuf_progress = false;
            } else {
                insuf_progress = true;
            }
        } else {
            insuf_progress = false;
        }
        let (fv, gv) = eval(t)?;
        evals += 1;
        let gtd_v = dot(&gv, d);
        ls_iter += 1;
        let point = Point {
            t,
            f: fv,
            g: gv,
            gtd: gtd_v,
        };
        if fv > armijo(t) || fv >= bracket[low].f {
            bracket[high] = point;
            (low, high) = order(&bracket);
        } else {
            if gtd_v.abs() <= -C2 * gtd0 {
                done = true;
            } else if gtd_v * (bracket[high].t - bracket[low].t) >= 0.0 {
                bracket[high] = bracket[low].clone();
            }
            bracket[low] = point;
        }
    }
    let best = &bracket[if bracket.len() == 1 { 0 } else { low }];
    Ok((best.f, best.g.clone(), best.t, evals))
}
