//! Checkpoints: the weights and the interpreter's progress (step counts, every stage's
//! state, observed metrics), with the layout they belong to and a hash of the recipe, in
//! one binary file protected by a checksum. Files are written to a temporary name, synced
//! and renamed, so a reader never sees half a checkpoint; a checkpoint from another recipe,
//! another model, or a damaged file is refused with the reason.
//!
//! Layout: `ANNEALCK`, format version (u32), header length (u32), the header as JSON
//! (recipe hash, step, tensor names and shapes, state layout), the payload (little-endian
//! numbers: the parameters, the evaluation view when the recipe has one, the progress),
//! and an FNV-1a 64 checksum of everything before it.

use crate::curriculum::SamplerState;
use anneal_compiler::error::{Error, Result};
use anneal_compiler::interp::Slice;
use anneal_compiler::state::{StateValue, StepState};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 8] = b"ANNEALCK";
const VERSION: u32 = 1;

/// What a checkpoint restores.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub recipe_hash: u64,
    /// Optimizer steps completed.
    pub step: u64,
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    pub params: Vec<Vec<f32>>,
    /// The parameters to evaluate and export, when the recipe's evaluation view (`eval
    /// param`, schedule-free's average x) differs from `params`, the iterate a resumed run
    /// continues from.
    pub eval_params: Option<Vec<Vec<f32>>>,
    pub snapshot: StepState,
    /// The curriculum sampler's progress, for recipes with a curriculum.
    pub curriculum: Option<SamplerState>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Header {
    recipe_hash: String,
    step: u64,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    /// Per stage, per state: `element`, `tensor`, `scalar`, `row`, `col`, `outer`, `unit`,
    /// with the number of values per tensor.
    states: Vec<Vec<(String, Vec<usize>)>>,
    stages: usize,
    metrics: usize,
    /// Absent in checkpoints of runs without a curriculum (and in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    curriculum: Option<SamplerState>,
    /// Whether the evaluation view follows the parameters in the payload (absent: no).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    eval: bool,
}

/// FNV-1a, 64 bits: enough to detect damaged or truncated files.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn slice_name(s: Slice) -> &'static str {
    match s {
        Slice::Outer => "outer",
        Slice::Row => "row",
        Slice::Col => "col",
        Slice::Unit => "unit",
        Slice::Lead => "lead",
    }
}

fn layout(v: &StateValue) -> (String, Vec<usize>) {
    match v {
        StateValue::Element(t) => ("element".into(), t.iter().map(Vec::len).collect()),
        StateValue::Matrix(t) => ("matrix".into(), t.iter().map(Vec::len).collect()),
        StateValue::Slice(k, t) => (slice_name(*k).into(), t.iter().map(Vec::len).collect()),
        StateValue::Tensor(t) => ("tensor".into(), vec![t.len()]),
        StateValue::Scalar(_) => ("scalar".into(), vec![1]),
    }
}

/// Writes `ck` to `path` atomically.
pub fn save(path: &Path, ck: &Checkpoint) -> Result<()> {
    if ck.snapshot.has_builtin_progress() {
        return Err(
            "recipes with a builtin optimizer (LBFGS, sam) cannot be checkpointed yet".into(),
        );
    }
    let header = Header {
        recipe_hash: format!("{:016x}", ck.recipe_hash),
        step: ck.step,
        names: ck.names.clone(),
        shapes: ck.shapes.clone(),
        states: ck
            .snapshot
            .states()
            .iter()
            .map(|s| s.iter().map(layout).collect())
            .collect(),
        stages: ck.snapshot.stage_counts().len(),
        metrics: ck.snapshot.metrics().len(),
        curriculum: ck.curriculum.clone(),
        eval: ck.eval_params.is_some(),
    };
    let header = serde_json::to_vec(&header)
        .map_err(|e| Error::internal(format!("cannot encode the checkpoint header: {e}")))?;
    let mut buf = Vec::new();
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&(header.len() as u32).to_le_bytes());
    buf.extend_from_slice(&header);
    for p in ck.params.iter().chain(ck.eval_params.iter().flatten()) {
        p.iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
    }
    buf.extend_from_slice(&ck.snapshot.count().to_le_bytes());
    buf.extend_from_slice(&ck.snapshot.seed().to_le_bytes());
    ck.snapshot
        .stage_counts()
        .iter()
        .for_each(|r| buf.extend_from_slice(&r.to_le_bytes()));
    ck.snapshot
        .metrics()
        .iter()
        .for_each(|m| buf.extend_from_slice(&m.to_le_bytes()));
    for stage in ck.snapshot.states() {
        for st in stage {
            match st {
                StateValue::Element(t) | StateValue::Matrix(t) => t
                    .iter()
                    .flatten()
                    .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
                StateValue::Slice(_, t) => t
                    .iter()
                    .flatten()
                    .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
                StateValue::Tensor(t) => t
                    .iter()
                    .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
                StateValue::Scalar(x) => buf.extend_from_slice(&x.to_le_bytes()),
            }
        }
    }
    let sum = fnv64(&buf);
    buf.extend_from_slice(&sum.to_le_bytes());
    crate::atomic::write_with(path, |f| f.write_all(&buf))
        .map_err(|e| Error::user(format!("cannot write checkpoint {}: {e}", path.display())))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or("the file ends early")?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "short read")?,
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "short read")?,
        ))
    }
    fn f32s(&mut self, n: usize) -> Result<Vec<f32>> {
        let b = self.take(n.checked_mul(4).ok_or("size overflow")?)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    fn f64s(&mut self, n: usize) -> Result<Vec<f64>> {
        let b = self.take(n.checked_mul(8).ok_or("size overflow")?)?;
        Ok(b.chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
}

/// Reads a checkpoint, checking its integrity; `expect_hash`, `names` and `shapes` are what
/// the current run has, and a checkpoint of anything else is refused.
pub fn load(
    path: &Path,
    expect_hash: u64,
    names: &[String],
    shapes: &[Vec<usize>],
) -> Result<Checkpoint> {
    let shown = path.display();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::user(format!("cannot read checkpoint {shown}: {e}")))?;
    let refuse =
        |why: &dyn std::fmt::Display| Error::user(format!("checkpoint {shown} is refused: {why}"));
    if bytes.len() < MAGIC.len() + 16 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(refuse(&"not an anneal checkpoint (or truncated)"));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    let stored = u64::from_le_bytes(tail.try_into().map_err(|_| refuse(&"truncated"))?);
    if fnv64(body) != stored {
        return Err(refuse(
            &"its checksum does not match: the file is damaged or truncated",
        ));
    }
    let mut r = Reader {
        bytes: body,
        at: MAGIC.len(),
    };
    let version = r.u32().map_err(|e| refuse(&e))?;
    if version != VERSION {
        return Err(refuse(&format!(
            "format version {version}, this anneal reads {VERSION}"
        )));
    }
    let hlen = r.u32().map_err(|e| refuse(&e))? as usize;
    let header: Header = serde_json::from_slice(r.take(hlen).map_err(|e| refuse(&e))?)
        .map_err(|e| refuse(&format!("bad header: {e}")))?;
    if header.recipe_hash != format!("{expect_hash:016x}") {
        return Err(refuse(
            &"it was written by a different recipe; start a new run or use that recipe",
        ));
    }
    if header.names != names || header.shapes != shapes {
        return Err(refuse(&format!(
            "it holds tensors {:?} of shapes {:?}, this model has {names:?} of shapes {shapes:?}",
            header.names, header.shapes
        )));
    }
    let read = |r: &mut Reader| -> Result<Checkpoint> {
        let mut params = Vec::new();
        for s in &header.shapes {
            params.push(r.f32s(s.iter().product())?);
        }
        let eval_params = match header.eval {
            true => Some(
                header
                    .shapes
                    .iter()
                    .map(|s| r.f32s(s.iter().product()))
                    .collect::<Result<Vec<_>>>()?,
            ),
            false => None,
        };
        let count = r.u64()?;
        let seed = r.u64()?;
        let mut runs = Vec::new();
        for _ in 0..header.stages {
            runs.push(r.u64()?);
        }
        let metrics = r.f64s(header.metrics)?;
        let mut states = Vec::new();
        for stage in &header.states {
            let mut out = Vec::new();
            for (kind, sizes) in stage {
                out.push(match kind.as_str() {
                    "element" => StateValue::Element(
                        sizes.iter().map(|&n| r.f32s(n)).collect::<Result<_, _>>()?,
                    ),
                    "matrix" => StateValue::Matrix(
                        sizes.iter().map(|&n| r.f32s(n)).collect::<Result<_, _>>()?,
                    ),
                    "tensor" => StateValue::Tensor(r.f64s(sizes.first().copied().unwrap_or(0))?),
                    "scalar" => StateValue::Scalar(r.f64s(1)?[0]),
                    slice => {
                        let k = match slice {
                            "outer" => Slice::Outer,
                            "row" => Slice::Row,
                            "col" => Slice::Col,
                            "unit" => Slice::Unit,
                            "lead" => Slice::Lead,
                            other => {
                                return Err(Error::user(format!("unknown state kind `{other}`")))
                            }
                        };
                        StateValue::Slice(
                            k,
                            sizes.iter().map(|&n| r.f64s(n)).collect::<Result<_, _>>()?,
                        )
                    }
                });
            }
            states.push(out);
        }
        if r.at != r.bytes.len() {
            return Err("bytes left after the payload".into());
        }
        Ok(Checkpoint {
            recipe_hash: expect_hash,
            step: header.step,
            names: header.names.clone(),
            shapes: header.shapes.clone(),
            params,
            eval_params,
            snapshot: StepState::resumed(count, runs, states, metrics, seed),
            curriculum: header.curriculum.clone(),
        })
    };
    read(&mut r).map_err(|e| refuse(&e))
}

/// The hash that ties a checkpoint to its recipe: the elaborated recipe and every
/// definition it uses, as `--emit ir` prints them.
pub fn recipe_hash(program: &anneal_compiler::ir::Program) -> u64 {
    fnv64(anneal_compiler::print::print_program(program).as_bytes())
}
