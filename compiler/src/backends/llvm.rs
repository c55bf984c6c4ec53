//! The LLVM back end (inkwell 0.11, LLVM 14): each pass of a kernel becomes one function
//! with the Cranelift back end's ABI, written as a plain scalar loop and left to LLVM's
//! `default<O3>` pipeline for the host CPU (which vectorizes the map loops to the widest
//! vectors the machine has). Entry points: `compile` (JIT, cached by kernel structure),
//! `object` (an object file for `anneal export --backend llvm`) and `ir` (the optimized
//! IR, `--emit llvm-ir`).
//!
//! The element math is the interpreter's, operation for operation, with no fast-math
//! flags: LLVM may reorder nothing. Reductions add in f64 element by element in order
//! within a call (no reassociation, so their loops stay scalar); one partial per call, as
//! on Cranelift.

use std::collections::HashMap;
use std::time::Instant;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::{Linkage, Module};
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine,
};
use inkwell::types::FloatType;
use inkwell::values::{FloatValue, FunctionValue, IntValue, PointerValue};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate, OptimizationLevel};

use super::{acc_kind, AccKind, Compiled, JitCache};
use crate::ast::{BinOp, CmpOp, UnOp};
use crate::ir::Builtin;
use crate::kernel::{EId, Elem, Host, Kernel, Pass, PassKind};

static CACHE: JitCache = JitCache::new();

/// How many kernels this process has compiled with LLVM (cache hits excluded).
pub fn compiles() -> usize {
    CACHE.compiles()
}

type R<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    format!("llvm: {e}")
}

/// The host TargetMachine (CPU name and features), optimizing aggressively.
fn target_machine(reloc: RelocMode) -> R<TargetMachine> {
    Target::initialize_native(&InitializationConfig::default()).map_err(err)?;
    let triple = TargetMachine::get_default_triple();
    let target = Target::from_triple(&triple).map_err(err)?;
    let cpu = TargetMachine::get_host_cpu_name();
    let features = TargetMachine::get_host_cpu_features();
    target
        .create_target_machine(
            &triple,
            cpu.to_str().unwrap_or("generic"),
            features.to_str().unwrap_or(""),
            OptimizationLevel::Aggressive,
            reloc,
            CodeModel::Default,
        )
        .ok_or_else(|| "llvm: no target machine for this host".to_string())
}

/// Builds every pass of `kernel` into `module` (named `{prefix}{i}`) and runs `default<O3>`
/// with `tm` (kept alive for the whole pass run).
fn build<'c>(
    ctx: &'c Context,
    kernel: &Kernel,
    prefix: &str,
    tm: &TargetMachine,
) -> R<(Module<'c>, Vec<String>)> {
    let module = ctx.create_module("anneal");
    module.set_triple(&tm.get_triple());
    module.set_data_layout(&tm.get_target_data().get_data_layout());
    let cpu = TargetMachine::get_host_cpu_name();
    let features = TargetMachine::get_host_cpu_features();
    let f32t = ctx.f32_type();
    let f64t = ctx.f64_type();
    let i64t = ctx.i64_type();
    let g = AddressSpace::default();
    #[allow(deprecated)]
    let (pf32, pf64) = (f32t.ptr_type(g), f64t.ptr_type(g));
    #[allow(deprecated)]
    let ppf32 = pf32.ptr_type(g);
    let fn_ty = ctx.void_type().fn_type(
        &[
            pf32.into(),
            ppf32.into(),
            i64t.into(),
            i64t.into(),
            pf64.into(),
        ],
        false,
    );
    let unary = f32t.fn_type(&[f32t.into()], false);
    let binary = f32t.fn_type(&[f32t.into(), f32t.into()], false);
    let mut libm = HashMap::new();
    for name in ["expf", "logf", "cosf", "sinf", "tanhf"] {
        libm.insert(
            name,
            module.add_function(name, unary, Some(Linkage::External)),
        );
    }
    libm.insert(
        "powf",
        module.add_function("powf", binary, Some(Linkage::External)),
    );
    let mut names = Vec::new();
    for (i, pass) in kernel.passes.iter().enumerate() {
        let name = format!("{prefix}{i}");
        // The body takes each buffer as its own `noalias` argument (they are distinct
        // allocations), so the vectorizer needs no run-time overlap checks; the exported
        // function with the step ABI loads the pointers and calls it (inlined by O3, the
        // no-alias facts kept as scoped metadata).
        let nb = pass.bufs.len();
        let mut inner_params: Vec<inkwell::types::BasicMetadataTypeEnum> = vec![pf32.into(); nb];
        let tail: [inkwell::types::BasicMetadataTypeEnum; 4] =
            [pf32.into(), i64t.into(), i64t.into(), pf64.into()];
        inner_params.extend(tail);
        let inner_ty = ctx.void_type().fn_type(&inner_params, false);
        let f = module.add_function(&format!("{name}_body"), inner_ty, Some(Linkage::Internal));
        let outer = module.add_function(&name, fn_ty, Some(Linkage::External));
        let noalias = ctx.create_enum_attribute(Attribute::get_named_enum_kind_id("noalias"), 0);
        for k in 0..nb {
            f.add_attribute(AttributeLoc::Param(k as u32), noalias);
        }
        f.add_attribute(
            AttributeLoc::Function,
            ctx.create_enum_attribute(Attribute::get_named_enum_kind_id("alwaysinline"), 0),
        );
        for func in [f, outer] {
            for (k, v) in [
                ("target-cpu", cpu.to_str().unwrap_or("generic")),
                ("target-features", features.to_str().unwrap_or("")),
            ] {
                func.add_attribute(AttributeLoc::Function, ctx.create_string_attribute(k, v));
            }
        }
        wrapper(ctx, outer, f, nb)?;
        let mut g = Gen {
            ctx,
            module: &module,
            b: ctx.create_builder(),
            k: kernel,
            pass,
            f,
            f32t,
            f64t,
            libm: &libm,
            bases: Vec::new(),
            slots: Vec::new(),
        };
        g.emit()?;
        names.push(name);
    }
    module.verify().map_err(|e| err(e.to_string()))?;
    module
        .run_passes("default<O3>", tm, PassBuilderOptions::create())
        .map_err(|e| err(e.to_string()))?;
    Ok((module, names))
}

/// Compiles every pass of `kernel` (or reuses the code of a kernel of the same structure).
pub fn compile(kernel: &Kernel) -> R<Compiled> {
    CACHE.get_or_compile(kernel, jit)
}

/// JIT-compiles the passes: their addresses and the time taken (ms).
fn jit(kernel: &Kernel) -> R<(Vec<usize>, f64)> {
    let t0 = Instant::now();
    // The context, module and engine live as long as the process: the code must outlive
    // every step that holds its addresses.
    let ctx: &'static Context = Box::leak(Box::new(Context::create()));
    let tm = target_machine(RelocMode::Default)?;
    let (module, names) = build(ctx, kernel, "pass", &tm)?;
    let engine = module
        .create_jit_execution_engine(OptimizationLevel::Aggressive)
        .map_err(|e| err(e.to_string()))?;
    let mut addrs = Vec::new();
    for n in &names {
        addrs.push(engine.get_function_address(n).map_err(err)?);
    }
    std::mem::forget(engine);
    std::mem::forget(module);
    drop(tm);
    Ok((addrs, t0.elapsed().as_secs_f64() * 1e3))
}

/// A kernel's passes as a relocatable object file (symbols `{prefix}{i}`), the same ABI
/// as the Cranelift object; it imports the C library's `expf`, `logf`, `powf`, `cosf`,
/// `sinf`, `tanhf` (`-lm`).
pub fn object(kernel: &Kernel, prefix: &str) -> R<Vec<u8>> {
    let ctx = Context::create();
    let tm = target_machine(RelocMode::PIC)?;
    let (module, _) = build(&ctx, kernel, prefix, &tm)?;
    let buf = tm
        .write_to_memory_buffer(&module, FileType::Object)
        .map_err(|e| err(e.to_string()))?;
    Ok(buf.as_slice().to_vec())
}

/// The optimized LLVM IR of a kernel's passes.
pub fn ir(kernel: &Kernel) -> R<String> {
    let ctx = Context::create();
    let tm = target_machine(RelocMode::Default)?;
    let (module, _) = build(&ctx, kernel, "pass", &tm)?;
    Ok(module.print_to_string().to_string())
}

/// The exported function with the step ABI `(scalars, bufs, start, end, partials)`: loads
/// each buffer pointer and calls `body` with them as separate arguments.
fn wrapper<'c>(
    ctx: &'c Context,
    outer: FunctionValue<'c>,
    body: FunctionValue<'c>,
    nb: usize,
) -> R<()> {
    let b = ctx.create_builder();
    let entry = ctx.append_basic_block(outer, "entry");
    b.position_at_end(entry);
    let p = |i: u32| outer.get_nth_param(i).ok_or("llvm: missing parameter");
    let bufs = p(1)?.into_pointer_value();
    let mut args: Vec<inkwell::values::BasicMetadataValueEnum> = Vec::new();
    for k in 0..nb {
        let at = unsafe {
            b.build_gep(bufs, &[ctx.i64_type().const_int(k as u64, false)], "bufp")
                .map_err(err)?
        };
        args.push(b.build_load(at, "base").map_err(err)?.into());
    }
    for i in [0, 2, 3, 4] {
        args.push(p(i)?.into());
    }
    b.build_call(body, &args, "").map_err(err)?;
    b.build_return(None).map_err(err)?;
    Ok(())
}

struct Gen<'a, 'c> {
    ctx: &'c Context,
    module: &'a Module<'c>,
    b: Builder<'c>,
    k: &'a Kernel,
    pass: &'a Pass,
    f: FunctionValue<'c>,
    f32t: FloatType<'c>,
    f64t: FloatType<'c>,
    libm: &'a HashMap<&'static str, FunctionValue<'c>>,
    bases: Vec<PointerValue<'c>>,
    slots: Vec<FloatValue<'c>>,
}

impl<'c> Gen<'_, 'c> {
    fn emit(&mut self) -> R<()> {
        let ctx = self.ctx;
        let i64t = ctx.i64_type();
        let entry = ctx.append_basic_block(self.f, "entry");
        let head = ctx.append_basic_block(self.f, "head");
        let body = ctx.append_basic_block(self.f, "body");
        let exit = ctx.append_basic_block(self.f, "exit");
        self.b.position_at_end(entry);
        // (buffers..., scalars, start, end, partials)
        let nb = self.pass.bufs.len() as u32;
        let p = |i: u32| self.f.get_nth_param(i).ok_or("llvm: missing parameter");
        for k in 0..nb {
            self.bases.push(p(k)?.into_pointer_value());
        }
        let scalars = p(nb)?.into_pointer_value();
        let start = p(nb + 1)?.into_int_value();
        let end = p(nb + 2)?.into_int_value();
        let partials = p(nb + 3)?.into_pointer_value();
        let nslots = self.pass.scalars.len() + usize::from(self.pass.guarded);
        for k in 0..nslots {
            let at = unsafe {
                self.b
                    .build_gep(scalars, &[i64t.const_int(k as u64, false)], "slotp")
                    .map_err(err)?
            };
            let v = self.b.build_load(at, "slot").map_err(err)?;
            self.slots.push(v.into_float_value());
        }
        // Accumulators in stack slots (promoted to registers by O3), one per reduction.
        let mut accs = Vec::new();
        for &r in &self.pass.reductions {
            let kind = acc_kind(self.k.reductions[r].op);
            let (ty, init) = match kind {
                AccKind::Max => (self.f32t, f64::NEG_INFINITY),
                AccKind::Min => (self.f32t, f64::INFINITY),
                AccKind::Finite => (self.f32t, 0.0),
                _ => (self.f64t, 0.0),
            };
            let slot = self.b.build_alloca(ty, "acc").map_err(err)?;
            self.b
                .build_store(slot, ty.const_float(init))
                .map_err(err)?;
            accs.push((kind, slot));
        }
        let iv = self.b.build_alloca(i64t, "i").map_err(err)?;
        self.b.build_store(iv, start).map_err(err)?;
        self.b.build_unconditional_branch(head).map_err(err)?;

        self.b.position_at_end(head);
        let i = self.b.build_load(iv, "i").map_err(err)?.into_int_value();
        let more = self
            .b
            .build_int_compare(IntPredicate::ULT, i, end, "more")
            .map_err(err)?;
        self.b
            .build_conditional_branch(more, body, exit)
            .map_err(err)?;

        self.b.position_at_end(body);
        self.body(i, &accs)?;
        let next = self
            .b
            .build_int_add(i, i64t.const_int(1, false), "next")
            .map_err(err)?;
        self.b.build_store(iv, next).map_err(err)?;
        self.b.build_unconditional_branch(head).map_err(err)?;

        self.b.position_at_end(exit);
        for (j, (kind, slot)) in accs.iter().enumerate() {
            let v = self
                .b
                .build_load(*slot, "acc")
                .map_err(err)?
                .into_float_value();
            let v = match kind {
                AccKind::Max | AccKind::Min | AccKind::Finite => {
                    self.b.build_float_ext(v, self.f64t, "wide").map_err(err)?
                }
                _ => v,
            };
            let at = unsafe {
                self.b
                    .build_gep(partials, &[i64t.const_int(j as u64, false)], "out")
                    .map_err(err)?
            };
            self.b.build_store(at, v).map_err(err)?;
        }
        self.b.build_return(None).map_err(err)?;
        Ok(())
    }

    fn body(&mut self, i: IntValue<'c>, accs: &[(AccKind, PointerValue<'c>)]) -> R<()> {
        let mut memo: HashMap<EId, FloatValue<'c>> = HashMap::new();
        let mut addrs = Vec::new();
        for base in self.bases.clone() {
            addrs.push(unsafe { self.b.build_gep(base, &[i], "at").map_err(err)? });
        }
        for (e, n) in self.k.elems.iter().enumerate() {
            if let Elem::Load(buf) = n {
                if self.pass.reads.contains(buf) {
                    let slot = self.pass.slot(*buf);
                    let v = self.b.build_load(addrs[slot], "x").map_err(err)?;
                    memo.insert(e, v.into_float_value());
                }
            }
        }
        match self.pass.kind {
            PassKind::Reduce => {
                for (j, &r) in self.pass.reductions.iter().enumerate() {
                    let x = self.elem(self.k.reductions[r].input, &mut memo)?;
                    self.accumulate(accs[j], x)?;
                }
            }
            PassKind::Map | PassKind::SkipMap | PassKind::Prepare => {
                let mut values = Vec::new();
                for &s in &self.pass.stores {
                    values.push(self.elem(self.k.stores[s].value, &mut memo)?);
                }
                for (&s, v) in self.pass.stores.iter().zip(values) {
                    let store = &self.k.stores[s];
                    let slot = self.pass.slot(store.buf);
                    if self.pass.guarded {
                        let active = self.slots[self.pass.scalars.len()];
                        let stage = self.f32t.const_float(store.stage as f64);
                        let live = self
                            .b
                            .build_float_compare(FloatPredicate::OLT, stage, active, "live")
                            .map_err(err)?;
                        let yes = self.ctx.append_basic_block(self.f, "store");
                        let after = self.ctx.append_basic_block(self.f, "stored");
                        self.b
                            .build_conditional_branch(live, yes, after)
                            .map_err(err)?;
                        self.b.position_at_end(yes);
                        self.b.build_store(addrs[slot], v).map_err(err)?;
                        self.b.build_unconditional_branch(after).map_err(err)?;
                        self.b.position_at_end(after);
                    } else {
                        self.b.build_store(addrs[slot], v).map_err(err)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn accumulate(
        &mut self,
        (kind, slot): (AccKind, PointerValue<'c>),
        x: FloatValue<'c>,
    ) -> R<()> {
        let acc = self
            .b
            .build_load(slot, "acc")
            .map_err(err)?
            .into_float_value();
        let new = match kind {
            AccKind::Max | AccKind::Min => {
                let pred = if kind == AccKind::Max {
                    FloatPredicate::OGT
                } else {
                    FloatPredicate::OLT
                };
                // A NaN x leaves the running value (the comparison is false).
                let take = self
                    .b
                    .build_float_compare(pred, x, acc, "take")
                    .map_err(err)?;
                self.b
                    .build_select(take, x, acc, "m")
                    .map_err(err)?
                    .into_float_value()
            }
            AccKind::Finite => {
                let z = self
                    .b
                    .build_float_mul(x, self.f32t.const_float(0.0), "z")
                    .map_err(err)?;
                self.b.build_float_add(acc, z, "s").map_err(err)?
            }
            AccKind::Sum | AccKind::SumSq => {
                let w = self.b.build_float_ext(x, self.f64t, "w").map_err(err)?;
                let w = if kind == AccKind::SumSq {
                    self.b.build_float_mul(w, w, "sq").map_err(err)?
                } else {
                    w
                };
                self.b.build_float_add(acc, w, "s").map_err(err)?
            }
        };
        self.b.build_store(slot, new).map_err(err)?;
        Ok(())
    }

    fn c(&self, x: f64) -> FloatValue<'c> {
        self.f32t.const_float(x)
    }

    /// 1.0 where `cond` holds, else 0.0.
    fn truth(&self, cond: IntValue<'c>) -> R<FloatValue<'c>> {
        Ok(self
            .b
            .build_select(cond, self.c(1.0), self.c(0.0), "t")
            .map_err(err)?
            .into_float_value())
    }

    fn cmp(&self, p: FloatPredicate, x: FloatValue<'c>, y: FloatValue<'c>) -> R<IntValue<'c>> {
        self.b.build_float_compare(p, x, y, "c").map_err(err)
    }

    fn select(&self, c: IntValue<'c>, x: FloatValue<'c>, y: FloatValue<'c>) -> R<FloatValue<'c>> {
        Ok(self
            .b
            .build_select(c, x, y, "s")
            .map_err(err)?
            .into_float_value())
    }

    fn call(&self, name: &str, args: &[FloatValue<'c>]) -> R<FloatValue<'c>> {
        let f = self.libm[name];
        let a: Vec<_> = args.iter().map(|x| (*x).into()).collect();
        self.b
            .build_call(f, &a, "r")
            .map_err(err)?
            .try_as_basic_value()
            .basic()
            .map(|v| v.into_float_value())
            .ok_or_else(|| format!("llvm: `{name}` returned nothing"))
    }

    fn intrinsic(&self, name: &str, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        let f = Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, &[self.f32t.into()]))
            .ok_or_else(|| format!("llvm: no intrinsic {name}"))?;
        self.b
            .build_call(f, &[x.into()], "r")
            .map_err(err)?
            .try_as_basic_value()
            .basic()
            .map(|v| v.into_float_value())
            .ok_or_else(|| format!("llvm: `{name}` returned nothing"))
    }

    /// `f32::min`/`max`: a NaN operand yields the other one.
    fn min_max(&self, max: bool, x: FloatValue<'c>, y: FloatValue<'c>) -> R<FloatValue<'c>> {
        let p = if max {
            FloatPredicate::OGT
        } else {
            FloatPredicate::OLT
        };
        let t = self.select(self.cmp(p, x, y)?, x, y)?;
        let y_nan = self.cmp(FloatPredicate::UNO, y, y)?;
        self.select(y_nan, x, t)
    }

    fn elem(&mut self, e: EId, memo: &mut HashMap<EId, FloatValue<'c>>) -> R<FloatValue<'c>> {
        if let Some(v) = memo.get(&e) {
            return Ok(*v);
        }
        let v = match self.k.elems[e].clone() {
            Elem::Load(_) => self.c(f64::NAN),
            Elem::Scalar(h) => match self.k.host[h] {
                Host::Const(c) => self.c(f64::from(c as f32)),
                _ => {
                    let slot = self.pass.scalars.iter().position(|&s| s == h).unwrap_or(0);
                    self.slots[slot]
                }
            },
            Elem::Unary(op, a) => {
                let x = self.elem(a, memo)?;
                match op {
                    UnOp::Neg => self.b.build_float_neg(x, "n").map_err(err)?,
                    UnOp::Not => {
                        let c = self.cmp(FloatPredicate::OEQ, x, self.c(0.0))?;
                        self.truth(c)?
                    }
                }
            }
            Elem::Binary(op, a, c) => {
                let x = self.elem(a, memo)?;
                let y = self.elem(c, memo)?;
                let b = &self.b;
                match op {
                    BinOp::Add => b.build_float_add(x, y, "a").map_err(err)?,
                    BinOp::Sub => b.build_float_sub(x, y, "s").map_err(err)?,
                    BinOp::Mul => b.build_float_mul(x, y, "m").map_err(err)?,
                    BinOp::Div => b.build_float_div(x, y, "d").map_err(err)?,
                    BinOp::Pow => self.call("powf", &[x, y])?,
                    BinOp::And | BinOp::Or => {
                        let mx = self.cmp(FloatPredicate::UNE, x, self.c(0.0))?;
                        let my = self.cmp(FloatPredicate::UNE, y, self.c(0.0))?;
                        let m = if op == BinOp::And {
                            self.b.build_and(mx, my, "and").map_err(err)?
                        } else {
                            self.b.build_or(mx, my, "or").map_err(err)?
                        };
                        self.truth(m)?
                    }
                    BinOp::Cmp(c) => {
                        let p = match c {
                            CmpOp::Lt => FloatPredicate::OLT,
                            CmpOp::Le => FloatPredicate::OLE,
                            CmpOp::Gt => FloatPredicate::OGT,
                            CmpOp::Ge => FloatPredicate::OGE,
                            CmpOp::Eq => FloatPredicate::OEQ,
                            CmpOp::Ne => FloatPredicate::UNE,
                        };
                        let m = self.cmp(p, x, y)?;
                        self.truth(m)?
                    }
                }
            }
            Elem::Select(c, a, d) => {
                let cv = self.elem(c, memo)?;
                let x = self.elem(a, memo)?;
                let y = self.elem(d, memo)?;
                let m = self.cmp(FloatPredicate::UNE, cv, self.c(0.0))?;
                self.select(m, x, y)?
            }
            Elem::Call(f, xs) => {
                let mut a = Vec::new();
                for x in xs {
                    a.push(self.elem(x, memo)?);
                }
                self.builtin(f, &a)?
            }
        };
        memo.insert(e, v);
        Ok(v)
    }

    fn builtin(&mut self, f: Builtin, a: &[FloatValue<'c>]) -> R<FloatValue<'c>> {
        Ok(match f {
            Builtin::Sqrt => self.intrinsic("llvm.sqrt", a[0])?,
            Builtin::Abs => self.intrinsic("llvm.fabs", a[0])?,
            Builtin::Floor => self.intrinsic("llvm.floor", a[0])?,
            Builtin::Ceil => self.intrinsic("llvm.ceil", a[0])?,
            Builtin::Exp => self.call("expf", &a[..1])?,
            Builtin::Log => self.call("logf", &a[..1])?,
            Builtin::Pow => self.call("powf", &a[..2])?,
            Builtin::Cos => self.call("cosf", &a[..1])?,
            Builtin::Sin => self.call("sinf", &a[..1])?,
            Builtin::Tanh => self.call("tanhf", &a[..1])?,
            Builtin::Sign => {
                let lt = self.cmp(FloatPredicate::OLT, a[0], self.c(0.0))?;
                let inner = self.select(lt, self.c(-1.0), a[0])?;
                let gt = self.cmp(FloatPredicate::OGT, a[0], self.c(0.0))?;
                self.select(gt, self.c(1.0), inner)?
            }
            Builtin::Min => self.min_max(false, a[0], a[1])?,
            Builtin::Max => self.min_max(true, a[0], a[1])?,
            Builtin::Clamp => {
                let lo = self.min_max(true, a[0], a[1])?;
                self.min_max(false, lo, a[2])?
            }
            Builtin::Lerp => {
                let (x, y, w) = (a[0], a[1], a[2]);
                let b = &self.b;
                let d = b.build_float_sub(y, x, "d").map_err(err)?;
                let wd = b.build_float_mul(w, d, "wd").map_err(err)?;
                let first = b.build_float_add(x, wd, "first").map_err(err)?;
                let omw = b.build_float_sub(self.c(1.0), w, "omw").map_err(err)?;
                let dd = b.build_float_mul(d, omw, "dd").map_err(err)?;
                let second = b.build_float_sub(y, dd, "second").map_err(err)?;
                let aw = self.intrinsic("llvm.fabs", w)?;
                let m = self.cmp(FloatPredicate::OLT, aw, self.c(0.5))?;
                self.select(m, first, second)?
            }
            Builtin::IsFinite => {
                let d = self.b.build_float_sub(a[0], a[0], "d").map_err(err)?;
                let m = self.cmp(FloatPredicate::OEQ, d, self.c(0.0))?;
                self.truth(m)?
            }
            Builtin::IsNone => {
                let m = self.cmp(FloatPredicate::UNO, a[0], a[0])?;
                self.truth(m)?
            }
        })
    }
}
