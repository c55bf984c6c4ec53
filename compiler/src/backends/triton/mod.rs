//! The Triton writer: a fused kernel's passes as one Python module of `@triton.jit`
//! functions, for `anneal.torch` (`backend="triton"`) and `anneal export --target
//! triton`. Entry point: `module`.
//!
//! Each pass is one kernel launched once over every tensor, as PyTorch's multi-tensor
//! optimizers launch theirs: program `pid` reads its tile, `(tensor t, block j)`, from
//! `tiles`, and handles the `BLOCK` elements of tensor t from `j * BLOCK`, masked past the
//! tensor's end (`sizes[t]`). Tensor t's buffers are the addresses `ptrs[t * NBUFS + k]`
//! (`Pass::bufs` order) and its scalars `s[t * SLOTS + k]` (f32); hyperparameters are
//! values in `s`, never constants, so a new learning rate launches the same compiled
//! kernel. Tiles are tensor-major, so each tensor's partials are contiguous and in order.
//!
//! Every value is a block of `BLOCK` f32 lanes — scalars and constants are broadcast —
//! so each op has one type whatever its operands (Triton's interpreter mishandles masks
//! of a scalar and a block). Division and square root are the correctly rounded ones
//! (`div_rn`, `sqrt_rn`: plain `/` and `tl.sqrt` are approximate on NVIDIA GPUs), the
//! launch turns off contraction into FMAs (`enable_fp_fusion=False`), and NaN and
//! finiteness tests read the bits, as the WGSL writer's do. The C library's functions are
//! libdevice's on a GPU (`__nv_expf`, …); under Triton's interpreter, which has no
//! libdevice, NumPy's f32 functions, with `pow` and `tanh` written out with C's special
//! cases. Results agree with the CPU back ends within f32 rounding, not bit for bit.
//!
//! A reduction writes one partial per program and reduction, accumulated in f64 like the
//! CPU back ends' chunks (a finiteness test: a flag, 1 once an element is not finite);
//! the host combines the partials in program order, so results do not depend on the
//! grid's scheduling.

use crate::error::{Error, Result};
use std::fmt::Write as _;

use crate::ir::ReduceOp;
use crate::kernel::legalize::{legalize, AccKind, Libm, Op, OpId, PassCode, Prim, Unary};
use crate::kernel::{Buf, Kernel, PassKind};

/// Elements per program of a map (prepare) pass.
pub const MAP_BLOCK: usize = 1024;
/// Elements per program of a reduction pass: more per program, fewer partials.
pub const REDUCE_BLOCK: usize = 4096;

/// The module and, per pass, what a launcher needs to bind and launch it.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    pub source: String,
    pub passes: Vec<TritonPass>,
}

/// One pass's kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct TritonPass {
    pub pass: usize,
    pub kind: PassKind,
    /// The kernel's name in the module: `anneal_pass{pass}`.
    pub name: String,
    /// Each tensor's buffers, in the order of its row of `ptrs`.
    pub bufs: Vec<Buf>,
    /// Which of `bufs` the kernel stores to.
    pub writes: Vec<bool>,
    /// f32 entries of a tensor's row of `s`: the pass's scalars, then the active-stage
    /// count when guarded.
    pub slots: usize,
    /// Per reduction, how the host combines its partials; laid out `[program][reduction]`.
    pub reductions: Vec<ReduceOp>,
    /// Elements per program (the `BLOCK` constexpr).
    pub block: usize,
}

impl TritonPass {
    /// Programs (tiles) for a tensor of `n` elements; a reduction's are also its rows of
    /// partials, at least one, so that an empty tensor gives each reduction its identity.
    pub fn programs(&self, n: usize) -> usize {
        let tiles = n.div_ceil(self.block);
        if self.reductions.is_empty() {
            tiles
        } else {
            tiles.max(1)
        }
    }
}

/// A device's partial as the host combines it (Triton's and WGSL's alike): the kernel's
/// finiteness flag, 1 once an element is not finite, becomes the CPU back ends' sum of
/// `x·0` (NaN once an element is not finite).
pub fn partial(op: ReduceOp, v: f64) -> f64 {
    match op {
        ReduceOp::AllFinite if v != 0.0 => f64::NAN,
        ReduceOp::AllFinite => 0.0,
        _ => v,
    }
}

/// The kernels of every pass of `kernel`, as one Python module.
pub fn module(kernel: &Kernel) -> Result<Module> {
    let codes = legalize(kernel)?;
    let mut kernels = String::new();
    let mut passes = Vec::new();
    for (p, code) in codes.iter().enumerate() {
        let (text, pass) = kernel_fn(kernel, code, p)?;
        kernels.push_str(&text);
        passes.push(pass);
    }
    let mut source = String::from(HEADER);
    source.push_str(HELPERS);
    source.push_str(&kernels);
    Ok(Module { source, passes })
}

const HEADER: &str = "\
# The fused step of an anneal recipe as Triton kernels, one per pass (written by anneal;
# regenerate rather than edit). Launch with enable_fp_fusion=False: the step's
# arithmetic is IEEE f32 operation by operation, as on anneal's other back ends.
import triton
import triton.language as tl

";

/// Bit-level tests, then the C library's functions: libdevice's on a GPU, NumPy's (with
/// C's special cases for `pow` and `tanh`) under the interpreter, which has no libdevice.
const HELPERS: &str = r#"@triton.jit
def an_is_nan(x):
    return (x.to(tl.int32, bitcast=True) & 0x7FFFFFFF) > 0x7F800000


@triton.jit
def an_is_finite(x):
    return (x.to(tl.int32, bitcast=True) & 0x7F800000) != 0x7F800000


@triton.jit
def an_add(a, b):
    return a + b


@triton.jit
def an_max(a, b):
    return tl.maximum(a, b)


@triton.jit
def an_min(a, b):
    return tl.minimum(a, b)


@triton.jit
def an_bits(b, like):
    return tl.full(like.shape, b, tl.int32).to(tl.float32, bitcast=True)


if triton.knobs.runtime.interpret:

    @triton.jit
    def an_exp(x):
        return tl.exp(x)

    @triton.jit
    def an_log(x):
        return tl.log(x)

    @triton.jit
    def an_cos(x):
        return tl.cos(x)

    @triton.jit
    def an_sin(x):
        return tl.sin(x)

    @triton.jit
    def an_tanh(x):
        # tanh(±9) is ±1 in f32; clamping keeps exp from overflowing.
        y = tl.minimum(tl.maximum(x, -9.0), 9.0)
        e = tl.exp(2.0 * y)
        t = 1.0 - tl.div_rn(2.0 + 0.0 * y, e + 1.0)
        return tl.where(an_is_nan(x), x, t)

    @triton.jit
    def an_pow(x, y):
        # C's powf: y = 0 gives 1, a NaN operand NaN, x = 0 gives 0 or inf, a negative
        # x an odd or even power for whole y and NaN otherwise.
        nan = an_bits(0x7FC00000, x)
        inf = an_bits(0x7F800000, x)
        m = tl.exp2(y * tl.log2(tl.abs(x)))
        whole = tl.floor(y) == y
        odd = whole & (tl.abs(y) < 16777216.0) & ((tl.abs(y).to(tl.int32) & 1) == 1)
        neg = tl.where(whole, tl.where(odd, -m, m), nan)
        r = tl.where(x > 0.0, m, neg)
        r = tl.where(x == 0.0, tl.where(y < 0.0, inf, 0.0 * m), r)
        r = tl.where(an_is_nan(x) | an_is_nan(y), nan, r)
        return tl.where(y == 0.0, 1.0 + 0.0 * m, r)

else:
    from triton.language.extra import libdevice

    @triton.jit
    def an_exp(x):
        return libdevice.exp(x)

    @triton.jit
    def an_log(x):
        return libdevice.log(x)

    @triton.jit
    def an_cos(x):
        return libdevice.cos(x)

    @triton.jit
    def an_sin(x):
        return libdevice.sin(x)

    @triton.jit
    def an_tanh(x):
        return libdevice.tanh(x)

    @triton.jit
    def an_pow(x, y):
        return libdevice.pow(x, y)

"#;

/// An f32 constant as a block: its exact value in decimal (the f64 that equals it, so
/// Python's parse loses nothing), or its bits where decimal cannot spell it.
fn constant(x: f32) -> String {
    if x.is_finite() {
        format!("tl.full((BLOCK,), {:?}, tl.float32)", f64::from(x))
    } else {
        format!("an_bits({}, idx)", x.to_bits() as i32)
    }
}

/// One op as a Python expression; `slots` is the width of a tensor's row of `s`.
fn op_expr(op: &Op, slots: usize) -> Result<String> {
    let v = |x: &OpId| format!("o{x}");
    Ok(match op {
        Op::Load(k) => format!("tl.load(b{k} + idx, mask=live, other=0.0)"),
        Op::Scalar(k) => format!("tl.broadcast_to(tl.load(s + t * {slots} + {k}), (BLOCK,))"),
        Op::Prim(p) => match p {
            Prim::Const(c) => constant(*c as f32),
            Prim::Unary(u, x) => match u {
                Unary::Neg => format!("-{}", v(x)),
                Unary::Sqrt => format!("tl.sqrt_rn({})", v(x)),
                Unary::Abs => format!("tl.abs({})", v(x)),
                Unary::Floor => format!("tl.floor({})", v(x)),
                Unary::Ceil => format!("tl.ceil({})", v(x)),
            },
            Prim::Binary(b, x, y) => match b {
                crate::kernel::legalize::Binary::Div => format!("tl.div_rn({}, {})", v(x), v(y)),
                other => format!("{} {} {}", v(x), other.symbol(), v(y)),
            },
            Prim::Libm(f, x, y) => match (f, y) {
                (Libm::Pow, Some(y)) => format!("an_pow({}, {})", v(x), v(y)),
                (Libm::Pow, None) => return Err(Error::internal("`pow` with one operand")),
                (Libm::Exp, _) => format!("an_exp({})", v(x)),
                (Libm::Log, _) => format!("an_log({})", v(x)),
                (Libm::Cos, _) => format!("an_cos({})", v(x)),
                (Libm::Sin, _) => format!("an_sin({})", v(x)),
                (Libm::Tanh, _) => format!("an_tanh({})", v(x)),
            },
            // IEEE comparisons: ordered, except `!=`, which holds for a NaN.
            Prim::Compare(c, x, y) => format!("{} {} {}", v(x), c.symbol(), v(y)),
            Prim::IsNan(x) => format!("an_is_nan({})", v(x)),
            Prim::IsFinite(x) => format!("an_is_finite({})", v(x)),
            Prim::And(x, y) => format!("{} & {}", v(x), v(y)),
            Prim::Or(x, y) => format!("{} | {}", v(x), v(y)),
            Prim::Select(m, x, y) => format!("tl.where({}, {}, {})", v(m), v(x), v(y)),
        },
    })
}

/// A reduction's partial over the program's live elements.
///
/// `tl.reduce` with the module's own combining functions rather than `tl.sum`/`tl.max`:
/// those are jit functions of Triton's library, which its interpreter runs only when
/// `TRITON_INTERPRET` was set before `triton` was imported.
fn partial_expr(kind: AccKind, x: OpId) -> String {
    match kind {
        AccKind::Sum => format!("tl.reduce(tl.where(live, o{x}.to(tl.float64), 0.0), 0, an_add)"),
        AccKind::SumSq => format!(
            "tl.reduce(tl.where(live, o{x}.to(tl.float64) * o{x}.to(tl.float64), 0.0), 0, an_add)"
        ),
        AccKind::Finite => format!(
            "tl.reduce(tl.where(live & ~an_is_finite(o{x}), 1.0, 0.0), 0, an_max).to(tl.float64)"
        ),
        // A NaN element leaves a maximum (minimum) unchanged.
        AccKind::Max => format!(
            "tl.reduce(tl.where(live & ~an_is_nan(o{x}), o{x}, an_bits(-8388608, idx)), 0, an_max).to(tl.float64)"
        ),
        AccKind::Min => format!(
            "tl.reduce(tl.where(live & ~an_is_nan(o{x}), o{x}, an_bits(2139095040, idx)), 0, an_min).to(tl.float64)"
        ),
    }
}

fn kernel_fn(kernel: &Kernel, code: &PassCode, p: usize) -> Result<(String, TritonPass)> {
    let pass = &kernel.passes[p];
    let block = if pass.kind == PassKind::Reduce {
        REDUCE_BLOCK
    } else {
        MAP_BLOCK
    };
    let writes = pass.writes(kernel);
    let slots = pass.scalars.len() + usize::from(pass.guarded);
    let name = format!("anneal_pass{p}");
    let what = match pass.kind {
        PassKind::Reduce => "reduction",
        PassKind::Map => "map",
        PassKind::SkipMap => "map on steps a `skip if` stops",
        PassKind::Prepare => "prepare (model-call arguments)",
    };
    let o = &mut String::new();
    let nbufs = pass.bufs.len();
    let partials = if pass.kind == PassKind::Reduce {
        ", partials"
    } else {
        ""
    };
    let _ = writeln!(o, "\n# pass {p}: {what}, {block} elements per program.");
    for (k, b) in pass.bufs.iter().enumerate() {
        let rw = if writes.contains(b) {
            "written"
        } else {
            "read"
        };
        let _ = writeln!(o, "#   b{k}: {} ({rw})", super::wgsl::buf_name(*b));
    }
    let _ = writeln!(
        o,
        "@triton.jit\ndef {name}(s, ptrs, sizes, tiles{partials}, BLOCK: tl.constexpr):"
    );
    let _ = writeln!(
        o,
        "    pid = tl.program_id(0)\n    t = tl.load(tiles + 2 * pid)\n    j = tl.load(tiles + 2 * pid + 1)\n    idx = j.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)\n    live = idx < tl.load(sizes + t)"
    );
    for k in 0..nbufs {
        let _ = writeln!(
            o,
            "    b{k} = tl.load(ptrs + t * {nbufs} + {k}).to(tl.pointer_type(tl.float32))"
        );
    }
    // Every value first, then every store: values are functions of the buffers as the
    // step began.
    for (id, op) in code.ops.iter().enumerate() {
        let _ = writeln!(o, "    o{id} = {}", op_expr(op, slots)?);
    }
    match pass.kind {
        PassKind::Reduce => {
            let nred = code.reductions.len();
            for (j, r) in code.reductions.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "    tl.store(partials + pid * {nred} + {j}, {})",
                    partial_expr(r.kind, r.value)
                );
            }
        }
        PassKind::Map | PassKind::SkipMap | PassKind::Prepare => {
            if let Some(active) = code.guard {
                let _ = writeln!(
                    o,
                    "    active = tl.broadcast_to(tl.load(s + t * {slots} + {active}), (BLOCK,))"
                );
            }
            for store in &code.stores {
                let mask = match code.guard {
                    Some(_) => format!("live & ({} < active)", constant(store.stage as f32)),
                    None => "live".into(),
                };
                let _ = writeln!(
                    o,
                    "    tl.store(b{} + idx, o{}, mask={mask})",
                    store.buf, store.value
                );
            }
        }
    }
    o.push('\n');
    let info = TritonPass {
        pass: p,
        kind: pass.kind,
        name,
        bufs: pass.bufs.clone(),
        writes: pass.bufs.iter().map(|b| writes.contains(b)).collect(),
        slots,
        reductions: pass
            .reductions
            .iter()
            .map(|&r| kernel.reductions[r].op)
            .collect(),
        block,
    };
    Ok((std::mem::take(o), info))
}
