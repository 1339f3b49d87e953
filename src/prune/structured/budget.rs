//! Budgets for structured pruning: parameter count, exported file size, or decode latency.

use candle_core::quantized::GgmlDType;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::config::Config;
use crate::model::dense::DenseModel;
use crate::model::gguf_size::gguf_file_bytes;
use crate::model::{KvCache, Model};
use crate::prune::driver::Clock;

/// Tokens timed by `measure_ms_per_token`, after two untimed warm-up tokens.
const TIMED_TOKENS: usize = 16;
/// Prompt length before the timed decode steps.
const PROMPT_TOKENS: usize = 16;

/// The budget the pruned model must fit in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Keep at most this fraction of the original parameter count, in (0, 1). Every weight
    /// counts, including the token embedding, the norms and a separate output head (a tied
    /// head counts once). The embedding and head are never pruned.
    Params(f64),
    /// The file `to_gguf(dtype)` writes is at most this many bytes.
    Bytes(u64),
    /// The quantized model decodes a token in at most this many milliseconds (median of a
    /// short timed generation on this machine).
    MsPerToken(f64),
}

impl Target {
    pub fn validate(&self) -> Result<()> {
        match *self {
            Target::Params(f) if !(f > 0.0 && f < 1.0) => Err(Error::invalid_argument(
                "target params",
                format!("{f} is not a fraction of the parameters to keep in (0, 1); for example 0.75 keeps 75%"),
            )),
            Target::Bytes(0) => Err(Error::invalid_argument("target bytes", "must be at least 1, got 0")),
            Target::MsPerToken(t) if !(t > 0.0 && t.is_finite()) => {
                Err(Error::invalid_argument("target ms per token", format!("must be a positive number of milliseconds, got {t}")))
            }
            _ => Ok(()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Params(f) => format!("{:.2}% of the parameters", f * 100.0),
            Target::Bytes(b) => format!("{b} bytes"),
            Target::MsPerToken(t) => format!("{t} ms per token"),
        }
    }
}

/// The budget resolved against one model.
pub(crate) struct Budget<'a> {
    pub target: Target,
    pub original_params: usize,
    pub dtype: GgmlDType,
    pub clock: Option<Clock<'a>>,
}

impl Budget<'_> {
    /// Largest parameter count that meets `Target::Params`.
    pub fn max_params(&self) -> Option<usize> {
        match self.target {
            Target::Params(f) => Some((f * self.original_params as f64).floor() as usize),
            _ => None,
        }
    }

    /// Returns the quantity the budget limits for a model of `config` with the source metadata
    /// of `model`, or `None` for latency, which has to be measured.
    pub fn predicted(&self, model: &DenseModel, config: &Config) -> Option<f64> {
        match self.target {
            Target::Params(_) => Some(config.n_params() as f64),
            Target::Bytes(_) => Some(gguf_file_bytes(&model.metadata, config, self.dtype) as f64),
            Target::MsPerToken(_) => None,
        }
    }

    /// Returns the limit in the units of `predicted` and `measure`.
    pub fn limit(&self) -> f64 {
        match self.target {
            Target::Params(_) => self.max_params().expect("params target") as f64,
            Target::Bytes(b) => b as f64,
            Target::MsPerToken(t) => t,
        }
    }

    /// Returns the budget's quantity for `model`: predicted, or measured for latency.
    pub fn measure(&self, model: &DenseModel) -> Result<f64> {
        match self.predicted(model, &model.config) {
            Some(v) => Ok(v),
            None => {
                let clock = self.clock.ok_or_else(|| {
                    Error::invalid_argument("target ms per token", "needs a clock to measure time")
                })?;
                measure_ms_per_token(model, self.dtype, clock)
            }
        }
    }

    pub fn is_met(&self, value: f64) -> bool {
        value <= self.limit()
    }
}

/// Exports `model` to `dtype`, loads it as the quantized inference model, and returns the
/// median time of `TIMED_TOKENS` single-token decode steps after a `PROMPT_TOKENS` prompt, in
/// milliseconds. It is as noisy as the machine it runs on.
pub fn measure_ms_per_token(model: &DenseModel, dtype: GgmlDType, clock: Clock) -> Result<f64> {
    let quantized = Model::from_gguf(model.to_gguf(dtype)?)?;
    let vocab = quantized.config().vocab_size as u32;
    let prompt: Vec<u32> = (0..PROMPT_TOKENS as u32)
        .map(|i| (i * 31 + 7) % vocab)
        .collect();
    let mut cache = KvCache::new(quantized.config(), PROMPT_TOKENS + TIMED_TOKENS + 2);
    let mut logits = quantized.forward_last(&prompt, &mut cache)?;
    let mut times = Vec::with_capacity(TIMED_TOKENS);
    for i in 0..TIMED_TOKENS + 2 {
        let next = logits.argmax(0)?.to_scalar::<u32>()?;
        let start = clock();
        logits = quantized.forward_last(&[next], &mut cache)?;
        if i >= 2 {
            times.push(clock() - start);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
