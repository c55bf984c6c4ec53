//! The learning-rate range test's report (Smith 2017, "Cyclical Learning Rates for
//! Training Neural Networks", §3.3): given the rates of a `lr_range_test` run and the loss
//! at each step, find where the loss falls fastest and where it bottoms out, and suggest
//! a rate. The losses are smoothed with a bias-corrected exponential moving average
//! (β = 0.98) and read until they diverge (4× the best smoothed loss), the usual practice
//! since the paper's test is read by eye.

use anneal_compiler::error::{Error, Result};
use serde::Serialize;

/// What a range test suggests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LrRangeReport {
    /// The rate where the smoothed loss decreases fastest per decade of rate: a good
    /// base learning rate.
    pub steepest_lr: f64,
    /// The rate at the lowest smoothed loss.
    pub min_loss_lr: f64,
    /// The suggested maximum rate for cyclical or one-cycle schedules: a tenth of
    /// `min_loss_lr`, below the point where training becomes unstable.
    pub suggested_lr: f64,
    /// Steps read before the loss diverged (or all of them).
    pub steps_used: usize,
}

const SMOOTHING: f64 = 0.98;
const DIVERGENCE: f64 = 4.0;

/// Reads a range test. `lrs` and `losses` are per step and of equal length (at least 3).
pub fn suggest(lrs: &[f64], losses: &[f64]) -> Result<LrRangeReport> {
    if lrs.len() != losses.len() {
        return Err(Error::user(format!(
            "{} rates but {} losses: record one loss per step",
            lrs.len(),
            losses.len()
        )));
    }
    if lrs.len() < 3 {
        return Err("a range test needs at least 3 steps".into());
    }
    if lrs.iter().any(|lr| !(lr.is_finite() && *lr > 0.0)) {
        return Err("every rate of a range test must be positive and finite".into());
    }
    let mut smoothed = Vec::with_capacity(losses.len());
    let mut avg = 0.0;
    let mut best = f64::INFINITY;
    for (i, &loss) in losses.iter().enumerate() {
        if !loss.is_finite() {
            break;
        }
        avg = SMOOTHING * avg + (1.0 - SMOOTHING) * loss;
        let s = avg / (1.0 - SMOOTHING.powi(i as i32 + 1));
        if i > 0 && s > DIVERGENCE * best {
            break;
        }
        best = best.min(s);
        smoothed.push(s);
    }
    if smoothed.len() < 3 {
        return Err(
            "the loss diverged within the first steps: start the range test at a smaller rate"
                .into(),
        );
    }
    let n = smoothed.len();
    let min_at = (0..n).fold(0, |b, i| if smoothed[i] < smoothed[b] { i } else { b });
    // Central differences of the loss against log10(rate).
    let mut steepest = 1;
    let mut steepest_slope = f64::INFINITY;
    for i in 1..n - 1 {
        let dx = lrs[i + 1].log10() - lrs[i - 1].log10();
        if dx <= 0.0 {
            continue;
        }
        let slope = (smoothed[i + 1] - smoothed[i - 1]) / dx;
        if slope < steepest_slope {
            steepest_slope = slope;
            steepest = i;
        }
    }
    Ok(LrRangeReport {
        steepest_lr: lrs[steepest],
        min_loss_lr: lrs[min_at],
        suggested_lr: lrs[min_at] / 10.0,
        steps_used: n,
    })
}
