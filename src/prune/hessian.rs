//! Second moments of a weight matrix's calibration inputs, and the reconstruction error they
//! give.

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::prune::mask::Matrix;

/// `H = Xᵀ X` summed over the calibration tokens that reach one weight matrix, where `X` is
/// `(n_tokens, in_features)`. Shape `(n, n)` with `n = in_features`, row-major. It is a sum,
/// not a mean: SparseGPT's updates and Wanda's rankings do not change with its scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Hessian {
    pub n: usize,
    pub data: Vec<f64>,
    pub n_tokens: usize,
}

impl Hessian {
    pub fn new(n: usize) -> Self {
        Self {
            n,
            data: vec![0.0; n * n],
            n_tokens: 0,
        }
    }

    /// Adds the tokens of `x`, shape `(..., n)` (for example `(batch, seq, n)`).
    pub fn accumulate(&mut self, x: &Tensor) -> Result<()> {
        let width = x.dim(candle_core::D::Minus1)?;
        if width != self.n {
            return Err(Error::invalid_argument(
                "calibration input",
                format!("width {width}, expected {}", self.n),
            ));
        }
        let x = x.reshape(((), width))?.to_dtype(DType::F32)?; // (n_tokens, n)
        let n_tokens = x.dim(0)?;
        let product = x
            .t()?
            .matmul(&x)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?; // (n, n)
        for (h, p) in self.data.iter_mut().zip(product) {
            *h += p;
        }
        self.n_tokens += n_tokens;
        Ok(())
    }

    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.n).map(|j| self.data[j * self.n + j]).collect()
    }

    /// `‖X_j‖₂` for every input feature `j`: the square roots of the diagonal.
    pub fn input_norms(&self) -> Vec<f64> {
        self.diagonal()
            .into_iter()
            .map(|d| d.max(0.0).sqrt())
            .collect()
    }

    fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.data,
            (self.n, self.n),
            &Device::Cpu,
        )?)
    }
}

/// Returns `‖W Xᵀ − Ŵ Xᵀ‖_F / ‖W Xᵀ‖_F` on the calibration inputs summarized by `h`, computed
/// as `sqrt(tr(D H Dᵀ) / tr(W H Wᵀ))` with `D = W − Ŵ`, in float64. Returns 0 when both
/// traces are 0 (no signal reaches the matrix and nothing changed).
pub fn reconstruction_error(original: &Matrix, pruned: &Matrix, h: &Hessian) -> Result<f64> {
    if (original.rows, original.cols) != (pruned.rows, pruned.cols) || original.cols != h.n {
        return Err(Error::invalid_argument(
            "reconstruction error",
            format!(
                "shapes differ: original {} × {}, pruned {} × {}, Hessian {} × {}",
                original.rows, original.cols, pruned.rows, pruned.cols, h.n, h.n
            ),
        ));
    }
    let h = h.to_tensor()?;
    let quadratic_form = |values: Vec<f64>| -> Result<f64> {
        let m = Tensor::from_vec(values, (original.rows, original.cols), &Device::Cpu)?; // (rows, n)
        Ok(m.matmul(&h)?.mul(&m)?.sum_all()?.to_scalar::<f64>()?)
    };
    let difference: Vec<f64> = original
        .data
        .iter()
        .zip(&pruned.data)
        .map(|(&a, &b)| a as f64 - b as f64)
        .collect();
    let numerator = quadratic_form(difference)?.max(0.0);
    let denominator = quadratic_form(original.data.iter().map(|&a| a as f64).collect())?;
    if denominator <= 0.0 {
        return Ok(if numerator == 0.0 { 0.0 } else { f64::INFINITY });
    }
    Ok((numerator / denominator).sqrt())
}
