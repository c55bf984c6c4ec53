//! The Cranelift back end: each pass of a kernel becomes one native function, the JIT
//! demo's FunctionTranslator shape. Entry points: `compile` (JIT, cached by kernel
//! structure) and `object` (an object file for `anneal export`).
//!
//! A pass function walks `[start, end)` four elements at a time in f32x4 lanes, then the
//! remaining elements one at a time, evaluating the element graph with exactly the f32
//! operations the interpreter uses (`math.rs`): `min`/`max` ignore a NaN operand as Rust's
//! do, `sign(0) = 0`, `lerp` takes torch's two-branch formula, and `exp`, `log`, `pow`,
//! `cos`, `sin`, `tanh` call the C library's f32 functions (the ones Rust's `f32` methods
//! call), lane by lane. Reductions accumulate in f64 (two f64x2 accumulators per
//! reduction, then the tail) and each writes one partial result per call.
//!
//! Hyperparameters are slots of a per-tensor scalar table read at run time, so a kernel's
//! code depends only on the recipe's structure: compiled code is cached by that structure
//! and changing a learning rate or a beta never compiles again (`compiles()` counts).

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

pub use super::Compiled;
use super::{acc_kind, AccKind, JitCache};
use crate::ast::{BinOp, CmpOp, UnOp};
use crate::ir::Builtin;
use crate::kernel::{EId, Elem, Host, Kernel, Pass, PassKind};

static CACHE: JitCache = JitCache::new();

/// How many kernels this process has compiled with Cranelift (cache hits excluded).
pub fn compiles() -> usize {
    CACHE.compiles()
}

/// Compiles every pass of `kernel` (or reuses the code of a kernel of the same structure).
pub fn compile(kernel: &Kernel) -> Result<Compiled, String> {
    CACHE.get_or_compile(kernel, jit_uncounted)
}

/// Compiles every pass of `kernel`, bypassing the cache: the pass addresses and the time
/// taken (ms).
pub fn jit(kernel: &Kernel) -> Result<(Vec<usize>, f64), String> {
    CACHE.count();
    jit_uncounted(kernel)
}

fn jit_uncounted(kernel: &Kernel) -> Result<(Vec<usize>, f64), String> {
    let t0 = Instant::now();
    let mut jb = JITBuilder::with_isa(host_isa(false)?, default_libcall_names());
    for (name, ptr) in LIBM_SYMBOLS {
        jb.symbol(*name, *ptr);
    }
    let mut module = JITModule::new(jb);
    let ids = define_all(&mut module, kernel, "pass", Linkage::Local)?;
    module
        .finalize_definitions()
        .map_err(|e| format!("cranelift: {e}"))?;
    let addrs: Vec<usize> = ids
        .iter()
        .map(|id| module.get_finalized_function(*id) as usize)
        .collect();
    // The code must outlive every `Fused` that holds its addresses.
    std::mem::forget(module);
    Ok((addrs, t0.elapsed().as_secs_f64() * 1e3))
}

/// The host ISA, optimizing for speed; position-independent code for an object file.
pub(crate) fn host_isa(pic: bool) -> Result<OwnedTargetIsa, String> {
    let mut flags = settings::builder();
    let pic = if pic { "true" } else { "false" };
    let mut settings = vec![("opt_level", "speed"), ("is_pic", pic)];
    if pic == "false" {
        settings.push(("use_colocated_libcalls", "false"));
    }
    for (k, v) in settings {
        flags
            .set(k, v)
            .map_err(|e| format!("cranelift flag {k}: {e}"))?;
    }
    cranelift_native::builder()
        .map_err(|e| format!("this machine is not supported by Cranelift: {e}"))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| format!("cranelift: {e}"))
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
) -> Result<Vec<FuncId>, String> {
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
            .map_err(|e| format!("cranelift: {e}"))?;
        libm.insert(*name, id);
    }
    let mut ids = Vec::new();
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let config = module.target_config();
    for (i, pass) in kernel.passes.iter().enumerate() {
        let id = module
            .declare_function(&format!("{prefix}{i}"), linkage, &sig)
            .map_err(|e| format!("cranelift: {e}"))?;
        ctx.func.signature = sig.clone();
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let mut refs = HashMap::new();
            for (name, fid) in &libm {
                refs.insert(*name, module.declare_func_in_func(*fid, b.func));
            }
            Gen::new(kernel, pass, &mut b, refs, ptr).emit();
            b.seal_all_blocks();
            b.finalize(config);
        }
        if std::env::var_os("ANNEAL_DUMP").is_some() {
            ctx.set_disasm(true);
        }
        module
            .define_function(id, &mut ctx)
            .map_err(|e| format!("cranelift could not compile pass {}: {e:?}", i + 1))?;
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

/// Accumulator variables of one reduction: vector (two f64x2, or one f32x4 for max/min)
/// and scalar (f64, or f32 for max/min).
struct AccVars {
    kind: AccKind,
    lo: Variable,
    hi: Variable,
    tail: Variable,
}

struct Gen<'a, 'b> {
    k: &'a Kernel,
    pass: &'a Pass,
    b: &'a mut FunctionBuilder<'b>,
    libm: HashMap<&'static str, FuncRef>,
    ptr: Type,
    bases: Vec<Value>,
    /// Per scalar slot: the f32 value and its f32x4 splat.
    slots: Vec<(Value, Value)>,
}

impl<'a, 'b> Gen<'a, 'b> {
    fn new(
        k: &'a Kernel,
        pass: &'a Pass,
        b: &'a mut FunctionBuilder<'b>,
        libm: HashMap<&'static str, FuncRef>,
        ptr: Type,
    ) -> Self {
        Gen {
            k,
            pass,
            b,
            libm,
            ptr,
            bases: Vec::new(),
            slots: Vec::new(),
        }
    }

    fn emit(&mut self) {
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        let p = self.b.block_params(entry).to_vec();
        let (scalars, bufs, start, end, partials) = (p[0], p[1], p[2], p[3], p[4]);
        for i in 0..self.pass.bufs.len() {
            let v = self.b.ins().load(self.ptr, MEM, bufs, (8 * i) as i32);
            self.bases.push(v);
        }
        let nslots = self.pass.scalars.len() + usize::from(self.pass.guarded);
        for i in 0..nslots {
            let s = self.b.ins().load(types::F32, MEM, scalars, (4 * i) as i32);
            let v = self.b.ins().splat(types::F32X4, s);
            self.slots.push((s, v));
        }
        let accs: Vec<AccVars> = self
            .pass
            .reductions
            .iter()
            .map(|&r| {
                let kind = acc_kind(self.k.reductions[r].op);
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
                AccVars { kind, lo, hi, tail }
            })
            .collect();
        let i = self.b.declare_var(types::I64);
        self.b.def_var(i, start);

        let (vhead, vbody, thead, tbody, exit) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().jump(vhead, &[]);

        // Vector loop: while i + 4 <= end.
        self.b.switch_to_block(vhead);
        let iv = self.b.use_var(i);
        let i4 = self.b.ins().iadd_imm_u(iv, 4);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, i4, end);
        self.b.ins().brif(more, vbody, &[], thead, &[]);
        self.b.switch_to_block(vbody);
        let iv = self.b.use_var(i);
        self.body(iv, true, &accs);
        let iv = self.b.use_var(i);
        let next = self.b.ins().iadd_imm_u(iv, 4);
        self.b.def_var(i, next);
        self.b.ins().jump(vhead, &[]);

        // Scalar tail: while i < end.
        self.b.switch_to_block(thead);
        let iv = self.b.use_var(i);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, iv, end);
        self.b.ins().brif(more, tbody, &[], exit, &[]);
        self.b.switch_to_block(tbody);
        let iv = self.b.use_var(i);
        self.body(iv, false, &accs);
        let iv = self.b.use_var(i);
        let next = self.b.ins().iadd_imm_u(iv, 1);
        self.b.def_var(i, next);
        self.b.ins().jump(thead, &[]);

        // Combine lanes in a fixed order and write one partial per reduction.
        self.b.switch_to_block(exit);
        for (j, a) in accs.iter().enumerate() {
            let lo = self.b.use_var(a.lo);
            let hi = self.b.use_var(a.hi);
            let tail = self.b.use_var(a.tail);
            let total = match a.kind {
                AccKind::Max | AccKind::Min => {
                    let mut m = self.b.ins().extractlane(lo, 0);
                    for lane in 1..4u8 {
                        let x = self.b.ins().extractlane(lo, lane);
                        m = self.pick(a.kind, x, m, false);
                    }
                    let m = self.pick(a.kind, tail, m, false);
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
                _ => {
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
            self.b.ins().store(MEM, total, partials, (8 * j) as i32);
        }
        self.b.ins().return_(&[]);
    }

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

    /// One iteration at element `i`: stores (map pass) or accumulation (reduce pass).
    fn body(&mut self, i: Value, vector: bool, accs: &[AccVars]) {
        let mut memo: HashMap<EId, Value> = HashMap::new();
        let off = self.b.ins().ishl_imm_u(i, 2);
        // Loads first, shared by every reduction and store of the iteration.
        let mut addrs = Vec::with_capacity(self.bases.len());
        for k in 0..self.bases.len() {
            addrs.push(self.b.ins().iadd(self.bases[k], off));
        }
        let ty = if vector { types::F32X4 } else { types::F32 };
        for (e, n) in self.k.elems.iter().enumerate() {
            if let Elem::Load(buf) = n {
                if self.pass.reads.contains(buf) {
                    let slot = self.pass.slot(*buf);
                    let v = self.b.ins().load(ty, MEM, addrs[slot], 0);
                    memo.insert(e, v);
                }
            }
        }
        match self.pass.kind {
            PassKind::Map | PassKind::SkipMap | PassKind::Prepare => {
                let mut values = Vec::new();
                for &s in &self.pass.stores {
                    let v = self.elem(self.k.stores[s].value, vector, &mut memo);
                    values.push(v);
                }
                let active_slot = self.pass.scalars.len();
                for (&s, v) in self.pass.stores.iter().zip(values) {
                    let store = &self.k.stores[s];
                    let slot = self.pass.slot(store.buf);
                    if self.pass.guarded {
                        // Written only while stage < active.
                        let active = self.slots[active_slot].0;
                        let stage = self.b.ins().f32const(store.stage as f32);
                        let live = self.b.ins().fcmp(FloatCC::LessThan, stage, active);
                        let (yes, after) = (self.b.create_block(), self.b.create_block());
                        self.b.ins().brif(live, yes, &[], after, &[]);
                        self.b.switch_to_block(yes);
                        self.b.ins().store(MEM, v, addrs[slot], 0);
                        self.b.ins().jump(after, &[]);
                        self.b.switch_to_block(after);
                    } else {
                        self.b.ins().store(MEM, v, addrs[slot], 0);
                    }
                }
            }
            PassKind::Reduce => {
                // Every reduction of the pass runs: one branch-free loop body.
                for (j, &r) in self.pass.reductions.iter().enumerate() {
                    let x = self.elem(self.k.reductions[r].input, vector, &mut memo);
                    self.accumulate(&accs[j], x, vector);
                }
            }
        }
    }

    fn accumulate(&mut self, a: &AccVars, x: Value, vector: bool) {
        match a.kind {
            AccKind::Max | AccKind::Min => {
                let var = if vector { a.lo } else { a.tail };
                let acc = self.b.use_var(var);
                let m = self.pick(a.kind, x, acc, vector);
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
            kind => {
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

    /// 1.0 where `mask` holds, else 0.0.
    fn truth(&mut self, mask: Value, vector: bool) -> Value {
        let one = self.fconst(1.0, vector);
        let zero = self.fconst(0.0, vector);
        self.select_mask(mask, one, zero, vector)
    }

    fn nonzero(&mut self, x: Value, vector: bool) -> Value {
        let zero = self.fconst(0.0, vector);
        self.b.ins().fcmp(FloatCC::NotEqual, x, zero)
    }

    /// A C library function applied lane by lane.
    fn libcall(&mut self, name: &str, args: &[Value], vector: bool) -> Value {
        let f = self.libm[name];
        if !vector {
            let call = self.b.ins().call(f, args);
            return self.b.inst_results(call)[0];
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
        out
    }

    /// `min(x, y)` as Rust's `f32::min`: a NaN operand yields the other one.
    fn min_max(&mut self, max: bool, x: Value, y: Value, vector: bool) -> Value {
        let cc = if max {
            FloatCC::GreaterThan
        } else {
            FloatCC::LessThan
        };
        let m = self.b.ins().fcmp(cc, x, y);
        let t = self.select_mask(m, x, y, vector);
        let y_nan = self.b.ins().fcmp(FloatCC::Unordered, y, y);
        self.select_mask(y_nan, x, t, vector)
    }

    fn elem(&mut self, e: EId, vector: bool, memo: &mut HashMap<EId, Value>) -> Value {
        if let Some(v) = memo.get(&e) {
            return *v;
        }
        let v = match self.k.elems[e].clone() {
            Elem::Load(_) => {
                // Every load of the pass was issued up front.
                self.fconst(f32::NAN, vector)
            }
            Elem::Scalar(h) => match self.k.host[h] {
                Host::Const(c) => self.fconst(c as f32, vector),
                _ => {
                    let slot = self.pass.scalars.iter().position(|&s| s == h).unwrap_or(0);
                    let (s, v) = self.slots[slot];
                    if vector {
                        v
                    } else {
                        s
                    }
                }
            },
            Elem::Unary(op, a) => {
                let x = self.elem(a, vector, memo);
                match op {
                    UnOp::Neg => self.b.ins().fneg(x),
                    UnOp::Not => {
                        let z = self.fconst(0.0, vector);
                        let m = self.b.ins().fcmp(FloatCC::Equal, x, z);
                        self.truth(m, vector)
                    }
                }
            }
            Elem::Binary(op, a, c) => {
                let x = self.elem(a, vector, memo);
                let y = self.elem(c, vector, memo);
                match op {
                    BinOp::Add => self.b.ins().fadd(x, y),
                    BinOp::Sub => self.b.ins().fsub(x, y),
                    BinOp::Mul => self.b.ins().fmul(x, y),
                    BinOp::Div => self.b.ins().fdiv(x, y),
                    BinOp::Pow => self.libcall("powf", &[x, y], vector),
                    BinOp::And | BinOp::Or => {
                        let mx = self.nonzero(x, vector);
                        let my = self.nonzero(y, vector);
                        let m = if op == BinOp::And {
                            self.b.ins().band(mx, my)
                        } else {
                            self.b.ins().bor(mx, my)
                        };
                        self.truth(m, vector)
                    }
                    BinOp::Cmp(c) => {
                        let cc = match c {
                            CmpOp::Lt => FloatCC::LessThan,
                            CmpOp::Le => FloatCC::LessThanOrEqual,
                            CmpOp::Gt => FloatCC::GreaterThan,
                            CmpOp::Ge => FloatCC::GreaterThanOrEqual,
                            CmpOp::Eq => FloatCC::Equal,
                            CmpOp::Ne => FloatCC::NotEqual,
                        };
                        let m = self.b.ins().fcmp(cc, x, y);
                        self.truth(m, vector)
                    }
                }
            }
            Elem::Select(c, a, d) => {
                let cv = self.elem(c, vector, memo);
                let x = self.elem(a, vector, memo);
                let y = self.elem(d, vector, memo);
                let m = self.nonzero(cv, vector);
                self.select_mask(m, x, y, vector)
            }
            Elem::Call(f, xs) => {
                let a: Vec<Value> = xs.iter().map(|x| self.elem(*x, vector, memo)).collect();
                self.call(f, &a, vector)
            }
        };
        memo.insert(e, v);
        v
    }

    fn call(&mut self, f: Builtin, a: &[Value], vector: bool) -> Value {
        match f {
            Builtin::Sqrt => self.b.ins().sqrt(a[0]),
            Builtin::Abs => self.b.ins().fabs(a[0]),
            Builtin::Floor => self.b.ins().floor(a[0]),
            Builtin::Ceil => self.b.ins().ceil(a[0]),
            Builtin::Exp => self.libcall("expf", &a[..1], vector),
            Builtin::Log => self.libcall("logf", &a[..1], vector),
            Builtin::Pow => self.libcall("powf", &a[..2], vector),
            Builtin::Cos => self.libcall("cosf", &a[..1], vector),
            Builtin::Sin => self.libcall("sinf", &a[..1], vector),
            Builtin::Tanh => self.libcall("tanhf", &a[..1], vector),
            Builtin::Sign => {
                // x > 0 → 1, x < 0 → −1, else x (0 stays 0, NaN stays NaN).
                let z = self.fconst(0.0, vector);
                let one = self.fconst(1.0, vector);
                let neg = self.fconst(-1.0, vector);
                let lt = self.b.ins().fcmp(FloatCC::LessThan, a[0], z);
                let inner = self.select_mask(lt, neg, a[0], vector);
                let gt = self.b.ins().fcmp(FloatCC::GreaterThan, a[0], z);
                self.select_mask(gt, one, inner, vector)
            }
            Builtin::Min => self.min_max(false, a[0], a[1], vector),
            Builtin::Max => self.min_max(true, a[0], a[1], vector),
            Builtin::Clamp => {
                let lo = self.min_max(true, a[0], a[1], vector);
                self.min_max(false, lo, a[2], vector)
            }
            Builtin::Lerp => {
                // torch: |w| < 0.5 ? a + w(b − a) : b − (b − a)(1 − w)
                let (x, y, w) = (a[0], a[1], a[2]);
                let d = self.b.ins().fsub(y, x);
                let wd = self.b.ins().fmul(w, d);
                let first = self.b.ins().fadd(x, wd);
                let one = self.fconst(1.0, vector);
                let omw = self.b.ins().fsub(one, w);
                let dd = self.b.ins().fmul(d, omw);
                let second = self.b.ins().fsub(y, dd);
                let aw = self.b.ins().fabs(w);
                let half = self.fconst(0.5, vector);
                let m = self.b.ins().fcmp(FloatCC::LessThan, aw, half);
                self.select_mask(m, first, second, vector)
            }
            Builtin::IsFinite => {
                let d = self.b.ins().fsub(a[0], a[0]);
                let z = self.fconst(0.0, vector);
                let m = self.b.ins().fcmp(FloatCC::Equal, d, z);
                self.truth(m, vector)
            }
            Builtin::IsNone => {
                let m = self.b.ins().fcmp(FloatCC::Unordered, a[0], a[0]);
                self.truth(m, vector)
            }
        }
    }
}

/// A kernel's passes as a relocatable object file (symbols `{prefix}{i}`, global), for
/// `anneal export`; it imports `expf`, `logf`, `powf`, `cosf`, `sinf`, `tanhf` (`-lm`).
pub fn object(kernel: &Kernel, prefix: &str) -> Result<Vec<u8>, String> {
    let builder = cranelift_object::ObjectBuilder::new(
        host_isa(true)?,
        prefix.as_bytes().to_vec(),
        default_libcall_names(),
    )
    .map_err(|e| format!("cranelift: {e}"))?;
    let mut module = cranelift_object::ObjectModule::new(builder);
    define_all(&mut module, kernel, prefix, Linkage::Export)?;
    module
        .finish()
        .emit()
        .map_err(|e| format!("cannot write the object file: {e}"))
}
