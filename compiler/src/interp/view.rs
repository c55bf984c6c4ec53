//! How the interpreter slices each tensor for per-row, per-column, per-outer and per-unit
//! values (see `ir::Extent`): for every element, the slot it belongs to in each slicing.

/// A slicing of a tensor finer than the tensor and coarser than its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Slice {
    Outer,
    Row,
    Col,
    Unit,
    Lead,
}

impl Slice {
    fn index(self) -> usize {
        match self {
            Slice::Outer => 0,
            Slice::Row => 1,
            Slice::Col => 2,
            Slice::Unit => 3,
            Slice::Lead => 4,
        }
    }
}

/// One tensor's shape facts and slot maps.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorView {
    pub numel: usize,
    pub rank: usize,
    /// The size of d1, the second-largest dimension (0 below rank 2).
    pub factor_dim: usize,
    /// The tensor as a matrix (`matrix(x)`): the last dimension is the columns, the
    /// leading ones flattened into rows (optax's `MuonDimensionNumbers` default); a
    /// vector is one row, a scalar 1 × 1.
    pub mat_rows: usize,
    pub mat_cols: usize,
    /// Per slicing: the slot of each element.
    maps: [Vec<u32>; 5],
    counts: [usize; 5],
    /// Per row slot and per column slot: the outer slot it lies in.
    row_outer: Vec<u32>,
    col_outer: Vec<u32>,
}

impl TensorView {
    /// The view of a row-major tensor of `shape` (`[]` is a scalar).
    pub fn new(shape: &[usize]) -> TensorView {
        let rank = shape.len();
        let numel: usize = shape.iter().product();
        // Optax's _factored_dims: argsort the shape; d0 the largest axis, d1 the next.
        let mut order: Vec<usize> = (0..rank).collect();
        order.sort_by_key(|&a| shape[a]);
        let d0 = order.last().copied();
        let d1 = if rank >= 2 {
            Some(order[rank - 2])
        } else {
            None
        };
        let non_unit = shape.iter().filter(|&&n| n != 1).count();
        // Optax's unitwise_norm: whole tensor when it squeezes to rank <= 1; over axis 0
        // for rank 2 and 3; over axes 0, 1, 2 for rank 4.
        let unit_dropped: Vec<usize> = if non_unit <= 1 {
            (0..rank).collect()
        } else if rank == 4 {
            vec![0, 1, 2]
        } else {
            vec![0]
        };
        let keep = |dropped: &[usize]| -> Vec<usize> {
            (0..rank).filter(|a| !dropped.contains(a)).collect()
        };
        let kept: [Vec<usize>; 5] = [
            keep(&[d0, d1].into_iter().flatten().collect::<Vec<_>>()),
            keep(&d0.into_iter().collect::<Vec<_>>()),
            keep(&d1.into_iter().collect::<Vec<_>>()),
            keep(&unit_dropped),
            // Lead keeps the first axis only.
            (0..rank.min(1)).collect(),
        ];
        let counts: [usize; 5] =
            std::array::from_fn(|k| kept[k].iter().map(|&a| shape[a]).product());
        let mut maps: [Vec<u32>; 5] = Default::default();
        for m in &mut maps {
            m.reserve(numel);
        }
        let mut idx = vec![0usize; rank];
        for _ in 0..numel {
            for (k, axes) in kept.iter().enumerate() {
                let mut slot = 0usize;
                for &a in axes {
                    slot = slot * shape[a] + idx[a];
                }
                maps[k].push(slot as u32);
            }
            // Advance the row-major multi-index.
            for a in (0..rank).rev() {
                idx[a] += 1;
                if idx[a] < shape[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        let mut row_outer = vec![0u32; counts[1]];
        let mut col_outer = vec![0u32; counts[2]];
        for i in 0..numel {
            row_outer[maps[1][i] as usize] = maps[0][i];
            col_outer[maps[2][i] as usize] = maps[0][i];
        }
        TensorView {
            numel,
            rank,
            factor_dim: d1.map(|a| shape[a]).unwrap_or(0),
            mat_cols: shape.last().copied().unwrap_or(1),
            mat_rows: match shape.split_last() {
                Some((_, lead)) => lead.iter().product(),
                None => 1,
            },
            maps,
            counts,
            row_outer,
            col_outer,
        }
    }

    /// The slot of element `i` in slicing `s`.
    pub fn slot(&self, s: Slice, i: usize) -> usize {
        self.maps[s.index()][i] as usize
    }

    pub fn count(&self, s: Slice) -> usize {
        self.counts[s.index()]
    }

    /// The outer slot of slot `j` of a row or column slicing.
    pub fn outer_of(&self, s: Slice, j: usize) -> usize {
        match s {
            Slice::Row => self.row_outer[j] as usize,
            Slice::Col => self.col_outer[j] as usize,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_rows_columns_and_units() {
        // [4, 3]: d0 = axis 0 (size 4), d1 = axis 1. A row keeps axis 1 (3 slots), a column
        // keeps axis 0 (4 slots); units keep axis 1 (the norm runs over axis 0).
        let v = TensorView::new(&[4, 3]);
        assert_eq!(
            (
                v.count(Slice::Row),
                v.count(Slice::Col),
                v.count(Slice::Outer)
            ),
            (3, 4, 1)
        );
        assert_eq!(v.factor_dim, 3);
        // Element (2, 1) is flat index 7.
        assert_eq!(v.slot(Slice::Row, 7), 1);
        assert_eq!(v.slot(Slice::Col, 7), 2);
        assert_eq!(v.slot(Slice::Unit, 7), 1);
    }

    #[test]
    fn vectors_scalars_and_rank_three() {
        let v = TensorView::new(&[5]);
        assert_eq!(
            (
                v.count(Slice::Row),
                v.count(Slice::Col),
                v.count(Slice::Unit)
            ),
            (1, 5, 1)
        );
        assert_eq!(v.factor_dim, 0);
        let s = TensorView::new(&[]);
        assert_eq!(
            (s.numel, s.count(Slice::Row), s.count(Slice::Col)),
            (1, 1, 1)
        );
        // [2, 5, 3]: d0 = axis 1, d1 = axis 2; rows keep axes 0 and 2, columns 0 and 1,
        // outer slices axis 0.
        let t = TensorView::new(&[2, 5, 3]);
        assert_eq!(
            (
                t.count(Slice::Row),
                t.count(Slice::Col),
                t.count(Slice::Outer)
            ),
            (6, 10, 2)
        );
        // Element (1, 4, 2) = 1·15 + 4·3 + 2 = 29: row (1, 2) = 5, column (1, 4) = 9, outer 1.
        assert_eq!(
            (
                t.slot(Slice::Row, 29),
                t.slot(Slice::Col, 29),
                t.slot(Slice::Outer, 29)
            ),
            (5, 9, 1)
        );
        assert_eq!(t.outer_of(Slice::Row, 5), 1);
        // Lead keeps axis 0 only: element 29 lies in slot 1 of 2; a vector's lead slots
        // are its elements, a scalar has one.
        assert_eq!((t.count(Slice::Lead), t.slot(Slice::Lead, 29)), (2, 1));
        assert_eq!(v.count(Slice::Lead), 5);
        assert_eq!(s.count(Slice::Lead), 1);
    }
}
