//! Native benchmarks of the inference kernels, so that a kernel change can be measured without a
//! browser. `cargo bench --bench kernels` runs:
//!
//! - `qmatmul/TYPE/ROWS`: one SmolLM2-135M FFN projection (a 1536 × 576 weight) applied to 1 row
//!   (a decode step) and to 64 rows (a prefill chunk, which takes the dequantize-then-GEMM path),
//!   with Q8_0, Q4_0 and F32 weights;
//! - `decode_step/TYPE`: one token at position 32 through a model with one decoder layer of
//!   SmolLM2-135M's shape: hidden size 576, 9 query heads, 3 key/value heads, FFN width 1536.
//!   Its vocabulary is the 259-token synthetic one, so the layer dominates the time;
//! - `stored_zeros/word` and `stored_zeros/filter`: counting the zero weights of a 1536 × 576
//!   Q8_0 matrix, half of whose weights are zero. `word` is `eval::count_stored_zeros`, which
//!   the model facts use (eight bytes at a time). `filter` is a plain `filter(..).count()` over
//!   each block.
//!
//! Weights are random (`prunechat::synthetic`), which does not change the work done.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use prunechat::model::{KvCache, Model};
use prunechat::synthetic::{tiny_llama, TinySpec};

const TYPES: [(&str, GgmlDType); 3] = [
    ("q8_0", GgmlDType::Q8_0),
    ("q4_0", GgmlDType::Q4_0),
    ("f32", GgmlDType::F32),
];

fn qmatmul(c: &mut Criterion) {
    let (out_features, in_features) = (1536, 576);
    let weight = Tensor::randn(0f32, 0.05, (out_features, in_features), &Device::Cpu).unwrap();
    let mut group = c.benchmark_group("qmatmul");
    for (name, dtype) in TYPES {
        let matmul = match dtype {
            GgmlDType::F32 => QMatMul::Tensor(weight.clone()),
            _ => QMatMul::from_qtensor(QTensor::quantize(&weight, dtype).unwrap()).unwrap(),
        };
        for rows in [1usize, 64] {
            let x = Tensor::randn(0f32, 1.0, (1, rows, in_features), &Device::Cpu).unwrap();
            group.throughput(Throughput::Elements(
                (rows * out_features * in_features) as u64,
            ));
            group.bench_with_input(BenchmarkId::new(name, rows), &x, |b, x| {
                b.iter(|| matmul.forward(x).unwrap())
            });
        }
    }
    group.finish();
}

fn decode_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_step");
    for (name, dtype) in TYPES {
        let spec = TinySpec {
            hidden_size: 576,
            head_dim: 64,
            layers: vec![(9, 3, 1536)],
            context_length: 256,
            dtype,
            ..TinySpec::default()
        };
        let model = Model::from_gguf(tiny_llama(&spec).unwrap()).unwrap();
        let mut cache = KvCache::new(model.config(), 256);
        let prompt: Vec<u32> = (0..32).map(|i| 3 + i % 250).collect();
        model.forward_last(&prompt, &mut cache).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let logits = model.forward_last(&[42], &mut cache).unwrap();
                cache.truncate(prompt.len());
                logits
            })
        });
    }
    group.finish();
}

fn stored_zeros(c: &mut Criterion) {
    let (rows, cols) = (1536, 576);
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| {
            if i % 2 == 0 {
                0.0
            } else {
                (i % 97) as f32 - 48.0
            }
        })
        .collect();
    let weight = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
    let tensor = QTensor::quantize(&weight, GgmlDType::Q8_0).unwrap();
    let data = tensor.data().unwrap().into_owned();
    let mut group = c.benchmark_group("stored_zeros");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("word", |b| {
        b.iter(|| prunechat::eval::count_stored_zeros(&tensor).unwrap())
    });
    group.bench_function("filter", |b| {
        b.iter(|| {
            data.chunks_exact(34)
                .map(|block| block[2..].iter().filter(|&&q| q == 0).count())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, qmatmul, decode_step, stored_zeros);
criterion_main!(benches);
