//! Ranks as threads of one process: each collective is an exchange through shared memory,
//! every rank receiving every contribution and reducing them in rank order (so all ranks
//! get the same bits). A rank that does not arrive within the deadline makes the others
//! return an error saying which ranks are missing.

use super::Comm;
use anneal_compiler::error::{Error, Result};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const POISONED: &str = "a rank panicked inside a collective";

struct Round {
    /// Rounds completed so far.
    generation: u64,
    slots: Vec<Option<Vec<f32>>>,
    /// The last round's contributions, until every rank has read them.
    result: Option<Arc<Vec<Vec<f32>>>>,
    readers: usize,
}

struct Shared {
    size: usize,
    timeout: Duration,
    round: Mutex<Round>,
    wake: Condvar,
}

/// One rank's handle.
pub struct ThreadComm {
    rank: usize,
    shared: Arc<Shared>,
}

impl ThreadComm {
    /// `size` handles, one per rank, sharing one exchange; a collective waits at most
    /// `timeout` for the other ranks.
    pub fn group(size: usize, timeout: Duration) -> Vec<ThreadComm> {
        let shared = Arc::new(Shared {
            size,
            timeout,
            round: Mutex::new(Round {
                generation: 0,
                slots: vec![None; size],
                result: None,
                readers: 0,
            }),
            wake: Condvar::new(),
        });
        (0..size)
            .map(|rank| ThreadComm {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    /// The error for a collective some ranks never joined.
    fn missing(&self, g: &Round) -> Error {
        let ranks: Vec<String> = g
            .slots
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_none())
            .map(|(r, _)| r.to_string())
            .collect();
        format!(
            "rank {}: a collective timed out after {:.0} s waiting for rank(s) {}; a rank has died or hangs",
            self.rank,
            self.shared.timeout.as_secs_f64(),
            ranks.join(", ")
        )
        .into()
    }

    /// Waits while `busy` holds, until `deadline`.
    fn wait<'a>(
        &self,
        g: MutexGuard<'a, Round>,
        deadline: Instant,
        busy: impl Fn(&Round) -> bool,
    ) -> Result<MutexGuard<'a, Round>> {
        let left = deadline.saturating_duration_since(Instant::now());
        let (g, _) = self
            .shared
            .wake
            .wait_timeout_while(g, left, |r| busy(r))
            .map_err(|_| POISONED.to_string())?;
        if busy(&g) {
            Err(self.missing(&g))
        } else {
            Ok(g)
        }
    }

    /// Every rank's `data`, in rank order.
    fn exchange(&self, data: Vec<f32>) -> Result<Arc<Vec<Vec<f32>>>> {
        let s = &self.shared;
        let deadline = Instant::now() + s.timeout;
        let g = s.round.lock().map_err(|_| POISONED.to_string())?;
        // The previous round must be read by everyone before its slots are reused.
        let mut g = self.wait(g, deadline, |r| r.result.is_some())?;
        let generation = g.generation;
        g.slots[self.rank] = Some(data);
        if g.slots.iter().all(Option::is_some) {
            let all: Vec<Vec<f32>> = g
                .slots
                .iter_mut()
                .map(|v| v.take().unwrap_or_default())
                .collect();
            g.result = Some(Arc::new(all));
            g.readers = 0;
            g.generation += 1;
            s.wake.notify_all();
        }
        let mut g = self.wait(g, deadline, |r| r.generation == generation)?;
        let result = g.result.clone().ok_or("a collective lost its result")?;
        g.readers += 1;
        if g.readers == s.size {
            g.result = None;
            s.wake.notify_all();
        }
        Ok(result)
    }
}

impl Comm for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let all = self.exchange(buf.to_vec())?;
        for (i, x) in buf.iter_mut().enumerate() {
            *x = sum_at(&all, i);
        }
        Ok(())
    }

    fn all_gather(&self, mine: &[f32], counts: &[usize]) -> Result<Vec<f32>> {
        let all = self.exchange(mine.to_vec())?;
        for (r, (v, n)) in all.iter().zip(counts).enumerate() {
            if v.len() != *n {
                return Err(Error::user(format!(
                    "rank {r} sent {} values, not {n}",
                    v.len()
                )));
            }
        }
        Ok(all.concat())
    }

    fn reduce_scatter_sum(&self, buf: &[f32], counts: &[usize]) -> Result<Vec<f32>> {
        let all = self.exchange(buf.to_vec())?;
        let start: usize = counts[..self.rank].iter().sum();
        let end = start + counts[self.rank];
        Ok((start..end).map(|i| sum_at(&all, i)).collect())
    }
}

/// Value `i` summed over the ranks' contributions, in rank order.
fn sum_at(all: &[Vec<f32>], i: usize) -> f32 {
    all.iter().map(|v| v.get(i).copied().unwrap_or(0.0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectives_give_every_rank_the_same_sums() {
        let comms = ThreadComm::group(3, Duration::from_secs(10));
        let out: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = std::thread::scope(|s| {
            let hs: Vec<_> = comms
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        let r = c.rank() as f32;
                        let mut v = vec![r, 10.0 * r, 1.0];
                        c.all_reduce_sum(&mut v).unwrap();
                        let g = c.all_gather(&vec![r; c.rank() + 1], &[1, 2, 3]).unwrap();
                        let rs = c
                            .reduce_scatter_sum(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2, 2, 1])
                            .unwrap();
                        (v, g, rs)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (r, (v, g, rs)) in out.iter().enumerate() {
            assert_eq!(v, &[3.0, 30.0, 3.0]);
            assert_eq!(g, &[0.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
            let want: &[f32] = [&[3.0, 6.0][..], &[9.0, 12.0], &[15.0]][r];
            assert_eq!(rs.as_slice(), want);
        }
    }

    #[test]
    fn a_missing_rank_is_an_error_not_a_hang() {
        let comms = ThreadComm::group(2, Duration::from_millis(200));
        let mut v = vec![1.0];
        let e = comms[0].all_reduce_sum(&mut v).unwrap_err();
        assert!(e.to_string().contains("waiting for rank(s) 1"), "{e}");
    }
}
