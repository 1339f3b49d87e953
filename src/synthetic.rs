//! Small Llama models with random weights, built in memory as GGUF, for tests and benchmarks
//! that must not depend on a downloaded file (the wasm tests among them).

use std::collections::HashMap;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::Result;
use crate::gguf::{set_f32, set_string, set_u32, Gguf, MetadataValue};
use crate::model::dense::{DenseModel, LinearKind};
use crate::model::lora::LoraConfig;
use crate::train::batch::{Sample, TrainData};
use crate::train::masks::MaskSet;
use crate::train::TrainConfig;

/// Shape of a synthetic model.
#[derive(Debug, Clone)]
pub struct TinySpec {
    pub hidden_size: usize,
    pub head_dim: usize,
    /// Per layer: (n_heads, n_kv_heads, ffn_dim).
    pub layers: Vec<(usize, usize, usize)>,
    pub context_length: usize,
    pub dtype: GgmlDType,
    /// Weights are drawn uniformly from `[-weight_scale, weight_scale]`.
    pub weight_scale: f32,
    pub seed: u64,
    pub tied_embeddings: bool,
}

impl TinySpec {
    /// Returns the smallest model shape the loaders accept: hidden size 2, one layer with one
    /// head of size 2 and an FFN of width 2, a context of 16 tokens. Its F32 GGUF file has
    /// 7.6 KB, most of it the 260-token vocabulary, so it serves as a fuzzing seed.
    pub fn smallest() -> Self {
        Self {
            hidden_size: 2,
            head_dim: 2,
            layers: vec![(1, 1, 2)],
            context_length: 16,
            ..Self::default()
        }
    }
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            hidden_size: 64,
            head_dim: 16,
            layers: vec![(4, 2, 128), (4, 2, 128)],
            context_length: 256,
            dtype: GgmlDType::F32,
            weight_scale: 0.15,
            seed: 0,
            tied_embeddings: true,
        }
    }
}

/// The control tokens of the synthetic vocabulary, ids 0, 1 and 2.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Builds a GGUF file in memory: a byte-level vocabulary (3 control tokens, the 256 byte
/// tokens and one merge, `Ġt`), ChatML chat format, and random weights.
pub fn tiny_llama(spec: &TinySpec) -> Result<Gguf> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let (tokens, token_types, merges) = byte_vocabulary();
    let vocab_size = tokens.len();
    let h = spec.hidden_size;

    let mut metadata: HashMap<String, MetadataValue> = HashMap::new();
    set_string(&mut metadata, "general.architecture", "llama");
    set_string(&mut metadata, "general.name", "tiny random llama");
    set_u32(&mut metadata, "llama.block_count", spec.layers.len() as u32);
    set_u32(
        &mut metadata,
        "llama.context_length",
        spec.context_length as u32,
    );
    set_u32(&mut metadata, "llama.embedding_length", h as u32);
    set_u32(
        &mut metadata,
        "llama.attention.key_length",
        spec.head_dim as u32,
    );
    set_u32(
        &mut metadata,
        "llama.attention.value_length",
        spec.head_dim as u32,
    );
    set_u32(
        &mut metadata,
        "llama.rope.dimension_count",
        spec.head_dim as u32,
    );
    set_f32(&mut metadata, "llama.rope.freq_base", 10_000.0);
    set_f32(
        &mut metadata,
        "llama.attention.layer_norm_rms_epsilon",
        1e-5,
    );
    set_u32(&mut metadata, "llama.vocab_size", vocab_size as u32);
    let per_layer = |f: fn(&(usize, usize, usize)) -> usize| {
        MetadataValue::Array(
            spec.layers
                .iter()
                .map(|l| MetadataValue::U32(f(l) as u32))
                .collect(),
        )
    };
    metadata.insert("llama.attention.head_count".into(), per_layer(|l| l.0));
    metadata.insert("llama.attention.head_count_kv".into(), per_layer(|l| l.1));
    metadata.insert("llama.feed_forward_length".into(), per_layer(|l| l.2));
    set_string(&mut metadata, "tokenizer.ggml.model", "gpt2");
    set_string(&mut metadata, "tokenizer.ggml.pre", "gpt2");
    metadata.insert(
        "tokenizer.ggml.tokens".into(),
        MetadataValue::Array(tokens.into_iter().map(MetadataValue::String).collect()),
    );
    metadata.insert(
        "tokenizer.ggml.token_type".into(),
        MetadataValue::Array(token_types.into_iter().map(MetadataValue::I32).collect()),
    );
    metadata.insert(
        "tokenizer.ggml.merges".into(),
        MetadataValue::Array(merges.into_iter().map(MetadataValue::String).collect()),
    );
    set_u32(&mut metadata, "tokenizer.ggml.bos_token_id", 1);
    set_u32(&mut metadata, "tokenizer.ggml.eos_token_id", 2);
    metadata.insert(
        "tokenizer.ggml.add_bos_token".into(),
        MetadataValue::Bool(false),
    );

    let mut tensors = Vec::new();
    let matrix =
        |name: String, rows: usize, cols: usize, rng: &mut StdRng| -> Result<(String, QTensor)> {
            let values: Vec<f32> = (0..rows * cols)
                .map(|_| rng.random_range(-spec.weight_scale..spec.weight_scale))
                .collect();
            let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu)?;
            Ok((name, QTensor::quantize(&t, spec.dtype)?))
        };
    tensors.push(matrix("token_embd.weight".into(), vocab_size, h, &mut rng)?);
    if !spec.tied_embeddings {
        tensors.push(matrix("output.weight".into(), vocab_size, h, &mut rng)?);
    }
    for (l, &(n_heads, n_kv, ffn)) in spec.layers.iter().enumerate() {
        let q = n_heads * spec.head_dim;
        let kv = n_kv * spec.head_dim;
        tensors.push(matrix(format!("blk.{l}.attn_q.weight"), q, h, &mut rng)?);
        tensors.push(matrix(format!("blk.{l}.attn_k.weight"), kv, h, &mut rng)?);
        tensors.push(matrix(format!("blk.{l}.attn_v.weight"), kv, h, &mut rng)?);
        tensors.push(matrix(
            format!("blk.{l}.attn_output.weight"),
            h,
            q,
            &mut rng,
        )?);
        tensors.push(matrix(
            format!("blk.{l}.ffn_gate.weight"),
            ffn,
            h,
            &mut rng,
        )?);
        tensors.push(matrix(format!("blk.{l}.ffn_up.weight"), ffn, h, &mut rng)?);
        tensors.push(matrix(
            format!("blk.{l}.ffn_down.weight"),
            h,
            ffn,
            &mut rng,
        )?);
        tensors.push((
            format!("blk.{l}.attn_norm.weight"),
            norm_weight(h, &mut rng)?,
        ));
        tensors.push((
            format!("blk.{l}.ffn_norm.weight"),
            norm_weight(h, &mut rng)?,
        ));
    }
    tensors.push(("output_norm.weight".into(), norm_weight(h, &mut rng)?));

    Ok(Gguf {
        metadata,
        tensors,
        file_bytes: 0,
    })
}

/// Returns tokens, token types and merges: control tokens, then GPT-2's 256 byte stand-ins.
fn byte_vocabulary() -> (Vec<String>, Vec<i32>, Vec<String>) {
    let mut tokens: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    let mut types = vec![3; SPECIAL_TOKENS.len()];
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut n = 0;
    for b in 0..=255u32 {
        if !printable.contains(&b) {
            printable.push(256 + n);
            n += 1;
        }
    }
    for c in printable {
        tokens.push(
            char::from_u32(c)
                .expect("GPT-2 stand-ins are valid chars")
                .to_string(),
        );
        types.push(1);
    }
    tokens.push("Ġt".into());
    types.push(1);
    (tokens, types, vec!["Ġ t".into()])
}

fn norm_weight(h: usize, rng: &mut StdRng) -> Result<QTensor> {
    let values: Vec<f32> = (0..h).map(|_| rng.random_range(0.8..1.2)).collect();
    Ok(QTensor::quantize(
        &Tensor::from_vec(values, h, &Device::Cpu)?,
        GgmlDType::F32,
    )?)
}

/// The inputs of a training run on the `TinySpec::smallest` model: two samples of 9 tokens,
/// sequence length 8, one sequence per step. Every call returns the same values, so a
/// checkpoint written by one run resumes with the inputs of another call.
pub struct TinyRun {
    pub model: DenseModel,
    pub config: TrainConfig,
    pub train: TrainData,
    /// Masks of the run: half of `blk.0.ffn_up.weight` pruned in full fine-tuning, none with
    /// LoRA.
    pub masks: MaskSet,
}

/// Builds a `TinyRun` for full fine-tuning, or for LoRA (rank 1 on the query and FFN-down
/// projections) when `lora` is true.
pub fn tiny_run(lora: bool) -> Result<TinyRun> {
    let model = DenseModel::from_gguf(&tiny_llama(&TinySpec::smallest())?)?;
    let config = TrainConfig {
        steps: 4,
        batch_size: 1,
        seq_len: 8,
        warmup_steps: 1,
        group_by_length: false,
        lora: lora.then(|| LoraConfig {
            targets: vec![LinearKind::AttnQ, LinearKind::FfnDown],
            ..LoraConfig::new(1)
        }),
        ..TrainConfig::default()
    };
    let samples = (0..2u32)
        .map(|i| Sample::text((0..9).map(|t| 3 + (7 * i + 5 * t) % 200).collect()))
        .collect();
    let train = TrainData::new(samples, config.seq_len, model.config.vocab_size)?;
    let mut masks = MaskSet::new();
    if !lora {
        let name = LinearKind::FfnUp.tensor_name(0);
        let shape = model.layers[0].linear(LinearKind::FfnUp).dims().to_vec();
        let n: usize = shape.iter().product();
        let mask_values: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
        let mask = Tensor::from_vec(mask_values, shape, &Device::Cpu)?;
        masks.insert(&model, &name, mask)?;
    }
    Ok(TinyRun {
        model,
        config,
        train,
        masks,
    })
}
