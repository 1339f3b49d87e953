//! Structural edits of a `DenseModel`: physically removing FFN neurons, query heads,
//! key/value head groups and whole decoder layers, so the model and its GGUF file shrink. Each
//! edit updates the `LayerDims` of the layers it changes.
//!
//! A removed group computes exactly what a zeroed group computes. An FFN neuron whose gate and
//! up rows are zero outputs `silu(0) * 0 = 0`. A query head whose `attn_output` columns are
//! zero, and a key/value head group whose value rows and output columns are zero, add nothing
//! to the residual stream.

use candle_core::{Device, Tensor, Var, D};

use crate::error::{Error, Result};
use crate::model::dense::{DenseModel, LinearKind};

/// Sizes before and after `remove_zeroed_groups`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StructuredReport {
    /// Per layer: FFN neurons before and after.
    pub ffn_dims: Vec<(usize, usize)>,
    /// Per layer: key/value heads before and after.
    pub kv_heads: Vec<(usize, usize)>,
}

impl StructuredReport {
    pub fn removed_ffn_neurons(&self) -> usize {
        self.ffn_dims.iter().map(|(a, b)| a - b).sum()
    }

    pub fn removed_kv_heads(&self) -> usize {
        self.kv_heads.iter().map(|(a, b)| a - b).sum()
    }
}

impl DenseModel {
    /// Keeps only the FFN neurons `keep` of layer `l` (strictly increasing indices below
    /// `ffn_dim`, at least one): rows of `ffn_gate` and `ffn_up`, columns of `ffn_down`.
    pub fn remove_ffn_neurons(&mut self, l: usize, keep: &[usize]) -> Result<()> {
        let ffn_dim = self.layer_checked(l)?.dims.ffn_dim;
        let index = keep_index("FFN neuron", l, keep, ffn_dim)?;
        let layer = &mut self.layers[l];
        select(
            layer
                .linears
                .get_mut(&LinearKind::FfnGate)
                .expect("every layer has ffn_gate"),
            0,
            &index,
        )?;
        select(
            layer
                .linears
                .get_mut(&LinearKind::FfnUp)
                .expect("every layer has ffn_up"),
            0,
            &index,
        )?;
        select(
            layer
                .linears
                .get_mut(&LinearKind::FfnDown)
                .expect("every layer has ffn_down"),
            1,
            &index,
        )?;
        layer.dims.ffn_dim = keep.len();
        self.config.layers[l] = layer.dims;
        Ok(())
    }

    /// Keeps only the key/value heads `keep` of layer `l` (strictly increasing indices below
    /// `n_kv_heads`, at least one) together with the query heads that share them: query heads
    /// `g * n_rep .. (g + 1) * n_rep` use key/value head `g`, where `n_rep = n_heads / n_kv_heads`.
    pub fn remove_kv_groups(&mut self, l: usize, keep: &[usize]) -> Result<()> {
        let dims = self.layer_checked(l)?.dims;
        keep_index("key/value head", l, keep, dims.n_kv_heads)?;
        let hd = self.config.head_dim;
        let n_rep = dims.n_heads / dims.n_kv_heads;
        let kv_rows: Vec<u32> = keep
            .iter()
            .flat_map(|&g| (g * hd..(g + 1) * hd).map(|i| i as u32))
            .collect();
        let q_rows: Vec<u32> = keep
            .iter()
            .flat_map(|&g| (g * n_rep * hd..(g + 1) * n_rep * hd).map(|i| i as u32))
            .collect();
        let kv_rows = Tensor::new(kv_rows.as_slice(), &Device::Cpu)?;
        let q_rows = Tensor::new(q_rows.as_slice(), &Device::Cpu)?;

        let layer = &mut self.layers[l];
        select(
            layer
                .linears
                .get_mut(&LinearKind::AttnQ)
                .expect("every layer has attn_q"),
            0,
            &q_rows,
        )?;
        select(
            layer
                .linears
                .get_mut(&LinearKind::AttnK)
                .expect("every layer has attn_k"),
            0,
            &kv_rows,
        )?;
        select(
            layer
                .linears
                .get_mut(&LinearKind::AttnV)
                .expect("every layer has attn_v"),
            0,
            &kv_rows,
        )?;
        select(
            layer
                .linears
                .get_mut(&LinearKind::AttnOutput)
                .expect("every layer has attn_output"),
            1,
            &q_rows,
        )?;
        layer.dims.n_kv_heads = keep.len();
        layer.dims.n_heads = keep.len() * n_rep;
        self.config.layers[l] = layer.dims;
        Ok(())
    }

    /// Keeps only the query heads `keep` of layer `l` (strictly increasing indices below
    /// `n_heads`): rows of `attn_q` and columns of `attn_output`. Every key/value group must keep
    /// the same number of its query heads, at least one, so `n_heads` stays a multiple of
    /// `n_kv_heads`. Kept heads stay in their group: query head `h` belongs to key/value head
    /// `h / n_rep`.
    pub fn remove_query_heads(&mut self, l: usize, keep: &[usize]) -> Result<()> {
        let dims = self.layer_checked(l)?.dims;
        keep_index("query head", l, keep, dims.n_heads)?;
        let n_rep = dims.n_heads / dims.n_kv_heads;
        let mut per_group = vec![0usize; dims.n_kv_heads];
        for &h in keep {
            per_group[h / n_rep] += 1;
        }
        if per_group.contains(&0) {
            return Err(Error::invalid_argument(
                "query head list",
                format!("layer {l}: every key/value group must keep at least one query head, got {per_group:?}"),
            ));
        }
        if per_group.iter().any(|&n| n != per_group[0]) {
            return Err(Error::invalid_argument(
                "query head list",
                format!(
                    "layer {l}: every key/value group must keep the same number of query heads, got {per_group:?} \
                     (grouped-query attention needs n_heads to be a multiple of n_kv_heads {})",
                    dims.n_kv_heads
                ),
            ));
        }
        let hd = self.config.head_dim;
        let rows: Vec<u32> = keep
            .iter()
            .flat_map(|&h| (h * hd..(h + 1) * hd).map(|i| i as u32))
            .collect();
        let rows = Tensor::new(rows.as_slice(), &Device::Cpu)?;

        let layer = &mut self.layers[l];
        select(
            layer
                .linears
                .get_mut(&LinearKind::AttnQ)
                .expect("every layer has attn_q"),
            0,
            &rows,
        )?;
        select(
            layer
                .linears
                .get_mut(&LinearKind::AttnOutput)
                .expect("every layer has attn_output"),
            1,
            &rows,
        )?;
        layer.dims.n_heads = keep.len();
        self.config.layers[l] = layer.dims;
        Ok(())
    }

    /// Keeps only the decoder layers `keep` (strictly increasing indices below `n_layers`, at
    /// least one) and renumbers them from 0. Removing a layer is the same as skipping it: its
    /// output is its input plus the attention and MLP residuals, and without it both are gone.
    pub fn remove_layers(&mut self, keep: &[usize]) -> Result<()> {
        let n_layers = self.layers.len();
        if keep.is_empty() {
            return Err(Error::invalid_argument(
                "layer list",
                "the model must keep at least one decoder layer, got an empty list",
            ));
        }
        if let Some(w) = keep.windows(2).find(|w| w[0] >= w[1]) {
            return Err(Error::invalid_argument(
                "layer list",
                format!(
                    "indices must be strictly increasing, got {} before {}",
                    w[0], w[1]
                ),
            ));
        }
        let last = *keep.last().expect("checked non-empty");
        if last >= n_layers {
            return Err(Error::invalid_argument(
                "layer list",
                format!("index {last} is out of range, the model has {n_layers} layers"),
            ));
        }
        let mut old: Vec<Option<crate::model::dense::DenseLayer>> =
            std::mem::take(&mut self.layers)
                .into_iter()
                .map(Some)
                .collect();
        self.layers = keep
            .iter()
            .map(|&l| old[l].take().expect("indices are strictly increasing"))
            .collect();
        self.config.layers = self.layers.iter().map(|layer| layer.dims).collect();
        Ok(())
    }

    /// FFN neurons of layer `l` whose gate row, up row and down column are all exactly zero
    /// (in the base weights; LoRA adapters are not looked at).
    pub fn zero_ffn_neurons(&self, l: usize) -> Result<Vec<usize>> {
        let layer = self.layer_in_range(l)?;
        let gate = row_is_zero(layer.linear(LinearKind::FfnGate).as_tensor())?;
        let up = row_is_zero(layer.linear(LinearKind::FfnUp).as_tensor())?;
        let down = row_is_zero(&layer.linear(LinearKind::FfnDown).as_tensor().t()?)?;
        Ok((0..layer.dims.ffn_dim)
            .filter(|&i| gate[i] && up[i] && down[i])
            .collect())
    }

    /// Key/value heads of layer `l` whose group (its query heads' rows of `attn_q` and columns
    /// of `attn_output`, its rows of `attn_k` and `attn_v`) is all exactly zero in the base
    /// weights.
    pub fn zero_kv_groups(&self, l: usize) -> Result<Vec<usize>> {
        let layer = self.layer_in_range(l)?;
        let hd = self.config.head_dim;
        let n_kv = layer.dims.n_kv_heads;
        let n_rep = layer.dims.n_heads / n_kv;
        let q = row_is_zero(layer.linear(LinearKind::AttnQ).as_tensor())?;
        let k = row_is_zero(layer.linear(LinearKind::AttnK).as_tensor())?;
        let v = row_is_zero(layer.linear(LinearKind::AttnV).as_tensor())?;
        let o = row_is_zero(&layer.linear(LinearKind::AttnOutput).as_tensor().t()?)?;
        let all =
            |rows: &[bool], start: usize, len: usize| rows[start..start + len].iter().all(|&z| z);
        Ok((0..n_kv)
            .filter(|&g| {
                all(&q, g * n_rep * hd, n_rep * hd)
                    && all(&o, g * n_rep * hd, n_rep * hd)
                    && all(&k, g * hd, hd)
                    && all(&v, g * hd, hd)
            })
            .collect())
    }

    /// Removes every all-zero FFN neuron and key/value head group. A layer keeps at least one
    /// neuron and one group (the lowest-numbered zero one when all are zero), because a GGUF
    /// layer cannot have zero heads or a zero-width FFN.
    pub fn remove_zeroed_groups(&mut self) -> Result<StructuredReport> {
        let mut report = StructuredReport::default();
        for l in 0..self.layers.len() {
            let dims = self.layers[l].dims;
            let zero = self.zero_ffn_neurons(l)?;
            let mut keep: Vec<usize> = (0..dims.ffn_dim).filter(|i| !zero.contains(i)).collect();
            if keep.is_empty() {
                keep.push(0);
            }
            if keep.len() < dims.ffn_dim {
                self.remove_ffn_neurons(l, &keep)?;
            }
            report.ffn_dims.push((dims.ffn_dim, keep.len()));

            let zero = self.zero_kv_groups(l)?;
            let mut keep: Vec<usize> = (0..dims.n_kv_heads).filter(|g| !zero.contains(g)).collect();
            if keep.is_empty() {
                keep.push(0);
            }
            if keep.len() < dims.n_kv_heads {
                self.remove_kv_groups(l, &keep)?;
            }
            report.kv_heads.push((dims.n_kv_heads, keep.len()));
        }
        Ok(report)
    }

    fn layer_in_range(&self, l: usize) -> Result<&crate::model::dense::DenseLayer> {
        self.layers.get(l).ok_or_else(|| {
            Error::invalid_argument(
                "layer",
                format!(
                    "{l} is out of range, the model has {} layers",
                    self.layers.len()
                ),
            )
        })
    }

    /// Returns the layer if it may be edited: in range, and without LoRA adapters, because their
    /// shapes would no longer match.
    fn layer_checked(&self, l: usize) -> Result<&crate::model::dense::DenseLayer> {
        let layer = self.layer_in_range(l)?;
        if !layer.adapters.is_empty() {
            return Err(Error::invalid_argument(
                "layer",
                format!("layer {l} has LoRA adapters; merge them (merge_lora) before removing structure"),
            ));
        }
        Ok(layer)
    }
}

/// Checks that `keep` is a non-empty, strictly increasing list of indices below `n` and returns
/// it as a U32 index tensor.
fn keep_index(what: &str, l: usize, keep: &[usize], n: usize) -> Result<Tensor> {
    if keep.is_empty() {
        return Err(Error::invalid_argument(
            format!("{what} list"),
            format!("layer {l} must keep at least one {what}, got an empty list"),
        ));
    }
    if let Some(w) = keep.windows(2).find(|w| w[0] >= w[1]) {
        return Err(Error::invalid_argument(
            format!("{what} list"),
            format!(
                "layer {l}: indices must be strictly increasing, got {} before {}",
                w[0], w[1]
            ),
        ));
    }
    let last = *keep.last().expect("checked non-empty");
    if last >= n {
        return Err(Error::invalid_argument(
            format!("{what} list"),
            format!("layer {l}: index {last} is out of range, the layer has {n}"),
        ));
    }
    let index: Vec<u32> = keep.iter().map(|&i| i as u32).collect();
    Ok(Tensor::new(index.as_slice(), &Device::Cpu)?)
}

/// Replaces `var` with the rows (`dim = 0`) or columns (`dim = 1`) listed in `index`. The `Var`
/// is rebuilt because its shape changes.
fn select(var: &mut Var, dim: usize, index: &Tensor) -> Result<()> {
    let selected = var.as_tensor().index_select(index, dim)?.contiguous()?;
    *var = Var::from_tensor(&selected)?;
    Ok(())
}

/// For a matrix `(rows, cols)`, whether each row is all exactly zero.
fn row_is_zero(t: &Tensor) -> Result<Vec<bool>> {
    let max_abs: Vec<f32> = t.abs()?.max(D::Minus1)?.to_vec1()?;
    Ok(max_abs.into_iter().map(|m| m == 0.0).collect())
}
