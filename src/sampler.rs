//! Next-token sampling: repetition penalty, temperature, top-k, top-p, seeded randomness.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Sampling settings. `temperature == 0` means greedy decoding (always the most likely token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probabilities add up to at least `top_p`; 1 keeps all.
    pub top_p: f32,
    /// Logits of recently seen tokens are divided (if positive) or multiplied (if negative) by
    /// this factor, as llama.cpp and Hugging Face do; 1 turns it off.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
    pub max_new_tokens: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.7, top_k: 40, top_p: 0.9, repeat_penalty: 1.0, repeat_last_n: 64, seed: 42, max_new_tokens: 256 }
    }
}

impl SamplingParams {
    /// Greedy decoding with no penalty: the setting reference comparisons use.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, repeat_penalty: 1.0, max_new_tokens, ..Self::default() }
    }

    /// Rejects values outside their ranges, naming the value and the rule.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::invalid_argument("temperature", format!("must be a number >= 0, got {}", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid_argument("top_p", format!("must be in (0, 1], got {}", self.top_p)));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(Error::invalid_argument(
                "repeat_penalty",
                format!("must be a number > 0 (1 turns it off), got {}", self.repeat_penalty),
            ));
        }
        if self.max_new_tokens == 0 {
            return Err(Error::invalid_argument("max_new_tokens", "must be at least 1, got 0"));
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = StdRng::seed_from_u64(params.seed);
        Ok(Self { params, rng })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits` (one per vocabulary entry); `recent` are the tokens
    /// already in the context, most recent last.
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        apply_repeat_penalty(&mut logits, recent, self.params.repeat_penalty, self.params.repeat_last_n);
        if self.params.temperature == 0.0 {
            return argmax(&logits);
        }

        // Candidates sorted by logit, highest first; ties keep the lower id first.
        let mut order: Vec<u32> = (0..logits.len() as u32).filter(|&i| !logits[i as usize].is_nan()).collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        if self.params.top_k > 0 && self.params.top_k < order.len() {
            order.truncate(self.params.top_k);
        }
        if order.is_empty() {
            return argmax(&logits);
        }

        let max = logits[order[0] as usize];
        let mut probs: Vec<f32> =
            order.iter().map(|&i| ((logits[i as usize] - max) / self.params.temperature).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);

        if self.params.top_p < 1.0 {
            let mut cumulative = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cumulative += p;
                if cumulative >= self.params.top_p {
                    keep = i + 1;
                    break;
                }
            }
            order.truncate(keep);
            probs.truncate(keep);
        }

        let total: f32 = probs.iter().sum();
        let mut u = self.rng.random::<f32>() * total;
        for (i, p) in probs.iter().enumerate() {
            if u < *p {
                return order[i];
            }
            u -= p;
        }
        *order.last().expect("order is not empty")
    }
}

/// Returns the index of the largest logit (the first one on ties; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best as u32
}

fn apply_repeat_penalty(logits: &mut [f32], recent: &[u32], penalty: f32, last_n: usize) {
    if penalty == 1.0 || last_n == 0 {
        return;
    }
    let start = recent.len().saturating_sub(last_n);
    let mut seen = std::collections::HashSet::new();
    for &id in &recent[start..] {
        if let Some(logit) = logits.get_mut(id as usize) {
            if seen.insert(id) {
                *logit = if *logit > 0.0 { *logit / penalty } else { *logit * penalty };
            }
        }
    }
}
