//! Structured pruning: removing whole FFN neurons, query heads, key/value head groups or
//! decoder layers, scored on calibration data and removed greedily until a budget is met.
//!
//! Each step scores every group of the current (already pruned) model, orders the removable
//! units (`units`), and removes the lowest-scoring ones (`greedy`). The last step removes only
//! as many units as the budget needs (`budget`).

pub mod budget;
pub mod greedy;
pub mod report;
pub mod scores;
pub mod units;

use candle_core::quantized::GgmlDType;
use serde::Serialize;

use crate::error::{Error, Result};

pub use budget::{measure_ms_per_token, Target};
pub use greedy::{prune_structured, Progress, StructuredOutcome};
pub use report::{LayerChange, StepReport, StructuredPruneReport};

/// Default number of greedy steps for FFN neurons and heads. Layers are removed one per step.
pub const DEFAULT_GREEDY_STEPS: usize = 8;

/// The kind of group that is removed as a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Structure {
    /// One FFN neuron: row `i` of `ffn_gate` and `ffn_up`, column `i` of `ffn_down`.
    Ffn,
    /// Query heads, removed as many from every key/value group of a layer at once: rows of
    /// `attn_q` and columns of `attn_output`.
    Heads,
    /// One key/value head with the query heads that share it.
    KvGroups,
    /// A whole decoder layer.
    Layers,
}

impl Structure {
    pub const ALL: [Structure; 4] = [
        Structure::Ffn,
        Structure::Heads,
        Structure::KvGroups,
        Structure::Layers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Structure::Ffn => "ffn",
            Structure::Heads => "heads",
            Structure::KvGroups => "kv-groups",
            Structure::Layers => "layers",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == text.to_ascii_lowercase())
            .ok_or_else(|| {
                Error::invalid_argument(
                    "structure",
                    format!("\"{text}\" is not one of: ffn, heads, kv-groups, layers"),
                )
            })
    }
}

/// The importance measure of a group. A higher score means the group is kept longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Score {
    /// L2 norm of the group's weights.
    Magnitude,
    /// `Σ |W_rc| · ‖X_c‖₂` over the group's weights, with input norms from calibration.
    Wanda,
    /// `|Σ ∂L/∂W · W|` over the group's weights: the first-order change of the calibration
    /// loss when the group is zeroed.
    Taylor,
    /// `1 − mean cos(x_in, x_out)` of a layer over the calibration tokens.
    BlockInfluence,
}

impl Score {
    pub const ALL: [Score; 4] = [
        Score::Magnitude,
        Score::Wanda,
        Score::Taylor,
        Score::BlockInfluence,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Score::Magnitude => "magnitude",
            Score::Wanda => "wanda",
            Score::Taylor => "taylor",
            Score::BlockInfluence => "block-influence",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == text.to_ascii_lowercase())
            .ok_or_else(|| {
                Error::invalid_argument(
                    "score",
                    format!("\"{text}\" is not one of: magnitude, wanda, taylor, block-influence"),
                )
            })
    }

    /// Returns whether scores of groups in different layers are compared unchanged under
    /// `Ratio::Global`. Taylor scores estimate a change of the loss and block influence a
    /// change of the hidden state's direction, both in the same units in every layer.
    /// Magnitude and Wanda scores grow with the scale of a layer's weights and inputs, so they
    /// are first divided by the layer's total.
    pub fn comparable_across_layers(self) -> bool {
        matches!(self, Score::Taylor | Score::BlockInfluence)
    }
}

/// The spread of the removed groups over the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ratio {
    /// Every layer loses the same fraction of its groups (up to one unit).
    Uniform,
    /// Groups of all layers compete, so each layer loses as many as its scores decide.
    Global,
}

impl Ratio {
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "uniform" => Ok(Ratio::Uniform),
            "global" => Ok(Ratio::Global),
            _ => Err(Error::invalid_argument(
                "ratio",
                format!("\"{text}\" is not one of: uniform, global"),
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StructuredConfig {
    pub structure: Structure,
    pub score: Score,
    pub ratio: Ratio,
    pub target: Target,
    /// Number of greedy steps in which the budget is reached, each followed by re-scoring.
    /// Ignored for `Structure::Layers`, which removes one layer per step.
    pub greedy_steps: usize,
    /// FFN widths are kept at multiples of this (the first removal in a layer rounds down to
    /// one), so that `ffn_down` rows fill whole quantization blocks. 1 allows any width.
    pub ffn_multiple: usize,
    /// Weight type of the exported file; `Target::Bytes` and `Target::MsPerToken` measure it.
    pub dtype: GgmlDType,
    /// Calibration samples per forward pass.
    pub batch_size: usize,
}

impl StructuredConfig {
    /// Checks the values that do not depend on the model.
    pub fn validate(&self) -> Result<()> {
        match (self.structure, self.score) {
            (Structure::Layers, Score::Magnitude | Score::Wanda) => {
                return Err(Error::invalid_argument(
                    "score",
                    format!("{} does not score whole layers; use block-influence or taylor with --structure layers", self.score.name()),
                ))
            }
            (Structure::Ffn | Structure::Heads | Structure::KvGroups, Score::BlockInfluence) => {
                return Err(Error::invalid_argument(
                    "score",
                    format!(
                        "block-influence scores whole layers, not {}; use --structure layers, or magnitude, wanda or taylor",
                        self.structure.name()
                    ),
                ))
            }
            _ => {}
        }
        if self.structure == Structure::Layers && self.ratio == Ratio::Uniform {
            return Err(Error::invalid_argument(
                "ratio",
                "uniform applies within layers; use --ratio global with --structure layers",
            ));
        }
        if self.greedy_steps == 0 {
            return Err(Error::invalid_argument(
                "greedy steps",
                "must be at least 1, got 0",
            ));
        }
        if self.ffn_multiple == 0 {
            return Err(Error::invalid_argument(
                "FFN multiple",
                "must be at least 1, got 0",
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid_argument(
                "batch size",
                "must be at least 1, got 0",
            ));
        }
        self.target.validate()
    }
}
