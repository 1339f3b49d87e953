//! The greedy loop: score, remove the lowest-scoring units, re-score, until the budget is met.
//!
//! Each step aims to close `1 / steps_left` of the remaining distance to the budget (one layer
//! per step for `Structure::Layers`). When a step's units would meet the budget, the step is cut
//! to the shortest prefix of its ordered units that still meets it, so the loop stops at the
//! first unit count that fits.

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::model::dense::DenseModel;
use crate::model::gguf_size::gguf_file_bytes;
use crate::prune::driver::{check_windows, Clock};
use crate::prune::structured::budget::Budget;
use crate::prune::structured::report::{LayerChange, StepReport, StructuredPruneReport};
use crate::prune::structured::scores::score_groups;
use crate::prune::structured::units::{
    apply_units, config_after, layer_units, n_groups, order_units, Unit,
};
use crate::prune::structured::{Structure, StructuredConfig, Target};

/// Events for a progress display.
pub enum Progress<'a> {
    /// The calibration pass of step `step` (0 scores the unpruned model) has finished `done` of
    /// `total` layers (or batches, for Taylor scores).
    Scoring {
        step: usize,
        done: usize,
        total: usize,
    },
    /// A step finished; its calibration loss is that of the pruned model.
    Step(&'a StepReport),
}

pub struct StructuredOutcome {
    pub report: StructuredPruneReport,
}

/// Prunes `model` in place until `config.target` is met. `calibration` contains token windows
/// of equal length (at least 2 tokens each). `clock` (milliseconds) is needed for
/// `Target::MsPerToken` and for the report's times.
pub fn prune_structured(
    model: &mut DenseModel,
    calibration: &[Vec<u32>],
    config: &StructuredConfig,
    clock: Option<Clock>,
    progress: &mut dyn FnMut(Progress),
) -> Result<StructuredOutcome> {
    config.validate()?;
    let started = clock.map(|c| c());
    if calibration.is_empty() {
        return Err(Error::invalid_argument(
            "calibration data",
            "structured pruning needs calibration samples, got none",
        ));
    }
    let seq_len = check_windows(model, calibration)?;
    if seq_len < 2 {
        return Err(Error::invalid_argument(
            "calibration data",
            format!("samples need at least 2 tokens for a next-token loss, got {seq_len}"),
        ));
    }
    if let Some(l) = model
        .layers
        .iter()
        .position(|layer| !layer.adapters.is_empty())
    {
        return Err(Error::invalid_argument(
            "model",
            format!(
                "layer {l} has LoRA adapters; merge them (merge_lora) before structured pruning"
            ),
        ));
    }
    if matches!(config.target, Target::MsPerToken(_)) && clock.is_none() {
        return Err(Error::invalid_argument(
            "target ms per token",
            "needs a clock to measure decode time",
        ));
    }

    let structure = config.structure;
    let budget = Budget {
        target: config.target,
        original_params: model.config.n_params(),
        dtype: config.dtype,
        clock,
    };
    let original_config = model.config.clone();
    let original_bytes = gguf_file_bytes(&model.metadata, &original_config, config.dtype);
    let mut value = budget.measure(model)?;
    check_reachable(model, config, &budget, value)?;

    let batches = token_batches(calibration, config.batch_size, seq_len)?;
    let group_fraction: Vec<f64> = (0..original_config.n_layers())
        .map(|l| {
            let unit_groups = match structure {
                Structure::Heads => original_config.layers[l].n_kv_heads,
                Structure::Ffn => config.ffn_multiple,
                _ => 1,
            };
            unit_groups as f64 / n_groups(&original_config, structure, l) as f64
        })
        .collect();
    let mut origin: Vec<usize> = (0..original_config.n_layers()).collect();
    let mut steps: Vec<StepReport> = Vec::new();
    let mut pending: Option<StepReport> = None;
    let mut original_loss = f64::NAN;
    let mut step = 0;
    let final_loss = loop {
        let scores = score_groups(
            model,
            &batches,
            structure,
            config.score,
            &mut |done, total| progress(Progress::Scoring { step, done, total }),
        )?;
        if let Some(mut report) = pending.take() {
            report.calibration_loss = scores.loss;
            progress(Progress::Step(&report));
            steps.push(report);
        }
        if step == 0 {
            original_loss = scores.loss;
        }
        if budget.is_met(value) {
            break scores.loss;
        }
        step += 1;

        let n_layers = model.layers.len();
        let per_layer: Vec<Vec<Unit>> = (0..n_layers)
            .map(|l| {
                layer_units(
                    &model.config,
                    structure,
                    l,
                    &scores.per_layer[l],
                    config.ffn_multiple,
                )
            })
            .collect();
        let totals: Vec<f64> = scores.per_layer.iter().map(|s| s.iter().sum()).collect();
        let removed_fraction: Vec<f64> = (0..n_layers)
            .map(|l| {
                1.0 - n_groups(&model.config, structure, l) as f64
                    / n_groups(&original_config, structure, origin[l]) as f64
            })
            .collect();
        let layer_group_fraction: Vec<f64> = origin.iter().map(|&o| group_fraction[o]).collect();
        let ordered = order_units(
            structure,
            config.ratio,
            config.score.comparable_across_layers(),
            per_layer,
            &totals,
            &removed_fraction,
            &layer_group_fraction,
        );
        if ordered.is_empty() {
            return Err(Error::invalid_argument(
                "target",
                format!(
                    "{} cannot be reached: every layer is down to its last {} and the model still measures {value:.2}",
                    config.target.describe(),
                    structure.name()
                ),
            ));
        }

        let steps_left = config.greedy_steps.saturating_sub(step - 1).max(1);
        let planned = if structure == Structure::Layers {
            1
        } else {
            planned_units(model, &budget, structure, &ordered, value, steps_left)
        };
        let (count, after_value) = land(model, &budget, structure, &ordered, planned)?;
        let removed = apply_units(model, structure, &ordered[..count])?;
        value = after_value;

        let removed_per_layer: Vec<(usize, usize)> = removed
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(l, &n)| (origin[l], n))
            .collect();
        if structure == Structure::Layers {
            origin = origin
                .iter()
                .enumerate()
                .filter(|(l, _)| removed[*l] == 0)
                .map(|(_, &o)| o)
                .collect();
        }
        pending = Some(StepReport {
            step,
            n_units: count,
            n_groups: removed.iter().sum(),
            removed_per_layer,
            params: model.config.n_params(),
            file_bytes: gguf_file_bytes(&model.metadata, &model.config, config.dtype),
            ms_per_token: matches!(config.target, Target::MsPerToken(_)).then_some(value),
            calibration_loss: f64::NAN,
        });
    };

    let layers = (0..original_config.n_layers())
        .map(|l| LayerChange {
            layer: l,
            before: original_config.layers[l],
            after: origin
                .iter()
                .position(|&o| o == l)
                .map(|current| model.config.layers[current]),
        })
        .collect();
    let report = StructuredPruneReport {
        structure,
        score: config.score,
        ratio: config.ratio,
        target: config.target,
        original_params: budget.original_params,
        params: model.config.n_params(),
        original_file_bytes: original_bytes,
        file_bytes: gguf_file_bytes(&model.metadata, &model.config, config.dtype),
        original_calibration_loss: original_loss,
        calibration_loss: final_loss,
        n_calibration_samples: calibration.len(),
        seq_len,
        steps,
        layers,
        ms: match (started, clock) {
            (Some(s), Some(c)) => Some(c() - s),
            _ => None,
        },
    };
    Ok(StructuredOutcome { report })
}

/// Number of units, from the front of `ordered`, that closes `1 / steps_left` of the distance
/// between `value` and the budget (at least one). For latency, the distance is estimated in
/// parameters, assuming decode time proportional to the parameter count.
fn planned_units(
    model: &DenseModel,
    budget: &Budget,
    structure: Structure,
    ordered: &[Unit],
    value: f64,
    steps_left: usize,
) -> usize {
    let (current, limit) = match budget.target {
        Target::MsPerToken(t) => {
            let params = model.config.n_params() as f64;
            (params, params * t / value)
        }
        _ => (value, budget.limit()),
    };
    let predict = |count: usize| -> f64 {
        let config = config_after(&model.config, structure, &ordered[..count]);
        match budget.target {
            Target::MsPerToken(_) => config.n_params() as f64,
            _ => budget
                .predicted(model, &config)
                .expect("params and bytes are predicted"),
        }
    };
    let goal = current - (current - limit) / steps_left as f64;
    // The predicted quantity shrinks as units are added, so the shortest prefix meeting the
    // goal is found by bisection.
    if predict(ordered.len()) > goal {
        return ordered.len();
    }
    let (mut low, mut high) = (1, ordered.len());
    while low < high {
        let mid = (low + high) / 2;
        if predict(mid) <= goal {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    low
}

/// Cuts the step to the shortest prefix of `ordered[..planned]` that meets the budget, when the
/// whole planned prefix meets it. Returns the unit count and the budget's quantity after
/// removing them (measured on a copy of the model for latency).
fn land(
    model: &DenseModel,
    budget: &Budget,
    structure: Structure,
    ordered: &[Unit],
    planned: usize,
) -> Result<(usize, f64)> {
    let value_after = |count: usize| -> Result<f64> {
        let config = config_after(&model.config, structure, &ordered[..count]);
        match budget.predicted(model, &config) {
            Some(v) => Ok(v),
            None => {
                let mut copy = model.shallow_copy()?;
                apply_units(&mut copy, structure, &ordered[..count])?;
                budget.measure(&copy)
            }
        }
    };
    let full = value_after(planned)?;
    if !budget.is_met(full) {
        return Ok((planned, full));
    }
    let (mut low, mut high, mut best) = (1, planned, full);
    while low < high {
        let mid = (low + high) / 2;
        let v = value_after(mid)?;
        if budget.is_met(v) {
            high = mid;
            best = v;
        } else {
            low = mid + 1;
        }
    }
    Ok((low, best))
}

/// Checks, before any scoring, that the budget is not already met and that removing every
/// removable unit would meet it. The errors name the nearest valid target.
fn check_reachable(
    model: &DenseModel,
    config: &StructuredConfig,
    budget: &Budget,
    value: f64,
) -> Result<()> {
    let structure = config.structure;
    let n_layers = model.layers.len();
    let mut all_units: Vec<Unit> = Vec::new();
    for l in 0..n_layers {
        let zeros = vec![0.0; n_groups(&model.config, structure, l)];
        all_units.extend(layer_units(
            &model.config,
            structure,
            l,
            &zeros,
            config.ffn_multiple,
        ));
    }
    if structure == Structure::Layers {
        all_units.pop();
    }
    let smallest = config_after(&model.config, structure, &all_units);
    let floor = match budget.predicted(model, &smallest) {
        Some(v) => v,
        None => {
            let mut copy = model.shallow_copy()?;
            apply_units(&mut copy, structure, &all_units)?;
            budget.measure(&copy)?
        }
    };
    let keeps = match structure {
        Structure::Ffn => format!("{} FFN neurons per layer", config.ffn_multiple),
        Structure::Heads => "one query head per key/value group".to_string(),
        Structure::KvGroups => "one key/value group per layer".to_string(),
        Structure::Layers => "one decoder layer".to_string(),
    };
    match config.target {
        Target::Params(f) => {
            let smallest_fraction = floor / budget.original_params as f64;
            if !budget.is_met(floor) {
                return Err(Error::invalid_argument(
                    "target params",
                    format!(
                        "{f} cannot be reached with --structure {}: keeping {keeps} (the embeddings are never pruned) leaves {} of {} parameters, \
                         so the smallest reachable --target-params is {:.4}",
                        structure.name(),
                        floor as usize,
                        budget.original_params,
                        (smallest_fraction * 1e4).ceil() / 1e4
                    ),
                ));
            }
        }
        Target::Bytes(b) => {
            if budget.is_met(value) {
                return Err(Error::invalid_argument(
                    "target bytes",
                    format!("{b} is not below the unpruned file's {} bytes, so there is nothing to remove; the largest useful --target-bytes is {}", value as u64, value as u64 - 1),
                ));
            }
            if !budget.is_met(floor) {
                return Err(Error::invalid_argument(
                    "target bytes",
                    format!(
                        "{b} cannot be reached with --structure {}: keeping {keeps} gives a file of {} bytes, the smallest reachable --target-bytes",
                        structure.name(),
                        floor as u64
                    ),
                ));
            }
        }
        Target::MsPerToken(t) => {
            if budget.is_met(value) {
                return Err(Error::invalid_argument(
                    "target ms per token",
                    format!("{t} is not below the unpruned model's measured {value:.2} ms per token, so there is nothing to remove"),
                ));
            }
            if !budget.is_met(floor) {
                return Err(Error::invalid_argument(
                    "target ms per token",
                    format!(
                        "{t} cannot be reached with --structure {}: keeping {keeps} measured {floor:.2} ms per token, the smallest reachable target on this machine",
                        structure.name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Stacks the calibration windows into `(batch, seq)` token tensors.
fn token_batches(
    calibration: &[Vec<u32>],
    batch_size: usize,
    seq_len: usize,
) -> Result<Vec<Tensor>> {
    calibration
        .chunks(batch_size)
        .map(|batch| {
            let flat: Vec<u32> = batch.iter().flatten().copied().collect();
            Ok(Tensor::from_vec(
                flat,
                (batch.len(), seq_len),
                &Device::Cpu,
            )?)
        })
        .collect()
}
