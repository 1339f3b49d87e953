//! Schedules as functions of the optimizer step: the learning rate, the strength of a sparsity
//! penalty, and the target sparsity of gradual magnitude pruning.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Linear warmup from 0 to `peak` over `warmup_steps`, then a cosine decay to `peak *
/// min_ratio` at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub min_ratio: f64,
}

impl LrSchedule {
    /// The learning rate of optimizer step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak * (self.min_ratio + (1.0 - self.min_ratio) * cosine)
    }
}

/// How a penalty's strength grows: `Constant` applies the full strength from the first step;
/// `Linear` scales it from 0 at `start_step` to full at `end_step`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PenaltyRamp {
    Constant,
    Linear { start_step: usize, end_step: usize },
}

impl PenaltyRamp {
    /// The factor in [0, 1] applied to the penalty at optimizer step `step`.
    pub fn factor(&self, step: usize) -> f64 {
        match *self {
            PenaltyRamp::Constant => 1.0,
            PenaltyRamp::Linear {
                start_step,
                end_step,
            } => {
                if step < start_step {
                    0.0
                } else if step >= end_step {
                    1.0
                } else {
                    (step - start_step) as f64 / (end_step - start_step) as f64
                }
            }
        }
    }

    pub fn validate(&self) -> Result<()> {
        if let PenaltyRamp::Linear {
            start_step,
            end_step,
        } = *self
        {
            if end_step <= start_step {
                return Err(Error::invalid_argument(
                    "penalty ramp",
                    format!(
                        "end step must be after the start step, got {start_step} to {end_step}"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Gradual magnitude pruning (Zhu and Gupta, 2017, "To prune, or not to prune"): after optimizer
/// steps `t = start_step + k * prune_every` for `k = 0..=n_prunes`, every pruned matrix is cut to
/// sparsity `s_t = final + (initial - final) * (1 - (t - start_step) / (n_prunes *
/// prune_every))^3` by zeroing its smallest-magnitude weights, which then stay zero.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GmpSchedule {
    pub initial_sparsity: f64,
    pub final_sparsity: f64,
    pub start_step: usize,
    pub prune_every: usize,
    pub n_prunes: usize,
}

impl GmpSchedule {
    pub fn validate(&self) -> Result<()> {
        for (name, s) in [
            ("initial sparsity", self.initial_sparsity),
            ("final sparsity", self.final_sparsity),
        ] {
            if !(0.0..1.0).contains(&s) {
                return Err(Error::invalid_argument(
                    format!("GMP {name}"),
                    format!("must be in [0, 1), got {s}"),
                ));
            }
        }
        if self.final_sparsity < self.initial_sparsity {
            return Err(Error::invalid_argument(
                "GMP final sparsity",
                format!(
                    "must be at least the initial sparsity {}, got {}",
                    self.initial_sparsity, self.final_sparsity
                ),
            ));
        }
        if self.prune_every == 0 {
            return Err(Error::invalid_argument(
                "GMP pruning interval",
                "must be at least 1 step, got 0",
            ));
        }
        Ok(())
    }

    /// The target sparsity if step `step` (the number of completed optimizer steps) is a pruning
    /// step, else `None`.
    pub fn target_at(&self, step: usize) -> Option<f64> {
        if step < self.start_step || (step - self.start_step) % self.prune_every != 0 {
            return None;
        }
        let k = (step - self.start_step) / self.prune_every;
        if k > self.n_prunes {
            return None;
        }
        Some(self.sparsity_at(step))
    }

    /// `s_t` of the cubic schedule: `initial` before `start_step`, `final` after the last
    /// pruning step. With `n_prunes = 0` the one pruning at `start_step` goes to `final`.
    pub fn sparsity_at(&self, step: usize) -> f64 {
        let span = (self.n_prunes * self.prune_every) as f64;
        if span == 0.0 && step >= self.start_step {
            return self.final_sparsity;
        }
        if step <= self.start_step {
            return self.initial_sparsity;
        }
        let progress = ((step - self.start_step) as f64 / span).min(1.0);
        self.final_sparsity
            + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress).powi(3)
    }

    /// The last step at which the schedule prunes.
    pub fn end_step(&self) -> usize {
        self.start_step + self.n_prunes * self.prune_every
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_warmup_then_cosine() {
        let s = LrSchedule {
            peak: 1.0,
            warmup_steps: 4,
            total_steps: 14,
            min_ratio: 0.1,
        };
        assert_eq!(s.at(0), 0.25);
        assert_eq!(s.at(3), 1.0);
        assert_eq!(s.at(4), 1.0);
        assert!(
            (s.at(9) - 0.55).abs() < 1e-12,
            "halfway down the cosine: {}",
            s.at(9)
        );
        assert!((s.at(14) - 0.1).abs() < 1e-12);
        assert!(
            (s.at(100) - 0.1).abs() < 1e-12,
            "stays at the floor after the last step"
        );
    }

    #[test]
    fn lr_without_warmup_starts_at_peak() {
        let s = LrSchedule {
            peak: 2e-3,
            warmup_steps: 0,
            total_steps: 10,
            min_ratio: 0.0,
        };
        assert_eq!(s.at(0), 2e-3);
        assert!(s.at(10).abs() < 1e-18);
    }

    #[test]
    fn penalty_ramp_is_linear() {
        let r = PenaltyRamp::Linear {
            start_step: 10,
            end_step: 20,
        };
        assert_eq!(r.factor(0), 0.0);
        assert_eq!(r.factor(10), 0.0);
        assert_eq!(r.factor(15), 0.5);
        assert_eq!(r.factor(20), 1.0);
        assert_eq!(r.factor(99), 1.0);
        assert_eq!(PenaltyRamp::Constant.factor(0), 1.0);
        assert!(PenaltyRamp::Linear {
            start_step: 5,
            end_step: 5
        }
        .validate()
        .is_err());
    }

    #[test]
    fn gmp_cubic_schedule_values() {
        let g = GmpSchedule {
            initial_sparsity: 0.0,
            final_sparsity: 0.8,
            start_step: 10,
            prune_every: 5,
            n_prunes: 4,
        };
        let steps: Vec<usize> = (0..50).filter(|&t| g.target_at(t).is_some()).collect();
        assert_eq!(steps, vec![10, 15, 20, 25, 30]);
        assert_eq!(g.target_at(10), Some(0.0));
        // (1 - 1/4)^3 = 0.421875, so s = 0.8 - 0.8 * 0.421875.
        assert!((g.target_at(15).unwrap() - (0.8 - 0.8 * 0.421875)).abs() < 1e-12);
        assert!((g.target_at(20).unwrap() - 0.7).abs() < 1e-12);
        assert!((g.target_at(30).unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(g.end_step(), 30);
    }

    #[test]
    fn gmp_without_repeats_prunes_once_to_final() {
        let g = GmpSchedule {
            initial_sparsity: 0.1,
            final_sparsity: 0.5,
            start_step: 3,
            prune_every: 5,
            n_prunes: 0,
        };
        assert_eq!(g.target_at(2), None);
        assert_eq!(g.target_at(3), Some(0.5));
        assert_eq!(g.target_at(8), None);
    }

    #[test]
    fn gmp_rejects_bad_sparsities() {
        let g = GmpSchedule {
            initial_sparsity: 0.0,
            final_sparsity: 1.2,
            start_step: 0,
            prune_every: 1,
            n_prunes: 1,
        };
        let err = g.validate().unwrap_err().to_string();
        assert!(err.contains("must be in [0, 1), got 1.2"), "{err}");
        let g = GmpSchedule {
            initial_sparsity: 0.5,
            final_sparsity: 0.2,
            ..g
        };
        assert!(g.validate().is_err());
    }
}
