//! Low-rank adapters (LoRA): a frozen weight `W` `(out, in)` is used as `W + scale * B A`,
//! with `A` `(rank, in)` and `B` `(out, rank)` trained in its place. `B` starts at zero, so the
//! adapted model starts equal to the base model.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::model::dense::{DenseModel, LinearKind};

/// One adapter on one weight matrix.
pub struct LoraAdapter {
    /// `(rank, in_features)`.
    pub a: Var,
    /// `(out_features, rank)`.
    pub b: Var,
    /// `alpha / rank`.
    pub scale: f64,
    /// The base weight's mask `(out_features, in_features)`, 1 where a weight is kept. When
    /// present, the update `scale * B A` is multiplied by it, so pruned weights stay zero in the
    /// adapted model exactly as they will after merging.
    pub mask: Option<Tensor>,
}

impl LoraAdapter {
    /// Returns the adapter's contribution for input `x` `(batch, seq, in)`:
    /// `(batch, seq, out)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.mask {
            // A masked update cannot be factored, so it is formed in full: (out, in).
            Some(mask) => Ok(x.broadcast_matmul(&self.delta_with(mask)?.t()?)?),
            None => {
                let down = x.broadcast_matmul(&self.a.as_tensor().t()?)?; // (batch, seq, rank)
                Ok((down.broadcast_matmul(&self.b.as_tensor().t()?)? * self.scale)?)
            }
        }
    }

    /// The weight update `scale * B A`, masked when the adapter has a mask: `(out, in)`.
    pub fn delta(&self) -> Result<Tensor> {
        match &self.mask {
            Some(mask) => self.delta_with(mask),
            None => Ok((self.b.as_tensor().matmul(self.a.as_tensor())? * self.scale)?),
        }
    }

    fn delta_with(&self, mask: &Tensor) -> Result<Tensor> {
        Ok(((self.b.as_tensor().matmul(self.a.as_tensor())? * self.scale)? * mask)?)
    }
}

/// Settings of the adapters `add_lora` creates.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    /// The update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// Matrices that get an adapter, in every layer.
    pub targets: Vec<LinearKind>,
}

impl LoraConfig {
    /// Rank `rank` on all seven projections, with `alpha = 2 * rank` (an update scale of 2).
    pub fn new(rank: usize) -> Self {
        Self {
            rank,
            alpha: 2.0 * rank as f64,
            targets: LinearKind::ALL.to_vec(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(Error::invalid_argument(
                "LoRA rank",
                "must be at least 1, got 0",
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::invalid_argument(
                "LoRA alpha",
                format!("must be a positive number, got {}", self.alpha),
            ));
        }
        if self.targets.is_empty() {
            return Err(Error::invalid_argument(
                "LoRA targets",
                "name at least one matrix",
            ));
        }
        Ok(())
    }
}

impl DenseModel {
    /// Adds an adapter to every target matrix of every layer and freezes the base weights.
    /// `A` is drawn uniformly from `[-1/sqrt(in), 1/sqrt(in)]` (the Kaiming-uniform bound used by
    /// PEFT) with `seed`; `B` is zero. `masks` maps weight names (`blk.N.attn_q.weight`) to
    /// their masks; a masked matrix gets a masked adapter.
    pub fn add_lora(
        &mut self,
        config: &LoraConfig,
        seed: u64,
        masks: &HashMap<String, Tensor>,
    ) -> Result<()> {
        config.validate()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let scale = config.alpha / config.rank as f64;
        for (l, layer) in self.layers.iter_mut().enumerate() {
            for &kind in &config.targets {
                let (out_features, in_features) = layer.linear(kind).dims2()?;
                if config.rank > out_features.min(in_features) {
                    return Err(Error::invalid_argument(
                        "LoRA rank",
                        format!(
                            "{} exceeds the smaller side of {} ({out_features} x {in_features})",
                            config.rank,
                            kind.tensor_name(l)
                        ),
                    ));
                }
                let bound = 1.0 / (in_features as f32).sqrt();
                let values: Vec<f32> = (0..config.rank * in_features)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                let a = Var::from_tensor(&Tensor::from_vec(
                    values,
                    (config.rank, in_features),
                    &Device::Cpu,
                )?)?;
                let b = Var::zeros((out_features, config.rank), DType::F32, &Device::Cpu)?;
                let mask = masks.get(&kind.tensor_name(l)).cloned();
                layer
                    .adapters
                    .insert(kind, LoraAdapter { a, b, scale, mask });
            }
        }
        self.set_base_frozen(true);
        Ok(())
    }

    /// The adapter weights, in a fixed order: per layer, per matrix in `LinearKind::ALL` order,
    /// `A` then `B`, named `blk.N.<matrix>.lora_a` and `.lora_b`.
    pub fn lora_vars(&self) -> Vec<(String, Var)> {
        let mut vars = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            for kind in LinearKind::ALL {
                if let Some(adapter) = layer.adapters.get(&kind) {
                    let base = format!("blk.{l}.{}", kind.gguf_name());
                    vars.push((format!("{base}.lora_a"), adapter.a.clone()));
                    vars.push((format!("{base}.lora_b"), adapter.b.clone()));
                }
            }
        }
        vars
    }

    /// Folds every adapter into its base weight, `W <- W + scale * B A` (masked when the adapter
    /// has a mask, so pruned weights stay exactly zero), removes the adapters and unfreezes the
    /// base weights.
    pub fn merge_lora(&mut self) -> Result<()> {
        for layer in &mut self.layers {
            for (kind, adapter) in layer.adapters.drain() {
                let weight = &layer.linears[&kind];
                let merged = (weight.as_tensor() + adapter.delta()?)?;
                let merged = match &adapter.mask {
                    Some(mask) => (merged * mask)?,
                    None => merged,
                };
                weight.set(&merged)?;
            }
        }
        self.set_base_frozen(false);
        Ok(())
    }
}
