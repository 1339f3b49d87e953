//! A Llama-family decoder: token embedding, RMSNorm, rotary embeddings, grouped-query
//! attention, SwiGLU MLP, and a tied or separate output head.
//!
//! Weights stay in their GGUF type (`QMatMul`) for inference. Every layer keeps its own
//! head counts and FFN width, so a structurally pruned model is an ordinary model.

pub mod config;
pub mod dense;
pub mod frozen;
pub mod gguf_size;
pub mod kv_cache;
pub mod lora;
pub mod q8;
pub mod structured;

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

pub use config::{Config, LayerDims};
pub use kv_cache::KvCache;
use q8::{Q8Input, Q8Matrix};

use crate::error::{Error, Result};
use crate::gguf::Gguf;

/// Largest number of positions a prefill sends through the layers at once. Longer prompts are
/// split so the attention scores stay within `n_heads * PREFILL_CHUNK * context` floats.
pub const PREFILL_CHUNK: usize = 256;

/// Input rows (positions) from which a matmul dequantizes its weight and runs an F32 GEMM
/// instead of one quantized dot product per row and output. A one-off measurement of candle's kernel in
/// headless Chromium on a 1536x576 Q8_0 weight: 256 rows took 74 ms quantized and 25 ms
/// dequantized, including 1 ms to dequantize. At 32 rows the quantized path was faster.
const DEQUANTIZE_MIN_ROWS: usize = 64;

/// Largest context for which rotary tables are precomputed; longer `context_length` values are
/// capped here.
const MAX_ROPE_POSITIONS: usize = 32_768;

/// Whether Q8_0 weights are repacked into `Q8Matrix` (the browser build) or left to candle's
/// `QMatMul`, whose native kernels pick AVX2 at run time and run on candle's own thread pool.
const REPACK_Q8: bool = cfg!(target_arch = "wasm32");

/// A weight matrix `(out, in)`, kept in its GGUF type.
enum Linear {
    Q8(Arc<Q8Matrix>),
    Other(QMatMul),
}

impl Linear {
    /// Wraps the tensor `name`, repacking Q8_0 in the browser build.
    fn new(name: &str, t: QTensor) -> Result<Self> {
        if REPACK_Q8 {
            match Q8Matrix::from_qtensor(&t) {
                Ok(Some(m)) => return Ok(Self::Q8(Arc::new(m))),
                Ok(None) => {}
                Err(e) => return Err(Error::tensor(name, e.to_string())),
            }
        }
        Ok(Self::Other(QMatMul::from_qtensor(t)?))
    }

    /// Maps `x` `(batch, seq, in)` to `(batch, seq, out)`. From `DEQUANTIZE_MIN_ROWS` rows on,
    /// the weight is dequantized and an F32 GEMM runs, with the input unquantized. SmolLM2 has
    /// outlier activations, and quantizing them to Q8_0 changed the first greedy token of a
    /// 75-token prompt away from the F32 result and from llama.cpp's, so long prompts keep F32
    /// although the quantized kernel prefilled 1.2 times faster.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, true)
    }

    /// Runs `forward`, except that with `dequantize` false long inputs stay on the quantized
    /// path, which needs no F32 copy of the weight (used for the output head).
    fn forward_with(&self, x: &Tensor, dequantize: bool) -> Result<Tensor> {
        let k = x.dim(candle_core::D::Minus1)?;
        let rows = x.elem_count() / k.max(1);
        let long = dequantize && rows >= DEQUANTIZE_MIN_ROWS;
        match self {
            Self::Q8(m) => {
                if k != m.cols() {
                    return Err(Error::invalid_argument(
                        "matmul input",
                        format!(
                            "{k} features for a weight matrix of {} columns; the model's shapes do not match",
                            m.cols()
                        ),
                    ));
                }
                let mut dims = x.dims().to_vec();
                *dims.last_mut().expect("x has a last dimension") = m.rows();
                if long {
                    let x2 = x.reshape((rows, k))?;
                    return Ok(gemm_by_row_ranges(m, &x2)?.reshape(dims)?);
                }
                let xs = x.flatten_all()?.to_vec1::<f32>()?;
                let input = Q8Input::quantize(&xs, rows, k);
                let mut out = vec![0f32; rows * m.rows()];
                m.matmul(&input, &mut out);
                Ok(Tensor::from_vec(out, dims, &Device::Cpu)?)
            }
            Self::Other(QMatMul::QTensor(q)) if long => {
                let w = q.dequantize(&Device::Cpu)?;
                Ok(x.broadcast_matmul(&w.t()?)?)
            }
            Self::Other(weight) => Ok(weight.forward(x)?),
        }
    }
}

/// Multiplies `x` `(rows, in)` by the transposed dequantized weight: one F32 GEMM per range of
/// output rows, one range per thread, so each thread dequantizes only its own rows.
fn gemm_by_row_ranges(m: &Q8Matrix, x: &Tensor) -> Result<Tensor> {
    let parts = std::sync::Mutex::new(Vec::new());
    crate::parallel::for_each_range(m.rows(), 4, 0, |range| {
        let part = m
            .dequantize_rows(range.clone())
            .and_then(|w| Ok(x.matmul(&w.t()?)?));
        parts
            .lock()
            .expect("no thread panicked")
            .push((range.start, part));
    });
    let mut parts = parts.into_inner().expect("no thread panicked");
    parts.sort_by_key(|(start, _)| *start);
    let parts = parts
        .into_iter()
        .map(|(_, p)| p)
        .collect::<Result<Vec<_>>>()?;
    if parts.len() == 1 {
        return Ok(parts.into_iter().next().expect("one part"));
    }
    Ok(Tensor::cat(&parts, 1)?)
}

/// The token embedding table; a tied output head shares it.
enum Embedding {
    Q8(Arc<Q8Matrix>),
    Other(Arc<QTensor>),
}

impl Embedding {
    /// Rows for `ids` `(1, seq)`, shape `(1, seq, hidden)`.
    fn lookup(&self, ids: &[u32]) -> Result<Tensor> {
        match self {
            Self::Q8(m) => Ok(Tensor::from_vec(
                m.embedding(ids)?,
                (1, ids.len(), m.cols()),
                &Device::Cpu,
            )?),
            Self::Other(t) => {
                let ids = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
                Ok(t.embedding(&ids)?)
            }
        }
    }
}

/// Weight matrices that read the same input. Repacked Q8_0 matrices are stacked into one, so
/// the input is quantized once and the threads are started once for all of them.
enum Projections {
    Stacked { matrix: Linear, widths: Vec<usize> },
    Separate(Vec<Linear>),
}

impl Projections {
    /// Wraps the named weights; in the browser build, Q8_0 weights are repacked into one
    /// stacked matrix straight from the file's blocks.
    fn new(weights: Vec<(String, QTensor)>) -> Result<Self> {
        if REPACK_Q8 {
            let tensors: Vec<&QTensor> = weights.iter().map(|(_, t)| t).collect();
            match Q8Matrix::from_qtensors(&tensors) {
                Ok(Some(m)) => {
                    let widths = tensors.iter().map(|t| t.shape().dims()[0]).collect();
                    let matrix = Linear::Q8(Arc::new(m));
                    return Ok(Self::Stacked { matrix, widths });
                }
                Ok(None) => {}
                Err(e) => {
                    let names: Vec<&str> = weights.iter().map(|(n, _)| n.as_str()).collect();
                    return Err(Error::tensor(names.join(", "), e.to_string()));
                }
            }
        }
        let parts = weights
            .into_iter()
            .map(|(name, t)| Linear::new(&name, t))
            .collect::<Result<_>>()?;
        Ok(Self::Separate(parts))
    }

    /// Returns the outputs of all matrices, concatenated per position, when they are stacked;
    /// `None` for separate matrices.
    fn forward_stacked(&self, x: &Tensor) -> Result<Option<Vec<f32>>> {
        match self {
            Self::Stacked { matrix, .. } => Ok(Some(matrix.forward(x)?.flatten_all()?.to_vec1()?)),
            Self::Separate(_) => Ok(None),
        }
    }

    /// Applies each matrix to `x` `(batch, seq, in)`, in the order they were given.
    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Self::Stacked { matrix, widths } => {
                let y = matrix.forward(x)?;
                let mut offset = 0;
                let mut outputs = Vec::with_capacity(widths.len());
                for &w in widths {
                    outputs.push(y.narrow(candle_core::D::Minus1, offset, w)?);
                    offset += w;
                }
                Ok(outputs)
            }
            Self::Separate(parts) => parts.iter().map(|p| p.forward(x)).collect(),
        }
    }
}

struct Layer {
    dims: LayerDims,
    attn_norm: Tensor,
    /// Query, key and value projections.
    attn_qkv: Projections,
    attn_output: Linear,
    ffn_norm: Tensor,
    /// Gate and up projections.
    ffn_gate_up: Projections,
    ffn_down: Linear,
}

pub struct Model {
    config: Config,
    token_embd: Embedding,
    layers: Vec<Layer>,
    output_norm: Tensor,
    output: Linear,
    /// Rotary tables, shape `(positions, head_dim / 2)`.
    cos: Tensor,
    sin: Tensor,
}

impl Model {
    /// Builds the model from a parsed GGUF file, taking its tensors.
    pub fn from_gguf(mut gguf: Gguf) -> Result<Self> {
        let config = Config::from_gguf(&gguf)?;
        let mut take = |name: String| -> Result<QTensor> {
            gguf.take_tensor(&name)
                .ok_or_else(|| Error::tensor(&name, "missing from the file"))
        };

        let token_embd = take("token_embd.weight".into())?;
        let repacked = if REPACK_Q8 {
            Q8Matrix::from_qtensor(&token_embd)?.map(Arc::new)
        } else {
            None
        };
        let (token_embd, tied) = match repacked {
            Some(m) => {
                // Free the file's copy before the layers are repacked; wasm memory that grows
                // for it never shrinks again.
                drop(token_embd);
                (Embedding::Q8(m.clone()), Linear::Q8(m))
            }
            None => {
                let t = Arc::new(token_embd);
                (
                    Embedding::Other(t.clone()),
                    Linear::Other(QMatMul::from_arc(t)?),
                )
            }
        };
        let output = if config.tied_embeddings {
            tied
        } else {
            Linear::new("output.weight", take("output.weight".into())?)?
        };
        let output_norm = vector(
            take("output_norm.weight".into())?,
            "output_norm.weight",
            config.hidden_size,
        )?;

        let mut layers = Vec::with_capacity(config.n_layers());
        for (l, dims) in config.layers.iter().enumerate() {
            let mut weight = |short: &str| -> Result<(String, QTensor)> {
                let name = format!("blk.{l}.{short}.weight");
                let t = take(name.clone())?;
                Ok((name, t))
            };
            let attn_qkv = Projections::new(vec![
                weight("attn_q")?,
                weight("attn_k")?,
                weight("attn_v")?,
            ])?;
            let (name, t) = weight("attn_output")?;
            let attn_output = Linear::new(&name, t)?;
            let ffn_gate_up = Projections::new(vec![weight("ffn_gate")?, weight("ffn_up")?])?;
            let (name, t) = weight("ffn_down")?;
            let ffn_down = Linear::new(&name, t)?;
            let attn_norm_name = format!("blk.{l}.attn_norm.weight");
            let ffn_norm_name = format!("blk.{l}.ffn_norm.weight");
            layers.push(Layer {
                dims: *dims,
                attn_norm: vector(
                    take(attn_norm_name.clone())?,
                    &attn_norm_name,
                    config.hidden_size,
                )?,
                ffn_norm: vector(
                    take(ffn_norm_name.clone())?,
                    &ffn_norm_name,
                    config.hidden_size,
                )?,
                attn_qkv,
                attn_output,
                ffn_gate_up,
                ffn_down,
            });
        }

        let positions = config.context_length.clamp(1, MAX_ROPE_POSITIONS);
        let (cos, sin) = rope_tables(config.head_dim, positions, config.rope_theta)?;
        Ok(Self {
            config,
            token_embd,
            layers,
            output_norm,
            output,
            cos,
            sin,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Largest number of positions the rotary tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Runs `tokens` through the model, appending them to `cache`, and returns the logits of
    /// the last position, shape `(vocab_size,)`. Long inputs are processed in chunks of
    /// `PREFILL_CHUNK` positions.
    pub fn forward_last(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        if tokens.is_empty() {
            return Err(Error::invalid_argument("tokens", "no tokens to run"));
        }
        let mut hidden = None;
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            hidden = Some(self.forward_hidden(chunk, cache)?);
        }
        let hidden = hidden.expect("tokens is not empty, so there was at least one chunk");
        let seq = hidden.dim(1)?;
        let last = hidden.narrow(1, seq - 1, 1)?; // (1, 1, hidden)
        let logits = self.output.forward_with(&last, false)?; // (1, 1, vocab)
        Ok(logits.flatten_all()?)
    }

    /// Runs `tokens` through the model and returns the logits of every position,
    /// shape `(seq, vocab_size)`.
    pub fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let hidden = self.forward_hidden(tokens, cache)?;
        Ok(self.output.forward_with(&hidden, false)?.squeeze(0)?)
    }

    /// Runs `tokens` (one chunk) through every layer and the final norm, appending to `cache`.
    /// Returns hidden states of shape `(1, seq, hidden_size)`.
    pub fn forward_hidden(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let seq = tokens.len();
        let pos = cache.len();
        if pos + seq > cache.max_len() || pos + seq > self.max_positions() {
            return Err(Error::invalid_argument(
                "context",
                format!(
                    "{} positions exceed the context of {} tokens",
                    pos + seq,
                    cache.max_len().min(self.max_positions())
                ),
            ));
        }
        for &t in tokens {
            if t as usize >= self.config.vocab_size {
                return Err(Error::invalid_argument(
                    "token id",
                    format!(
                        "{t} is outside the vocabulary of {} tokens",
                        self.config.vocab_size
                    ),
                ));
            }
        }
        let mut x = self.token_embd.lookup(tokens)?; // (1, seq, hidden)
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let mask = causal_mask(seq, pos)?;

        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block with a residual connection.
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.config.rms_norm_eps)?;
            let attn = self.attention(l, layer, &h, &cos, &sin, mask.as_ref(), cache)?;
            x = (x + attn)?;

            // SwiGLU MLP block with a residual connection.
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.config.rms_norm_eps)?;
            let gate_up = layer.ffn_gate_up.forward(&h)?;
            let gate = gate_up[0].silu()?;
            x = (x + layer.ffn_down.forward(&(gate * &gate_up[1])?)?)?;
        }
        cache.advance(seq);

        Ok(candle_nn::ops::rms_norm(
            &x,
            &self.output_norm,
            self.config.rms_norm_eps,
        )?)
    }

    /// Grouped-query attention of one layer. `h` is `(1, seq, hidden)`; returns the same shape.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        l: usize,
        layer: &Layer,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, seq, _) = h.dims3()?;
        if seq == 1 {
            if let Some(qkv) = layer.attn_qkv.forward_stacked(h)? {
                return self.attention_one_position(l, layer, qkv, cos, sin, cache);
            }
        }
        let hd = self.config.head_dim;
        let n_heads = layer.dims.n_heads;
        let n_kv = layer.dims.n_kv_heads;
        let n_rep = n_heads / n_kv;

        let qkv = layer.attn_qkv.forward(h)?;
        let q = qkv[0]
            .reshape((b, seq, n_heads, hd))?
            .transpose(1, 2)?
            .contiguous()?; // (b, n_heads, seq, hd)
        let k = qkv[1]
            .reshape((b, seq, n_kv, hd))?
            .transpose(1, 2)?
            .contiguous()?; // (b, n_kv, seq, hd)
        let v = qkv[2].reshape((b, seq, n_kv, hd))?.transpose(1, 2)?; // (b, n_kv, seq, hd)

        // GGUF stores Q and K rows permuted for interleaved (GPT-J style) rotation.
        let q = candle_nn::rotary_emb::rope_i(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_i(&k, cos, sin)?;
        let (k, v) = cache.append(l, &k, &v)?; // (b, n_kv, total, hd)
        let total = k.dim(2)?;

        // Query heads g*n_rep .. (g+1)*n_rep share key/value head g, so grouping them avoids
        // copying the keys and values n_rep times.
        let q = q.reshape((b, n_kv, n_rep * seq, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?; // (b, n_kv, n_rep * seq, total)
        let scores = match mask {
            Some(mask) => scores
                .reshape((b, n_kv, n_rep, seq, total))?
                .broadcast_add(mask)?
                .reshape((b, n_kv, n_rep * seq, total))?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = probs.matmul(&v.contiguous()?)?; // (b, n_kv, n_rep * seq, hd)
        let y = y
            .reshape((b, n_heads, seq, hd))?
            .transpose(1, 2)?
            .reshape((b, seq, n_heads * hd))?;
        layer.attn_output.forward(&y)
    }

    /// Attention of one new position on plain slices, for stacked Q8_0 projections (the browser
    /// build's decode step). It computes what `attention` computes for `seq == 1` without
    /// creating a tensor per operation, whose fixed cost dominates at one position. `qkv` is the
    /// stacked projection output: queries, then keys, then values.
    fn attention_one_position(
        &self,
        l: usize,
        layer: &Layer,
        mut qkv: Vec<f32>,
        cos: &Tensor,
        sin: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let hd = self.config.head_dim;
        let n_heads = layer.dims.n_heads;
        let n_kv = layer.dims.n_kv_heads;
        let n_rep = n_heads / n_kv;
        let (q_len, kv_len) = (n_heads * hd, n_kv * hd);
        if qkv.len() != q_len + 2 * kv_len {
            return Err(Error::invalid_argument(
                "attention",
                format!(
                    "{} projection outputs, expected {}",
                    qkv.len(),
                    q_len + 2 * kv_len
                ),
            ));
        }
        let cos = cos.flatten_all()?.to_vec1::<f32>()?;
        let sin = sin.flatten_all()?.to_vec1::<f32>()?;
        // Interleaved rotation of the queries and keys, as `rope_i` does.
        for head in qkv[..q_len + kv_len].chunks_exact_mut(hd) {
            for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                let (x0, x1) = (pair[0], pair[1]);
                pair[0] = x0 * cos[i] - x1 * sin[i];
                pair[1] = x0 * sin[i] + x1 * cos[i];
            }
        }
        let k = Tensor::from_slice(&qkv[q_len..q_len + kv_len], (1, n_kv, 1, hd), &Device::Cpu)?;
        let v = Tensor::from_slice(&qkv[q_len + kv_len..], (1, n_kv, 1, hd), &Device::Cpu)?;
        let (keys, values) = cache.append(l, &k, &v)?;
        let total = keys.dim(2)?;

        let scale = (1.0 / (hd as f64).sqrt()) as f32;
        let mut out = vec![0f32; q_len];
        let mut scores = vec![0f32; total];
        with_cpu_f32(&keys, |keys, key_stride| {
            with_cpu_f32(&values, |values, value_stride| {
                for h in 0..n_heads {
                    let g = h / n_rep;
                    let q = &qkv[h * hd..(h + 1) * hd];
                    for (t, score) in scores.iter_mut().enumerate() {
                        let key = &keys[g * key_stride + t * hd..g * key_stride + (t + 1) * hd];
                        *score = dot(q, key) * scale;
                    }
                    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                    let mut sum = 0f32;
                    for score in scores.iter_mut() {
                        *score = (*score - max).exp();
                        sum += *score;
                    }
                    let y = &mut out[h * hd..(h + 1) * hd];
                    for (t, &p) in scores.iter().enumerate() {
                        let p = p / sum;
                        let value =
                            &values[g * value_stride + t * hd..g * value_stride + (t + 1) * hd];
                        for (acc, &x) in y.iter_mut().zip(value) {
                            *acc += p * x;
                        }
                    }
                }
                Ok(())
            })
        })?;
        let y = Tensor::from_vec(out, (1, 1, q_len), &Device::Cpu)?;
        layer.attn_output.forward(&y)
    }
}

/// Returns the dot product of `a` and `b`, summed in eight interleaved partial sums so that the
/// compiler can use SIMD lanes (a single running sum must keep its order and cannot).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut partial = [0f32; 8];
    let mut chunks_a = a.chunks_exact(8);
    let mut chunks_b = b.chunks_exact(8);
    for (x, y) in (&mut chunks_a).zip(&mut chunks_b) {
        for i in 0..8 {
            partial[i] += x[i] * y[i];
        }
    }
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    partial.iter().sum::<f32>() + tail
}

/// Calls `f` with the F32 data of `t`, a `(1, heads, positions, head_dim)` view whose heads
/// start `stride` elements apart, as the KV cache returns them.
fn with_cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32], usize) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(Error::invalid_argument("KV cache", "not in CPU memory"));
    };
    let data = &cpu.as_slice::<f32>()?[layout.start_offset()..];
    f(data, layout.stride()[1])
}

/// Returns `(cos, sin)`, each `(positions, head_dim / 2)`, for rotation frequencies
/// `theta^(-2i / head_dim)`.
///
/// NOTE: callers pass the file's context length (capped at 32 768) and head dimension, and
/// only the size of the attention matrices bounds the head dimension. By that arithmetic a
/// crafted F16 file of about 1 MB (hidden size 1, head dimension 125 000) makes this
/// allocate over 16 GB. The `gguf` fuzz target stops before this step.
pub(crate) fn rope_tables(
    head_dim: usize,
    positions: usize,
    theta: f32,
) -> Result<(Tensor, Tensor)> {
    let inv_freq: Vec<f32> = (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f32 / head_dim as f32))
        .collect();
    let inv_freq = Tensor::new(inv_freq.as_slice(), &Device::Cpu)?.unsqueeze(0)?; // (1, hd/2)
    let t = Tensor::arange(0u32, positions as u32, &Device::Cpu)?
        .to_dtype(DType::F32)?
        .unsqueeze(1)?; // (positions, 1)
    let angles = t.broadcast_mul(&inv_freq)?; // (positions, hd/2)
    Ok((angles.cos()?, angles.sin()?))
}

/// Returns the additive causal mask `(seq, pos + seq)` for `seq` new positions after `pos`
/// cached ones, or `None` for a single position, which may attend to everything.
pub(crate) fn causal_mask(seq: usize, pos: usize) -> Result<Option<Tensor>> {
    if seq == 1 {
        return Ok(None);
    }
    let total = pos + seq;
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| (0..total).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Some(Tensor::from_vec(mask, (seq, total), &Device::Cpu)?))
}

/// Dequantizes a 1-D weight and checks its length.
fn vector(t: QTensor, name: &str, len: usize) -> Result<Tensor> {
    if t.shape().dims() != [len] {
        return Err(Error::tensor(
            name,
            format!("shape {:?}, expected [{len}]", t.shape().dims()),
        ));
    }
    let v = t.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?;
    if let Some(bad) = v.to_vec1::<f32>()?.iter().position(|x| !x.is_finite()) {
        return Err(Error::tensor(
            name,
            format!("element {bad} is not a finite number"),
        ));
    }
    Ok(v)
}
