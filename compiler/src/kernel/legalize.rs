//! Legalization: each pass of a fused kernel as a straight list of primitive operations,
//! the only vocabulary a back end knows. Entry point: `legalize`.
//!
//! The kernel's element graph speaks the language: `sign`, `lerp`, `clamp`, `min`, `and`,
//! `is_finite`, `if … then … else` on a number. Here each of those becomes the few
//! primitive ops that compute it — comparisons giving lane masks, `select` on a mask,
//! IEEE arithmetic, `sqrt`/`abs`/`floor`/`ceil`, and calls of the C library's f32
//! functions — in exactly the operation order the interpreter's `math.rs` evaluates, so
//! every back end computes the same bits without knowing what a builtin means. Buffers and
//! scalars are resolved to the slots the pass's code receives; a value the pass cannot
//! find is an internal error, never slot 0.
//!
//! `expand` is the same rewriting for any operand type: the C header uses it to write
//! the host's double-precision builtins.

use crate::ast::{BinOp, CmpOp, UnOp};
use crate::error::{Error, Result};
use crate::ir::{Builtin, ReduceOp};
use crate::kernel::{EId, Elem, Host, Kernel, PassKind};

/// The index of an op in its pass's list.
pub type OpId = usize;

/// A primitive operation over operands of type `T` (op indices in a pass; C expressions
/// in the C header). Values are f32 in a pass (f64 on the host); masks are the result of
/// a comparison, one bit per lane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prim<T> {
    /// A constant (in a pass, already rounded to f32).
    Const(f64),
    /// An IEEE operation on values.
    Unary(Unary, T),
    Binary(Binary, T, T),
    /// A C library function (`expf`, `logf`, …), exactly as the C library computes it.
    Libm(Libm, T, Option<T>),
    /// A comparison of two values: a mask. `Ne` holds for unordered operands (a NaN is
    /// not equal to anything); the others are ordered (false when either is NaN).
    Compare(CmpOp, T, T),
    /// Whether a value is a NaN: a mask.
    IsNan(T),
    /// Whether a value is neither infinite nor NaN: a mask.
    IsFinite(T),
    /// Both (either) masks.
    And(T, T),
    Or(T, T),
    /// The first value where the mask holds, else the second.
    Select(T, T, T),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    Neg,
    Sqrt,
    Abs,
    Floor,
    Ceil,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

impl Binary {
    /// The operator as C and WGSL write it.
    pub fn symbol(self) -> &'static str {
        match self {
            Binary::Add => "+",
            Binary::Sub => "-",
            Binary::Mul => "*",
            Binary::Div => "/",
        }
    }
}

/// The C library's single-precision functions a pass may call (Rust's `f32` methods call
/// the same ones), by their C names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Libm {
    Exp,
    Log,
    Pow,
    Cos,
    Sin,
    Tanh,
}

impl Libm {
    pub const ALL: [Libm; 6] = [
        Libm::Exp,
        Libm::Log,
        Libm::Pow,
        Libm::Cos,
        Libm::Sin,
        Libm::Tanh,
    ];

    /// The C name of the f32 function (`expf`); the double one drops the `f`.
    pub fn c_name(self) -> &'static str {
        match self {
            Libm::Exp => "expf",
            Libm::Log => "logf",
            Libm::Pow => "powf",
            Libm::Cos => "cosf",
            Libm::Sin => "sinf",
            Libm::Tanh => "tanhf",
        }
    }

    pub fn arity(self) -> usize {
        if self == Libm::Pow {
            2
        } else {
            1
        }
    }
}

/// How a reduction accumulates its elements: the sum of the value, of its square (norms),
/// or of `x·0` (finiteness: 0 for a finite x, NaN otherwise), in f64 on the CPU; the
/// largest or smallest value, ignoring NaNs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccKind {
    Sum,
    SumSq,
    Finite,
    Max,
    Min,
}

impl AccKind {
    pub fn of(op: ReduceOp) -> AccKind {
        match op {
            ReduceOp::Norm => AccKind::SumSq,
            ReduceOp::Sum | ReduceOp::Mean => AccKind::Sum,
            ReduceOp::AllFinite => AccKind::Finite,
            ReduceOp::Max => AccKind::Max,
            ReduceOp::Min => AccKind::Min,
        }
    }
}

/// A store of the pass: buffer slot, value, and the stage it belongs to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreOp {
    pub buf: usize,
    pub value: OpId,
    pub stage: usize,
}

/// A reduction of the pass: how it accumulates and the value it reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccOp {
    pub kind: AccKind,
    pub value: OpId,
}

/// An op of a pass: a primitive, a load of buffer slot k, or scalar slot k.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Load(usize),
    Scalar(usize),
    Prim(Prim<OpId>),
}

/// One pass as straight-line code over one element: every op after its operands.
#[derive(Debug, Clone, PartialEq)]
pub struct PassCode {
    pub kind: PassKind,
    /// Pointers the code receives (`Pass::bufs`).
    pub bufs: usize,
    /// f32 scalar slots it reads, the active-stage count included when guarded.
    pub slots: usize,
    pub ops: Vec<Op>,
    /// Map and prepare passes: the writes, after every op.
    pub stores: Vec<StoreOp>,
    /// With a `skip if`: the slot of the active-stage count; a store of stage s happens
    /// only while s < that count.
    pub guard: Option<usize>,
    /// Reduction passes: one partial result per entry, in `Pass::reductions` order.
    pub reductions: Vec<AccOp>,
}

/// Every pass of `kernel` as primitive code. The only error is internal: a fact the
/// lowering promised is missing.
pub fn legalize(kernel: &Kernel) -> Result<Vec<PassCode>> {
    (0..kernel.passes.len())
        .map(|p| legalize_pass(kernel, p))
        .collect()
}

/// The primitive ops computing builtin `b` on `args`, each handed to `emit`, which returns
/// its operand. The formulas are `math.rs`'s, operation for operation.
pub fn expand<T: Clone>(b: Builtin, args: &[T], emit: &mut impl FnMut(Prim<T>) -> T) -> T {
    let a = |i: usize| args[i].clone();
    let c = |emit: &mut dyn FnMut(Prim<T>) -> T, x: f64| emit(Prim::Const(x));
    match b {
        Builtin::Sqrt => emit(Prim::Unary(Unary::Sqrt, a(0))),
        Builtin::Abs => emit(Prim::Unary(Unary::Abs, a(0))),
        Builtin::Floor => emit(Prim::Unary(Unary::Floor, a(0))),
        Builtin::Ceil => emit(Prim::Unary(Unary::Ceil, a(0))),
        Builtin::Exp => emit(Prim::Libm(Libm::Exp, a(0), None)),
        Builtin::Log => emit(Prim::Libm(Libm::Log, a(0), None)),
        Builtin::Cos => emit(Prim::Libm(Libm::Cos, a(0), None)),
        Builtin::Sin => emit(Prim::Libm(Libm::Sin, a(0), None)),
        Builtin::Tanh => emit(Prim::Libm(Libm::Tanh, a(0), None)),
        Builtin::Pow => emit(Prim::Libm(Libm::Pow, a(0), Some(a(1)))),
        Builtin::Sign => {
            // x > 0 → 1, x < 0 → −1, else x itself: 0 stays 0 (and −0 stays −0), NaN NaN.
            let zero = c(emit, 0.0);
            let lt = emit(Prim::Compare(CmpOp::Lt, a(0), zero.clone()));
            let neg = c(emit, -1.0);
            let inner = emit(Prim::Select(lt, neg, a(0)));
            let gt = emit(Prim::Compare(CmpOp::Gt, a(0), zero));
            let one = c(emit, 1.0);
            emit(Prim::Select(gt, one, inner))
        }
        Builtin::Min => min_max(false, a(0), a(1), emit),
        Builtin::Max => min_max(true, a(0), a(1), emit),
        Builtin::Clamp => {
            let lo = min_max(true, a(0), a(1), emit);
            min_max(false, lo, a(2), emit)
        }
        Builtin::Lerp => {
            // torch's lerp (ATen Lerp.h): |w| < 0.5 ? a + w(b − a) : b − (b − a)(1 − w).
            let (x, y, w) = (a(0), a(1), a(2));
            let d = emit(Prim::Binary(Binary::Sub, y.clone(), x.clone()));
            let wd = emit(Prim::Binary(Binary::Mul, w.clone(), d.clone()));
            let first = emit(Prim::Binary(Binary::Add, x, wd));
            let one = c(emit, 1.0);
            let omw = emit(Prim::Binary(Binary::Sub, one, w.clone()));
            let dd = emit(Prim::Binary(Binary::Mul, d, omw));
            let second = emit(Prim::Binary(Binary::Sub, y, dd));
            let aw = emit(Prim::Unary(Unary::Abs, w));
            let half = c(emit, 0.5);
            let m = emit(Prim::Compare(CmpOp::Lt, aw, half));
            emit(Prim::Select(m, first, second))
        }
        Builtin::IsFinite => {
            let m = emit(Prim::IsFinite(a(0)));
            truth(m, emit)
        }
        Builtin::IsNone => {
            let m = emit(Prim::IsNan(a(0)));
            truth(m, emit)
        }
    }
}

/// An operator of the language on values: arithmetic, or logic and comparisons as 1/0.
pub fn expand_binary<T: Clone>(op: BinOp, x: T, y: T, emit: &mut impl FnMut(Prim<T>) -> T) -> T {
    let arith = |o| Prim::Binary(o, x.clone(), y.clone());
    match op {
        BinOp::Add => emit(arith(Binary::Add)),
        BinOp::Sub => emit(arith(Binary::Sub)),
        BinOp::Mul => emit(arith(Binary::Mul)),
        BinOp::Div => emit(arith(Binary::Div)),
        BinOp::Pow => emit(Prim::Libm(Libm::Pow, x, Some(y))),
        BinOp::And | BinOp::Or => {
            let mx = nonzero(x, emit);
            let my = nonzero(y, emit);
            let m = emit(if op == BinOp::And {
                Prim::And(mx, my)
            } else {
                Prim::Or(mx, my)
            });
            truth(m, emit)
        }
        BinOp::Cmp(c) => {
            let m = emit(Prim::Compare(c, x, y));
            truth(m, emit)
        }
    }
}

/// A unary operator of the language: negation, or `not` as 1/0.
pub fn expand_unary<T: Clone>(op: UnOp, x: T, emit: &mut impl FnMut(Prim<T>) -> T) -> T {
    match op {
        UnOp::Neg => emit(Prim::Unary(Unary::Neg, x)),
        UnOp::Not => {
            let zero = emit(Prim::Const(0.0));
            let m = emit(Prim::Compare(CmpOp::Eq, x, zero));
            truth(m, emit)
        }
    }
}

/// `if c then x else y` on a number: `c` holds when it is not 0 (a NaN holds).
pub fn expand_select<T: Clone>(c: T, x: T, y: T, emit: &mut impl FnMut(Prim<T>) -> T) -> T {
    let m = nonzero(c, emit);
    emit(Prim::Select(m, x, y))
}

/// `math::min`/`max`: the smaller (larger) operand, a NaN operand yielding the other, the
/// second when they compare equal.
fn min_max<T: Clone>(max: bool, x: T, y: T, emit: &mut impl FnMut(Prim<T>) -> T) -> T {
    let cmp = if max { CmpOp::Gt } else { CmpOp::Lt };
    let m = emit(Prim::Compare(cmp, x.clone(), y.clone()));
    let t = emit(Prim::Select(m, x.clone(), y.clone()));
    let y_nan = emit(Prim::IsNan(y));
    emit(Prim::Select(y_nan, x, t))
}

/// 1 where the mask holds, else 0.
fn truth<T: Clone>(m: T, emit: &mut impl FnMut(Prim<T>) -> T) -> T {
    let one = emit(Prim::Const(1.0));
    let zero = emit(Prim::Const(0.0));
    emit(Prim::Select(m, one, zero))
}

fn nonzero<T: Clone>(x: T, emit: &mut impl FnMut(Prim<T>) -> T) -> T {
    let zero = emit(Prim::Const(0.0));
    emit(Prim::Compare(CmpOp::Ne, x, zero))
}

/// Builds one pass's op list: element values in first-use order, constants shared.
struct Builder<'k> {
    kernel: &'k Kernel,
    pass: usize,
    ops: Vec<Op>,
    done: Vec<Option<OpId>>,
    consts: Vec<(u64, OpId)>,
}

impl Builder<'_> {
    fn push(&mut self, op: Op) -> OpId {
        if let Op::Prim(Prim::Const(c)) = op {
            let bits = c.to_bits();
            if let Some(&(_, id)) = self.consts.iter().find(|(b, _)| *b == bits) {
                return id;
            }
            self.consts.push((bits, self.ops.len()));
        }
        self.ops.push(op);
        self.ops.len() - 1
    }

    fn prim(&mut self, p: Prim<OpId>) -> OpId {
        // Constants of a pass are f32.
        let p = match p {
            Prim::Const(c) => Prim::Const(f64::from(c as f32)),
            p => p,
        };
        self.push(Op::Prim(p))
    }

    /// The op computing element value `root`, after the ops of its operands (an explicit
    /// stack: long chains must not recurse).
    fn value(&mut self, root: EId) -> Result<OpId> {
        let mut stack = vec![(root, false)];
        while let Some((e, ready)) = stack.pop() {
            if self.done[e].is_some() {
                continue;
            }
            let elem = &self.kernel.elems[e];
            if !ready {
                stack.push((e, true));
                for &o in operands(elem).iter().rev() {
                    if self.done[o].is_none() {
                        stack.push((o, false));
                    }
                }
                continue;
            }
            let id = self.lower(elem.clone())?;
            self.done[e] = Some(id);
        }
        self.done[root]
            .ok_or_else(|| Error::internal(format!("element value {root} was never computed")))
    }

    fn lower(&mut self, elem: Elem) -> Result<OpId> {
        let kernel = self.kernel;
        let pass = &kernel.passes[self.pass];
        let arg = |b: &Self, e: EId| {
            b.done[e].ok_or_else(|| {
                Error::internal(format!("element value {e} used before it is computed"))
            })
        };
        Ok(match elem {
            Elem::Load(buf) => {
                if !pass.reads.contains(&buf) {
                    return Err(self.missing(format!("buffer {buf:?}")));
                }
                let slot = pass.bufs.iter().position(|b| *b == buf);
                let slot = slot.ok_or_else(|| self.missing(format!("buffer {buf:?}")))?;
                self.push(Op::Load(slot))
            }
            Elem::Scalar(h) => match kernel.host[h] {
                Host::Const(c) => self.prim(Prim::Const(c)),
                _ => {
                    let slot = pass.scalars.iter().position(|&s| s == h);
                    let slot = slot.ok_or_else(|| self.missing(format!("host value {h}")))?;
                    self.push(Op::Scalar(slot))
                }
            },
            Elem::Unary(op, a) => {
                let x = arg(self, a)?;
                expand_unary(op, x, &mut |p| self.prim(p))
            }
            Elem::Binary(op, a, b) => {
                let (x, y) = (arg(self, a)?, arg(self, b)?);
                expand_binary(op, x, y, &mut |p| self.prim(p))
            }
            Elem::Select(c, a, b) => {
                let (c, x, y) = (arg(self, c)?, arg(self, a)?, arg(self, b)?);
                expand_select(c, x, y, &mut |p| self.prim(p))
            }
            Elem::Call(f, xs) => {
                let args = xs
                    .iter()
                    .map(|&x| arg(self, x))
                    .collect::<Result<Vec<_>, _>>()?;
                expand(f, &args, &mut |p| self.prim(p))
            }
        })
    }

    fn missing(&self, what: String) -> Error {
        Error::internal(format!(
            "pass {} reads {what}, which is not among the values it receives",
            self.pass + 1
        ))
    }
}

fn operands(e: &Elem) -> Vec<EId> {
    match e {
        Elem::Load(_) | Elem::Scalar(_) => Vec::new(),
        Elem::Unary(_, a) => vec![*a],
        Elem::Binary(_, a, b) => vec![*a, *b],
        Elem::Select(c, a, b) => vec![*c, *a, *b],
        Elem::Call(_, xs) => xs.clone(),
    }
}

fn legalize_pass(kernel: &Kernel, p: usize) -> Result<PassCode> {
    let pass = &kernel.passes[p];
    let mut b = Builder {
        kernel,
        pass: p,
        ops: Vec::new(),
        done: vec![None; kernel.elems.len()],
        consts: Vec::new(),
    };
    // Every buffer the pass reads is loaded first, once, shared by all its values.
    for (e, elem) in kernel.elems.iter().enumerate() {
        if let Elem::Load(buf) = elem {
            if pass.reads.contains(buf) {
                b.value(e)?;
            }
        }
    }
    let mut stores = Vec::new();
    let mut reductions = Vec::new();
    match pass.kind {
        PassKind::Reduce => {
            for &r in &pass.reductions {
                let red = &kernel.reductions[r];
                let value = b.value(red.input)?;
                reductions.push(AccOp {
                    kind: AccKind::of(red.op),
                    value,
                });
            }
        }
        PassKind::Map | PassKind::SkipMap | PassKind::Prepare => {
            // Every value before any store: values are functions of the buffers as the
            // step began, and a store must not feed a later value.
            for &s in &pass.stores {
                let store = &kernel.stores[s];
                let value = b.value(store.value)?;
                let buf = pass.bufs.iter().position(|x| *x == store.buf);
                let buf = buf.ok_or_else(|| b.missing(format!("buffer {:?}", store.buf)))?;
                stores.push(StoreOp {
                    buf,
                    value,
                    stage: store.stage,
                });
            }
        }
    }
    Ok(PassCode {
        kind: pass.kind,
        bufs: pass.bufs.len(),
        slots: pass.scalars.len() + usize::from(pass.guarded),
        ops: b.ops,
        stores,
        guard: pass.guarded.then_some(pass.scalars.len()),
        reductions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An op's result, computed at once: the expansion run as an evaluator.
    #[derive(Clone, Copy, Debug)]
    enum V {
        F(f32),
        M(bool),
    }

    fn eval(p: Prim<V>) -> V {
        let f = |v: V| match v {
            V::F(x) => x,
            V::M(_) => panic!("a mask used as a value"),
        };
        let m = |v: V| match v {
            V::M(b) => b,
            V::F(_) => panic!("a value used as a mask"),
        };
        match p {
            Prim::Const(c) => V::F(c as f32),
            Prim::Unary(u, x) => V::F(match u {
                Unary::Neg => -f(x),
                Unary::Sqrt => f(x).sqrt(),
                Unary::Abs => f(x).abs(),
                Unary::Floor => f(x).floor(),
                Unary::Ceil => f(x).ceil(),
            }),
            Prim::Binary(b, x, y) => V::F(match b {
                Binary::Add => f(x) + f(y),
                Binary::Sub => f(x) - f(y),
                Binary::Mul => f(x) * f(y),
                Binary::Div => f(x) / f(y),
            }),
            Prim::Libm(l, x, y) => V::F(match l {
                Libm::Exp => f(x).exp(),
                Libm::Log => f(x).ln(),
                Libm::Pow => f(x).powf(f(y.expect("pow takes two"))),
                Libm::Cos => f(x).cos(),
                Libm::Sin => f(x).sin(),
                Libm::Tanh => f(x).tanh(),
            }),
            Prim::Compare(c, x, y) => V::M(crate::math::compare(c, f(x), f(y))),
            Prim::IsNan(x) => V::M(f(x).is_nan()),
            Prim::IsFinite(x) => V::M(f(x).is_finite()),
            Prim::And(x, y) => V::M(m(x) && m(y)),
            Prim::Or(x, y) => V::M(m(x) || m(y)),
            Prim::Select(c, x, y) => {
                if m(c) {
                    x
                } else {
                    y
                }
            }
        }
    }

    /// A kernel whose pass lost a value it reads (a defect of the lowering) is an
    /// internal error naming the pass, never code that reads another slot.
    #[test]
    fn a_pass_reading_a_value_it_does_not_receive_is_an_internal_error() {
        let src = "import std.optax.{clip_by_global_norm, adamw}
recipe r { update = clip_by_global_norm(max_norm: 1.0) |> adamw(learning_rate: 0.01) }";
        let c = crate::compile("t.anneal", src);
        let mut kernel = crate::kernel::lower(&c.program, &c.program.recipes[0]).unwrap();
        assert!(legalize(&kernel).is_ok());
        let map = kernel.passes.len() - 1;
        kernel.passes[map].scalars.clear();
        let err = legalize(&kernel).unwrap_err();
        assert!(err.is_internal(), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with("internal error, please report it"),
            "{text}"
        );
        assert!(text.contains(&format!("pass {}", map + 1)), "{text}");
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    const SPECIAL: [f32; 14] = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.3,
        0.5,
        -0.5,
        0.7,
        2.5,
        -3.0,
        1e-45,
        3.0e38,
        f32::INFINITY,
        f32::NAN,
    ];

    /// Every builtin and operator, expanded to primitives and evaluated, gives the bits
    /// `math.rs` (the interpreter's reference) gives, on every combination of special
    /// values: zeros of both signs, halves (lerp's branch), subnormals, infinities, NaN.
    #[test]
    fn expansions_compute_what_math_rs_computes() {
        let mut run = |p: Prim<V>| eval(p);
        let mut checked = 0;
        for b in crate::ir::builtins() {
            let n = b.arity();
            let combos = SPECIAL.len().pow(n as u32);
            for k in 0..combos {
                let args: Vec<f32> = (0..n)
                    .map(|i| SPECIAL[(k / SPECIAL.len().pow(i as u32)) % SPECIAL.len()])
                    .collect();
                let vs: Vec<V> = args.iter().map(|x| V::F(*x)).collect();
                let V::F(got) = expand(b, &vs, &mut run) else {
                    panic!("{} gave a mask", b.name())
                };
                let want = crate::math::builtin(b, &args);
                assert!(same(got, want), "{}{args:?}: {got} vs {want}", b.name());
                checked += 1;
            }
        }
        let ops = [
            BinOp::Add,
            BinOp::Sub,
            BinOp::Mul,
            BinOp::Div,
            BinOp::Pow,
            BinOp::And,
            BinOp::Or,
            BinOp::Cmp(CmpOp::Lt),
            BinOp::Cmp(CmpOp::Le),
            BinOp::Cmp(CmpOp::Gt),
            BinOp::Cmp(CmpOp::Ge),
            BinOp::Cmp(CmpOp::Eq),
            BinOp::Cmp(CmpOp::Ne),
        ];
        for op in ops {
            for &x in &SPECIAL {
                for &y in &SPECIAL {
                    let V::F(got) = expand_binary(op, V::F(x), V::F(y), &mut run) else {
                        panic!("{op:?} gave a mask")
                    };
                    let want = crate::math::arith(op, x, y);
                    assert!(same(got, want), "{op:?}({x}, {y}): {got} vs {want}");
                    checked += 1;
                }
            }
        }
        for &x in &SPECIAL {
            let V::F(neg) = expand_unary(UnOp::Neg, V::F(x), &mut run) else {
                panic!()
            };
            assert!(same(neg, -x));
            let V::F(not) = expand_unary(UnOp::Not, V::F(x), &mut run) else {
                panic!()
            };
            assert!(same(not, if x == 0.0 { 1.0 } else { 0.0 }), "not {x}");
            // The interpreter's `if c then a else b` on a number: c holds unless it is 0.
            let V::F(sel) = expand_select(V::F(x), V::F(1.5), V::F(-2.5), &mut run) else {
                panic!()
            };
            assert_eq!(sel, if x != 0.0 { 1.5 } else { -2.5 }, "select on {x}");
        }
        assert!(checked > 17 * 14, "{checked}");
    }
}
