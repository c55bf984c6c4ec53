//! `A @ B` on the GPU for the wgsl back end's matrix values: a tiled product, 16 × 16
//! output entries per workgroup, each operand's tiles staged in workgroup memory; either
//! operand may be read transposed in place (`transpose(X)` is never copied), as the host's
//! sgemm does. Entry point: `DeviceGemm`, the `crate::matrix::Gemm` the executor hands the
//! matrix evaluator when the step runs on a GPU.
//!
//! Each entry is one invocation's f32 sum over k in ascending order (tile padding adds
//! exact zeros), so a product is deterministic for a device, whatever the scheduling of
//! workgroups; it differs from the host's blocked sgemm only in rounding. Operands are
//! uploaded and the product read back per call; the rest of a matrix expression (its
//! entry-wise arithmetic, the decompositions) stays on the host. A product whose buffers
//! exceed the device's binding limit or whose grid exceeds its dispatch limit runs on the
//! host instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use wgpu::util::DeviceExt;

use super::{build_pipeline, Context, Pipeline};
use crate::error::{Error, Result};
use crate::matrix::{Gemm, Product};

const TILE: usize = 16;

const SHADER: &str = r#"
struct Dims { m: u32, k: u32, n: u32, flags: u32 }
@group(0) @binding(0) var<uniform> d: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
var<workgroup> sa: array<array<f32, 16>, 16>;
var<workgroup> sb: array<array<f32, 16>, 16>;

// Entry (i, p) of the m × k left operand, stored k × m when flag 1 is set; 0 outside.
fn left(i: u32, p: u32) -> f32 {
    if (i >= d.m || p >= d.k) { return 0.0; }
    if ((d.flags & 1u) != 0u) { return a[p * d.m + i]; }
    return a[i * d.k + p];
}

// Entry (p, j) of the k × n right operand, stored n × k when flag 2 is set; 0 outside.
fn right(p: u32, j: u32) -> f32 {
    if (p >= d.k || j >= d.n) { return 0.0; }
    if ((d.flags & 2u) != 0u) { return b[j * d.k + p]; }
    return b[p * d.n + j];
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) g: vec3<u32>) {
    let i = g.y * 16u + l.y;
    let j = g.x * 16u + l.x;
    var acc = 0.0;
    let tiles = (d.k + 15u) / 16u;
    for (var t = 0u; t < tiles; t = t + 1u) {
        sa[l.y][l.x] = left(i, t * 16u + l.x);
        sb[l.y][l.x] = right(t * 16u + l.y, j);
        workgroupBarrier();
        for (var p = 0u; p < 16u; p = p + 1u) {
            acc = acc + sa[l.y][p] * sb[p][l.x];
        }
        workgroupBarrier();
    }
    if (i < d.m && j < d.n) {
        c[i * d.n + j] = acc;
    }
}
"#;

static MATMUL: OnceLock<std::result::Result<Pipeline, String>> = OnceLock::new();
static DEVICE_PRODUCTS: AtomicUsize = AtomicUsize::new(0);

/// How many products this process has computed on the GPU (not counting those too large
/// for it, which ran on the host).
pub fn device_products() -> usize {
    DEVICE_PRODUCTS.load(Ordering::Relaxed)
}

/// The product pipeline, compiled once per process.
fn pipeline(ctx: &Context) -> Result<Pipeline> {
    let made = MATMUL.get_or_init(|| {
        super::wgsl::validate(SHADER).map_err(|e| format!("the matmul shader: {e}"))?;
        let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let storage = |read_only| wgpu::BufferBindingType::Storage { read_only };
        let entries = [
            entry(0, wgpu::BufferBindingType::Uniform),
            entry(1, storage(true)),
            entry(2, storage(true)),
            entry(3, storage(false)),
        ];
        Ok(build_pipeline(ctx, "anneal matmul", SHADER, &entries))
    });
    made.clone().map_err(Error::internal)
}

/// Products on the process's GPU; one at a time (the queue is shared).
pub struct DeviceGemm {
    ctx: &'static Context,
    lock: Mutex<()>,
}

impl DeviceGemm {
    pub fn new(ctx: &'static Context) -> DeviceGemm {
        DeviceGemm {
            ctx,
            lock: Mutex::new(()),
        }
    }

    /// Whether the device can take this product in one dispatch.
    fn fits(&self, (m, k, n): Product) -> bool {
        let bytes = |len: usize| (len * 4) as u64;
        let most = bytes(m * k).max(bytes(k * n)).max(bytes(m * n));
        let groups = m.div_ceil(TILE).max(n.div_ceil(TILE));
        most <= self.ctx.max_binding && groups <= 65_535
    }

    fn on_device(
        &self,
        (m, k, n): Product,
        a: &[f32],
        ta: bool,
        b: &[f32],
        tb: bool,
    ) -> Result<Vec<f32>> {
        let ctx = self.ctx;
        let _one = self
            .lock
            .lock()
            .map_err(|_| "the GPU product lock is poisoned")?;
        let (pipe, layout) = pipeline(ctx)?;
        let d = &ctx.device;
        let dims = [
            m as u32,
            k as u32,
            n as u32,
            u32::from(ta) | (u32::from(tb) << 1),
        ];
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let uniform = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("anneal matmul dims"),
            contents: &dims
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let input = |v: &[f32]| {
            d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("anneal matmul operand"),
                contents: &bytes(v),
                usage: wgpu::BufferUsages::STORAGE,
            })
        };
        let (ba, bb) = (input(&a[..m * k]), input(&b[..k * n]));
        let size = (m * n * 4) as u64;
        let out = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("anneal matmul product"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let back = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("anneal matmul readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let group = d.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("anneal matmul"),
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: ba.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: bb.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: out.as_entire_binding(),
                },
            ],
        });
        let mut encoder = d.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipe);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1);
        }
        encoder.copy_buffer_to_buffer(&out, 0, &back, 0, size);
        ctx.queue.submit([encoder.finish()]);
        let slice = back.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let failed = |e: String| Error::user(format!("the GPU `{}` failed: {e}", ctx.adapter));
        d.poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| failed(e.to_string()))?;
        if let Some(e) = ctx.take_error() {
            return Err(failed(e));
        }
        rx.recv()
            .map_err(|_| "the GPU readback was dropped".to_string())?
            .map_err(|e| failed(e.to_string()))?;
        let product = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| failed(e.to_string()))?;
            view.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        back.unmap();
        DEVICE_PRODUCTS.fetch_add(1, Ordering::Relaxed);
        Ok(product)
    }
}

impl Gemm for DeviceGemm {
    fn multiply(&self, p: Product, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Result<Vec<f32>> {
        let (m, k, n) = p;
        if m == 0 || n == 0 {
            return Ok(Vec::new());
        }
        if k == 0 || !self.fits(p) || a.len() < m * k || b.len() < k * n {
            return crate::matrix::HostGemm.multiply(p, a, ta, b, tb);
        }
        self.on_device(p, a, ta, b, tb)
    }
}
