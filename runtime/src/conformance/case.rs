//! Reading conformance case files (../shared/conformance/FORMAT.md). Case files are
//! untrusted input: every missing or malformed field is an error naming the field.

use anneal_compiler::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// One case file, kept as JSON plus the fields every case has.
#[derive(Debug, Clone)]
pub struct Case {
    /// Where the case was read from (training cases find their data beside it).
    pub path: std::path::PathBuf,
    pub name: String,
    pub kind: String,
    pub module: String,
    pub rtol: f64,
    pub atol: f64,
    pub steps: usize,
    pub json: Map<String, Value>,
}

/// A named f32 tensor, flat in row-major order.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub fn load_case(path: &Path) -> Result<Case> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::user(format!("cannot read {}: {e}", path.display())))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::user(format!("{} is not valid JSON: {e}", path.display())))?;
    let Value::Object(json) = value else {
        return Err(Error::user(format!(
            "{}: a case is a JSON object",
            path.display()
        )));
    };
    let name = str_field(&json, "name")?.to_string();
    let kind = str_field(&json, "kind")?.to_string();
    let module = json
        .get("module")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let rtol = num_field(&json, "rtol")?;
    let atol = num_field(&json, "atol")?;
    if !(rtol >= 0.0 && atol >= 0.0) {
        return Err("`rtol` and `atol` must be non-negative numbers".into());
    }
    let steps = json
        .get("steps")
        .and_then(Value::as_u64)
        .filter(|s| *s <= 1_000_000)
        .ok_or("`steps` must be a whole number up to 1000000")? as usize;
    Ok(Case {
        path: path.to_path_buf(),
        name,
        kind,
        module,
        rtol,
        atol,
        steps,
        json,
    })
}

pub fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::user(format!("missing string field `{key}`")))
}

pub fn num_field(obj: &Map<String, Value>, key: &str) -> Result<f64> {
    obj.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| Error::user(format!("missing number field `{key}`")))
}

/// A flat list of numbers, each rounded to f32 (as the generator fed them).
pub fn f32_list(v: &Value, what: &str) -> Result<Vec<f32>> {
    let arr = v
        .as_array()
        .ok_or_else(|| Error::user(format!("`{what}` must be a list of numbers")))?;
    arr.iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| Error::user(format!("`{what}` holds a non-number: {x}")))
        })
        .collect()
}

pub fn f64_list(v: &Value, what: &str) -> Result<Vec<f64>> {
    let arr = v
        .as_array()
        .ok_or_else(|| Error::user(format!("`{what}` must be a list of numbers")))?;
    arr.iter()
        .map(|x| {
            x.as_f64()
                .ok_or_else(|| Error::user(format!("`{what}` holds a non-number: {x}")))
        })
        .collect()
}

/// `params`: name → {shape, data}, in file order; data length must match the shape.
pub fn params(case: &Case) -> Result<Vec<Tensor>> {
    let obj = case
        .json
        .get("params")
        .and_then(Value::as_object)
        .ok_or("missing object field `params`")?;
    let mut out = Vec::new();
    for (name, spec) in obj {
        let shape = spec
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::user(format!("param `{name}` has no `shape` list")))?;
        let mut numel: usize = 1;
        let mut dims = Vec::with_capacity(shape.len());
        for d in shape {
            let d = d.as_u64().ok_or_else(|| {
                Error::user(format!(
                    "param `{name}`: shape entries must be whole numbers"
                ))
            })?;
            dims.push(d as usize);
            numel = numel
                .checked_mul(d as usize)
                .filter(|n| *n <= 1 << 28)
                .ok_or_else(|| Error::user(format!("param `{name}`: shape too large")))?;
        }
        let data = f32_list(
            spec.get("data")
                .ok_or_else(|| Error::user(format!("param `{name}` has no `data`")))?,
            &format!("params.{name}.data"),
        )?;
        if data.len() != numel {
            return Err(Error::user(format!(
                "param `{name}`: shape {shape:?} has {numel} elements but data has {}",
                data.len()
            )));
        }
        out.push(Tensor {
            name: name.clone(),
            shape: dims,
            data,
        });
    }
    Ok(out)
}

/// Values for each tensor from an object `{name: [flat]}`, in `names` order.
pub fn per_tensor(obj: &Value, names: &[String], what: &str) -> Result<Vec<Vec<f32>>> {
    let map = obj
        .as_object()
        .ok_or_else(|| Error::user(format!("`{what}` must be an object of tensors")))?;
    names
        .iter()
        .map(|n| {
            let v = map
                .get(n)
                .ok_or_else(|| Error::user(format!("`{what}` has no tensor `{n}`")))?;
            f32_list(v, &format!("{what}.{n}"))
        })
        .collect()
}
