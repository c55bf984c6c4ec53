//! `anneal bench --backend wgsl`: a step's passes on buffers already on the device,
//! timed against a copy shader over the same bytes on the same device. Entry point:
//! `time_on_device`.

use super::{bytes, GpuPasses};
use crate::backends::wgsl;
use crate::error::{Error, Result};
use crate::ir::Dtype;
use crate::kernel::Kernel;

/// What `time_on_device` measured: the step's passes and a copy shader over the same
/// bytes, both on buffers already on the device, alternated so both see the same GPU.
#[derive(Debug, Clone)]
pub struct DeviceTiming {
    pub adapter: String,
    /// The fastest step (every pass over every tensor, one submission), in ms.
    pub step_ms: f64,
    /// The fastest copy of `copy_bytes` (half read, half written), in ms.
    pub copy_ms: f64,
    pub copy_bytes: usize,
}

/// A shader that copies one f32 array into another: the bandwidth baseline.
const COPY: &str = "@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> groups_x: vec4<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32) {
    let i = (wg.y * groups_x.x + wg.x) * 256u + l;
    if (i < arrayLength(&dst)) {
        dst[i] = src[i];
    }
}
";

/// Times `kernel`'s passes over tensors of `sizes` against a copy shader moving
/// `step_bytes`, without host transfers: what the GPU does per step when the parameters
/// and states live there. Scalar slots hold 0.5 (the values do not change the memory
/// traffic). `rounds` alternations; each times `reps` steps in one submission.
pub fn time_on_device(
    kernel: &Kernel,
    sizes: &[usize],
    step_bytes: usize,
    rounds: usize,
) -> Result<DeviceTiming> {
    let passes = GpuPasses::new(kernel, sizes, 0, Dtype::F32)?;
    let ctx = passes.ctx;
    let (d, q) = (&ctx.device, &ctx.queue);
    for (p, shader) in passes.shaders.iter().enumerate() {
        for l in &passes.launches[p] {
            let (x, _) = wgsl::dispatch(l.len, shader.per_group);
            let mut u = Vec::with_capacity(shader.uniform_bytes());
            u.extend((l.len as u32).to_le_bytes());
            u.extend(x.to_le_bytes());
            u.extend([0u8; 8]);
            while u.len() < shader.uniform_bytes() {
                u.extend(0.5f32.to_le_bytes());
            }
            q.write_buffer(&l.uniform, 0, &u);
        }
    }
    for ((_, _, _), b) in passes.bufs.iter() {
        let n = (b.size() / 4) as usize;
        q.write_buffer(b, 0, bytes(&vec![0.25f32; n]));
    }
    // The copy: chunks within the binding limit, half the step's bytes read, half written.
    let floats = (step_bytes / 8).max(1);
    let chunk = ((ctx.max_binding / 4) as usize / 256 * 256).max(256);
    let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("anneal copy"),
        source: wgpu::ShaderSource::Wgsl(COPY.into()),
    });
    let copy = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("anneal copy"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let mut copies = Vec::new();
    let mut start = 0;
    while start < floats {
        let n = chunk.min(floats - start);
        let mk = |usage| {
            d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("anneal copy"),
                size: 4 * n as u64,
                usage,
                mapped_at_creation: false,
            })
        };
        let src = mk(wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST);
        q.write_buffer(&src, 0, bytes(&vec![0.25f32; n]));
        let dst = mk(wgpu::BufferUsages::STORAGE);
        let (x, y) = wgsl::dispatch(n, wgsl::WORKGROUP as usize);
        let uniform = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("anneal copy"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        q.write_buffer(
            &uniform,
            0,
            &[x.to_le_bytes(), [0; 4], [0; 4], [0; 4]].concat(),
        );
        let group = d.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("anneal copy"),
            layout: &copy.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: src.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: dst.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: uniform.as_entire_binding(),
                },
            ],
        });
        copies.push((group, x, y, src, dst, uniform));
        start += n;
    }
    let wait = || {
        d.poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::user(format!("the GPU `{}` failed: {e}", ctx.adapter)))
    };
    // Enough repetitions per submission that submitting and waiting is noise.
    let reps = 10;
    let time = |f: &dyn Fn(&mut wgpu::ComputePass)| -> Result<f64> {
        let mut enc = d.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut cp = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            for _ in 0..reps {
                f(&mut cp);
            }
        }
        let t = std::time::Instant::now();
        q.submit([enc.finish()]);
        wait()?;
        Ok(t.elapsed().as_secs_f64() * 1e3 / reps as f64)
    };
    let step = |cp: &mut wgpu::ComputePass| {
        for (p, launches) in passes.launches.iter().enumerate() {
            cp.set_pipeline(&passes.pipelines[p].0);
            for l in launches.iter().filter(|l| l.len > 0) {
                let (x, y) = wgsl::dispatch(l.len, passes.shaders[p].per_group);
                cp.set_bind_group(0, &l.group, &[]);
                cp.dispatch_workgroups(x, y, 1);
            }
        }
    };
    let copy_all = |cp: &mut wgpu::ComputePass| {
        cp.set_pipeline(&copy);
        for (group, x, y, ..) in &copies {
            cp.set_bind_group(0, group, &[]);
            cp.dispatch_workgroups(*x, *y, 1);
        }
    };
    wait()?;
    let (_, _) = (time(&step)?, time(&copy_all)?);
    let (mut best_step, mut best_copy) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..rounds.max(1) {
        best_step = best_step.min(time(&step)?);
        best_copy = best_copy.min(time(&copy_all)?);
    }
    Ok(DeviceTiming {
        adapter: ctx.adapter.clone(),
        step_ms: best_step,
        copy_ms: best_copy,
        copy_bytes: floats * 8,
    })
}
