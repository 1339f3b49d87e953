//! Dense float64 linear algebra for SparseGPT: Cholesky factorization and the upper
//! Cholesky factor of an inverse. Matrices are `n × n`, row-major.

use crate::error::{Error, Result};

/// Returns the lower Cholesky factor `L` of a symmetric positive definite `a` (`a = L Lᵀ`).
/// Only the lower triangle of `a` is read. Fails at the first pivot that is not positive.
pub fn cholesky_lower(a: &[f64], n: usize) -> Result<Vec<f64>> {
    assert_eq!(a.len(), n * n, "cholesky_lower: a is not {n} × {n}");
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s = dot(&l[i * n..i * n + j], &l[j * n..j * n + j]);
            if i == j {
                let pivot = a[i * n + i] - s;
                if !(pivot > 0.0 && pivot.is_finite()) {
                    return Err(Error::invalid_argument(
                        "hessian",
                        format!("not positive definite: Cholesky pivot {i} is {pivot:e}"),
                    ));
                }
                l[i * n + i] = pivot.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    Ok(l)
}

/// Returns `L⁻¹` for a lower triangular `l` with a nonzero diagonal.
pub fn invert_lower(l: &[f64], n: usize) -> Vec<f64> {
    assert_eq!(l.len(), n * n, "invert_lower: l is not {n} × {n}");
    let mut x = vec![0.0; n * n];
    // Row i of L X = I: X[i, ..=i] = (e_i - sum_{k<i} L[i, k] X[k, ..=k]) / L[i, i].
    let mut row = vec![0.0; n];
    for i in 0..n {
        row[..=i].fill(0.0);
        row[i] = 1.0;
        for k in 0..i {
            let factor = l[i * n + k];
            if factor != 0.0 {
                axpy(-factor, &x[k * n..k * n + k + 1], &mut row[..k + 1]);
            }
        }
        let inv_diag = 1.0 / l[i * n + i];
        for (dst, src) in x[i * n..i * n + i + 1].iter_mut().zip(&row[..=i]) {
            *dst = src * inv_diag;
        }
    }
    x
}

/// Returns the upper triangular `U` with `Uᵀ U = a⁻¹`, for a symmetric positive definite `a`.
///
/// With `J` the reversal permutation and `J a J = L Lᵀ`, `a = (J L J)(J L J)ᵀ` where `J L J`
/// is upper triangular, so `U = (J L J)⁻¹ = J L⁻¹ J`. This costs one Cholesky
/// factorization and one triangular inverse, and never forms `a⁻¹`.
pub fn inverse_upper_cholesky(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let reversed = reverse(a, n);
    let l = cholesky_lower(&reversed, n)?;
    Ok(reverse(&invert_lower(&l, n), n))
}

/// Returns `J a J`: rows and columns in reverse order.
fn reverse(a: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            out[(n - 1 - i) * n + (n - 1 - j)] = a[i * n + j];
        }
    }
    out
}

/// Dot product with four partial sums, which lets the compiler vectorize it.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut sums = [0.0; 4];
    let chunks_a = a.chunks_exact(4);
    let chunks_b = b.chunks_exact(4);
    let tail: f64 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for k in 0..4 {
            sums[k] += x[k] * y[k];
        }
    }
    sums[0] + sums[1] + sums[2] + sums[3] + tail
}

/// `y += alpha * x`.
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a symmetric positive definite matrix, B Bᵀ + n I for a fixed pseudo-random B.
    fn spd(n: usize) -> Vec<f64> {
        let b: Vec<f64> = (0..n * n)
            .map(|k| ((k * 7919 % 104_729) as f64 / 104_729.0) - 0.5)
            .collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| b[i * n + k] * b[j * n + k]).sum::<f64>()
                    + if i == j { n as f64 } else { 0.0 };
            }
        }
        a
    }

    fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        let mut c = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                c[i * n + j] = (0..n).map(|k| a[i * n + k] * b[k * n + j]).sum();
            }
        }
        c
    }

    fn transpose(a: &[f64], n: usize) -> Vec<f64> {
        let mut t = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                t[j * n + i] = a[i * n + j];
            }
        }
        t
    }

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn cholesky_reconstructs_matrix() {
        let n = 37;
        let a = spd(n);
        let l = cholesky_lower(&a, n).unwrap();
        for i in 0..n {
            for j in i + 1..n {
                assert_eq!(l[i * n + j], 0.0, "L[{i}, {j}] above the diagonal");
            }
        }
        let diff = max_abs_diff(&matmul(&l, &transpose(&l, n), n), &a);
        assert!(diff < 1e-10, "L Lᵀ differs from a by {diff}");
    }

    #[test]
    fn lower_inverse_is_inverse() {
        let n = 29;
        let l = cholesky_lower(&spd(n), n).unwrap();
        let x = invert_lower(&l, n);
        let identity: Vec<f64> = (0..n * n)
            .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
            .collect();
        let diff = max_abs_diff(&matmul(&l, &x, n), &identity);
        assert!(diff < 1e-12, "L L⁻¹ differs from I by {diff}");
    }

    #[test]
    fn inverse_upper_cholesky_factors_inverse() {
        let n = 41;
        let a = spd(n);
        let u = inverse_upper_cholesky(&a, n).unwrap();
        for i in 0..n {
            for j in 0..i {
                assert_eq!(u[i * n + j], 0.0, "U[{i}, {j}] below the diagonal");
            }
        }
        // (Uᵀ U) a = I.
        let product = matmul(&matmul(&transpose(&u, n), &u, n), &a, n);
        let identity: Vec<f64> = (0..n * n)
            .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
            .collect();
        let diff = max_abs_diff(&product, &identity);
        assert!(diff < 1e-10, "Uᵀ U a differs from I by {diff}");
    }

    #[test]
    fn cholesky_rejects_indefinite_matrix() {
        let a = [1.0, 2.0, 2.0, 1.0];
        let err = cholesky_lower(&a, 2).unwrap_err().to_string();
        assert!(
            err.contains("not positive definite: Cholesky pivot 1"),
            "{err}"
        );
    }
}
