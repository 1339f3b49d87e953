//! Training a model from scratch. A byte-level BPE tokenizer is trained on the corpus with the
//! `tokenizers` crate, and a Llama-style model of a preset size is initialized randomly. Both go
//! into a GGUF file that the chat session and the page load like any other model.

use std::collections::HashMap;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

use crate::chat_template::CHATML;
use crate::data::{Corpus, DocumentContent};
use crate::error::{Error, Result};
use crate::gguf::{set_f32, set_string, set_u32, Gguf, MetadataValue};
use crate::tokenizer::token_type;

/// Control tokens of a from-scratch vocabulary, ids 0, 1 and 2. `<|im_start|>` and
/// `<|im_end|>` are ChatML's turn markers; `<|im_end|>` is also the end-of-sequence token.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Sizes of a from-scratch model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Preset {
    pub name: &'static str,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub ffn_dim: usize,
    pub context_length: usize,
}

/// `tiny`: about 3.7 million parameters (0.5 M of them in the tied embedding), small enough to
/// train on chatterbot-corpus dialogue on a laptop CPU.
pub const PRESETS: &[Preset] = &[Preset {
    name: "tiny",
    vocab_size: 2048,
    hidden_size: 256,
    n_layers: 4,
    n_heads: 8,
    n_kv_heads: 4,
    ffn_dim: 768,
    context_length: 256,
}];

pub fn preset(name: &str) -> Result<Preset> {
    PRESETS
        .iter()
        .find(|p| p.name == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            Error::invalid_argument(
                "preset",
                format!("\"{name}\" is not one of: {}", names.join(", ")),
            )
        })
}

/// A trained byte-level BPE vocabulary in GGUF form: tokens by id, their GGUF token types, and
/// merges as `"left right"`, highest priority first.
#[derive(Debug, Clone)]
pub struct BpeVocabulary {
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
}

/// Trains a byte-level BPE tokenizer with up to `vocab_size` tokens on `texts`. The
/// pre-tokenizer is GPT-2's (byte-level, regex split, no prefix space), the one
/// `tokenizer.ggml.pre = "gpt2"` selects when the file is loaded again. The 256 byte tokens are
/// always in the vocabulary, so any text can be encoded.
pub fn train_bpe(texts: &[String], vocab_size: usize) -> Result<BpeVocabulary> {
    let minimum = SPECIAL_TOKENS.len() + 256;
    if vocab_size < minimum {
        return Err(Error::invalid_argument(
            "vocabulary size",
            format!("must be at least {minimum} (control tokens and 256 bytes), got {vocab_size}"),
        ));
    }
    if texts.iter().all(|t| t.trim().is_empty()) {
        return Err(Error::Data("no text to train the tokenizer on".into()));
    }
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer: TrainerWrapper = trainer.into();
    let mut tokenizer = tokenizers::Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(|e| Error::Tokenizer(format!("training the BPE tokenizer failed: {e}")))?;

    // The model's serialized form lists the merges in priority order.
    let model = serde_json::to_value(tokenizer.get_model())
        .map_err(|e| Error::Tokenizer(format!("reading the trained model failed: {e}")))?;
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| Error::Tokenizer("the trained model has no vocabulary".into()))?;
    let mut tokens = vec![String::new(); vocab.len()];
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .filter(|&id| (id as usize) < tokens.len())
            .ok_or_else(|| Error::Tokenizer(format!("token {token:?} has an invalid id {id}")))?;
        tokens[id as usize] = token.clone();
    }
    for (i, special) in SPECIAL_TOKENS.iter().enumerate() {
        if tokens[i] != *special {
            return Err(Error::Tokenizer(format!(
                "expected {special} at id {i}, the trainer put {:?} there",
                tokens[i]
            )));
        }
    }
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| Error::Tokenizer("the trained model has no merges".into()))?
        .iter()
        .map(|m| match m {
            serde_json::Value::Array(pair) if pair.len() == 2 => Ok(format!(
                "{} {}",
                pair[0].as_str().unwrap_or_default(),
                pair[1].as_str().unwrap_or_default()
            )),
            serde_json::Value::String(s) => Ok(s.clone()),
            other => Err(Error::Tokenizer(format!("unexpected merge entry {other}"))),
        })
        .collect::<Result<Vec<_>>>()?;
    let token_types = (0..tokens.len())
        .map(|i| {
            if i < SPECIAL_TOKENS.len() {
                token_type::CONTROL as i32
            } else {
                token_type::NORMAL as i32
            }
        })
        .collect();
    Ok(BpeVocabulary {
        tokens,
        token_types,
        merges,
    })
}

/// Returns the text of every document: a text document as is, a chat document's message
/// contents one per line.
pub fn corpus_texts(corpus: &Corpus) -> Vec<String> {
    corpus
        .documents
        .iter()
        .map(|d| match &d.content {
            DocumentContent::Text(t) => t.clone(),
            DocumentContent::Chat(messages) => messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        })
        .collect()
}

/// Builds an F32 GGUF file with random weights for `preset` and the vocabulary `vocab`, with
/// ChatML as its chat template. Matrices are drawn from N(0, 0.02²). The matrices that write
/// into the residual stream (`attn_output`, `ffn_down`) use std 0.02 / sqrt(2 * n_layers), as
/// GPT-2 does. Norm weights are 1. The output head is tied to the embedding.
pub fn init_model(preset: &Preset, vocab: &BpeVocabulary, seed: u64) -> Result<Gguf> {
    let p = preset;
    if p.hidden_size % p.n_heads != 0 || p.n_heads % p.n_kv_heads != 0 {
        return Err(Error::invalid_argument(
            "preset",
            format!(
                "{} heads must divide hidden size {} and be a multiple of {} key/value heads",
                p.n_heads, p.hidden_size, p.n_kv_heads
            ),
        ));
    }
    let head_dim = p.hidden_size / p.n_heads;
    let vocab_size = vocab.tokens.len();
    let mut rng = StdRng::seed_from_u64(seed);

    let mut metadata: HashMap<String, MetadataValue> = HashMap::new();
    set_string(&mut metadata, "general.architecture", "llama");
    set_string(
        &mut metadata,
        "general.name",
        &format!("prunechat {} (trained from scratch)", p.name),
    );
    set_u32(&mut metadata, "llama.block_count", p.n_layers as u32);
    set_u32(
        &mut metadata,
        "llama.context_length",
        p.context_length as u32,
    );
    set_u32(
        &mut metadata,
        "llama.embedding_length",
        p.hidden_size as u32,
    );
    set_u32(&mut metadata, "llama.feed_forward_length", p.ffn_dim as u32);
    set_u32(
        &mut metadata,
        "llama.attention.head_count",
        p.n_heads as u32,
    );
    set_u32(
        &mut metadata,
        "llama.attention.head_count_kv",
        p.n_kv_heads as u32,
    );
    set_u32(&mut metadata, "llama.attention.key_length", head_dim as u32);
    set_u32(
        &mut metadata,
        "llama.attention.value_length",
        head_dim as u32,
    );
    set_u32(&mut metadata, "llama.rope.dimension_count", head_dim as u32);
    set_f32(&mut metadata, "llama.rope.freq_base", 10_000.0);
    set_f32(
        &mut metadata,
        "llama.attention.layer_norm_rms_epsilon",
        1e-5,
    );
    set_u32(&mut metadata, "llama.vocab_size", vocab_size as u32);
    set_string(&mut metadata, "tokenizer.ggml.model", "gpt2");
    set_string(&mut metadata, "tokenizer.ggml.pre", "gpt2");
    metadata.insert(
        "tokenizer.ggml.tokens".into(),
        MetadataValue::Array(
            vocab
                .tokens
                .iter()
                .cloned()
                .map(MetadataValue::String)
                .collect(),
        ),
    );
    metadata.insert(
        "tokenizer.ggml.token_type".into(),
        MetadataValue::Array(
            vocab
                .token_types
                .iter()
                .copied()
                .map(MetadataValue::I32)
                .collect(),
        ),
    );
    metadata.insert(
        "tokenizer.ggml.merges".into(),
        MetadataValue::Array(
            vocab
                .merges
                .iter()
                .cloned()
                .map(MetadataValue::String)
                .collect(),
        ),
    );
    set_u32(&mut metadata, "tokenizer.ggml.bos_token_id", 1);
    set_u32(&mut metadata, "tokenizer.ggml.eos_token_id", 2);
    set_u32(&mut metadata, "tokenizer.ggml.padding_token_id", 0);
    metadata.insert(
        "tokenizer.ggml.add_bos_token".into(),
        MetadataValue::Bool(false),
    );
    set_string(&mut metadata, "tokenizer.chat_template", CHATML);

    let std = 0.02f32;
    let residual_std = std / (2.0 * p.n_layers as f32).sqrt();
    let mut normal = |rows: usize, cols: usize, std: f32| -> Result<QTensor> {
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| std * standard_normal(&mut rng))
            .collect();
        Ok(QTensor::quantize(
            &Tensor::from_vec(values, (rows, cols), &Device::Cpu)?,
            GgmlDType::F32,
        )?)
    };
    let ones = |n: usize| -> Result<QTensor> {
        Ok(QTensor::quantize(
            &Tensor::ones(n, candle_core::DType::F32, &Device::Cpu)?,
            GgmlDType::F32,
        )?)
    };
    let (h, q, kv) = (p.hidden_size, p.n_heads * head_dim, p.n_kv_heads * head_dim);
    let mut tensors = vec![("token_embd.weight".to_string(), normal(vocab_size, h, std)?)];
    for l in 0..p.n_layers {
        tensors.push((format!("blk.{l}.attn_norm.weight"), ones(h)?));
        tensors.push((format!("blk.{l}.attn_q.weight"), normal(q, h, std)?));
        tensors.push((format!("blk.{l}.attn_k.weight"), normal(kv, h, std)?));
        tensors.push((format!("blk.{l}.attn_v.weight"), normal(kv, h, std)?));
        tensors.push((
            format!("blk.{l}.attn_output.weight"),
            normal(h, q, residual_std)?,
        ));
        tensors.push((format!("blk.{l}.ffn_norm.weight"), ones(h)?));
        tensors.push((
            format!("blk.{l}.ffn_gate.weight"),
            normal(p.ffn_dim, h, std)?,
        ));
        tensors.push((format!("blk.{l}.ffn_up.weight"), normal(p.ffn_dim, h, std)?));
        tensors.push((
            format!("blk.{l}.ffn_down.weight"),
            normal(h, p.ffn_dim, residual_std)?,
        ));
    }
    tensors.push(("output_norm.weight".into(), ones(h)?));
    Ok(Gguf {
        metadata,
        tensors,
        file_bytes: 0,
    })
}

/// Draws from the standard normal distribution (Box-Muller), because rand 0.9 without
/// `rand_distr` has none.
fn standard_normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}
