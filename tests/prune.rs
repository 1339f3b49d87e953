//! Pruning methods and the layer-by-layer driver against naive references and exact
//! invariants.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use candle_core::{Device, Tensor};
use prunechat::data::{calibration_windows, load_corpus, select_split, tokenize_corpus, Split};
use prunechat::model::dense::{DenseModel, LinearKind};
use prunechat::prune::magnitude::Magnitude;
use prunechat::prune::mask::{global_threshold, select};
use prunechat::prune::sparsegpt::SparseGpt;
use prunechat::prune::wanda::Wanda;
use prunechat::prune::{
    prune_model, reconstruction_error, Hessian, Mask, Matrix, Method, Pattern, PruneConfig,
    PruneOutcome, Pruner, Scope, Selection,
};
use prunechat::synthetic::{tiny_llama, TinySpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Uniform values in [-1, -0.01] ∪ [0.01, 1], so no weight starts at zero.
fn random_matrix(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..rows * cols)
        .map(|_| {
            let magnitude: f32 = rng.random_range(0.01..1.0);
            if rng.random_bool(0.5) {
                magnitude
            } else {
                -magnitude
            }
        })
        .collect();
    Matrix::new(rows, cols, data).unwrap()
}

/// Correlated inputs `X = Z A`, `(n_tokens, n)` row-major, with uneven feature scales.
fn random_inputs(n_tokens: usize, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let z: Vec<f64> = (0..n_tokens * n)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let a: Vec<f64> = (0..n * n)
        .map(|k| {
            if k / n == k % n {
                1.0 + (k % n) as f64 * 0.3
            } else {
                rng.random_range(-0.5..0.5)
            }
        })
        .collect();
    let mut x = vec![0.0; n_tokens * n];
    for t in 0..n_tokens {
        for j in 0..n {
            x[t * n + j] = (0..n).map(|k| z[t * n + k] * a[k * n + j]).sum();
        }
    }
    x
}

/// `XᵀX` computed naively, as a `Hessian`.
fn naive_hessian(x: &[f64], n_tokens: usize, n: usize) -> Hessian {
    let mut h = Hessian::new(n);
    for i in 0..n {
        for j in 0..n {
            h.data[i * n + j] = (0..n_tokens).map(|t| x[t * n + i] * x[t * n + j]).sum();
        }
    }
    h.n_tokens = n_tokens;
    h
}

fn damped(h: &Hessian, damping: f64) -> Vec<f64> {
    let n = h.n;
    let mean = (0..n).map(|j| h.data[j * n + j]).sum::<f64>() / n as f64;
    let mut out = h.data.clone();
    for j in 0..n {
        out[j * n + j] += damping * mean;
    }
    out
}

/// Solves `a x = b` (`a` is `n × n`) by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Vec<f64> {
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .unwrap();
        for k in 0..n {
            a.swap(col * n + k, pivot * n + k);
        }
        b.swap(col, pivot);
        for row in col + 1..n {
            let factor = a[row * n + col] / a[col * n + col];
            for k in col..n {
                a[row * n + k] -= factor * a[col * n + k];
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row * n + k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row * n + row];
    }
    x
}

/// Prunes one row by sequential OBS with a fixed mask, solved directly. At column `i`, the
/// unfixed weights `i..n` take their least-squares optimum given the fixed ones `0..i`:
/// `ŵ_R = w_R + H_RR⁻¹ H_RF (w_F − q_F)`. Column `i` is then fixed to that value when kept,
/// or to zero when pruned.
fn sequential_obs_reference(w: &[f64], h: &[f64], kept: &[bool]) -> Vec<f64> {
    let n = w.len();
    let mut q = vec![0.0; n];
    for i in 0..n {
        let r: Vec<usize> = (i..n).collect();
        let h_rr: Vec<f64> = r
            .iter()
            .flat_map(|&a| r.iter().map(|&b| h[a * n + b]).collect::<Vec<_>>())
            .collect();
        let rhs: Vec<f64> = r
            .iter()
            .map(|&a| (0..i).map(|f| h[a * n + f] * (w[f] - q[f])).sum())
            .collect();
        let correction = solve(h_rr, rhs, r.len());
        let optimum = w[i] + correction[0];
        q[i] = if kept[i] { optimum } else { 0.0 };
    }
    q
}

fn tiny_model(seed: u64) -> DenseModel {
    DenseModel::from_gguf(
        &tiny_llama(&TinySpec {
            seed,
            ..TinySpec::default()
        })
        .unwrap(),
    )
    .unwrap()
}

fn tiny_calibration(n_samples: usize, seq_len: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n_samples)
        .map(|_| (0..seq_len).map(|_| rng.random_range(3..259)).collect())
        .collect()
}

fn config(method: Method, pattern: Pattern) -> PruneConfig {
    PruneConfig {
        method,
        pattern,
        ..PruneConfig::default()
    }
}

fn run(model: &mut DenseModel, calibration: &[Vec<u32>], config: &PruneConfig) -> PruneOutcome {
    prune_model(model, calibration, config, None, &mut |_, _| {}).unwrap()
}

fn weights(model: &DenseModel, l: usize, kind: LinearKind) -> Matrix {
    Matrix::from_tensor(model.layers[l].linear(kind).as_tensor()).unwrap()
}

#[test]
fn magnitude_keeps_largest_per_row() {
    let mut w = random_matrix(7, 40, 1);
    let original = w.clone();
    let mask = Magnitude
        .prune(&mut w, None, &Selection::PerRow { n_pruned: 15 })
        .unwrap();
    for r in 0..7 {
        let kept = mask.row(r);
        assert_eq!(kept.iter().filter(|&&k| !k).count(), 15, "row {r}");
        let min_kept = (0..40)
            .filter(|&c| kept[c])
            .map(|c| original.row(r)[c].abs())
            .fold(f32::INFINITY, f32::min);
        let max_pruned = (0..40)
            .filter(|&c| !kept[c])
            .map(|c| original.row(r)[c].abs())
            .fold(0.0, f32::max);
        assert!(
            min_kept >= max_pruned,
            "row {r}: kept {min_kept} < pruned {max_pruned}"
        );
        for c in 0..40 {
            let expected = if kept[c] { original.row(r)[c] } else { 0.0 };
            assert_eq!(w.row(r)[c], expected, "row {r}, column {c}");
        }
    }
}

#[test]
fn magnitude_keeps_largest_per_matrix() {
    let mut w = random_matrix(9, 24, 2);
    let original = w.clone();
    let mask = Magnitude
        .prune(&mut w, None, &Selection::PerMatrix { n_pruned: 100 })
        .unwrap();
    assert_eq!(mask.n_pruned(), 100);
    assert_eq!(w.n_zeros(), 100);
    let mut magnitudes: Vec<f32> = original.data.iter().map(|x| x.abs()).collect();
    magnitudes.sort_by(f32::total_cmp);
    let threshold = magnitudes[100];
    for (k, &keep) in mask.kept.iter().enumerate() {
        assert_eq!(keep, original.data[k].abs() >= threshold, "weight {k}");
    }
}

#[test]
fn global_threshold_prunes_exact_count() {
    // Ties across matrices: every weight is 0.5 or 1, and 7 of the 0.5s must go.
    let a = vec![0.5f32, 1.0, 0.5, 0.5, 1.0, 0.5];
    let b = vec![1.0f32, 0.5, 0.5, 0.5, 0.5, 1.0];
    let (value, ties) = global_threshold(&[&a, &b], 7).unwrap().unwrap();
    assert_eq!(value, 0.5);
    assert_eq!(ties, 7);
    let mask_a = select(
        &a,
        2,
        3,
        &Selection::Threshold {
            value,
            n_ties_pruned: 4,
        },
    )
    .unwrap();
    let mask_b = select(
        &b,
        2,
        3,
        &Selection::Threshold {
            value,
            n_ties_pruned: 3,
        },
    )
    .unwrap();
    assert_eq!(mask_a.n_pruned() + mask_b.n_pruned(), 7);
    assert_eq!(mask_b.kept, vec![true, false, false, false, true, true]);
}

#[test]
fn global_magnitude_prunes_smallest_overall() {
    let mut model = tiny_model(3);
    let before: Vec<Matrix> = (0..2)
        .flat_map(|l| {
            LinearKind::ALL
                .map(|k| Matrix::from_tensor(model.layers[l].linear(k).as_tensor()).unwrap())
        })
        .collect();
    let config = PruneConfig {
        scope: Some(Scope::Global),
        ..config(Method::Magnitude, Pattern::Unstructured { sparsity: 0.4 })
    };
    let outcome = run(&mut model, &[], &config);

    let total: usize = before.iter().map(|m| m.data.len()).sum();
    let pruned: usize = outcome.masks.iter().map(|m| m.mask.n_pruned()).sum();
    assert_eq!(pruned, (0.4 * total as f64).round() as usize);
    let mut min_kept = f32::INFINITY;
    let mut max_pruned = 0.0f32;
    for (matrix, tensor_mask) in before.iter().zip(&outcome.masks) {
        for (w, &keep) in matrix.data.iter().zip(&tensor_mask.mask.kept) {
            if keep {
                min_kept = min_kept.min(w.abs());
            } else {
                max_pruned = max_pruned.max(w.abs());
            }
        }
    }
    assert!(
        min_kept >= max_pruned,
        "a kept weight {min_kept} is smaller than a pruned one {max_pruned}"
    );
    // Global selection lets matrices end up with different sparsities.
    let sparsities: Vec<f64> = outcome
        .report
        .matrices()
        .map(|m| m.achieved_sparsity)
        .collect();
    assert!(
        sparsities.iter().any(|&s| (s - 0.4).abs() > 0.01),
        "{sparsities:?}"
    );
    assert!(
        outcome
            .report
            .matrices()
            .all(|m| m.reconstruction_error.is_none()),
        "no calibration, no error"
    );
}

#[test]
fn wanda_scores_match_naive() {
    let (n_tokens, n) = (50, 16);
    let x = random_inputs(n_tokens, n, 4);
    let w = random_matrix(5, n, 5);
    let mut hessian = Hessian::new(n);
    let input = Tensor::from_vec(
        x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        (2, n_tokens / 2, n),
        &Device::Cpu,
    )
    .unwrap();
    hessian.accumulate(&input).unwrap();
    assert_eq!(hessian.n_tokens, n_tokens);

    let scores = Wanda.score(&w, Some(&hessian)).unwrap();
    for r in 0..5 {
        for j in 0..n {
            let norm = (0..n_tokens)
                .map(|t| x[t * n + j] * x[t * n + j])
                .sum::<f64>()
                .sqrt();
            let naive = w.row(r)[j].abs() as f64 * norm;
            let got = scores[r * n + j] as f64;
            assert!(
                (got - naive).abs() <= 1e-5 * naive,
                "score ({r}, {j}) = {got}, naive {naive}"
            );
        }
    }
}

#[test]
fn wanda_prunes_lowest_scores_per_row() {
    let (n_tokens, n) = (40, 24);
    let x = random_inputs(n_tokens, n, 6);
    let hessian = naive_hessian(&x, n_tokens, n);
    let mut w = random_matrix(6, n, 7);
    let scores = Wanda.score(&w, Some(&hessian)).unwrap();
    let mask = Wanda
        .prune(&mut w, Some(&hessian), &Selection::PerRow { n_pruned: 12 })
        .unwrap();
    for r in 0..6 {
        let row_scores = &scores[r * n..(r + 1) * n];
        let kept = mask.row(r);
        assert_eq!(kept.iter().filter(|&&k| !k).count(), 12, "row {r}");
        let min_kept = (0..n)
            .filter(|&c| kept[c])
            .map(|c| row_scores[c])
            .fold(f32::INFINITY, f32::min);
        let max_pruned = (0..n)
            .filter(|&c| !kept[c])
            .map(|c| row_scores[c])
            .fold(0.0, f32::max);
        assert!(min_kept >= max_pruned, "row {r}");
    }
}

#[test]
fn n_of_m_holds_in_every_group() {
    let (n_tokens, cols) = (64, 48);
    let hessian = naive_hessian(&random_inputs(n_tokens, cols, 8), n_tokens, cols);
    let pruners: [(&str, Box<dyn Pruner>); 3] = [
        ("magnitude", Box::new(Magnitude)),
        ("wanda", Box::new(Wanda)),
        (
            "sparsegpt",
            Box::new(SparseGpt {
                damping: 0.01,
                block_size: 20,
            }),
        ),
    ];
    for (name, pruner) in &pruners {
        for (n, m) in [(2, 4), (4, 8), (1, 3), (5, 6)] {
            let mut w = random_matrix(5, cols, 9);
            let mask = pruner
                .prune(&mut w, Some(&hessian), &Selection::NOfM { n, m })
                .unwrap();
            for r in 0..5 {
                for group in 0..cols / m {
                    let range = group * m..(group + 1) * m;
                    let kept = mask.row(r)[range.clone()].iter().filter(|&&k| k).count();
                    let nonzero = w.row(r)[range].iter().filter(|&&x| x != 0.0).count();
                    assert_eq!(
                        kept, n,
                        "{name} {n}:{m}: row {r}, group {group} keeps {kept}"
                    );
                    assert_eq!(
                        nonzero, n,
                        "{name} {n}:{m}: row {r}, group {group} has {nonzero} nonzeros"
                    );
                }
            }
        }
    }
}

#[test]
fn n_of_m_rejects_bad_patterns() {
    let mut w = random_matrix(2, 12, 10);
    for (n, m, expected) in [
        (4, 4, "1 <= N < M, got 4:4"),
        (0, 4, "got 0:4"),
        (2, 5, "M = 5 does not divide the input width 12"),
    ] {
        let err = Magnitude
            .prune(&mut w, None, &Selection::NOfM { n, m })
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{n}:{m}: {err}");
    }
}

#[test]
fn sparsegpt_matches_closed_form_optimum() {
    // With the pruned columns first, sequential OBS ends at the global optimum for the
    // mask, ŵ_R = w_R + H_RR⁻¹ H_RP w_P, which is solved here directly in float64.
    let (n_tokens, n, rows) = (80, 12, 3);
    let hessian = naive_hessian(&random_inputs(n_tokens, n, 11), n_tokens, n);
    let h = damped(&hessian, 0.01);
    let original = random_matrix(rows, n, 12);
    let pruned_columns = [0usize, 1, 2, 3, 4];
    let mut mask = Mask::all_kept(rows, n);
    for r in 0..rows {
        for &c in &pruned_columns {
            mask.kept[r * n + c] = false;
        }
    }
    for block_size in [4, 128] {
        let mut w = original.clone();
        SparseGpt {
            damping: 0.01,
            block_size,
        }
        .prune_with_mask(&mut w, &hessian, &mask)
        .unwrap();
        for r in 0..rows {
            let row: Vec<f64> = original.row(r).iter().map(|&x| x as f64).collect();
            let kept: Vec<usize> = (5..n).collect();
            let h_rr: Vec<f64> = kept
                .iter()
                .flat_map(|&a| kept.iter().map(|&b| h[a * n + b]).collect::<Vec<_>>())
                .collect();
            let rhs: Vec<f64> = kept
                .iter()
                .map(|&a| pruned_columns.iter().map(|&p| h[a * n + p] * row[p]).sum())
                .collect();
            let correction = solve(h_rr, rhs, kept.len());
            for (index, &c) in kept.iter().enumerate() {
                let expected = row[c] + correction[index];
                let got = w.row(r)[c] as f64;
                assert!(
                    (got - expected).abs() < 1e-5,
                    "block {block_size}, row {r}, column {c}: {got} vs {expected}"
                );
            }
            for &c in &pruned_columns {
                assert_eq!(w.row(r)[c], 0.0, "row {r}, column {c}");
            }
        }
    }
}

#[test]
fn sparsegpt_matches_sequential_reference() {
    let (n_tokens, n, rows) = (60, 10, 4);
    let hessian = naive_hessian(&random_inputs(n_tokens, n, 13), n_tokens, n);
    let h = damped(&hessian, 0.01);
    let original = random_matrix(rows, n, 14);
    let mut rng = StdRng::seed_from_u64(15);
    let mask = Mask {
        rows,
        cols: n,
        kept: (0..rows * n).map(|_| rng.random_bool(0.5)).collect(),
    };
    for block_size in [3, 128] {
        let mut w = original.clone();
        SparseGpt {
            damping: 0.01,
            block_size,
        }
        .prune_with_mask(&mut w, &hessian, &mask)
        .unwrap();
        for r in 0..rows {
            let row: Vec<f64> = original.row(r).iter().map(|&x| x as f64).collect();
            let expected = sequential_obs_reference(&row, &h, mask.row(r));
            for c in 0..n {
                let got = w.row(r)[c] as f64;
                assert!(
                    (got - expected[c]).abs() < 1e-5,
                    "block {block_size}, row {r}, column {c}: {got} vs {}",
                    expected[c]
                );
            }
        }
    }
}

#[test]
fn sparsegpt_budget_is_exact_per_block() {
    let (n_tokens, n, rows) = (64, 40, 6);
    let hessian = naive_hessian(&random_inputs(n_tokens, n, 16), n_tokens, n);
    let mut w = random_matrix(rows, n, 17);
    let mask = SparseGpt {
        damping: 0.01,
        block_size: 16,
    }
    .prune(
        &mut w,
        Some(&hessian),
        &Selection::PerMatrix { n_pruned: 131 },
    )
    .unwrap();
    assert_eq!(mask.n_pruned(), 131);
    assert_eq!(w.n_zeros(), 131);
    // After the block that ends at column c, round(131 · c / 40) weights are pruned.
    for end in [16, 32, 40] {
        let pruned = (0..rows)
            .map(|r| mask.row(r)[..end].iter().filter(|&&k| !k).count())
            .sum::<usize>();
        assert_eq!(
            pruned,
            (131.0 * end as f64 / 40.0).round() as usize,
            "columns 0..{end}"
        );
    }
}

#[test]
fn sparsegpt_zeroes_dead_inputs() {
    let (n_tokens, n) = (30, 8);
    let mut x = random_inputs(n_tokens, n, 18);
    for t in 0..n_tokens {
        x[t * n + 3] = 0.0;
    }
    let hessian = naive_hessian(&x, n_tokens, n);
    let mut w = random_matrix(3, n, 19);
    SparseGpt::default()
        .prune(
            &mut w,
            Some(&hessian),
            &Selection::PerMatrix { n_pruned: 6 },
        )
        .unwrap();
    for r in 0..3 {
        assert_eq!(w.row(r)[3], 0.0, "row {r}: the dead input's weight");
    }
}

#[test]
fn reconstruction_error_matches_direct_computation() {
    let (n_tokens, n) = (50, 12);
    let x = random_inputs(n_tokens, n, 20);
    let hessian = naive_hessian(&x, n_tokens, n);
    let original = random_matrix(4, n, 21);
    let mut pruned = original.clone();
    Magnitude
        .prune(&mut pruned, None, &Selection::PerRow { n_pruned: 6 })
        .unwrap();
    let output = |m: &Matrix, r: usize, t: usize| -> f64 {
        (0..n).map(|j| m.row(r)[j] as f64 * x[t * n + j]).sum()
    };
    let (mut difference, mut reference) = (0.0, 0.0);
    for r in 0..4 {
        for t in 0..n_tokens {
            difference += (output(&original, r, t) - output(&pruned, r, t)).powi(2);
            reference += output(&original, r, t).powi(2);
        }
    }
    let expected = (difference / reference).sqrt();
    let got = reconstruction_error(&original, &pruned, &hessian).unwrap();
    assert!((got - expected).abs() < 1e-9, "{got} vs {expected}");
}

#[test]
fn per_row_sparsity_is_exact_in_model() {
    for method in [Method::Magnitude, Method::Wanda] {
        for sparsity in [0.3, 0.5, 0.7] {
            let mut model = tiny_model(22);
            let config = PruneConfig {
                scope: Some(Scope::Row),
                ..config(method, Pattern::Unstructured { sparsity })
            };
            let outcome = run(&mut model, &tiny_calibration(4, 32, 23), &config);
            for l in 0..2 {
                for kind in LinearKind::ALL {
                    let w = weights(&model, l, kind);
                    let expected = (sparsity * w.cols as f64).round() as usize;
                    for r in 0..w.rows {
                        let zeros = w.row(r).iter().filter(|&&x| x == 0.0).count();
                        assert_eq!(
                            zeros,
                            expected,
                            "{method:?} {sparsity}: {} row {r}",
                            kind.tensor_name(l)
                        );
                    }
                }
            }
            for m in outcome.report.matrices() {
                assert_eq!(m.n_pruned, m.n_zeros, "{}", m.name);
                assert!(m.reconstruction_error.unwrap() > 0.0, "{}", m.name);
            }
        }
    }
}

#[test]
fn zero_sparsity_prune_is_noop() {
    for method in Method::ALL {
        let mut model = tiny_model(24);
        let before: Vec<Matrix> = (0..2)
            .flat_map(|l| LinearKind::ALL.map(|k| weights(&model, l, k)))
            .collect();
        let outcome = run(
            &mut model,
            &tiny_calibration(2, 16, 25),
            &config(method, Pattern::Unstructured { sparsity: 0.0 }),
        );
        let after: Vec<Matrix> = (0..2)
            .flat_map(|l| LinearKind::ALL.map(|k| weights(&model, l, k)))
            .collect();
        assert_eq!(before, after, "{method:?} changed weights at sparsity 0");
        assert!(
            outcome.masks.iter().all(|m| m.mask.n_pruned() == 0),
            "{method:?}"
        );
        assert!(
            outcome
                .report
                .matrices()
                .all(|m| m.reconstruction_error == Some(0.0)),
            "{method:?}"
        );
    }
}

#[test]
fn calibration_uses_pruned_earlier_layers() {
    let calibration = tiny_calibration(3, 24, 26);
    let pattern = Pattern::Unstructured { sparsity: 0.5 };

    // Reference: prune layer 0 alone, then score layer 1 on the outputs of that pruned layer.
    let mut reference = tiny_model(27);
    run(
        &mut reference,
        &calibration,
        &PruneConfig {
            layers: Some(0..1),
            ..config(Method::Wanda, pattern)
        },
    );
    let tokens = Tensor::new(calibration.clone(), &Device::Cpu).unwrap();
    let hidden = reference
        .layer_forward(0, &reference.embed(&tokens).unwrap(), false, None)
        .unwrap();
    let mut q_input = None;
    reference
        .layer_forward(
            1,
            &hidden,
            false,
            Some(&mut |kind: LinearKind, t: &Tensor| {
                if kind == LinearKind::AttnQ {
                    q_input = Some(t.clone());
                }
                Ok(())
            }),
        )
        .unwrap();
    let mut hessian = Hessian::new(64);
    hessian.accumulate(&q_input.unwrap()).unwrap();
    let mut expected = weights(&reference, 1, LinearKind::AttnQ);
    let expected_mask = Wanda
        .prune(
            &mut expected,
            Some(&hessian),
            &Selection::PerRow { n_pruned: 32 },
        )
        .unwrap();

    // The driver pruning both layers in one run chooses the same mask for layer 1.
    let mut model = tiny_model(27);
    let outcome = run(&mut model, &calibration, &config(Method::Wanda, pattern));
    let got = outcome
        .masks
        .iter()
        .find(|m| m.name == "blk.1.attn_q.weight")
        .unwrap();
    assert_eq!(got.mask, expected_mask);
    assert_eq!(weights(&model, 1, LinearKind::AttnQ), expected);
}

#[test]
fn layers_option_limits_pruning() {
    let mut model = tiny_model(28);
    let untouched = weights(&model, 1, LinearKind::FfnDown);
    let outcome = run(
        &mut model,
        &tiny_calibration(2, 16, 29),
        &PruneConfig {
            layers: Some(0..1),
            ..PruneConfig::default()
        },
    );
    assert_eq!(outcome.report.layers.len(), 1);
    assert_eq!(outcome.masks.len(), 7);
    assert_eq!(weights(&model, 1, LinearKind::FfnDown), untouched);
}

#[test]
fn embeddings_pruned_only_when_included() {
    for tied in [true, false] {
        let spec = TinySpec {
            tied_embeddings: tied,
            seed: 30,
            ..TinySpec::default()
        };
        let mut model = DenseModel::from_gguf(&tiny_llama(&spec).unwrap()).unwrap();
        let config = PruneConfig {
            include_embeddings: true,
            ..config(Method::SparseGpt, Pattern::NOfM { n: 2, m: 4 })
        };
        let outcome = run(&mut model, &tiny_calibration(2, 16, 31), &config);
        let names: Vec<&str> = outcome
            .report
            .layers
            .last()
            .unwrap()
            .matrices
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        let expected: &[&str] = if tied {
            &["token_embd.weight"]
        } else {
            &["output.weight", "token_embd.weight"]
        };
        assert_eq!(names, expected, "tied: {tied}");
        let embedding = Matrix::from_tensor(model.token_embd.as_tensor()).unwrap();
        assert_eq!(
            embedding.n_zeros(),
            embedding.data.len() / 2,
            "tied: {tied}"
        );

        let mut dense = DenseModel::from_gguf(&tiny_llama(&spec).unwrap()).unwrap();
        let outcome = run(
            &mut dense,
            &tiny_calibration(2, 16, 31),
            &PruneConfig {
                include_embeddings: false,
                ..config
            },
        );
        assert_eq!(outcome.report.layers.len(), 2, "tied: {tied}");
        assert_eq!(
            Matrix::from_tensor(dense.token_embd.as_tensor())
                .unwrap()
                .n_zeros(),
            0,
            "tied: {tied}"
        );
    }
}

#[test]
fn progress_reports_every_layer() {
    let mut model = tiny_model(32);
    let mut calls = Vec::new();
    let clock = || 0.0;
    let config = PruneConfig {
        include_embeddings: true,
        ..PruneConfig::default()
    };
    let outcome = prune_model(
        &mut model,
        &tiny_calibration(2, 16, 33),
        &config,
        Some(&clock),
        &mut |done, total| calls.push((done, total)),
    )
    .unwrap();
    assert_eq!(calls, vec![(0, 3), (1, 3), (2, 3), (3, 3)]);
    assert!(outcome.report.matrices().all(|m| m.ms == Some(0.0)));
}

#[test]
fn bad_configs_are_rejected() {
    let calibration = tiny_calibration(2, 16, 34);
    let cases: Vec<(PruneConfig, Vec<Vec<u32>>, &str)> = vec![
        (
            config(Method::Wanda, Pattern::Unstructured { sparsity: 1.2 }),
            calibration.clone(),
            "invalid sparsity: must be in [0, 1), got 1.2",
        ),
        (
            config(Method::Wanda, Pattern::Unstructured { sparsity: 1.0 }),
            calibration.clone(),
            "got 1",
        ),
        (
            config(Method::Wanda, Pattern::Unstructured { sparsity: -0.1 }),
            calibration.clone(),
            "got -0.1",
        ),
        (
            config(Method::Wanda, Pattern::NOfM { n: 4, m: 4 }),
            calibration.clone(),
            "N:M needs 1 <= N < M, got 4:4",
        ),
        (
            config(Method::Magnitude, Pattern::NOfM { n: 2, m: 5 }),
            calibration.clone(),
            "M = 5 does not divide the input width 64",
        ),
        (
            config(Method::Wanda, Pattern::Unstructured { sparsity: 0.5 }),
            vec![],
            "wanda needs calibration samples, got none",
        ),
        (
            config(Method::SparseGpt, Pattern::Unstructured { sparsity: 0.5 }),
            vec![vec![5; 16], vec![5; 15]],
            "sample 2 has 15 tokens",
        ),
        (
            config(Method::SparseGpt, Pattern::Unstructured { sparsity: 0.5 }),
            vec![vec![5, 9999]],
            "token id 9999 is outside the vocabulary",
        ),
        (
            PruneConfig {
                scope: Some(Scope::Global),
                ..config(Method::Wanda, Pattern::Unstructured { sparsity: 0.5 })
            },
            calibration.clone(),
            "Global is not available for wanda",
        ),
        (
            PruneConfig {
                scope: Some(Scope::Row),
                ..config(Method::SparseGpt, Pattern::Unstructured { sparsity: 0.5 })
            },
            calibration.clone(),
            "SparseGPT chooses its mask per block",
        ),
        (
            PruneConfig {
                layers: Some(1..5),
                ..PruneConfig::default()
            },
            calibration.clone(),
            "1..5 reaches past the model's 2 layers",
        ),
        (
            PruneConfig {
                damping: -1.0,
                ..PruneConfig::default()
            },
            calibration.clone(),
            "damping",
        ),
    ];
    for (config, calibration, expected) in cases {
        let mut model = tiny_model(35);
        let before = weights(&model, 0, LinearKind::AttnQ);
        let err = match prune_model(&mut model, &calibration, &config, None, &mut |_, _| {}) {
            Ok(_) => panic!("{config:?} was accepted, expected an error with {expected:?}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expected), "{err}");
        assert_eq!(
            weights(&model, 0, LinearKind::AttnQ),
            before,
            "a rejected config changed weights: {expected}"
        );
    }
}

/// Calibration windows from the chatterbot corpus, tokenized for SmolLM2.
fn smollm2_calibration(
    gguf: &prunechat::gguf::Gguf,
    n_samples: usize,
    seq_len: usize,
) -> Vec<Vec<u32>> {
    let tokenizer = prunechat::tokenizer::Tokenizer::from_gguf(gguf).unwrap();
    let template = prunechat::chat_template::ChatTemplate::from_gguf(gguf, &tokenizer).unwrap();
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/chatterbot-corpus/english");
    let corpus = select_split(load_corpus(dir).unwrap(), Split::Calibration, 0.1, 0).unwrap();
    let stream = tokenize_corpus(&corpus, &tokenizer, &template).unwrap();
    calibration_windows(&stream, n_samples, seq_len, 0)
        .unwrap()
        .into_iter()
        .map(|w| w.tokens)
        .collect()
}

#[test]
fn sparsegpt_error_not_above_magnitude_smollm2() {
    let gguf = common::load_smollm2();
    let calibration = smollm2_calibration(&gguf, 4, 128);
    let mut errors = Vec::new();
    for (method, pattern) in [
        (Method::Magnitude, Pattern::Unstructured { sparsity: 0.5 }),
        (Method::SparseGpt, Pattern::Unstructured { sparsity: 0.5 }),
        (Method::Magnitude, Pattern::NOfM { n: 2, m: 4 }),
        (Method::SparseGpt, Pattern::NOfM { n: 2, m: 4 }),
    ] {
        let mut model = DenseModel::from_gguf(&gguf).unwrap();
        let outcome = run(
            &mut model,
            &calibration,
            &PruneConfig {
                layers: Some(0..2),
                ..config(method, pattern)
            },
        );
        errors.push(
            outcome
                .report
                .matrices()
                .map(|m| (m.name.clone(), m.reconstruction_error.unwrap()))
                .collect::<Vec<_>>(),
        );
    }
    for (magnitude, sparsegpt) in [(&errors[0], &errors[1]), (&errors[2], &errors[3])] {
        for ((name, m), (_, s)) in magnitude.iter().zip(sparsegpt) {
            assert!(
                s <= m,
                "{name}: SparseGPT error {s} exceeds magnitude's {m}"
            );
        }
    }
}
