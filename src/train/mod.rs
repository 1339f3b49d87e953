//! Training on candle's autograd: full fine-tuning or LoRA, from a loaded model or from scratch.
//!
//! One optimizer step (`Trainer::step`):
//! 1. draw `grad_accum` micro-batches of `batch_size` samples in the sampler's order;
//! 2. forward and backward each one, summing gradients of the loss averaged over all target
//!    tokens of the step (so accumulation equals one large batch);
//! 3. multiply gradients of masked weights by their masks, clip by global norm;
//! 4. AdamW update with the scheduled learning rate (linear warmup, cosine decay);
//! 5. re-apply the masks, then the proximal steps of the sparsity penalties;
//! 6. at the steps of a gradual-magnitude-pruning schedule, prune to its sparsity.
//!
//! The library never prints: `step` returns a `StepReport`, and the caller measures time.

pub mod batch;
pub mod checkpoint;
pub mod corpus;
pub mod loss;
pub mod masks;
pub mod optim;
pub mod schedule;
pub mod scratch;
pub mod sparse;

use std::ops::ControlFlow;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::dense::DenseModel;
use crate::model::lora::LoraConfig;
use batch::{Batch, Fnv, SamplerState, TrainData};
use masks::MaskSet;
use optim::{AdamW, AdamWParams};
use schedule::{GmpSchedule, LrSchedule};
use sparse::{SparsePenalty, SparsityReport};

/// Everything that determines a run's numbers. A resumed run must use the same values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed into one optimizer step.
    pub grad_accum: usize,
    /// Maximum input positions per sequence; longer samples are truncated.
    pub seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    pub warmup_steps: usize,
    /// The cosine decay ends at `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    pub optimizer: AdamWParams,
    /// Gradients are scaled down when their global L2 norm exceeds this; 0 disables clipping.
    pub max_grad_norm: f64,
    /// Evaluate on the held-out data every this many steps and after the last; 0 disables.
    pub eval_every: usize,
    /// Seeds the sample order and the LoRA initialization.
    pub seed: u64,
    /// Draw batches of samples of similar length (within chunks of 50 batches), which cuts the
    /// padding of chat data.
    pub group_by_length: bool,
    /// Train low-rank adapters instead of the weights.
    pub lora: Option<LoraConfig>,
    pub penalty: Option<SparsePenalty>,
    pub gmp: Option<GmpSchedule>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: 4,
            grad_accum: 1,
            seq_len: 256,
            lr: 3e-4,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            optimizer: AdamWParams::default(),
            max_grad_norm: 1.0,
            eval_every: 0,
            seed: 0,
            group_by_length: true,
            lora: None,
            penalty: None,
            gmp: None,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("steps", self.steps),
            ("batch size", self.batch_size),
            ("gradient accumulation", self.grad_accum),
            ("sequence length", self.seq_len),
        ] {
            if v == 0 {
                return Err(Error::invalid_argument(name, "must be at least 1, got 0"));
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid_argument(
                "learning rate",
                format!("must be a positive number, got {}", self.lr),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(Error::invalid_argument(
                "minimum learning-rate ratio",
                format!("must be in [0, 1], got {}", self.min_lr_ratio),
            ));
        }
        if !(self.max_grad_norm >= 0.0 && self.max_grad_norm.is_finite()) {
            return Err(Error::invalid_argument(
                "maximum gradient norm",
                format!("must be 0 (off) or positive, got {}", self.max_grad_norm),
            ));
        }
        self.optimizer.validate()?;
        if let Some(lora) = &self.lora {
            lora.validate()?;
            if self.penalty.is_some() || self.gmp.is_some() {
                return Err(Error::invalid_argument(
                    "LoRA",
                    "sparsity penalties and magnitude pruning act on the base weights, which LoRA freezes; train without LoRA to use them",
                ));
            }
        }
        if let Some(p) = &self.penalty {
            p.validate()?;
        }
        if let Some(g) = &self.gmp {
            g.validate()?;
        }
        Ok(())
    }

    pub fn lr_schedule(&self) -> LrSchedule {
        LrSchedule {
            peak: self.lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.steps,
            min_ratio: self.min_lr_ratio,
        }
    }
}

/// Loss on the held-out data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalReport {
    /// Completed optimizer steps when the evaluation ran.
    pub step: usize,
    /// Mean negative log-likelihood per target token, in nats.
    pub loss: f64,
    pub n_targets: usize,
}

/// Outcome of one optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// Completed optimizer steps, this one included (1 after the first step).
    pub step: usize,
    /// Mean negative log-likelihood per target token over the step's micro-batches, in nats,
    /// before the update.
    pub loss: f64,
    pub lr: f64,
    /// Global L2 norm of the gradients before clipping.
    pub grad_norm: f64,
    pub clipped: bool,
    /// Input tokens processed (padding excluded).
    pub n_tokens: usize,
    /// Target tokens that counted toward the loss.
    pub n_targets: usize,
    /// Present when a penalty or magnitude pruning changes the sparsity.
    pub sparsity: Option<SparsityReport>,
    /// The sparsity every projection matrix was pruned to at this step, by the GMP schedule.
    pub pruned_to: Option<f64>,
    /// Present at evaluation steps.
    pub eval: Option<EvalReport>,
}

pub struct Trainer {
    model: DenseModel,
    config: TrainConfig,
    /// The trained weights: all of the model's, or the LoRA adapters.
    params: Vec<(String, Var)>,
    optimizer: AdamW,
    masks: MaskSet,
    train: TrainData,
    eval: Option<TrainData>,
    sampler: SamplerState,
    /// Token count of each training sample, for length grouping.
    train_lengths: Vec<usize>,
    step: usize,
    base_fingerprint: u64,
}

/// Batches per chunk that length grouping sorts.
const LENGTH_GROUP_BATCHES: usize = 50;

impl Trainer {
    /// Prepares a run: checks the configuration, zeroes masked weights, adds LoRA adapters when
    /// configured (masked like their base weights), and creates the optimizer state.
    pub fn new(
        mut model: DenseModel,
        config: TrainConfig,
        masks: MaskSet,
        train: TrainData,
        eval: Option<TrainData>,
    ) -> Result<Self> {
        config.validate()?;
        let context = model.config.context_length;
        if config.seq_len > context {
            return Err(Error::invalid_argument(
                "sequence length",
                format!(
                    "{} exceeds the model's context of {context} tokens",
                    config.seq_len
                ),
            ));
        }
        for (what, data) in [("training", Some(&train)), ("evaluation", eval.as_ref())] {
            if let Some(data) = data {
                if data.seq_len > config.seq_len {
                    return Err(Error::invalid_argument(
                        "sequence length",
                        format!(
                            "the {what} data was cut to {} tokens, more than the configured {}",
                            data.seq_len, config.seq_len
                        ),
                    ));
                }
            }
        }
        let base_fingerprint = fingerprint(&model.vars())?;
        masks.apply_to_model(&model)?;
        let params = match &config.lora {
            Some(lora) => {
                model.add_lora(lora, config.seed, &masks.to_map())?;
                model.lora_vars()
            }
            None => {
                model.set_base_frozen(false);
                model.vars()
            }
        };
        let sizes: Vec<usize> = params.iter().map(|(_, v)| v.elem_count()).collect();
        let optimizer = AdamW::new(config.optimizer, &sizes)?;
        let sampler = SamplerState::new(config.seed);
        let train_lengths = train.samples.iter().map(|s| s.tokens.len()).collect();
        Ok(Self {
            model,
            config,
            params,
            optimizer,
            masks,
            train,
            eval,
            sampler,
            train_lengths,
            step: 0,
            base_fingerprint,
        })
    }

    pub fn model(&self) -> &DenseModel {
        &self.model
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn masks(&self) -> &MaskSet {
        &self.masks
    }

    pub fn train_data(&self) -> &TrainData {
        &self.train
    }

    pub fn has_eval_data(&self) -> bool {
        self.eval.is_some()
    }

    /// Completed optimizer steps.
    pub fn step_count(&self) -> usize {
        self.step
    }

    pub fn is_done(&self) -> bool {
        self.step >= self.config.steps
    }

    /// Number of trained values (all weights, or the adapters).
    pub fn n_trained_params(&self) -> usize {
        self.params.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Runs one optimizer step. On a non-finite loss or gradient norm it returns
    /// `Error::NonFinite` and leaves the weights, optimizer and sample order as they were.
    pub fn step(&mut self) -> Result<StepReport> {
        if self.is_done() {
            return Err(Error::invalid_argument(
                "step",
                format!("training already finished its {} steps", self.config.steps),
            ));
        }
        let step_number = self.step + 1;
        let lr = self.config.lr_schedule().at(self.step);
        let sampler_before = self.sampler.clone();
        let group = self
            .config
            .group_by_length
            .then_some(self.config.batch_size * LENGTH_GROUP_BATCHES);

        let batches: Vec<Batch> = (0..self.config.grad_accum)
            .map(|_| {
                let indices =
                    self.sampler
                        .next_indices(self.config.batch_size, &self.train_lengths, group);
                let samples: Vec<_> = indices.iter().map(|&i| &self.train.samples[i]).collect();
                Batch::from_samples(&samples)
            })
            .collect();
        let n_targets: usize = batches.iter().map(Batch::n_targets).sum();
        let n_tokens: usize = batches.iter().map(|b| b.n_tokens).sum();

        let result = self.accumulate_gradients(&batches, n_targets, step_number);
        let (loss_sum, mut grads) = match result {
            Ok(v) => v,
            Err(e) => {
                self.sampler = sampler_before;
                return Err(e);
            }
        };
        let loss = loss_sum / n_targets as f64;

        // Masked weights get no gradient, so the optimizer moments of pruned weights stay zero.
        for ((name, _), grad) in self.params.iter().zip(grads.iter_mut()) {
            if let Some(mask) = self.masks.get(name) {
                *grad = (&*grad * mask)?;
            }
        }
        let mut sum_sq = 0f64;
        for g in &grads {
            sum_sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        let grad_norm = sum_sq.sqrt();
        if !grad_norm.is_finite() {
            self.sampler = sampler_before;
            return Err(Error::NonFinite {
                step: step_number,
                quantity: "gradient norm",
                value: grad_norm as f32,
            });
        }
        let clipped = self.config.max_grad_norm > 0.0 && grad_norm > self.config.max_grad_norm;
        if clipped {
            let scale = self.config.max_grad_norm / grad_norm;
            grads = grads
                .iter()
                .map(|g| g * scale)
                .collect::<candle_core::Result<_>>()?;
        }

        let vars: Vec<Var> = self.params.iter().map(|(_, v)| v.clone()).collect();
        self.optimizer.step(&vars, &grads, lr)?;
        if self.config.lora.is_none() {
            self.masks.apply_to_model(&self.model)?;
        }
        if let Some(penalty) = &self.config.penalty {
            penalty.apply(&self.model, self.step, lr)?;
        }
        self.step = step_number;

        let mut pruned_to = None;
        if let Some(gmp) = &self.config.gmp {
            if let Some(target) = gmp.target_at(self.step) {
                sparse::magnitude_prune(&self.model, &mut self.masks, target)?;
                pruned_to = Some(target);
            }
        }
        let sparsity = if self.config.penalty.is_some() || self.config.gmp.is_some() {
            Some(SparsityReport::measure(&self.model)?)
        } else {
            None
        };
        let eval_due = self.config.eval_every > 0
            && (self.step % self.config.eval_every == 0 || self.is_done());
        let eval = match (&self.eval, eval_due) {
            (Some(_), true) => Some(self.evaluate()?),
            _ => None,
        };
        Ok(StepReport {
            step: self.step,
            loss,
            lr,
            grad_norm,
            clipped,
            n_tokens,
            n_targets,
            sparsity,
            pruned_to,
            eval,
        })
    }

    /// Runs steps until the last one, passing each report to `on_step`, which returns
    /// `ControlFlow::Break(())` to stop early (the run can continue later with more calls).
    /// Time the steps in the callback: the library measures no time, because
    /// `std::time::Instant` is not available in wasm.
    pub fn run(&mut self, mut on_step: impl FnMut(&StepReport) -> ControlFlow<()>) -> Result<()> {
        while !self.is_done() {
            let report = self.step()?;
            if on_step(&report).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Forward and backward passes of the micro-batches. Returns the summed loss (nats) and the
    /// summed gradients of `sum(nll) / n_targets`, one per trained weight.
    fn accumulate_gradients(
        &self,
        batches: &[Batch],
        n_targets: usize,
        step_number: usize,
    ) -> Result<(f64, Vec<Tensor>)> {
        let mut loss_sum = 0f64;
        let mut grads: Vec<Option<Tensor>> = vec![None; self.params.len()];
        for batch in batches {
            let (nll, _) = loss::nll_sum(&self.model, batch, true)?;
            let value = nll.to_scalar::<f32>()?;
            if !value.is_finite() {
                return Err(Error::NonFinite {
                    step: step_number,
                    quantity: "loss",
                    value,
                });
            }
            loss_sum += value as f64;
            let store = (nll / n_targets as f64)?.backward()?;
            for ((_, var), sum) in self.params.iter().zip(grads.iter_mut()) {
                if let Some(g) = store.get(var.as_tensor()) {
                    *sum = Some(match sum.take() {
                        Some(s) => (s + g)?,
                        None => g.clone(),
                    });
                }
            }
        }
        let grads = grads
            .into_iter()
            .zip(&self.params)
            .map(|(g, (_, var))| match g {
                Some(g) => Ok(g),
                None => Ok(var.zeros_like()?),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((loss_sum, grads))
    }

    /// Mean loss per target token over the held-out data, in order, `batch_size` samples at a
    /// time. Fails when the trainer has no evaluation data.
    pub fn evaluate(&self) -> Result<EvalReport> {
        let data = self
            .eval
            .as_ref()
            .ok_or_else(|| Error::invalid_argument("evaluation", "no evaluation data was given"))?;
        let mut total = 0f64;
        let mut n = 0;
        for chunk in data.samples.chunks(self.config.batch_size) {
            let samples: Vec<_> = chunk.iter().collect();
            let (nll, count) = loss::nll_sum(&self.model, &Batch::from_samples(&samples), false)?;
            total += nll.to_scalar::<f32>()? as f64;
            n += count;
        }
        Ok(EvalReport {
            step: self.step,
            loss: total / n as f64,
            n_targets: n,
        })
    }

    /// Finishes the run: merges LoRA adapters into the weights (masked) and returns the model.
    pub fn into_model(mut self) -> Result<DenseModel> {
        if self.config.lora.is_some() {
            self.model.merge_lora()?;
        }
        Ok(self.model)
    }
}

/// Hashes every value of `vars`, in order, with 64-bit FNV-1a.
fn fingerprint(vars: &[(String, Var)]) -> Result<u64> {
    let mut hash = Fnv::new();
    for (name, var) in vars {
        hash.write(name.as_bytes());
        let values: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
        for v in values {
            hash.write(&v.to_bits().to_le_bytes());
        }
    }
    Ok(hash.finish())
}
