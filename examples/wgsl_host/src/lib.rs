//! A host for an update step exported by `anneal export FILE --target wgsl -o DIR`.
//! Entry point: `Step::load`. It reads only `DIR/manifest.json` and the `passN.wgsl`
//! files and runs them with plain wgpu, as another project would: per tensor one buffer
//! per role (parameters, gradients, element states), one uniform block and bind group per
//! pass; per step the host arithmetic of the manifest (hyperparameters, bias corrections,
//! reduction results, skips and scalar states) in f64, the shaders for everything per
//! element.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use wgpu::util::DeviceExt;

type Res<T> = Result<T, String>;

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        _ => f64::NAN,
    }
}

fn field(v: &Value, key: &str) -> Res<usize> {
    v[key]
        .as_u64()
        .map(|x| x as usize)
        .ok_or_else(|| format!("manifest: `{key}` missing in {v}"))
}

fn truth(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// `min`/`max` as anneal means them: a NaN operand yields the other one.
fn pick(x: f64, y: f64, max: bool) -> f64 {
    if y.is_nan() {
        x
    } else if x.is_nan() {
        y
    } else if (x > y) == max {
        x
    } else {
        y
    }
}

/// One node of an expression list over earlier nodes' values `v`.
fn apply(node: &Value, v: &[f64], leaf: &dyn Fn(&Value) -> Res<f64>) -> Res<f64> {
    let op = node["op"].as_str().unwrap_or("");
    let args: Vec<f64> = node["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    v.get(i.as_u64().unwrap_or(u64::MAX) as usize)
                        .copied()
                        .unwrap_or(f64::NAN)
                })
                .collect()
        })
        .unwrap_or_default();
    let a = |k: usize| args.get(k).copied().unwrap_or(f64::NAN);
    Ok(match op {
        "neg" => -a(0),
        "not" => truth(a(0) == 0.0),
        "add" => a(0) + a(1),
        "sub" => a(0) - a(1),
        "mul" => a(0) * a(1),
        "div" => a(0) / a(1),
        "pow" => a(0).powf(a(1)),
        "and" => truth(a(0) != 0.0 && a(1) != 0.0),
        "or" => truth(a(0) != 0.0 || a(1) != 0.0),
        "lt" => truth(a(0) < a(1)),
        "le" => truth(a(0) <= a(1)),
        "gt" => truth(a(0) > a(1)),
        "ge" => truth(a(0) >= a(1)),
        "eq" => truth(a(0) == a(1)),
        "ne" => truth(a(0) != a(1)),
        "select" => {
            if a(0) != 0.0 {
                a(1)
            } else {
                a(2)
            }
        }
        "sqrt" => a(0).sqrt(),
        "exp" => a(0).exp(),
        "log" => a(0).ln(),
        "abs" => a(0).abs(),
        "sign" => {
            if a(0) > 0.0 {
                1.0
            } else if a(0) < 0.0 {
                -1.0
            } else {
                a(0)
            }
        }
        "min" => pick(a(0), a(1), false),
        "max" => pick(a(0), a(1), true),
        "clamp" => pick(pick(a(0), a(1), true), a(2), false),
        "lerp" => {
            let (x, y, w) = (a(0), a(1), a(2));
            if w.abs() < 0.5 {
                x + w * (y - x)
            } else {
                y - (y - x) * (1.0 - w)
            }
        }
        "floor" => a(0).floor(),
        "ceil" => a(0).ceil(),
        "cos" => a(0).cos(),
        "sin" => a(0).sin(),
        "tanh" => a(0).tanh(),
        "is_finite" => truth(a(0).is_finite()),
        "is_none" => truth(a(0).is_nan()),
        _ => leaf(node)?,
    })
}

/// The GPU objects of one pass over one tensor.
struct Launch {
    uniform: wgpu::Buffer,
    partials: Option<wgpu::Buffer>,
    group: wgpu::BindGroup,
    groups: (u32, u32),
}

/// An exported step bound to tensors of given sizes, with its state.
pub struct Step {
    /// The manifest; shared so a step can read it while it updates the rest of `self`.
    m: Arc<Value>,
    device: wgpu::Device,
    queue: wgpu::Queue,
    sizes: Vec<usize>,
    pipelines: Vec<wgpu::ComputePipeline>,
    launches: Vec<Vec<Launch>>,
    /// Per buffer name (manifest `buffers`), per tensor.
    bufs: Vec<Vec<wgpu::Buffer>>,
    /// Scalar and per-tensor states: (stage, state) → value per tensor.
    host_states: Vec<((usize, usize), Vec<f64>)>,
    /// Updates made per stage.
    runs: Vec<u64>,
    /// Hyperparameter values by (stage, index); callers may change them between steps
    /// (a schedule's value at the coming step).
    pub hypers: Vec<((usize, usize), Value)>,
}

impl Step {
    /// Loads `dir`'s manifest and shaders and binds them to `params` (one f32 vector per
    /// tensor), creating element states from their `init` expressions.
    pub fn load(dir: &Path, params: &[Vec<f32>]) -> Res<Step> {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .map_err(|e| format!("cannot read {}: {e}", dir.join(f).display()))
        };
        let m: Value = serde_json::from_str(&read("manifest.json")?)
            .map_err(|e| format!("manifest.json is not JSON: {e}"))?;
        if m["format"] != "anneal-wgsl/1" {
            return Err(format!(
                "manifest format {} is not anneal-wgsl/1",
                m["format"]
            ));
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
            .map_err(|e| format!("no GPU adapter: {e}"))?;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| format!("cannot open the GPU: {e}"))?;
        let sizes: Vec<usize> = params.iter().map(Vec::len).collect();
        let hypers = m["hypers"]
            .as_array()
            .ok_or("manifest: no hypers")?
            .iter()
            .map(|h| Ok(((field(h, "stage")?, field(h, "index")?), h["value"].clone())))
            .collect::<Res<Vec<_>>>()?;
        let mut step = Step {
            m: Arc::new(Value::Null),
            device,
            queue,
            sizes,
            pipelines: Vec::new(),
            launches: Vec::new(),
            bufs: Vec::new(),
            host_states: Vec::new(),
            runs: Vec::new(),
            hypers,
        };
        let names: Vec<String> = m["buffers"]
            .as_array()
            .ok_or("manifest: no buffers")?
            .iter()
            .map(|b| b.as_str().unwrap_or("").to_string())
            .collect();
        // Initial contents: parameters, zero gradients, states from their init lists.
        for name in &names {
            let mut per = Vec::new();
            for (t, p) in params.iter().enumerate() {
                let data: Vec<f32> = match name.as_str() {
                    "param" => p.clone(),
                    "grad" => vec![0.0; p.len()],
                    _ => {
                        let st = m["states"]
                            .as_array()
                            .and_then(|s| s.iter().find(|s| s["buffer"] == name.as_str()))
                            .ok_or_else(|| format!("manifest: no state for buffer {name}"))?;
                        let mut out = Vec::with_capacity(p.len());
                        for &x in p {
                            out.push(step.eval_list(&st["init"], t, Some(x))? as f32);
                        }
                        out
                    }
                };
                let data = if data.is_empty() { vec![0.0] } else { data };
                per.push(
                    step.device
                        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                            label: Some(name),
                            contents: bytes(&data),
                            usage: wgpu::BufferUsages::STORAGE
                                | wgpu::BufferUsages::COPY_DST
                                | wgpu::BufferUsages::COPY_SRC,
                        }),
                );
            }
            step.bufs.push(per);
        }
        for st in m["states"].as_array().ok_or("manifest: no states")? {
            if st["extent"] == "element" {
                continue;
            }
            let key = (field(st, "stage")?, field(st, "state")?);
            let vals = (0..params.len())
                .map(|t| step.eval_list(&st["init"], t, None))
                .collect::<Res<Vec<_>>>()?;
            step.host_states.push((key, vals));
        }
        step.runs = vec![0; field(&m, "stages")?];
        // Pipelines (auto layout) and one bind group per pass and tensor.
        for pass in m["passes"].as_array().ok_or("manifest: no passes")? {
            let file = pass["file"]
                .as_str()
                .ok_or("manifest: a pass has no file")?;
            let module = step
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(file),
                    source: wgpu::ShaderSource::Wgsl(read(file)?.into()),
                });
            let pipeline = step
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(file),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                });
            let layout = pipeline.get_bind_group_layout(0);
            let nred = pass["reductions"].as_array().map_or(0, Vec::len);
            let mut per = Vec::new();
            for t in 0..params.len() {
                let n = step.sizes[t];
                let wg = field(pass, "elements_per_workgroup")?;
                let max_x = field(&m["dispatch"], "max_groups_x")?;
                let groups = n.div_ceil(wg).max(1);
                let x = groups.min(max_x);
                let y = groups.div_ceil(x);
                let uniform = step.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size: field(pass, "uniform_bytes")? as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                let partials = (nred > 0).then(|| {
                    step.device.create_buffer(&wgpu::BufferDescriptor {
                        label: None,
                        size: (4 * groups * nred) as u64,
                        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: false,
                    })
                });
                let mut entries = Vec::new();
                for b in pass["bindings"].as_array().ok_or("manifest: no bindings")? {
                    let binding = field(b, "binding")? as u32;
                    let resource = match b["role"].as_str() {
                        Some("scalars") => uniform.as_entire_binding(),
                        Some("partials") => partials
                            .as_ref()
                            .ok_or("manifest: partials without reductions")?
                            .as_entire_binding(),
                        _ => {
                            let name = b["buffer"].as_str().unwrap_or("");
                            let k = names
                                .iter()
                                .position(|x| x == name)
                                .ok_or_else(|| format!("manifest: unknown buffer {name}"))?;
                            step.bufs[k][t].as_entire_binding()
                        }
                    };
                    entries.push(wgpu::BindGroupEntry { binding, resource });
                }
                let group = step.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &layout,
                    entries: &entries,
                });
                per.push(Launch {
                    uniform,
                    partials,
                    group,
                    groups: (x as u32, y as u32),
                });
            }
            step.pipelines.push(pipeline);
            step.launches.push(per);
        }
        step.m = Arc::new(m);
        Ok(step)
    }

    fn hyper(&self, node: &Value) -> Res<f64> {
        let key = (field(node, "stage")?, field(node, "index")?);
        let v = self
            .hypers
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("manifest: no hyperparameter {key:?}"))?;
        Ok(match node.get("element").and_then(Value::as_u64) {
            Some(k) => num(&v[k as usize]),
            None => num(v),
        })
    }

    /// Evaluates a state's `init` list for tensor `t` (and one element's parameter).
    fn eval_list(&self, list: &Value, t: usize, param: Option<f32>) -> Res<f64> {
        let nodes = list.as_array().ok_or("manifest: an init is not a list")?;
        let mut v = Vec::with_capacity(nodes.len());
        for node in nodes {
            let leaf = |n: &Value| -> Res<f64> {
                Ok(match n["op"].as_str() {
                    Some("const") => num(&n["value"]),
                    Some("hyper") => self.hyper(n)?,
                    Some("param") => param.map_or(f64::NAN, f64::from),
                    Some("numel") => self.sizes[t] as f64,
                    other => return Err(format!("manifest: unknown init node {other:?}")),
                })
            };
            v.push(apply(node, &v, &leaf)?);
        }
        Ok(v.last().copied().unwrap_or(f64::NAN))
    }

    /// Every host value for tensor `t`, given the reductions known so far.
    fn host_values(&self, t: usize, reduced: &[Option<Vec<f64>>]) -> Res<Vec<f64>> {
        let nodes = self.m["host"].as_array().ok_or("manifest: no host list")?;
        let mut v = Vec::with_capacity(nodes.len());
        for node in nodes {
            let leaf = |n: &Value| -> Res<f64> {
                Ok(match n["op"].as_str() {
                    Some("const") => num(&n["value"]),
                    Some("hyper") => self.hyper(n)?,
                    Some("numel") => self.sizes[t] as f64,
                    Some("step") => (self.runs[field(n, "stage")?] + 1) as f64,
                    Some("state") => {
                        let key = (field(n, "stage")?, field(n, "state")?);
                        self.host_states
                            .iter()
                            .find(|(k, _)| *k == key)
                            .map_or(f64::NAN, |(_, vals)| vals[t])
                    }
                    Some("reduce") => reduced
                        .get(field(n, "reduction")?)
                        .and_then(|r| r.as_ref())
                        .map_or(f64::NAN, |r| r[t]),
                    other => return Err(format!("manifest: unknown host node {other:?}")),
                })
            };
            v.push(apply(node, &v, &leaf)?);
        }
        Ok(v)
    }

    /// Runs pass `p` on every tensor; for a reduce pass, the partials per tensor.
    fn run_pass(&self, p: usize, values: &[Vec<f64>], active: f64) -> Res<Vec<Vec<f32>>> {
        let pass = &self.m["passes"][p];
        let slots: Vec<usize> = pass["slots"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_u64().map(|x| x as usize))
                    .collect()
            })
            .unwrap_or_default();
        let mut enc = self.device.create_command_encoder(&Default::default());
        for (t, l) in self.launches[p].iter().enumerate() {
            let mut u: Vec<u8> = Vec::new();
            u.extend((self.sizes[t] as u32).to_le_bytes());
            u.extend(l.groups.0.to_le_bytes());
            u.extend([0u8; 8]);
            for &h in &slots {
                u.extend((values[t][h] as f32).to_le_bytes());
            }
            if pass["guarded"] == true {
                u.extend((active as f32).to_le_bytes());
            }
            u.resize(field(pass, "uniform_bytes")?, 0);
            self.queue.write_buffer(&l.uniform, 0, &u);
        }
        {
            let mut cp = enc.begin_compute_pass(&Default::default());
            cp.set_pipeline(&self.pipelines[p]);
            for (t, l) in self.launches[p].iter().enumerate() {
                if self.sizes[t] > 0 {
                    cp.set_bind_group(0, &l.group, &[]);
                    cp.dispatch_workgroups(l.groups.0, l.groups.1, 1);
                }
            }
        }
        self.queue.submit([enc.finish()]);
        let mut out = Vec::new();
        for (t, l) in self.launches[p].iter().enumerate() {
            out.push(match &l.partials {
                Some(b) if self.sizes[t] > 0 => self.read(b)?,
                _ => Vec::new(),
            });
        }
        Ok(out)
    }

    fn read(&self, buf: &wgpu::Buffer) -> Res<Vec<f32>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: buf.size(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, buf.size());
        self.queue.submit([enc.finish()]);
        staging.map_async(wgpu::MapMode::Read, .., |r| {
            if let Err(e) = r {
                eprintln!("map failed: {e}");
            }
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("GPU: {e}"))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| format!("cannot map: {e}"))?;
        Ok(view
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// The current parameters, read back from the GPU.
    pub fn params(&self) -> Res<Vec<Vec<f32>>> {
        (0..self.sizes.len())
            .map(|t| {
                let mut v = self.read(&self.bufs[0][t])?;
                v.truncate(self.sizes[t]);
                Ok(v)
            })
            .collect()
    }

    /// One update with `grads` (one vector per tensor).
    pub fn step(&mut self, grads: &[Vec<f32>]) -> Res<()> {
        let m = Arc::clone(&self.m);
        for (t, g) in grads.iter().enumerate() {
            if !g.is_empty() {
                self.queue.write_buffer(&self.bufs[1][t], 0, bytes(g));
            }
        }
        let reds = m["reductions"]
            .as_array()
            .ok_or("manifest: no reductions")?;
        let mut reduced: Vec<Option<Vec<f64>>> = vec![None; reds.len()];
        let nt = self.sizes.len();
        let passes = m["passes"].as_array().ok_or("manifest: no passes")?;
        for (p, pass) in passes.iter().enumerate() {
            if pass["kind"] != "reduce" {
                continue;
            }
            let values = (0..nt)
                .map(|t| self.host_values(t, &reduced))
                .collect::<Res<Vec<_>>>()?;
            let partials = self.run_pass(p, &values, 0.0)?;
            let ids: Vec<usize> = pass["reductions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_u64().map(|x| x as usize))
                        .collect()
                })
                .unwrap_or_default();
            for (j, &r) in ids.iter().enumerate() {
                let op = reds[r]["op"].as_str().unwrap_or("");
                let combine = |acc: f64, x: f64| match op {
                    "max" => acc.max(x),
                    "min" => acc.min(x),
                    "all_finite" => acc + if x != 0.0 { f64::NAN } else { 0.0 },
                    _ => acc + x,
                };
                let init = match op {
                    "max" => f64::NEG_INFINITY,
                    "min" => f64::INFINITY,
                    _ => 0.0,
                };
                let per: Vec<f64> = partials
                    .iter()
                    .map(|ps| {
                        ps.chunks_exact(ids.len())
                            .fold(init, |a, row| combine(a, f64::from(row[j])))
                    })
                    .collect();
                let finish = |v: f64, n: usize| match op {
                    "norm" => v.sqrt(),
                    "mean" => v / n as f64,
                    "all_finite" => truth(v.is_finite()),
                    _ => v,
                };
                let vals = if reds[r]["scope"] == "tensor" {
                    (0..nt).map(|t| finish(per[t], self.sizes[t])).collect()
                } else {
                    let all = per.iter().fold(init, |a, &x| combine(a, x));
                    let n: usize = self.sizes.iter().sum();
                    vec![finish(all, n); nt]
                };
                reduced[r] = Some(vals);
            }
        }
        let values = (0..nt)
            .map(|t| self.host_values(t, &reduced))
            .collect::<Res<Vec<_>>>()?;
        let stages = self.runs.len();
        // The first skip that fires stops the step after its own stage.
        let (mut active, mut skipped) = (stages, false);
        for s in m["skips"].as_array().into_iter().flatten() {
            if nt > 0 && values[0][field(s, "condition")?] != 0.0 {
                active = field(s, "stage")? + 1;
                skipped = true;
                break;
            }
        }
        let (kind, flag) = if skipped {
            ("skip_map", active as f64)
        } else {
            ("map", (stages + 1) as f64)
        };
        if let Some(p) = passes.iter().position(|pass| pass["kind"] == kind) {
            self.run_pass(p, &values, flag)?;
        }
        for st in m["states"].as_array().into_iter().flatten() {
            let stage = field(st, "stage")?;
            let (Some(h), true) = (st["update"].as_u64(), stage < active) else {
                continue;
            };
            let key = (stage, field(st, "state")?);
            let new: Vec<f64> = (0..nt).map(|t| values[t][h as usize]).collect();
            if let Some((_, v)) = self.host_states.iter_mut().find(|(k, _)| *k == key) {
                *v = if st["extent"] == "scalar" {
                    vec![new.first().copied().unwrap_or(f64::NAN); nt]
                } else {
                    new
                };
            }
        }
        for r in self.runs.iter_mut().take(active) {
            *r += 1;
        }
        Ok(())
    }
}

fn bytes(x: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding; any f32 slice is a valid byte slice.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), std::mem::size_of_val(x)) }
}

/// The reference problem of `anneal export --reference`: tensors of 5 and 1027 elements
/// starting at `0.1·((7i + 3t) mod 11) − 0.5`; the gradient of `Σ (p − 0.25)²`.
pub fn reference_problem() -> Vec<Vec<f32>> {
    [5usize, 1027]
        .iter()
        .enumerate()
        .map(|(t, &n)| {
            (0..n)
                .map(|i| 0.1f32 * ((7 * i + 3 * t) % 11) as f32 - 0.5)
                .collect()
        })
        .collect()
}

/// Runs `steps` steps of the reference problem; the parameters after each step.
pub fn run_reference(dir: &Path, steps: usize) -> Res<Vec<Vec<Vec<f32>>>> {
    let mut params = reference_problem();
    let mut step = Step::load(dir, &params)?;
    let mut out = Vec::new();
    for _ in 0..steps {
        let grads: Vec<Vec<f32>> = params
            .iter()
            .map(|p| p.iter().map(|x| 2.0 * (x - 0.25)).collect())
            .collect();
        step.step(&grads)?;
        params = step.params()?;
        out.push(params.clone());
    }
    Ok(out)
}
