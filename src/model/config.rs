//! Model configuration read from GGUF metadata, with per-layer attention and FFN sizes.

use crate::error::{Error, Result};
use crate::gguf::Gguf;

/// RoPE base frequency used when `llama.rope.freq_base` is missing (Llama 1/2's value).
pub const DEFAULT_ROPE_THETA: f32 = 10_000.0;
/// RMSNorm epsilon used when `llama.attention.layer_norm_rms_epsilon` is missing.
pub const DEFAULT_RMS_NORM_EPS: f32 = 1e-5;

/// Tensors of one decoder layer: two norms, four attention and three FFN matrices.
const TENSORS_PER_LAYER: usize = 9;

/// Sizes of one decoder layer. A structurally pruned model may have different sizes in every
/// layer; `n_heads` is always a multiple of `n_kv_heads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LayerDims {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub ffn_dim: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    pub architecture: String,
    pub name: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub head_dim: usize,
    pub layers: Vec<LayerDims>,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub context_length: usize,
    /// True when the file has no `output.weight` and the output head reuses `token_embd.weight`.
    pub tied_embeddings: bool,
}

impl Config {
    /// Resolves the configuration from GGUF metadata and checks it against the tensor shapes,
    /// which are the ground truth for per-layer sizes.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let architecture = gguf.get_string("general.architecture")?.ok_or_else(|| Error::MissingKey {
            key: "general.architecture".into(),
            hint: "the file does not say which model family it holds; it was not written by a GGUF converter".into(),
        })?;
        // llama.cpp's `deci` architecture (DeciLM, Nemotron-NAS) is Llama with per-layer head
        // counts and FFN widths; `to_gguf` writes it for structurally pruned models. Its layers
        // without attention or FFN (a count of 0) are rejected by `check_layer`.
        if architecture != "llama" && architecture != "deci" {
            return Err(Error::UnsupportedArchitecture(architecture));
        }
        let arch = architecture.as_str();
        let required = |key: &str| -> Result<u64> {
            let full = format!("{arch}.{key}");
            gguf.get_u64(&full)?.ok_or_else(|| Error::MissingKey {
                key: full.clone(),
                hint: "required for a Llama model".into(),
            })
        };

        let n_layers = required("block_count")? as usize;
        // Every layer has TENSORS_PER_LAYER tensors (`check_layer`). Checking the count before
        // the per-layer reads keeps their vectors as small as the file.
        let max_layers = gguf.tensors.len() / TENSORS_PER_LAYER;
        if n_layers > max_layers {
            return Err(Error::InvalidKey {
                key: format!("{arch}.block_count"),
                message: format!(
                    "{n_layers} layers, but the file's {} tensors hold at most {max_layers} \
                     ({TENSORS_PER_LAYER} per layer)",
                    gguf.tensors.len()
                ),
            });
        }
        let hidden_size = required("embedding_length")? as usize;
        let context_length = required("context_length")? as usize;
        let head_counts =
            per_layer_required(gguf, &format!("{arch}.attention.head_count"), n_layers)?;
        let kv_head_counts = gguf
            .get_per_layer(&format!("{arch}.attention.head_count_kv"), n_layers)?
            .unwrap_or_else(|| head_counts.clone());
        let ffn_dims = per_layer_required(gguf, &format!("{arch}.feed_forward_length"), n_layers)?;
        if n_layers == 0 {
            return Err(Error::InvalidKey {
                key: format!("{arch}.block_count"),
                message: "0 layers".into(),
            });
        }
        if hidden_size == 0 {
            return Err(Error::InvalidKey {
                key: format!("{arch}.embedding_length"),
                message: "0".into(),
            });
        }
        if context_length == 0 {
            return Err(Error::InvalidKey {
                key: format!("{arch}.context_length"),
                message: "0 tokens; it must be the context length the model was trained with"
                    .into(),
            });
        }

        // head_dim is fixed across layers; after head pruning it no longer equals
        // hidden_size / head_count, so the explicit key wins.
        let head_dim = match gguf.get_u64(&format!("{arch}.attention.key_length"))? {
            Some(v) => v as usize,
            None => match gguf.get_u64(&format!("{arch}.rope.dimension_count"))? {
                Some(v) => v as usize,
                None => {
                    let h = head_counts[0];
                    if h == 0 || hidden_size % h != 0 {
                        return Err(Error::InvalidKey {
                            key: format!("{arch}.attention.head_count"),
                            message: format!("{h} does not divide embedding_length {hidden_size}"),
                        });
                    }
                    hidden_size / h
                }
            },
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(Error::InvalidKey {
                key: format!("{arch}.attention.key_length"),
                message: format!(
                    "head dimension {head_dim} must be even and positive for rotary embeddings"
                ),
            });
        }

        let embd = gguf
            .tensor("token_embd.weight")
            .ok_or_else(|| Error::tensor("token_embd.weight", "missing from the file"))?;
        let (vocab_size, embd_width) = embd.shape().dims2().map_err(|_| {
            Error::tensor(
                "token_embd.weight",
                format!("expected 2 dimensions, got {:?}", embd.shape()),
            )
        })?;
        if embd_width != hidden_size {
            return Err(Error::tensor(
                "token_embd.weight",
                format!("width {embd_width} differs from embedding_length {hidden_size}"),
            ));
        }

        let mut layers = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let dims = LayerDims {
                n_heads: head_counts[l],
                n_kv_heads: kv_head_counts[l],
                ffn_dim: ffn_dims[l],
            };
            check_layer(gguf, l, dims, hidden_size, head_dim)?;
            layers.push(dims);
        }

        let rope_theta = gguf
            .get_f32(&format!("{arch}.rope.freq_base"))?
            .unwrap_or(DEFAULT_ROPE_THETA);
        let rms_norm_eps = gguf
            .get_f32(&format!("{arch}.attention.layer_norm_rms_epsilon"))?
            .unwrap_or(DEFAULT_RMS_NORM_EPS);
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            return Err(Error::InvalidKey {
                key: format!("{arch}.rope.freq_base"),
                message: format!("{rope_theta} is not a positive number"),
            });
        }
        if !(rms_norm_eps.is_finite() && rms_norm_eps > 0.0) {
            return Err(Error::InvalidKey {
                key: format!("{arch}.attention.layer_norm_rms_epsilon"),
                message: format!("{rms_norm_eps} is not a positive number"),
            });
        }
        let tied_embeddings = gguf.tensor("output.weight").is_none();
        if let Some(out) = gguf.tensor("output.weight") {
            if out.shape().dims() != [vocab_size, hidden_size] {
                return Err(Error::tensor(
                    "output.weight",
                    format!(
                        "shape {:?}, expected [{vocab_size}, {hidden_size}]",
                        out.shape().dims()
                    ),
                ));
            }
        }

        Ok(Self {
            name: gguf
                .get_string("general.name")?
                .unwrap_or_else(|| "unnamed model".into()),
            architecture,
            vocab_size,
            hidden_size,
            head_dim,
            layers,
            rms_norm_eps,
            rope_theta,
            context_length,
            tied_embeddings,
        })
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Number of weights in the model (the tied output head counted once).
    pub fn n_params(&self) -> usize {
        let h = self.hidden_size;
        let mut n = self.vocab_size * h + h;
        if !self.tied_embeddings {
            n += self.vocab_size * h;
        }
        for l in &self.layers {
            let q = l.n_heads * self.head_dim;
            let kv = l.n_kv_heads * self.head_dim;
            n += h * q + 2 * h * kv + q * h + 3 * h * l.ffn_dim + 2 * h;
        }
        n
    }
}

fn per_layer_required(gguf: &Gguf, key: &str, n_layers: usize) -> Result<Vec<usize>> {
    gguf.get_per_layer(key, n_layers)?
        .ok_or_else(|| Error::MissingKey {
            key: key.to_string(),
            hint: "required for a Llama model".into(),
        })
}

/// Checks one layer's sizes against the shapes of its tensors.
fn check_layer(
    gguf: &Gguf,
    l: usize,
    dims: LayerDims,
    hidden: usize,
    head_dim: usize,
) -> Result<()> {
    if dims.n_heads == 0 || dims.n_kv_heads == 0 || dims.ffn_dim == 0 {
        return Err(Error::InvalidKey {
            key: format!("layer {l} sizes"),
            message: format!(
                "head_count {}, head_count_kv {}, feed_forward_length {}: every layer needs at least one of each",
                dims.n_heads, dims.n_kv_heads, dims.ffn_dim
            ),
        });
    }
    if dims.n_heads % dims.n_kv_heads != 0 {
        return Err(Error::InvalidKey {
            key: format!("layer {l} head_count"),
            message: format!(
                "{} query heads is not a multiple of {} key/value heads (grouped-query attention needs that)",
                dims.n_heads, dims.n_kv_heads
            ),
        });
    }
    let (Some(q), Some(kv)) = (
        dims.n_heads.checked_mul(head_dim),
        dims.n_kv_heads.checked_mul(head_dim),
    ) else {
        return Err(Error::InvalidKey {
            key: format!("layer {l} sizes"),
            message: format!(
                "head_count {} times the head dimension {head_dim} overflows usize",
                dims.n_heads
            ),
        });
    };
    let expected: [(&str, Vec<usize>); TENSORS_PER_LAYER] = [
        ("attn_norm", vec![hidden]),
        ("attn_q", vec![q, hidden]),
        ("attn_k", vec![kv, hidden]),
        ("attn_v", vec![kv, hidden]),
        ("attn_output", vec![hidden, q]),
        ("ffn_norm", vec![hidden]),
        ("ffn_gate", vec![dims.ffn_dim, hidden]),
        ("ffn_up", vec![dims.ffn_dim, hidden]),
        ("ffn_down", vec![hidden, dims.ffn_dim]),
    ];
    for (short, shape) in expected {
        let name = format!("blk.{l}.{short}.weight");
        let tensor = gguf
            .tensor(&name)
            .ok_or_else(|| Error::tensor(&name, "missing from the file"))?;
        if tensor.shape().dims() != shape.as_slice() {
            return Err(Error::tensor(
                &name,
                format!(
                    "shape {:?} (rows, columns) does not match the metadata, which implies {shape:?} \
                     (heads {}, kv heads {}, head_dim {head_dim}, ffn {}, hidden {hidden})",
                    tensor.shape().dims(),
                    dims.n_heads,
                    dims.n_kv_heads,
                    dims.ffn_dim
                ),
            ));
        }
    }
    Ok(())
}
