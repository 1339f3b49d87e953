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
        Self {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.9,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 42,
            max_new_tokens: 256,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding with no penalty: the setting reference comparisons use.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            max_new_tokens,
            ..Self::default()
        }
    }

    /// Rejects values outside their ranges, naming the value and the rule.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::invalid_argument(
                "temperature",
                format!("must be a number >= 0, got {}", self.temperature),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid_argument(
                "top_p",
                format!("must be in (0, 1], got {}", self.top_p),
            ));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(Error::invalid_argument(
                "repeat_penalty",
                format!(
                    "must be a number > 0 (1 turns it off), got {}",
                    self.repeat_penalty
                ),
            ));
        }
        if self.max_new_tokens == 0 {
            return Err(Error::invalid_argument(
                "max_new_tokens",
                "must be at least 1, got 0",
            ));
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
        apply_repeat_penalty(
            &mut logits,
            recent,
            self.params.repeat_penalty,
            self.params.repeat_last_n,
        );
        if self.params.temperature == 0.0 {
            return argmax(&logits);
        }

        // Candidates sorted by logit, highest first; ties keep the lower id first.
        let mut order: Vec<u32> = (0..logits.len() as u32)
            .filter(|&i| !logits[i as usize].is_nan())
            .collect();
        let by_logit = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        // With top-k, partition first so only k candidates are sorted, not the whole vocabulary.
        if self.params.top_k > 0 && self.params.top_k < order.len() {
            order.select_nth_unstable_by(self.params.top_k - 1, by_logit);
            order.truncate(self.params.top_k);
        }
        order.sort_by(by_logit);
        if order.is_empty() {
            return argmax(&logits);
        }

        let max = logits[order[0] as usize];
        let mut probs: Vec<f32> = order
            .iter()
            .map(|&i| ((logits[i as usize] - max) / self.params.temperature).exp())
            .collect();
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
                *logit = if *logit > 0.0 {
                    *logit / penalty
                } else {
                    *logit * penalty
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            seed,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_picks_the_largest_logit() {
        let mut sampler = Sampler::new(SamplingParams::greedy(8)).unwrap();
        assert_eq!(sampler.sample(&[0.1, 3.0, -1.0, 2.9], &[]), 1);
    }

    #[test]
    fn argmax_prefers_first_on_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 5.0, 5.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 2.0, 1.0]), 1);
    }

    #[test]
    fn top_k_one_equals_greedy() {
        let logits = [0.3, 2.0, 1.9, -4.0, 0.0];
        let mut sampler = Sampler::new(params(1.5, 1, 1.0, 7)).unwrap();
        for _ in 0..50 {
            assert_eq!(sampler.sample(&logits, &[]), 1);
        }
    }

    #[test]
    fn top_k_keeps_the_k_best_with_ties() {
        // Many equal logits: ties must go to the lower id, as a full sort would order them.
        let logits: Vec<f32> = (0..200).map(|i| ((i * 7) % 5) as f32).collect();
        let mut naive: Vec<u32> = (0..200).collect();
        naive.sort_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        let allowed = &naive[..5];
        let mut sampler = Sampler::new(params(1.0, 5, 1.0, 13)).unwrap();
        for _ in 0..500 {
            let id = sampler.sample(&logits, &[]);
            assert!(
                allowed.contains(&id),
                "token {id} is outside the top 5 {allowed:?}"
            );
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities at temperature 1: about 0.665, 0.245, 0.090.
        let logits = [2.0, 1.0, 0.0];
        let mut sampler = Sampler::new(params(1.0, 0, 0.6, 3)).unwrap();
        for _ in 0..100 {
            assert_eq!(sampler.sample(&logits, &[]), 0);
        }
        let mut sampler = Sampler::new(params(1.0, 0, 0.8, 3)).unwrap();
        let picks: Vec<u32> = (0..200).map(|_| sampler.sample(&logits, &[])).collect();
        assert!(picks.contains(&0), "token 0 is in the 0.8 nucleus");
        assert!(picks.contains(&1), "token 1 is in the 0.8 nucleus");
        assert!(!picks.contains(&2), "token 2 is outside the 0.8 nucleus");
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, 0, 1.0, seed)).unwrap();
            (0..30).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn sampling_frequencies_follow_softmax() {
        let logits = [0.0f32, (2.0f32).ln(), (7.0f32).ln()]; // probabilities 0.1, 0.2, 0.7
        let mut sampler = Sampler::new(params(1.0, 0, 1.0, 11)).unwrap();
        let mut counts = [0usize; 3];
        for _ in 0..20_000 {
            counts[sampler.sample(&logits, &[]) as usize] += 1;
        }
        for (i, expected) in [0.1, 0.2, 0.7].iter().enumerate() {
            let freq = counts[i] as f64 / 20_000.0;
            assert!(
                (freq - expected).abs() < 0.015,
                "token {i}: frequency {freq}, expected {expected}"
            );
        }
    }

    #[test]
    fn repeat_penalty_divides_positive_and_multiplies_negative() {
        let mut logits = vec![2.0, -2.0, 1.0];
        apply_repeat_penalty(&mut logits, &[0, 1, 0], 2.0, 64);
        assert_eq!(logits, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn repeat_penalty_looks_only_at_last_n() {
        let mut logits = vec![2.0, 2.0];
        apply_repeat_penalty(&mut logits, &[0, 1], 2.0, 1);
        assert_eq!(logits, vec![2.0, 1.0]);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let cases = [
            (
                SamplingParams {
                    temperature: -1.0,
                    ..SamplingParams::default()
                },
                "temperature",
            ),
            (
                SamplingParams {
                    temperature: f32::NAN,
                    ..SamplingParams::default()
                },
                "temperature",
            ),
            (
                SamplingParams {
                    top_p: 0.0,
                    ..SamplingParams::default()
                },
                "top_p",
            ),
            (
                SamplingParams {
                    top_p: 1.5,
                    ..SamplingParams::default()
                },
                "top_p",
            ),
            (
                SamplingParams {
                    repeat_penalty: 0.0,
                    ..SamplingParams::default()
                },
                "repeat_penalty",
            ),
            (
                SamplingParams {
                    max_new_tokens: 0,
                    ..SamplingParams::default()
                },
                "max_new_tokens",
            ),
        ];
        for (params, name) in cases {
            let message = params.validate().unwrap_err().to_string();
            assert!(message.contains(name), "{message:?} should name {name}");
        }
    }
}
