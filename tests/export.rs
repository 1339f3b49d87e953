//! Pruned models written as GGUF and as `.psparse`, read back, and evaluated.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use prunechat::eval::{perplexity, predict, sparsity};
use prunechat::gguf::Gguf;
use prunechat::model::dense::{DenseModel, LinearKind};
use prunechat::model::{KvCache, Model};
use prunechat::prune::{
    masks_from_zeros, prune_model, Matrix, Method, Pattern, PruneConfig, PruneOutcome,
};
use prunechat::sparse::{self, ValueType};
use prunechat::synthetic::{tiny_llama, TinySpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn tiny_spec(tied: bool) -> TinySpec {
    TinySpec {
        tied_embeddings: tied,
        seed: 40,
        ..TinySpec::default()
    }
}

fn calibration(n_samples: usize, seq_len: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n_samples)
        .map(|_| (0..seq_len).map(|_| rng.random_range(3..259)).collect())
        .collect()
}

fn pruned_tiny(tied: bool, include_embeddings: bool) -> (DenseModel, PruneOutcome) {
    let mut model = DenseModel::from_gguf(&tiny_llama(&tiny_spec(tied)).unwrap()).unwrap();
    let config = PruneConfig {
        method: Method::SparseGpt,
        pattern: Pattern::Unstructured { sparsity: 0.5 },
        include_embeddings,
        ..PruneConfig::default()
    };
    let outcome = prune_model(
        &mut model,
        &calibration(4, 32, 41),
        &config,
        None,
        &mut |_, _| {},
    )
    .unwrap();
    (model, outcome)
}

fn all_logits(model: &Model, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = KvCache::new(model.config(), tokens.len());
    model
        .forward_all(tokens, &mut cache)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn dense_logits(model: &DenseModel, tokens: &[u32]) -> Vec<Vec<f32>> {
    let input = Tensor::new(tokens, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward(&input, false)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| common::max_abs_diff(x, y))
        .fold(0.0, f32::max)
}

fn matrices(model: &DenseModel) -> Vec<(String, Matrix)> {
    model
        .vars()
        .into_iter()
        .map(|(name, var)| {
            let t = var.as_tensor();
            let matrix = if t.rank() == 2 {
                Matrix::from_tensor(t).unwrap()
            } else {
                Matrix::new(1, t.elem_count(), t.to_vec1().unwrap()).unwrap()
            };
            (name, matrix)
        })
        .collect()
}

#[test]
fn pruned_gguf_round_trips() {
    for tied in [true, false] {
        let (model, outcome) = pruned_tiny(tied, !tied);
        let tokens: Vec<u32> = (0..40).map(|i| (i * 17 + 4) % 259).collect();
        let expected = dense_logits(&model, &tokens);

        // F32: the same masks come back, and the same logits.
        let bytes = model.to_gguf(GgmlDType::F32).unwrap().to_bytes().unwrap();
        let loaded = DenseModel::from_gguf(&Gguf::read(&bytes).unwrap()).unwrap();
        assert_eq!(
            masks_from_zeros(&loaded, !tied).unwrap(),
            outcome.masks,
            "tied: {tied}"
        );
        let back = Model::from_gguf(Gguf::read(&bytes).unwrap()).unwrap();
        let diff = max_diff(&all_logits(&back, &tokens), &expected);
        assert!(diff < 1e-4, "tied {tied}: F32 GGUF logits differ by {diff}");

        // Q8_0: every pruned weight is still exactly zero, and the logits move only by rounding.
        let q8 = Gguf::read(&model.to_gguf(GgmlDType::Q8_0).unwrap().to_bytes().unwrap()).unwrap();
        let q8_model = DenseModel::from_gguf(&q8).unwrap();
        for tensor_mask in &outcome.masks {
            let (_, matrix) = matrices(&q8_model)
                .into_iter()
                .find(|(n, _)| *n == tensor_mask.name)
                .unwrap();
            for (k, (&keep, &w)) in tensor_mask.mask.kept.iter().zip(&matrix.data).enumerate() {
                if !keep {
                    assert_eq!(
                        w, 0.0,
                        "{} weight {k} is pruned but {w} after Q8_0",
                        tensor_mask.name
                    );
                }
            }
        }
        // Q8_0 rounds weights and, in the matmul kernel, activations too. The pruned model
        // moves by no more than three times what the same rounding does to the dense model.
        let diff = max_diff(
            &all_logits(&Model::from_gguf(q8).unwrap(), &tokens),
            &expected,
        );
        let dense = DenseModel::from_gguf(&tiny_llama(&tiny_spec(tied)).unwrap()).unwrap();
        let dense_q8 = Model::from_gguf(dense.to_gguf(GgmlDType::Q8_0).unwrap()).unwrap();
        let dense_diff = max_diff(
            &all_logits(&dense_q8, &tokens),
            &dense_logits(&dense, &tokens),
        );
        assert!(
            diff < 3.0 * dense_diff,
            "tied {tied}: Q8_0 moves the pruned logits by {diff}, the dense ones by {dense_diff}"
        );
    }
}

#[test]
fn pruned_smollm2_layer_survives_q8_0() {
    let gguf = common::load_smollm2();
    let mut model = DenseModel::from_gguf(&gguf).unwrap();
    let config = PruneConfig {
        method: Method::Magnitude,
        pattern: Pattern::NOfM { n: 2, m: 4 },
        layers: Some(0..1),
        ..PruneConfig::default()
    };
    let outcome = prune_model(&mut model, &[], &config, None, &mut |_, _| {}).unwrap();
    let back = DenseModel::from_gguf(
        &Gguf::read(&model.to_gguf(GgmlDType::Q8_0).unwrap().to_bytes().unwrap()).unwrap(),
    )
    .unwrap();
    for kind in LinearKind::ALL {
        let name = kind.tensor_name(0);
        let mask = &outcome.masks.iter().find(|m| m.name == name).unwrap().mask;
        let matrix = Matrix::from_tensor(back.layers[0].linear(kind).as_tensor()).unwrap();
        let pruned_nonzero = mask
            .kept
            .iter()
            .zip(&matrix.data)
            .filter(|(&keep, &w)| !keep && w != 0.0)
            .count();
        assert_eq!(
            pruned_nonzero, 0,
            "{name}: pruned weights that are not zero after Q8_0"
        );
        for r in 0..matrix.rows {
            for group in matrix.row(r).chunks(4) {
                assert!(
                    group.iter().filter(|&&w| w != 0.0).count() <= 2,
                    "{name} row {r}: 2:4 broken after Q8_0"
                );
            }
        }
    }
}

#[test]
fn sparse_file_round_trips_exactly() {
    for (tied, include_embeddings) in [(true, false), (true, true), (false, true)] {
        let (model, outcome) = pruned_tiny(tied, include_embeddings);
        let original = matrices(&model);

        // F32 values: every tensor comes back bit for bit.
        let bytes = sparse::to_bytes(&model, &outcome.masks, ValueType::F32).unwrap();
        assert!(sparse::is_sparse(&bytes));
        let gguf = sparse::read(&bytes).unwrap();
        assert_eq!(gguf.file_bytes, bytes.len() as u64);
        let loaded = DenseModel::from_gguf(&gguf).unwrap();
        assert_eq!(
            matrices(&loaded),
            original,
            "tied {tied}, embeddings {include_embeddings}"
        );

        // F16 values: every matrix comes back as its F16 rounding; norms stay F32.
        let bytes = sparse::to_bytes(&model, &outcome.masks, ValueType::F16).unwrap();
        let loaded = DenseModel::from_gguf(&sparse::read(&bytes).unwrap()).unwrap();
        for ((name, got), (_, want)) in matrices(&loaded).iter().zip(&original) {
            let rounded: Vec<f32> = if name.ends_with("norm.weight") {
                want.data.clone()
            } else {
                want.data
                    .iter()
                    .map(|&x| half::f16::from_f32(x).to_f32())
                    .collect()
            };
            assert_eq!(got.data, rounded, "{name}");
        }

        // The bitmask keeps exactly the masked weights, so the masks come back too.
        assert_eq!(
            masks_from_zeros(&loaded, include_embeddings).unwrap(),
            outcome.masks
        );
    }
}

#[test]
fn sparse_file_is_smaller_than_dense_f16() {
    let (model, outcome) = pruned_tiny(true, false);
    let sparse_bytes = sparse::to_bytes(&model, &outcome.masks, ValueType::F16)
        .unwrap()
        .len();
    let dense_bytes = model
        .to_gguf(GgmlDType::F16)
        .unwrap()
        .to_bytes()
        .unwrap()
        .len();
    // Half the decoder weights are gone, at the cost of one mask bit per weight.
    let decoder_weights: usize = outcome.masks.iter().map(|m| m.mask.kept.len()).sum();
    let expected_saving = decoder_weights * 2 / 2 - decoder_weights / 8;
    let saving = dense_bytes as i64 - sparse_bytes as i64;
    assert!(
        (saving - expected_saving as i64).abs() < 4096,
        "saved {saving} bytes, expected about {expected_saving}"
    );
}

#[test]
fn corrupt_sparse_files_are_rejected() {
    let (model, outcome) = pruned_tiny(true, false);
    let bytes = sparse::to_bytes(&model, &outcome.masks, ValueType::F16).unwrap();
    let error = |b: &[u8]| sparse::read(b).map(|_| ()).unwrap_err().to_string();

    assert!(
        error(&bytes[..bytes.len() - 3]).contains("truncated"),
        "{}",
        error(&bytes[..bytes.len() - 3])
    );
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0, 0]);
    assert!(
        error(&longer).contains("2 bytes follow the last tensor"),
        "{}",
        error(&longer)
    );
    let mut bad_magic = bytes.clone();
    bad_magic[0] = b'X';
    assert!(error(&bad_magic).contains("magic"), "{}", error(&bad_magic));
    let mut bad_version = bytes.clone();
    bad_version[8] = 9;
    assert!(
        error(&bad_version).contains("version 9"),
        "{}",
        error(&bad_version)
    );
    let mut bad_type = bytes.clone();
    bad_type[12] = 7;
    assert!(
        error(&bad_type).contains("value type code 7"),
        "{}",
        error(&bad_type)
    );

    // Flip one mask bit of the first sparse tensor: the popcount no longer matches.
    let embedded_len = u64::from_le_bytes(bytes[16..24].try_into().unwrap()) as usize;
    let first = 24 + embedded_len + 4;
    let name_len = u32::from_le_bytes(bytes[first..first + 4].try_into().unwrap()) as usize;
    let mask_start = first + 4 + name_len + 24;
    let mut flipped = bytes.clone();
    flipped[mask_start] ^= 1;
    let err = error(&flipped);
    assert!(err.contains("blk.0.attn_q.weight"), "{err}");
    assert!(err.contains("the header says"), "{err}");
}

#[test]
fn perplexity_matches_naive_computation() {
    let gguf = tiny_llama(&tiny_spec(true)).unwrap();
    let dense = DenseModel::from_gguf(&gguf).unwrap();
    let model = Model::from_gguf(tiny_llama(&tiny_spec(true)).unwrap()).unwrap();
    let windows = calibration(3, 20, 42);
    let mut windows = windows;
    windows.push(vec![7, 8, 9]);

    let mut nll = 0.0f64;
    let mut count = 0;
    for tokens in &windows {
        let logits = dense_logits(&dense, tokens);
        for t in 0..tokens.len() - 1 {
            let row: Vec<f64> = logits[t].iter().map(|&x| x as f64).collect();
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = row.iter().map(|x| (x - max).exp()).sum::<f64>().ln() + max;
            nll += log_sum - row[tokens[t + 1] as usize];
            count += 1;
        }
    }
    let own_predictions = predict(&model, &windows, &mut |_, _| {}).unwrap();
    let mut progress = Vec::new();
    let report = perplexity(
        &model,
        &windows,
        Some(&own_predictions),
        &mut |done, total| progress.push((done, total)),
    )
    .unwrap();
    assert_eq!(report.n_predicted, count);
    assert_eq!(report.n_windows, 4);
    assert_eq!(report.window, 20);
    assert!(
        (report.mean_nll - nll / count as f64).abs() < 1e-4,
        "{} vs {}",
        report.mean_nll,
        nll / count as f64
    );
    assert_eq!(
        report.top1_agreement,
        Some(1.0),
        "a model agrees with itself"
    );
    assert_eq!(report.reference_perplexity, Some(report.perplexity));
    assert_eq!(progress, vec![(1, 4), (2, 4), (3, 4), (4, 4)]);

    let err = perplexity(&model, &[vec![5]], None, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("window 1 has 1 token(s)"), "{err}");
    let err = perplexity(
        &model,
        &windows[..2],
        Some(&own_predictions),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("made on other windows"), "{err}");
}

#[test]
fn agreement_counts_matching_top1() {
    let (pruned, _) = pruned_tiny(true, false);
    let pruned_model = Model::from_gguf(pruned.to_gguf(GgmlDType::F32).unwrap()).unwrap();
    let reference = Model::from_gguf(tiny_llama(&tiny_spec(true)).unwrap()).unwrap();
    let windows = calibration(2, 30, 43);
    let reference_predictions = predict(&reference, &windows, &mut |_, _| {}).unwrap();
    let report = perplexity(
        &pruned_model,
        &windows,
        Some(&reference_predictions),
        &mut |_, _| {},
    )
    .unwrap();

    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0
    };
    let mut same = 0;
    for tokens in &windows {
        let a = all_logits(&pruned_model, tokens);
        let b = all_logits(&reference, tokens);
        same += (0..tokens.len() - 1)
            .filter(|&t| argmax(&a[t]) == argmax(&b[t]))
            .count();
    }
    let expected = same as f64 / report.n_predicted as f64;
    assert_eq!(report.top1_agreement, Some(expected));
    assert!(
        expected < 1.0,
        "pruning half the weights changed no prediction"
    );
}

#[test]
fn sparsity_report_counts_zeros() {
    let (model, outcome) = pruned_tiny(false, true);
    let mut gguf = Gguf::read(&model.to_gguf(GgmlDType::F32).unwrap().to_bytes().unwrap()).unwrap();
    gguf.file_bytes = 12345;
    let report = sparsity(&gguf).unwrap();
    for (l, entry) in report.layers.iter().enumerate() {
        let expected: usize = LinearKind::ALL
            .iter()
            .map(|k| {
                Matrix::from_tensor(model.layers[l].linear(*k).as_tensor())
                    .unwrap()
                    .n_zeros()
            })
            .sum();
        assert_eq!(entry.n_zeros, expected, "layer {l}");
        assert_eq!(entry.layer, Some(l));
    }
    let names: Vec<&str> = report
        .embeddings
        .iter()
        .map(|e| e.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["token_embd.weight", "output.weight"]);
    let total_zeros: usize = outcome.report.n_zeros();
    assert_eq!(
        report.n_params - report.n_nonzero_params,
        total_zeros,
        "only pruned weights are zero"
    );
    assert_eq!(report.n_params, model.config.n_params());
    assert_eq!(report.file_bytes, 12345);
    assert!(
        (report.decoder_sparsity - 0.5).abs() < 1e-9,
        "{}",
        report.decoder_sparsity
    );
}
