//! Sparsity during training: proximal steps for L1 and group-lasso penalties, magnitude pruning
//! for GMP, and the sparsity report.
//!
//! The proximal steps run after the optimizer step with the step's learning rate `lr`, and
//! produce exact zeros:
//! - L1, per weight: `w <- sign(w) * max(|w| - lr * lambda, 0)`.
//! - Group lasso, per group `g`: `g <- g * max(0, 1 - lr * lambda * sqrt(|g|) / ||g||)`, where
//!   `|g|` is the number of weights in the group.
//!
//! A group is an FFN neuron (row `i` of `ffn_gate` and `ffn_up`, column `i` of `ffn_down`) or a
//! key/value head group (one key/value head's rows of `attn_k` and `attn_v`, and its query
//! heads' rows of `attn_q` and columns of `attn_output`). `DenseModel::remove_zeroed_groups`
//! removes zeroed groups from the model.

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::dense::{DenseModel, LinearKind};
use crate::train::masks::MaskSet;
use crate::train::schedule::PenaltyRamp;

/// Penalty strengths (0 disables one) and how they ramp up over training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SparsePenalty {
    /// L1 strength on every weight of the seven projection matrices.
    pub l1: f64,
    /// Group-lasso strength on FFN neurons.
    pub group_ffn: f64,
    /// Group-lasso strength on key/value head groups.
    pub group_kv: f64,
    pub ramp: PenaltyRamp,
}

impl SparsePenalty {
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("L1 strength", self.l1),
            ("FFN group-lasso strength", self.group_ffn),
            ("head group-lasso strength", self.group_kv),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::invalid_argument(
                    name,
                    format!("must be 0 or positive, got {v}"),
                ));
            }
        }
        if self.l1 == 0.0 && self.group_ffn == 0.0 && self.group_kv == 0.0 {
            return Err(Error::invalid_argument(
                "sparsity penalty",
                "all strengths are 0; set at least one or drop the penalty",
            ));
        }
        self.ramp.validate()
    }

    /// Applies the proximal steps of every non-zero penalty for optimizer step `step`.
    pub fn apply(&self, model: &DenseModel, step: usize, lr: f64) -> Result<()> {
        let factor = lr * self.ramp.factor(step);
        if factor == 0.0 {
            return Ok(());
        }
        if self.l1 > 0.0 {
            l1_proximal(model, factor * self.l1)?;
        }
        if self.group_ffn > 0.0 {
            for l in 0..model.layers.len() {
                group_lasso_ffn(model, l, factor * self.group_ffn)?;
            }
        }
        if self.group_kv > 0.0 {
            for l in 0..model.layers.len() {
                group_lasso_kv(model, l, factor * self.group_kv)?;
            }
        }
        Ok(())
    }
}

/// Soft-thresholds every weight of the seven projection matrices by `threshold`.
pub fn l1_proximal(model: &DenseModel, threshold: f64) -> Result<()> {
    let t = threshold as f32;
    for layer in &model.layers {
        for kind in LinearKind::ALL {
            let var = layer.linear(kind);
            let mut w = read(var)?;
            for x in &mut w {
                let shrunk = x.abs() - t;
                *x = if shrunk > 0.0 {
                    x.signum() * shrunk
                } else {
                    0.0
                };
            }
            write(var, w)?;
        }
    }
    Ok(())
}

/// Block soft-thresholding of the FFN neurons of layer `l` with `lr * lambda` = `strength`.
pub fn group_lasso_ffn(model: &DenseModel, l: usize, strength: f64) -> Result<()> {
    let layer = &model.layers[l];
    let hidden = model.config.hidden_size;
    let ffn = layer.dims.ffn_dim;
    let (gate_var, up_var, down_var) = (
        layer.linear(LinearKind::FfnGate),
        layer.linear(LinearKind::FfnUp),
        layer.linear(LinearKind::FfnDown),
    );
    let mut gate = read(gate_var)?; // (ffn, hidden)
    let mut up = read(up_var)?; // (ffn, hidden)
    let mut down = read(down_var)?; // (hidden, ffn)
    let group_size = (3 * hidden) as f64;
    for i in 0..ffn {
        let mut sq = 0f64;
        for j in 0..hidden {
            sq += (gate[i * hidden + j] as f64).powi(2)
                + (up[i * hidden + j] as f64).powi(2)
                + (down[j * ffn + i] as f64).powi(2);
        }
        let scale = block_scale(sq.sqrt(), strength, group_size);
        if scale != 1.0 {
            for j in 0..hidden {
                gate[i * hidden + j] *= scale;
                up[i * hidden + j] *= scale;
                down[j * ffn + i] *= scale;
            }
        }
    }
    write(gate_var, gate)?;
    write(up_var, up)?;
    write(down_var, down)
}

/// Block soft-thresholding of the key/value head groups of layer `l`.
pub fn group_lasso_kv(model: &DenseModel, l: usize, strength: f64) -> Result<()> {
    let layer = &model.layers[l];
    let hidden = model.config.hidden_size;
    let hd = model.config.head_dim;
    let n_kv = layer.dims.n_kv_heads;
    let n_rep = layer.dims.n_heads / n_kv;
    let q_cols = layer.dims.n_heads * hd;
    let vars = [
        layer.linear(LinearKind::AttnQ),
        layer.linear(LinearKind::AttnK),
        layer.linear(LinearKind::AttnV),
        layer.linear(LinearKind::AttnOutput),
    ];
    let mut q = read(vars[0])?; // (n_heads * hd, hidden)
    let mut k = read(vars[1])?; // (n_kv * hd, hidden)
    let mut v = read(vars[2])?; // (n_kv * hd, hidden)
    let mut o = read(vars[3])?; // (hidden, n_heads * hd)
    let group_size = (2 * n_rep * hd * hidden + 2 * hd * hidden) as f64;

    for g in 0..n_kv {
        let q_rows = g * n_rep * hd..(g + 1) * n_rep * hd;
        let kv_rows = g * hd..(g + 1) * hd;
        let mut sq = 0f64;
        for r in q_rows.clone() {
            sq += q[r * hidden..(r + 1) * hidden]
                .iter()
                .map(|&x| (x as f64).powi(2))
                .sum::<f64>();
            sq += (0..hidden)
                .map(|j| (o[j * q_cols + r] as f64).powi(2))
                .sum::<f64>();
        }
        for r in kv_rows.clone() {
            sq += k[r * hidden..(r + 1) * hidden]
                .iter()
                .map(|&x| (x as f64).powi(2))
                .sum::<f64>();
            sq += v[r * hidden..(r + 1) * hidden]
                .iter()
                .map(|&x| (x as f64).powi(2))
                .sum::<f64>();
        }

        let scale = block_scale(sq.sqrt(), strength, group_size);
        if scale != 1.0 {
            for r in q_rows {
                q[r * hidden..(r + 1) * hidden]
                    .iter_mut()
                    .for_each(|x| *x *= scale);
                (0..hidden).for_each(|j| o[j * q_cols + r] *= scale);
            }
            for r in kv_rows {
                k[r * hidden..(r + 1) * hidden]
                    .iter_mut()
                    .for_each(|x| *x *= scale);
                v[r * hidden..(r + 1) * hidden]
                    .iter_mut()
                    .for_each(|x| *x *= scale);
            }
        }
    }

    write(vars[0], q)?;
    write(vars[1], k)?;
    write(vars[2], v)?;
    write(vars[3], o)
}

/// `max(0, 1 - strength * sqrt(group_size) / norm)`; a zero group stays zero.
fn block_scale(norm: f64, strength: f64, group_size: f64) -> f32 {
    if norm == 0.0 {
        return 0.0;
    }
    (1.0 - strength * group_size.sqrt() / norm).max(0.0) as f32
}

/// Prunes every projection matrix to `sparsity` by magnitude: the `round(sparsity * n)` weights
/// of smallest magnitude (ties broken by position) are zeroed and masked. Weights already masked
/// stay masked, so a matrix that is already sparser keeps its sparsity.
pub fn magnitude_prune(model: &DenseModel, masks: &mut MaskSet, sparsity: f64) -> Result<()> {
    for (l, layer) in model.layers.iter().enumerate() {
        for kind in LinearKind::ALL {
            let name = kind.tensor_name(l);
            let var = layer.linear(kind);
            let mut mask: Vec<f32> = match masks.get(&name) {
                Some(m) => m.flatten_all()?.to_vec1()?,
                None => vec![1.0; var.elem_count()],
            };
            let n = mask.len();
            let target = (sparsity * n as f64).round() as usize;
            let pruned = mask.iter().filter(|&&m| m == 0.0).count();
            if target <= pruned {
                continue;
            }
            let w = read(var)?;
            let mut candidates: Vec<usize> = (0..n).filter(|&i| mask[i] != 0.0).collect();
            let extra = target - pruned;
            candidates.select_nth_unstable_by(extra - 1, |&a, &b| {
                w[a].abs().total_cmp(&w[b].abs()).then(a.cmp(&b))
            });
            for &i in &candidates[..extra] {
                mask[i] = 0.0;
            }
            let mask = Tensor::from_vec(mask, var.shape(), var.device())?;
            masks.insert(model, &name, mask)?;
        }
    }
    masks.apply_to_model(model)
}

/// Zeros in the seven projection matrices, and all-zero FFN neurons and key/value head groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SparsityReport {
    pub n_weights: usize,
    pub n_zero_weights: usize,
    pub n_ffn_neurons: usize,
    pub n_zero_ffn_neurons: usize,
    pub n_kv_groups: usize,
    pub n_zero_kv_groups: usize,
}

impl SparsityReport {
    /// Fraction of projection weights that are exactly zero.
    pub fn sparsity(&self) -> f64 {
        self.n_zero_weights as f64 / self.n_weights.max(1) as f64
    }

    pub fn measure(model: &DenseModel) -> Result<Self> {
        let mut report = Self::default();
        for (l, layer) in model.layers.iter().enumerate() {
            for kind in LinearKind::ALL {
                let w = layer.linear(kind).as_tensor();
                report.n_weights += w.elem_count();
                report.n_zero_weights += w
                    .eq(0f32)?
                    .to_dtype(candle_core::DType::F32)?
                    .sum_all()?
                    .to_scalar::<f32>()? as usize;
            }
            report.n_ffn_neurons += layer.dims.ffn_dim;
            report.n_zero_ffn_neurons += model.zero_ffn_neurons(l)?.len();
            report.n_kv_groups += layer.dims.n_kv_heads;
            report.n_zero_kv_groups += model.zero_kv_groups(l)?.len();
        }
        Ok(report)
    }
}

/// Exact zero count of one matrix, for tests and reports.
pub fn count_zeros(var: &Var) -> Result<usize> {
    Ok(read(var)?.iter().filter(|&&x| x == 0.0).count())
}

fn read(var: &Var) -> Result<Vec<f32>> {
    Ok(var.as_tensor().flatten_all()?.to_vec1()?)
}

fn write(var: &Var, values: Vec<f32>) -> Result<()> {
    Ok(var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?)
}
