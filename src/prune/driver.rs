//! Layer-by-layer pruning of a `DenseModel` with calibration data.
//!
//! Each decoder layer `l` takes three steps:
//! 1. Run layer `l`, with its weights still dense, on the calibration hidden states and
//!    accumulate `H = XᵀX` for the input of each weight matrix.
//! 2. Prune the seven matrices.
//! 3. Run the pruned layer again to get the hidden states for layer `l + 1`.
//!
//! The calibration inputs of layer `l` are therefore the outputs of the pruned layers before it.

use candle_core::{Device, Tensor, Var};

use crate::error::{Error, Result};
use crate::model::dense::{DenseModel, LinearKind};
use crate::prune::hessian::{reconstruction_error, Hessian};
use crate::prune::magnitude::{self, Magnitude};
use crate::prune::mask::{self, check_n_of_m, Mask, Matrix, Selection};
use crate::prune::report::{LayerReport, MatrixReport, PruneReport};
use crate::prune::{Pattern, PruneConfig, Pruner, Scope};

/// The mask of one tensor, by GGUF name.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMask {
    pub name: String,
    pub mask: Mask,
}

pub struct PruneOutcome {
    pub report: PruneReport,
    /// Masks of every pruned matrix, in the order they were pruned.
    pub masks: Vec<TensorMask>,
}

/// A clock that returns milliseconds since any fixed origin. The library takes it from the
/// caller because `std::time::Instant` is not available in wasm32.
pub type Clock<'a> = &'a dyn Fn() -> f64;

/// Index of the matrix's input among the four distinct inputs of a decoder layer: Q, K and V
/// share the normed hidden states, and so do gate and up.
fn input_group(kind: LinearKind) -> usize {
    match kind {
        LinearKind::AttnQ | LinearKind::AttnK | LinearKind::AttnV => 0,
        LinearKind::AttnOutput => 1,
        LinearKind::FfnGate | LinearKind::FfnUp => 2,
        LinearKind::FfnDown => 3,
    }
}

/// Prunes `model` in place and returns the report and the masks.
///
/// `calibration` contains token windows of equal length. It may be empty for magnitude
/// pruning, and then the report has no reconstruction errors. `progress(done, total)` is
/// called with the number of finished layers (the head counts as one).
pub fn prune_model(
    model: &mut DenseModel,
    calibration: &[Vec<u32>],
    config: &PruneConfig,
    clock: Option<Clock>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PruneOutcome> {
    config.validate()?;
    let n_layers = model.layers.len();
    let layers = config.layers.clone().unwrap_or(0..n_layers);
    if layers.end > n_layers {
        return Err(Error::invalid_argument(
            "layers",
            format!("{layers:?} reaches past the model's {n_layers} layers"),
        ));
    }
    check_pattern_fits(model, config, &layers)?;
    let seq_len = check_calibration(model, calibration, config)?;
    let now = || clock.map(|c| c());
    let started = now();

    let total_steps = layers.len() + usize::from(config.include_embeddings);
    let mut steps_done = 0;
    progress(steps_done, total_steps);

    let pruner = config.pruner();
    let mut global = match (config.scope(), config.pattern) {
        (Scope::Global, Pattern::Unstructured { sparsity }) => {
            Some(GlobalThresholds::new(model, config, &layers, sparsity)?)
        }
        _ => None,
    };
    let mut selection_for = |rows: usize, cols: usize| -> Result<Selection> {
        match global.as_mut() {
            Some(g) => g.next(),
            None => Ok(config.selection(rows, cols)),
        }
    };

    // Hidden states of the calibration samples, in batches of (batch, seq, hidden).
    let mut hidden: Vec<Tensor> = Vec::new();
    for batch in calibration.chunks(config.batch_size) {
        let flat: Vec<u32> = batch.iter().flatten().copied().collect();
        let tokens = Tensor::from_vec(flat, (batch.len(), seq_len), &Device::Cpu)?;
        hidden.push(model.embed(&tokens)?.detach());
    }
    let has_calibration = !hidden.is_empty();

    let mut reports = Vec::new();
    let mut masks = Vec::new();
    let last_layer = if config.include_embeddings {
        n_layers
    } else {
        layers.end
    };
    for l in 0..last_layer {
        if !layers.contains(&l) {
            hidden = forward_layer(model, l, &hidden)?;
            continue;
        }
        let layer_started = now();

        let hessians = if has_calibration {
            Some(layer_hessians(model, l, &hidden)?)
        } else {
            None
        };
        let mut matrices = Vec::with_capacity(LinearKind::ALL.len());
        for kind in LinearKind::ALL {
            let name = kind.tensor_name(l);
            let var = model.layers[l].linear(kind).clone();
            let hessian = hessians.as_ref().map(|h| &h[input_group(kind)]);
            let shape = var.as_tensor().dims2()?;
            let selection = selection_for(shape.0, shape.1)?;
            let (report, mask) = prune_matrix(
                pruner.as_ref(),
                &name,
                &var,
                hessian,
                &selection,
                config,
                clock,
            )?;
            matrices.push(report);
            masks.push(TensorMask { name, mask });
        }

        if has_calibration && (l + 1 < last_layer) {
            hidden = forward_layer(model, l, &hidden)?;
        }
        reports.push(LayerReport {
            layer: Some(l),
            matrices,
            ms: elapsed(layer_started, now()),
        });
        steps_done += 1;
        progress(steps_done, total_steps);
    }

    if config.include_embeddings {
        let head_started = now();
        let mut matrices = Vec::new();
        let hessian = if has_calibration {
            let mut h = Hessian::new(model.config.hidden_size);
            for x in &hidden {
                h.accumulate(&model.final_norm(x)?)?;
            }
            Some(h)
        } else {
            None
        };
        // NOTE: a tied head is also the embedding that produced these calibration inputs,
        // which stay those of the dense embedding.
        let (head_name, head_var) = match &model.output {
            Some(output) => ("output.weight", output.clone()),
            None => ("token_embd.weight", model.token_embd.clone()),
        };
        let shape = head_var.as_tensor().dims2()?;
        let selection = selection_for(shape.0, shape.1)?;
        let (report, mask) = prune_matrix(
            pruner.as_ref(),
            head_name,
            &head_var,
            hessian.as_ref(),
            &selection,
            config,
            clock,
        )?;
        matrices.push(report);
        masks.push(TensorMask {
            name: head_name.into(),
            mask,
        });

        // A separate embedding is a lookup table (its input is a one-hot token), so it is
        // pruned by magnitude.
        if model.output.is_some() {
            let var = model.token_embd.clone();
            let shape = var.as_tensor().dims2()?;
            let selection = selection_for(shape.0, shape.1)?;
            let (report, mask) = prune_matrix(
                &Magnitude,
                "token_embd.weight",
                &var,
                None,
                &selection,
                config,
                clock,
            )?;
            matrices.push(report);
            masks.push(TensorMask {
                name: "token_embd.weight".into(),
                mask,
            });
        }
        reports.push(LayerReport {
            layer: None,
            matrices,
            ms: elapsed(head_started, now()),
        });
        steps_done += 1;
        progress(steps_done, total_steps);
    }

    let report = PruneReport {
        method: config.method,
        pattern: config.pattern,
        scope: config.scope(),
        target_sparsity: config.pattern.sparsity(),
        n_calibration_samples: calibration.len(),
        seq_len,
        layers: reports,
        ms: elapsed(started, now()),
    };
    Ok(PruneOutcome { report, masks })
}

/// Prunes one matrix stored in `var` and measures what changed.
fn prune_matrix(
    pruner: &dyn Pruner,
    name: &str,
    var: &Var,
    hessian: Option<&Hessian>,
    selection: &Selection,
    config: &PruneConfig,
    clock: Option<Clock>,
) -> Result<(MatrixReport, Mask)> {
    let started = clock.map(|c| c());
    let original = Matrix::from_tensor(var.as_tensor())?;
    let mut weight = original.clone();
    let mask = pruner
        .prune(&mut weight, hessian, selection)
        .map_err(|e| Error::tensor(name, e.to_string()))?;
    weight.store(var)?;
    let ms = elapsed(started, clock.map(|c| c()));

    let reconstruction_error = match hessian {
        Some(h) => Some(reconstruction_error(&original, &weight, h)?),
        None => None,
    };
    let n_zeros = weight.n_zeros();
    let report = MatrixReport {
        name: name.to_string(),
        rows: weight.rows,
        cols: weight.cols,
        target_sparsity: config.pattern.sparsity(),
        achieved_sparsity: n_zeros as f64 / (weight.rows * weight.cols) as f64,
        n_pruned: mask.n_pruned(),
        n_zeros,
        reconstruction_error,
        ms,
    };
    Ok((report, mask))
}

/// Runs layer `l` on every batch. The outputs are detached: the weights are `Var`s, so
/// candle would otherwise record every operation and keep the activations of all earlier
/// layers alive for backpropagation.
fn forward_layer(model: &DenseModel, l: usize, hidden: &[Tensor]) -> Result<Vec<Tensor>> {
    hidden
        .iter()
        .map(|x| Ok(model.layer_forward(l, x, false, None)?.detach()))
        .collect()
}

/// Accumulates `XᵀX` for the four inputs of layer `l` over every batch.
fn layer_hessians(model: &DenseModel, l: usize, hidden: &[Tensor]) -> Result<Vec<Hessian>> {
    let layer = &model.layers[l];
    let width = |kind: LinearKind| layer.linear(kind).as_tensor().dim(1);
    let mut hessians = vec![
        Hessian::new(width(LinearKind::AttnQ)?),
        Hessian::new(width(LinearKind::AttnOutput)?),
        Hessian::new(width(LinearKind::FfnGate)?),
        Hessian::new(width(LinearKind::FfnDown)?),
    ];
    for x in hidden {
        let mut capture = |kind: LinearKind, input: &Tensor| -> Result<()> {
            // K, V and up see the same tensor as Q and gate, so it is counted once.
            match kind {
                LinearKind::AttnQ
                | LinearKind::AttnOutput
                | LinearKind::FfnGate
                | LinearKind::FfnDown => hessians[input_group(kind)].accumulate(input),
                _ => Ok(()),
            }
        };
        model.layer_forward(l, x, false, Some(&mut capture))?;
    }
    Ok(hessians)
}

fn elapsed(start: Option<f64>, end: Option<f64>) -> Option<f64> {
    Some(end? - start?)
}

/// Checks that an N:M pattern's M divides the input width of every matrix it will prune.
fn check_pattern_fits(
    model: &DenseModel,
    config: &PruneConfig,
    layers: &std::ops::Range<usize>,
) -> Result<()> {
    let Pattern::NOfM { n, m } = config.pattern else {
        return Ok(());
    };
    for l in layers.clone() {
        for kind in LinearKind::ALL {
            let cols = model.layers[l].linear(kind).as_tensor().dim(1)?;
            check_n_of_m(n, m, cols)
                .map_err(|e| Error::tensor(kind.tensor_name(l), e.to_string()))?;
        }
    }
    if config.include_embeddings {
        check_n_of_m(n, m, model.config.hidden_size)
            .map_err(|e| Error::tensor("token_embd.weight", e.to_string()))?;
    }
    Ok(())
}

/// Checks the calibration windows and returns their length (0 when there are none).
fn check_calibration(
    model: &DenseModel,
    calibration: &[Vec<u32>],
    config: &PruneConfig,
) -> Result<usize> {
    if calibration.is_empty() {
        if config.method.needs_calibration() {
            return Err(Error::invalid_argument(
                "calibration data",
                format!(
                    "{} needs calibration samples, got none",
                    config.method.name()
                ),
            ));
        }
        return Ok(0);
    }
    check_windows(model, calibration)
}

/// Checks that the calibration windows are non-empty, of equal length, within the model's
/// context and vocabulary, and returns their length (0 when there are none).
pub(crate) fn check_windows(model: &DenseModel, calibration: &[Vec<u32>]) -> Result<usize> {
    let Some(first) = calibration.first() else {
        return Ok(0);
    };
    let seq_len = first.len();
    if seq_len == 0 {
        return Err(Error::invalid_argument(
            "calibration data",
            "calibration sample 1 is empty",
        ));
    }
    let max_positions = model.config.context_length;
    if seq_len > max_positions {
        return Err(Error::invalid_argument(
            "calibration data",
            format!("samples of {seq_len} tokens exceed the model's context of {max_positions}"),
        ));
    }
    for (i, window) in calibration.iter().enumerate() {
        if window.len() != seq_len {
            return Err(Error::invalid_argument(
                "calibration data",
                format!("sample {} has {} tokens and sample 1 has {seq_len}; all samples need the same length", i + 1, window.len()),
            ));
        }
        if let Some(&bad) = window
            .iter()
            .find(|&&t| t as usize >= model.config.vocab_size)
        {
            return Err(Error::invalid_argument(
                "calibration data",
                format!(
                    "sample {}: token id {bad} is outside the vocabulary of {}",
                    i + 1,
                    model.config.vocab_size
                ),
            ));
        }
    }
    Ok(seq_len)
}

/// The global magnitude threshold, handed out matrix by matrix in pruning order.
struct GlobalThresholds {
    selections: std::vec::IntoIter<Selection>,
}

impl GlobalThresholds {
    fn new(
        model: &DenseModel,
        config: &PruneConfig,
        layers: &std::ops::Range<usize>,
        sparsity: f64,
    ) -> Result<Self> {
        let mut scores: Vec<Vec<f32>> = Vec::new();
        for l in layers.clone() {
            for kind in LinearKind::ALL {
                scores.push(magnitude::score(&Matrix::from_tensor(
                    model.layers[l].linear(kind).as_tensor(),
                )?));
            }
        }
        if config.include_embeddings {
            if let Some(output) = &model.output {
                scores.push(magnitude::score(&Matrix::from_tensor(output.as_tensor())?));
            }
            scores.push(magnitude::score(&Matrix::from_tensor(
                model.token_embd.as_tensor(),
            )?));
        }
        let total: usize = scores.iter().map(Vec::len).sum();
        let slices: Vec<&[f32]> = scores.iter().map(Vec::as_slice).collect();
        let threshold =
            mask::global_threshold(&slices, crate::prune::round_count(sparsity, total))?;

        let mut selections = Vec::with_capacity(scores.len());
        let (value, mut ties_left) = threshold.unwrap_or((f32::NEG_INFINITY, 0));
        for s in &scores {
            let ties_here = s.iter().filter(|&&x| x == value).count().min(ties_left);
            ties_left -= ties_here;
            selections.push(Selection::Threshold {
                value,
                n_ties_pruned: ties_here,
            });
        }
        Ok(Self {
            selections: selections.into_iter(),
        })
    }

    fn next(&mut self) -> Result<Selection> {
        self.selections.next().ok_or_else(|| {
            Error::invalid_argument("scope", "global thresholds ran out before the last matrix")
        })
    }
}

/// Returns the masks of the nonzero weights of every decoder matrix, plus the output head
/// and embedding when `include_embeddings` is set. For a model loaded from a pruned file this
/// recovers the pruning masks, except where a kept weight is exactly zero.
pub fn masks_from_zeros(model: &DenseModel, include_embeddings: bool) -> Result<Vec<TensorMask>> {
    let mut masks = Vec::new();
    for (l, layer) in model.layers.iter().enumerate() {
        for kind in LinearKind::ALL {
            let matrix = Matrix::from_tensor(layer.linear(kind).as_tensor())?;
            masks.push(TensorMask {
                name: kind.tensor_name(l),
                mask: Mask::of_nonzeros(&matrix),
            });
        }
    }
    if include_embeddings {
        if let Some(output) = &model.output {
            masks.push(TensorMask {
                name: "output.weight".into(),
                mask: Mask::of_nonzeros(&Matrix::from_tensor(output.as_tensor())?),
            });
        }
        let embedding = Matrix::from_tensor(model.token_embd.as_tensor())?;
        masks.push(TensorMask {
            name: "token_embd.weight".into(),
            mask: Mask::of_nonzeros(&embedding),
        });
    }
    Ok(masks)
}

/// Zeroes the weights that each mask prunes, for example after an optimizer step that moved
/// pruned weights away from zero.
pub fn apply_masks(model: &DenseModel, masks: &[TensorMask]) -> Result<()> {
    let vars = model.vars();
    for tensor_mask in masks {
        let var = vars
            .iter()
            .find(|(name, _)| *name == tensor_mask.name)
            .map(|(_, var)| var)
            .ok_or_else(|| {
                Error::tensor(
                    &tensor_mask.name,
                    "has a mask but is not a tensor of the model",
                )
            })?;
        let mut matrix = Matrix::from_tensor(var.as_tensor())?;
        mask::apply(&mut matrix, &tensor_mask.mask)
            .map_err(|e| Error::tensor(&tensor_mask.name, e.to_string()))?;
        matrix.store(var)?;
    }
    Ok(())
}
