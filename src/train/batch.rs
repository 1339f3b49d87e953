//! Training samples and the deterministic order in which batches draw them.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One training sequence. `loss_mask[i]` is true when predicting `tokens[i]` from the tokens
/// before it counts toward the loss: true everywhere for plain text, true on the assistant's
/// reply tokens for chat data. `loss_mask[0]` is ignored because the first token has no context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub tokens: Vec<u32>,
    pub loss_mask: Vec<bool>,
}

impl Sample {
    /// Creates a plain-text sample, in which every token after the first is a target.
    pub fn text(tokens: Vec<u32>) -> Self {
        let loss_mask = vec![true; tokens.len()];
        Self { tokens, loss_mask }
    }
}

/// Counts of what `TrainData::new` did to the samples it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DataReport {
    pub n_samples: usize,
    /// Samples longer than `seq_len + 1` tokens, cut to that length.
    pub n_truncated: usize,
    /// Samples left out: fewer than two tokens, or no target token after truncation.
    pub n_dropped: usize,
    /// Target tokens (those that count toward the loss) over all kept samples.
    pub n_target_tokens: usize,
}

/// Samples ready for batching: each at most `seq_len + 1` tokens, so it gives at most
/// `seq_len` input positions.
#[derive(Debug, Clone)]
pub struct TrainData {
    pub samples: Vec<Sample>,
    pub seq_len: usize,
    pub report: DataReport,
}

impl TrainData {
    /// Checks and truncates `samples`. Fails when a sample is malformed (mask length differs
    /// from token count, a token outside the vocabulary) or when no sample is usable.
    pub fn new(samples: Vec<Sample>, seq_len: usize, vocab_size: usize) -> Result<Self> {
        if seq_len == 0 {
            return Err(Error::invalid_argument(
                "sequence length",
                "must be at least 1 token, got 0",
            ));
        }
        let mut report = DataReport {
            n_samples: samples.len(),
            ..DataReport::default()
        };
        if samples.is_empty() {
            return Err(Error::Data("no samples: the data set is empty".into()));
        }
        let mut kept = Vec::with_capacity(samples.len());
        for (i, mut sample) in samples.into_iter().enumerate() {
            if sample.loss_mask.len() != sample.tokens.len() {
                return Err(Error::Data(format!(
                    "sample {i} has {} tokens but {} loss-mask entries; they must be equally long",
                    sample.tokens.len(),
                    sample.loss_mask.len()
                )));
            }
            if let Some(&bad) = sample.tokens.iter().find(|&&t| t as usize >= vocab_size) {
                return Err(Error::Data(format!(
                    "sample {i} has token id {bad}, outside the vocabulary of {vocab_size} tokens"
                )));
            }
            if sample.tokens.len() > seq_len + 1 {
                sample.tokens.truncate(seq_len + 1);
                sample.loss_mask.truncate(seq_len + 1);
                report.n_truncated += 1;
            }
            let n_targets = sample.loss_mask.iter().skip(1).filter(|&&m| m).count();
            if sample.tokens.len() < 2 || n_targets == 0 {
                report.n_dropped += 1;
                continue;
            }
            report.n_target_tokens += n_targets;
            kept.push(sample);
        }
        if kept.is_empty() {
            return Err(Error::Data(format!(
                "no usable samples: all {} have fewer than two tokens or no target token within the first {} tokens",
                report.n_samples,
                seq_len + 1
            )));
        }
        Ok(Self {
            samples: kept,
            seq_len,
            report,
        })
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Hashes every token and mask bit with 64-bit FNV-1a, so a resumed run can check that it
    /// trains on the same data.
    pub fn fingerprint(&self) -> u64 {
        let mut hash = Fnv::new();
        hash.write_u64(self.seq_len as u64);
        for s in &self.samples {
            hash.write_u64(s.tokens.len() as u64);
            for (&t, &m) in s.tokens.iter().zip(&s.loss_mask) {
                hash.write_u64(((t as u64) << 1) | m as u64);
            }
        }
        hash.finish()
    }
}

/// A batch of right-padded sequences: inputs and targets `(batch, seq)`, with `weights` 1.0
/// where the target counts toward the loss and 0.0 elsewhere (padding included).
#[derive(Debug, Clone)]
pub struct Batch {
    pub batch_size: usize,
    pub seq: usize,
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub weights: Vec<f32>,
    /// Input tokens that are not padding.
    pub n_tokens: usize,
}

impl Batch {
    /// Builds a batch from `samples`, padded to the longest one. Padding uses token 0 with
    /// weight 0; causal attention keeps it from affecting the real positions before it.
    pub fn from_samples(samples: &[&Sample]) -> Self {
        let seq = samples
            .iter()
            .map(|s| s.tokens.len() - 1)
            .max()
            .unwrap_or(0);
        let mut batch = Batch {
            batch_size: samples.len(),
            seq,
            inputs: vec![0; samples.len() * seq],
            targets: vec![0; samples.len() * seq],
            weights: vec![0.0; samples.len() * seq],
            n_tokens: 0,
        };
        for (b, s) in samples.iter().enumerate() {
            let n = s.tokens.len() - 1;
            for i in 0..n {
                batch.inputs[b * seq + i] = s.tokens[i];
                batch.targets[b * seq + i] = s.tokens[i + 1];
                batch.weights[b * seq + i] = if s.loss_mask[i + 1] { 1.0 } else { 0.0 };
            }
            batch.n_tokens += n;
        }
        batch
    }

    pub fn n_targets(&self) -> usize {
        self.weights.iter().filter(|&&w| w > 0.0).count()
    }
}

/// The order in which training draws samples: epoch `e` visits all samples in a permutation
/// drawn from `seed` and `e`. With length grouping, the permutation is cut into chunks of
/// `group` samples and each chunk is sorted by length, longest first, so consecutive batches
/// hold samples of similar length and need little padding. The whole state is `(seed, epoch, cursor)`, so a
/// checkpoint can store it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    pub seed: u64,
    pub epoch: u64,
    /// Position within the current epoch's permutation.
    pub cursor: usize,
}

impl SamplerState {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            epoch: 0,
            cursor: 0,
        }
    }

    /// Returns the next `n` indices of samples with token counts `lengths`, moving on to a new
    /// permutation at the end of each epoch. `group` turns on length grouping with chunks of
    /// that many samples.
    pub fn next_indices(
        &mut self,
        n: usize,
        lengths: &[usize],
        group: Option<usize>,
    ) -> Vec<usize> {
        let len = lengths.len();
        let mut out = Vec::with_capacity(n);
        let mut order = epoch_order(self.seed, self.epoch, lengths, group);
        while out.len() < n {
            if self.cursor == len {
                self.epoch += 1;
                self.cursor = 0;
                order = epoch_order(self.seed, self.epoch, lengths, group);
            }
            out.push(order[self.cursor]);
            self.cursor += 1;
        }
        out
    }
}

fn epoch_order(seed: u64, epoch: u64, lengths: &[usize], group: Option<usize>) -> Vec<usize> {
    // The golden-ratio multiplier spreads consecutive epochs over the seed space.
    let mut rng = StdRng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    if let Some(group) = group {
        for chunk in order.chunks_mut(group.max(1)) {
            // A stable sort keeps the random order among samples of equal length.
            chunk.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        }
    }
    order
}

/// 64-bit FNV-1a.
pub(crate) struct Fnv(u64);

impl Fnv {
    pub fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_visits_every_sample_each_epoch() {
        let mut state = SamplerState::new(7);
        let first: Vec<usize> = state.next_indices(10, &[1; 10], None);
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(state.epoch, 0);
        let second = state.next_indices(3, &[1; 10], None);
        assert_eq!(state.epoch, 1);
        assert_eq!(state.cursor, 3);
        assert_ne!(first[..3], second[..], "a new epoch draws a new order");
    }

    const LENGTHS: [usize; 9] = [5, 9, 2, 7, 7, 1, 3, 8, 4];

    #[test]
    fn sampler_groups_by_length() {
        let mut state = SamplerState::new(1);
        let order = state.next_indices(9, &LENGTHS, Some(4));
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (0..9).collect::<Vec<_>>(),
            "every sample once per epoch"
        );
        for chunk in order.chunks(4) {
            let lengths: Vec<usize> = chunk.iter().map(|&i| LENGTHS[i]).collect();
            assert!(
                lengths.windows(2).all(|w| w[0] >= w[1]),
                "chunk lengths {lengths:?} are not descending"
            );
        }
    }

    #[test]
    fn sampler_state_resumes_exactly() {
        let mut a = SamplerState::new(3);
        let mut all = Vec::new();
        for _ in 0..7 {
            all.extend(a.next_indices(4, &LENGTHS, Some(4)));
        }
        let mut b = SamplerState::new(3);
        let mut resumed = Vec::new();
        for _ in 0..3 {
            resumed.extend(b.next_indices(4, &LENGTHS, Some(4)));
        }
        let mut c = b.clone();
        for _ in 3..7 {
            resumed.extend(c.next_indices(4, &LENGTHS, Some(4)));
        }
        assert_eq!(all, resumed);
    }

    #[test]
    fn data_truncates_and_drops() {
        let samples = vec![
            Sample::text((0..20).collect()),
            Sample::text(vec![5]),
            Sample {
                tokens: vec![1, 2, 3],
                loss_mask: vec![true, false, false],
            },
            Sample::text(vec![1, 2, 3]),
        ];
        let data = TrainData::new(samples, 8, 100).unwrap();
        assert_eq!(data.report.n_truncated, 1);
        assert_eq!(data.report.n_dropped, 2);
        assert_eq!(data.len(), 2);
        assert_eq!(data.samples[0].tokens.len(), 9);
        assert_eq!(data.report.n_target_tokens, 8 + 2);
    }

    #[test]
    fn data_rejects_bad_input() {
        let err = TrainData::new(vec![], 8, 100).unwrap_err().to_string();
        assert!(err.contains("data set is empty"), "{err}");
        let err = TrainData::new(vec![Sample::text(vec![1, 200])], 8, 100)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("token id 200, outside the vocabulary of 100"),
            "{err}"
        );
        let bad = Sample {
            tokens: vec![1, 2],
            loss_mask: vec![true],
        };
        let err = TrainData::new(vec![bad], 8, 100).unwrap_err().to_string();
        assert!(err.contains("2 tokens but 1 loss-mask entries"), "{err}");
        let err = TrainData::new(vec![Sample::text(vec![1])], 8, 100)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no usable samples"), "{err}");
    }

    #[test]
    fn batch_pads_and_shifts() {
        let a = Sample {
            tokens: vec![1, 2, 3, 4],
            loss_mask: vec![false, false, true, true],
        };
        let b = Sample::text(vec![7, 8]);
        let batch = Batch::from_samples(&[&a, &b]);
        assert_eq!(batch.seq, 3);
        assert_eq!(batch.inputs, vec![1, 2, 3, 7, 0, 0]);
        assert_eq!(batch.targets, vec![2, 3, 4, 8, 0, 0]);
        assert_eq!(batch.weights, vec![0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(batch.n_tokens, 4);
        assert_eq!(batch.n_targets(), 3);
    }
}
