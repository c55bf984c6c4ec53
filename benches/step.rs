//! Criterion benchmark of the update step (`cargo bench -p anneal-runtime`): for two
//! recipes, the fused Cranelift step, the same-shape roofline loop and the reference
//! interpreter on 4M parameters in 8 tensors (beyond the caches). `anneal bench` prints the same comparison
//! as ratios in one run; this is the statistically careful version.

use anneal_compiler::backends::{Backend, Stepper};
use anneal_compiler::compile;
use anneal_compiler::kernel::explain::explain;
use anneal_runtime::bench::Roofline;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const PARAMS: usize = 4 << 20;
const TENSORS: usize = 8;

fn recipes(c: &mut Criterion) {
    for name in ["adamw", "clip_adamw_finite"] {
        let path = format!(
            "{}/../benches/recipes/{name}.anneal",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("recipe file");
        let comp = compile(&path, &text);
        assert!(!comp.has_errors(), "{path} does not compile");
        let recipe = &comp.program.recipes[0];
        let e = explain(&comp.program, recipe).expect("a fused step");
        let n = PARAMS / TENSORS;
        let names: Vec<String> = (0..TENSORS).map(|t| format!("{t}.weight")).collect();
        let shapes = vec![vec![n]; TENSORS];
        let init = vec![vec![0.01f32; n]; TENSORS];
        let grads = vec![vec![1e-3f32; n]; TENSORS];
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes((e.bytes_per_param * PARAMS) as u64));
        for backend in [Backend::Cranelift, Backend::Interp] {
            let (mut s, _) =
                Stepper::new(backend, &comp.program, recipe, &names, &shapes, &init, 0)
                    .expect("stepper");
            let mut params = init.clone();
            group.bench_function(backend.name(), |b| {
                b.iter(|| s.step(&mut params, &grads).expect("step"))
            });
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut roof = Roofline::for_step(&e, PARAMS, threads);
        group.bench_function("roofline", |b| b.iter(|| roof.sweep()));
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = recipes
}
criterion_main!(benches);
