//! Measures of what pruning costs: perplexity over non-overlapping windows, top-1 next-token agreement
//! with a reference model, sparsity per layer and overall, parameter counts and file size.
//!
//! Protocol (also in docs/evaluation.md): each window is run from an empty KV cache, so its
//! first token has no context and is never scored. Every later token `t` of the window is
//! scored by the model's log-probability given tokens `0..t` of the same window, so a window
//! of `n` tokens contributes `n − 1` predictions. Perplexity is `exp` of the mean negative
//! log-likelihood over all predictions of all windows. Agreement is the fraction of those
//! positions where the two models' highest logits pick the same token.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor, D};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::model::dense::LinearKind;
use crate::model::{KvCache, Model};

#[derive(Debug, Clone, Serialize)]
pub struct PerplexityReport {
    pub n_windows: usize,
    /// Maximum window length, in tokens.
    pub window: usize,
    /// Tokens scored: the sum over windows of `length − 1`.
    pub n_predicted: usize,
    /// Mean negative log-likelihood per scored token, in nats.
    pub mean_nll: f64,
    pub perplexity: f64,
    /// Fraction of scored positions where the model's top-1 token equals the reference's.
    pub top1_agreement: Option<f64>,
    /// The reference model's perplexity on the same windows.
    pub reference_perplexity: Option<f64>,
}

/// A model's predictions on a set of windows, kept so that several models can be compared
/// with one reference without running the reference again.
#[derive(Debug, Clone, Default)]
pub struct WindowPredictions {
    /// Highest-logit token at positions `0..len − 1` of each window.
    pub top1: Vec<Vec<u32>>,
    /// Sum of `−log p(token[t] | token[..t])` for `t` in `1..len`, per window.
    pub nll_sums: Vec<f64>,
}

impl WindowPredictions {
    pub fn n_predicted(&self) -> usize {
        self.top1.iter().map(Vec::len).sum()
    }

    pub fn perplexity(&self) -> f64 {
        (self.nll_sums.iter().sum::<f64>() / self.n_predicted() as f64).exp()
    }

    /// Runs `model` on one more window and records its predictions. `index` (from 0) names
    /// the window in the error for one shorter than 2 tokens. The browser worker calls this once
    /// per window so that it can report progress between windows.
    pub fn push_window(&mut self, model: &Model, tokens: &[u32], index: usize) -> Result<()> {
        if tokens.len() < 2 {
            return Err(Error::invalid_argument(
                "evaluation data",
                format!(
                    "window {} has {} token(s); at least 2 are needed",
                    index + 1,
                    tokens.len()
                ),
            ));
        }
        let (nll_sum, top1) = window_scores(model, tokens)?;
        self.nll_sums.push(nll_sum);
        self.top1.push(top1);
        Ok(())
    }
}

/// Runs `model` on every window and records its predictions. `progress(done, total)` is
/// called after each window.
pub fn predict(
    model: &Model,
    windows: &[Vec<u32>],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<WindowPredictions> {
    if windows.is_empty() {
        return Err(Error::invalid_argument(
            "evaluation data",
            "no windows to evaluate",
        ));
    }
    let mut predictions = WindowPredictions::default();
    for (i, tokens) in windows.iter().enumerate() {
        predictions.push_window(model, tokens, i)?;
        progress(i + 1, windows.len());
    }
    Ok(predictions)
}

/// Scores `model` on every window against the reference's predictions on the same windows.
pub fn perplexity(
    model: &Model,
    windows: &[Vec<u32>],
    reference: Option<&WindowPredictions>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PerplexityReport> {
    if let Some(reference) = reference {
        let same_shape = reference.top1.len() == windows.len()
            && reference
                .top1
                .iter()
                .zip(windows)
                .all(|(p, w)| p.len() + 1 == w.len());
        if !same_shape {
            return Err(Error::invalid_argument(
                "reference predictions",
                "they were made on other windows",
            ));
        }
    }
    let predictions = predict(model, windows, progress)?;
    let n_predicted = predictions.n_predicted();
    let mean_nll = predictions.nll_sums.iter().sum::<f64>() / n_predicted as f64;
    let top1_agreement = reference.map(|reference| {
        let n_agree: usize = predictions
            .top1
            .iter()
            .zip(&reference.top1)
            .map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x == y).count())
            .sum();
        n_agree as f64 / n_predicted as f64
    });
    Ok(PerplexityReport {
        n_windows: windows.len(),
        window: windows.iter().map(Vec::len).max().unwrap_or(0),
        n_predicted,
        mean_nll,
        perplexity: mean_nll.exp(),
        top1_agreement,
        reference_perplexity: reference.map(WindowPredictions::perplexity),
    })
}

/// Top-1 agreement of a model with a reply that another model (or the same one) generated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplyAgreement {
    /// Reply tokens scored: all of them.
    pub n_scored: usize,
    /// Reply positions where the model's highest logit is the reply's token.
    pub n_agree: usize,
    /// `n_agree / n_scored`.
    pub agreement: f64,
    /// The model's highest-logit token before each reply token.
    pub top1: Vec<u32>,
}

/// Teacher-forces `prompt` followed by `reply` through `model` and counts the reply positions
/// where the model's highest logit picks the reply's token. `reply` contains every sampled
/// token, including a final end-of-turn token when the reply ended with one.
///
/// The prompt is prefilled from an empty cache with `forward_last` and the reply then runs one
/// token per call, as `ChatSession` does while generating. So the model that generated a
/// greedy reply (temperature 0, repetition penalty 1) agrees with it at every position. A
/// single batched pass would run matrix products of 64 rows or more in F32 instead of Q8_0
/// (see `DEQUANTIZE_MIN_ROWS` in `model`), which can flip near-ties.
pub fn reply_agreement(model: &Model, prompt: &[u32], reply: &[u32]) -> Result<ReplyAgreement> {
    if prompt.is_empty() {
        return Err(Error::invalid_argument(
            "prompt tokens",
            "empty; the reply needs the prompt it answered",
        ));
    }
    if reply.is_empty() {
        return Err(Error::invalid_argument(
            "reply tokens",
            "empty; there is nothing to score",
        ));
    }
    let vocab_size = model.config().vocab_size;
    if let Some(&token) = reply.iter().find(|&&t| t as usize >= vocab_size) {
        return Err(Error::invalid_argument(
            "reply tokens",
            format!("token id {token} is outside the model's vocabulary of {vocab_size} tokens; the models need the same tokenizer"),
        ));
    }
    let n_positions = prompt.len() + reply.len() - 1;
    let limit = model.max_positions();
    if n_positions > limit {
        return Err(Error::invalid_argument(
            "reply tokens",
            format!(
                "the prompt ({}) and reply ({}) need {n_positions} positions, more than the model's {limit}",
                prompt.len(),
                reply.len()
            ),
        ));
    }

    let mut cache = KvCache::new(model.config(), n_positions);
    let mut logits = model.forward_last(prompt, &mut cache)?;
    let mut top1 = Vec::with_capacity(reply.len());
    for (i, &token) in reply.iter().enumerate() {
        top1.push(logits.argmax(D::Minus1)?.to_scalar::<u32>()?);
        if i + 1 < reply.len() {
            logits = model.forward_last(&[token], &mut cache)?;
        }
    }
    let n_agree = top1.iter().zip(reply).filter(|(a, b)| a == b).count();
    Ok(ReplyAgreement {
        n_scored: reply.len(),
        n_agree,
        agreement: n_agree as f64 / reply.len() as f64,
        top1,
    })
}

/// Returns the summed negative log-likelihood of `tokens[1..]` and the top-1 token at
/// positions `0..len − 1`.
fn window_scores(model: &Model, tokens: &[u32]) -> Result<(f64, Vec<u32>)> {
    let mut cache = KvCache::new(model.config(), tokens.len());
    let logits = model
        .forward_all(tokens, &mut cache)?
        .to_dtype(DType::F32)?; // (seq, vocab)
    let seq = tokens.len();
    let logits = logits.narrow(0, 0, seq - 1)?; // (seq - 1, vocab): position t predicts t + 1
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets = Tensor::new(&tokens[1..], &Device::Cpu)?.unsqueeze(1)?; // (seq - 1, 1)
    let target_log_probs = log_probs
        .gather(&targets, 1)?
        .squeeze(1)?
        .to_vec1::<f32>()?;
    let nll_sum = target_log_probs.iter().map(|&lp| -(lp as f64)).sum();
    let top1 = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok((nll_sum, top1))
}

/// Builds a `Model` for evaluation with every weight dequantized to F32. The function is
/// the same as the file's (dequantizing Q8_0 is exact), but the matrix products run as dense
/// F32 GEMMs, which are faster for whole windows than the quantized kernels, and the
/// activations are not quantized as they are in llama.cpp's and candle's Q8_0 kernels.
pub fn model_for_evaluation(gguf: Gguf) -> Result<Model> {
    let (dense, _) = crate::convert::convert(gguf, GgmlDType::F32, |_, _, _| {})?;
    Model::from_gguf(dense)
}

/// Zeros of one group of weights.
#[derive(Debug, Clone, Serialize)]
pub struct SparsityEntry {
    /// Decoder layer index, or `None` for a tensor outside the layers.
    pub layer: Option<usize>,
    /// GGUF tensor name for a single tensor; `None` for a whole decoder layer.
    pub name: Option<String>,
    pub n_weights: usize,
    pub n_zeros: usize,
    pub sparsity: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SparsityReport {
    /// The seven weight matrices of each decoder layer together.
    pub layers: Vec<SparsityEntry>,
    /// The token embedding and, when the file has one, the separate output head.
    pub embeddings: Vec<SparsityEntry>,
    /// Zeros over all decoder-layer weight matrices (the ones pruning targets by default).
    pub decoder_sparsity: f64,
    /// Every weight of the file, norms included; a tied output head counts once.
    pub n_params: usize,
    pub n_nonzero_params: usize,
    pub file_bytes: u64,
    /// Number of tensors of each GGML type.
    pub tensor_types: Vec<(String, usize)>,
}

/// Counts exact zeros in every tensor of `gguf`, dequantized. Q8_0 and the float types keep a
/// pruned weight at exactly zero; a dense quantized model also has weights that round to zero.
pub fn sparsity(gguf: &Gguf) -> Result<SparsityReport> {
    let count = |name: &str| -> Result<(usize, usize)> {
        let tensor = gguf
            .tensor(name)
            .ok_or_else(|| Error::tensor(name, "missing from the file"))?;
        let values = tensor
            .dequantize(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?;
        let n_weights = values.elem_count();
        let n_zeros = values
            .eq(0f32)?
            .to_dtype(DType::U32)?
            .sum_all()?
            .to_scalar::<u32>()? as usize;
        Ok((n_weights, n_zeros))
    };
    let entry = |layer: Option<usize>,
                 name: Option<String>,
                 (n_weights, n_zeros): (usize, usize)| SparsityEntry {
        layer,
        name,
        n_weights,
        n_zeros,
        sparsity: crate::prune::report::ratio(n_zeros, n_weights),
    };

    let config = crate::model::Config::from_gguf(gguf)?;
    let mut layers = Vec::with_capacity(config.n_layers());
    for l in 0..config.n_layers() {
        let mut total = (0, 0);
        for kind in LinearKind::ALL {
            let (n, z) = count(&kind.tensor_name(l))?;
            total = (total.0 + n, total.1 + z);
        }
        layers.push(entry(Some(l), None, total));
    }
    let mut embeddings = vec![entry(
        None,
        Some("token_embd.weight".into()),
        count("token_embd.weight")?,
    )];
    if gguf.tensor("output.weight").is_some() {
        embeddings.push(entry(
            None,
            Some("output.weight".into()),
            count("output.weight")?,
        ));
    }

    let mut n_params = 0;
    let mut n_zeros = 0;
    for (name, _) in &gguf.tensors {
        let (n, z) = count(name)?;
        n_params += n;
        n_zeros += z;
    }
    let decoder_weights: usize = layers.iter().map(|e| e.n_weights).sum();
    let decoder_zeros: usize = layers.iter().map(|e| e.n_zeros).sum();
    Ok(SparsityReport {
        layers,
        embeddings,
        decoder_sparsity: crate::prune::report::ratio(decoder_zeros, decoder_weights),
        n_params,
        n_nonzero_params: n_params - n_zeros,
        file_bytes: gguf.file_bytes,
        tensor_types: gguf.tensor_type_counts(),
    })
}

/// Counts the weights of `tensor` that dequantize to exactly zero, reading the stored bytes
/// without dequantizing. Returns `None` for types other than F32, F16 and Q8_0.
pub fn count_stored_zeros(tensor: &QTensor) -> Result<Option<usize>> {
    let data = tensor.data()?;
    let count = match tensor.dtype() {
        GgmlDType::F32 => data
            .chunks_exact(4)
            .filter(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) == 0.0)
            .count(),
        // An F16 zero is 0x0000 or 0x8000 (negative zero).
        GgmlDType::F16 => data
            .chunks_exact(2)
            .filter(|b| b[0] == 0 && b[1] & 0x7f == 0)
            .count(),
        // A Q8_0 block is an F16 scale d followed by 32 signed bytes q, and each weight is d · q.
        GgmlDType::Q8_0 => data
            .chunks_exact(34)
            .map(|block| {
                let scale_is_zero = block[0] == 0 && block[1] & 0x7f == 0;
                if scale_is_zero {
                    32
                } else {
                    zero_bytes(&block[2..])
                }
            })
            .sum(),
        _ => return Ok(None),
    };
    Ok(Some(count))
}

/// Counts the zero bytes of `bytes` eight at a time, which natively runs about four times as fast
/// as `filter(..).count()` (`cargo bench --bench kernels -- stored_zeros`).
fn zero_bytes(bytes: &[u8]) -> usize {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let words = bytes.chunks_exact(8);
    let rest = words.remainder();
    let in_words: usize = words
        .map(|word| {
            let w = u64::from_le_bytes(word.try_into().expect("8-byte chunks"));
            // The high bit of each byte is set where the byte is not zero: adding 0x7f to its
            // low seven bits carries into the high bit unless they are all zero.
            let nonzero = (((w & LOW7) + LOW7) | w) & !LOW7;
            8 - nonzero.count_ones() as usize
        })
        .sum();
    in_words + rest.iter().filter(|&&b| b == 0).count()
}

/// Fraction of exactly zero weights over the seven weight matrices of every decoder layer, from
/// the stored bytes (see `count_stored_zeros`). Returns `None` when one of them has another type.
pub fn stored_decoder_sparsity(gguf: &Gguf, n_layers: usize) -> Result<Option<f64>> {
    let mut n_weights = 0;
    let mut n_zeros = 0;
    for l in 0..n_layers {
        for kind in LinearKind::ALL {
            let name = kind.tensor_name(l);
            let tensor = gguf
                .tensor(&name)
                .ok_or_else(|| Error::tensor(&name, "missing from the file"))?;
            let Some(zeros) = count_stored_zeros(tensor)? else {
                return Ok(None);
            };
            n_weights += tensor.shape().elem_count();
            n_zeros += zeros;
        }
    }
    Ok(Some(crate::prune::report::ratio(n_zeros, n_weights)))
}

/// True for the GGML types in which a weight of zero stays exactly zero after quantization.
pub fn keeps_zeros_exact(dtype: GgmlDType) -> bool {
    // Q8_0, Q4_0 and Q5_0 store d · q with an integer q that is 0 for a weight of 0. The _1
    // types add a per-block minimum, so a zero comes back as an offset. The k-quants are
    // left out because no test here checks them.
    matches!(
        dtype,
        GgmlDType::F32
            | GgmlDType::F16
            | GgmlDType::BF16
            | GgmlDType::Q8_0
            | GgmlDType::Q4_0
            | GgmlDType::Q5_0
    )
}

#[cfg(test)]
mod tests {
    use super::zero_bytes;

    #[test]
    fn zero_bytes_matches_a_plain_count() {
        // Every byte value next to zeros and to 0x80 and 0xff, which carry differently, and
        // lengths that leave a remainder after the 8-byte words.
        let mut bytes = Vec::new();
        for value in 0..=255u8 {
            bytes.extend_from_slice(&[value, 0, 0x80, value, 0xff, 0, value, 1, value]);
        }
        for len in [0, 1, 7, 8, 9, 31, 32, 33, bytes.len()] {
            let expected = bytes[..len].iter().filter(|&&b| b == 0).count();
            assert_eq!(zero_bytes(&bytes[..len]), expected, "first {len} bytes");
        }
    }
}
