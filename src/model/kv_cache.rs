//! Key/value cache for incremental decoding.

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::model::config::Config;

/// Positions added to a layer's buffers each time they fill, so memory follows the length of
/// the conversation instead of the maximum context.
const GROWTH_STEP: usize = 256;

/// Keys and values of every layer for the tokens seen so far.
///
/// Buffers have shape `(batch=1, n_kv_heads[l], capacity, head_dim)`; positions `0..len` are
/// valid. Truncating only lowers `len`, which is how a chat turn that shares a prefix with the
/// previous one reuses it.
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
    max_len: usize,
}

impl KvCache {
    pub fn new(config: &Config, max_len: usize) -> Self {
        Self {
            layers: vec![None; config.n_layers()],
            len: 0,
            max_len,
        }
    }

    /// Number of positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub fn reset(&mut self) {
        self.len = 0;
        for layer in &mut self.layers {
            *layer = None;
        }
    }

    /// Bytes held by the buffers.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * DType::F32.size_in_bytes())
            .sum()
    }

    /// Stores `k` and `v` for layer `l` at positions `len..len + seq` and returns the keys and
    /// values of all positions `0..len + seq`.
    ///
    /// Shapes: `k`, `v` are `(1, n_kv_heads, seq, head_dim)`; the results are
    /// `(1, n_kv_heads, len + seq, head_dim)`.
    pub fn append(&mut self, l: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, n_kv, seq, head_dim) = k.dims4()?;
        let end = self.len + seq;
        if end > self.max_len {
            return Err(Error::invalid_argument(
                "context",
                format!(
                    "{end} positions exceed the context of {} tokens",
                    self.max_len
                ),
            ));
        }
        let needs_growth = match &self.layers[l] {
            Some((kb, _)) => kb.dim(2)? < end,
            None => true,
        };
        if needs_growth {
            let capacity = (end.div_ceil(GROWTH_STEP) * GROWTH_STEP).min(self.max_len);
            let kb = Tensor::zeros((1, n_kv, capacity, head_dim), DType::F32, &Device::Cpu)?;
            let vb = Tensor::zeros((1, n_kv, capacity, head_dim), DType::F32, &Device::Cpu)?;
            if let Some((old_k, old_v)) = &self.layers[l] {
                if self.len > 0 {
                    kb.slice_set(&old_k.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                    vb.slice_set(&old_v.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                }
            }
            self.layers[l] = Some((kb, vb));
        }
        let (kb, vb) = self.layers[l].as_ref().expect("buffer allocated above");
        kb.slice_set(&k.contiguous()?, 2, self.len)?;
        vb.slice_set(&v.contiguous()?, 2, self.len)?;
        Ok((kb.narrow(2, 0, end)?, vb.narrow(2, 0, end)?))
    }

    /// Records that `seq` positions were appended to every layer.
    pub(crate) fn advance(&mut self, seq: usize) {
        self.len += seq;
    }
}
