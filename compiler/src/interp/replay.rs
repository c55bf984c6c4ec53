//! A memo of schedules' `observe` replays. A schedule that follows a metric is a pure
//! function of the count and the metrics before it, evaluated by replaying its `observe`
//! block over them; replaying from the first step at every step made a run quadratic in
//! its length (20 000 steps of ReduceLROnPlateau: 184 s against 0.3 s without it). The
//! memo keeps, per schedule call and group, the states after the metrics replayed so far,
//! so each step replays only the metrics that are new. It lives beside the metrics in
//! `StepState` and is never part of a state's identity: a checkpoint does not carry it,
//! and a state built from one starts with an empty memo.

use crate::ir::{DefId, HyperValue};
use std::sync::Mutex;

/// One schedule call's replay: `states` after `metrics[..observed]`.
#[derive(Debug, Clone)]
struct Replay {
    def: DefId,
    group: usize,
    args: Vec<HyperValue>,
    observed: usize,
    /// The bits of `metrics[observed - 1]`: a replay of another history is not reused.
    last: u64,
    states: Vec<f64>,
}

#[derive(Debug, Default)]
pub struct Replays(Mutex<Vec<Replay>>);

impl Clone for Replays {
    fn clone(&self) -> Self {
        Replays(Mutex::new(
            self.0.lock().map(|v| v.clone()).unwrap_or_default(),
        ))
    }
}

impl PartialEq for Replays {
    /// A memo: two states are equal whatever their memos hold.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

fn last_bits(metrics: &[f64], observed: usize) -> Option<u64> {
    match observed {
        0 => Some(0),
        n => metrics.get(n - 1).map(|m| m.to_bits()),
    }
}

impl Replays {
    /// The states of `def(args)` for `group` after the longest replayed prefix of
    /// `metrics[..upto]`, and its length; `None` when nothing is kept for it.
    pub(crate) fn resume(
        &self,
        def: DefId,
        group: usize,
        args: &[HyperValue],
        metrics: &[f64],
        upto: usize,
    ) -> Option<(usize, Vec<f64>)> {
        let kept = self.0.lock().ok()?;
        let r = kept
            .iter()
            .find(|r| r.def == def && r.group == group && r.args == args)?;
        (r.observed <= upto && last_bits(metrics, r.observed) == Some(r.last))
            .then(|| (r.observed, r.states.clone()))
    }

    /// Keeps the states of `def(args)` for `group` after `metrics[..observed]`.
    pub(crate) fn keep(
        &self,
        def: DefId,
        group: usize,
        args: &[HyperValue],
        metrics: &[f64],
        observed: usize,
        states: &[f64],
    ) {
        let (Ok(mut kept), Some(last)) = (self.0.lock(), last_bits(metrics, observed)) else {
            return;
        };
        let entry = Replay {
            def,
            group,
            args: args.to_vec(),
            observed,
            last,
            states: states.to_vec(),
        };
        match kept
            .iter_mut()
            .find(|r| r.def == def && r.group == group && r.args == args)
        {
            Some(r) if r.observed <= observed => *r = entry,
            Some(_) => {}
            None => kept.push(entry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Replays;
    use crate::interp::{eval_sched_observed, Env};

    #[test]
    fn a_memo_gives_what_a_replay_from_the_start_gives() {
        let c = crate::compile(
            "t.anneal",
            "import std.torch.{ReduceLROnPlateau}\nrecipe r {\n  schedule lr = \
             ReduceLROnPlateau(base_lr: 1.0, patience: 2, factor: 0.5)\n}\n",
        );
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let sched = &c.program.recipes[0].schedules[0].1;
        // A loss that stalls twice, so the rate halves.
        let metrics: Vec<f64> = (0..40)
            .map(|k| {
                if k < 10 {
                    1.0 / (k + 1) as f64
                } else {
                    0.1 + (k % 3) as f64
                }
            })
            .collect();
        let at = |metrics: &[f64], replays: Option<&Replays>, k: usize| {
            let env = Env {
                program: &c.program,
                metrics: &metrics[..k],
                replays,
            };
            eval_sched_observed(env, sched, k as f64, 0).unwrap()
        };
        let memo = Replays::default();
        // In order, then out of order (an earlier count), then on another history of the
        // same length: each as a replay from the first step says.
        for k in (0..=40).chain([7, 3, 40]) {
            assert_eq!(
                at(&metrics, Some(&memo), k),
                at(&metrics, None, k),
                "count {k}"
            );
        }
        let other: Vec<f64> = metrics.iter().map(|m| m * 2.0).collect();
        assert_eq!(at(&other, Some(&memo), 40), at(&other, None, 40));
        assert!(at(&metrics, None, 40) < 1.0, "the rate should have dropped");
    }
}
