//! The emitter: what a native back end (Cranelift, LLVM) implements to compile a pass, and
//! the one skeleton that drives it. Entry point: `emit_pass`.
//!
//! A back end knows only the primitive ops `kernel::legalize` leaves, plus a handful of
//! structural methods: the function's entry, a loop over elements `width` at a time,
//! accumulators, a guarded region and the exit. The skeleton — which loops run, the
//! element walk, loads before values, every value before any store, the stage guard of a
//! store, accumulation and one partial per reduction — is written here once.
//!
//! A pass function has the signature `(scalars: *const f32, bufs: *const *mut f32,
//! start: usize, end: usize, partials: *mut f64)` (`kernel::exec::PassFn`).

use crate::ast::CmpOp;
use crate::error::{Error, Result};
use crate::kernel::legalize::{AccKind, Binary, Libm, Op, OpId, PassCode, Prim, Unary};
use crate::kernel::PassKind;

/// A native back end's code builder for one pass function.
pub trait Emitter {
    /// A value of the current loop: one f32, or a vector of `width` lanes.
    type Value: Copy;
    /// A comparison's result in the current loop, lane by lane.
    type Mask: Copy;
    /// A reduction's running value.
    type Acc;

    /// The loops a pass runs, widest first, each over the elements the previous left
    /// (`[4, 1]`: four lanes, then the rest one at a time). The last width must be 1.
    fn widths(&self) -> &'static [usize];
    /// The function's entry: its arguments, the buffer bases and scalar slots.
    fn begin(&mut self, code: &PassCode) -> Result<()>;
    /// A fresh accumulator (0 for sums, −∞ for a maximum, ∞ for a minimum).
    fn acc_new(&mut self, kind: AccKind) -> Result<Self::Acc>;
    /// Opens the loop taking `width` elements per iteration while that many remain.
    fn loop_begin(&mut self, width: usize) -> Result<()>;
    /// Closes it: the index advances by `width`.
    fn loop_end(&mut self, width: usize) -> Result<()>;
    /// After the loops: the accumulator's lanes combined in a fixed order, written as
    /// partial `j` (an f64).
    fn acc_finish(&mut self, j: usize, kind: AccKind, acc: &Self::Acc) -> Result<()>;
    /// The function's return.
    fn end(&mut self) -> Result<()>;

    fn load(&mut self, buf: usize) -> Result<Self::Value>;
    fn store(&mut self, buf: usize, value: Self::Value) -> Result<()>;
    fn scalar(&mut self, slot: usize) -> Result<Self::Value>;
    /// Whether a store of `stage` happens: `stage < slots[slot]`, the same for every lane.
    fn stage_live(&mut self, stage: usize, slot: usize) -> Result<Self::Mask>;
    /// Code that runs only where (uniform) `live` holds, until `end_if`.
    fn begin_if(&mut self, live: Self::Mask) -> Result<()>;
    fn end_if(&mut self) -> Result<()>;
    /// Adds `x` to the accumulator as its kind says.
    fn accumulate(&mut self, kind: AccKind, acc: &Self::Acc, x: Self::Value) -> Result<()>;

    fn constant(&mut self, x: f32) -> Result<Self::Value>;
    fn unary(&mut self, op: Unary, x: Self::Value) -> Result<Self::Value>;
    fn binary(&mut self, op: Binary, x: Self::Value, y: Self::Value) -> Result<Self::Value>;
    /// The C library's f32 function, lane by lane.
    fn libm(&mut self, f: Libm, args: &[Self::Value]) -> Result<Self::Value>;
    fn compare(&mut self, op: CmpOp, x: Self::Value, y: Self::Value) -> Result<Self::Mask>;
    fn is_nan(&mut self, x: Self::Value) -> Result<Self::Mask>;
    fn is_finite(&mut self, x: Self::Value) -> Result<Self::Mask>;
    fn and(&mut self, x: Self::Mask, y: Self::Mask) -> Result<Self::Mask>;
    fn or(&mut self, x: Self::Mask, y: Self::Mask) -> Result<Self::Mask>;
    fn select(&mut self, m: Self::Mask, x: Self::Value, y: Self::Value) -> Result<Self::Value>;
}

/// One op's result in the current loop.
#[derive(Clone, Copy)]
enum Slot<V, M> {
    Value(V),
    Mask(M),
}

/// Emits the function of one legalized pass through `e`.
pub fn emit_pass<E: Emitter>(e: &mut E, code: &PassCode) -> Result<()> {
    e.begin(code)?;
    let accs = code
        .reductions
        .iter()
        .map(|r| e.acc_new(r.kind))
        .collect::<Result<Vec<_>, _>>()?;
    for &width in e.widths() {
        e.loop_begin(width)?;
        let slots = walk(e, code)?;
        let value = |id: OpId| match slots[id] {
            Slot::Value(v) => Ok(v),
            Slot::Mask(_) => Err(Error::internal(format!(
                "op {id} is a mask, used as a value"
            ))),
        };
        match code.kind {
            PassKind::Reduce => {
                for (r, acc) in code.reductions.iter().zip(&accs) {
                    e.accumulate(r.kind, acc, value(r.value)?)?;
                }
            }
            PassKind::Map | PassKind::SkipMap | PassKind::Prepare => {
                for s in &code.stores {
                    let v = value(s.value)?;
                    match code.guard {
                        Some(slot) => {
                            let live = e.stage_live(s.stage, slot)?;
                            e.begin_if(live)?;
                            e.store(s.buf, v)?;
                            e.end_if()?;
                        }
                        None => e.store(s.buf, v)?,
                    }
                }
            }
        }
        e.loop_end(width)?;
    }
    for (j, (r, acc)) in code.reductions.iter().zip(&accs).enumerate() {
        e.acc_finish(j, r.kind, acc)?;
    }
    e.end()
}

/// The results of a pass's ops in the current loop, by op index.
type Slots<E> = Vec<Slot<<E as Emitter>::Value, <E as Emitter>::Mask>>;

/// Every op of the pass at the current element(s), in order.
fn walk<E: Emitter>(e: &mut E, code: &PassCode) -> Result<Slots<E>> {
    let mut slots: Slots<E> = Vec::with_capacity(code.ops.len());
    for (id, op) in code.ops.iter().enumerate() {
        let v = |x: OpId| match slots.get(x) {
            Some(Slot::Value(v)) => Ok(*v),
            _ => Err(Error::internal(format!(
                "op {id} reads op {x}, not a value before it"
            ))),
        };
        let m = |x: OpId| match slots.get(x) {
            Some(Slot::Mask(m)) => Ok(*m),
            _ => Err(Error::internal(format!(
                "op {id} reads op {x}, not a mask before it"
            ))),
        };
        let slot = match *op {
            Op::Load(b) => Slot::Value(e.load(b)?),
            Op::Scalar(s) => Slot::Value(e.scalar(s)?),
            Op::Prim(p) => match p {
                Prim::Const(c) => Slot::Value(e.constant(c as f32)?),
                Prim::Unary(u, x) => Slot::Value(e.unary(u, v(x)?)?),
                Prim::Binary(b, x, y) => Slot::Value(e.binary(b, v(x)?, v(y)?)?),
                Prim::Libm(f, x, y) => {
                    let args = match y {
                        Some(y) => vec![v(x)?, v(y)?],
                        None => vec![v(x)?],
                    };
                    if args.len() != f.arity() {
                        return Err(Error::internal(format!(
                            "op {id} calls `{}` with {} operands",
                            f.c_name(),
                            args.len()
                        )));
                    }
                    Slot::Value(e.libm(f, &args)?)
                }
                Prim::Compare(c, x, y) => Slot::Mask(e.compare(c, v(x)?, v(y)?)?),
                Prim::IsNan(x) => Slot::Mask(e.is_nan(v(x)?)?),
                Prim::IsFinite(x) => Slot::Mask(e.is_finite(v(x)?)?),
                Prim::And(x, y) => Slot::Mask(e.and(m(x)?, m(y)?)?),
                Prim::Or(x, y) => Slot::Mask(e.or(m(x)?, m(y)?)?),
                Prim::Select(c, x, y) => Slot::Value(e.select(m(c)?, v(x)?, v(y)?)?),
            },
        };
        slots.push(slot);
    }
    Ok(slots)
}
