//! Data-parallel and ZeRO training across ranks. Entry point: `train::train_data_parallel`.
//! Ranks talk through a `Comm`: `threads::ThreadComm` (ranks as threads of one process, for
//! tests and `anneal run --ranks N`) or, with the `mpi` feature, `mpi::MpiComm` (ranks as
//! processes under `mpirun`, over OpenMPI). Every collective has a deadline: a rank that
//! died or hangs makes the others stop with an error naming the collective, not hang.

use anneal_compiler::error::Result;

pub mod threads;
pub mod train;

#[cfg(feature = "mpi")]
pub mod mpi;

/// The collectives the data-parallel loop needs. Sums are over f32 contributions; every
/// rank gets the same result.
pub trait Comm {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Element-wise sum over ranks, in place.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// Every rank's `mine` (rank r sends `counts[r]` values), concatenated in rank order.
    fn all_gather(&self, mine: &[f32], counts: &[usize]) -> Result<Vec<f32>>;
    /// The element-wise sum over ranks of `buf`, of which rank r keeps its `counts[r]`
    /// values (the ones after the earlier ranks').
    fn reduce_scatter_sum(&self, buf: &[f32], counts: &[usize]) -> Result<Vec<f32>>;
}

/// `n` items split into `parts` contiguous shares, the first `n % parts` one larger:
/// (start, end) of each.
pub fn shares(n: usize, parts: usize) -> Vec<(usize, usize)> {
    let parts = parts.max(1);
    let (base, extra) = (n / parts, n % parts);
    let mut out = Vec::with_capacity(parts);
    let mut at = 0;
    for r in 0..parts {
        let len = base + usize::from(r < extra);
        out.push((at, at + len));
        at += len;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn shares_are_contiguous_and_differ_by_at_most_one() {
        assert_eq!(super::shares(10, 3), [(0, 4), (4, 7), (7, 10)]);
        assert_eq!(super::shares(2, 3), [(0, 1), (1, 2), (2, 2)]);
        assert_eq!(super::shares(6, 1), [(0, 6)]);
    }
}
