//! The builtin `sam`: Optax's `contrib.sam` in its default (transparent) mode (Foret et al.
//! 2021, "Sharpness-Aware Minimization", as optax 0.2 writes it). It wraps two chains of
//! its own — the adversarial chain (e.g. `normalize() |> sgd(learning_rate: rho)`) and the
//! outer optimizer — and alternates between them over `sync_period` calls:
//!
//! - every call runs the adversarial chain at the parameters and the outer chain at the
//!   cached outer parameters, on the gradient it was given;
//! - a call that is not the last of its period moves the parameters *against* the
//!   adversarial update (ascent, to the adversarial point); the outer chain's state does
//!   not advance;
//! - the last call of a period sets the parameters to cache + outer update (computed as
//!   Optax does, p + ((cache − p) + u) in f32), keeps the outer chain's new state and
//!   resets the adversarial chain's (or, without `reset_state`, keeps its state from before
//!   the call);
//! - the first call of a period caches the parameters it was given.
//!
//! The chains run on interpreters of their own over the same tensors; their step states
//! live in this stage's (`SamState`).

use super::{Interpreter, Oracle};
use crate::error::{Error, Result};
use crate::ir::{HyperValue, Recipe, StageInst};
use crate::state::{BuiltinState, SamState, StepState};

/// The arguments of a `sam` stage.
struct Args {
    outer: Vec<StageInst>,
    adv: Vec<StageInst>,
    sync_period: u64,
    reset_state: bool,
}

impl<'p> Interpreter<'p> {
    fn sam_args(&self, si: usize) -> Result<Args> {
        let stage = &self.recipe.stages[si];
        let arg = |name: &str| -> Result<&HyperValue> {
            stage
                .arg(self.program, name)
                .ok_or_else(|| Error::internal(format!("sam needs `{name}`")))
        };
        let chain = |name: &str| -> Result<Vec<StageInst>> {
            match arg(name)? {
                HyperValue::Chain(stages) if !stages.is_empty() => Ok(stages.clone()),
                _ => Err(Error::user(format!(
                    "sam's `{name}` must be a chain of stages"
                ))),
            }
        };
        let sync_period = match arg("sync_period")? {
            HyperValue::Int(n) if *n >= 1 => *n as u64,
            other => {
                return Err(Error::user(format!(
                    "sam's `sync_period` must be a whole number >= 1, not {other:?}"
                )))
            }
        };
        Ok(Args {
            outer: chain("optimizer")?,
            adv: chain("adv_optimizer")?,
            sync_period,
            reset_state: !matches!(arg("reset_state")?, HyperValue::Bool(false)),
        })
    }

    /// An interpreter of `stages` over this interpreter's tensors, with its state created
    /// at `params` and its random stream seeded with `seed`.
    fn nested(
        &self,
        stages: &[StageInst],
        params: &[Vec<f32>],
        seed: u64,
    ) -> Result<(Interpreter<'p>, StepState)> {
        let writes_param = stages
            .iter()
            .any(|s| self.program.defs[s.def].writes_param());
        let recipe = Recipe {
            stages: stages.to_vec(),
            applies_updates: !writes_param,
            ..self.recipe.clone()
        };
        let (it, mut st) =
            Interpreter::with_shapes(self.program, &recipe, &self.names, &self.shapes, params)?;
        st.set_seed(seed);
        Ok((it, st))
    }

    pub(super) fn sam_init(&self, si: usize, params: &[Vec<f32>], seed: u64) -> Result<SamState> {
        let a = self.sam_args(si)?;
        Ok(SamState {
            since_sync: 0,
            cache: params.to_vec(),
            adv: self.nested(&a.adv, params, seed)?.1,
            outer: self.nested(&a.outer, params, seed)?.1,
        })
    }

    /// One call: the parameters after it.
    pub(super) fn run_sam(
        &self,
        parent: &mut StepState,
        si: usize,
        params: Vec<Vec<f32>>,
        grads: &[Vec<f32>],
        mut oracle: Option<&mut (dyn Oracle + '_)>,
    ) -> Result<Vec<Vec<f32>>> {
        let a = self.sam_args(si)?;
        let seed = parent.seed();
        let mut st = match parent.take_builtin(si) {
            Some(BuiltinState::Sam(s)) => s,
            _ => self.sam_init(si, &params, seed)?,
        };
        let first = st.since_sync == 0;
        let last = st.since_sync + 1 == a.sync_period;
        // The chains step copies of their states: a call keeps only some of them.
        let (adv, _) = self.nested(&a.adv, &params, seed)?;
        let mut adv_st = st.adv.clone();
        let adv_update = adv.update_at(
            &mut adv_st,
            &params,
            grads,
            oracle.as_mut().map(|o| &mut **o as &mut dyn Oracle),
        )?;
        let (outer, _) = self.nested(&a.outer, &st.cache, seed)?;
        let mut outer_st = st.outer.clone();
        let outer_update = outer.update_at(&mut outer_st, &st.cache, grads, oracle)?;
        let next: Vec<Vec<f32>> = if last {
            params
                .iter()
                .zip(&st.cache)
                .zip(&outer_update)
                .map(|((p, c), u)| {
                    p.iter()
                        .zip(c)
                        .zip(u)
                        .map(|((p, c), u)| p + ((c - p) + u))
                        .collect()
                })
                .collect()
        } else {
            params
                .iter()
                .zip(&adv_update)
                .map(|(p, u)| p.iter().zip(u).map(|(p, u)| p + -u).collect())
                .collect()
        };
        if last {
            st.outer = outer_st;
            if a.reset_state {
                st.adv = self.nested(&a.adv, &params, seed)?.1;
            }
        } else {
            st.adv = adv_st;
        }
        if first {
            st.cache = params;
        }
        st.since_sync = (st.since_sync + 1) % a.sync_period;
        parent.put_builtin(si, BuiltinState::Sam(st));
        Ok(next)
    }
}
