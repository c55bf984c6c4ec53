//! The cost of a parallelism plan (`anneal plan`): memory per device, bytes communicated
//! per step, the pipeline bubble, and whether it fits. Entry point: `estimate`; `suggest`
//! ranks the feasible plans for a world size.
//!
//! Model states follow Rajbhandari et al. 2020 (ZeRO, §3 and §5): Ψ parameters, each
//! device of a tensor × pipeline model-parallel group holding Ψ/(t·p) of them; weights and
//! gradients in the recipe's storage type; the optimizer's element states in f32 plus an
//! f32 master copy when the weights are stored in half precision — read from the recipe's
//! compiled step, so mixed-precision Adam costs K = 12 bytes per parameter as in the paper.
//! ZeRO-1 shards the optimizer state over the data-parallel degree d, ZeRO-2 gradients
//! too, ZeRO-3 weights too.
//!
//! Activations per transformer layer and micro-batch follow Korthikanti et al. 2022
//! ("Reducing Activation Recomputation", §4): s·b·h·(34 + 5·a·s/h) bytes in 16-bit, with
//! tensor parallelism t (no sequence parallelism) s·b·h·(10 + 24/t + 5·a·s/(h·t)), and
//! 2·s·b·h (each layer's input) with full checkpointing. A 1F1B pipeline's first stage holds
//! min(m, p) micro-batches (× (1 + (p − 1)/(p·v)) interleaved over v chunks), GPipe all m.
//!
//! Communication per device per step (bytes sent): a ring all-reduce of the gradients
//! moves 2(d − 1)/d of them (ZeRO-1/2's reduce-scatter + all-gather the same), ZeRO-3
//! 3(d − 1)/d (the weights are gathered in the forward and the backward pass); tensor
//! parallelism all-reduces each layer's activations twice forward and twice backward
//! (three times forward with checkpointing's recompute); pipeline stages send each
//! micro-batch's activations forward and gradients back.

use anneal_compiler::error::{Error, Result};
use anneal_compiler::ir::{Dtype, ParallelPlan, PipeSchedule, Program, Recipe};
use anneal_compiler::kernel::{lower, Buf};
use serde::Serialize;

/// The model a plan is costed for (what `anneal plan` asks on its command line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelShape {
    pub params: f64,
    pub layers: u64,
    pub hidden: u64,
    pub seq: u64,
    pub heads: u64,
}

/// Bytes per parameter the recipe keeps, before any sharding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StateBytes {
    pub weights: f64,
    pub grads: f64,
    /// Optimizer state: the f32 element states, plus the f32 master weights in mixed
    /// precision (K in the ZeRO paper).
    pub optimizer: f64,
    /// How many element state buffers the step keeps per parameter.
    pub state_buffers: usize,
}

/// What a recipe stores per parameter: read from its compiled step (the element states it
/// actually reads or writes), else from its declarations.
pub fn state_bytes(program: &Program, recipe: &Recipe) -> StateBytes {
    let buffers = match lower(program, recipe) {
        Ok(k) => {
            let mut states: Vec<Buf> = k
                .passes
                .iter()
                .flat_map(|p| p.bufs.iter().copied())
                .filter(|b| matches!(b, Buf::State { .. }))
                .collect();
            states.sort();
            states.dedup();
            states.len()
        }
        Err(_) => recipe
            .stages
            .iter()
            .filter_map(|s| match &program.defs[s.def].body {
                anneal_compiler::ir::DefBody::Stage(b) => Some(
                    b.states
                        .iter()
                        .filter(|st| st.extent == anneal_compiler::ir::Extent::Element)
                        .count(),
                ),
                _ => None,
            })
            .sum(),
    };
    let (weights, master) = match recipe.param_dtype {
        Dtype::F32 => (4.0, 0.0),
        Dtype::Bf16 | Dtype::F16 => (2.0, 4.0),
    };
    StateBytes {
        weights,
        grads: weights,
        optimizer: 4.0 * buffers as f64 + master,
        state_buffers: buffers,
    }
}

/// Memory per device, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PerRank {
    pub params: f64,
    pub grads: f64,
    pub optimizer_state: f64,
    pub activations: f64,
    pub total: f64,
}

/// A plan's cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub fits: bool,
    pub per_rank: PerRank,
    pub comm_bytes_per_step: f64,
    pub bubble_fraction: f64,
    /// Activations with the other checkpointing choice, for comparison.
    pub activations_other_checkpointing: f64,
    pub plan: PlanSummary,
    pub gpu_mem: f64,
    pub bytes_per_param: StateBytes,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanSummary {
    pub data: u64,
    pub tensor: u64,
    pub pipeline: u64,
    pub zero: u8,
    pub micro_batches: u64,
    pub micro_batch: u64,
    pub schedule: &'static str,
    pub checkpointing: bool,
}

/// Activation bytes one device holds for one micro-batch of `b` rows on its layers.
fn activations(m: &ModelShape, plan: &ParallelPlan, b: f64, checkpointing: bool) -> f64 {
    let (s, h, a) = (m.seq as f64, m.hidden as f64, m.heads.max(1) as f64);
    let t = plan.tensor as f64;
    let p = plan.pipeline as f64;
    let per_layer = if checkpointing {
        2.0 * s * b * h
    } else {
        s * b * h * (10.0 + 24.0 / t + 5.0 * a * s / (h * t))
    };
    let layers = (m.layers as f64 / p).ceil();
    let mb = plan.micro_batches as f64;
    let in_flight = match plan.schedule {
        PipeSchedule::Gpipe => mb,
        PipeSchedule::OneFOneB => mb.min(p),
        PipeSchedule::Interleaved { chunks } => mb.min(p) * (1.0 + (p - 1.0) / (p * chunks as f64)),
    };
    per_layer * layers * in_flight
}

/// The cost of `plan` for a model of shape `m` with the recipe's per-parameter bytes.
pub fn estimate(m: &ModelShape, plan: &ParallelPlan, bytes: StateBytes, gpu_mem: f64) -> Estimate {
    let (d, t, p) = (plan.data as f64, plan.tensor as f64, plan.pipeline as f64);
    let psi = m.params / (t * p);
    let shard = |on: bool| if on { d } else { 1.0 };
    let params = psi * bytes.weights / shard(plan.zero >= 3);
    let grads = psi * bytes.grads / shard(plan.zero >= 2);
    let optimizer_state = psi * bytes.optimizer / shard(plan.zero >= 1);
    let b = plan.micro_batch.unwrap_or(1) as f64;
    let acts = activations(m, plan, b, plan.checkpointing);
    let other = activations(m, plan, b, !plan.checkpointing);
    let total = params + grads + optimizer_state + acts;
    // Communication, bytes each device sends per step.
    let ring = |n: f64| if n > 1.0 { (n - 1.0) / n } else { 0.0 };
    let dp = psi * bytes.grads * if plan.zero >= 3 { 3.0 } else { 2.0 } * ring(d);
    let (s, h) = (m.seq as f64, m.hidden as f64);
    let act_bytes = s * b * h * 2.0;
    let layers = (m.layers as f64 / p).ceil();
    let mb = plan.micro_batches as f64;
    let tp_all_reduces = if plan.checkpointing { 6.0 } else { 4.0 };
    let tp = layers * mb * tp_all_reduces * 2.0 * ring(t) * act_bytes;
    let pp = if p > 1.0 { mb * 2.0 * act_bytes } else { 0.0 };
    Estimate {
        fits: total <= gpu_mem,
        per_rank: PerRank {
            params,
            grads,
            optimizer_state,
            activations: acts,
            total,
        },
        comm_bytes_per_step: dp + tp + pp,
        bubble_fraction: plan.bubble_fraction(),
        activations_other_checkpointing: other,
        plan: PlanSummary {
            data: plan.data,
            tensor: plan.tensor,
            pipeline: plan.pipeline,
            zero: plan.zero,
            micro_batches: plan.micro_batches,
            micro_batch: plan.micro_batch.unwrap_or(1),
            schedule: plan.schedule.name(),
            checkpointing: plan.checkpointing,
        },
        gpu_mem,
        bytes_per_param: bytes,
    }
}

/// Every plan for `world` devices that composes (ZeRO-2/3 only without pipelining, layers
/// divisible by stages, hidden and heads by the tensor degree, at most 8-way tensor
/// parallelism: one node) and fits, best first: smallest bubble, then fewest bytes
/// communicated, then without checkpointing (it recomputes the forward pass), then least
/// memory. `base` gives the micro-batching and schedule.
pub fn suggest(
    m: &ModelShape,
    world: u64,
    base: &ParallelPlan,
    bytes: StateBytes,
    gpu_mem: f64,
) -> Vec<Estimate> {
    let mut out = Vec::new();
    let divisors = |n: u64| (1..=n).filter(move |k| n.is_multiple_of(*k));
    for t in divisors(world).filter(|t| *t <= 8) {
        if !m.hidden.is_multiple_of(t) || !m.heads.is_multiple_of(t) {
            continue;
        }
        for p in divisors(world / t) {
            if !m.layers.is_multiple_of(p) {
                continue;
            }
            let d = world / t / p;
            for zero in 0..=3u8 {
                if zero >= 2 && p > 1 {
                    continue;
                }
                for checkpointing in [false, true] {
                    let plan = ParallelPlan {
                        data: d,
                        tensor: t,
                        pipeline: p,
                        zero,
                        checkpointing,
                        micro_batches: base.micro_batches.max(if p > 1 { 4 * p } else { 1 }),
                        world: Some(world),
                        ..base.clone()
                    };
                    let e = estimate(m, &plan, bytes, gpu_mem);
                    if e.fits {
                        out.push(e);
                    }
                }
            }
        }
    }
    let key = |e: &Estimate| {
        (
            e.bubble_fraction,
            e.comm_bytes_per_step,
            u8::from(e.plan.checkpointing),
            e.per_rank.total,
        )
    };
    out.sort_by(|a, b| {
        key(a)
            .partial_cmp(&key(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    out
}

/// `80GiB`, `80GB`, `80e9`, `1.5TiB`: bytes.
pub fn parse_bytes(text: &str) -> Result<f64> {
    let t = text.trim();
    // The unit is the trailing letters (`8e10` has none).
    let num = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &t[num.len()..];
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a size; write e.g. `80GiB`, `40GB` or `8e10`"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        other => {
            return Err(Error::user(format!(
                "unknown unit `{other}` in `{text}`; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
            )))
        }
    };
    if !(value.is_finite() && value > 0.0) {
        return Err(Error::user(format!("`{text}` must be a positive size")));
    }
    Ok(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_compiler::source::Span;

    /// Mixed-precision Adam: 2 + 2 bytes of weights and gradients, K = 12 of optimizer
    /// state (ZeRO paper, §3.1).
    const ADAM_MIXED: StateBytes = StateBytes {
        weights: 2.0,
        grads: 2.0,
        optimizer: 12.0,
        state_buffers: 2,
    };

    fn zero_paper(stage: u8) -> Estimate {
        // The paper's worked example (Figure 1): Ψ = 7.5B parameters, data-parallel degree
        // N_d = 64; activations left out (a zero-length sequence).
        let m = ModelShape {
            params: 7.5e9,
            layers: 1,
            hidden: 1,
            seq: 0,
            heads: 1,
        };
        let plan = ParallelPlan {
            data: 64,
            zero: stage,
            ..ParallelPlan::single(Span::default())
        };
        estimate(&m, &plan, ADAM_MIXED, 80e9)
    }

    #[test]
    fn model_states_per_device_are_the_zero_papers_figures() {
        // Figure 1: baseline (2 + 2 + K)Ψ = 120 GB; P_os 4Ψ + KΨ/N_d = 31.4 GB; P_os+g
        // 2Ψ + 14Ψ/N_d = 16.6 GB; P_os+g+p 16Ψ/N_d = 1.9 GB.
        let gb = |e: Estimate| (e.per_rank.total / 1e9 * 10.0).round() / 10.0;
        assert_eq!(gb(zero_paper(0)), 120.0);
        assert_eq!(gb(zero_paper(1)), 31.4);
        assert_eq!(gb(zero_paper(2)), 16.6);
        assert_eq!(gb(zero_paper(3)), 1.9);
    }

    #[test]
    fn communication_is_two_psi_until_zero_3_adds_a_third() {
        // §7: ZeRO-1 and 2 move 2Ψ per device (reduce-scatter + all-gather), like plain
        // data parallelism; ZeRO-3 1.5× that. In bytes of fp16, times (N − 1)/N.
        let psi_bytes = 7.5e9 * 2.0 * 63.0 / 64.0;
        assert_eq!(zero_paper(0).comm_bytes_per_step, 2.0 * psi_bytes);
        assert_eq!(zero_paper(2).comm_bytes_per_step, 2.0 * psi_bytes);
        assert_eq!(zero_paper(3).comm_bytes_per_step, 3.0 * psi_bytes);
    }

    #[test]
    fn activations_follow_korthikanti_et_al() {
        // GPT-3 175B's layer (Table 2 setting: s = 2048, h = 12288, a = 96, b = 1):
        // s·b·h·(34 + 5as/h) bytes without parallelism; with t = 8, 10 + 24/8 + 5as/(8h).
        let m = ModelShape {
            params: 0.0,
            layers: 1,
            hidden: 12288,
            seq: 2048,
            heads: 96,
        };
        let sbh = 2048.0 * 12288.0;
        let one = ParallelPlan::single(Span::default());
        let e = estimate(&m, &one, ADAM_MIXED, 1e12);
        let want = sbh * (34.0 + 5.0 * 96.0 * 2048.0 / 12288.0);
        assert!((e.per_rank.activations - want).abs() < 1.0);
        let t8 = ParallelPlan {
            tensor: 8,
            ..one.clone()
        };
        let e = estimate(&m, &t8, ADAM_MIXED, 1e12);
        let want = sbh * (10.0 + 3.0 + 5.0 * 96.0 * 2048.0 / (12288.0 * 8.0));
        assert!((e.per_rank.activations - want).abs() < 1.0);
        // Full recomputation keeps 2sbh per layer.
        assert!((e.activations_other_checkpointing - 2.0 * sbh).abs() < 1.0);
    }

    #[test]
    fn a_bigger_zero_stage_or_more_devices_never_needs_more_memory() {
        let m = ModelShape {
            params: 7e9,
            layers: 32,
            hidden: 4096,
            seq: 4096,
            heads: 32,
        };
        let mut last = f64::INFINITY;
        for zero in 0..=3u8 {
            let plan = ParallelPlan {
                data: 16,
                zero,
                ..ParallelPlan::single(Span::default())
            };
            let total = estimate(&m, &plan, ADAM_MIXED, 80e9).per_rank.total;
            assert!(total <= last);
            last = total;
        }
        let plans = suggest(
            &m,
            64,
            &ParallelPlan::single(Span::default()),
            ADAM_MIXED,
            80e9,
        );
        assert!(!plans.is_empty());
        for e in &plans {
            assert!(e.fits && e.per_rank.total <= 80e9);
            assert_eq!(e.plan.data * e.plan.tensor * e.plan.pipeline, 64);
            assert!(!(e.plan.zero >= 2 && e.plan.pipeline > 1));
        }
        assert!(plans
            .windows(2)
            .all(|w| w[0].bubble_fraction <= w[1].bubble_fraction));
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_bytes("80GiB").unwrap(), 80.0 * 1024f64.powi(3));
        assert_eq!(parse_bytes("40 GB").unwrap(), 40e9);
        assert_eq!(parse_bytes("8e10").unwrap(), 8e10);
        assert!(parse_bytes("80 GiBs")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1GB").is_err());
    }
}
