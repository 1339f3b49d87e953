//! Cross-entropy on the target positions of a batch.

use candle_core::{Device, Tensor, D};

use crate::error::Result;
use crate::model::dense::DenseModel;
use crate::train::batch::Batch;

/// Returns the summed negative log-likelihood of the batch's targets (a scalar tensor, part of
/// the autograd graph when `differentiable`) and the number of targets. Only positions with a
/// non-zero weight reach the output head, which saves most of the vocabulary-sized work on chat
/// data where only reply tokens count.
pub fn nll_sum(model: &DenseModel, batch: &Batch, differentiable: bool) -> Result<(Tensor, usize)> {
    let device = Device::Cpu;
    let inputs = Tensor::from_slice(&batch.inputs, (batch.batch_size, batch.seq), &device)?;
    let hidden = model.forward_hidden(&inputs, differentiable)?; // (batch, seq, hidden)
    let hidden = hidden.reshape((batch.batch_size * batch.seq, model.config.hidden_size))?; // (batch * seq, hidden)

    let positions: Vec<u32> = (0..batch.weights.len())
        .filter(|&i| batch.weights[i] > 0.0)
        .map(|i| i as u32)
        .collect();
    let targets: Vec<u32> = positions
        .iter()
        .map(|&i| batch.targets[i as usize])
        .collect();
    let n = positions.len();
    let positions = Tensor::from_vec(positions, n, &device)?;
    let selected = hidden.index_select(&positions, 0)?.unsqueeze(0)?; // (1, n, hidden)
    let logits = model.head(&selected, differentiable)?.squeeze(0)?; // (n, vocab)

    let log_probs = log_softmax(&logits)?; // (n, vocab)
    let targets = Tensor::from_vec(targets, (n, 1), &device)?;
    let picked = log_probs.gather(&targets, 1)?; // (n, 1)
    Ok((picked.sum_all()?.neg()?, n))
}

/// Log-softmax over the last dimension. The row maximum only shifts the values for numerical
/// range, so it is detached from the graph.
fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum)?)
}
