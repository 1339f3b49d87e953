//! SparseGPT (Frantar and Alistarh, "SparseGPT: Massive Language Models Can Be Accurately
//! Pruned in One-Shot", 2023): Optimal Brain Surgeon pruning, one matrix at a time.
//!
//! With `H = XᵀX + λ·mean(diag H)·I` and `U` the upper Cholesky factor of `H⁻¹`
//! (`UᵀU = H⁻¹`), columns are processed left to right in blocks. At the start of each block
//! the mask of that block is chosen from the saliency `W_ij² / U_jj²` (for N:M, at the start
//! of each group of M columns instead). Each column `i` is then fixed (pruned weights to
//! zero, kept weights as they are) and its error `(w_i − q_i) / U_ii` is spread over the
//! columns to its right along row `i` of `U`. That is the OBS update restricted to the
//! columns not yet fixed, so every row ends with the least-squares optimal values given the
//! columns fixed before.
//!
//! Inputs that never fire (`H_jj = 0`) get `H_jj = 1` and their column of `W` is zeroed,
//! as in the reference implementation.

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::prune::hessian::Hessian;
use crate::prune::linalg::{axpy, inverse_upper_cholesky};
use crate::prune::mask::{check_n_of_m, Mask, Matrix, Selection};
use crate::prune::Pruner;

/// Default dampening λ: `λ · mean(diag H)` is added to the diagonal of `H`.
pub const DEFAULT_DAMPING: f64 = 0.01;

/// Default number of columns whose mask is chosen together and whose updates to the
/// remaining columns are applied as one matrix product.
pub const DEFAULT_BLOCK_SIZE: usize = 128;

pub struct SparseGpt {
    pub damping: f64,
    pub block_size: usize,
}

impl Default for SparseGpt {
    fn default() -> Self {
        Self {
            damping: DEFAULT_DAMPING,
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

/// Rule for choosing the mask.
enum MaskRule<'a> {
    /// `n_pruned` weights of the matrix. Each block gets its share, so after the block that
    /// ends at column `c` exactly `round(n_pruned · c / cols)` weights are pruned.
    Budget { n_pruned: usize },
    /// `n` kept of every `m` consecutive inputs of each row.
    NOfM { n: usize, m: usize },
    /// A mask chosen beforehand; only the weights are updated.
    Fixed(&'a Mask),
}

impl SparseGpt {
    /// Prunes `weight` with a fixed mask, updating the kept weights to compensate.
    pub fn prune_with_mask(
        &self,
        weight: &mut Matrix,
        hessian: &Hessian,
        mask: &Mask,
    ) -> Result<Mask> {
        if (mask.rows, mask.cols) != (weight.rows, weight.cols) {
            return Err(Error::invalid_argument(
                "mask",
                format!(
                    "shape {} × {} differs from the weight's {} × {}",
                    mask.rows, mask.cols, weight.rows, weight.cols
                ),
            ));
        }
        self.run(weight, hessian, MaskRule::Fixed(mask))
    }

    fn check(&self) -> Result<()> {
        if !(self.damping.is_finite() && self.damping >= 0.0) {
            return Err(Error::invalid_argument(
                "damping",
                format!("must be a finite number >= 0, got {}", self.damping),
            ));
        }
        if self.block_size == 0 {
            return Err(Error::invalid_argument(
                "block size",
                "must be at least 1, got 0",
            ));
        }
        Ok(())
    }

    /// Returns `U`, the upper Cholesky factor of the damped `H⁻¹`, after marking dead inputs
    /// and zeroing their columns in `w`.
    fn inverse_factor(&self, hessian: &Hessian, w: &mut [f64], rows: usize) -> Result<Vec<f64>> {
        let n = hessian.n;
        let mut h = hessian.data.clone();
        for j in 0..n {
            if h[j * n + j] == 0.0 {
                h[j * n + j] = 1.0;
                for r in 0..rows {
                    w[r * n + j] = 0.0;
                }
            }
        }
        let mean_diagonal = (0..n).map(|j| h[j * n + j]).sum::<f64>() / n as f64;
        for j in 0..n {
            h[j * n + j] += self.damping * mean_diagonal;
        }
        inverse_upper_cholesky(&h, n).map_err(|e| {
            Error::invalid_argument(
                "hessian",
                format!("{e}; increase the damping (now {})", self.damping),
            )
        })
    }

    fn run(&self, weight: &mut Matrix, hessian: &Hessian, rule: MaskRule) -> Result<Mask> {
        self.check()?;
        let (rows, cols) = (weight.rows, weight.cols);
        if hessian.n != cols {
            return Err(Error::invalid_argument(
                "hessian",
                format!(
                    "{} × {} for a matrix with {cols} inputs",
                    hessian.n, hessian.n
                ),
            ));
        }
        let mut w: Vec<f64> = weight.data.iter().map(|&x| x as f64).collect();
        let u = self.inverse_factor(hessian, &mut w, rows)?;
        let u_tensor = Tensor::from_slice(&u, (cols, cols), &Device::Cpu)?;
        let block_size = match rule {
            // Blocks hold whole groups, so a group's mask is chosen from values that already
            // include the updates of every column to its left.
            MaskRule::NOfM { m, .. } => (self.block_size / m).max(1) * m,
            _ => self.block_size,
        };
        let mut kept = match rule {
            MaskRule::Fixed(mask) => mask.kept.clone(),
            _ => vec![true; rows * cols],
        };
        let saliency =
            |value: f64, j: usize| -> f64 { value * value / (u[j * cols + j] * u[j * cols + j]) };

        let mut n_pruned_so_far = 0usize;
        for i1 in (0..cols).step_by(block_size) {
            let i2 = (i1 + block_size).min(cols);
            let count = i2 - i1;

            // Unstructured: this block's mask, from the saliency of its current values.
            if let MaskRule::Budget { n_pruned } = rule {
                let target =
                    ((n_pruned as u128 * i2 as u128 + cols as u128 / 2) / cols as u128) as usize;
                let k = target - n_pruned_so_far;
                let mut order: Vec<(f64, usize, usize)> = Vec::with_capacity(rows * count);
                for r in 0..rows {
                    for j in i1..i2 {
                        order.push((saliency(w[r * cols + j], j), r, j));
                    }
                }
                if k > 0 {
                    let by_saliency = |a: &(f64, usize, usize), b: &(f64, usize, usize)| {
                        a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2)))
                    };
                    if k < order.len() {
                        order.select_nth_unstable_by(k - 1, by_saliency);
                    }
                    for &(_, r, j) in &order[..k] {
                        kept[r * cols + j] = false;
                    }
                }
                n_pruned_so_far += k;
            }

            // Fix the block's columns one at a time, row by row; err holds each column's
            // scaled error (w_i − q_i) / U_ii.
            let mut err = vec![0.0; rows * count]; // (rows, count)
            for r in 0..rows {
                let row = &mut w[r * cols..(r + 1) * cols];
                for i in i1..i2 {
                    if let MaskRule::NOfM { n, m } = rule {
                        if (i - i1) % m == 0 {
                            let mut group: Vec<(f64, usize)> =
                                (i..i + m).map(|j| (saliency(row[j], j), j)).collect();
                            group.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                            for &(_, j) in &group[..m - n] {
                                kept[r * cols + j] = false;
                            }
                        }
                    }
                    let q = if kept[r * cols + i] { row[i] } else { 0.0 };
                    let e = (row[i] - q) / u[i * cols + i];
                    row[i] = q;
                    if e != 0.0 {
                        axpy(-e, &u[i * cols + i + 1..i * cols + i2], &mut row[i + 1..i2]);
                    }
                    err[r * count + (i - i1)] = e;
                }
            }

            // Spread the block's errors over the columns to its right: W[:, i2:] -= E U[i1:i2, i2:].
            if i2 < cols {
                let e = Tensor::from_vec(err, (rows, count), &Device::Cpu)?;
                let u_block = u_tensor
                    .narrow(0, i1, count)?
                    .narrow(1, i2, cols - i2)?
                    .contiguous()?; // (count, cols - i2)
                let delta = e.matmul(&u_block)?.flatten_all()?.to_vec1::<f64>()?; // (rows, cols - i2)
                let tail = cols - i2;
                for r in 0..rows {
                    for (x, d) in w[r * cols + i2..(r + 1) * cols]
                        .iter_mut()
                        .zip(&delta[r * tail..(r + 1) * tail])
                    {
                        *x -= d;
                    }
                }
            }
        }

        for (dst, &src) in weight.data.iter_mut().zip(&w) {
            *dst = src as f32;
        }
        Ok(Mask { rows, cols, kept })
    }
}

impl Pruner for SparseGpt {
    /// Returns the OBS saliency `W_ij² / U_jj²` of every weight before any update.
    fn score(&self, weight: &Matrix, hessian: Option<&Hessian>) -> Result<Vec<f32>> {
        self.check()?;
        let hessian = hessian.ok_or_else(|| {
            Error::invalid_argument("calibration data", "SparseGPT needs calibration inputs")
        })?;
        let mut w: Vec<f64> = weight.data.iter().map(|&x| x as f64).collect();
        let u = self.inverse_factor(hessian, &mut w, weight.rows)?;
        let n = weight.cols;
        Ok(w.iter()
            .enumerate()
            .map(|(k, x)| (x * x / (u[(k % n) * n + k % n].powi(2))) as f32)
            .collect())
    }

    fn prune(
        &self,
        weight: &mut Matrix,
        hessian: Option<&Hessian>,
        selection: &Selection,
    ) -> Result<Mask> {
        let hessian = hessian.ok_or_else(|| {
            Error::invalid_argument("calibration data", "SparseGPT needs calibration inputs")
        })?;
        let rule = match *selection {
            Selection::PerMatrix { n_pruned } => {
                if n_pruned > weight.rows * weight.cols {
                    return Err(Error::invalid_argument(
                        "selection",
                        format!("budget of {n_pruned} exceeds the {} weights", weight.rows * weight.cols),
                    ));
                }
                MaskRule::Budget { n_pruned }
            }
            Selection::NOfM { n, m } => {
                check_n_of_m(n, m, weight.cols)?;
                MaskRule::NOfM { n, m }
            }
            other => {
                return Err(Error::invalid_argument(
                    "selection",
                    format!("SparseGPT chooses its mask per block of columns, so it takes a per-matrix budget or N:M, not {other:?}"),
                ))
            }
        };
        self.run(weight, hessian, rule)
    }
}
