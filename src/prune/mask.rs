//! Weight matrices, masks (true = kept), and the selection of the weights to prune from
//! importance scores.

use candle_core::{Device, Tensor, Var};

use crate::error::{Error, Result};

/// A weight matrix in row-major order, shape `(rows, cols)` = `(out_features, in_features)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(Error::invalid_argument(
                "matrix",
                format!("{} values do not fill {rows} × {cols}", data.len()),
            ));
        }
        Ok(Self { rows, cols, data })
    }

    /// Copies a 2-D F32 tensor or variable.
    pub fn from_tensor(tensor: &Tensor) -> Result<Self> {
        let (rows, cols) = tensor.dims2()?;
        let data = tensor.flatten_all()?.to_vec1::<f32>()?;
        Ok(Self { rows, cols, data })
    }

    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.data,
            (self.rows, self.cols),
            &Device::Cpu,
        )?)
    }

    /// Writes the values into `var`, which must have the same shape.
    pub fn store(&self, var: &Var) -> Result<()> {
        Ok(var.set(&self.to_tensor()?)?)
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn n_zeros(&self) -> usize {
        self.data.iter().filter(|&&x| x == 0.0).count()
    }
}

/// Keep flags of a matrix's weights: `kept[r * cols + c]` is true when weight `(r, c)` stays
/// and false when it is pruned (set to zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub rows: usize,
    pub cols: usize,
    pub kept: Vec<bool>,
}

impl Mask {
    pub fn all_kept(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            kept: vec![true; rows * cols],
        }
    }

    /// Returns the mask of the nonzero weights of `matrix`.
    pub fn of_nonzeros(matrix: &Matrix) -> Self {
        Self {
            rows: matrix.rows,
            cols: matrix.cols,
            kept: matrix.data.iter().map(|&x| x != 0.0).collect(),
        }
    }

    pub fn row(&self, r: usize) -> &[bool] {
        &self.kept[r * self.cols..(r + 1) * self.cols]
    }

    pub fn n_kept(&self) -> usize {
        self.kept.iter().filter(|&&k| k).count()
    }

    pub fn n_pruned(&self) -> usize {
        self.kept.len() - self.n_kept()
    }

    /// Fraction of weights the mask prunes.
    pub fn sparsity(&self) -> f64 {
        if self.kept.is_empty() {
            return 0.0;
        }
        self.n_pruned() as f64 / self.kept.len() as f64
    }
}

/// Zeroes the weights that `mask` prunes.
pub fn apply(weight: &mut Matrix, mask: &Mask) -> Result<()> {
    if (mask.rows, mask.cols) != (weight.rows, weight.cols) {
        return Err(Error::invalid_argument(
            "mask",
            format!(
                "shape {} × {} differs from the weight's {} × {}",
                mask.rows, mask.cols, weight.rows, weight.cols
            ),
        ));
    }
    for (w, &keep) in weight.data.iter_mut().zip(&mask.kept) {
        if !keep {
            *w = 0.0;
        }
    }
    Ok(())
}

/// How many weights to prune, and among which weights their scores compete.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selection {
    /// The `n_pruned` lowest scores of each row.
    PerRow { n_pruned: usize },
    /// The `n_pruned` lowest scores of the whole matrix.
    PerMatrix { n_pruned: usize },
    /// In each row, every group of `m` consecutive columns (starting at column 0) keeps its
    /// `n` highest scores.
    NOfM { n: usize, m: usize },
    /// Every score below `value`, plus the first `n_ties_pruned` scores equal to `value` in
    /// row-major order. A threshold shared by several matrices gives global selection.
    Threshold { value: f32, n_ties_pruned: usize },
}

/// Chooses the weights to prune from `scores` (row-major `(rows, cols)`, higher = more
/// important). Equal scores are pruned in row-major order, so the result is deterministic.
pub fn select(scores: &[f32], rows: usize, cols: usize, selection: &Selection) -> Result<Mask> {
    if scores.len() != rows * cols {
        return Err(Error::invalid_argument(
            "scores",
            format!("{} values do not fill {rows} × {cols}", scores.len()),
        ));
    }
    let mut mask = Mask::all_kept(rows, cols);
    match *selection {
        Selection::PerRow { n_pruned } => {
            check_count(n_pruned, cols, "per-row")?;
            for r in 0..rows {
                prune_lowest(
                    &scores[r * cols..(r + 1) * cols],
                    n_pruned,
                    &mut mask.kept[r * cols..(r + 1) * cols],
                );
            }
        }
        Selection::PerMatrix { n_pruned } => {
            check_count(n_pruned, rows * cols, "per-matrix")?;
            prune_lowest(scores, n_pruned, &mut mask.kept);
        }
        Selection::NOfM { n, m } => {
            check_n_of_m(n, m, cols)?;
            for r in 0..rows {
                for start in (0..cols).step_by(m) {
                    let range = r * cols + start..r * cols + start + m;
                    prune_lowest(&scores[range.clone()], m - n, &mut mask.kept[range]);
                }
            }
        }
        Selection::Threshold {
            value,
            n_ties_pruned,
        } => {
            let mut ties_left = n_ties_pruned;
            for (keep, &s) in mask.kept.iter_mut().zip(scores) {
                if s.total_cmp(&value).is_lt() {
                    *keep = false;
                } else if s == value && ties_left > 0 {
                    *keep = false;
                    ties_left -= 1;
                }
            }
            if ties_left > 0 {
                return Err(Error::invalid_argument(
                    "threshold",
                    format!("{n_ties_pruned} ties to prune at score {value}, but only {} scores equal it", n_ties_pruned - ties_left),
                ));
            }
        }
    }
    Ok(mask)
}

/// Checks an N:M pattern (N kept of every M consecutive inputs) against a row width.
pub fn check_n_of_m(n: usize, m: usize, cols: usize) -> Result<()> {
    if n == 0 || n >= m {
        return Err(Error::invalid_argument(
            "pattern",
            format!("N:M needs 1 <= N < M, got {n}:{m}"),
        ));
    }
    if cols % m != 0 {
        return Err(Error::invalid_argument(
            "pattern",
            format!("M = {m} does not divide the input width {cols}; N:M groups of M inputs must tile each row"),
        ));
    }
    Ok(())
}

fn check_count(n_pruned: usize, n: usize, what: &str) -> Result<()> {
    if n_pruned > n {
        return Err(Error::invalid_argument(
            "selection",
            format!("{what} budget of {n_pruned} exceeds the {n} weights"),
        ));
    }
    Ok(())
}

/// Marks the `k` lowest of `scores` as pruned in `kept` (ties: lower index first).
fn prune_lowest(scores: &[f32], k: usize, kept: &mut [bool]) {
    if k == 0 {
        return;
    }
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    let by_score = |a: &u32, b: &u32| {
        scores[*a as usize]
            .total_cmp(&scores[*b as usize])
            .then(a.cmp(b))
    };
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, by_score);
    }
    for &i in &order[..k] {
        kept[i as usize] = false;
    }
}

/// Returns the `k`-th lowest score (1-based) across several score lists and how many of the
/// `k` lowest are equal to it, so `Selection::Threshold` prunes exactly `k` weights in total.
/// Returns `None` for `k == 0`.
pub fn global_threshold(scores: &[&[f32]], k: usize) -> Result<Option<(f32, usize)>> {
    let total: usize = scores.iter().map(|s| s.len()).sum();
    if k > total {
        return Err(Error::invalid_argument(
            "selection",
            format!("global budget of {k} exceeds the {total} weights"),
        ));
    }
    if k == 0 {
        return Ok(None);
    }
    let mut all: Vec<f32> = Vec::with_capacity(total);
    for s in scores {
        all.extend_from_slice(s);
    }
    let (_, &mut value, _) = all.select_nth_unstable_by(k - 1, |a, b| a.total_cmp(b));
    let n_below = all.iter().filter(|s| s.total_cmp(&value).is_lt()).count();
    Ok(Some((value, k - n_below)))
}
