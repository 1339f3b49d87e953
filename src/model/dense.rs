//! F32 master weights: the form the model takes for pruning and training.
//!
//! Every weight is a candle `Var`, so the same struct serves calibration (plain forward, fast
//! kernels) and training (differentiable forward, gradients through candle's autograd).
//! `from_gguf` dequantizes a file's tensors and `to_gguf` quantizes them back.

use std::collections::HashMap;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor, Var, D};

use crate::error::{Error, Result};
use crate::gguf::{Gguf, MetadataValue};
use crate::model::config::{Config, LayerDims};
use crate::model::frozen::frozen_matmul;
use crate::model::lora::LoraAdapter;
use crate::model::{causal_mask, rope_tables};

/// The seven weight matrices of a decoder layer, named as in GGUF (`blk.N.<name>.weight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearKind {
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
}

impl LinearKind {
    pub const ALL: [LinearKind; 7] = [
        LinearKind::AttnQ,
        LinearKind::AttnK,
        LinearKind::AttnV,
        LinearKind::AttnOutput,
        LinearKind::FfnGate,
        LinearKind::FfnUp,
        LinearKind::FfnDown,
    ];

    pub fn gguf_name(self) -> &'static str {
        match self {
            LinearKind::AttnQ => "attn_q",
            LinearKind::AttnK => "attn_k",
            LinearKind::AttnV => "attn_v",
            LinearKind::AttnOutput => "attn_output",
            LinearKind::FfnGate => "ffn_gate",
            LinearKind::FfnUp => "ffn_up",
            LinearKind::FfnDown => "ffn_down",
        }
    }

    /// Parses a GGUF short name such as `attn_q`.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.gguf_name() == name)
    }

    /// Returns the GGUF tensor name of this matrix in layer `l`.
    pub fn tensor_name(self, l: usize) -> String {
        format!("blk.{l}.{}.weight", self.gguf_name())
    }
}

/// One decoder layer's weights. Matrices are `(out_features, in_features)`.
pub struct DenseLayer {
    pub dims: LayerDims,
    pub attn_norm: Var,
    pub ffn_norm: Var,
    pub linears: HashMap<LinearKind, Var>,
    /// Low-rank adapters added to some of the matrices (empty unless `add_lora` was called).
    pub adapters: HashMap<LinearKind, LoraAdapter>,
}

impl DenseLayer {
    pub fn linear(&self, kind: LinearKind) -> &Var {
        &self.linears[&kind]
    }
}

pub struct DenseModel {
    pub config: Config,
    /// `(vocab_size, hidden_size)`.
    pub token_embd: Var,
    /// `None` when the output head is tied to `token_embd`.
    pub output: Option<Var>,
    pub output_norm: Var,
    pub layers: Vec<DenseLayer>,
    /// Metadata of the file the weights came from, kept for `to_gguf`.
    pub metadata: HashMap<String, MetadataValue>,
    /// When true, the differentiable forward pass detaches the base weights, so backpropagation
    /// computes gradients for the LoRA adapters only.
    base_frozen: bool,
    cos: Tensor,
    sin: Tensor,
}

/// Receives the input of each weight matrix during `layer_forward`: the kind and a tensor of
/// shape `(batch, seq, in_features)`.
pub type CaptureFn<'a> = dyn FnMut(LinearKind, &Tensor) -> Result<()> + 'a;

impl DenseModel {
    /// Dequantizes every tensor of `gguf` to F32.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let config = Config::from_gguf(gguf)?;
        let load = |name: &str| -> Result<Var> {
            let t = gguf
                .tensor(name)
                .ok_or_else(|| Error::tensor(name, "missing from the file"))?;
            Ok(Var::from_tensor(
                &t.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?,
            )?)
        };
        let mut layers = Vec::with_capacity(config.n_layers());
        for (l, dims) in config.layers.iter().enumerate() {
            let mut linears = HashMap::new();
            for kind in LinearKind::ALL {
                linears.insert(kind, load(&kind.tensor_name(l))?);
            }
            layers.push(DenseLayer {
                dims: *dims,
                attn_norm: load(&format!("blk.{l}.attn_norm.weight"))?,
                ffn_norm: load(&format!("blk.{l}.ffn_norm.weight"))?,
                linears,
                adapters: HashMap::new(),
            });
        }
        let positions = config.context_length.clamp(1, 32_768);
        let (cos, sin) = rope_tables(config.head_dim, positions, config.rope_theta)?;
        Ok(Self {
            token_embd: load("token_embd.weight")?,
            output: if config.tied_embeddings {
                None
            } else {
                Some(load("output.weight")?)
            },
            output_norm: load("output_norm.weight")?,
            layers,
            metadata: gguf.metadata.clone(),
            base_frozen: false,
            config,
            cos,
            sin,
        })
    }

    /// Returns a copy that shares the weight storage with `self`. Structural edits
    /// (`remove_ffn_neurons` and the others) replace a `Var` instead of writing into it, so they
    /// leave the other copy unchanged, but `Var::set` on a shared weight changes both. Models
    /// with LoRA adapters are rejected.
    pub fn shallow_copy(&self) -> Result<Self> {
        if self.layers.iter().any(|layer| !layer.adapters.is_empty()) {
            return Err(Error::invalid_argument(
                "model",
                "a model with LoRA adapters cannot be copied; merge them (merge_lora) first",
            ));
        }
        let layers = self
            .layers
            .iter()
            .map(|layer| DenseLayer {
                dims: layer.dims,
                attn_norm: layer.attn_norm.clone(),
                ffn_norm: layer.ffn_norm.clone(),
                linears: layer.linears.clone(),
                adapters: HashMap::new(),
            })
            .collect();
        Ok(Self {
            config: self.config.clone(),
            token_embd: self.token_embd.clone(),
            output: self.output.clone(),
            output_norm: self.output_norm.clone(),
            layers,
            metadata: self.metadata.clone(),
            base_frozen: self.base_frozen,
            cos: self.cos.clone(),
            sin: self.sin.clone(),
        })
    }

    /// Freezes (or unfreezes) the base weights for training: frozen weights enter the
    /// differentiable forward pass detached, so they receive no gradient.
    pub fn set_base_frozen(&mut self, frozen: bool) {
        self.base_frozen = frozen;
    }

    pub fn base_frozen(&self) -> bool {
        self.base_frozen
    }

    /// Returns a base weight as the forward pass uses it (detached when frozen).
    fn weight(&self, var: &Var) -> Tensor {
        if self.base_frozen {
            var.as_tensor().detach()
        } else {
            var.as_tensor().clone()
        }
    }

    /// Builds a GGUF file: matrices quantized to `dtype` (F16 where a row does not fill whole
    /// blocks), norms in F32, and the metadata updated to the current per-layer sizes.
    pub fn to_gguf(&self, dtype: GgmlDType) -> Result<Gguf> {
        let metadata =
            crate::model::gguf_size::export_metadata(&self.metadata, &self.config, dtype);
        let matrix = |t: &Tensor| -> Result<QTensor> {
            Ok(QTensor::quantize(
                t,
                crate::model::gguf_size::matrix_dtype(t.dim(D::Minus1)?, dtype),
            )?)
        };
        let vector = |t: &Tensor| -> Result<QTensor> { Ok(QTensor::quantize(t, GgmlDType::F32)?) };

        let mut tensors = vec![("token_embd.weight".to_string(), matrix(&self.token_embd)?)];
        for (l, layer) in self.layers.iter().enumerate() {
            tensors.push((
                format!("blk.{l}.attn_norm.weight"),
                vector(&layer.attn_norm)?,
            ));
            for kind in LinearKind::ALL {
                tensors.push((kind.tensor_name(l), matrix(layer.linear(kind))?));
            }
            tensors.push((format!("blk.{l}.ffn_norm.weight"), vector(&layer.ffn_norm)?));
        }
        tensors.push(("output_norm.weight".into(), vector(&self.output_norm)?));
        if let Some(output) = &self.output {
            tensors.push(("output.weight".into(), matrix(output)?));
        }
        Ok(Gguf {
            metadata,
            tensors,
            file_bytes: 0,
        })
    }

    /// Lists all trainable weights, in a fixed order: embedding, per layer (norms, then matrices in
    /// `LinearKind::ALL` order), output norm, output head.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut vars = vec![("token_embd.weight".to_string(), self.token_embd.clone())];
        for (l, layer) in self.layers.iter().enumerate() {
            vars.push((format!("blk.{l}.attn_norm.weight"), layer.attn_norm.clone()));
            vars.push((format!("blk.{l}.ffn_norm.weight"), layer.ffn_norm.clone()));
            for kind in LinearKind::ALL {
                vars.push((kind.tensor_name(l), layer.linear(kind).clone()));
            }
        }
        vars.push(("output_norm.weight".into(), self.output_norm.clone()));
        if let Some(output) = &self.output {
            vars.push(("output.weight".into(), output.clone()));
        }
        vars
    }

    /// Token embeddings: `tokens` `(batch, seq)` to `(batch, seq, hidden)`.
    pub fn embed(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let flat = tokens.flatten_all()?;
        Ok(self.weight(&self.token_embd).embedding(&flat)?.reshape((
            b,
            t,
            self.config.hidden_size,
        ))?)
    }

    /// Runs decoder layer `l` on hidden states `x` `(batch, seq, hidden)` starting at position
    /// 0, with a causal mask. `capture` receives the input of every weight matrix.
    /// With `differentiable`, only operations that candle can backpropagate through are used.
    pub fn layer_forward(
        &self,
        l: usize,
        x: &Tensor,
        differentiable: bool,
        mut capture: Option<&mut CaptureFn>,
    ) -> Result<Tensor> {
        let layer = &self.layers[l];
        let (b, seq, _) = x.dims3()?;
        let hd = self.config.head_dim;
        let (n_heads, n_kv) = (layer.dims.n_heads, layer.dims.n_kv_heads);
        let n_rep = n_heads / n_kv;
        let mut seen = |kind: LinearKind, t: &Tensor| -> Result<()> {
            match capture.as_mut() {
                Some(f) => f(kind, t),
                None => Ok(()),
            }
        };
        let linear = |kind: LinearKind, t: &Tensor| -> Result<Tensor> {
            // One 2-D matmul over all positions: a batched matmul against a broadcast weight
            // would also make backpropagation form one weight gradient per sequence.
            let (b, seq, in_features) = t.dims3()?;
            let w = self.weight(layer.linear(kind));
            let y = if self.base_frozen {
                frozen_matmul(t, &w)?
            } else {
                t.reshape((b * seq, in_features))?
                    .matmul(&w.t()?)?
                    .reshape((b, seq, w.dim(0)?))?
            };
            match layer.adapters.get(&kind) {
                Some(adapter) => Ok((y + adapter.forward(t)?)?),
                None => Ok(y),
            }
        };

        // Attention block.
        let h = self.rms_norm(x, &layer.attn_norm, differentiable)?;
        seen(LinearKind::AttnQ, &h)?;
        seen(LinearKind::AttnK, &h)?;
        seen(LinearKind::AttnV, &h)?;
        let q = linear(LinearKind::AttnQ, &h)?
            .reshape((b, seq, n_heads, hd))?
            .transpose(1, 2)?
            .contiguous()?; // (b, n_heads, seq, hd)
        let k = linear(LinearKind::AttnK, &h)?
            .reshape((b, seq, n_kv, hd))?
            .transpose(1, 2)?
            .contiguous()?; // (b, n_kv, seq, hd)
        let v = linear(LinearKind::AttnV, &h)?
            .reshape((b, seq, n_kv, hd))?
            .transpose(1, 2)?
            .contiguous()?; // (b, n_kv, seq, hd)
        let cos = self.cos.narrow(0, 0, seq)?;
        let sin = self.sin.narrow(0, 0, seq)?;
        let (q, k) = if differentiable {
            (
                candle_nn::rotary_emb::rope_i_slow(&q, &cos, &sin)?,
                candle_nn::rotary_emb::rope_i_slow(&k, &cos, &sin)?,
            )
        } else {
            (
                candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?,
                candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?,
            )
        };
        let q = q.reshape((b, n_kv, n_rep * seq, hd))?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?; // (b, n_kv, n_rep * seq, seq)
        let scores = match causal_mask(seq, 0)? {
            Some(mask) => scores
                .reshape((b, n_kv, n_rep, seq, seq))?
                .broadcast_add(&mask)?
                .reshape((b, n_kv, n_rep * seq, seq))?,
            None => scores,
        };
        let probs = if differentiable {
            softmax_differentiable(&scores)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let y = probs
            .matmul(&v)?
            .reshape((b, n_heads, seq, hd))?
            .transpose(1, 2)?
            .reshape((b, seq, n_heads * hd))?;
        seen(LinearKind::AttnOutput, &y)?;
        let x = (x + linear(LinearKind::AttnOutput, &y)?)?;

        // SwiGLU MLP block.
        let h = self.rms_norm(&x, &layer.ffn_norm, differentiable)?;
        seen(LinearKind::FfnGate, &h)?;
        seen(LinearKind::FfnUp, &h)?;
        let act = (linear(LinearKind::FfnGate, &h)?.silu()? * linear(LinearKind::FfnUp, &h)?)?;
        seen(LinearKind::FfnDown, &act)?;
        Ok((x + linear(LinearKind::FfnDown, &act)?)?)
    }

    /// Final norm and output head: `(batch, seq, hidden)` to logits `(batch, seq, vocab)`.
    pub fn head(&self, x: &Tensor, differentiable: bool) -> Result<Tensor> {
        let h = self.rms_norm(x, &self.output_norm, differentiable)?;
        let w = self.weight(self.output.as_ref().unwrap_or(&self.token_embd));
        if self.base_frozen {
            return frozen_matmul(&h, &w);
        }
        // One 2-D matmul: a batched matmul against the broadcast weight would make
        // backpropagation form one weight gradient per sequence.
        let (b, seq, hidden) = h.dims3()?;
        Ok(h.reshape((b * seq, hidden))?
            .matmul(&w.t()?)?
            .reshape((b, seq, w.dim(0)?))?)
    }

    /// Final RMSNorm: `(batch, seq, hidden)` to the output head's input, same shape.
    pub fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.rms_norm(x, &self.output_norm, false)
    }

    /// Full forward pass: `tokens` `(batch, seq)` to logits `(batch, seq, vocab)`.
    pub fn forward(&self, tokens: &Tensor, differentiable: bool) -> Result<Tensor> {
        let x = self.forward_hidden(tokens, differentiable)?;
        self.head(&x, differentiable)
    }

    /// Embedding and all decoder layers, without the final norm and head: `tokens`
    /// `(batch, seq)` to hidden states `(batch, seq, hidden)`.
    pub fn forward_hidden(&self, tokens: &Tensor, differentiable: bool) -> Result<Tensor> {
        let seq = tokens.dim(1)?;
        if seq > self.cos.dim(0)? {
            return Err(Error::invalid_argument(
                "sequence",
                format!("{seq} tokens exceed the context of {}", self.cos.dim(0)?),
            ));
        }
        let mut x = self.embed(tokens)?;
        for l in 0..self.layers.len() {
            x = self.layer_forward(l, &x, differentiable, None)?;
        }
        Ok(x)
    }

    fn rms_norm(&self, x: &Tensor, weight: &Var, differentiable: bool) -> Result<Tensor> {
        let eps = self.config.rms_norm_eps;
        Ok(if differentiable {
            candle_nn::ops::rms_norm_slow(x, &self.weight(weight), eps)?
        } else {
            candle_nn::ops::rms_norm(x, weight.as_tensor(), eps)?
        })
    }
}

/// Softmax over the last dimension built from operations with backward passes. The row maximum
/// is detached: softmax does not depend on the shift, so its gradient through the maximum is
/// zero, and detaching skips computing it.
fn softmax_differentiable(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let exp = x.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    Ok(exp.broadcast_div(&sum)?)
}
