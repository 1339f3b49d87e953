//! AdamW (Loshchilov and Hutter, "Decoupled Weight Decay Regularization", 2019) with state that
//! can be saved and restored exactly.
//!
//! candle-nn's `AdamW` keeps its moments and step count private and decays every parameter,
//! norms included, so this one is written out: moments are plain `f32` vectors, and weight decay
//! applies only to matrices.

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay: each step multiplies a matrix by `1 - lr * weight_decay`.
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamWParams {
    pub fn validate(&self) -> Result<()> {
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::invalid_argument(
                    format!("AdamW {name}"),
                    format!("must be in [0, 1), got {beta}"),
                ));
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(Error::invalid_argument(
                "AdamW eps",
                format!("must be a positive number, got {}", self.eps),
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(Error::invalid_argument(
                "weight decay",
                format!("must be 0 or positive, got {}", self.weight_decay),
            ));
        }
        Ok(())
    }
}

/// First and second moments of one parameter, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

pub struct AdamW {
    pub params: AdamWParams,
    /// Number of updates applied so far; the bias corrections use it.
    pub n_updates: u64,
    /// One entry per parameter, in the order of the parameter list given to `step`.
    pub moments: Vec<Moments>,
}

impl AdamW {
    /// Creates zeroed state for parameters with `sizes` elements each.
    pub fn new(params: AdamWParams, sizes: &[usize]) -> Result<Self> {
        params.validate()?;
        let moments = sizes
            .iter()
            .map(|&n| Moments {
                m: vec![0.0; n],
                v: vec![0.0; n],
            })
            .collect();
        Ok(Self {
            params,
            n_updates: 0,
            moments,
        })
    }

    /// Applies one update with learning rate `lr` to `vars`, given their gradients (same order
    /// and shapes as at construction).
    pub fn step(&mut self, vars: &[Var], grads: &[Tensor], lr: f64) -> Result<()> {
        if vars.len() != self.moments.len() || grads.len() != vars.len() {
            return Err(Error::invalid_argument(
                "optimizer parameters",
                format!(
                    "{} parameters and {} gradients for an optimizer built for {}",
                    vars.len(),
                    grads.len(),
                    self.moments.len()
                ),
            ));
        }
        self.n_updates += 1;
        let t = self.n_updates as i32;
        let (beta1, beta2) = (self.params.beta1 as f32, self.params.beta2 as f32);
        let bias1 = 1.0 - self.params.beta1.powi(t);
        let bias2 = 1.0 - self.params.beta2.powi(t);
        // The step size and epsilon absorb the bias corrections: m_hat / (sqrt(v_hat) + eps)
        // = (m / bias1) / (sqrt(v / bias2) + eps).
        let step_size = (lr / bias1) as f32;
        let sqrt_bias2 = bias2.sqrt() as f32;
        let eps = self.params.eps as f32;

        for ((var, grad), moments) in vars.iter().zip(grads).zip(&mut self.moments) {
            let shape = var.shape().clone();
            let mut w: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
            let g: Vec<f32> = grad.flatten_all()?.to_vec1()?;
            if w.len() != moments.m.len() || g.len() != w.len() {
                return Err(Error::invalid_argument(
                    "optimizer parameters",
                    format!("a parameter of shape {shape:?} has {} gradient values and {} moment values", g.len(), moments.m.len()),
                ));
            }
            let decay = if shape.rank() >= 2 {
                (1.0 - lr * self.params.weight_decay) as f32
            } else {
                1.0
            };
            for i in 0..w.len() {
                let m = beta1 * moments.m[i] + (1.0 - beta1) * g[i];
                let v = beta2 * moments.v[i] + (1.0 - beta2) * g[i] * g[i];
                moments.m[i] = m;
                moments.v[i] = v;
                w[i] = w[i] * decay - step_size * m / (v.sqrt() / sqrt_bias2 + eps);
            }
            var.set(&Tensor::from_vec(w, shape, var.device())?)?;
        }
        Ok(())
    }
}
