//! The WGSL writer: one compute shader per pass of a fused kernel, for the wgpu executor
//! (`backends::gpu`) and for `anneal export --target wgsl`. Entry point: `shaders`.
//!
//! Each shader handles one element per invocation (a reduction: `REDUCE_ELEMS`),
//! `WORKGROUP` invocations per workgroup, over one tensor (or one segment of a tensor too big for a single binding). Binding 0
//! is the uniform `Scalars` block: the element count, the dispatch's x extent (workgroups
//! beyond 65,535 go to y), then the pass's scalar slots, so a new learning rate is a
//! buffer write, never a new pipeline. Bindings 1.. are the pass's buffers in
//! `Pass::bufs` order; a reduction pass has one more, its partial results.
//!
//! A reduction is a tree in workgroup memory, in a fixed order (so results do not depend
//! on scheduling): each workgroup writes one partial per reduction, and the host combines
//! the partials in workgroup order in f64, as the CPU back ends combine their chunks.
//!
//! WGSL lets implementations assume no NaN or infinity (Mesa folds `x * 0.0` to 0), so
//! every NaN and finiteness test here reads the bits (`bitcast<u32>`), never a float
//! comparison, and non-finite constants are written as bit patterns.

use crate::error::{Error, Result};
use std::fmt::Write as _;

use crate::ir::{Dtype, ReduceOp};
use crate::kernel::legalize::{legalize, AccKind, Libm, Op, OpId, PassCode, Prim, Unary};
use crate::kernel::{Buf, Kernel, PassKind};

mod manifest;
pub use manifest::{manifest, FORMAT};

/// Invocations per workgroup.
pub const WORKGROUP: u32 = 256;

/// Elements each invocation of a reduction pass accumulates before the tree: fewer
/// workgroups, partials and barrier rounds per element (barriers are what a software
/// rasterizer pays most for; a GPU gains fewer partials to combine).
pub const REDUCE_ELEMS: u32 = 8;

/// Workgroups per dispatch dimension (WebGPU's guaranteed limit).
pub const MAX_GROUPS_X: u32 = 65_535;

/// Bytes of the uniform block before the scalar slots: `n`, `groups_x` and padding.
pub const SCALARS_HEADER: usize = 16;

/// One pass as a WGSL module, with what a host needs to bind and dispatch it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shader {
    pub pass: usize,
    pub kind: PassKind,
    pub source: String,
    /// Storage bindings 1..=bufs.len(), in order.
    pub bufs: Vec<Buf>,
    /// Which of `bufs` the pass writes (bound read-write; the rest read-only).
    pub writes: Vec<bool>,
    /// f32 slots after the header: the pass's scalars, then the active-stage count when
    /// the pass is guarded.
    pub slots: usize,
    /// Per reduction of the pass, how its partials combine; the partials binding is
    /// `bufs.len() + 1`, laid out `[workgroup][reduction]`.
    pub reductions: Vec<ReduceOp>,
    /// Elements one workgroup covers: `WORKGROUP`, times `REDUCE_ELEMS` for a reduction.
    pub per_group: usize,
    /// A map pass that also writes the updated parameters in this half type, two per
    /// u32 (element 2j in the low 16 bits), at binding `bufs.len() + 1`: the weights a
    /// mixed-precision model computes with, rounded to nearest even.
    pub packed: Option<Dtype>,
}

impl Shader {
    /// Bytes of the uniform block (a multiple of 16, as uniform arrays of vec4 need).
    pub fn uniform_bytes(&self) -> usize {
        SCALARS_HEADER + 16 * self.slots.div_ceil(4).max(1)
    }

    /// The binding of the partial results (reduction passes).
    pub fn partials_binding(&self) -> u32 {
        self.bufs.len() as u32 + 1
    }
}

/// The dispatch for `n` elements, `per_group` per workgroup: (x, y) workgroups, x at
/// most `MAX_GROUPS_X`.
pub fn dispatch(n: usize, per_group: usize) -> (u32, u32) {
    let groups = workgroups(n, per_group);
    if groups <= MAX_GROUPS_X as usize {
        (groups as u32, 1)
    } else {
        (MAX_GROUPS_X, groups.div_ceil(MAX_GROUPS_X as usize) as u32)
    }
}

/// How many workgroups (a reduction pass: partials) `n` elements take.
pub fn workgroups(n: usize, per_group: usize) -> usize {
    n.div_ceil(per_group.max(1)).max(1)
}

/// One shader per pass of `kernel`.
pub fn shaders(kernel: &Kernel) -> Result<Vec<Shader>> {
    shaders_storing(kernel, Dtype::F32)
}

/// One shader per pass of `kernel`; with `weights` a half type, the map passes also
/// write the parameters in it (`Shader::packed`).
pub fn shaders_storing(kernel: &Kernel, weights: Dtype) -> Result<Vec<Shader>> {
    let codes = legalize(kernel)?;
    codes
        .iter()
        .enumerate()
        .map(|(p, code)| shader(kernel, code, p, weights))
        .collect()
}

/// Parses and validates WGSL with naga, as a WebGPU implementation would on load.
pub fn validate(source: &str) -> Result<()> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .map_err(|e| e.emit_to_string(source))?;
    Ok(())
}

/// An f32 constant as WGSL: decimal when it round-trips, its bits otherwise (non-finite
/// values, which WGSL literals cannot spell, and subnormals).
fn lit(x: f32) -> String {
    if x.is_finite() && (x == 0.0 || x.is_normal()) {
        let s = format!("{x:?}");
        let s = if s.contains(['.', 'e']) {
            s
        } else {
            format!("{s}.0")
        };
        format!("{s}f")
    } else {
        format!("bitcast<f32>({:#010x}u)", x.to_bits())
    }
}

/// Helpers a shader may call, each with the helpers it calls: bit-level NaN and
/// finiteness tests, and `powf`/`tanhf` with the C library's results where WGSL's
/// builtins leave them undefined. A shader carries only those it uses.
const HELPERS: &[(&str, &[&str], &str)] = &[
    (
        "an_is_nan",
        &[],
        "fn an_is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}",
    ),
    (
        "an_is_finite",
        &[],
        "fn an_is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}",
    ),
    (
        "an_truth",
        &[],
        "fn an_truth(b: bool) -> f32 {
    return select(0.0f, 1.0f, b);
}",
    ),
    (
        "an_pow",
        &["an_is_nan"],
        "// C's powf for the cases WGSL's pow leaves undefined (x <= 0, y = 0).
fn an_pow(x: f32, y: f32) -> f32 {
    if (y == 0.0f) { return 1.0f; }
    if (an_is_nan(x) || an_is_nan(y)) { return bitcast<f32>(0x7fc00000u); }
    if (x == 0.0f) {
        return select(0.0f, bitcast<f32>(0x7f800000u), y < 0.0f);
    }
    let m = exp2(y * log2(abs(x)));
    if (x > 0.0f) { return m; }
    if (floor(y) != y) { return bitcast<f32>(0x7fc00000u); }
    let odd = abs(y) < 16777216.0f && (u32(abs(y)) & 1u) == 1u;
    return select(m, -m, odd);
}",
    ),
    (
        "an_tanh",
        &["an_is_nan"],
        "// tanh(±9) is ±1 in f32; clamping keeps exp-based implementations from overflowing.
fn an_tanh(x: f32) -> f32 {
    if (an_is_nan(x)) { return x; }
    return tanh(clamp(x, -9.0f, 9.0f));
}",
    ),
];

/// Rounding f32 to a half type, to nearest even, as the `half` crate does: bf16 keeps
/// the top 16 bits (a NaN stays a quiet NaN); f16 rebuilds exponent and mantissa,
/// overflowing to infinity and rounding into subnormals.
const PACKERS: &[(&str, &str)] = &[
    (
        "an_bf16",
        "fn an_bf16(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (b >> 16u) | 0x40u;
    }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}",
    ),
    (
        "an_f16",
        "fn an_f16(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let sign = (b >> 16u) & 0x8000u;
    let e = (b >> 23u) & 0xffu;
    let m = b & 0x7fffffu;
    if (e == 0xffu) {
        return sign | 0x7c00u | select(0u, 0x200u, m != 0u) | (m >> 13u);
    }
    let he = i32(e) - 112;
    if (he >= 31) {
        return sign | 0x7c00u;
    }
    if (he <= 0) {
        if (14 - he > 24) {
            return sign;
        }
        let mm = m | 0x800000u;
        let shift = u32(14 - he);
        let round_bit = 1u << (shift - 1u);
        let up = (mm & round_bit) != 0u && (mm & (3u * round_bit - 1u)) != 0u;
        return sign | ((mm >> shift) + select(0u, 1u, up));
    }
    let bits = sign | (u32(he) << 10u) | (m >> 13u);
    let up = (m & 0x1000u) != 0u && (m & 0x2fffu) != 0u;
    return bits + select(0u, 1u, up);
}",
    ),
];

/// The helpers `body` calls, and theirs, in `HELPERS` order.
fn helpers_for(body: &str) -> String {
    let mut used: Vec<bool> = HELPERS
        .iter()
        .map(|(name, _, _)| body.contains(&format!("{name}(")))
        .collect();
    for (i, (_, deps, _)) in HELPERS.iter().enumerate().rev() {
        if used[i] {
            for d in *deps {
                if let Some(j) = HELPERS.iter().position(|(n, _, _)| n == d) {
                    used[j] = true;
                }
            }
        }
    }
    let mut out = String::new();
    for (i, (_, _, text)) in HELPERS.iter().enumerate() {
        if used[i] {
            out.push_str(text);
            out.push_str("\n\n");
        }
    }
    for (name, text) in PACKERS {
        if body.contains(&format!("{name}(")) {
            out.push_str(text);
            out.push_str("\n\n");
        }
    }
    out
}

/// Writes a pass's legalized ops as WGSL `let`s, one per op (values `f32`, masks
/// `bool`), named by op index.
fn write_ops(out: &mut String, code: &PassCode, indent: &str) -> Result<()> {
    for (id, op) in code.ops.iter().enumerate() {
        let (ty, expr) = write_op(op)?;
        let _ = writeln!(out, "{indent}let o{id}: {ty} = {expr};");
    }
    Ok(())
}

fn write_op(op: &Op) -> Result<(&'static str, String)> {
    let v = |x: &OpId| format!("o{x}");
    let value = |e: String| ("f32", e);
    let mask = |e: String| ("bool", e);
    Ok(match op {
        Op::Load(k) => value(format!("b{k}[i]")),
        Op::Scalar(k) => value(format!("u.s[{}u][{}]", k / 4, k % 4)),
        Op::Prim(p) => match p {
            Prim::Const(c) => value(lit(*c as f32)),
            Prim::Unary(u, x) => value(match u {
                Unary::Neg => format!("-{}", v(x)),
                Unary::Sqrt => format!("sqrt({})", v(x)),
                Unary::Abs => format!("abs({})", v(x)),
                Unary::Floor => format!("floor({})", v(x)),
                Unary::Ceil => format!("ceil({})", v(x)),
            }),
            Prim::Binary(b, x, y) => value(format!("{} {} {}", v(x), b.symbol(), v(y))),
            Prim::Libm(f, x, y) => value(match (f, y) {
                (Libm::Pow, Some(y)) => format!("an_pow({}, {})", v(x), v(y)),
                (Libm::Exp, _) => format!("exp({})", v(x)),
                (Libm::Log, _) => format!("log({})", v(x)),
                (Libm::Cos, _) => format!("cos({})", v(x)),
                (Libm::Sin, _) => format!("sin({})", v(x)),
                (Libm::Tanh, _) => format!("an_tanh({})", v(x)),
                (Libm::Pow, None) => return Err(Error::internal("`pow` with one operand")),
            }),
            // A NaN never compares equal; `!=` holds for it, as the op means.
            Prim::Compare(c, x, y) => mask(format!("{} {} {}", v(x), c.symbol(), v(y))),
            Prim::IsNan(x) => mask(format!("an_is_nan({})", v(x))),
            Prim::IsFinite(x) => mask(format!("an_is_finite({})", v(x))),
            Prim::And(x, y) => mask(format!("{} && {}", v(x), v(y))),
            Prim::Or(x, y) => mask(format!("{} || {}", v(x), v(y))),
            Prim::Select(m, x, y) => value(format!("select({}, {}, {})", v(y), v(x), v(m))),
        },
    })
}

/// The identity of a reduction's tree and how two partials combine.
fn tree(kind: AccKind) -> (&'static str, &'static str) {
    match kind {
        AccKind::Sum | AccKind::SumSq => ("0.0f", "a + b"),
        // A flag: 1 once any element is not finite.
        AccKind::Finite => ("0.0f", "max(a, b)"),
        AccKind::Max => ("bitcast<f32>(0xff800000u)", "max(a, b)"),
        AccKind::Min => ("bitcast<f32>(0x7f800000u)", "min(a, b)"),
    }
}

fn shader(kernel: &Kernel, code: &PassCode, p: usize, weights: Dtype) -> Result<Shader> {
    let pass = &kernel.passes[p];
    let packed = match (weights, pass.kind) {
        (Dtype::F32, _) => None,
        (_, PassKind::Map | PassKind::SkipMap) if pass.bufs.contains(&Buf::Param) => Some(weights),
        _ => None,
    };
    let per_group = WORKGROUP as usize
        * if pass.kind == PassKind::Reduce {
            REDUCE_ELEMS as usize
        } else {
            1
        };
    let writes = pass.writes(kernel);
    let slots = pass.scalars.len() + usize::from(pass.guarded);
    let kinds: Vec<AccKind> = code.reductions.iter().map(|r| r.kind).collect();
    let o = &mut String::new();
    let what = match pass.kind {
        PassKind::Reduce => "reduction",
        PassKind::Map => "map",
        PassKind::SkipMap => "map on steps a `skip if` stops",
        PassKind::Prepare => "prepare (model-call arguments)",
    };
    let _ = writeln!(
        o,
        "// anneal pass {p}: {what}, {per_group} elements per workgroup.\n"
    );
    let _ = writeln!(
        o,
        "struct Scalars {{\n    n: u32,\n    groups_x: u32,\n    pad0: u32,\n    pad1: u32,\n    s: array<vec4<f32>, {}>,\n}}\n",
        slots.div_ceil(4).max(1)
    );
    let _ = writeln!(o, "@group(0) @binding(0) var<uniform> u: Scalars;");
    for (i, b) in pass.bufs.iter().enumerate() {
        let access = if writes.contains(b) {
            "read_write"
        } else {
            "read"
        };
        let _ = writeln!(
            o,
            "@group(0) @binding({}) var<storage, {access}> b{i}: array<f32>; // {}",
            i + 1,
            buf_name(*b)
        );
    }
    if pass.kind == PassKind::Reduce {
        let _ = writeln!(
            o,
            "@group(0) @binding({}) var<storage, read_write> partials: array<f32>;",
            pass.bufs.len() + 1
        );
        for j in 0..kinds.len() {
            let _ = writeln!(o, "var<workgroup> tree{j}: array<f32, {WORKGROUP}>;");
        }
    }
    if let Some(dtype) = packed {
        let _ = writeln!(
            o,
            "@group(0) @binding({}) var<storage, read_write> packed: array<u32>; // param as {}\nvar<workgroup> stored: array<f32, {WORKGROUP}>;",
            pass.bufs.len() + 1,
            dtype.name()
        );
    }
    o.push('\n');
    let head = std::mem::take(o);
    let _ = writeln!(
        o,
        "@compute @workgroup_size({WORKGROUP})\nfn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32) {{\n    let g = wg.y * u.groups_x + wg.x;"
    );
    match pass.kind {
        PassKind::Reduce => {
            for (j, kind) in kinds.iter().enumerate() {
                let _ = writeln!(o, "    var r{j}: f32 = {};", tree(*kind).0);
            }
            // Each invocation accumulates REDUCE_ELEMS elements a workgroup apart
            // (neighbouring invocations read neighbouring elements), in a fixed order.
            let _ = writeln!(
                o,
                "    for (var k = 0u; k < {REDUCE_ELEMS}u; k = k + 1u) {{\n        let i = g * {}u + k * {WORKGROUP}u + l;\n        if (i < u.n) {{",
                WORKGROUP * REDUCE_ELEMS
            );
            write_ops(o, code, "            ")?;
            for (j, r) in code.reductions.iter().enumerate() {
                let x = r.value;
                let value = match r.kind {
                    AccKind::Sum => format!("r{j} + o{x}"),
                    AccKind::SumSq => format!("r{j} + o{x} * o{x}"),
                    AccKind::Finite => format!("max(r{j}, an_truth(!an_is_finite(o{x})))"),
                    // A NaN element leaves a maximum (minimum) unchanged.
                    AccKind::Max => format!("select(max(r{j}, o{x}), r{j}, an_is_nan(o{x}))"),
                    AccKind::Min => format!("select(min(r{j}, o{x}), r{j}, an_is_nan(o{x}))"),
                };
                let _ = writeln!(o, "            r{j} = {value};");
            }
            let _ = writeln!(o, "        }}\n    }}");
            for j in 0..kinds.len() {
                let _ = writeln!(o, "    tree{j}[l] = r{j};");
            }
            let _ = writeln!(o, "    workgroupBarrier();");
            let _ = writeln!(
                o,
                "    for (var k = {}u; k > 0u; k = k >> 1u) {{\n        if (l < k) {{",
                WORKGROUP / 2
            );
            for (j, kind) in kinds.iter().enumerate() {
                let combine = tree(*kind).1;
                let _ = writeln!(
                    o,
                    "            {{\n                let a = tree{j}[l];\n                let b = tree{j}[l + k];\n                tree{j}[l] = {combine};\n            }}"
                );
            }
            let _ = writeln!(o, "        }}\n        workgroupBarrier();\n    }}");
            let _ = writeln!(o, "    if (l == 0u) {{");
            for j in 0..kinds.len() {
                let _ = writeln!(
                    o,
                    "        partials[g * {}u + {j}u] = tree{j}[0];",
                    kinds.len()
                );
            }
            let _ = writeln!(o, "    }}");
        }
        PassKind::Map | PassKind::SkipMap | PassKind::Prepare => {
            // With a packed copy, every invocation reaches the barrier: no early return.
            let pad = if packed.is_some() { "    " } else { "" };
            if packed.is_some() {
                let _ = writeln!(
                    o,
                    "    let i = g * {WORKGROUP}u + l;\n    stored[l] = 0.0f;\n    if (i < u.n) {{"
                );
            } else {
                let _ = writeln!(
                    o,
                    "    let i = g * {WORKGROUP}u + l;\n    if (i >= u.n) {{\n        return;\n    }}"
                );
            }
            // Every value first, then every store: a store must not feed a later value
            // (values are functions of the buffers as the step began).
            write_ops(o, code, &format!("{pad}    "))?;
            for store in &code.stores {
                let line = format!("b{}[i] = o{};", store.buf, store.value);
                if let Some(active) = code.guard {
                    let _ = writeln!(
                        o,
                        "{pad}    if ({} < u.s[{}u][{}]) {{\n{pad}        {line}\n{pad}    }}",
                        lit(store.stage as f32),
                        active / 4,
                        active % 4
                    );
                } else {
                    let _ = writeln!(o, "{pad}    {line}");
                }
            }
            if let Some(dtype) = packed {
                // The parameter as stored (a skipped step leaves it as it was), paired
                // with its neighbour through workgroup memory.
                let param = pass
                    .slot(Buf::Param)
                    .ok_or_else(|| Error::internal("a packed map pass without the parameters"))?;
                let f = if dtype == Dtype::Bf16 {
                    "an_bf16"
                } else {
                    "an_f16"
                };
                let _ = writeln!(
                    o,
                    "        stored[l] = b{}[i];\n    }}\n    workgroupBarrier();\n    let j = g * {}u + l;\n    if (l < {}u && 2u * j < u.n) {{\n        packed[j] = {f}(stored[2u * l]) | ({f}(stored[2u * l + 1u]) << 16u);\n    }}",
                    param,
                    WORKGROUP / 2,
                    WORKGROUP / 2
                );
            }
        }
    }
    o.push_str("}\n");
    let source = format!("{head}{}{o}", helpers_for(o));
    Ok(Shader {
        pass: p,
        kind: pass.kind,
        source,
        bufs: pass.bufs.clone(),
        writes: pass.bufs.iter().map(|b| writes.contains(b)).collect(),
        slots,
        reductions: pass
            .reductions
            .iter()
            .map(|&r| kernel.reductions[r].op)
            .collect(),
        per_group,
        packed,
    })
}

/// A buffer's role, as the shader's comments and the export manifest name it.
pub fn buf_name(b: Buf) -> String {
    match b {
        Buf::Param => "param".into(),
        Buf::Grad => "grad".into(),
        Buf::State { stage, state } => format!("state {stage}.{state}"),
        Buf::CallArg(k) => format!("call {k} argument"),
        Buf::CallPoint(k) => format!("call {k} point"),
        Buf::CallOut(k) => format!("call {k} result"),
        Buf::Noise(s) => format!("noise of stage {s}"),
        Buf::Spread(h) => format!("spread host value {h}"),
        Buf::SliceIn(s) => format!("sliced reduction {s} input"),
        Buf::MatIn(k, i) => format!("matrix call {k} input {i}"),
    }
}
