//! Reports of a structured pruning run, per greedy step and per layer.

use serde::Serialize;

use crate::model::config::LayerDims;
use crate::prune::structured::{Ratio, Score, Structure, Target};

/// One greedy step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// 1-based.
    pub step: usize,
    /// Units removed (a unit of `heads` is one query head per key/value group).
    pub n_units: usize,
    /// Groups removed: neurons, query heads, key/value groups or layers.
    pub n_groups: usize,
    /// Per original layer index, the groups this step removed from it (layers without
    /// removals are left out).
    pub removed_per_layer: Vec<(usize, usize)>,
    /// Parameters after the step.
    pub params: usize,
    /// Size of the exported file after the step.
    pub file_bytes: u64,
    /// Measured decode time after the step, for `Target::MsPerToken`.
    pub ms_per_token: Option<f64>,
    /// Mean next-token loss on the calibration windows after the step, in nats.
    pub calibration_loss: f64,
}

/// Sizes of one original layer before and after pruning.
#[derive(Debug, Clone, Serialize)]
pub struct LayerChange {
    pub layer: usize,
    pub before: LayerDims,
    /// `None` when the layer was removed.
    pub after: Option<LayerDims>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StructuredPruneReport {
    pub structure: Structure,
    pub score: Score,
    pub ratio: Ratio,
    pub target: Target,
    pub original_params: usize,
    pub params: usize,
    pub original_file_bytes: u64,
    pub file_bytes: u64,
    /// Mean next-token loss on the calibration windows before pruning, in nats.
    pub original_calibration_loss: f64,
    pub calibration_loss: f64,
    pub n_calibration_samples: usize,
    pub seq_len: usize,
    pub steps: Vec<StepReport>,
    pub layers: Vec<LayerChange>,
    /// Time for the whole run, in milliseconds; `None` without a clock.
    pub ms: Option<f64>,
}

impl StructuredPruneReport {
    /// Fraction of the original parameters kept.
    pub fn kept_fraction(&self) -> f64 {
        self.params as f64 / self.original_params as f64
    }
}
