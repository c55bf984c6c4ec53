//! Matrix calls of a fused step (`CallKind::Matrix`): once the prepare pass has written
//! their per-element inputs, the host evaluates each tensor's matrix with
//! `crate::matrix` — the interpreter's own evaluator — and the result is the call's output
//! buffer, which the later passes read like a model call's.

use std::collections::BTreeMap;

use super::{Code, Fused};
use crate::error::{Error, Result};
use crate::kernel::host::HostEval;
use crate::kernel::{Buf, CallKind, MatLeaf};
use crate::matrix;
use crate::state::{StateValue, StepState};

/// For each matrix call about to run: its per-tensor numbers (by leaf, then tensor), in
/// `MatCall::scalars` order.
pub(super) type Numbers = BTreeMap<usize, Vec<Vec<f64>>>;

impl Fused<'_> {
    /// The per-tensor numbers the `ready` matrix calls read, while the host values are at
    /// hand.
    pub(super) fn matrix_numbers(&self, ev: &mut HostEval, ready: &[usize]) -> Result<Numbers> {
        let nt = self.interp.sizes.len();
        let mut out = BTreeMap::new();
        for &k in ready {
            let CallKind::Matrix(m) = self.kernel.calls[k].kind else {
                continue;
            };
            let mut per_leaf = Vec::new();
            for h in self.kernel.matrices[m].scalars() {
                let mut v = Vec::with_capacity(nt);
                for t in 0..nt {
                    v.push(ev.eval(h, t)?.ok_or_else(|| {
                        Error::internal("a matrix call runs before a number it reads is known")
                    })?);
                }
                per_leaf.push(v);
            }
            out.insert(k, per_leaf);
        }
        Ok(out)
    }

    /// Matrix call `k` (matrix expression `m`) on the inputs its prepare pass wrote and
    /// the matrix states in `st` (as the step began); the result is `CallOut(k)`.
    pub(super) fn call_matrix(
        &mut self,
        st: &StepState,
        k: usize,
        m: usize,
        numbers: &Numbers,
    ) -> Result<()> {
        let call = &self.kernel.matrices[m];
        let body = self.interp.stage_body(call.stage)?;
        let nums = numbers
            .get(&k)
            .ok_or_else(|| Error::internal("a matrix call without its numbers"))?;
        let ninputs = 1 + self.kernel.calls[k].more.len();
        let mut inputs = Vec::with_capacity(ninputs);
        for i in 0..ninputs {
            let buf = if i == 0 {
                Buf::CallArg(k)
            } else {
                Buf::MatIn(k, i)
            };
            inputs.push(self.temps.get(&buf).ok_or_else(|| {
                Error::internal(format!(
                    "matrix call {k} runs before its input {i} is written"
                ))
            })?);
        }
        let mut sources = Vec::with_capacity(call.leaves.len());
        let mut scalar = 0;
        for (id, l) in &call.leaves {
            let src =
                match l {
                    MatLeaf::Input(i) => {
                        matrix::Source::Elements(inputs.get(*i).ok_or_else(|| {
                            Error::internal("a matrix input the call does not have")
                        })?)
                    }
                    MatLeaf::State(s) => matrix::Source::state(body, *s, st.value(call.stage, *s))?,
                    MatLeaf::Scalar(_) => {
                        scalar += 1;
                        matrix::Source::Scalars(nums.get(scalar - 1).ok_or_else(|| {
                            Error::internal("a matrix number the call does not have")
                        })?)
                    }
                };
            sources.push((*id, src));
        }
        let name = |t: usize| self.interp.tensor_name(t).to_string();
        let sink = match (call.store, &body.exprs[call.root]) {
            (Some(s), _) => matrix::Sink::state(body, s)?,
            (None, crate::ir::Expr::Mat(op, _)) if op.gives_number() => matrix::Sink::Number,
            (None, _) => matrix::Sink::Elements,
        };
        let shared = self.matrices.entry(call.stage).or_default();
        let (pool, gemm) = match &self.code {
            Code::Cpu { pool, .. } => (pool.as_ref(), None),
            Code::Device(d) => (None, d.gemm()),
        };
        let out = matrix::evaluate(
            body,
            call.root,
            &self.interp.views,
            &name,
            &sources,
            sink,
            shared,
            pool,
            gemm.unwrap_or(&matrix::HostGemm),
        )?;
        self.temps.insert(Buf::CallOut(k), out);
        Ok(())
    }

    /// The shapes of the matrix products the last step computed, stage by stage.
    pub fn matrix_products(&self) -> Vec<matrix::Product> {
        self.matrices.values().flat_map(|s| s.products()).collect()
    }

    /// The matrix-state stores (call index, stage, state).
    pub(super) fn matrix_stores(&self) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        for (k, c) in self.kernel.calls.iter().enumerate() {
            if let CallKind::Matrix(m) = c.kind {
                if let Some(s) = self.kernel.matrices[m].store {
                    out.push((k, c.stage, s));
                }
            }
        }
        out
    }

    /// After the map pass: each store whose stage ran writes its matrix state.
    pub(super) fn commit_matrices(&mut self, st: &mut StepState, active: usize) -> Result<()> {
        for (k, stage, s) in self.matrix_stores() {
            if stage >= active {
                continue;
            }
            let v = self
                .temps
                .remove(&Buf::CallOut(k))
                .ok_or_else(|| Error::internal("a matrix store that did not run"))?;
            *st.value_mut(stage, s) = StateValue::Matrix(v);
        }
        Ok(())
    }
}
