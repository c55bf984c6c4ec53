//! Built-in models with hand-written forward and backward passes, following PyTorch's
//! conventions (../shared/conformance/FORMAT-TRAIN.md §3): `nn.Sequential` of Linear
//! layers with an activation between them, state_dict names `0.weight`, `0.bias`,
//! `2.weight`, ..., weights `[out, in]`, mean losses, all in f32.

use anneal_compiler::error::{Error, Result};

/// A model the runtime trains: named parameter tensors and the mean loss of a batch with
/// its gradient; optional capabilities the recipe may need (Hessian-vector products).
/// Batches are rows of features `x` with targets `y`; models that stand alone (Rosenbrock,
/// quadratics) ignore them.
pub trait Model {
    /// `(name, shape)` of every parameter, in model order.
    fn param_specs(&self) -> Vec<(String, Vec<usize>)>;
    fn loss_and_grad(
        &self,
        params: &[Vec<f32>],
        x: &[f32],
        y: &[f32],
    ) -> Result<(f32, Vec<Vec<f32>>)>;
    /// The Hessian at `params` times `v`, where the model can compute it.
    fn hvp(&self, _params: &[Vec<f32>], _v: &[Vec<f32>]) -> Option<Vec<Vec<f32>>> {
        None
    }
    /// The loss of each example of a batch, where the model has examples (curricula).
    fn per_example_losses(
        &self,
        _params: &[Vec<f32>],
        _x: &[f32],
        _y: &[f32],
    ) -> Option<Result<Vec<f32>>> {
        None
    }
    /// Where a run starts when the model has a conventional starting point.
    fn start(&self) -> Option<Vec<Vec<f32>>> {
        None
    }
}

impl Model for Mlp {
    fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        Mlp::param_specs(self)
    }
    fn loss_and_grad(
        &self,
        params: &[Vec<f32>],
        x: &[f32],
        y: &[f32],
    ) -> Result<(f32, Vec<Vec<f32>>)> {
        Mlp::loss_and_grad(self, params, x, y)
    }
    fn per_example_losses(
        &self,
        params: &[Vec<f32>],
        x: &[f32],
        y: &[f32],
    ) -> Option<Result<Vec<f32>>> {
        Some(self.losses(params, x, y))
    }
}

/// Rosenbrock's function (A − x)² + B(y − x²)² of one parameter `xy` = (x, y), started at
/// the classic (−1.2, 1): a curved valley that tests an optimizer's conditioning.
#[derive(Debug, Clone, PartialEq)]
pub struct Rosenbrock {
    pub a: f32,
    pub b: f32,
}

impl Model for Rosenbrock {
    fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        vec![("xy".into(), vec![2])]
    }
    fn loss_and_grad(
        &self,
        params: &[Vec<f32>],
        _x: &[f32],
        _y: &[f32],
    ) -> Result<(f32, Vec<Vec<f32>>)> {
        let p = params
            .first()
            .filter(|p| p.len() == 2)
            .ok_or("rosenbrock has one parameter of two values")?;
        let (x, y) = (p[0], p[1]);
        let r = y - x * x;
        let loss = (self.a - x) * (self.a - x) + self.b * r * r;
        Ok((
            loss,
            vec![vec![
                -2.0 * (self.a - x) - 4.0 * self.b * x * r,
                2.0 * self.b * r,
            ]],
        ))
    }
    fn hvp(&self, params: &[Vec<f32>], v: &[Vec<f32>]) -> Option<Vec<Vec<f32>>> {
        let (x, y) = match params.first()?.as_slice() {
            [x, y] => (*x, *y),
            _ => return None,
        };
        let (hxx, hxy, hyy) = (
            2.0 - 4.0 * self.b * (y - x * x) + 8.0 * self.b * x * x,
            -4.0 * self.b * x,
            2.0 * self.b,
        );
        let (vx, vy) = match v.first()?.as_slice() {
            [x, y] => (*x, *y),
            _ => return None,
        };
        Some(vec![vec![hxx * vx + hxy * vy, hxy * vx + hyy * vy]])
    }
    fn start(&self) -> Option<Vec<Vec<f32>>> {
        Some(vec![vec![-1.2, 1.0]])
    }
}

/// An ill-conditioned quadratic ½ Σ aᵢ (xᵢ − 1)² of one parameter `x` of `dim` values, the
/// curvatures aᵢ spread evenly in log scale from 1 to `condition`; started at 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Quadratic {
    pub curvature: Vec<f32>,
}

impl Quadratic {
    pub fn new(dim: usize, condition: f64) -> Result<Quadratic> {
        if dim == 0 || !(condition >= 1.0 && condition.is_finite()) {
            return Err("a quadratic needs a dimension >= 1 and a condition number >= 1".into());
        }
        let curvature = (0..dim)
            .map(|i| {
                let t = if dim == 1 {
                    0.0
                } else {
                    i as f64 / (dim - 1) as f64
                };
                condition.powf(t) as f32
            })
            .collect();
        Ok(Quadratic { curvature })
    }
}

impl Model for Quadratic {
    fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        vec![("x".into(), vec![self.curvature.len()])]
    }
    fn loss_and_grad(
        &self,
        params: &[Vec<f32>],
        _x: &[f32],
        _y: &[f32],
    ) -> Result<(f32, Vec<Vec<f32>>)> {
        let p = params
            .first()
            .filter(|p| p.len() == self.curvature.len())
            .ok_or("the quadratic has one parameter `x`")?;
        let mut loss = 0f32;
        let mut g = Vec::with_capacity(p.len());
        for (x, a) in p.iter().zip(&self.curvature) {
            let d = x - 1.0;
            loss += 0.5 * a * d * d;
            g.push(a * d);
        }
        Ok((loss, vec![g]))
    }
    fn hvp(&self, _params: &[Vec<f32>], v: &[Vec<f32>]) -> Option<Vec<Vec<f32>>> {
        Some(vec![v
            .first()?
            .iter()
            .zip(&self.curvature)
            .map(|(v, a)| v * a)
            .collect()])
    }
    fn start(&self) -> Option<Vec<Vec<f32>>> {
        Some(vec![vec![0.0; self.curvature.len()]])
    }
}

/// The activation between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Tanh,
    Relu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// `nn.functional.cross_entropy` on integer class targets.
    CrossEntropy,
    /// `nn.functional.mse_loss` on the single output.
    Mse,
}

/// Linear regression (`[d, 1]`, MSE), softmax regression (`[d, k]`, cross-entropy) and
/// MLPs (`[d, h..., k]`) are all this.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    pub layers: Vec<usize>,
    pub activation: Activation,
    pub loss: Loss,
}

impl Mlp {
    pub fn new(layers: Vec<usize>, activation: Activation, loss: Loss) -> Result<Mlp> {
        if layers.len() < 2 || layers.contains(&0) {
            return Err(Error::user(format!(
                "a model needs at least an input and an output width, all positive; got {layers:?}"
            )));
        }
        if loss == Loss::Mse && layers[layers.len() - 1] != 1 {
            return Err("the mse loss needs a single output".into());
        }
        Ok(Mlp {
            layers,
            activation,
            loss,
        })
    }

    /// `(name, shape)` of every parameter, in model order.
    pub fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for l in 0..self.layers.len() - 1 {
            let (i, o) = (self.layers[l], self.layers[l + 1]);
            out.push((format!("{}.weight", 2 * l), vec![o, i]));
            out.push((format!("{}.bias", 2 * l), vec![o]));
        }
        out
    }

    fn check(&self, params: &[Vec<f32>], x: &[f32], y: &[f32]) -> Result<usize> {
        let specs = self.param_specs();
        if params.len() != specs.len() {
            return Err(Error::user(format!(
                "the model has {} parameters, {} given",
                specs.len(),
                params.len()
            )));
        }
        for (p, (name, shape)) in params.iter().zip(&specs) {
            if p.len() != shape.iter().product::<usize>() {
                return Err(Error::user(format!(
                    "parameter `{name}` should hold {shape:?}"
                )));
            }
        }
        let d = self.layers[0];
        if x.len() != y.len() * d || y.is_empty() {
            return Err(Error::user(format!(
                "a batch of {} rows needs {} features each",
                y.len(),
                d
            )));
        }
        Ok(y.len())
    }

    /// Forward pass: the activations of every layer (input first) and the outputs.
    fn forward(&self, params: &[Vec<f32>], x: &[f32], b: usize) -> Vec<Vec<f32>> {
        let mut hs = vec![x.to_vec()];
        let last = self.layers.len() - 2;
        for l in 0..=last {
            let (i, o) = (self.layers[l], self.layers[l + 1]);
            let (w, bias) = (&params[2 * l], &params[2 * l + 1]);
            let h = &hs[l];
            // z = h · Wᵀ + b: W is [out, in] row-major, read transposed through its strides.
            let mut z: Vec<f32> = (0..b).flat_map(|_| bias.iter().copied()).collect();
            gemm(b, i, o, h, (i, 1), w, (1, i), &mut z, (o, 1), 1.0);
            if l < last {
                for v in &mut z {
                    *v = match self.activation {
                        Activation::Tanh => v.tanh(),
                        Activation::Relu => v.max(0.0),
                    };
                }
            }
            hs.push(z);
        }
        hs
    }

    /// The outputs (logits) for a batch.
    pub fn predict(&self, params: &[Vec<f32>], x: &[f32], rows: usize) -> Vec<f32> {
        self.forward(params, x, rows).pop().unwrap_or_default()
    }

    /// The per-example losses of a batch.
    pub fn losses(&self, params: &[Vec<f32>], x: &[f32], y: &[f32]) -> Result<Vec<f32>> {
        let b = self.check(params, x, y)?;
        let out = self.predict(params, x, b);
        let k = self.layers[self.layers.len() - 1];
        let mut losses = Vec::with_capacity(b);
        for r in 0..b {
            let o = &out[r * k..(r + 1) * k];
            losses.push(match self.loss {
                Loss::Mse => (o[0] - y[r]) * (o[0] - y[r]),
                Loss::CrossEntropy => {
                    let class = target_class(y[r], k)?;
                    let m = o.iter().fold(f32::NEG_INFINITY, |a, v| a.max(*v));
                    let lse = m + o.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
                    lse - o[class]
                }
            });
        }
        Ok(losses)
    }

    /// The mean loss of a batch and its gradient for every parameter.
    pub fn loss_and_grad(
        &self,
        params: &[Vec<f32>],
        x: &[f32],
        y: &[f32],
    ) -> Result<(f32, Vec<Vec<f32>>)> {
        let b = self.check(params, x, y)?;
        let hs = self.forward(params, x, b);
        let n = self.layers.len();
        let k = self.layers[n - 1];
        let out = &hs[n - 1];
        // dL/d(output), FORMAT-TRAIN §3: (softmax − onehot)/B or 2(o − y)/B.
        let mut dz = vec![0f32; b * k];
        let mut total = 0f32;
        for r in 0..b {
            let o = &out[r * k..(r + 1) * k];
            match self.loss {
                Loss::Mse => {
                    let d = o[0] - y[r];
                    total += d * d;
                    dz[r] = 2.0 * d / b as f32;
                }
                Loss::CrossEntropy => {
                    let class = target_class(y[r], k)?;
                    let m = o.iter().fold(f32::NEG_INFINITY, |a, v| a.max(*v));
                    let sum: f32 = o.iter().map(|v| (v - m).exp()).sum();
                    total += m + sum.ln() - o[class];
                    for j in 0..k {
                        let p = (o[j] - m).exp() / sum;
                        dz[r * k + j] = (p - if j == class { 1.0 } else { 0.0 }) / b as f32;
                    }
                }
            }
        }
        let mut grads = vec![Vec::new(); params.len()];
        for l in (0..n - 1).rev() {
            let (i, o) = (self.layers[l], self.layers[l + 1]);
            let h = &hs[l];
            let w = &params[2 * l];
            // dW = dzᵀ · h, db = Σ_rows dz.
            let mut dw = vec![0f32; o * i];
            gemm(o, b, i, &dz, (1, o), h, (i, 1), &mut dw, (i, 1), 0.0);
            let mut db = vec![0f32; o];
            for r in 0..b {
                for (d, g) in db.iter_mut().zip(&dz[r * o..(r + 1) * o]) {
                    *d += g;
                }
            }
            if l > 0 {
                // dh = dz · W
                let mut dh = vec![0f32; b * i];
                gemm(b, o, i, &dz, (o, 1), w, (i, 1), &mut dh, (i, 1), 0.0);
                // Through the activation, from its output: tanh' = 1 − h², relu' = [z > 0].
                for (d, hv) in dh.iter_mut().zip(h) {
                    *d *= match self.activation {
                        Activation::Tanh => 1.0 - hv * hv,
                        Activation::Relu => {
                            if *hv > 0.0 {
                                1.0
                            } else {
                                0.0
                            }
                        }
                    };
                }
                dz = dh;
            }
            grads[2 * l] = dw;
            grads[2 * l + 1] = db;
        }
        Ok((total / b as f32, grads))
    }
}

/// C = A · B + beta · C for row-major buffers with explicit (row, column) strides, through
/// the `matrixmultiply` crate's blocked sgemm.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    c: &mut [f32],
    (rsc, csc): (usize, usize),
    beta: f32,
) {
    // The strides above address only inside each slice: m·k, k·n and m·n elements, laid
    // out as described, which every caller sizes its buffers for.
    debug_assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        );
    }
}

fn target_class(y: f32, k: usize) -> Result<usize> {
    if y < 0.0 || y.fract() != 0.0 || y as usize >= k {
        return Err(Error::user(format!("target {y} is not a class in 0..{k}")));
    }
    Ok(y as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central finite differences in f64 of the f32 loss, against the backward pass.
    fn check_gradients(model: &Mlp, x: &[f32], y: &[f32]) {
        let specs = model.param_specs();
        let mut params: Vec<Vec<f32>> = specs
            .iter()
            .enumerate()
            .map(|(t, (_, s))| {
                (0..s.iter().product::<usize>())
                    .map(|i| (((i * 7 + t * 13) % 11) as f32 - 5.0) * 0.1)
                    .collect()
            })
            .collect();
        let (_, grads) = model.loss_and_grad(&params, x, y).unwrap();
        let h = 1e-2f32;
        for t in 0..params.len() {
            for i in 0..params[t].len() {
                let orig = params[t][i];
                params[t][i] = orig + h;
                let up = f64::from(model.loss_and_grad(&params, x, y).unwrap().0);
                params[t][i] = orig - h;
                let down = f64::from(model.loss_and_grad(&params, x, y).unwrap().0);
                params[t][i] = orig;
                let fd = (up - down) / (2.0 * f64::from(h));
                let g = f64::from(grads[t][i]);
                assert!(
                    (fd - g).abs() <= 2e-3 + 2e-2 * g.abs(),
                    "{} [{i}]: backward {g}, finite difference {fd}",
                    specs[t].0
                );
            }
        }
    }

    #[test]
    fn mlp_tanh_cross_entropy_gradients() {
        let model = Mlp::new(vec![3, 4, 3], Activation::Tanh, Loss::CrossEntropy).unwrap();
        check_gradients(&model, &[0.5, -1.0, 2.0, 0.1, 0.3, -0.7], &[2.0, 0.0]);
    }

    #[test]
    fn mlp_relu_mse_gradients() {
        let model = Mlp::new(vec![2, 5, 4, 1], Activation::Relu, Loss::Mse).unwrap();
        check_gradients(
            &model,
            &[0.5, -1.0, 2.0, 0.1, 0.3, -0.7],
            &[1.5, -0.5, 0.25],
        );
    }

    /// Central differences of the gradient against the Hessian-vector product.
    fn check_hvp(model: &dyn Model, p: Vec<Vec<f32>>, v: Vec<Vec<f32>>) {
        let hv = model.hvp(&p, &v).unwrap();
        let h = 1e-3f32;
        let shift = |s: f32| -> Vec<Vec<f32>> {
            p.iter()
                .zip(&v)
                .map(|(a, b)| a.iter().zip(b).map(|(x, d)| x + s * d).collect())
                .collect()
        };
        let (_, up) = model.loss_and_grad(&shift(h), &[], &[]).unwrap();
        let (_, down) = model.loss_and_grad(&shift(-h), &[], &[]).unwrap();
        for ((u, d), w) in up[0].iter().zip(&down[0]).zip(&hv[0]) {
            let fd = f64::from(u - d) / (2.0 * f64::from(h));
            assert!(
                (fd - f64::from(*w)).abs() <= 1e-2 * (1.0 + f64::from(w.abs())),
                "{fd} vs {w}"
            );
        }
    }

    #[test]
    fn rosenbrock_and_quadratic_gradients_and_hessians() {
        let r = Rosenbrock { a: 1.0, b: 100.0 };
        // At (−1.2, 1): ∂x = −2(2.2) − 400(−1.2)(1 − 1.44) = −215.6, ∂y = 200(−0.44) = −88.
        let (loss, g) = r.loss_and_grad(&r.start().unwrap(), &[], &[]).unwrap();
        assert!(
            (loss - 24.2).abs() < 1e-3
                && (g[0][0] + 215.6).abs() < 1e-2
                && (g[0][1] + 88.0).abs() < 1e-3
        );
        check_hvp(&r, vec![vec![0.3, -0.7]], vec![vec![1.0, 0.5]]);
        let q = Quadratic::new(5, 1000.0).unwrap();
        assert_eq!(q.curvature[0], 1.0);
        assert!((q.curvature[4] - 1000.0).abs() < 1e-2);
        check_hvp(
            &q,
            vec![vec![0.1, 0.2, 0.3, 0.4, 0.5]],
            vec![vec![1.0, -1.0, 0.5, 2.0, 0.0]],
        );
        assert!(Quadratic::new(0, 10.0).is_err());
    }

    #[test]
    fn names_and_shapes_follow_pytorch() {
        let model = Mlp::new(vec![64, 32, 10], Activation::Tanh, Loss::CrossEntropy).unwrap();
        let specs = model.param_specs();
        assert_eq!(specs[0], ("0.weight".to_string(), vec![32, 64]));
        assert_eq!(specs[3], ("2.bias".to_string(), vec![10]));
        assert!(Mlp::new(vec![4, 3], Activation::Tanh, Loss::Mse).is_err());
        assert!(model.loss_and_grad(&[], &[], &[]).is_err());
    }
}
