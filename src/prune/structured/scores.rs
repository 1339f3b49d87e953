//! Importance scores of groups, from the weights and from calibration passes.
//!
//! Every score of a group is a sum over the group's weights. So each matrix is reduced once, to
//! per-row sums where groups own rows (`attn_q`, `attn_k`, `attn_v`, `ffn_gate`, `ffn_up`) and
//! to per-column sums where they own columns (`attn_output`, `ffn_down`). A group then adds up
//! the rows and columns it owns:
//!
//! - magnitude: `sqrt(Σ W²)`;
//! - wanda: `Σ |W_rc| · ‖X_c‖₂`, with `‖X_c‖₂` the L2 norm of input feature `c` of that matrix
//!   over all calibration tokens;
//! - taylor: `|Σ G_rc · W_rc|` with `G = ∂L/∂W` of the mean calibration loss, the first-order
//!   estimate of how much the loss changes when the group is zeroed. The sum is signed before
//!   the absolute value, over the whole group and all calibration tokens;
//! - block influence of a layer: `1 − mean_t cos(x_t, y_t)` over calibration tokens `t`, with
//!   `x_t` the layer's input hidden state and `y_t` its output.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var, D};

use crate::error::Result;
use crate::model::config::LayerDims;
use crate::model::dense::{DenseModel, LinearKind};
use crate::prune::structured::{Score, Structure};

/// Scores of one calibration pass over the current model.
#[derive(Debug, Clone)]
pub struct GroupScores {
    /// Per layer, one score per group: per FFN neuron, per query head, per key/value group,
    /// or a single score for the layer.
    pub per_layer: Vec<Vec<f64>>,
    /// Mean next-token negative log-likelihood over the calibration windows, in nats.
    pub loss: f64,
}

/// Per-row and per-column sums of a layer's matrices after a score's element-wise transform.
#[derive(Debug, Clone, Default)]
pub struct LayerSums {
    pub q_rows: Vec<f64>,
    pub k_rows: Vec<f64>,
    pub v_rows: Vec<f64>,
    pub o_cols: Vec<f64>,
    pub gate_rows: Vec<f64>,
    pub up_rows: Vec<f64>,
    pub down_cols: Vec<f64>,
    /// Sum over every weight of the layer, norms included.
    pub all: f64,
}

impl LayerSums {
    fn add(&mut self, other: &LayerSums) {
        let add = |a: &mut Vec<f64>, b: &[f64]| {
            if a.is_empty() {
                *a = vec![0.0; b.len()];
            }
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        };
        add(&mut self.q_rows, &other.q_rows);
        add(&mut self.k_rows, &other.k_rows);
        add(&mut self.v_rows, &other.v_rows);
        add(&mut self.o_cols, &other.o_cols);
        add(&mut self.gate_rows, &other.gate_rows);
        add(&mut self.up_rows, &other.up_rows);
        add(&mut self.down_cols, &other.down_cols);
        self.all += other.all;
    }
}

/// Adds up the rows and columns each group owns, then applies `finish` to each sum.
pub fn group_scores(
    structure: Structure,
    dims: LayerDims,
    head_dim: usize,
    sums: &LayerSums,
    finish: fn(f64) -> f64,
) -> Vec<f64> {
    let span = |v: &[f64], start: usize, len: usize| -> f64 { v[start..start + len].iter().sum() };
    let head = |j: usize| {
        span(&sums.q_rows, j * head_dim, head_dim) + span(&sums.o_cols, j * head_dim, head_dim)
    };
    let raw: Vec<f64> = match structure {
        Structure::Ffn => (0..dims.ffn_dim)
            .map(|i| sums.gate_rows[i] + sums.up_rows[i] + sums.down_cols[i])
            .collect(),
        Structure::Heads => (0..dims.n_heads).map(head).collect(),
        Structure::KvGroups => {
            let n_rep = dims.n_heads / dims.n_kv_heads;
            (0..dims.n_kv_heads)
                .map(|g| {
                    let queries: f64 = (g * n_rep..(g + 1) * n_rep).map(head).sum();
                    queries
                        + span(&sums.k_rows, g * head_dim, head_dim)
                        + span(&sums.v_rows, g * head_dim, head_dim)
                })
                .collect()
        }
        Structure::Layers => vec![sums.all],
    };
    raw.into_iter().map(finish).collect()
}

/// Row sums `(rows,)` and column sums `(cols,)` of a matrix.
fn row_col_sums(p: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let rows: Vec<f32> = p.sum(1)?.to_vec1()?;
    let cols: Vec<f32> = p.sum(0)?.to_vec1()?;
    Ok((
        rows.into_iter().map(f64::from).collect(),
        cols.into_iter().map(f64::from).collect(),
    ))
}

/// Reduces layer `l`'s matrices after `transform(kind, weight)` to `LayerSums`. `norms` is the
/// sum over the layer's two norm vectors of the same transform, for `LayerSums::all`.
fn layer_sums(
    model: &DenseModel,
    l: usize,
    transform: &mut dyn FnMut(LinearKind, &Tensor) -> Result<Tensor>,
    norms: f64,
) -> Result<LayerSums> {
    let layer = &model.layers[l];
    let mut sums = LayerSums {
        all: norms,
        ..LayerSums::default()
    };
    for kind in LinearKind::ALL {
        let p = transform(kind, layer.linear(kind).as_tensor())?;
        let (rows, cols) = row_col_sums(&p)?;
        sums.all += rows.iter().sum::<f64>();
        match kind {
            LinearKind::AttnQ => sums.q_rows = rows,
            LinearKind::AttnK => sums.k_rows = rows,
            LinearKind::AttnV => sums.v_rows = rows,
            LinearKind::AttnOutput => sums.o_cols = cols,
            LinearKind::FfnGate => sums.gate_rows = rows,
            LinearKind::FfnUp => sums.up_rows = rows,
            LinearKind::FfnDown => sums.down_cols = cols,
        }
    }
    Ok(sums)
}

/// Magnitude scores of every group of layer `l`: the L2 norm of the group's weights.
pub fn magnitude_scores(model: &DenseModel, structure: Structure, l: usize) -> Result<Vec<f64>> {
    let sums = layer_sums(model, l, &mut |_, w| Ok(w.sqr()?), 0.0)?;
    Ok(group_scores(
        structure,
        model.layers[l].dims,
        model.config.head_dim,
        &sums,
        f64::sqrt,
    ))
}

/// Sums of squares of each input feature of a layer's four distinct matrix inputs.
#[derive(Debug, Clone, Default)]
pub struct InputNorms {
    /// Input of `attn_q`, `attn_k` and `attn_v`.
    pub attn: Vec<f64>,
    /// Input of `attn_output`.
    pub attn_output: Vec<f64>,
    /// Input of `ffn_gate` and `ffn_up`.
    pub ffn: Vec<f64>,
    /// Input of `ffn_down`.
    pub ffn_down: Vec<f64>,
}

/// Wanda scores of every group of layer `l` from the sums of squares of its inputs.
pub fn wanda_scores(
    model: &DenseModel,
    structure: Structure,
    l: usize,
    inputs: &InputNorms,
) -> Result<Vec<f64>> {
    let norm = |sumsq: &[f64]| -> Result<Tensor> {
        let v: Vec<f32> = sumsq.iter().map(|s| s.sqrt() as f32).collect();
        Ok(Tensor::from_vec(v, (1, sumsq.len()), &Device::Cpu)?)
    };
    let norms: HashMap<LinearKind, Tensor> = [
        (LinearKind::AttnQ, norm(&inputs.attn)?),
        (LinearKind::AttnK, norm(&inputs.attn)?),
        (LinearKind::AttnV, norm(&inputs.attn)?),
        (LinearKind::AttnOutput, norm(&inputs.attn_output)?),
        (LinearKind::FfnGate, norm(&inputs.ffn)?),
        (LinearKind::FfnUp, norm(&inputs.ffn)?),
        (LinearKind::FfnDown, norm(&inputs.ffn_down)?),
    ]
    .into_iter()
    .collect();
    let sums = layer_sums(
        model,
        l,
        &mut |kind, w| Ok(w.abs()?.broadcast_mul(&norms[&kind])?),
        0.0,
    )?;
    Ok(group_scores(
        structure,
        model.layers[l].dims,
        model.config.head_dim,
        &sums,
        |s| s,
    ))
}

/// Taylor sums `Σ G ⊙ W` of layer `l` for one batch's gradients. Weights without a gradient
/// contribute zero.
pub fn taylor_sums(
    model: &DenseModel,
    l: usize,
    grads: &candle_core::backprop::GradStore,
) -> Result<LayerSums> {
    let layer = &model.layers[l];
    let product = |var: &Var| -> Result<Option<Tensor>> {
        Ok(match grads.get(var.as_tensor()) {
            Some(g) => Some((g * var.as_tensor())?),
            None => None,
        })
    };
    let mut norms = 0.0;
    for var in [&layer.attn_norm, &layer.ffn_norm] {
        if let Some(p) = product(var)? {
            norms += f64::from(p.sum_all()?.to_scalar::<f32>()?);
        }
    }
    layer_sums(
        model,
        l,
        &mut |kind, w| {
            let var = layer.linear(kind);
            Ok(product(var)?
                .unwrap_or_else(|| w.zeros_like().expect("zeros_like of an F32 tensor")))
        },
        norms,
    )
}

/// The statistics one forward pass over the calibration batches collects.
pub struct ActivationPass {
    /// Per layer, when requested.
    pub inputs: Vec<InputNorms>,
    /// Per layer, `1 − mean cos(x_in, x_out)`.
    pub block_influence: Vec<f64>,
    pub loss: f64,
}

/// Runs the calibration batches (`(batch, seq)` token tensors) through the model layer by
/// layer, collecting input norms when `want_inputs` and the block influence of every layer, and
/// the mean next-token loss. `progress(done, total)` counts layers.
pub fn activation_pass(
    model: &DenseModel,
    batches: &[Tensor],
    want_inputs: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ActivationPass> {
    let n_layers = model.layers.len();
    let mut hidden: Vec<Tensor> = batches
        .iter()
        .map(|t| Ok(model.embed(t)?.detach()))
        .collect::<Result<_>>()?;
    let mut inputs = Vec::new();
    let mut block_influence = Vec::with_capacity(n_layers);
    for l in 0..n_layers {
        let mut norms = InputNorms::default();
        let mut cos_sum = 0.0;
        let mut n_tokens = 0usize;
        for x in hidden.iter_mut() {
            let mut capture = |kind: LinearKind, input: &Tensor| -> Result<()> {
                let target = match kind {
                    LinearKind::AttnQ => &mut norms.attn,
                    LinearKind::AttnOutput => &mut norms.attn_output,
                    LinearKind::FfnGate => &mut norms.ffn,
                    LinearKind::FfnDown => &mut norms.ffn_down,
                    _ => return Ok(()),
                };
                let sumsq: Vec<f32> = input.sqr()?.sum((0, 1))?.to_vec1()?;
                if target.is_empty() {
                    *target = vec![0.0; sumsq.len()];
                }
                target
                    .iter_mut()
                    .zip(sumsq)
                    .for_each(|(t, s)| *t += f64::from(s));
                Ok(())
            };
            let y = if want_inputs {
                model.layer_forward(l, x, false, Some(&mut capture))?
            } else {
                model.layer_forward(l, x, false, None)?
            }
            .detach();
            let dot = (&*x * &y)?.sum(D::Minus1)?;
            let norm_x = x.sqr()?.sum(D::Minus1)?.sqrt()?;
            let norm_y = y.sqr()?.sum(D::Minus1)?.sqrt()?;
            let cos = (dot / (norm_x * norm_y)?)?;
            cos_sum += cos.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
            n_tokens += cos.elem_count();
            *x = y;
        }
        if want_inputs {
            inputs.push(norms);
        }
        block_influence.push(1.0 - cos_sum / n_tokens as f64);
        progress(l + 1, n_layers);
    }
    let mut nll = 0.0;
    let mut count = 0usize;
    for (x, tokens) in hidden.iter().zip(batches) {
        let (sum, n) = next_token_nll(model, x, tokens, false)?;
        nll += f64::from(sum.to_scalar::<f32>()?);
        count += n;
    }
    Ok(ActivationPass {
        inputs,
        block_influence,
        loss: nll / count as f64,
    })
}

/// Summed next-token negative log-likelihood of a batch from its final hidden states `x`
/// `(batch, seq, hidden)`, and the number of predicted tokens. The head runs one sample at a
/// time to bound the size of the logits.
pub fn next_token_nll(
    model: &DenseModel,
    x: &Tensor,
    tokens: &Tensor,
    differentiable: bool,
) -> Result<(Tensor, usize)> {
    let (b, seq) = tokens.dims2()?;
    let mut total: Option<Tensor> = None;
    for i in 0..b {
        let h = x.narrow(0, i, 1)?.narrow(1, 0, seq - 1)?; // (1, seq - 1, hidden)
        let logits = model.head(&h, differentiable)?.squeeze(0)?; // (seq - 1, vocab)
        let max = logits.max_keepdim(D::Minus1)?.detach();
        let shifted = logits.broadcast_sub(&max)?;
        let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        let targets = tokens
            .narrow(0, i, 1)?
            .narrow(1, 1, seq - 1)?
            .reshape((seq - 1, 1))?;
        let picked = shifted.gather(&targets, 1)?.broadcast_sub(&log_sum)?; // (seq - 1, 1)
        let nll = picked.sum_all()?.neg()?;
        total = Some(match total {
            Some(t) => (t + nll)?,
            None => nll,
        });
    }
    Ok((
        total.expect("a batch has at least one sample"),
        b * (seq - 1),
    ))
}

/// Taylor sums of every layer over all batches, and the mean calibration loss. The loss of each
/// batch is divided by the number of predicted tokens of all batches, so the summed gradients
/// are those of the mean loss. `progress(done, total)` counts batches.
pub fn taylor_pass(
    model: &DenseModel,
    batches: &[Tensor],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<LayerSums>, f64)> {
    let total_tokens: usize = batches
        .iter()
        .map(|t| t.dim(0).unwrap_or(0) * t.dim(1).unwrap_or(1).saturating_sub(1))
        .sum();
    let mut sums = vec![LayerSums::default(); model.layers.len()];
    let mut nll = 0.0;
    for (i, tokens) in batches.iter().enumerate() {
        let x = model.forward_hidden(tokens, true)?;
        let (sum, _) = next_token_nll(model, &x, tokens, true)?;
        nll += f64::from(sum.to_scalar::<f32>()?);
        let loss = (sum / total_tokens as f64)?;
        let grads = loss.backward()?;
        for (l, layer_sums) in sums.iter_mut().enumerate() {
            layer_sums.add(&taylor_sums(model, l, &grads)?);
        }
        progress(i + 1, batches.len());
    }
    Ok((sums, nll / total_tokens as f64))
}

/// Scores every group of the current model with `score`. `progress(done, total)` reports the
/// calibration pass.
pub fn score_groups(
    model: &DenseModel,
    batches: &[Tensor],
    structure: Structure,
    score: Score,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<GroupScores> {
    let n_layers = model.layers.len();
    let hd = model.config.head_dim;
    match score {
        Score::Taylor => {
            let (sums, loss) = taylor_pass(model, batches, progress)?;
            let per_layer = (0..n_layers)
                .map(|l| group_scores(structure, model.layers[l].dims, hd, &sums[l], f64::abs))
                .collect();
            Ok(GroupScores { per_layer, loss })
        }
        Score::Magnitude | Score::Wanda | Score::BlockInfluence => {
            let pass = activation_pass(model, batches, score == Score::Wanda, progress)?;
            let per_layer = (0..n_layers)
                .map(|l| match score {
                    Score::Magnitude => magnitude_scores(model, structure, l),
                    Score::Wanda => wanda_scores(model, structure, l, &pass.inputs[l]),
                    _ => Ok(vec![pass.block_influence[l]]),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(GroupScores {
                per_layer,
                loss: pass.loss,
            })
        }
    }
}
