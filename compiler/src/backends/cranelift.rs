//! The Cranelift back end: an `emit::Emitter` that turns each legalized pass into one
//! native function. Entry points: `compile` (JIT, cached by kernel structure) and
//! `object` (an object file for `anneal export`).
//!
//! A pass function walks `[start, end)` four elements at a time in f32x4 lanes, then the
//! remaining elements one at a time (`widths() = [4, 1]`); the primitive ops map to one
//! instruction each, and `exp`, `log`, `pow`, `cos`, `sin`, `tanh` call the C library's
//! f32 functions (the ones Rust's `f32` methods call), lane by lane. Reductions accumulate
//! in f64 (two f64x2 accumulators per reduction, then the tail) and each writes one
//! partial result per call.
//!
//! Hyperparameters are slots of a per-tensor scalar table read at run time, so a kernel's
//! code depends only on the recipe's structure: compiled code is cached by that structure
//! and changing a learning rate or a beta never compiles again (`compiles()` counts).

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::time::Instant;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, ConstantData, Endianness, FuncRef, InstBuilder, MemFlagsData, Type,
    UserFuncName, Value,
};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};

use super::emit::{emit_pass, Emitter};
pub use super::Compiled;
use super::JitCache;
use crate::ast::CmpOp;
use crate::kernel::legalize::{legalize, AccKind, Binary, Libm, PassCode, Unary};
use crate::kernel::Kernel;

static CACHE: JitCache = JitCache::new();

/// How many kernels this process has compiled with Cranelift (cache hits excluded).
pub fn compiles() -> usize {
    CACHE.compiles()
}

/// Compiles every pass of `kernel` (or reuses the code of a kernel of the same structure).
pub fn compile(kernel: &Kernel) -> Result<Compiled> {
    CACHE.get_or_compile(kernel, jit_uncounted)
}

/// Compiles every pass of `kernel`, bypassing the cache: the pass addresses and the time
/// taken (ms).
pub fn jit(kernel: &Kernel) -> Result<(Vec<usize>, f64)> {
    CACHE.count();
    jit_uncounted(kernel)
}

fn jit_uncounted(kernel: &Kernel) -> Result<(Vec<usize>, f64)> {
    let t0 = Instant::now();
    let mut jb = JITBuilder::with_isa(host_isa(false)?, default_libcall_names());
    for (name, ptr) in LIBM_SYMBOLS {
        jb.symbol(*name, *ptr);
    }
    let mut module = JITModule::new(jb);
    let ids = define_all(&mut module, kernel, "pass", Linkage::Local)?;
    module
        .finalize_definitions()
        .map_err(|e| Error::user(format!("cranelift: {e}")))?;
    let addrs: Vec<usize> = ids
        .iter()
        .map(|id| module.get_finalized_function(*id) as usize)
        .collect();
    // The code must outlive every `Fused` that holds its addresses.
    std::mem::forget(module);
    Ok((addrs, t0.elapsed().as_secs_f64() * 1e3))
}

/// The host ISA, optimizing for speed; position-independent code for an object file.
pub(crate) fn host_isa(pic: bool) -> Result<OwnedTargetIsa> {
    let mut flags = settings::builder();
    let pic = if pic { "true" } else { "false" };
    let mut settings = vec![("opt_level", "speed"), ("is_pic", pic)];
    if pic == "false" {
        settings.push(("use_colocated_libcalls", "false"));
    }
    for (k, v) in settings {
        flags
            .set(k, v)
            .map_err(|e| Error::user(format!("cranelift flag {k}: {e}")))?;
    }
    cranelift_native::builder()
        .map_err(|e| Error::user(format!("this machine is not supported by Cranelift: {e}")))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| Error::user(format!("cranelift: {e}")))
}

extern "C" fn an_expf(x: f32) -> f32 {
    x.exp()
}
extern "C" fn an_logf(x: f32) -> f32 {
    x.ln()
}
extern "C" fn an_powf(x: f32, y: f32) -> f32 {
    x.powf(y)
}
extern "C" fn an_cosf(x: f32) -> f32 {
    x.cos()
}
extern "C" fn an_sinf(x: f32) -> f32 {
    x.sin()
}
extern "C" fn an_tanhf(x: f32) -> f32 {
    x.tanh()
}

/// The C library's names (what an exported object links against) and, for the JIT, the
/// Rust functions computing the same (they call the same C functions).
const LIBM_SYMBOLS: &[(&str, *const u8)] = &[
    ("expf", an_expf as *const u8),
    ("logf", an_logf as *const u8),
    ("powf", an_powf as *const u8),
    ("cosf", an_cosf as *const u8),
    ("sinf", an_sinf as *const u8),
    ("tanhf", an_tanhf as *const u8),
];

/// Declares and defines one function per pass, named `{prefix}{i}`.
pub(crate) fn define_all<M: Module>(
    module: &mut M,
    kernel: &Kernel,
    prefix: &str,
    linkage: Linkage,
) -> Result<Vec<FuncId>> {
    let ptr = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    for _ in 0..5 {
        sig.params.push(AbiParam::new(ptr));
    }
    let mut unary = module.make_signature();
    unary.params.push(AbiParam::new(types::F32));
    unary.returns.push(AbiParam::new(types::F32));
    let mut binary = unary.clone();
    binary.params.push(AbiParam::new(types::F32));
    let mut libm = HashMap::new();
    for (name, _) in LIBM_SYMBOLS {
        let s = if *name == "powf" { &binary } else { &unary };
        let id = module
            .declare_function(name, Linkage::Import, s)
            .map_err(|e| Error::user(format!("cranelift: {e}")))?;
        libm.insert(*name, id);
    }
    let mut ids = Vec::new();
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let config = module.target_config();
    let codes = legalize(kernel)?;
    for (i, code) in codes.iter().enumerate() {
        let id = module
            .declare_function(&format!("{prefix}{i}"), linkage, &sig)
            .map_err(|e| Error::user(format!("cranelift: {e}")))?;
        ctx.func.signature = sig.clone();
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let mut refs = HashMap::new();
            for (name, fid) in &libm {
                refs.insert(*name, module.declare_func_in_func(*fid, b.func));
            }
            let mut gen = Gen {
                b: &mut b,
                libm: refs,
                ptr,
                args: Vec::new(),
                bases: Vec::new(),
                slots: Vec::new(),
                i: None,
                addrs: Vec::new(),
                vector: false,
                open_loop: None,
                after: Vec::new(),
            };
            emit_pass(&mut gen, code)?;
            b.seal_all_blocks();
            b.finalize(config);
        }
        if std::env::var_os("ANNEAL_DUMP").is_some() {
            ctx.set_disasm(true);
        }
        module.define_function(id, &mut ctx).map_err(|e| {
            Error::internal(format!("cranelift could not compile pass {}: {e:?}", i + 1))
        })?;
        if std::env::var_os("ANNEAL_DUMP").is_some() {
            if let Some(c) = ctx.compiled_code() {
                eprintln!("pass {i}:\n{}", c.vcode.clone().unwrap_or_default());
            }
        }
        module.clear_context(&mut ctx);
        ids.push(id);
    }
    Ok(ids)
}

const MEM: MemFlagsData = MemFlagsData::new().with_notrap();
const LE: MemFlagsData = MemFlagsData::new().with_endianness(Endianness::Little);

/// Accumulator variables of one reduction: vector (two f64x2, or one f32x4 for max/min
/// and finiteness) and scalar (f64, or f32 for max/min and finiteness).
pub(crate) struct AccVars {
    lo: Variable,
    hi: Variable,
    tail: Variable,
}

/// The Cranelift emitter of one pass function: f32x4 lanes in the wide loop, f32 in the
/// tail.
struct Gen<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    libm: HashMap<&'static str, FuncRef>,
    ptr: Type,
    /// The function's arguments: scalars, buffers, start, end, partials.
    args: Vec<Value>,
    bases: Vec<Value>,
    /// Per scalar slot: the f32 value and its f32x4 splat.
    slots: Vec<(Value, Value)>,
    /// The element index.
    i: Option<Variable>,
    /// This iteration's buffer addresses.
    addrs: Vec<Value>,
    vector: bool,
    /// The open loop's (head, exit) and the open guard's continuation.
    open_loop: Option<(cranelift_codegen::ir::Block, cranelift_codegen::ir::Block)>,
    after: Vec<cranelift_codegen::ir::Block>,
}

type R<T> = Result<T>;

impl Gen<'_, '_> {
    /// The running max (min) updated with `x`; a NaN `x` leaves it unchanged.
    fn pick(&mut self, kind: AccKind, x: Value, acc: Value, vector: bool) -> Value {
        let cc = if kind == AccKind::Max {
            FloatCC::GreaterThan
        } else {
            FloatCC::LessThan
        };
        let m = self.b.ins().fcmp(cc, x, acc);
        self.select_mask(m, x, acc, vector)
    }

    fn fconst(&mut self, x: f32, vector: bool) -> Value {
        let s = self.b.ins().f32const(x);
        if vector {
            self.b.ins().splat(types::F32X4, s)
        } else {
            s
        }
    }

    /// `mask ? x : y`, with `mask` from `fcmp` (i8 for scalars, i32x4 for vectors).
    fn select_mask(&mut self, mask: Value, x: Value, y: Value, vector: bool) -> Value {
        if vector {
            let m = self.b.ins().bitcast(types::F32X4, LE, mask);
            self.b.ins().bitselect(m, x, y)
        } else {
            self.b.ins().select(mask, x, y)
        }
    }

    fn index(&self) -> R<Variable> {
        self.i
            .ok_or_else(|| Error::internal("a loop opened before the function"))
    }
}

impl Emitter for Gen<'_, '_> {
    type Value = Value;
    type Mask = Value;
    type Acc = AccVars;

    fn widths(&self) -> &'static [usize] {
        &[4, 1]
    }

    fn begin(&mut self, code: &PassCode) -> R<()> {
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        self.args = self.b.block_params(entry).to_vec();
        let (scalars, bufs) = (self.args[0], self.args[1]);
        for i in 0..code.bufs {
            let v = self.b.ins().load(self.ptr, MEM, bufs, (8 * i) as i32);
            self.bases.push(v);
        }
        for i in 0..code.slots {
            let s = self.b.ins().load(types::F32, MEM, scalars, (4 * i) as i32);
            let v = self.b.ins().splat(types::F32X4, s);
            self.slots.push((s, v));
        }
        let i = self.b.declare_var(types::I64);
        self.b.def_var(i, self.args[2]);
        self.i = Some(i);
        Ok(())
    }

    fn acc_new(&mut self, kind: AccKind) -> R<AccVars> {
        let (vt, st) = match kind {
            AccKind::Max | AccKind::Min | AccKind::Finite => (types::F32X4, types::F32),
            _ => (types::F64X2, types::F64),
        };
        let init = match kind {
            AccKind::Max => f32::NEG_INFINITY,
            AccKind::Min => f32::INFINITY,
            _ => 0.0,
        };
        let lo = self.b.declare_var(vt);
        let hi = self.b.declare_var(vt);
        let tail = self.b.declare_var(st);
        let (v, s) = if st == types::F32 {
            let s = self.b.ins().f32const(init);
            (self.b.ins().splat(vt, s), s)
        } else {
            let s = self.b.ins().f64const(0.0);
            (self.b.ins().splat(vt, s), s)
        };
        self.b.def_var(lo, v);
        self.b.def_var(hi, v);
        self.b.def_var(tail, s);
        Ok(AccVars { lo, hi, tail })
    }

    fn loop_begin(&mut self, width: usize) -> R<()> {
        let i = self.index()?;
        let end = self.args[3];
        let (head, body, exit) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().jump(head, &[]);
        // While i + width <= end.
        self.b.switch_to_block(head);
        let iv = self.b.use_var(i);
        let more = if width == 1 {
            self.b.ins().icmp(IntCC::UnsignedLessThan, iv, end)
        } else {
            let iw = self.b.ins().iadd_imm_u(iv, width as i64);
            self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, iw, end)
        };
        self.b.ins().brif(more, body, &[], exit, &[]);
        self.b.switch_to_block(body);
        self.vector = width > 1;
        let iv = self.b.use_var(i);
        let off = self.b.ins().ishl_imm_u(iv, 2);
        self.addrs.clear();
        for k in 0..self.bases.len() {
            let a = self.b.ins().iadd(self.bases[k], off);
            self.addrs.push(a);
        }
        self.open_loop = Some((head, exit));
        Ok(())
    }

    fn loop_end(&mut self, width: usize) -> R<()> {
        let i = self.index()?;
        let (head, exit) = self
            .open_loop
            .take()
            .ok_or_else(|| Error::internal("a loop closed twice"))?;
        let iv = self.b.use_var(i);
        let next = self.b.ins().iadd_imm_u(iv, width as i64);
        self.b.def_var(i, next);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    fn acc_finish(&mut self, j: usize, kind: AccKind, a: &AccVars) -> R<()> {
        // The lanes combine in a fixed order.
        let lo = self.b.use_var(a.lo);
        let hi = self.b.use_var(a.hi);
        let tail = self.b.use_var(a.tail);
        let total = match kind {
            AccKind::Max | AccKind::Min => {
                let mut m = self.b.ins().extractlane(lo, 0);
                for lane in 1..4u8 {
                    let x = self.b.ins().extractlane(lo, lane);
                    m = self.pick(kind, x, m, false);
                }
                let m = self.pick(kind, tail, m, false);
                self.b.ins().fpromote(types::F64, m)
            }
            AccKind::Finite => {
                let mut s = tail;
                for lane in 0..4u8 {
                    let x = self.b.ins().extractlane(lo, lane);
                    s = self.b.ins().fadd(s, x);
                }
                self.b.ins().fpromote(types::F64, s)
            }
            AccKind::Sum | AccKind::SumSq => {
                let (l0, l1) = (
                    self.b.ins().extractlane(lo, 0),
                    self.b.ins().extractlane(lo, 1),
                );
                let (h0, h1) = (
                    self.b.ins().extractlane(hi, 0),
                    self.b.ins().extractlane(hi, 1),
                );
                let l = self.b.ins().fadd(l0, l1);
                let h = self.b.ins().fadd(h0, h1);
                let s = self.b.ins().fadd(l, h);
                self.b.ins().fadd(s, tail)
            }
        };
        let partials = self.args[4];
        self.b.ins().store(MEM, total, partials, (8 * j) as i32);
        Ok(())
    }

    fn end(&mut self) -> R<()> {
        self.b.ins().return_(&[]);
        Ok(())
    }

    fn load(&mut self, buf: usize) -> R<Value> {
        let ty = if self.vector {
            types::F32X4
        } else {
            types::F32
        };
        Ok(self.b.ins().load(ty, MEM, self.addrs[buf], 0))
    }

    fn store(&mut self, buf: usize, value: Value) -> R<()> {
        self.b.ins().store(MEM, value, self.addrs[buf], 0);
        Ok(())
    }

    fn scalar(&mut self, slot: usize) -> R<Value> {
        let (s, v) = self.slots[slot];
        Ok(if self.vector { v } else { s })
    }

    fn stage_live(&mut self, stage: usize, slot: usize) -> R<Value> {
        let active = self.slots[slot].0;
        let stage = self.b.ins().f32const(stage as f32);
        Ok(self.b.ins().fcmp(FloatCC::LessThan, stage, active))
    }

    fn begin_if(&mut self, live: Value) -> R<()> {
        let (yes, after) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(live, yes, &[], after, &[]);
        self.b.switch_to_block(yes);
        self.after.push(after);
        Ok(())
    }

    fn end_if(&mut self) -> R<()> {
        let after = self
            .after
            .pop()
            .ok_or_else(|| Error::internal("a guard closed twice"))?;
        self.b.ins().jump(after, &[]);
        self.b.switch_to_block(after);
        Ok(())
    }

    fn accumulate(&mut self, kind: AccKind, a: &AccVars, x: Value) -> R<()> {
        let vector = self.vector;
        match kind {
            AccKind::Max | AccKind::Min => {
                let var = if vector { a.lo } else { a.tail };
                let acc = self.b.use_var(var);
                let m = self.pick(kind, x, acc, vector);
                self.b.def_var(var, m);
            }
            AccKind::Finite => {
                // x·0 is 0 for a finite x and NaN otherwise; a sum of those in f32 is
                // exact (0) until the first NaN, which it keeps.
                let var = if vector { a.lo } else { a.tail };
                let z = self.fconst(0.0, vector);
                let y = self.b.ins().fmul(x, z);
                let acc = self.b.use_var(var);
                let s = self.b.ins().fadd(acc, y);
                self.b.def_var(var, s);
            }
            AccKind::Sum | AccKind::SumSq => {
                if vector {
                    let lo = self.b.ins().fvpromote_low(x);
                    let bytes = self.b.ins().bitcast(types::I8X16, LE, x);
                    let mask: Vec<u8> = (8..16).chain(8..16).collect();
                    let imm = self
                        .b
                        .func
                        .dfg
                        .immediates
                        .push(ConstantData::from(mask.as_slice()));
                    let upper = self.b.ins().shuffle(bytes, bytes, imm);
                    let upper = self.b.ins().bitcast(types::F32X4, LE, upper);
                    let hi = self.b.ins().fvpromote_low(upper);
                    let (lo, hi) = if kind == AccKind::SumSq {
                        (self.b.ins().fmul(lo, lo), self.b.ins().fmul(hi, hi))
                    } else {
                        (lo, hi)
                    };
                    let al = self.b.use_var(a.lo);
                    let ah = self.b.use_var(a.hi);
                    let nl = self.b.ins().fadd(al, lo);
                    let nh = self.b.ins().fadd(ah, hi);
                    self.b.def_var(a.lo, nl);
                    self.b.def_var(a.hi, nh);
                } else {
                    let x = self.b.ins().fpromote(types::F64, x);
                    let x = if kind == AccKind::SumSq {
                        self.b.ins().fmul(x, x)
                    } else {
                        x
                    };
                    let t = self.b.use_var(a.tail);
                    let n = self.b.ins().fadd(t, x);
                    self.b.def_var(a.tail, n);
                }
            }
        }
        Ok(())
    }

    fn constant(&mut self, x: f32) -> R<Value> {
        Ok(self.fconst(x, self.vector))
    }

    fn unary(&mut self, op: Unary, x: Value) -> R<Value> {
        let ins = self.b.ins();
        Ok(match op {
            Unary::Neg => ins.fneg(x),
            Unary::Sqrt => ins.sqrt(x),
            Unary::Abs => ins.fabs(x),
            Unary::Floor => ins.floor(x),
            Unary::Ceil => ins.ceil(x),
        })
    }

    fn binary(&mut self, op: Binary, x: Value, y: Value) -> R<Value> {
        let ins = self.b.ins();
        Ok(match op {
            Binary::Add => ins.fadd(x, y),
            Binary::Sub => ins.fsub(x, y),
            Binary::Mul => ins.fmul(x, y),
            Binary::Div => ins.fdiv(x, y),
        })
    }

    fn libm(&mut self, f: Libm, args: &[Value]) -> R<Value> {
        let f = *self
            .libm
            .get(f.c_name())
            .ok_or_else(|| Error::internal(format!("`{}` is not declared", f.c_name())))?;
        if !self.vector {
            let call = self.b.ins().call(f, args);
            return Ok(self.b.inst_results(call)[0]);
        }
        let mut out = args[0];
        for lane in 0..4u8 {
            let xs: Vec<Value> = args
                .iter()
                .map(|a| self.b.ins().extractlane(*a, lane))
                .collect();
            let call = self.b.ins().call(f, &xs);
            let r = self.b.inst_results(call)[0];
            out = self.b.ins().insertlane(out, r, lane);
        }
        Ok(out)
    }

    fn compare(&mut self, op: CmpOp, x: Value, y: Value) -> R<Value> {
        let cc = match op {
            CmpOp::Lt => FloatCC::LessThan,
            CmpOp::Le => FloatCC::LessThanOrEqual,
            CmpOp::Gt => FloatCC::GreaterThan,
            CmpOp::Ge => FloatCC::GreaterThanOrEqual,
            CmpOp::Eq => FloatCC::Equal,
            // Cranelift's NotEqual is unordered-or-not-equal, as the op means.
            CmpOp::Ne => FloatCC::NotEqual,
        };
        Ok(self.b.ins().fcmp(cc, x, y))
    }

    fn is_nan(&mut self, x: Value) -> R<Value> {
        Ok(self.b.ins().fcmp(FloatCC::Unordered, x, x))
    }

    fn is_finite(&mut self, x: Value) -> R<Value> {
        // x − x is 0 exactly when x is finite (NaN for ±∞ and NaN).
        let d = self.b.ins().fsub(x, x);
        let z = self.fconst(0.0, self.vector);
        Ok(self.b.ins().fcmp(FloatCC::Equal, d, z))
    }

    fn and(&mut self, x: Value, y: Value) -> R<Value> {
        Ok(self.b.ins().band(x, y))
    }

    fn or(&mut self, x: Value, y: Value) -> R<Value> {
        Ok(self.b.ins().bor(x, y))
    }

    fn select(&mut self, m: Value, x: Value, y: Value) -> R<Value> {
        Ok(self.select_mask(m, x, y, self.vector))
    }
}

/// A kernel's passes as a relocatable object file (symbols `{prefix}{i}`, global), for
/// `anneal export`; it imports `expf`, `logf`, `powf`, `cosf`, `sinf`, `tanhf` (`-lm`).
pub fn object(kernel: &Kernel, prefix: &str) -> Result<Vec<u8>> {
    let builder = cranelift_object::ObjectBuilder::new(
        host_isa(true)?,
        prefix.as_bytes().to_vec(),
        default_libcall_names(),
    )
    .map_err(|e| Error::user(format!("cranelift: {e}")))?;
    let mut module = cranelift_object::ObjectModule::new(builder);
    define_all(&mut module, kernel, prefix, Linkage::Export)?;
    module
        .finish()
        .emit()
        .map_err(|e| Error::user(format!("cannot write the object file: {e}")))
}
