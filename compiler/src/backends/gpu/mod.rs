//! The wgpu executor: runs the WGSL passes of a fused kernel (`backends::wgsl`) on a GPU
//! (Vulkan, Metal, DX12; Mesa's software Vulkan in CI). Entry point: `GpuPasses::new`,
//! which `kernel::exec::Fused` drives through `PassDevice` exactly as it drives compiled
//! CPU passes, so the host side of a step (schedules, lazy reductions, skips, states) is
//! one piece of code for every back end.
//!
//! Everything is created once per stepper and reused across steps: device buffers per
//! buffer role, tensor and segment, one uniform block and one bind group per pass, tensor
//! and segment; pipelines are cached per shader text for the whole process. Per step only
//! data moves: the host writes the scalar slots and the buffers the step reads, and reads
//! back what the passes write plus the reductions' per-workgroup partials. Parameters
//! and gradients are uploaded once per step even when several passes read them; element
//! states only when the host changed them (a restored checkpoint), since the device
//! holds what the last step read back.
//!
//! Tensors over the device's binding limit (128 MiB on lavapipe) are split into segments,
//! each its own buffers and dispatch; a segment's partials follow the one before it, so a
//! reduction is combined in the same element order as an unsplit one.

mod bench;
mod matmul;

pub use bench::{time_on_device, DeviceTiming};
pub use matmul::{device_products, DeviceGemm};

use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::wgsl::{self, Shader};
use crate::ir::Dtype;
use crate::kernel::exec::PassDevice;
use crate::kernel::{Buf, Kernel};

/// The process's GPU: one device and queue shared by every stepper.
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// The adapter, as people recognize it: "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)".
    pub adapter: String,
    /// Largest storage binding, in bytes.
    pub max_binding: u64,
    pub max_storage_buffers: u32,
    /// An error wgpu reported outside an error scope (a failed submission), kept for the
    /// step that caused it to return instead of wgpu's default handler panicking.
    errors: Arc<Mutex<Option<String>>>,
}

impl Context {
    /// The error wgpu reported since the last call, if any.
    fn take_error(&self) -> Option<String> {
        self.errors.lock().ok().and_then(|mut e| e.take())
    }
}

static CONTEXT: OnceLock<Result<Context>> = OnceLock::new();
static PIPELINES: AtomicUsize = AtomicUsize::new(0);

type Pipeline = (Arc<wgpu::ComputePipeline>, Arc<wgpu::BindGroupLayout>);
static PIPELINE_CACHE: OnceLock<Mutex<HashMap<String, Pipeline>>> = OnceLock::new();

/// How many compute pipelines this process has created (each a shader compile).
pub fn pipelines_created() -> usize {
    PIPELINES.load(Ordering::Relaxed)
}

/// The GPU, opened on first use; the error says what was looked for and how to get one.
pub fn context() -> Result<&'static Context> {
    CONTEXT.get_or_init(open).as_ref().map_err(Clone::clone)
}

/// For tests: the GPU, or `None` (said on stderr) where there is none. With `CI` set a
/// missing GPU fails the test instead: CI installs lavapipe, so a skip would hide a
/// broken setup.
#[doc(hidden)]
pub fn for_tests() -> Option<&'static Context> {
    match context() {
        Ok(c) => Some(c),
        Err(e) if std::env::var_os("CI").is_some() => panic!("CI is set and {e}"),
        Err(e) => {
            eprintln!("skipping a GPU test: {e}");
            None
        }
    }
}

fn open() -> Result<Context> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .map_err(|e| {
        format!(
            "no GPU adapter found ({e}): the wgsl back end needs a Vulkan, Metal or DX12 \
             device. On Debian or Ubuntu without a GPU, install Mesa's software Vulkan \
             (`apt-get install mesa-vulkan-drivers libvulkan1`) and set NODEVICE_SELECT=1; \
             or run on the CPU with `--backend cranelift`"
        )
    })?;
    let info = adapter.get_info();
    let limits = adapter.limits();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("anneal"),
        // Half-precision weights are packed into u32 by integer arithmetic, so no
        // optional feature (SHADER_F16) is needed: every adapter runs every shader.
        required_features: wgpu::Features::empty(),
        // Everything the adapter offers: a pass binds one buffer per state, often more
        // than WebGPU's default of 8.
        required_limits: limits.clone(),
        ..Default::default()
    }))
    .map_err(|e| Error::user(format!("cannot open GPU `{}`: {e}", info.name)))?;
    let errors = Arc::new(Mutex::new(None));
    let sink = errors.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        if let Ok(mut slot) = sink.lock() {
            slot.get_or_insert_with(|| e.to_string());
        }
    }));
    Ok(Context {
        errors,
        device,
        queue,
        adapter: format!("{} ({:?})", info.name, info.backend),
        max_binding: limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size),
        max_storage_buffers: limits.max_storage_buffers_per_shader_stage,
    })
}

/// The pipeline for `shader`, compiled once per process.
fn pipeline(ctx: &Context, shader: &Shader) -> Result<Pipeline> {
    let cache = PIPELINE_CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().map_err(|_| "GPU pipeline cache poisoned")?;
    if let Some(p) = cache.get(&shader.source) {
        return Ok(p.clone());
    }
    // Checked before wgpu sees it: an invalid shader is an internal error to report,
    // never a panic in wgpu's error handler.
    wgsl::validate(&shader.source)
        .map_err(|e| Error::internal(format!("pass {} is invalid WGSL: {e}", shader.pass)))?;
    let storage = |read_only: bool| wgpu::BindingType::Buffer {
        ty: wgpu::BufferBindingType::Storage { read_only },
        has_dynamic_offset: false,
        min_binding_size: None,
    };
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }];
    for (i, w) in shader.writes.iter().enumerate() {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: storage(!w),
            count: None,
        });
    }
    if !shader.reductions.is_empty() || shader.packed.is_some() {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: shader.partials_binding(),
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: storage(false),
            count: None,
        });
    }
    let storage_count = entries.len() as u32 - 1;
    if storage_count > ctx.max_storage_buffers {
        return Err(Error::user(format!(
            "pass {} binds {storage_count} storage buffers and `{}` allows {}; \
             split the recipe's chain or run it with `--backend cranelift`",
            shader.pass, ctx.adapter, ctx.max_storage_buffers
        )));
    }
    let p = build_pipeline(ctx, "anneal pass", &shader.source, &entries);
    cache.insert(shader.source.clone(), p.clone());
    Ok(p)
}

/// A compute pipeline for WGSL `source` (validated already) whose `main` binds `entries`
/// in group 0; counted in `pipelines_created`.
fn build_pipeline(
    ctx: &Context,
    label: &str,
    source: &str,
    entries: &[wgpu::BindGroupLayoutEntry],
) -> Pipeline {
    let d = &ctx.device;
    let layout = d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries,
    });
    let pl = d.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipe = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: Some(&pl),
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    PIPELINES.fetch_add(1, Ordering::Relaxed);
    (Arc::new(pipe), Arc::new(layout))
}

/// One dispatch of one pass over one tensor segment.
struct Launch {
    tensor: usize,
    /// Element range of the tensor.
    start: usize,
    len: usize,
    uniform: wgpu::Buffer,
    partials: Option<wgpu::Buffer>,
    /// The parameters in a half type, two per u32 (mixed precision).
    packed: Option<wgpu::Buffer>,
    group: wgpu::BindGroup,
}

/// A kernel's passes on the GPU, with their buffers.
pub struct GpuPasses {
    ctx: &'static Context,
    shaders: Vec<Shader>,
    pipelines: Vec<Pipeline>,
    /// Per pass, one launch per tensor segment.
    launches: Vec<Vec<Launch>>,
    /// Device buffers by (role, tensor, segment start).
    bufs: HashMap<(Buf, usize, usize), wgpu::Buffer>,
    /// Per tensor, its segments' (start, len).
    segments: Vec<Vec<(usize, usize)>>,
    readback: Option<wgpu::Buffer>,
    /// The parameters as the last map pass stored them in the recipe's half type
    /// (`precision { params: ... }`), widened to f32; empty in f32.
    stored: Vec<Vec<f32>>,
    weights: Dtype,
    /// Parameter, gradient and state buffers whose device copy is the host's this step.
    fresh: HashSet<(Buf, usize)>,
    /// The matrix values' products (`A @ B`).
    gemm: DeviceGemm,
}

impl GpuPasses {
    /// Compiles (or finds cached) one pipeline per pass and creates every buffer and bind
    /// group for tensors of `sizes` elements. `segment` caps the elements per binding
    /// (0: the device's limit); tests set it small to exercise splitting.
    ///
    /// With `weights` a half type, the map pass also writes the parameters in it
    /// (`stored`), so a mixed-precision model's weights need no pass of their own.
    pub fn new(
        kernel: &Kernel,
        sizes: &[usize],
        segment: usize,
        weights: Dtype,
    ) -> Result<GpuPasses> {
        let ctx = context()?;
        // wgpu reports a failed creation (too little memory, an invalid shader) through
        // error scopes; unscoped, its default handler would panic.
        let oom = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let built = GpuPasses::build(ctx, kernel, sizes, segment, weights);
        if let Some(e) = pollster::block_on(invalid.pop()) {
            return Err(Error::user(format!(
                "the GPU `{}` refused the step: {e}",
                ctx.adapter
            )));
        }
        if let Some(e) = pollster::block_on(oom.pop()) {
            return Err(Error::user(format!(
                "the GPU `{}` ran out of memory ({e}) for the step's buffers over {} \
                 parameters; run on the CPU with `--backend cranelift`",
                ctx.adapter,
                sizes.iter().sum::<usize>()
            )));
        }
        built
    }

    fn build(
        ctx: &'static Context,
        kernel: &Kernel,
        sizes: &[usize],
        segment: usize,
        weights: Dtype,
    ) -> Result<GpuPasses> {
        let shaders = wgsl::shaders_storing(kernel, weights)?;
        let pipelines = shaders
            .iter()
            .map(|s| pipeline(ctx, s))
            .collect::<Result<Vec<_>, _>>()?;
        let limit = (ctx.max_binding / 4) as usize;
        let wg = (wgsl::WORKGROUP * wgsl::REDUCE_ELEMS) as usize;
        let seg = match segment {
            0 => limit,
            s => s.min(limit),
        };
        // Whole workgroups per segment, so partials never straddle two segments.
        let seg = (seg / wg * wg).max(wg);
        let segments: Vec<Vec<(usize, usize)>> = sizes
            .iter()
            .map(|&n| {
                let mut out = Vec::new();
                let mut start = 0;
                while start < n || out.is_empty() {
                    let len = seg.min(n - start);
                    out.push((start, len));
                    start += len.max(1);
                }
                out
            })
            .collect();
        let d = &ctx.device;
        let mut bufs = HashMap::new();
        let mut launches = Vec::new();
        for (shader, (_, layout)) in shaders.iter().zip(&pipelines) {
            let mut per = Vec::new();
            for (t, segs) in segments.iter().enumerate() {
                for &(start, len) in segs {
                    for &b in &shader.bufs {
                        bufs.entry((b, t, start)).or_insert_with(|| {
                            d.create_buffer(&wgpu::BufferDescriptor {
                                label: Some("anneal tensor"),
                                size: (4 * len.max(1)) as u64,
                                usage: wgpu::BufferUsages::STORAGE
                                    | wgpu::BufferUsages::COPY_DST
                                    | wgpu::BufferUsages::COPY_SRC,
                                mapped_at_creation: false,
                            })
                        });
                    }
                    let uniform = d.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("anneal scalars"),
                        size: shader.uniform_bytes() as u64,
                        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    let partials = (!shader.reductions.is_empty()).then(|| {
                        d.create_buffer(&wgpu::BufferDescriptor {
                            label: Some("anneal partials"),
                            size: (4
                                * wgsl::workgroups(len, shader.per_group)
                                * shader.reductions.len()) as u64,
                            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                            mapped_at_creation: false,
                        })
                    });
                    let packed = shader.packed.map(|_| {
                        d.create_buffer(&wgpu::BufferDescriptor {
                            label: Some("anneal packed weights"),
                            size: (4 * len.div_ceil(2).max(1)) as u64,
                            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                            mapped_at_creation: false,
                        })
                    });
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: uniform.as_entire_binding(),
                    }];
                    for (i, b) in shader.bufs.iter().enumerate() {
                        if let Some(buf) = bufs.get(&(*b, t, start)) {
                            entries.push(wgpu::BindGroupEntry {
                                binding: i as u32 + 1,
                                resource: buf.as_entire_binding(),
                            });
                        }
                    }
                    if let Some(p) = partials.as_ref().or(packed.as_ref()) {
                        entries.push(wgpu::BindGroupEntry {
                            binding: shader.partials_binding(),
                            resource: p.as_entire_binding(),
                        });
                    }
                    let group = d.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("anneal pass"),
                        layout,
                        entries: &entries,
                    });
                    per.push(Launch {
                        tensor: t,
                        start,
                        len,
                        uniform,
                        partials,
                        packed,
                        group,
                    });
                }
            }
            launches.push(per);
        }
        Ok(GpuPasses {
            ctx,
            shaders,
            pipelines,
            launches,
            bufs,
            segments,
            readback: None,
            stored: Vec::new(),
            weights,
            fresh: HashSet::new(),
            gemm: DeviceGemm::new(ctx),
        })
    }

    /// How many segments (bindings) each tensor is split into.
    pub fn segments(&self) -> Vec<usize> {
        self.segments.iter().map(Vec::len).collect()
    }

    /// The adapter the passes run on.
    pub fn adapter(&self) -> &str {
        &self.ctx.adapter
    }
}

/// A mappable buffer of at least `bytes` in `slot`, reused across passes and steps.
fn readback(ctx: &Context, slot: &mut Option<wgpu::Buffer>, bytes: u64) -> wgpu::Buffer {
    match slot {
        Some(b) if b.size() >= bytes => b.clone(),
        _ => {
            let b = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("anneal readback"),
                size: bytes.max(8).next_multiple_of(8),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            *slot = Some(b.clone());
            b
        }
    }
}

fn bytes(x: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and every bit pattern is a valid u8 sequence.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), std::mem::size_of_val(x)) }
}

impl PassDevice for GpuPasses {
    fn gemm(&self) -> Option<&dyn crate::matrix::Gemm> {
        Some(&self.gemm)
    }

    fn begin_step(&mut self) {
        // The caller owns parameters and gradients and may change them between steps;
        // element states change only through steps (and `host_changed`), so the device
        // copy read back last step is still the host's.
        self.fresh.retain(|(b, _)| matches!(b, Buf::State { .. }));
    }

    fn host_changed(&mut self) {
        self.fresh.clear();
    }

    fn stored_params(&self) -> Option<&[Vec<f32>]> {
        (!self.stored.is_empty()).then_some(&self.stored[..])
    }

    fn run(
        &mut self,
        p: usize,
        table: &[Vec<f32>],
        ptrs: &[Vec<*mut f32>],
        sizes: &[usize],
        nred: usize,
    ) -> Result<Vec<Vec<Vec<f64>>>> {
        let ctx = self.ctx;
        let shader = &self.shaders[p];
        let q = &ctx.queue;
        // Uploads: every buffer the pass binds, unless the device already holds this
        // step's copy (written ones too: a guarded store keeps what was there).
        for (t, row) in ptrs.iter().enumerate() {
            for (k, &b) in shader.bufs.iter().enumerate() {
                let keep = !b.is_temporary();
                if keep && self.fresh.contains(&(b, t)) {
                    continue;
                }
                // SAFETY: `ptrs[t][k]` points at tensor t's buffer of `sizes[t]` floats,
                // alive and unaliased by writers for the whole call (Fused::run_pass).
                let host = unsafe { std::slice::from_raw_parts(row[k], sizes[t]) };
                for &(start, len) in &self.segments[t] {
                    if len > 0 {
                        q.write_buffer(
                            &self.bufs[&(b, t, start)],
                            0,
                            bytes(&host[start..start + len]),
                        );
                    }
                }
                if keep {
                    self.fresh.insert((b, t));
                }
            }
        }
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut cpass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("anneal pass"),
                timestamp_writes: None,
            });
            cpass.set_pipeline(&self.pipelines[p].0);
            for l in &self.launches[p] {
                let (x, y) = wgsl::dispatch(l.len, shader.per_group);
                let mut u = Vec::with_capacity(shader.uniform_bytes());
                u.extend((l.len as u32).to_le_bytes());
                u.extend(x.to_le_bytes());
                u.extend([0u8; 8]);
                u.extend(bytes(&table[l.tensor]));
                u.resize(shader.uniform_bytes(), 0);
                q.write_buffer(&l.uniform, 0, &u);
                if l.len > 0 {
                    cpass.set_bind_group(0, &l.group, &[]);
                    cpass.dispatch_workgroups(x, y, 1);
                }
            }
        }
        // Read back what the pass wrote and its partials, all through one buffer.
        enum Into {
            Buffer(usize, usize, usize),
            Partials(usize),
            Packed(usize, usize, usize),
        }
        let mut plan = Vec::new();
        let mut total = 0u64;
        for l in &self.launches[p] {
            if l.len == 0 {
                continue;
            }
            for (k, &b) in shader.bufs.iter().enumerate() {
                if shader.writes[k] {
                    let size = 4 * l.len as u64;
                    plan.push((
                        &self.bufs[&(b, l.tensor, l.start)],
                        total,
                        size,
                        Into::Buffer(k, l.tensor, l.start),
                    ));
                    total += size;
                }
            }
            if let Some(part) = &l.partials {
                plan.push((part, total, part.size(), Into::Partials(l.tensor)));
                total += part.size();
            }
            if let Some(packed) = &l.packed {
                let size = 4 * l.len.div_ceil(2) as u64;
                plan.push((packed, total, size, Into::Packed(l.tensor, l.start, l.len)));
                total += size;
            }
        }
        let readback = match total {
            0 => None,
            n => Some(readback(ctx, &mut self.readback, n)),
        };
        if let Some(rb) = &readback {
            for (src, off, size, _) in &plan {
                encoder.copy_buffer_to_buffer(src, 0, rb, *off, *size);
            }
        }
        q.submit([encoder.finish()]);
        let mut per: Vec<Vec<Vec<f64>>> = vec![Vec::new(); sizes.len()];
        let Some(rb) = readback else {
            return Ok(per);
        };
        let slice = rb.slice(..total);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::user(format!("the GPU `{}` failed: {e}", ctx.adapter)))?;
        if let Some(e) = ctx.take_error() {
            return Err(Error::user(format!(
                "the GPU `{}` failed: {e}",
                ctx.adapter
            )));
        }
        rx.recv()
            .map_err(|_| "the GPU readback was dropped".to_string())?
            .map_err(|e| {
                Error::user(format!(
                    "cannot read results back from `{}`: {e}",
                    ctx.adapter
                ))
            })?;
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::user(format!("cannot read results back: {e}")))?;
            let floats = |off: u64, size: u64| {
                view[off as usize..(off + size) as usize]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            };
            for (_, off, size, into) in &plan {
                match *into {
                    Into::Buffer(k, t, start) => {
                        // SAFETY: as for the uploads; the pass writes buffer k, and
                        // Fused::run_pass lends it mutably for the call.
                        let host = unsafe { std::slice::from_raw_parts_mut(ptrs[t][k], sizes[t]) };
                        for (h, v) in host[start..].iter_mut().zip(floats(*off, *size)) {
                            *h = v;
                        }
                        let b = shader.bufs[k];
                        if !b.is_temporary() {
                            self.fresh.insert((b, t));
                        }
                    }
                    Into::Packed(t, start, len) => {
                        if self.stored.len() != sizes.len() {
                            self.stored = sizes.iter().map(|&n| vec![0.0; n]).collect();
                        }
                        let halves = view[*off as usize..(*off + *size) as usize]
                            .chunks_exact(2)
                            .map(|c| u16::from_le_bytes([c[0], c[1]]));
                        let out = &mut self.stored[t][start..start + len];
                        for (x, h) in out.iter_mut().zip(halves) {
                            *x = match self.weights {
                                Dtype::Bf16 => half::bf16::from_bits(h).to_f32(),
                                _ => half::f16::from_bits(h).to_f32(),
                            };
                        }
                    }
                    Into::Partials(t) => {
                        let vals: Vec<f32> = floats(*off, *size).collect();
                        for row in vals.chunks_exact(nred.max(1)) {
                            per[t].push(
                                row.iter()
                                    .zip(&shader.reductions)
                                    .map(|(&v, &op)| super::triton::partial(op, f64::from(v)))
                                    .collect(),
                            );
                        }
                    }
                }
            }
        }
        rb.unmap();
        Ok(per)
    }
}
