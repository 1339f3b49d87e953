//! The trainer: gradients against finite differences, overfitting, masks, sparsity penalties,
//! gradual magnitude pruning, the structured exporter, and exact resume from a checkpoint.
#![cfg(not(target_arch = "wasm32"))]

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor, Var};
use prunechat::error::Error;
use prunechat::model::dense::{DenseModel, LinearKind};
use prunechat::model::lora::LoraConfig;
use prunechat::model::Model;
use prunechat::synthetic::{tiny_llama, TinySpec};
use prunechat::train::batch::{Batch, Sample, TrainData};
use prunechat::train::checkpoint::Checkpoint;
use prunechat::train::masks::MaskSet;
use prunechat::train::schedule::{GmpSchedule, PenaltyRamp};
use prunechat::train::sparse::{self, SparsePenalty, SparsityReport};
use prunechat::train::{loss, TrainConfig, Trainer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const VOCAB: usize = 260;

fn tiny_spec() -> TinySpec {
    TinySpec {
        hidden_size: 32,
        head_dim: 8,
        layers: vec![(4, 2, 48), (2, 1, 40)],
        context_length: 64,
        tied_embeddings: false,
        ..TinySpec::default()
    }
}

fn dense(spec: &TinySpec) -> DenseModel {
    DenseModel::from_gguf(&tiny_llama(spec).unwrap()).unwrap()
}

/// `n` random plain-text samples of `len` tokens.
fn random_samples(n: usize, len: usize, seed: u64) -> Vec<Sample> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            Sample::text(
                (0..len)
                    .map(|_| rng.random_range(3..VOCAB as u32))
                    .collect(),
            )
        })
        .collect()
}

fn data(samples: Vec<Sample>, seq_len: usize) -> TrainData {
    TrainData::new(samples, seq_len, VOCAB).unwrap()
}

fn values(var: &Var) -> Vec<f32> {
    var.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
}

fn set_values(var: &Var, v: Vec<f32>) {
    var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
        .unwrap();
}

fn mean_loss(model: &DenseModel, batch: &Batch) -> f64 {
    let (nll, n) = loss::nll_sum(model, batch, true).unwrap();
    nll.to_scalar::<f32>().unwrap() as f64 / n as f64
}

// --- Gradients ------------------------------------------------------------------------------

/// Central differences of an f32 loss are only trustworthy for a large enough change. So each
/// weight tensor is probed along two unit directions where the loss moves visibly: its own
/// gradient direction (slope = gradient norm) and a random one. The step is 1e-2, and the
/// analytic and numeric slopes must agree within 2 % of the tensor's gradient norm.
const FD_STEP: f32 = 1e-2;
const FD_RELATIVE_TOLERANCE: f64 = 2e-2;

fn check_gradients(model: &DenseModel, vars: &[(String, Var)], batch: &Batch) {
    let (nll, n) = loss::nll_sum(model, batch, true).unwrap();
    let grads = (nll / n as f64).unwrap().backward().unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    for (name, var) in vars {
        let g: Vec<f32> = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name} has no gradient"))
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let norm = g.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
        assert!(
            norm > 1e-4,
            "{name}: gradient norm {norm} is too small to check"
        );
        let random: Vec<f32> = (0..g.len())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        for (label, direction) in [
            ("gradient direction", g.clone()),
            ("random direction", random),
        ] {
            let len = direction
                .iter()
                .map(|&x| (x as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let d: Vec<f32> = direction.iter().map(|&x| (x as f64 / len) as f32).collect();
            let analytic: f64 = g.iter().zip(&d).map(|(&a, &b)| a as f64 * b as f64).sum();
            let w0 = values(var);
            let shifted = |sign: f32| -> f64 {
                set_values(
                    var,
                    w0.iter()
                        .zip(&d)
                        .map(|(&w, &di)| w + sign * FD_STEP * di)
                        .collect(),
                );
                mean_loss(model, batch)
            };
            let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * FD_STEP as f64);
            set_values(var, w0);
            let error = (numeric - analytic).abs();
            assert!(
                error <= FD_RELATIVE_TOLERANCE * norm,
                "{name}, {label}: analytic slope {analytic:.6}, numeric {numeric:.6}, error {error:.2e} > {FD_RELATIVE_TOLERANCE} x gradient norm {norm:.4}"
            );
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let spec = TinySpec {
        hidden_size: 16,
        head_dim: 8,
        layers: vec![(2, 1, 24)],
        context_length: 16,
        tied_embeddings: false,
        weight_scale: 0.4,
        ..TinySpec::default()
    };
    let model = dense(&spec);
    let samples = vec![
        Sample {
            tokens: vec![5, 80, 33, 120, 7, 9, 41],
            loss_mask: vec![false, false, true, true, false, true, true],
        },
        Sample::text(vec![200, 17, 64, 3]),
    ];
    let refs: Vec<&Sample> = samples.iter().collect();
    let batch = Batch::from_samples(&refs);
    check_gradients(&model, &model.vars(), &batch);
}

#[test]
fn lora_gradients_match_finite_differences() {
    let spec = TinySpec {
        hidden_size: 16,
        head_dim: 8,
        layers: vec![(2, 1, 24)],
        context_length: 16,
        weight_scale: 0.4,
        ..TinySpec::default()
    };
    let mut model = dense(&spec);
    // A masked adapter exercises the full-matrix path of the adapter forward pass.
    let mut masks = std::collections::HashMap::new();
    let mask: Vec<f32> = (0..24 * 16).map(|i| (i % 3 != 0) as u8 as f32).collect();
    masks.insert(
        LinearKind::FfnUp.tensor_name(0),
        Tensor::from_vec(mask, (24, 16), &Device::Cpu).unwrap(),
    );
    model.add_lora(&LoraConfig::new(2), 1, &masks).unwrap();
    // A's gradient is zero while B is zero, so B gets random values and both are checked.
    let mut rng = StdRng::seed_from_u64(2);
    for (name, var) in model.lora_vars() {
        if name.ends_with("lora_b") {
            set_values(
                &var,
                (0..var.elem_count())
                    .map(|_| rng.random_range(-0.3f32..0.3))
                    .collect(),
            );
        }
    }
    let samples = vec![Sample::text(vec![5, 80, 33, 120, 7, 9, 41, 2])];
    let batch = Batch::from_samples(&samples.iter().collect::<Vec<_>>());
    check_gradients(&model, &model.lora_vars(), &batch);
    // Frozen base weights get no gradient at all.
    let (nll, _) = loss::nll_sum(&model, &batch, true).unwrap();
    let grads = nll.backward().unwrap();
    for (name, var) in model.vars() {
        assert!(
            grads.get(var.as_tensor()).is_none(),
            "{name} is frozen but has a gradient"
        );
    }
}

// --- Training -------------------------------------------------------------------------------

fn full_config(steps: usize, lr: f64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 4,
        seq_len: 32,
        lr,
        warmup_steps: 5,
        max_grad_norm: 1.0,
        ..TrainConfig::default()
    }
}

#[test]
fn tiny_model_overfits_eight_examples() {
    let samples = random_samples(8, 12, 1);
    let mut trainer = Trainer::new(
        dense(&tiny_spec()),
        full_config(200, 1e-2),
        MaskSet::new(),
        data(samples.clone(), 32),
        None,
    )
    .unwrap();
    let mut first = None;
    let mut last = 0.0;
    while !trainer.is_done() {
        let report = trainer.step().unwrap();
        first.get_or_insert(report.loss);
        last = report.loss;
    }
    let first = first.unwrap();
    assert!(
        first > 4.0,
        "a random model starts near ln(260) = 5.56, got {first}"
    );
    assert!(
        last < 0.05,
        "the loss on eight memorized examples should approach 0, got {last}"
    );

    // Greedy predictions reproduce every target.
    let model = trainer.into_model().unwrap();
    for (i, s) in samples.iter().enumerate() {
        let input = Tensor::new(&s.tokens[..s.tokens.len() - 1], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits: Vec<Vec<f32>> = model
            .forward(&input, false)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        for (pos, row) in logits.iter().enumerate() {
            assert_eq!(
                prunechat::sampler::argmax(row),
                s.tokens[pos + 1],
                "sample {i}, position {pos}"
            );
        }
    }
}

#[test]
fn lora_fine_tuning_lowers_the_loss() {
    let samples = random_samples(8, 12, 3);
    let config = TrainConfig {
        lora: Some(LoraConfig::new(4)),
        ..full_config(60, 1e-2)
    };
    let mut trainer = Trainer::new(
        dense(&tiny_spec()),
        config,
        MaskSet::new(),
        data(samples, 32),
        None,
    )
    .unwrap();
    let base: Vec<Vec<f32>> = trainer
        .model()
        .vars()
        .iter()
        .map(|(_, v)| values(v))
        .collect();
    let first = trainer.step().unwrap().loss;
    let mut last = first;
    while !trainer.is_done() {
        last = trainer.step().unwrap().loss;
    }
    assert!(last < first - 1.5, "LoRA loss went from {first} to {last}");
    for ((name, var), before) in trainer.model().vars().iter().zip(&base) {
        assert_eq!(&values(var), before, "{name} is frozen under LoRA");
    }
}

#[test]
fn gradient_accumulation_equals_one_large_batch() {
    let samples = random_samples(8, 10, 4);
    let run = |batch_size: usize, grad_accum: usize| -> Vec<f32> {
        let config = TrainConfig {
            batch_size,
            grad_accum,
            ..full_config(1, 1e-3)
        };
        let mut trainer = Trainer::new(
            dense(&tiny_spec()),
            config,
            MaskSet::new(),
            data(samples.clone(), 32),
            None,
        )
        .unwrap();
        trainer.step().unwrap();
        values(trainer.model().layers[0].linear(LinearKind::AttnQ))
    };
    let one = run(8, 1);
    let four = run(2, 4);
    let diff = one
        .iter()
        .zip(&four)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    // Same samples, same loss normalization; only float summation order differs.
    assert!(diff < 1e-6, "weights after one step differ by {diff}");
}

// --- Masks ----------------------------------------------------------------------------------

/// Zeroes every other weight of the first layer's matrices and returns the masks.
fn half_masked(model: &DenseModel) -> MaskSet {
    let mut masks = MaskSet::new();
    for kind in LinearKind::ALL {
        let var = model.layers[0].linear(kind);
        let mask: Vec<f32> = (0..var.elem_count())
            .map(|i| ((i * 7919) % 2) as f32)
            .collect();
        masks
            .insert(
                model,
                &kind.tensor_name(0),
                Tensor::from_vec(mask, var.shape(), &Device::Cpu).unwrap(),
            )
            .unwrap();
    }
    masks
}

fn assert_masked_zero(model: &DenseModel, masks: &MaskSet, step: usize) {
    for (name, mask) in masks.iter() {
        let (l, kind) = parse_name(name);
        let w = values(model.layers[l].linear(kind));
        let m: Vec<f32> = mask.flatten_all().unwrap().to_vec1().unwrap();
        for (i, (&w, &m)) in w.iter().zip(&m).enumerate() {
            if m == 0.0 {
                assert!(w == 0.0, "step {step}: {name}[{i}] is masked but holds {w}");
            }
        }
    }
}

fn parse_name(name: &str) -> (usize, LinearKind) {
    let rest = name.strip_prefix("blk.").unwrap();
    let (l, rest) = rest.split_once('.').unwrap();
    (
        l.parse().unwrap(),
        LinearKind::from_gguf_name(rest.strip_suffix(".weight").unwrap()).unwrap(),
    )
}

#[test]
fn masks_stay_zero_after_100_steps() {
    let model = dense(&tiny_spec());
    let masks = half_masked(&model);
    assert_eq!(masks.len(), 7);
    // Weight decay and a large learning rate would move any weight that the masks missed.
    let config = TrainConfig {
        optimizer: prunechat::train::optim::AdamWParams {
            weight_decay: 0.1,
            ..Default::default()
        },
        ..full_config(100, 5e-3)
    };
    let mut trainer = Trainer::new(
        model,
        config,
        masks.clone(),
        data(random_samples(8, 12, 6), 32),
        None,
    )
    .unwrap();
    let before = values(trainer.model().layers[0].linear(LinearKind::FfnUp));
    while !trainer.is_done() {
        let report = trainer.step().unwrap();
        assert_masked_zero(trainer.model(), &masks, report.step);
    }
    let after = values(trainer.model().layers[0].linear(LinearKind::FfnUp));
    let m: Vec<f32> = masks
        .get("blk.0.ffn_up.weight")
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let moved = before
        .iter()
        .zip(&after)
        .zip(&m)
        .filter(|((a, b), &m)| m == 1.0 && a != b)
        .count();
    assert!(
        moved > m.iter().filter(|&&x| x == 1.0).count() / 2,
        "kept weights train: only {moved} moved"
    );
}

#[test]
fn masks_from_zeros_survive_lora_merge() {
    let model = dense(&tiny_spec());
    half_masked(&model).apply_to_model(&model).unwrap();
    let masks = MaskSet::from_zeros(&model).unwrap();
    assert_eq!(
        masks.len(),
        7,
        "the zeros of the seven first-layer matrices become masks"
    );
    let config = TrainConfig {
        lora: Some(LoraConfig::new(4)),
        ..full_config(20, 1e-2)
    };
    let mut trainer = Trainer::new(
        model,
        config,
        masks.clone(),
        data(random_samples(8, 12, 7), 32),
        None,
    )
    .unwrap();
    while !trainer.is_done() {
        trainer.step().unwrap();
    }
    let merged = trainer.into_model().unwrap();
    assert_masked_zero(&merged, &masks, 20);
    // The merge changed the kept weights (B moved away from zero).
    let original = dense(&tiny_spec());
    assert_ne!(
        values(original.layers[1].linear(LinearKind::AttnV)),
        values(merged.layers[1].linear(LinearKind::AttnV))
    );
}

#[test]
fn masked_lora_forward_equals_merged_model() {
    let mut model = dense(&tiny_spec());
    half_masked(&model).apply_to_model(&model).unwrap();
    let masks = MaskSet::from_zeros(&model).unwrap();
    model
        .add_lora(&LoraConfig::new(3), 9, &masks.to_map())
        .unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    for (_, var) in model.lora_vars() {
        set_values(
            &var,
            (0..var.elem_count())
                .map(|_| rng.random_range(-0.2f32..0.2))
                .collect(),
        );
    }
    let tokens = Tensor::new(&[[5u32, 9, 100, 42, 7, 250]], &Device::Cpu).unwrap();
    let adapted: Vec<f32> = model
        .forward(&tokens, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    model.merge_lora().unwrap();
    let merged: Vec<f32> = model
        .forward(&tokens, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let diff = adapted
        .iter()
        .zip(&merged)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "adapted and merged logits differ by {diff}");
    assert_masked_zero(&model, &masks, 0);
}

// --- Sparsity -------------------------------------------------------------------------------

#[test]
fn l1_proximal_zeroes_exactly_under_threshold() {
    let model = dense(&tiny_spec());
    let threshold = 0.05f32;
    let before: Vec<Vec<f32>> = model
        .layers
        .iter()
        .flat_map(|l| LinearKind::ALL.map(|k| values(l.linear(k))))
        .collect();
    sparse::l1_proximal(&model, threshold as f64).unwrap();
    let after: Vec<Vec<f32>> = model
        .layers
        .iter()
        .flat_map(|l| LinearKind::ALL.map(|k| values(l.linear(k))))
        .collect();
    let mut n_zeroed = 0;
    for (b, a) in before.iter().zip(&after) {
        for (&w, &v) in b.iter().zip(a) {
            if w.abs() <= threshold {
                assert_eq!(v, 0.0, "{w} is under the threshold and must become 0");
                n_zeroed += 1;
            } else {
                assert_eq!(
                    v,
                    w.signum() * (w.abs() - threshold),
                    "{w} shrinks by the threshold"
                );
                assert_ne!(v, 0.0);
            }
        }
    }
    // Weights are uniform in [-0.15, 0.15], so about a third fall under 0.05.
    let total: usize = before.iter().map(Vec::len).sum();
    assert!(n_zeroed > total / 5, "{n_zeroed} of {total} zeroed");
    assert!(n_zeroed < total / 2, "{n_zeroed} of {total} zeroed");
}

#[test]
fn l1_training_grows_sparsity() {
    let penalty = SparsePenalty {
        l1: 2.0,
        group_ffn: 0.0,
        group_kv: 0.0,
        ramp: PenaltyRamp::Linear {
            start_step: 0,
            end_step: 10,
        },
    };
    let config = TrainConfig {
        penalty: Some(penalty),
        ..full_config(30, 3e-3)
    };
    let mut trainer = Trainer::new(
        dense(&tiny_spec()),
        config,
        MaskSet::new(),
        data(random_samples(8, 12, 8), 32),
        None,
    )
    .unwrap();
    let mut sparsities = Vec::new();
    while !trainer.is_done() {
        sparsities.push(trainer.step().unwrap().sparsity.unwrap().sparsity());
    }
    assert_eq!(sparsities[0], 0.0, "the ramp starts at zero strength");
    assert!(
        sparsities[29] > 0.3,
        "sparsity after 30 steps: {}",
        sparsities[29]
    );
    assert!(
        sparsities[29] > sparsities[10],
        "sparsity grows: {sparsities:?}"
    );
}

#[test]
fn group_lasso_zeroes_groups_and_export_removes_them() {
    let spec = tiny_spec();
    let penalty = SparsePenalty {
        l1: 0.0,
        group_ffn: 0.7,
        group_kv: 0.5,
        ramp: PenaltyRamp::Constant,
    };
    let config = TrainConfig {
        penalty: Some(penalty),
        ..full_config(25, 1e-2)
    };
    let model = dense(&spec);
    weaken_some_groups(&model, spec.hidden_size, spec.head_dim);
    let mut trainer = Trainer::new(
        model,
        config,
        MaskSet::new(),
        data(random_samples(8, 12, 9), 32),
        None,
    )
    .unwrap();
    let mut report = SparsityReport::default();
    while !trainer.is_done() {
        report = trainer.step().unwrap().sparsity.unwrap();
    }
    assert!(report.n_zero_ffn_neurons > 0, "{report:?}");
    assert!(
        report.n_zero_ffn_neurons < report.n_ffn_neurons,
        "{report:?}"
    );
    assert!(report.n_zero_kv_groups > 0, "{report:?}");
    assert!(report.n_zero_kv_groups < report.n_kv_groups, "{report:?}");
    let mut model = trainer.into_model().unwrap();

    // Zeros come in whole groups: every zero weight of the FFN belongs to a zeroed neuron.
    let ffn_zero_weights: usize = model
        .layers
        .iter()
        .map(|l| {
            [LinearKind::FfnGate, LinearKind::FfnUp, LinearKind::FfnDown]
                .iter()
                .map(|&k| sparse::count_zeros(l.linear(k)).unwrap())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(
        ffn_zero_weights,
        report.n_zero_ffn_neurons * 3 * spec.hidden_size,
        "{report:?}"
    );

    let tokens = Tensor::new(&[[5u32, 9, 100, 42, 7, 250, 11, 3]], &Device::Cpu).unwrap();
    let masked: Vec<f32> = model
        .forward(&tokens, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let bytes_before = model
        .to_gguf(GgmlDType::F32)
        .unwrap()
        .to_bytes()
        .unwrap()
        .len();
    let removed = model.remove_zeroed_groups().unwrap();
    assert_eq!(removed.removed_ffn_neurons(), report.n_zero_ffn_neurons);
    assert_eq!(removed.removed_kv_heads(), report.n_zero_kv_groups);
    for (l, layer) in model.layers.iter().enumerate() {
        assert_eq!(layer.dims, model.config.layers[l]);
        assert_eq!(
            layer.linear(LinearKind::FfnDown).dims()[1],
            layer.dims.ffn_dim
        );
        assert_eq!(
            layer.linear(LinearKind::AttnQ).dims()[0],
            layer.dims.n_heads * spec.head_dim
        );
    }
    let smaller: Vec<f32> = model
        .forward(&tokens, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let diff = masked
        .iter()
        .zip(&smaller)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff < 1e-5,
        "the smaller model's logits differ from the masked model's by {diff}"
    );

    // The exported file is smaller and the inference model reads it and computes the same.
    let gguf = model.to_gguf(GgmlDType::F32).unwrap();
    let bytes = gguf.to_bytes().unwrap();
    assert!(
        bytes.len() < bytes_before,
        "{} bytes, was {bytes_before}",
        bytes.len()
    );
    let inference = Model::from_gguf(prunechat::gguf::Gguf::read(&bytes).unwrap()).unwrap();
    let mut cache = prunechat::model::KvCache::new(inference.config(), 64);
    let ids = [5u32, 9, 100, 42, 7, 250, 11, 3];
    let logits: Vec<f32> = inference
        .forward_all(&ids, &mut cache)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let diff = masked
        .iter()
        .zip(&logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "the reloaded file's logits differ by {diff}");
}

#[test]
fn structured_removal_rejects_bad_lists() {
    let mut model = dense(&tiny_spec());
    let err = model.remove_ffn_neurons(0, &[]).unwrap_err().to_string();
    assert!(err.contains("at least one"), "{err}");
    let err = model
        .remove_ffn_neurons(0, &[3, 2])
        .unwrap_err()
        .to_string();
    assert!(err.contains("strictly increasing"), "{err}");
    let err = model.remove_kv_groups(0, &[0, 2]).unwrap_err().to_string();
    assert!(
        err.contains("index 2 is out of range, the layer has 2"),
        "{err}"
    );
    let err = model.remove_ffn_neurons(5, &[0]).unwrap_err().to_string();
    assert!(err.contains("5 is out of range"), "{err}");
    // Removing a key/value group keeps its query heads with it.
    model.remove_kv_groups(0, &[1]).unwrap();
    assert_eq!(
        (
            model.layers[0].dims.n_heads,
            model.layers[0].dims.n_kv_heads
        ),
        (2, 1)
    );
}

#[test]
fn gmp_hits_scheduled_sparsities() {
    let gmp = GmpSchedule {
        initial_sparsity: 0.1,
        final_sparsity: 0.7,
        start_step: 2,
        prune_every: 3,
        n_prunes: 4,
    };
    let config = TrainConfig {
        gmp: Some(gmp),
        ..full_config(18, 3e-3)
    };
    let mut trainer = Trainer::new(
        dense(&tiny_spec()),
        config,
        MaskSet::new(),
        data(random_samples(8, 12, 10), 32),
        None,
    )
    .unwrap();
    let mut current = 0.0;
    while !trainer.is_done() {
        let report = trainer.step().unwrap();
        if let Some(target) = gmp.target_at(report.step) {
            assert_eq!(report.pruned_to, Some(target));
            current = target;
        } else {
            assert_eq!(report.pruned_to, None, "step {}", report.step);
        }
        // Every matrix contains exactly round(s * n) zeros, where s is the latest target.
        for layer in &trainer.model().layers {
            for kind in LinearKind::ALL {
                let var = layer.linear(kind);
                let expected = (current * var.elem_count() as f64).round() as usize;
                assert_eq!(
                    sparse::count_zeros(var).unwrap(),
                    expected,
                    "step {}, {kind:?}",
                    report.step
                );
            }
        }
    }
    assert_eq!(current, 0.7);
    let expected: Vec<f64> = vec![
        0.1,
        0.7 - 0.6 * 0.75f64.powi(3),
        0.7 - 0.6 * 0.125,
        0.7 - 0.6 * 0.25f64.powi(3),
        0.7,
    ];
    let actual: Vec<f64> = [2, 5, 8, 11, 14]
        .iter()
        .map(|&t| gmp.target_at(t).unwrap())
        .collect();
    for (a, e) in actual.iter().zip(&expected) {
        assert!((a - e).abs() < 1e-12, "{actual:?} vs {expected:?}");
    }
}

// --- Checkpoints ----------------------------------------------------------------------------

fn losses(trainer: &mut Trainer, n: usize) -> Vec<f64> {
    (0..n).map(|_| trainer.step().unwrap().loss).collect()
}

/// Runs `config` straight through and with a stop after step 5. `prepare` edits a freshly
/// loaded model (as pruning would) and returns its masks.
fn check_resume(config: TrainConfig, prepare: impl Fn(&DenseModel) -> MaskSet) {
    let spec = tiny_spec();
    let samples = random_samples(10, 14, 11);
    let new_trainer = || {
        let model = dense(&spec);
        let m = prepare(&model);
        Trainer::new(model, config.clone(), m, data(samples.clone(), 32), None).unwrap()
    };
    let mut straight = new_trainer();
    let full = losses(&mut straight, config.steps);

    let mut first = new_trainer();
    let mut resumed = losses(&mut first, 5);
    let bytes = first.checkpoint_bytes().unwrap();
    drop(first);
    let model = dense(&spec);
    prepare(&model);
    let mut second = Trainer::resume(
        model,
        config.clone(),
        data(samples.clone(), 32),
        None,
        &bytes,
    )
    .unwrap();
    assert_eq!(second.step_count(), 5);
    resumed.extend(losses(&mut second, config.steps - 5));
    assert_eq!(resumed, full, "the resumed loss curve differs");
    for ((name, a), (_, b)) in straight
        .model()
        .vars()
        .iter()
        .zip(second.model().vars().iter())
    {
        assert_eq!(values(a), values(b), "{name} differs at the end");
    }
}

#[test]
fn resumed_run_reproduces_loss_curve() {
    let gmp = GmpSchedule {
        initial_sparsity: 0.2,
        final_sparsity: 0.5,
        start_step: 3,
        prune_every: 2,
        n_prunes: 3,
    };
    let penalty = SparsePenalty {
        l1: 0.5,
        group_ffn: 0.1,
        group_kv: 0.0,
        ramp: PenaltyRamp::Linear {
            start_step: 2,
            end_step: 8,
        },
    };
    let config = TrainConfig {
        grad_accum: 2,
        batch_size: 3,
        gmp: Some(gmp),
        penalty: Some(penalty),
        ..full_config(12, 3e-3)
    };
    check_resume(config, |m| half_masked(m));
}

#[test]
fn resumed_lora_run_reproduces_loss_curve() {
    let config = TrainConfig {
        lora: Some(LoraConfig::new(2)),
        ..full_config(10, 1e-2)
    };
    check_resume(config, |m| {
        half_masked(m).apply_to_model(m).unwrap();
        MaskSet::from_zeros(m).unwrap()
    });
}

#[test]
fn resume_rejects_other_settings_or_data() {
    let spec = tiny_spec();
    let samples = random_samples(6, 10, 12);
    let config = full_config(6, 1e-3);
    let mut trainer = Trainer::new(
        dense(&spec),
        config.clone(),
        MaskSet::new(),
        data(samples.clone(), 32),
        None,
    )
    .unwrap();
    trainer.step().unwrap();
    let bytes = trainer.checkpoint_bytes().unwrap();

    let other = TrainConfig {
        lr: 2e-3,
        ..config.clone()
    };
    let err = Trainer::resume(dense(&spec), other, data(samples.clone(), 32), None, &bytes)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("different training settings"), "{err}");
    assert!(err.contains("lr: 0.001 vs 0.002"), "{err}");
    let err = Trainer::resume(
        dense(&spec),
        config.clone(),
        data(random_samples(6, 10, 13), 32),
        None,
        &bytes,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("different training data"), "{err}");
    let err = Trainer::resume(
        dense(&spec),
        config.clone(),
        data(samples.clone(), 32),
        None,
        &bytes[..bytes.len() / 2],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("checkpoint"), "{err}");
    let err = Trainer::resume(
        dense(&spec),
        config.clone(),
        data(samples, 32),
        None,
        b"not a checkpoint",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn non_finite_loss_stops_and_keeps_state() {
    // An absurd learning rate makes the weights about 1e30 after one step, so the squares in the
    // next step's RMS norm overflow f32.
    let config = TrainConfig {
        max_grad_norm: 0.0,
        warmup_steps: 0,
        ..full_config(50, 1e30)
    };
    let mut trainer = Trainer::new(
        dense(&tiny_spec()),
        config,
        MaskSet::new(),
        data(random_samples(8, 12, 14), 32),
        None,
    )
    .unwrap();
    let mut last_good = trainer.checkpoint_bytes().unwrap();
    let err = loop {
        match trainer.step() {
            Ok(_) => last_good = trainer.checkpoint_bytes().unwrap(),
            Err(e) => break e,
        }
    };
    let completed = trainer.step_count();
    match &err {
        Error::NonFinite { step, .. } => assert_eq!(*step, completed + 1),
        other => panic!("expected a non-finite loss error, got {other}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("at step {}", completed + 1)),
        "{err}"
    );
    // The failed step changed nothing: the state equals the last checkpoint.
    let now = Checkpoint::read(&trainer.checkpoint_bytes().unwrap()).unwrap();
    let last_good = Checkpoint::read(&last_good).unwrap();
    assert_eq!(now.metadata, last_good.metadata);
    for (name, tensor) in &last_good.tensors {
        let a: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = now.tensors[name].flatten_all().unwrap().to_vec1().unwrap();
        assert!(a == b, "{name} changed in the failed step");
    }
}

#[test]
fn checkpoint_dir_keeps_newest_and_ignores_partial_files() {
    use prunechat::train::checkpoint::CheckpointDir;
    let dir = std::env::temp_dir().join(format!("prunechat-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let checkpoints = CheckpointDir::new(&dir, 2).unwrap();
    let mut trainer = Trainer::new(
        dense(&tiny_spec()),
        full_config(4, 1e-3),
        MaskSet::new(),
        data(random_samples(4, 8, 15), 32),
        None,
    )
    .unwrap();
    for _ in 0..3 {
        trainer.step().unwrap();
        checkpoints.save(&trainer).unwrap();
    }
    // An interrupted write leaves only a temporary file, which is not a checkpoint.
    std::fs::write(dir.join(".step-00000004.safetensors.123.tmp"), b"partial").unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ".step-00000004.safetensors.123.tmp",
            "step-00000002.safetensors",
            "step-00000003.safetensors"
        ]
    );
    assert_eq!(
        checkpoints.latest().unwrap().unwrap(),
        dir.join("step-00000003.safetensors")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_reports_each_step_and_stops_on_request() {
    let mut trainer = Trainer::new(
        dense(&tiny_spec()),
        full_config(5, 1e-3),
        MaskSet::new(),
        data(random_samples(4, 8, 18), 32),
        None,
    )
    .unwrap();
    let mut seen = Vec::new();
    trainer
        .run(|r| {
            seen.push(r.step);
            if r.step == 3 {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(seen, vec![1, 2, 3]);
    trainer
        .run(|r| {
            seen.push(r.step);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    assert!(trainer.is_done());
}

#[test]
fn evaluation_runs_every_n_steps() {
    let config = TrainConfig {
        eval_every: 3,
        ..full_config(7, 1e-3)
    };
    let eval = data(random_samples(5, 9, 16), 32);
    let mut trainer = Trainer::new(
        dense(&tiny_spec()),
        config,
        MaskSet::new(),
        data(random_samples(8, 12, 17), 32),
        Some(eval),
    )
    .unwrap();
    let mut eval_steps = Vec::new();
    while !trainer.is_done() {
        if let Some(e) = trainer.step().unwrap().eval {
            assert!(e.loss.is_finite(), "{e:?}");
            assert_eq!(e.n_targets, 5 * 8, "{e:?}");
            eval_steps.push(e.step);
        }
    }
    assert_eq!(
        eval_steps,
        vec![3, 6, 7],
        "every 3 steps and after the last"
    );
}

#[test]
fn config_rejects_bad_values() {
    let cases: Vec<(TrainConfig, &str)> = vec![
        (
            TrainConfig {
                steps: 0,
                ..TrainConfig::default()
            },
            "steps: must be at least 1",
        ),
        (
            TrainConfig {
                lr: -1.0,
                ..TrainConfig::default()
            },
            "learning rate: must be a positive number, got -1",
        ),
        (
            TrainConfig {
                lora: Some(LoraConfig::new(0)),
                ..TrainConfig::default()
            },
            "LoRA rank: must be at least 1",
        ),
        (
            TrainConfig {
                lora: Some(LoraConfig::new(2)),
                gmp: Some(GmpSchedule {
                    initial_sparsity: 0.0,
                    final_sparsity: 0.5,
                    start_step: 0,
                    prune_every: 1,
                    n_prunes: 1,
                }),
                ..TrainConfig::default()
            },
            "LoRA freezes",
        ),
    ];
    for (config, expected) in cases {
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(expected), "expected \"{expected}\" in: {err}");
    }
    let err = Trainer::new(
        dense(&tiny_spec()),
        TrainConfig {
            seq_len: 100,
            ..TrainConfig::default()
        },
        MaskSet::new(),
        data(random_samples(2, 5, 1), 32),
        None,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("100 exceeds the model's context of 64"),
        "{err}"
    );
}

/// Scales even-numbered FFN neurons and the first key/value group of layer 0 by 0.2, so a group
/// lasso has weak groups to remove first.
fn weaken_some_groups(model: &DenseModel, hidden: usize, head_dim: usize) {
    for layer in &model.layers {
        let ffn = layer.dims.ffn_dim;
        for kind in [LinearKind::FfnGate, LinearKind::FfnUp] {
            let var = layer.linear(kind);
            let v: Vec<f32> = values(var)
                .iter()
                .enumerate()
                .map(|(i, &x)| if (i / hidden) % 2 == 0 { x * 0.2 } else { x })
                .collect();
            set_values(var, v);
        }
        let var = layer.linear(LinearKind::FfnDown);
        let v: Vec<f32> = values(var)
            .iter()
            .enumerate()
            .map(|(i, &x)| if (i % ffn) % 2 == 0 { x * 0.2 } else { x })
            .collect();
        set_values(var, v);
    }
    let layer = &model.layers[0];
    let n_rep = layer.dims.n_heads / layer.dims.n_kv_heads;
    for (kind, rows) in [
        (LinearKind::AttnQ, n_rep * head_dim),
        (LinearKind::AttnK, head_dim),
        (LinearKind::AttnV, head_dim),
    ] {
        let var = layer.linear(kind);
        let v: Vec<f32> = values(var)
            .iter()
            .enumerate()
            .map(|(i, &x)| if i / hidden < rows { x * 0.2 } else { x })
            .collect();
        set_values(var, v);
    }
    let var = layer.linear(LinearKind::AttnOutput);
    let cols = layer.dims.n_heads * head_dim;
    let v: Vec<f32> = values(var)
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if i % cols < n_rep * head_dim {
                x * 0.2
            } else {
                x
            }
        })
        .collect();
    set_values(var, v);
}
