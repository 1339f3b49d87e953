//! Reports of a pruning run, per matrix and per layer.

use serde::Serialize;

use crate::prune::{Method, Pattern, Scope};

#[derive(Debug, Clone, Serialize)]
pub struct MatrixReport {
    /// GGUF tensor name, e.g. `blk.3.ffn_down.weight`.
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub target_sparsity: f64,
    /// Fraction of the matrix's weights that are zero after pruning. It exceeds the target
    /// when kept weights were already zero.
    pub achieved_sparsity: f64,
    /// Weights the mask removes.
    pub n_pruned: usize,
    /// Weights that are zero after pruning.
    pub n_zeros: usize,
    /// `‖W X − Ŵ X‖_F / ‖W X‖_F` on the calibration inputs; `None` without calibration data.
    pub reconstruction_error: Option<f64>,
    /// Time spent choosing the mask and updating the weights, in milliseconds; `None`
    /// without a clock.
    pub ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Decoder layer index; `None` for the output head and the token embedding.
    pub layer: Option<usize>,
    pub matrices: Vec<MatrixReport>,
    /// Time for the whole layer (calibration passes included), in milliseconds.
    pub ms: Option<f64>,
}

impl LayerReport {
    pub fn label(&self) -> String {
        match self.layer {
            Some(l) => l.to_string(),
            None => "head".into(),
        }
    }

    pub fn n_weights(&self) -> usize {
        self.matrices.iter().map(|m| m.rows * m.cols).sum()
    }

    pub fn n_zeros(&self) -> usize {
        self.matrices.iter().map(|m| m.n_zeros).sum()
    }

    pub fn sparsity(&self) -> f64 {
        ratio(self.n_zeros(), self.n_weights())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub method: Method,
    pub pattern: Pattern,
    pub scope: Scope,
    pub target_sparsity: f64,
    pub n_calibration_samples: usize,
    /// Tokens per calibration sample (0 without calibration data).
    pub seq_len: usize,
    pub layers: Vec<LayerReport>,
    /// Time for the whole run, in milliseconds.
    pub ms: Option<f64>,
}

impl PruneReport {
    /// Weights in the pruned matrices.
    pub fn n_weights(&self) -> usize {
        self.layers.iter().map(LayerReport::n_weights).sum()
    }

    pub fn n_zeros(&self) -> usize {
        self.layers.iter().map(LayerReport::n_zeros).sum()
    }

    /// Fraction of zeros over the pruned matrices.
    pub fn sparsity(&self) -> f64 {
        ratio(self.n_zeros(), self.n_weights())
    }

    pub fn matrices(&self) -> impl Iterator<Item = &MatrixReport> {
        self.layers.iter().flat_map(|l| &l.matrices)
    }
}

pub(crate) fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
