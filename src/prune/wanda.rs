//! Wanda (Sun, Liu, Bair and Kolter, "A Simple and Effective Pruning Approach for Large
//! Language Models", 2023): weight `(i, j)` scores `|W_ij| · ‖X_j‖₂`, where `‖X_j‖₂` is the
//! L2 norm of input feature `j` over all calibration tokens. Scores compete within each
//! output row (or within N:M groups), and the kept weights are not updated.

use crate::error::{Error, Result};
use crate::prune::hessian::Hessian;
use crate::prune::mask::Matrix;
use crate::prune::Pruner;

pub struct Wanda;

/// Returns `|W_ij| · input_norms[j]` for every weight, row-major.
pub fn score(weight: &Matrix, input_norms: &[f64]) -> Result<Vec<f32>> {
    if input_norms.len() != weight.cols {
        return Err(Error::invalid_argument(
            "input norms",
            format!(
                "{} norms for a matrix with {} inputs",
                input_norms.len(),
                weight.cols
            ),
        ));
    }
    let mut scores = Vec::with_capacity(weight.data.len());
    for r in 0..weight.rows {
        for (w, norm) in weight.row(r).iter().zip(input_norms) {
            scores.push((w.abs() as f64 * norm) as f32);
        }
    }
    Ok(scores)
}

impl Pruner for Wanda {
    fn score(&self, weight: &Matrix, hessian: Option<&Hessian>) -> Result<Vec<f32>> {
        let hessian = hessian.ok_or_else(|| {
            Error::invalid_argument("calibration data", "Wanda needs calibration inputs")
        })?;
        // ‖X_j‖₂² is the diagonal entry H_jj of H = XᵀX.
        score(weight, &hessian.input_norms())
    }
}
