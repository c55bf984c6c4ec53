//! The methods of `std.research` (and SAM, OneCycle momentum) against numbers derived by
//! hand from their papers' equations, on losses whose gradient and Hessian are known in
//! closed form. Each test carries its derivation.

use anneal_compiler::interp::{eval_sched, Interpreter, Oracle};
use anneal_compiler::{compile, diagnostic};

/// L(x) = ½ Σ a_i x_i²: gradient a ⊙ x, Hessian diag(a).
struct Quadratic {
    a: Vec<Vec<f32>>,
    /// The point the step starts from, where `loss` is read.
    at: Vec<Vec<f32>>,
}

impl Oracle for Quadratic {
    fn grad_at(
        &mut self,
        params: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, anneal_compiler::error::Error> {
        Ok(params
            .iter()
            .zip(&self.a)
            .map(|(p, a)| p.iter().zip(a).map(|(x, a)| a * x).collect())
            .collect())
    }

    fn hvp(
        &mut self,
        _params: &[Vec<f32>],
        v: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, anneal_compiler::error::Error> {
        self.grad_at(v)
    }

    fn loss(&mut self) -> Result<f64, anneal_compiler::error::Error> {
        Ok(self
            .at
            .iter()
            .zip(&self.a)
            .flat_map(|(p, a)| p.iter().zip(a))
            .map(|(x, a)| 0.5 * f64::from(*a) * f64::from(*x) * f64::from(*x))
            .sum())
    }
}

/// The compilation of `src`, which must have no errors.
fn compiled(name: &str, src: &str) -> anneal_compiler::Compilation {
    let c = compile(name, src);
    assert!(
        !c.has_errors(),
        "{}",
        diagnostic::render(&c.diagnostics, &c.sources, false)
    );
    c
}

fn run(src: &str, a: Vec<f32>, x: Vec<f32>, steps: usize) -> Vec<Vec<f32>> {
    let c = compiled("test.anneal", src);
    let recipe = &c.recipes()[0];
    let names = vec!["x".to_string()];
    let mut params = vec![x];
    let (interp, mut st) = Interpreter::new(&c.program, recipe, &names, &params).unwrap();
    let mut quad = Quadratic {
        a: vec![a],
        at: Vec::new(),
    };
    let mut trace = Vec::new();
    for _ in 0..steps {
        let g = quad.grad_at(&params).unwrap();
        quad.at = params.clone();
        interp
            .step_with(&mut st, &mut params, &g, Some(&mut quad))
            .unwrap();
        trace.push(params[0].clone());
    }
    trace
}

fn close(got: &[f32], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (f64::from(*g) - w).abs() <= 1e-6 + 1e-5 * w.abs(),
            "got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn sam_takes_the_gradient_at_the_perturbed_point() {
    // Foret et al. 2021, Alg. 1: g = ∇L(w) = a⊙w = [1, 4] at w = [1, 1], a = [1, 4];
    // ε = ρ g/‖g‖ = 0.5·[1, 4]/√17 = [0.1212678, 0.4850713];
    // g_SAM = ∇L(w + ε) = a⊙(w + ε) = [1.1212678, 5.9402850];
    // SGD(lr 0.1): w − 0.1·g_SAM = [0.88787322, 0.40597150].
    let trace = run(
        "import std.torch.*\nrecipe r { update = SAM(rho: 0.5) |> SGD(lr: 0.1) }",
        vec![1.0, 4.0],
        vec![1.0, 1.0],
        1,
    );
    close(&trace[0], &[0.887_873_218_7, 0.405_971_500]);
}

#[test]
fn sam_without_the_capability_is_refused() {
    let c = compiled(
        "t.anneal",
        "import std.torch.*\nrecipe r { update = SAM() |> SGD(lr: 0.1) }",
    );
    let recipe = &c.recipes()[0];
    let names = vec!["x".to_string()];
    let mut params = vec![vec![1.0f32]];
    let (interp, mut st) = Interpreter::new(&c.program, recipe, &names, &params).unwrap();
    let err = interp.step(&mut st, &mut params, &[vec![1.0]]).unwrap_err();
    assert!(
        err.to_string().contains("gradient at a shifted point"),
        "{err}"
    );
}

#[test]
fn adabound_clips_the_adam_step_into_its_bounds() {
    // Luo et al. 2019, Alg. 2 with η_l(t) = 0.1(1 − 1/(γt+1)), η_u(t) = 0.1(1 + 1/(γt)),
    // γ = 1e-3, α = 1e-3, β = (0.9, 0.999), gradients 1 then 0.5 on one weight at 1:
    // t=1: m = 0.1, v = 1e-3, α/√v = 0.0316228 ∈ [9.99e-5, 100.1], /√1 → w = 1 − 0.0316228·0.1
    //      = 0.99683772;
    // t=2: m = 0.14, v = 1.24875e-3, α/√v = 0.0282983 ∈ [2.0e-4, 50.1], /√2 = 0.0200080,
    //      w = 0.99683772 − 0.0200080·0.14 = 0.99403660.
    let c = compile(
        "t.anneal",
        "import std.research.*\nrecipe r { update = adabound(learning_rate: 1e-3) }",
    );
    let names = vec!["w".to_string()];
    let mut params = vec![vec![1.0f32]];
    let (interp, mut st) = Interpreter::new(&c.program, &c.recipes()[0], &names, &params).unwrap();
    interp.step(&mut st, &mut params, &[vec![1.0]]).unwrap();
    close(&params[0], &[0.996_837_723_3]);
    interp.step(&mut st, &mut params, &[vec![0.5]]).unwrap();
    close(&params[0], &[0.994_036_603_5]);
}

#[test]
fn sophia_preconditions_with_a_hutchinson_hessian_estimate() {
    // Liu et al. 2023, Alg. 3 on L = ½(2x² + ½y²): H = diag(2, 0.5), so for Rademacher u,
    // ĥ = u⊙Hu = diag(H) exactly. β = (0.9, 0.9), γ = 10, lr 0.1, λ = 0.1, k = 2, from
    // (1, −2):
    // t=1: g = (2, −1), m = (0.2, −0.1), h = 0.1·(2, 0.5) = (0.2, 0.05) (refresh),
    //      θ ← 0.99θ = (0.99, −1.98), step clip(m/(γh), 1) = (0.1, −0.2) → (0.98, −1.96);
    // t=2: g = (1.96, −0.98), m = (0.376, −0.188), h kept, step (0.188, −0.376)
    //      → 0.99θ − 0.1·step = (0.9514, −1.9028);
    // t=3: refresh: h = 0.9h + 0.1·(2, 0.5) = (0.38, 0.095), m = (0.52868, −0.26434),
    //      step (0.139126, −0.278253) → (0.92797337, −1.85594674).
    let trace = run(
        "import std.research.*\nrecipe r { update = sophia(learning_rate: 0.1, b1: 0.9, b2: 0.9, gamma: 10, weight_decay: 0.1, k: 2) }",
        vec![2.0, 0.5],
        vec![1.0, -2.0],
        3,
    );
    close(&trace[0], &[0.98, -1.96]);
    close(&trace[1], &[0.9514, -1.9028]);
    close(&trace[2], &[0.927_973_368_4, -1.855_946_736_8]);
}

fn schedule_values(src: &str, n: usize) -> Vec<f64> {
    let c = compiled("t.anneal", src);
    let (_, s, _) = &c.recipes()[0].schedules[0];
    (0..n)
        .map(|k| eval_sched(&c.program, s, k as f64, 0).unwrap())
        .collect()
}

#[test]
fn lr_range_test_schedule_and_report() {
    // Smith 2017 §3.3: linear from min to max over the run; exponential variant is
    // geometric: lr_k = min·(max/min)^(k/(N−1)).
    let lin = schedule_values(
        "import std.research.*\nrecipe r { schedule lr = lr_range_test(min_lr: 1e-4, max_lr: 1.0, num_steps: 5) }",
        6,
    );
    let want = [1e-4, 0.250075, 0.50005, 0.750025, 1.0, 1.0];
    for (g, w) in lin.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{lin:?}");
    }
    let exp = schedule_values(
        "import std.research.*\nrecipe r { schedule lr = lr_range_test(min_lr: 1e-4, max_lr: 1.0, num_steps: 5, mode: \"exponential\") }",
        5,
    );
    for (k, g) in exp.iter().enumerate() {
        let w = 10f64.powf(-4.0 + k as f64);
        assert!((g - w).abs() < 1e-12 * w.max(1.0), "{exp:?}");
    }
    // A loss that falls along a logistic in log10(lr), steepest at lr = 1e-3, bottoms out,
    // then explodes past lr = 0.1: the report finds both points.
    let n = 2000;
    let lrs: Vec<f64> = (0..n)
        .map(|k| 10f64.powf(-6.0 + 6.0 * k as f64 / (n - 1) as f64))
        .collect();
    let losses: Vec<f64> = lrs
        .iter()
        .map(|lr| {
            let x = lr.log10();
            2.0 - 1.0 / (1.0 + (-4.0 * (x + 3.0)).exp())
                + if x > -1.0 {
                    50.0 * (x + 1.0).powi(2)
                } else {
                    0.0
                }
        })
        .collect();
    let r = anneal_runtime::lr_range::suggest(&lrs, &losses).unwrap();
    // The moving average lags, so the steepest point reads a little late: within 0.25 decade.
    assert!((r.steepest_lr.log10() + 3.0).abs() < 0.25, "{r:?}");
    assert!(r.min_loss_lr > 1e-2 && r.min_loss_lr < 0.3, "{r:?}");
    assert!((r.suggested_lr - r.min_loss_lr / 10.0).abs() < 1e-15);
    assert!(
        r.steps_used < n,
        "the divergence should stop the reading: {r:?}"
    );
    assert!(anneal_runtime::lr_range::suggest(&lrs[..2], &losses[..2]).is_err());
}

#[test]
fn one_cycle_matches_pytorch_learning_rates_and_momenta() {
    // The golden training case mlp_digits_relu_sgd_onecycle records PyTorch's OneCycleLR
    // (max_lr 0.05, 150 steps, cycle_momentum 0.85–0.95) learning rate and momentum at
    // every step.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/conformance/train/mlp_digits_relu_sgd_onecycle.json"
    );
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let lr_want: Vec<f64> = case["expected"]["lr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[0].as_f64().unwrap())
        .collect();
    let m_want: Vec<f64> = case["expected"]["momentum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[0].as_f64().unwrap())
        .collect();
    let lr = schedule_values(
        "import std.torch.*\nrecipe r { schedule lr = OneCycleLR(max_lr: 0.05, total_steps: 150) }",
        150,
    );
    let m = schedule_values(
        "import std.torch.*\nrecipe r { schedule m = OneCycleMomentum(total_steps: 150, base_momentum: 0.85, max_momentum: 0.95) }",
        150,
    );
    for k in 0..150 {
        assert!(
            (lr[k] - lr_want[k]).abs() <= 1e-12 + 1e-9 * lr_want[k],
            "lr[{k}]: {} vs {}",
            lr[k],
            lr_want[k]
        );
        assert!(
            (m[k] - m_want[k]).abs() <= 1e-12,
            "momentum[{k}]: {} vs {}",
            m[k],
            m_want[k]
        );
    }
}

#[test]
fn polyak_sgd_steps_by_the_loss_gap_over_the_squared_gradient_norm() {
    // Loizou et al. 2021, SPS_max: x ← x − min((f(x) − f*)/‖g‖², γ_max)·g.
    // a = [1, 4], x = [1, 1]: f = ½(1 + 4) = 2.5, g = [1, 4], ‖g‖² = 17, rate 2.5/17 =
    // 0.14705882 (< γ_max = 1): x = [1 − 0.14705882, 1 − 0.58823529] = [0.85294118, 0.41176471].
    // Step 2: f = ½(0.72750865 + 4·0.16955017) = 0.70285467, g = [0.85294118, 1.64705882],
    // ‖g‖² = 3.44031142, rate 0.20429972: x = [0.67868553, 0.07527104].
    let trace = run(
        "import std.optax.*\nrecipe r { update = polyak_sgd(max_learning_rate: 1.0) }",
        vec![1.0, 4.0],
        vec![1.0, 1.0],
        2,
    );
    close(&trace[0], &[0.852_941_176_5, 0.411_764_705_9]);
    close(&trace[1], &[0.678_685_53, 0.075_271_04]);
    // γ_max caps the rate: with max 0.1 the first step is x − 0.1·g = [0.9, 0.6].
    let capped = run(
        "import std.optax.*\nrecipe r { update = polyak_sgd(max_learning_rate: 0.1) }",
        vec![1.0, 4.0],
        vec![1.0, 1.0],
        1,
    );
    close(&capped[0], &[0.9, 0.6]);
}

/// A model whose loss follows a script and whose gradient is 1 everywhere, so a stage
/// that reads `loss` can be walked through by hand.
struct Scripted {
    losses: Vec<f64>,
    step: usize,
}

impl Oracle for Scripted {
    fn grad_at(
        &mut self,
        params: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, anneal_compiler::error::Error> {
        Ok(params.iter().map(|p| vec![1.0; p.len()]).collect())
    }

    fn hvp(
        &mut self,
        _params: &[Vec<f32>],
        v: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, anneal_compiler::error::Error> {
        Ok(v.to_vec())
    }

    fn loss(&mut self) -> Result<f64, anneal_compiler::error::Error> {
        let l = self.losses[self.step];
        self.step += 1;
        Ok(l)
    }
}

fn scripted(src: &str, losses: Vec<f64>) -> Vec<f32> {
    let c = compiled("test.anneal", src);
    let recipe = &c.recipes()[0];
    let names = vec!["x".to_string()];
    let mut params = vec![vec![0.0f32]];
    let (interp, mut st) = Interpreter::new(&c.program, recipe, &names, &params).unwrap();
    let steps = losses.len();
    let mut model = Scripted { losses, step: 0 };
    let mut trace = Vec::new();
    for _ in 0..steps {
        let g = model.grad_at(&params).unwrap();
        interp
            .step_with(&mut st, &mut params, &g, Some(&mut model))
            .unwrap();
        trace.push(params[0][0]);
    }
    trace
}

#[test]
fn reduce_on_plateau_drops_the_scale_after_patience_flat_losses() {
    // optax.contrib.reduce_on_plateau(factor 0.5, patience 2, cooldown 1) before SGD(1) on
    // a gradient of 1: each step moves x by −scale. Losses 4 3 | 3 3: two averages without
    // a 1e-4 relative gain → scale 0.5 at step 4; step 5 is cooldown; steps 6–7 flat → 0.25;
    // step 8 improves (2) during cooldown; steps 9–10 flat → 0.125.
    let x = scripted(
        "import std.optax.*\nrecipe r { update = reduce_on_plateau(factor: 0.5, patience: 2, cooldown: 1) |> sgd(learning_rate: 1.0) }",
        vec![4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.0, 2.0, 2.0],
    );
    let scales = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125];
    let want: Vec<f32> = scales
        .iter()
        .scan(0.0f32, |x, s| {
            *x -= s;
            Some(*x)
        })
        .collect();
    assert_eq!(x, want);
    // accumulation_size 2, patience 1: the averages are 3, 3, 3 (of 4 2, 3 3, 5 1); the
    // second and third do not improve, each dropping the scale at once.
    let x = scripted(
        "import std.optax.*\nrecipe r { update = reduce_on_plateau(factor: 0.5, patience: 1, accumulation_size: 2) |> sgd(learning_rate: 1.0) }",
        vec![4.0, 2.0, 3.0, 3.0, 5.0, 1.0],
    );
    assert_eq!(x, [-1.0, -2.0, -3.0, -3.5, -4.0, -4.25]);
}

#[test]
fn ademamix_warms_up_alpha_and_beta3_as_the_paper_does() {
    // Pagliardini et al. 2024, the paper's own schedulers (linear α; β₃ linear in the
    // half-life ln ½/ln(β + 1e-8) − 1), evaluated with its reference code for warmup 4:
    // α 0, 1.25, 2.5, 3.75, 5, 5; β₃ from 0.9 to 0.999.
    let c = compiled(
        "test.anneal",
        "import std.formula.*\nimport std.optax.{ademamix}\nrecipe r {\n  schedule a = ademamix_alpha(alpha: 5, warmup: 4)\n  schedule b = ademamix_beta3(beta_end: 0.999, beta_start: 0.9, warmup: 4)\n  update = ademamix(learning_rate: 0.1, alpha: a, b3: b)\n}\n",
    );
    let curves = anneal_runtime::schedule::curves(&c.program, &c.recipes()[0], 6).unwrap();
    let alpha = [0.0, 1.25, 2.5, 3.75, 5.0, 5.0];
    let beta3 = [
        0.900_000_010_000_000_1,
        0.996_116_447_851_021,
        0.998_019_804_861_612_3,
        0.998_671_105_800_539_3,
        0.999,
        0.999,
    ];
    for (got, want) in curves[0].values.iter().zip(alpha) {
        assert!((got - want).abs() < 1e-12, "{:?}", curves[0].values);
    }
    for (got, want) in curves[1].values.iter().zip(beta3) {
        assert!((got - want).abs() < 1e-12, "{:?}", curves[1].values);
    }
    // The optimizer takes them step by step: at step 1, α = 0 and the update is Adam's
    // first step, lr·g/(|g| + eps) = 0.1 on x = 1 (g = a·x = 1), so x = 0.9.
    let trace = run(
        "import std.formula.*\nimport std.optax.{ademamix}\nrecipe r { update = ademamix(learning_rate: 0.1, alpha: ademamix_alpha(alpha: 5, warmup: 4), b3: 0.999) }",
        vec![1.0],
        vec![1.0],
        1,
    );
    close(&trace[0], &[0.9]);
}

#[test]
fn schedule_free_evaluates_at_the_average_of_the_z_sequence() {
    // Defazio et al. 2024, eq. (1): x_t = (1 − c_t) x_{t−1} + c_t z_t with c_t = γ²/Σγ²,
    // which for a constant rate is 1/t: x_t is the mean of z_1..z_t. The stage's
    // `eval param` recovers x from y and z instead, (y − (1 − β) z)/β (optax's
    // schedule_free_eval_params); the two must agree at every step.
    let c = compiled(
        "test.anneal",
        "import std.optax.*\nrecipe r { update = schedule_free_sgd(learning_rate: 0.3, b1: 0.8) }",
    );
    let recipe = &c.recipes()[0];
    let names = vec!["x".to_string()];
    let mut params = vec![vec![1.0f32, -2.0, 0.5]];
    let (interp, mut st) = Interpreter::new(&c.program, recipe, &names, &params).unwrap();
    assert_eq!(
        interp.eval_params(&st, &params).unwrap(),
        Some(params.clone())
    );
    let a = [1.0f32, 4.0, 0.25];
    let mut z_sum = [0.0f64; 3];
    for t in 1..=6 {
        let g: Vec<f32> = params[0].iter().zip(a).map(|(x, a)| a * x).collect();
        interp.step(&mut st, &mut params, &[g]).unwrap();
        let Some(anneal_compiler::state::StateValue::Element(z)) =
            interp.state(&st, "schedule_free", "z")
        else {
            panic!("no z state");
        };
        for (s, z) in z_sum.iter_mut().zip(&z[0]) {
            *s += f64::from(*z);
        }
        let x = interp.eval_params(&st, &params).unwrap().unwrap();
        let mean: Vec<f64> = z_sum.iter().map(|s| s / f64::from(t)).collect();
        close(&x[0], &mean);
        // y = β x + (1 − β) z: the same point at the first step (x_1 = z_1), apart after.
        if t > 1 {
            assert_ne!(x[0], params[0], "x differs from y");
        }
    }
}
