//! Ranks as processes under `mpirun`, over MPI (the `mpi` crate on OpenMPI). A watchdog
//! thread ends the process with an error naming the collective when one has not completed
//! within the deadline, so a rank that died or hangs does not leave the others waiting
//! forever (mpirun then stops the job).

use super::Comm;
use anneal_compiler::error::Result;
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct MpiComm {
    _universe: mpi::environment::Universe,
    world: SimpleCommunicator,
    /// The collective in progress and when it started.
    armed: Arc<Mutex<Option<(&'static str, Instant)>>>,
}

/// Whether this process was started by mpirun (OpenMPI, MPICH or PMI launchers).
pub fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

impl MpiComm {
    /// Joins the MPI job; collectives wait at most `timeout`.
    pub fn init(timeout: Duration) -> Result<MpiComm> {
        let universe = mpi::initialize().ok_or("MPI was already initialized")?;
        let world = universe.world();
        let rank = world.rank();
        let armed: Arc<Mutex<Option<(&'static str, Instant)>>> = Arc::new(Mutex::new(None));
        let watched = armed.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            let late = watched
                .lock()
                .ok()
                .and_then(|g| *g)
                .filter(|(_, since)| since.elapsed() > timeout);
            if let Some((what, _)) = late {
                eprintln!(
                    "error: rank {rank}: the {what} collective did not complete within {:.0} s; \
                     another rank has died or hangs",
                    timeout.as_secs_f64()
                );
                std::process::exit(1);
            }
        });
        Ok(MpiComm {
            _universe: universe,
            world,
            armed,
        })
    }

    fn guarded<T>(&self, what: &'static str, f: impl FnOnce() -> T) -> T {
        if let Ok(mut g) = self.armed.lock() {
            *g = Some((what, Instant::now()));
        }
        let out = f();
        if let Ok(mut g) = self.armed.lock() {
            *g = None;
        }
        out
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let send = buf.to_vec();
        self.guarded("all-reduce", || {
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum())
        });
        Ok(())
    }

    fn all_gather(&self, mine: &[f32], counts: &[usize]) -> Result<Vec<f32>> {
        let total: usize = counts.iter().sum();
        let mut out = vec![0f32; total];
        let to_i32 =
            |n: usize| i32::try_from(n).map_err(|_| "a shard too large for MPI".to_string());
        let c: Vec<i32> = counts
            .iter()
            .map(|&n| to_i32(n))
            .collect::<Result<_, _>>()?;
        let mut displs = Vec::with_capacity(c.len());
        let mut at = 0i32;
        for n in &c {
            displs.push(at);
            at += n;
        }
        self.guarded("all-gather", || {
            let mut part = PartitionMut::new(&mut out[..], c, &displs[..]);
            self.world.all_gather_varcount_into(mine, &mut part);
        });
        Ok(out)
    }

    fn reduce_scatter_sum(&self, buf: &[f32], counts: &[usize]) -> Result<Vec<f32>> {
        // An all-reduce and a slice: the same result as MPI_Reduce_scatter, with twice the
        // traffic (the cost model counts the reduce-scatter).
        let mut all = buf.to_vec();
        self.all_reduce_sum(&mut all)?;
        let start: usize = counts[..self.rank()].iter().sum();
        Ok(all[start..start + counts[self.rank()]].to_vec())
    }
}
