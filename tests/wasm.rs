//! The model, sampler and wasm facade running in Chromium (`wasm-pack test --headless --chrome`).
#![cfg(target_arch = "wasm32")]

use candle_core::quantized::GgmlDType;
use prunechat::model::{KvCache, Model};
use prunechat::sampler::{Sampler, SamplingParams};
use prunechat::synthetic::{tiny_llama, TinySpec};
use prunechat::wasm::ChatEngine;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[wasm_bindgen_test]
fn cached_decode_equals_full_forward() {
    // Q8_0 weights take the wasm SIMD dot-product path; F32 the plain one.
    for (dtype, tolerance) in [(GgmlDType::F32, 1e-4f32), (GgmlDType::Q8_0, 1e-3)] {
        let spec = TinySpec {
            dtype,
            layers: vec![(4, 2, 96), (6, 3, 64)],
            ..TinySpec::default()
        };
        let model = Model::from_gguf(tiny_llama(&spec).unwrap()).unwrap();
        let tokens: Vec<u32> = (0..24).map(|i| (i * 7 + 3) % 259).collect();

        let mut cache = KvCache::new(model.config(), 64);
        let full: Vec<Vec<f32>> = model
            .forward_all(&tokens, &mut cache)
            .unwrap()
            .to_vec2()
            .unwrap();
        let mut cache = KvCache::new(model.config(), 64);
        for (pos, &t) in tokens.iter().enumerate() {
            let step: Vec<f32> = model
                .forward_last(&[t], &mut cache)
                .unwrap()
                .to_vec1()
                .unwrap();
            let diff = max_abs_diff(&step, &full[pos]);
            assert!(
                diff <= tolerance,
                "{dtype:?}: position {pos} differs by {diff}"
            );
        }
    }
}

#[wasm_bindgen_test]
fn sampler_is_seeded_and_greedy_is_argmax() {
    let logits: Vec<f32> = (0..50).map(|i| ((i * 31) % 17) as f32 * 0.25).collect();
    let mut greedy = Sampler::new(SamplingParams::greedy(4)).unwrap();
    assert_eq!(
        greedy.sample(&logits, &[]),
        prunechat::sampler::argmax(&logits)
    );

    let params = SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        seed: 9,
        ..SamplingParams::default()
    };
    let draw = || {
        let mut s = Sampler::new(params.clone()).unwrap();
        (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
    };
    assert_eq!(draw(), draw());
}

#[wasm_bindgen_test]
fn chat_engine_runs_a_turn() {
    let bytes = tiny_llama(&TinySpec {
        dtype: GgmlDType::Q8_0,
        ..TinySpec::default()
    })
    .unwrap()
    .to_bytes()
    .unwrap();
    let mut engine = ChatEngine::new(&bytes, 128).unwrap();
    let info: serde_json::Value = serde_json::from_str(&engine.info().unwrap()).unwrap();
    assert_eq!(info["n_layers"], 2);
    assert_eq!(info["chat_template"], "chatml-fallback");

    let start: serde_json::Value = serde_json::from_str(
        &engine
            .start_turn("hello", "", r#"{"temperature":0,"max_new_tokens":6}"#)
            .unwrap(),
    )
    .unwrap();
    assert!(start["prompt_tokens"].as_u64().unwrap() > 5);
    let mut steps = 0;
    loop {
        let step: serde_json::Value = serde_json::from_str(&engine.next_token().unwrap()).unwrap();
        steps += 1;
        if step["done"].as_bool().unwrap() {
            break;
        }
        assert!(steps <= 6, "max_new_tokens is 6");
    }
    engine.reset();
    let stats: serde_json::Value = serde_json::from_str(&engine.stats().unwrap()).unwrap();
    assert_eq!(stats["history_messages"], 0);
}

#[wasm_bindgen_test]
fn chat_engine_rejects_bad_input_without_panicking() {
    assert!(ChatEngine::new(b"not a model file", 128).is_err());
    let bytes = tiny_llama(&TinySpec::default())
        .unwrap()
        .to_bytes()
        .unwrap();
    assert!(
        ChatEngine::new(&bytes[..bytes.len() / 2], 128).is_err(),
        "a truncated file"
    );

    let mut engine = ChatEngine::new(&bytes, 128).unwrap();
    assert!(engine.start_turn("", "", "{}").is_err(), "an empty prompt");
    assert!(
        engine.start_turn("hi", "", "{not json").is_err(),
        "malformed settings"
    );
    assert!(
        engine.start_turn("hi", "", r#"{"top_p": 2}"#).is_err(),
        "top_p out of range"
    );
    assert!(engine.next_token().is_err(), "no turn in progress");
    // The engine still works afterwards.
    engine
        .start_turn("hi", "", r#"{"temperature":0,"max_new_tokens":2}"#)
        .unwrap();
    engine.next_token().unwrap();
}

/// Eight short chats in JSONL, for the fine-tuning tests.
fn chat_jsonl() -> String {
    (0..8)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("count {i}")},
                {"role": "assistant", "content": format!("{i} {} {}", i + 1, i + 2)},
            ]})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[wasm_bindgen_test]
fn lora_fine_tuning_lowers_the_loss_in_the_browser() {
    use prunechat::wasm_train::FineTuner;
    let model = tiny_llama(&TinySpec {
        context_length: 128,
        ..TinySpec::default()
    })
    .unwrap()
    .to_bytes()
    .unwrap();
    let config = r#"{"steps": 12, "batch_size": 4, "seq_len": 64, "lr": 0.02, "warmup_steps": 0, "lora": {"rank": 4, "alpha": 8, "targets": ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]}}"#;
    let mut tuner = FineTuner::new(&model, &chat_jsonl(), "chats.jsonl", config, 0.0, &[]).unwrap();
    let info: serde_json::Value = serde_json::from_str(&tuner.info()).unwrap();
    assert_eq!(info["train_data"]["n_samples"], 8);

    let mut losses = Vec::new();
    while !tuner.is_done().unwrap() {
        let report: serde_json::Value = serde_json::from_str(&tuner.step().unwrap()).unwrap();
        losses.push(report["loss"].as_f64().unwrap());
    }
    assert_eq!(losses.len(), 12);
    assert!(
        losses[11] < losses[0] - 1.0,
        "loss went from {} to {}",
        losses[0],
        losses[11]
    );

    // A checkpoint resumes, and the export is a model the chat engine loads.
    let checkpoint = tuner.checkpoint().unwrap();
    assert!(FineTuner::new(
        &model,
        &chat_jsonl(),
        "chats.jsonl",
        config,
        0.0,
        &checkpoint
    )
    .is_ok());
    let exported = tuner.export("q8_0").unwrap();
    assert!(ChatEngine::new(&exported, 64).is_ok());
    assert!(tuner.step().is_err(), "an exported run cannot step");
}

#[wasm_bindgen_test]
fn fine_tuner_rejects_bad_input() {
    use prunechat::wasm_train::FineTuner;
    let model = tiny_llama(&TinySpec::default())
        .unwrap()
        .to_bytes()
        .unwrap();
    assert!(
        FineTuner::new(&model, "", "empty.txt", "{}", 0.0, &[]).is_err(),
        "empty data"
    );
    assert!(
        FineTuner::new(
            &model,
            &chat_jsonl(),
            "chats.jsonl",
            "{\"steps\": 0}",
            0.0,
            &[]
        )
        .is_err(),
        "zero steps"
    );
    assert!(
        FineTuner::new(
            &model,
            &chat_jsonl(),
            "chats.jsonl",
            "{\"stepz\": 3}",
            0.0,
            &[]
        )
        .is_err(),
        "unknown setting"
    );
    assert!(FineTuner::new(b"not a model", &chat_jsonl(), "chats.jsonl", "{}", 0.0, &[]).is_err());
    assert!(FineTuner::new(
        &model,
        &chat_jsonl(),
        "chats.jsonl",
        "{}",
        0.0,
        b"bad checkpoint"
    )
    .is_err());
}

#[wasm_bindgen_test]
fn fine_tuner_keep_zeros_setting() {
    use prunechat::eval::count_stored_zeros;
    use prunechat::gguf::Gguf;
    use prunechat::model::dense::DenseModel;
    use prunechat::prune::{prune_model, Method, Pattern, PruneConfig};
    use prunechat::wasm_train::FineTuner;

    let mut dense = DenseModel::from_gguf(&tiny_llama(&TinySpec::default()).unwrap()).unwrap();
    let config = PruneConfig {
        method: Method::Magnitude,
        pattern: Pattern::Unstructured { sparsity: 0.5 },
        ..PruneConfig::default()
    };
    prune_model(
        &mut dense,
        &[(3..67).collect()],
        &config,
        None,
        &mut |_, _| {},
    )
    .unwrap();
    let pruned = dense.to_gguf(GgmlDType::F32).unwrap().to_bytes().unwrap();
    let zeros_in = |bytes: &[u8]| -> usize {
        let gguf = Gguf::read(bytes).unwrap();
        gguf.tensors
            .iter()
            .filter(|(name, _)| name.starts_with("blk."))
            .map(|(_, tensor)| count_stored_zeros(tensor).unwrap().unwrap())
            .sum()
    };
    let pruned_zeros = zeros_in(&pruned);
    assert!(pruned_zeros > 0);

    for (keep_zeros, settings) in [
        (
            true,
            r#"{"steps": 2, "batch_size": 4, "seq_len": 64, "lr": 0.01, "warmup_steps": 0}"#,
        ),
        (
            false,
            r#"{"steps": 2, "batch_size": 4, "seq_len": 64, "lr": 0.01, "warmup_steps": 0, "keep_zeros": false}"#,
        ),
    ] {
        let mut tuner =
            FineTuner::new(&pruned, &chat_jsonl(), "chats.jsonl", settings, 0.0, &[]).unwrap();
        while !tuner.is_done().unwrap() {
            tuner.step().unwrap();
        }
        let zeros = zeros_in(&tuner.export("f32").unwrap());
        if keep_zeros {
            assert!(
                zeros >= pruned_zeros,
                "keep_zeros true: {zeros} zeros after, {pruned_zeros} before"
            );
        } else {
            assert!(
                zeros < pruned_zeros / 2,
                "keep_zeros false: {zeros} zeros after, {pruned_zeros} before"
            );
        }
    }

    let invalid = r#"{"steps": 2, "keep_zeros": "yes"}"#;
    assert!(FineTuner::new(&pruned, &chat_jsonl(), "chats.jsonl", invalid, 0.0, &[]).is_err());
}

#[wasm_bindgen_test]
fn limits_kernels_match_scalar_loops() {
    use prunechat::wasm_limits::{simd_multiply_add, LimitsBuffer};

    let mut buffer =
        LimitsBuffer::new(64 * 1000 + 17).unwrap_or_else(|_| panic!("LimitsBuffer::new failed"));
    assert_eq!(buffer.bytes(), 64 * 1000);
    // The same bytes and lane sums as the SIMD loop, one 32-bit lane at a time.
    let bytes: Vec<u8> = (0..buffer.bytes()).map(|i| (i % 251) as u8 + 1).collect();
    let mut lanes = [0i32; 4];
    for (i, word) in bytes.chunks_exact(4).enumerate() {
        let value = i32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        lanes[i % 4] = lanes[i % 4].wrapping_add(value);
    }
    assert_eq!(
        buffer.read_once(),
        (lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3]) as u32
    );
    assert_eq!(buffer.copy_once(), u32::from(bytes[bytes.len() / 2]));

    let mut scalar = 0f32;
    for start in [1.0f32, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7] {
        let mut x = start;
        for _ in 0..1000 {
            x = x * 0.999_999 + 1e-7;
        }
        scalar += 4.0 * x;
    }
    let simd = simd_multiply_add(1000);
    assert!(
        (simd - scalar).abs() <= 1e-5 * scalar.abs(),
        "{simd} vs {scalar}"
    );

    let mut probe = prunechat::wasm_limits::KernelProbe::new()
        .unwrap_or_else(|_| panic!("KernelProbe::new failed"));
    assert_eq!(probe.macs_per_run(), 128 * 576 * 16);
    assert!(probe.run(2).is_finite());
}

/// Uniform values in [-1, 1) from a fixed linear congruential sequence.
fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[wasm_bindgen_test]
fn q8_kernel_is_bit_identical_to_candle_in_the_browser() {
    use candle_core::quantized::{QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};
    use prunechat::model::q8::{Q8Input, Q8Matrix};

    // 1 row is the decode case; 3 rows the short-prompt case. 150 outputs: 37 groups of four
    // and two single rows. 1536 x 576 is a SmolLM2 FFN matrix.
    // 40 rows span three tiles of input rows, the last one partial.
    for (rows, cols, m) in [
        (150, 576, 1),
        (150, 576, 3),
        (1536, 576, 1),
        (7, 64, 2),
        (150, 576, 40),
    ] {
        let w =
            Tensor::from_vec(pseudo_random(rows * cols, 1), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let repacked = Q8Matrix::from_qtensor(&q).unwrap().unwrap();
        let x = pseudo_random(m * cols, 2);
        let mut out = vec![0f32; m * rows];
        repacked.matmul(&Q8Input::quantize(&x, m, cols), &mut out);

        let xt = Tensor::from_vec(x, (m, cols), &Device::Cpu).unwrap();
        let expected: Vec<f32> = QMatMul::from_qtensor(q)
            .unwrap()
            .forward(&xt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let differing = out
            .iter()
            .zip(&expected)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differing, 0,
            "{rows}x{cols}, {m} rows: {differing} outputs differ"
        );

        // Naive reference: the dequantized weights and the dequantized Q8_0 input, summed in
        // f64. Only f32 rounding separates the kernel from it.
        let x_q = QTensor::quantize(&xt, GgmlDType::Q8_0)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let mut w_row = vec![0f32; cols];
        for r in 0..m {
            for j in 0..rows {
                repacked.dequantize_row(j, &mut w_row);
                let naive: f64 = w_row
                    .iter()
                    .zip(&x_q[r])
                    .map(|(&w, &x)| w as f64 * x as f64)
                    .sum();
                let got = out[r * rows + j] as f64;
                assert!(
                    (got - naive).abs() <= 1e-5 * (1.0 + naive.abs()),
                    "{rows}x{cols}, row {r}, output {j}: {got} vs naive {naive}"
                );
            }
        }
    }
}

#[wasm_bindgen_test]
fn long_prefill_agrees_with_decoding() {
    // 80 positions take the dequantized F32 GEMM (64 rows and more) and batched attention.
    // Decoding the same tokens one at a time takes the Q8_0 kernel, which quantizes its input.
    // Input quantization separates the two, so they agree only within a tolerance relative to
    // the size of the logits. Mixed-up output rows would differ by the logits' own size.
    let spec = TinySpec {
        dtype: GgmlDType::Q8_0,
        layers: vec![(4, 2, 96), (4, 2, 96)],
        ..TinySpec::default()
    };
    let model = Model::from_gguf(tiny_llama(&spec).unwrap()).unwrap();
    let tokens: Vec<u32> = (0..80).map(|i| (i * 13 + 5) % 259).collect();
    let mut cache = KvCache::new(model.config(), 128);
    let prefill: Vec<f32> = model
        .forward_last(&tokens, &mut cache)
        .unwrap()
        .to_vec1()
        .unwrap();

    let mut cache = KvCache::new(model.config(), 128);
    let mut step = Vec::new();
    for &t in &tokens {
        step = model
            .forward_last(&[t], &mut cache)
            .unwrap()
            .to_vec1()
            .unwrap();
    }
    let diff = max_abs_diff(&prefill, &step);
    let scale = step.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        diff < 0.02 * scale,
        "prefill and decode logits differ by {diff}; the largest logit is {scale}"
    );
}
