//! Data sets as CSV files (header line, features, then `target`), loaded as f32 and
//! optionally standardized per feature column (population std in f64, one rounding to
//! f32, a zero std taken as 1: ../shared/conformance/FORMAT-TRAIN.md §2). A malformed file
//! is an error naming the path, line and column.

use std::path::Path;

/// A data set: `x` is `rows × features`, row-major; `y` the targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub features: Vec<String>,
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

/// The data sets shipped with anneal (copies of ../shared/conformance/data), by file name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("iris.csv", include_str!("../../examples/data/iris.csv")),
    ("digits.csv", include_str!("../../examples/data/digits.csv")),
    (
        "diabetes.csv",
        include_str!("../../examples/data/diabetes.csv"),
    ),
];

/// Reads `path`, or the shipped copy of a data set of that file name when the path does
/// not exist. The last column must be named `target`.
pub fn load_csv(path: &Path) -> Result<Dataset, String> {
    let shown = path.display().to_string();
    if !path.exists() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) {
            return parse_csv(
                csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(text.as_bytes()),
                &shown,
            );
        }
    }
    let reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| format!("cannot read {shown}: {e}; check the path"))?;
    parse_csv(reader, &shown)
}

fn parse_csv<R: std::io::Read>(mut reader: csv::Reader<R>, shown: &str) -> Result<Dataset, String> {
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("{shown}:1: cannot read the header: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if header.last().map(String::as_str) != Some("target") || header.len() < 2 {
        return Err(format!(
            "{shown}:1: the last column must be `target`, after at least one feature column (found {header:?})"
        ));
    }
    let cols = header.len() - 1;
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| format!("{shown}:{line}: {e}"))?;
        if record.len() != header.len() {
            return Err(format!(
                "{shown}:{line}: {} values, but the header has {} columns; every row needs one value per column",
                record.len(),
                header.len()
            ));
        }
        for (c, field) in record.iter().enumerate() {
            let v: f32 = field.trim().parse().map_err(|_| {
                format!(
                    "{shown}:{line}:{}: `{field}` in column `{}` is not a number",
                    c + 1,
                    header[c]
                )
            })?;
            if !v.is_finite() {
                return Err(format!("{shown}:{line}:{}: `{field}` is not finite", c + 1));
            }
            if c < cols {
                x.push(v);
            } else {
                y.push(v);
            }
        }
    }
    if y.is_empty() {
        return Err(format!("{shown}: no data rows after the header"));
    }
    Ok(Dataset {
        features: header[..cols].to_vec(),
        rows: y.len(),
        cols,
        x,
        y,
    })
}

impl Dataset {
    /// Standardizes every feature column over all rows (FORMAT-TRAIN §2).
    pub fn standardize(&mut self) {
        for c in 0..self.cols {
            let col: Vec<f64> = (0..self.rows)
                .map(|r| f64::from(self.x[r * self.cols + c]))
                .collect();
            let n = col.len() as f64;
            let mean = col.iter().sum::<f64>() / n;
            let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let std = if var.sqrt() == 0.0 { 1.0 } else { var.sqrt() };
            for (r, v) in col.iter().enumerate() {
                self.x[r * self.cols + c] = ((v - mean) / std) as f32;
            }
        }
    }

    /// The feature rows `rows`, stacked.
    pub fn gather(&self, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let mut x = Vec::with_capacity(rows.len() * self.cols);
        let mut y = Vec::with_capacity(rows.len());
        for &r in rows {
            x.extend_from_slice(&self.x[r * self.cols..(r + 1) * self.cols]);
            y.push(self.y[r]);
        }
        (x, y)
    }
}
