//! The LLVM back end (inkwell 0.11, LLVM 14): an `emit::Emitter` that turns each legalized
//! pass into one function with the Cranelift back end's ABI, a plain scalar loop
//! (`widths() = [1]`) left to LLVM's
//! `default<O3>` pipeline for the host CPU (which vectorizes the map loops to the widest
//! vectors the machine has). Entry points: `compile` (JIT, cached by kernel structure),
//! `object` (an object file for `anneal export --backend llvm`) and `ir` (the optimized
//! IR, `--emit llvm-ir`).
//!
//! The element math is the interpreter's, operation for operation, with no fast-math
//! flags: LLVM may reorder nothing. Reductions add in f64 element by element in order
//! within a call (no reassociation, so their loops stay scalar); one partial per call, as
//! on Cranelift.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::time::Instant;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::basic_block::BasicBlock;
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

use super::emit::{emit_pass, Emitter};
use super::{Compiled, JitCache};
use crate::ast::CmpOp;
use crate::kernel::legalize::{legalize, AccKind, Binary, Libm, PassCode, Unary};
use crate::kernel::Kernel;

static CACHE: JitCache = JitCache::new();

/// How many kernels this process has compiled with LLVM (cache hits excluded).
pub fn compiles() -> usize {
    CACHE.compiles()
}

type R<T> = Result<T>;

/// An LLVM call that failed on code anneal built: a defect of the emitter.
fn err(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("llvm: {e}"))
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
        .ok_or_else(|| Error::user("llvm: no target machine for this host"))
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
    let codes = legalize(kernel)?;
    for (i, code) in codes.iter().enumerate() {
        let name = format!("{prefix}{i}");
        // The body takes each buffer as its own `noalias` argument (they are distinct
        // allocations), so the vectorizer needs no run-time overlap checks; the exported
        // function with the step ABI loads the pointers and calls it (inlined by O3, the
        // no-alias facts kept as scoped metadata).
        let nb = code.bufs;
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
            f,
            f32t,
            f64t,
            libm: &libm,
            bases: Vec::new(),
            slots: Vec::new(),
            end: None,
            iv: None,
            i: None,
            addrs: Vec::new(),
            open_loop: None,
            after: Vec::new(),
        };
        emit_pass(&mut g, code)?;
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
    let p = |i: u32| {
        outer
            .get_nth_param(i)
            .ok_or_else(|| Error::internal("llvm: missing parameter"))
    };
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

/// The LLVM emitter of one pass body: one element per iteration, left to O3 to vectorize.
struct Gen<'a, 'c> {
    ctx: &'c Context,
    module: &'a Module<'c>,
    b: Builder<'c>,
    f: FunctionValue<'c>,
    f32t: FloatType<'c>,
    f64t: FloatType<'c>,
    libm: &'a HashMap<&'static str, FunctionValue<'c>>,
    bases: Vec<PointerValue<'c>>,
    slots: Vec<FloatValue<'c>>,
    /// The body's arguments after the buffers: end, partials.
    end: Option<(IntValue<'c>, PointerValue<'c>)>,
    /// The element index's stack slot, this iteration's index and addresses.
    iv: Option<PointerValue<'c>>,
    i: Option<IntValue<'c>>,
    addrs: Vec<PointerValue<'c>>,
    /// The open loop's (head, exit) and the open guard's continuation.
    open_loop: Option<(BasicBlock<'c>, BasicBlock<'c>)>,
    after: Vec<BasicBlock<'c>>,
}

impl<'c> Gen<'_, 'c> {
    fn c(&self, x: f64) -> FloatValue<'c> {
        self.f32t.const_float(x)
    }

    fn cmp(&self, p: FloatPredicate, x: FloatValue<'c>, y: FloatValue<'c>) -> R<IntValue<'c>> {
        self.b.build_float_compare(p, x, y, "c").map_err(err)
    }

    fn call(&self, name: &str, args: &[FloatValue<'c>]) -> R<FloatValue<'c>> {
        let f = *self
            .libm
            .get(name)
            .ok_or_else(|| Error::internal(format!("`{name}` is not declared")))?;
        let a: Vec<_> = args.iter().map(|x| (*x).into()).collect();
        self.b
            .build_call(f, &a, "r")
            .map_err(err)?
            .try_as_basic_value()
            .basic()
            .map(|v| v.into_float_value())
            .ok_or_else(|| Error::internal(format!("llvm: `{name}` returned nothing")))
    }

    fn intrinsic(&self, name: &str, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        let f = Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, &[self.f32t.into()]))
            .ok_or_else(|| Error::internal(format!("llvm: no intrinsic {name}")))?;
        self.b
            .build_call(f, &[x.into()], "r")
            .map_err(err)?
            .try_as_basic_value()
            .basic()
            .map(|v| v.into_float_value())
            .ok_or_else(|| Error::internal(format!("llvm: `{name}` returned nothing")))
    }

    fn args(&self) -> R<(IntValue<'c>, PointerValue<'c>)> {
        self.end
            .ok_or_else(|| Error::internal("code before the function's entry"))
    }
}

impl<'c> Emitter for Gen<'_, 'c> {
    type Value = FloatValue<'c>;
    type Mask = IntValue<'c>;
    type Acc = PointerValue<'c>;

    fn widths(&self) -> &'static [usize] {
        &[1]
    }

    fn begin(&mut self, code: &PassCode) -> R<()> {
        let i64t = self.ctx.i64_type();
        let entry = self.ctx.append_basic_block(self.f, "entry");
        self.b.position_at_end(entry);
        // (buffers..., scalars, start, end, partials)
        let nb = code.bufs as u32;
        let p = |i: u32| {
            self.f
                .get_nth_param(i)
                .ok_or_else(|| Error::internal("llvm: missing parameter"))
        };
        for k in 0..nb {
            self.bases.push(p(k)?.into_pointer_value());
        }
        let scalars = p(nb)?.into_pointer_value();
        let start = p(nb + 1)?.into_int_value();
        let end = p(nb + 2)?.into_int_value();
        let partials = p(nb + 3)?.into_pointer_value();
        for k in 0..code.slots {
            let at = unsafe {
                self.b
                    .build_gep(scalars, &[i64t.const_int(k as u64, false)], "slotp")
                    .map_err(err)?
            };
            let v = self.b.build_load(at, "slot").map_err(err)?;
            self.slots.push(v.into_float_value());
        }
        let iv = self.b.build_alloca(i64t, "i").map_err(err)?;
        self.b.build_store(iv, start).map_err(err)?;
        self.iv = Some(iv);
        self.end = Some((end, partials));
        Ok(())
    }

    fn acc_new(&mut self, kind: AccKind) -> R<PointerValue<'c>> {
        // A stack slot per accumulator, promoted to a register by O3.
        let (ty, init) = match kind {
            AccKind::Max => (self.f32t, f64::NEG_INFINITY),
            AccKind::Min => (self.f32t, f64::INFINITY),
            AccKind::Finite => (self.f32t, 0.0),
            AccKind::Sum | AccKind::SumSq => (self.f64t, 0.0),
        };
        let slot = self.b.build_alloca(ty, "acc").map_err(err)?;
        self.b
            .build_store(slot, ty.const_float(init))
            .map_err(err)?;
        Ok(slot)
    }

    fn loop_begin(&mut self, width: usize) -> R<()> {
        if width != 1 {
            return Err(Error::internal(format!(
                "LLVM loops take one element, not {width}"
            )));
        }
        let (end, _) = self.args()?;
        let iv = self.iv.ok_or_else(|| Error::internal("no index"))?;
        let head = self.ctx.append_basic_block(self.f, "head");
        let body = self.ctx.append_basic_block(self.f, "body");
        let exit = self.ctx.append_basic_block(self.f, "exit");
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
        self.addrs.clear();
        for base in self.bases.clone() {
            self.addrs
                .push(unsafe { self.b.build_gep(base, &[i], "at").map_err(err)? });
        }
        self.i = Some(i);
        self.open_loop = Some((head, exit));
        Ok(())
    }

    fn loop_end(&mut self, _width: usize) -> R<()> {
        let (head, exit) = self
            .open_loop
            .take()
            .ok_or_else(|| Error::internal("a loop closed twice"))?;
        let (i, iv) = self
            .i
            .zip(self.iv)
            .ok_or_else(|| Error::internal("no index"))?;
        let next = self
            .b
            .build_int_add(i, self.ctx.i64_type().const_int(1, false), "next")
            .map_err(err)?;
        self.b.build_store(iv, next).map_err(err)?;
        self.b.build_unconditional_branch(head).map_err(err)?;
        self.b.position_at_end(exit);
        Ok(())
    }

    fn acc_finish(&mut self, j: usize, kind: AccKind, slot: &PointerValue<'c>) -> R<()> {
        let (_, partials) = self.args()?;
        let v = self
            .b
            .build_load(*slot, "acc")
            .map_err(err)?
            .into_float_value();
        let v = match kind {
            AccKind::Max | AccKind::Min | AccKind::Finite => {
                self.b.build_float_ext(v, self.f64t, "wide").map_err(err)?
            }
            AccKind::Sum | AccKind::SumSq => v,
        };
        let at = unsafe {
            self.b
                .build_gep(
                    partials,
                    &[self.ctx.i64_type().const_int(j as u64, false)],
                    "out",
                )
                .map_err(err)?
        };
        self.b.build_store(at, v).map_err(err)?;
        Ok(())
    }

    fn end(&mut self) -> R<()> {
        self.b.build_return(None).map_err(err)?;
        Ok(())
    }

    fn load(&mut self, buf: usize) -> R<FloatValue<'c>> {
        let v = self.b.build_load(self.addrs[buf], "x").map_err(err)?;
        Ok(v.into_float_value())
    }

    fn store(&mut self, buf: usize, value: FloatValue<'c>) -> R<()> {
        self.b.build_store(self.addrs[buf], value).map_err(err)?;
        Ok(())
    }

    fn scalar(&mut self, slot: usize) -> R<FloatValue<'c>> {
        Ok(self.slots[slot])
    }

    fn stage_live(&mut self, stage: usize, slot: usize) -> R<IntValue<'c>> {
        let stage = self.f32t.const_float(stage as f64);
        self.cmp(FloatPredicate::OLT, stage, self.slots[slot])
    }

    fn begin_if(&mut self, live: IntValue<'c>) -> R<()> {
        let yes = self.ctx.append_basic_block(self.f, "store");
        let after = self.ctx.append_basic_block(self.f, "stored");
        self.b
            .build_conditional_branch(live, yes, after)
            .map_err(err)?;
        self.b.position_at_end(yes);
        self.after.push(after);
        Ok(())
    }

    fn end_if(&mut self) -> R<()> {
        let after = self
            .after
            .pop()
            .ok_or_else(|| Error::internal("a guard closed twice"))?;
        self.b.build_unconditional_branch(after).map_err(err)?;
        self.b.position_at_end(after);
        Ok(())
    }

    fn accumulate(&mut self, kind: AccKind, slot: &PointerValue<'c>, x: FloatValue<'c>) -> R<()> {
        let acc = self
            .b
            .build_load(*slot, "acc")
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
                let take = self.cmp(pred, x, acc)?;
                self.b
                    .build_select(take, x, acc, "m")
                    .map_err(err)?
                    .into_float_value()
            }
            AccKind::Finite => {
                let z = self.b.build_float_mul(x, self.c(0.0), "z").map_err(err)?;
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
        self.b.build_store(*slot, new).map_err(err)?;
        Ok(())
    }

    fn constant(&mut self, x: f32) -> R<FloatValue<'c>> {
        Ok(self.c(f64::from(x)))
    }

    fn unary(&mut self, op: Unary, x: FloatValue<'c>) -> R<FloatValue<'c>> {
        match op {
            Unary::Neg => self.b.build_float_neg(x, "n").map_err(err),
            Unary::Sqrt => self.intrinsic("llvm.sqrt", x),
            Unary::Abs => self.intrinsic("llvm.fabs", x),
            Unary::Floor => self.intrinsic("llvm.floor", x),
            Unary::Ceil => self.intrinsic("llvm.ceil", x),
        }
    }

    fn binary(&mut self, op: Binary, x: FloatValue<'c>, y: FloatValue<'c>) -> R<FloatValue<'c>> {
        let b = &self.b;
        match op {
            Binary::Add => b.build_float_add(x, y, "a"),
            Binary::Sub => b.build_float_sub(x, y, "s"),
            Binary::Mul => b.build_float_mul(x, y, "m"),
            Binary::Div => b.build_float_div(x, y, "d"),
        }
        .map_err(err)
    }

    fn libm(&mut self, f: Libm, args: &[FloatValue<'c>]) -> R<FloatValue<'c>> {
        self.call(f.c_name(), args)
    }

    fn compare(&mut self, op: CmpOp, x: FloatValue<'c>, y: FloatValue<'c>) -> R<IntValue<'c>> {
        let p = match op {
            CmpOp::Lt => FloatPredicate::OLT,
            CmpOp::Le => FloatPredicate::OLE,
            CmpOp::Gt => FloatPredicate::OGT,
            CmpOp::Ge => FloatPredicate::OGE,
            CmpOp::Eq => FloatPredicate::OEQ,
            CmpOp::Ne => FloatPredicate::UNE,
        };
        self.cmp(p, x, y)
    }

    fn is_nan(&mut self, x: FloatValue<'c>) -> R<IntValue<'c>> {
        self.cmp(FloatPredicate::UNO, x, x)
    }

    fn is_finite(&mut self, x: FloatValue<'c>) -> R<IntValue<'c>> {
        // x − x is 0 exactly when x is finite (NaN for ±∞ and NaN).
        let d = self.b.build_float_sub(x, x, "d").map_err(err)?;
        self.cmp(FloatPredicate::OEQ, d, self.c(0.0))
    }

    fn and(&mut self, x: IntValue<'c>, y: IntValue<'c>) -> R<IntValue<'c>> {
        self.b.build_and(x, y, "and").map_err(err)
    }

    fn or(&mut self, x: IntValue<'c>, y: IntValue<'c>) -> R<IntValue<'c>> {
        self.b.build_or(x, y, "or").map_err(err)
    }

    fn select(
        &mut self,
        m: IntValue<'c>,
        x: FloatValue<'c>,
        y: FloatValue<'c>,
    ) -> R<FloatValue<'c>> {
        Ok(self
            .b
            .build_select(m, x, y, "s")
            .map_err(err)?
            .into_float_value())
    }
}
