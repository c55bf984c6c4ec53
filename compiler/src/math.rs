//! Scalar math shared by every evaluator of the language: the binary operators and the
//! builtins, one generic definition evaluated in f64 (schedules, hyperparameters, coarse
//! values) or in f32 (per-element values), so the two precisions cannot drift apart.

use crate::ast::UnOp;
use crate::ast::{BinOp, CmpOp};
use crate::ir::{Builtin, Difficulty};
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
        Builtin::Min => min(x[0], x[1]),
        Builtin::Max => max(x[0], x[1]),
        Builtin::Pow => x[0].powf(x[1]),
        Builtin::Clamp => min(max(x[0], x[1]), x[2]),
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

/// The smaller operand, a NaN operand yielding the other (as `f32::min`), and `y` when
/// the two compare equal — so `min(-0, 0)` is `0`, exactly: Rust leaves the sign of a
/// zero result unspecified, and every back end computes this select.
pub fn min<F: Float>(x: F, y: F) -> F {
    if y.is_nan() || x < y {
        x
    } else {
        y
    }
}

/// The larger operand, as `min`.
pub fn max<F: Float>(x: F, y: F) -> F {
    if y.is_nan() || x > y {
        x
    } else {
        y
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

/// A curriculum difficulty for one example with per-example loss `loss` (cross-entropy for
/// `confidence`) and data columns `column(name)`, in f64 as every host value.
pub fn difficulty(d: &Difficulty, loss: f64, column: &dyn Fn(&str) -> f64) -> f64 {
    let at = |x: &Difficulty| difficulty(x, loss, column);
    match d {
        Difficulty::Column(c) => column(c),
        Difficulty::Loss => loss,
        Difficulty::OneMinusConfidence => 1.0 - (-loss).exp(),
        Difficulty::Const(v) => *v,
        Difficulty::Unary(UnOp::Neg, a) => -at(a),
        Difficulty::Unary(UnOp::Not, a) => f64::from(u8::from(at(a) == 0.0)),
        Difficulty::Binary(op, a, b) => arith(*op, at(a), at(b)),
        Difficulty::Call(f, xs) => {
            let vals: Vec<f64> = xs.iter().map(at).collect();
            builtin(*f, &vals)
        }
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
    fn min_and_max_are_defined_on_signed_zeros_and_nan() {
        assert_eq!(min(-0.0f32, 0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(min(0.0f32, -0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(max(f64::NAN, 2.0), 2.0);
        assert_eq!(min(3.0f32, f32::NAN), 3.0);
        assert_eq!(max(1.0f32, 2.0), 2.0);
    }

    #[test]
    fn lerp_is_exact_at_both_ends() {
        assert_eq!(lerp(0.1f32, 0.7, 1.0), 0.7);
        assert_eq!(lerp(0.1f64, 0.7, 0.0), 0.1);
    }
}
