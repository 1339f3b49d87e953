//! Connection (weight-level) pruning of the decoder's weight matrices.
//!
//! Every method takes three steps for one matrix. `Pruner::score` rates each weight,
//! `mask::select` picks the weights to remove from a pattern and a budget, and
//! `Pruner::prune` applies the mask. Magnitude and Wanda only zero the pruned weights, while
//! SparseGPT also updates the kept ones. One file per method:
//!
//! - `magnitude`: `|W_ij|`, compared per row, per matrix or globally.
//! - `wanda`: `|W_ij| · ‖X_j‖₂` over the calibration tokens, compared per row.
//! - `sparsegpt`: Optimal Brain Surgeon updates with a mask chosen per block of columns.
//!
//! `prune_model` runs a method over a `DenseModel` layer by layer. The calibration inputs of
//! layer `l` are the outputs of layers `0..l` after they were pruned, and every run returns a
//! per-layer, per-matrix report and the masks. Masks are explicit, with true = kept.
//! `sparsity` always means the fraction of weights that are zero.

pub mod driver;
pub mod hessian;
pub mod linalg;
pub mod magnitude;
pub mod mask;
pub mod report;
pub mod sparsegpt;
pub mod structured;
pub mod wanda;

use std::ops::Range;

pub use driver::{apply_masks, masks_from_zeros, prune_model, PruneOutcome, TensorMask};
pub use hessian::{reconstruction_error, Hessian};
pub use mask::{Mask, Matrix, Selection};
pub use report::{LayerReport, MatrixReport, PruneReport};

use crate::error::{Error, Result};

/// One pruning method. `prune` by default selects from `score` and zeroes the pruned weights.
pub trait Pruner {
    /// Returns the importance of every weight of `weight` (row-major, higher = kept first).
    /// `hessian` summarizes the matrix's calibration inputs; methods that need it fail
    /// without it.
    fn score(&self, weight: &Matrix, hessian: Option<&Hessian>) -> Result<Vec<f32>>;

    /// Prunes `weight` in place and returns the mask.
    fn prune(
        &self,
        weight: &mut Matrix,
        hessian: Option<&Hessian>,
        selection: &Selection,
    ) -> Result<Mask> {
        let scores = self.score(weight, hessian)?;
        let mask = mask::select(&scores, weight.rows, weight.cols, selection)?;
        mask::apply(weight, &mask)?;
        Ok(mask)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Magnitude,
    Wanda,
    #[serde(rename = "sparsegpt")]
    SparseGpt,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Magnitude, Method::Wanda, Method::SparseGpt];

    pub fn name(self) -> &'static str {
        match self {
            Method::Magnitude => "magnitude",
            Method::Wanda => "wanda",
            Method::SparseGpt => "sparsegpt",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        let lower = name.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|m| m.name() == lower)
            .ok_or_else(|| {
                Error::invalid_argument(
                    "method",
                    format!("\"{name}\" is not one of: magnitude, wanda, sparsegpt"),
                )
            })
    }

    /// True when the method's scores depend on calibration inputs.
    pub fn needs_calibration(self) -> bool {
        !matches!(self, Method::Magnitude)
    }

    /// Returns the comparison group used when the caller does not choose one.
    pub fn default_scope(self) -> Scope {
        match self {
            // The layer-wise baseline of the SparseGPT and Wanda papers.
            Method::Magnitude => Scope::Matrix,
            Method::Wanda => Scope::Row,
            Method::SparseGpt => Scope::Block,
        }
    }
}

/// Sparsity pattern: the rule for which weights may be zero.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Any weights, `sparsity` of them in each comparison group.
    Unstructured { sparsity: f64 },
    /// `n` kept of every `m` consecutive inputs of each row (2:4 keeps 2 of 4), so the
    /// sparsity is `1 − n/m`. `m` must divide the input width of every pruned matrix.
    NOfM { n: usize, m: usize },
}

impl Pattern {
    /// Parses `"unstructured"` (with `sparsity`) or `"N:M"`.
    pub fn parse(text: &str, sparsity: f64) -> Result<Self> {
        if text.eq_ignore_ascii_case("unstructured") {
            return Ok(Pattern::Unstructured { sparsity });
        }
        let invalid = || {
            Error::invalid_argument(
                "pattern",
                format!("\"{text}\" is neither \"unstructured\" nor N:M such as 2:4"),
            )
        };
        let (n, m) = text.split_once(':').ok_or_else(invalid)?;
        let n = n.trim().parse::<usize>().map_err(|_| invalid())?;
        let m = m.trim().parse::<usize>().map_err(|_| invalid())?;
        Ok(Pattern::NOfM { n, m })
    }

    /// Fraction of the weights of each pruned matrix that the pattern removes.
    pub fn sparsity(&self) -> f64 {
        match *self {
            Pattern::Unstructured { sparsity } => sparsity,
            Pattern::NOfM { n, m } => 1.0 - n as f64 / m as f64,
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            Pattern::Unstructured { sparsity } => format!("unstructured {:.0}%", sparsity * 100.0),
            Pattern::NOfM { n, m } => format!("{n}:{m}"),
        }
    }
}

/// The group of weights whose scores compete for the budget in unstructured pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Each output row keeps `1 − sparsity` of its weights.
    Row,
    /// Each matrix keeps `1 − sparsity` of its weights.
    Matrix,
    /// All pruned matrices share one threshold (magnitude only: other methods score a layer
    /// only after the layers before it are pruned).
    Global,
    /// SparseGPT's own rule: each block of columns of a matrix gets its share of the matrix's
    /// budget, chosen when the block is reached.
    Block,
}

impl Scope {
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "row" => Ok(Scope::Row),
            "matrix" => Ok(Scope::Matrix),
            "global" => Ok(Scope::Global),
            _ => Err(Error::invalid_argument(
                "scope",
                format!("\"{name}\" is not one of: row, matrix, global"),
            )),
        }
    }
}

/// Number of calibration samples that go through a layer in one forward pass by default;
/// it bounds the memory of the attention scores.
pub const DEFAULT_BATCH_SIZE: usize = 8;

#[derive(Debug, Clone, PartialEq)]
pub struct PruneConfig {
    pub method: Method,
    pub pattern: Pattern,
    /// `None` takes `Method::default_scope`.
    pub scope: Option<Scope>,
    /// Also prune the output head (with the method, on the final hidden states) and the token
    /// embedding. A tied head is the embedding, pruned once as the head. A separate
    /// embedding is pruned by magnitude per row, because its input is a one-hot token.
    pub include_embeddings: bool,
    /// SparseGPT's λ: `λ · mean(diag H)` is added to the diagonal of `H`.
    pub damping: f64,
    /// SparseGPT's block width in columns.
    pub block_size: usize,
    /// Decoder layers to prune; `None` prunes all. Calibration stops after the last one
    /// unless the head is pruned too.
    pub layers: Option<Range<usize>>,
    /// Calibration samples per forward pass.
    pub batch_size: usize,
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            method: Method::Wanda,
            pattern: Pattern::Unstructured { sparsity: 0.5 },
            scope: None,
            include_embeddings: false,
            damping: sparsegpt::DEFAULT_DAMPING,
            block_size: sparsegpt::DEFAULT_BLOCK_SIZE,
            layers: None,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

impl PruneConfig {
    pub fn scope(&self) -> Scope {
        self.scope.unwrap_or(self.method.default_scope())
    }

    /// Checks the values that do not depend on the model.
    pub fn validate(&self) -> Result<()> {
        match self.pattern {
            Pattern::Unstructured { sparsity } => {
                if !(0.0..1.0).contains(&sparsity) {
                    return Err(Error::invalid_argument(
                        "sparsity",
                        format!("must be in [0, 1), got {sparsity}"),
                    ));
                }
            }
            Pattern::NOfM { n, m } => {
                if n == 0 || n >= m {
                    return Err(Error::invalid_argument(
                        "pattern",
                        format!("N:M needs 1 <= N < M, got {n}:{m}"),
                    ));
                }
            }
        }
        match (self.method, self.scope()) {
            (Method::SparseGpt, Scope::Block)
            | (Method::Magnitude | Method::Wanda, Scope::Row | Scope::Matrix) => {}
            (Method::Magnitude, Scope::Global) => {}
            (Method::SparseGpt, scope) => {
                return Err(Error::invalid_argument(
                    "scope",
                    format!(
                    "SparseGPT chooses its mask per block of columns; {scope:?} is not available"
                ),
                ))
            }
            (method, scope) => {
                return Err(Error::invalid_argument(
                    "scope",
                    format!(
                        "{scope:?} is not available for {}; use row or matrix",
                        method.name()
                    ),
                ))
            }
        }
        if !(self.damping.is_finite() && self.damping >= 0.0) {
            return Err(Error::invalid_argument(
                "damping",
                format!("must be a finite number >= 0, got {}", self.damping),
            ));
        }
        if self.block_size == 0 {
            return Err(Error::invalid_argument(
                "block size",
                "must be at least 1, got 0",
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid_argument(
                "batch size",
                "must be at least 1, got 0",
            ));
        }
        if let Some(layers) = &self.layers {
            if layers.is_empty() {
                return Err(Error::invalid_argument(
                    "layers",
                    format!("the range {layers:?} is empty"),
                ));
            }
        }
        Ok(())
    }

    /// Returns the selection for one matrix of `rows × cols`. Global thresholds come from
    /// the driver, because they need every matrix.
    pub(crate) fn selection(&self, rows: usize, cols: usize) -> Selection {
        match self.pattern {
            Pattern::NOfM { n, m } => Selection::NOfM { n, m },
            Pattern::Unstructured { sparsity } => match self.scope() {
                Scope::Row => Selection::PerRow {
                    n_pruned: round_count(sparsity, cols),
                },
                _ => Selection::PerMatrix {
                    n_pruned: round_count(sparsity, rows * cols),
                },
            },
        }
    }

    fn pruner(&self) -> Box<dyn Pruner> {
        match self.method {
            Method::Magnitude => Box::new(magnitude::Magnitude),
            Method::Wanda => Box::new(wanda::Wanda),
            Method::SparseGpt => Box::new(sparsegpt::SparseGpt {
                damping: self.damping,
                block_size: self.block_size,
            }),
        }
    }
}

/// `round(fraction · n)`: the number of weights a budget prunes out of `n`.
pub fn round_count(fraction: f64, n: usize) -> usize {
    ((fraction * n as f64).round() as usize).min(n)
}
