//! Scalar math shared by every evaluator of the language: the binary operators and the
//! builtins, one generic definition evaluated in f64 (schedules, hyperparameters, coarse
//! values) or in f32 (per-element values), so the two precisions cannot drift apart.

use crate::ast::{BinOp, CmpOp};
use crate::ir::Builtin;
use num_traits::Float;

fn truth<F: Float>(b: bool) -> F {
    if b {
        F::one()
    } else {
        F::zero()
    }
}

pub fn compare<F: PartialOrd>(c: CmpOp, x: F, y: F) -> bool {
    match c {
        CmpOp::Lt => x < y,
        CmpOp::Le => x <= y,
        CmpOp::Gt => x > y,
        CmpOp::Ge => x >= y,
        CmpOp::Eq => x == y,
        CmpOp::Ne => x != y,
    }
}

/// A binary operator; logic and comparisons give 1 or 0.
pub fn arith<F: Float>(op: BinOp, x: F, y: F) -> F {
    match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => x / y,
        BinOp::Pow => x.powf(y),
        BinOp::And => truth(x != F::zero() && y != F::zero()),
        BinOp::Or => truth(x != F::zero() || y != F::zero()),
        BinOp::Cmp(c) => truth(compare(c, x, y)),
    }
}

/// A builtin function of the language on its arguments (arity checked by the checker).
pub fn builtin<F: Float>(b: Builtin, x: &[F]) -> F {
    match b {
        Builtin::Sqrt => x[0].sqrt(),
        Builtin::Exp => x[0].exp(),
        Builtin::Log => x[0].ln(),
        Builtin::Abs => x[0].abs(),
        Builtin::Sign => sign(x[0]),
        Builtin::Min => x[0].min(x[1]),
        Builtin::Max => x[0].max(x[1]),
        Builtin::Pow => x[0].powf(x[1]),
        Builtin::Clamp => x[0].max(x[1]).min(x[2]),
        Builtin::Lerp => lerp(x[0], x[1], x[2]),
        Builtin::Floor => x[0].floor(),
        Builtin::Ceil => x[0].ceil(),
        Builtin::Cos => x[0].cos(),
        Builtin::Sin => x[0].sin(),
        Builtin::Tanh => x[0].tanh(),
        Builtin::IsFinite => truth(x[0].is_finite()),
        Builtin::IsNone => truth(x[0].is_nan()),
    }
}

/// torch's lerp: two formulas, each exact at its end (ATen Lerp.h).
pub fn lerp<F: Float>(a: F, b: F, w: F) -> F {
    let half = F::one() / (F::one() + F::one());
    if w.abs() < half {
        a + w * (b - a)
    } else {
        b - (b - a) * (F::one() - w)
    }
}

/// sign with sign(0) = 0 (optimizers' convention; `signum(0.0)` is 1). NaN stays NaN.
pub fn sign<F: Float>(x: F) -> F {
    if x > F::zero() {
        F::one()
    } else if x < F::zero() {
        -F::one()
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_of_zero_is_zero_in_both_precisions() {
        assert_eq!(sign(0.0f32), 0.0);
        assert_eq!(sign(-3.0f64), -1.0);
        assert!(sign(f32::NAN).is_nan());
    }

    #[test]
    fn lerp_is_exact_at_both_ends() {
        assert_eq!(lerp(0.1f32, 0.7, 1.0), 0.7);
        assert_eq!(lerp(0.1f64, 0.7, 0.0), 0.1);
    }
}
