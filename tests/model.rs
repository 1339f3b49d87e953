//! The decoder's cached paths against one full forward pass.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use candle_core::quantized::GgmlDType;
use prunechat::gguf::Gguf;
use prunechat::model::{KvCache, Model, PREFILL_CHUNK};
use prunechat::synthetic::{tiny_llama, TinySpec};

/// Logits of the real model are about 10 to 40; with F32 weights the step-by-step and full
/// passes differ only in float summation order (measured: under 1e-4).
const REAL_MODEL_TOLERANCE: f32 = 1e-3;
const TINY_MODEL_TOLERANCE: f32 = 1e-4;

fn step_by_step(model: &Model, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = KvCache::new(model.config(), 1024);
    tokens
        .iter()
        .map(|&t| {
            model
                .forward_last(&[t], &mut cache)
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect()
}

fn full_pass(model: &Model, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = KvCache::new(model.config(), 1024);
    model
        .forward_all(tokens, &mut cache)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>], tolerance: f32, what: &str) {
    assert_eq!(a.len(), b.len());
    for (pos, (x, y)) in a.iter().zip(b).enumerate() {
        let diff = common::max_abs_diff(x, y);
        assert!(
            diff <= tolerance,
            "{what}: position {pos} differs by {diff} (tolerance {tolerance})"
        );
    }
}

// The real model is compared with F32 weights. Its Q8_0 matmuls quantize activations in blocks
// of 32, and SmolLM2's outlier activations make such a block's step large, so a one-ulp change
// in attention output can flip a rounding step: at the "\n" after <|im_end|> the two Q8_0 paths
// differ by up to 1.8 logits (llama.cpp differs from both by more there).
#[test]
fn cached_decode_equals_full_forward_real_model() {
    let q4 = Gguf::open(common::smollm2_q4_1()).unwrap();
    let (f32_weights, _) = prunechat::convert::convert(q4, GgmlDType::F32, |_, _, _| {}).unwrap();
    let model = Model::from_gguf(f32_weights).unwrap();
    let tokens: Vec<u32> = vec![
        1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 2, 198, 1, 4093, 198,
        1780, 314, 216, 34, 27, 34, 47,
    ];
    let steps = step_by_step(&model, &tokens);
    let full = full_pass(&model, &tokens);
    assert_close(
        &steps,
        &full,
        REAL_MODEL_TOLERANCE,
        "SmolLM2 step-by-step vs full",
    );
}

#[test]
fn cached_decode_equals_full_forward_tiny_models() {
    for (dtype, tied) in [(GgmlDType::F32, true), (GgmlDType::Q8_0, false)] {
        let spec = TinySpec {
            dtype,
            tied_embeddings: tied,
            layers: vec![(4, 2, 96), (6, 3, 64), (2, 1, 32)],
            hidden_size: 64,
            ..TinySpec::default()
        };
        let model = Model::from_gguf(tiny_llama(&spec).unwrap()).unwrap();
        // 80 positions: the full pass takes the dequantized F32 GEMM path (64 rows or more),
        // the steps take the quantized dot products, which also quantize activations to Q8_0.
        let tokens: Vec<u32> = (0..80).map(|i| (i * 7 + 3) % 259).collect();
        // Q8_0 activation quantization moves these logits (about ±5) by up to 0.03.
        let tolerance = if dtype == GgmlDType::F32 {
            TINY_MODEL_TOLERANCE
        } else {
            6e-2
        };
        assert_close(
            &step_by_step(&model, &tokens),
            &full_pass(&model, &tokens),
            tolerance,
            &format!("{dtype:?}"),
        );
    }
}

#[test]
fn chunked_prefill_equals_one_pass() {
    let spec = TinySpec {
        context_length: 1024,
        ..TinySpec::default()
    };
    let model = Model::from_gguf(tiny_llama(&spec).unwrap()).unwrap();
    let tokens: Vec<u32> = (0..(PREFILL_CHUNK * 2 + 17) as u32)
        .map(|i| (i * 13 + 5) % 259)
        .collect();

    let mut cache = KvCache::new(model.config(), 1024);
    let chunked = model
        .forward_last(&tokens, &mut cache)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(cache.len(), tokens.len());

    let mut cache = KvCache::new(model.config(), 1024);
    let full = model
        .forward_all(&tokens, &mut cache)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let diff = common::max_abs_diff(&chunked, full.last().unwrap());
    assert!(
        diff < TINY_MODEL_TOLERANCE,
        "chunked prefill differs by {diff}"
    );
}

#[test]
fn truncated_cache_recomputes_same_logits() {
    let model = Model::from_gguf(tiny_llama(&TinySpec::default()).unwrap()).unwrap();
    let tokens: Vec<u32> = (0..30).map(|i| (i * 11 + 1) % 259).collect();
    let mut cache = KvCache::new(model.config(), 256);
    let first = model
        .forward_last(&tokens, &mut cache)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();

    // Rewind to position 10 and run the rest again: the same logits come out.
    cache.truncate(10);
    let again = model
        .forward_last(&tokens[10..], &mut cache)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(common::max_abs_diff(&first, &again) < TINY_MODEL_TOLERANCE);
}

#[test]
fn context_overflow_is_an_error() {
    let model = Model::from_gguf(tiny_llama(&TinySpec::default()).unwrap()).unwrap();
    let mut cache = KvCache::new(model.config(), 8);
    let err = model
        .forward_last(&[5; 9], &mut cache)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("9 positions exceed the context of 8 tokens"),
        "{err}"
    );
    let err = model
        .forward_last(&[300], &mut cache)
        .unwrap_err()
        .to_string();
    assert!(err.contains("300 is outside the vocabulary"), "{err}");
}

#[test]
fn gguf_bytes_round_trip() {
    let gguf = tiny_llama(&TinySpec {
        dtype: GgmlDType::Q8_0,
        ..TinySpec::default()
    })
    .unwrap();
    let bytes = gguf.to_bytes().unwrap();
    let back = Gguf::read(&bytes).unwrap();
    assert_eq!(back.tensors.len(), gguf.tensors.len());
    for (name, tensor) in &gguf.tensors {
        let other = back
            .tensor(name)
            .unwrap_or_else(|| panic!("{name} is missing after the round trip"));
        assert_eq!(other.dtype(), tensor.dtype(), "{name}");
        assert_eq!(other.shape(), tensor.shape(), "{name}");
        assert_eq!(other.data().unwrap(), tensor.data().unwrap(), "{name}");
    }
    assert_eq!(
        back.get_per_layer("llama.attention.head_count", 2).unwrap(),
        Some(vec![4, 4])
    );
    assert_eq!(
        back.to_bytes().unwrap(),
        bytes,
        "writing again gives the same bytes"
    );
}

#[test]
fn dense_model_matches_inference_model() {
    use prunechat::model::dense::DenseModel;
    let spec = TinySpec {
        layers: vec![(4, 2, 96), (6, 3, 64)],
        tied_embeddings: false,
        ..TinySpec::default()
    };
    let gguf = tiny_llama(&spec).unwrap();
    let dense = DenseModel::from_gguf(&gguf).unwrap();
    let model = Model::from_gguf(tiny_llama(&spec).unwrap()).unwrap();
    let tokens: Vec<u32> = (0..20).map(|i| (i * 5 + 2) % 259).collect();
    let reference = full_pass(&model, &tokens);

    let input = candle_core::Tensor::new(tokens.as_slice(), &candle_core::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    for differentiable in [false, true] {
        let logits: Vec<Vec<f32>> = dense
            .forward(&input, differentiable)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_close(
            &logits,
            &reference,
            TINY_MODEL_TOLERANCE,
            &format!("dense (differentiable: {differentiable})"),
        );
    }

    // Quantizing the master weights back to F32 GGUF gives the same model.
    let back = Model::from_gguf(dense.to_gguf(GgmlDType::F32).unwrap()).unwrap();
    assert_close(
        &full_pass(&back, &tokens),
        &reference,
        0.0,
        "to_gguf round trip",
    );
}

#[test]
fn dequantized_prefill_equals_dense_reference() {
    // With 64 or more positions every layer matmul dequantizes its Q8_0 weight and runs in F32,
    // so the result must equal the F32 master-weight model built from the same file.
    use prunechat::model::dense::DenseModel;
    let spec = TinySpec {
        dtype: GgmlDType::Q8_0,
        ..TinySpec::default()
    };
    let model = Model::from_gguf(tiny_llama(&spec).unwrap()).unwrap();
    let dense = DenseModel::from_gguf(&tiny_llama(&spec).unwrap()).unwrap();
    let tokens: Vec<u32> = (0..96).map(|i| (i * 17 + 4) % 259).collect();

    let mut cache = KvCache::new(model.config(), 128);
    let hidden = model
        .forward_hidden(&tokens, &mut cache)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();

    let input = candle_core::Tensor::new(tokens.as_slice(), &candle_core::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut x = dense.embed(&input).unwrap();
    for l in 0..dense.layers.len() {
        x = dense.layer_forward(l, &x, false, None).unwrap();
    }
    let eps = dense.config.rms_norm_eps;
    let reference = candle_nn::ops::rms_norm(&x, dense.output_norm.as_tensor(), eps).unwrap();
    let reference: Vec<Vec<f32>> = reference.squeeze(0).unwrap().to_vec2().unwrap();
    assert_close(
        &hidden,
        &reference,
        TINY_MODEL_TOLERANCE,
        "Q8_0 model, 96 positions, vs F32 reference",
    );
}
