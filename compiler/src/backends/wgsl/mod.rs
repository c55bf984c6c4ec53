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

use std::fmt::Write as _;

use crate::ast::{BinOp, CmpOp, UnOp};
use crate::ir::{Builtin, Dtype, ReduceOp};
use crate::kernel::{Buf, EId, Elem, Host, Kernel, PassKind};

use super::{acc_kind, AccKind};

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
pub fn shaders(kernel: &Kernel) -> Result<Vec<Shader>, String> {
    shaders_storing(kernel, Dtype::F32)
}

/// One shader per pass of `kernel`; with `weights` a half type, the map passes also
/// write the parameters in it (`Shader::packed`).
pub fn shaders_storing(kernel: &Kernel, weights: Dtype) -> Result<Vec<Shader>, String> {
    kernel
        .passes
        .iter()
        .enumerate()
        .map(|(p, _)| shader(kernel, p, weights))
        .collect()
}

/// Parses and validates WGSL with naga, as a WebGPU implementation would on load.
pub fn validate(source: &str) -> Result<(), String> {
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
/// finiteness tests, and the language's min/max/sign/pow/lerp/tanh with the CPU back
/// ends' semantics. A shader carries only those it uses.
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
        "an_min",
        &["an_is_nan"],
        "// Rust's f32::min: a NaN operand yields the other one.
fn an_min(x: f32, y: f32) -> f32 {
    if (an_is_nan(y)) { return x; }
    if (an_is_nan(x)) { return y; }
    return select(y, x, x < y);
}",
    ),
    (
        "an_max",
        &["an_is_nan"],
        "fn an_max(x: f32, y: f32) -> f32 {
    if (an_is_nan(y)) { return x; }
    if (an_is_nan(x)) { return y; }
    return select(y, x, x > y);
}",
    ),
    (
        "an_sign",
        &["an_is_nan"],
        "// sign(0) = 0 and sign(NaN) = NaN, as optimizers mean it.
fn an_sign(x: f32) -> f32 {
    if (an_is_nan(x)) { return x; }
    return select(select(x, -1.0f, x < 0.0f), 1.0f, x > 0.0f);
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
        "an_lerp",
        &[],
        "// torch's lerp: the two-branch formula, exact at both ends.
fn an_lerp(a: f32, b: f32, w: f32) -> f32 {
    let d = b - a;
    return select(b - d * (1.0f - w), a + w * d, abs(w) < 0.5f);
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

struct Writer<'k> {
    k: &'k Kernel,
    pass: &'k crate::kernel::Pass,
    out: String,
    done: Vec<bool>,
    indent: &'static str,
}

impl Writer<'_> {
    fn slot(&self, h: usize) -> String {
        let i = self.pass.scalars.iter().position(|&s| s == h).unwrap_or(0);
        format!("u.s[{}u][{}]", i / 4, i % 4)
    }

    /// Emits `let eN` for `e` and everything it needs, operands first.
    fn emit(&mut self, root: EId) {
        // Iterative post-order: deep element graphs (long chains) must not recurse.
        let mut stack = vec![(root, false)];
        while let Some((e, ready)) = stack.pop() {
            if self.done[e] {
                continue;
            }
            let ops = operands(&self.k.elems[e]);
            if !ready {
                stack.push((e, true));
                for &o in ops.iter().rev() {
                    if !self.done[o] {
                        stack.push((o, false));
                    }
                }
                continue;
            }
            self.done[e] = true;
            let v = |x: EId| format!("e{x}");
            let expr = match &self.k.elems[e] {
                Elem::Load(b) => {
                    if self.pass.reads.contains(b) {
                        format!("b{}[i]", self.pass.slot(*b))
                    } else {
                        lit(f32::NAN)
                    }
                }
                Elem::Scalar(h) => match self.k.host[*h] {
                    Host::Const(c) => lit(c as f32),
                    _ => self.slot(*h),
                },
                Elem::Unary(UnOp::Neg, a) => format!("-{}", v(*a)),
                Elem::Unary(UnOp::Not, a) => format!("an_truth({} == 0.0f)", v(*a)),
                Elem::Binary(op, a, b) => {
                    let (x, y) = (v(*a), v(*b));
                    match op {
                        BinOp::Add => format!("{x} + {y}"),
                        BinOp::Sub => format!("{x} - {y}"),
                        BinOp::Mul => format!("{x} * {y}"),
                        BinOp::Div => format!("{x} / {y}"),
                        BinOp::Pow => format!("an_pow({x}, {y})"),
                        BinOp::And => format!("an_truth({x} != 0.0f && {y} != 0.0f)"),
                        BinOp::Or => format!("an_truth({x} != 0.0f || {y} != 0.0f)"),
                        BinOp::Cmp(c) => format!("an_truth({x} {} {y})", cmp(*c)),
                    }
                }
                Elem::Select(c, a, b) => {
                    format!("select({}, {}, {} != 0.0f)", v(*b), v(*a), v(*c))
                }
                Elem::Call(f, xs) => {
                    let a: Vec<String> = xs.iter().map(|x| v(*x)).collect();
                    call(*f, &a)
                }
            };
            let _ = writeln!(self.out, "{}let e{e}: f32 = {expr};", self.indent);
        }
    }
}

fn cmp(c: CmpOp) -> &'static str {
    c.symbol()
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

fn call(f: Builtin, a: &[String]) -> String {
    match f {
        Builtin::Sqrt => format!("sqrt({})", a[0]),
        Builtin::Exp => format!("exp({})", a[0]),
        Builtin::Log => format!("log({})", a[0]),
        Builtin::Abs => format!("abs({})", a[0]),
        Builtin::Sign => format!("an_sign({})", a[0]),
        Builtin::Min => format!("an_min({}, {})", a[0], a[1]),
        Builtin::Max => format!("an_max({}, {})", a[0], a[1]),
        Builtin::Pow => format!("an_pow({}, {})", a[0], a[1]),
        Builtin::Clamp => format!("an_min(an_max({}, {}), {})", a[0], a[1], a[2]),
        Builtin::Lerp => format!("an_lerp({}, {}, {})", a[0], a[1], a[2]),
        Builtin::Floor => format!("floor({})", a[0]),
        Builtin::Ceil => format!("ceil({})", a[0]),
        Builtin::Cos => format!("cos({})", a[0]),
        Builtin::Sin => format!("sin({})", a[0]),
        Builtin::Tanh => format!("an_tanh({})", a[0]),
        Builtin::IsFinite => format!("an_truth(an_is_finite({}))", a[0]),
        Builtin::IsNone => format!("an_truth(an_is_nan({}))", a[0]),
    }
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

fn shader(kernel: &Kernel, p: usize, weights: Dtype) -> Result<Shader, String> {
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
    let mut w = Writer {
        k: kernel,
        pass,
        out: String::new(),
        done: vec![false; kernel.elems.len()],
        indent: if pass.kind == PassKind::Reduce {
            "            "
        } else {
            "    "
        },
    };
    let kinds: Vec<AccKind> = pass
        .reductions
        .iter()
        .map(|&r| acc_kind(kernel.reductions[r].op))
        .collect();
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
            for (j, &r) in pass.reductions.iter().enumerate() {
                let x = kernel.reductions[r].input;
                w.emit(x);
                let value = match kinds[j] {
                    AccKind::Sum => format!("r{j} + e{x}"),
                    AccKind::SumSq => format!("r{j} + e{x} * e{x}"),
                    AccKind::Finite => format!("max(r{j}, an_truth(!an_is_finite(e{x})))"),
                    // A NaN element leaves a maximum (minimum) unchanged.
                    AccKind::Max => format!("select(max(r{j}, e{x}), r{j}, an_is_nan(e{x}))"),
                    AccKind::Min => format!("select(min(r{j}, e{x}), r{j}, an_is_nan(e{x}))"),
                };
                let _ = writeln!(w.out, "            r{j} = {value};");
            }
            o.push_str(&w.out);
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
                w.indent = "        ";
            } else {
                let _ = writeln!(
                    o,
                    "    let i = g * {WORKGROUP}u + l;\n    if (i >= u.n) {{\n        return;\n    }}"
                );
            }
            // Every value first, then every store: a store must not feed a later value
            // (values are functions of the buffers as the step began).
            for &s in &pass.stores {
                w.emit(kernel.stores[s].value);
            }
            o.push_str(&w.out);
            let active = pass.scalars.len();
            for &s in &pass.stores {
                let store = &kernel.stores[s];
                let line = format!("b{}[i] = e{};", pass.slot(store.buf), store.value);
                if pass.guarded {
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
                let f = if dtype == Dtype::Bf16 {
                    "an_bf16"
                } else {
                    "an_f16"
                };
                let _ = writeln!(
                    o,
                    "        stored[l] = b{}[i];\n    }}\n    workgroupBarrier();\n    let j = g * {}u + l;\n    if (l < {}u && 2u * j < u.n) {{\n        packed[j] = {f}(stored[2u * l]) | ({f}(stored[2u * l + 1u]) << 16u);\n    }}",
                    pass.slot(Buf::Param),
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
    }
}
