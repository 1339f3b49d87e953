//! Magnitude pruning: a weight's importance is its absolute value `|W_ij|`. It needs no
//! calibration data. The comparison group is a row, a matrix (the usual "layer-wise"
//! baseline), or every pruned matrix at once (global).

use crate::error::Result;
use crate::prune::hessian::Hessian;
use crate::prune::mask::Matrix;
use crate::prune::Pruner;

pub struct Magnitude;

/// Returns `|W_ij|` for every weight, row-major.
pub fn score(weight: &Matrix) -> Vec<f32> {
    weight.data.iter().map(|w| w.abs()).collect()
}

impl Pruner for Magnitude {
    fn score(&self, weight: &Matrix, _hessian: Option<&Hessian>) -> Result<Vec<f32>> {
        Ok(score(weight))
    }
}
