//! Data sets as CSV files (header line, features, then `target`), loaded as f32 and
//! optionally standardized per feature column (population std in f64, one rounding to
//! f32, a zero std taken as 1: ../shared/conformance/FORMAT-TRAIN.md §2). A malformed file
//! is an error naming the path, line and column.

use anneal_compiler::error::{Error, Result};
use std::borrow::Cow;
use std::cell::RefCell;
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
pub fn load_csv(path: &Path) -> Result<Dataset> {
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
        .flexible(true)
        .from_path(path)
        .map_err(|e| Error::user(format!("cannot read {shown}: {e}; check the path")))?;
    parse_csv(reader, &shown)
}

fn parse_csv<R: std::io::Read>(mut reader: csv::Reader<R>, shown: &str) -> Result<Dataset> {
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Error::user(format!("{shown}:1: cannot read the header: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if header.last().map(String::as_str) != Some("target") || header.len() < 2 {
        return Err(Error::user(format!(
            "{shown}:1: the last column must be `target`, after at least one feature column (found {header:?})"
        )));
    }
    let cols = header.len() - 1;
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| Error::user(format!("{shown}:{line}: {e}")))?;
        if record.len() != header.len() {
            return Err(Error::user(format!(
                "{shown}:{line}: {} values, but the header has {} columns; every row needs one value per column",
                record.len(),
                header.len()
            )));
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
                return Err(Error::user(format!(
                    "{shown}:{line}:{}: `{field}` is not finite",
                    c + 1
                )));
            }
            if c < cols {
                x.push(v);
            } else {
                y.push(v);
            }
        }
    }
    if y.is_empty() {
        return Err(Error::user(format!(
            "{shown}: no data rows after the header"
        )));
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

/// A small deterministic generator (splitmix64) for shuffles and initial weights, so a
/// run is reproducible from its seed on any machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1A4_F681)
    }

    /// The generator's position, to resume it later (`from_state`).
    pub fn state(&self) -> u64 {
        self.0
    }

    pub fn from_state(state: u64) -> Rng {
        Rng(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniformly random permutation of 0..n (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            p.swap(i, j);
        }
        p
    }
}

/// Label noise: replaces the labels of round(`fraction`·|rows|) of `rows`, chosen at
/// random, by another class drawn uniformly from the other `classes − 1`. Returns how
/// many were flipped.
pub fn flip_labels(
    y: &mut [f32],
    rows: &[usize],
    classes: usize,
    fraction: f64,
    rng: &mut Rng,
) -> usize {
    if classes < 2 {
        return 0;
    }
    let n = ((rows.len() as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
    let order = rng.permutation(rows.len());
    for &i in &order[..n.min(rows.len())] {
        let r = rows[i];
        let old = y[r] as usize;
        let shift = 1 + (rng.next_u64() % (classes as u64 - 1)) as usize;
        y[r] = ((old + shift) % classes) as f32;
    }
    n.min(rows.len())
}

/// A seeded train/test split: the first `1 − test_fraction` of a permutation trains.
pub fn split(rows: usize, test_fraction: f64, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let perm = rng.permutation(rows);
    let n_test = ((rows as f64) * test_fraction.clamp(0.0, 1.0)).round() as usize;
    let (test, train) = perm.split_at(n_test.min(rows));
    (train.to_vec(), test.to_vec())
}

/// `count` micro-batches of `size` rows: consecutive chunks of seeded epoch permutations
/// of `rows`, the short remainder of each epoch dropped (as PyTorch's `drop_last`).
/// A run's micro-batches by index: a fixed list (cycled) or seeded epochs.
pub trait BatchSource {
    /// The rows of micro-batch `m`.
    fn batch(&self, m: usize) -> Cow<'_, [usize]>;
    fn is_empty(&self) -> bool;
}

impl BatchSource for Vec<Vec<usize>> {
    fn batch(&self, m: usize) -> Cow<'_, [usize]> {
        Cow::Borrowed(&self[m % self.len()])
    }

    fn is_empty(&self) -> bool {
        self.is_empty()
    }
}

/// The batches `batches` returns, made one epoch at a time as the run reaches them, so a
/// run of any length holds one permutation of the rows, not every batch.
pub struct Epochs {
    rows: Vec<usize>,
    size: usize,
    seed: u64,
    /// The epoch held, its permutation, and the stream after drawing it.
    current: RefCell<(usize, Vec<usize>, Rng)>,
}

impl Epochs {
    /// Batches of `size` rows; each epoch a fresh permutation drawn from `Rng::new(seed)`.
    pub fn new(rows: &[usize], size: usize, seed: u64) -> Epochs {
        let size = size.clamp(1, rows.len().max(1));
        let mut rng = Rng::new(seed);
        let perm = rng.permutation(rows.len());
        Epochs {
            rows: rows.to_vec(),
            size,
            seed,
            current: RefCell::new((0, perm, rng)),
        }
    }
}

impl BatchSource for Epochs {
    fn batch(&self, m: usize) -> Cow<'_, [usize]> {
        let per_epoch = (self.rows.len() / self.size).max(1);
        let (epoch, j) = (m / per_epoch, m % per_epoch);
        let mut cur = self.current.borrow_mut();
        if epoch < cur.0 {
            // Going back (a resumed run): replay the stream from the start.
            let mut rng = Rng::new(self.seed);
            let perm = rng.permutation(self.rows.len());
            *cur = (0, perm, rng);
        }
        while cur.0 < epoch {
            let perm = cur.2.permutation(self.rows.len());
            cur.0 += 1;
            cur.1 = perm;
        }
        Cow::Owned(
            cur.1
                .get(j * self.size..(j + 1) * self.size)
                .unwrap_or(&[])
                .iter()
                .map(|&i| self.rows[i])
                .collect(),
        )
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batches as one list, epoch after epoch: what `Epochs` draws lazily.
    fn batches(rows: &[usize], size: usize, count: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
        let size = size.clamp(1, rows.len().max(1));
        let mut out = Vec::with_capacity(count);
        while out.len() < count && !rows.is_empty() {
            let perm = rng.permutation(rows.len());
            for chunk in perm.chunks_exact(size) {
                if out.len() == count {
                    break;
                }
                out.push(chunk.iter().map(|&i| rows[i]).collect());
            }
        }
        out
    }

    #[test]
    fn epochs_give_the_batches_of_the_precomputed_list_in_any_order() {
        let rows: Vec<usize> = (100..203).collect();
        let list = batches(&rows, 10, 95, &mut Rng::new(7));
        let epochs = Epochs::new(&rows, 10, 7);
        for m in (0..95).chain([3, 50, 0, 94]) {
            assert_eq!(epochs.batch(m).as_ref(), list[m].as_slice(), "batch {m}");
        }
        assert!(!BatchSource::is_empty(&epochs));
    }

    #[test]
    fn label_noise_flips_the_stated_share_to_other_classes_only() {
        let mut y: Vec<f32> = (0..1000).map(|i| (i % 10) as f32).collect();
        let before = y.clone();
        let rows: Vec<usize> = (0..800).collect();
        let n = flip_labels(&mut y, &rows, 10, 0.2, &mut Rng::new(3));
        assert_eq!(n, 160);
        let changed: Vec<usize> = (0..1000).filter(|&i| y[i] != before[i]).collect();
        // Every chosen row changed class (never to itself), only training rows changed.
        assert_eq!(changed.len(), 160);
        assert!(changed
            .iter()
            .all(|&i| i < 800 && (0.0..10.0).contains(&y[i])));
        // Seeded: the same seed flips the same rows the same way.
        let mut again: Vec<f32> = before.clone();
        flip_labels(&mut again, &rows, 10, 0.2, &mut Rng::new(3));
        assert_eq!(again, y);
    }

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("anneal-data-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn malformed_files_name_path_line_and_column() {
        let cases = [
            ("ragged.csv", "a,b,target\n1,2,0\n1,2\n", ":3: 2 values"),
            (
                "nan.csv",
                "a,target\n1,0\nzz,1\n",
                ":3:1: `zz` in column `a`",
            ),
            (
                "notarget.csv",
                "a,b\n1,2\n",
                ":1: the last column must be `target`",
            ),
            ("empty.csv", "a,target\n", "no data rows"),
        ];
        for (name, text, want) in cases {
            let err = load_csv(&write(name, text)).unwrap_err();
            assert!(err.to_string().contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn standardize_uses_the_population_std_and_keeps_constant_columns() {
        let mut d = load_csv(&write("std.csv", "a,b,target\n1,5,0\n3,5,1\n")).unwrap();
        d.standardize();
        // mean 2, population std 1: (1, 3) -> (-1, 1); the constant column becomes 0.
        assert_eq!(d.x, vec![-1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn shipped_copies_stand_in_for_missing_files() {
        let d = load_csv(std::path::Path::new("/nonexistent/iris.csv")).unwrap();
        assert_eq!((d.rows, d.cols), (150, 4));
    }

    #[test]
    fn batches_are_seeded_and_drop_the_remainder() {
        let rows: Vec<usize> = (0..10).collect();
        let draw = || {
            let e = Epochs::new(&rows, 4, 7);
            (0..5).map(|m| e.batch(m).to_vec()).collect::<Vec<_>>()
        };
        let (a, b) = (draw(), draw());
        assert_eq!(a, b);
        assert!(a.iter().all(|x| x.len() == 4));
        // Two batches per epoch of 10 rows: every pair of batches is disjoint.
        assert!(a[0].iter().all(|r| !a[1].contains(r)));
    }
}
