//! The evaluation view between steps: each stage's `eval param = ...`, in chain order, over
//! the parameters and that stage's states as the last step left them. Computed by the
//! reference interpreter for every back end (the states are the same `StepState`), off the
//! training hot path: a run evaluates and exports at most every few steps.

use super::*;

impl Interpreter<'_> {
    /// The parameters to evaluate after the steps `st` has taken; `None` when no stage
    /// declares an evaluation view (they are `params`).
    pub fn eval_params(
        &self,
        st: &StepState,
        params: &[Vec<f32>],
    ) -> Result<Option<Vec<Vec<f32>>>> {
        let mut ps: Option<Vec<Vec<f32>>> = None;
        for si in 0..self.recipe.stages.len() {
            if self.builtin_name(si).is_some() {
                continue;
            }
            let body = self.stage_body(si)?;
            let Some(view) = body.eval else {
                continue;
            };
            let runs = st.runs(si) as f64;
            // The hyperparameters of the last step taken; `step` counts the steps made.
            let hypers = self.hypers(st, si, (runs - 1.0).max(0.0))?;
            let current = ps.take().unwrap_or_else(|| params.to_vec());
            let cx = StepCx {
                it: self,
                st,
                body,
                args: &self.recipe.stages[si].args,
                hypers: &hypers,
                grad: current.iter().map(|p| vec![0.0; p.len()]).collect(),
                params: current,
                states: st.stage_states(si).to_vec(),
                locals: vec![V::U(0.0); body.locals.len()],
                step: runs,
                stage: si,
                oracle: std::cell::RefCell::new(None),
                matrices: Default::default(),
            };
            let v = cx.eval(view)?;
            ps = Some(cx.elements(v));
        }
        Ok(ps)
    }
}
