//! anneal's runtime: evaluates schedules over a run, drives the compiled update step, and
//! runs the conformance cases against the golden numbers from Optax and PyTorch.
//! Later stages (models, data, the training loop, checkpoints) grow here.

pub mod atomic;
pub mod bench;
pub mod checkpoint;
pub mod conformance;
pub mod curriculum;
pub mod data;
pub mod deepspeed;
pub mod dist;
pub mod lr_range;
pub mod matrix_bench;
pub mod model;
pub mod plan;
pub mod schedule;
pub mod session;
pub mod train;
