//! Q8_0 weight matrices repacked for the browser build's matmuls.
//!
//! A GGUF Q8_0 block is an f16 scale followed by 32 signed bytes. `Q8Matrix` interleaves the
//! blocks of four output rows: block 0 of rows 0 to 3, then block 1 of rows 0 to 3, and so on.
//! It keeps the scales as f32. So a matrix-vector product reads one sequential stream and
//! converts no f16 values. Inputs are quantized to Q8_0 per row, as llama.cpp and
//! candle do, and the dot product of each block is summed in integers.
//!
//! The wasm SIMD128 kernel reproduces the arithmetic of candle's `vec_dot_q8_0_q8_0` for
//! wasm exactly: the same four i32 lanes, the same f32 scaling and summation order. So its
//! results are bit-identical to `QMatMul` in the browser. It is faster because it shares each
//! input block between four output rows and reads no f16 scales. Other targets run a scalar
//! loop with the same lane structure, which the native tests compare with a naive reference.
//!
//! Work is split over output rows with `crate::parallel`, so the threaded wasm build computes
//! every output exactly as the single-threaded one does.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;

use crate::error::{Error, Result};
use crate::parallel;

/// Weights per Q8_0 block.
pub const BLOCK: usize = 32;
/// Bytes per Q8_0 block in a GGUF file: an f16 scale and 32 signed bytes.
const BLOCK_BYTES: usize = 2 + BLOCK;
/// Output rows handled together. Ranges given to threads start at multiples of it.
const ROW_GROUP: usize = 4;
/// Input rows that share one pass over the weights in `Q8Matrix::matmul`.
const INPUT_TILE: usize = 16;
/// Products with fewer multiply-adds than this run on the calling thread, because waking the
/// other threads would cost more than they save (an estimate, not tuned by measurement).
const PARALLEL_MIN_MACS: usize = 256 * 1024;

/// A Q8_0 matrix of `rows` outputs by `cols` inputs.
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    /// Quantized weights, `rows * cols`. The first `rows / 4 * 4` rows are stored as
    /// `[group][block][row in group][32]`. The remaining `rows % 4` rows follow, row-major.
    qs: Vec<i8>,
    /// Block scales, `rows * cols / 32`, in the same order as the blocks in `qs`.
    scales: Vec<f32>,
}

/// An input quantized to Q8_0, one row per input position.
pub struct Q8Input {
    rows: usize,
    qs: Vec<i8>,
    scales: Vec<f32>,
}

impl Q8Matrix {
    /// Repacks a 2-D Q8_0 tensor of shape `(rows, cols)`. Returns `None` for other types.
    pub fn from_qtensor(t: &QTensor) -> Result<Option<Self>> {
        Self::from_qtensors(&[t])
    }

    /// Repacks 2-D Q8_0 tensors with the same number of columns into one matrix, their rows in
    /// order. Each row gives the same products, bit for bit, as in a matrix of its own tensor.
    /// Returns `None` when a tensor has another type.
    pub fn from_qtensors(tensors: &[&QTensor]) -> Result<Option<Self>> {
        if tensors.iter().any(|t| t.dtype() != GgmlDType::Q8_0) {
            return Ok(None);
        }
        let mut cols = None;
        // The bytes of each tensor and its number of rows.
        let mut parts = Vec::with_capacity(tensors.len());
        for t in tensors {
            let (rows, part_cols) = t.shape().dims2()?;
            if part_cols % BLOCK != 0 {
                return Err(Error::invalid_argument(
                    "Q8_0 tensor",
                    format!("row length {part_cols} is not a multiple of {BLOCK}"),
                ));
            }
            if *cols.get_or_insert(part_cols) != part_cols {
                return Err(Error::invalid_argument(
                    "Q8_0 tensors",
                    format!(
                        "cannot stack rows of {part_cols} and {} columns",
                        cols.unwrap_or(0)
                    ),
                ));
            }
            let data = t.data()?;
            let expected = rows * part_cols / BLOCK * BLOCK_BYTES;
            if data.len() != expected {
                return Err(Error::invalid_argument(
                    "Q8_0 tensor",
                    format!(
                        "{} bytes for {rows} x {part_cols} weights, expected {expected}",
                        data.len()
                    ),
                ));
            }
            parts.push((data, rows));
        }
        let cols = cols.unwrap_or(0);
        let nb = cols / BLOCK;
        // The blocks of the part and the row in it, for every stacked row.
        let sources: Vec<(&[i8], usize)> = parts
            .iter()
            .flat_map(|(data, rows)| {
                // SAFETY: i8 and u8 have the same size and alignment, and every bit pattern is
                // valid for both.
                let data: &[i8] =
                    unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), data.len()) };
                (0..*rows).map(move |r| (data, r))
            })
            .collect();
        Ok(Some(Self::pack(sources.len(), cols, |row, b| {
            let (data, part_row) = sources[row];
            let block = &data[(part_row * nb + b) * BLOCK_BYTES..][..BLOCK_BYTES];
            let scale = f16::from_le_bytes([block[0] as u8, block[1] as u8]).to_f32();
            (&block[2..], scale)
        })))
    }

    /// Builds a matrix from `block(row, b)`, which returns the 32 quantized weights of block `b`
    /// of `row` and its scale. Writes `qs` and `scales` front to back, in the packed order of
    /// `block_position`, so neither is zero-filled first.
    fn pack<'a>(rows: usize, cols: usize, block: impl Fn(usize, usize) -> (&'a [i8], f32)) -> Self {
        let nb = cols / BLOCK;
        let mut qs = Vec::with_capacity(rows * cols);
        let mut scales = Vec::with_capacity(rows * nb);
        let mut push = |row: usize, b: usize| {
            let (q, scale) = block(row, b);
            qs.extend_from_slice(&q[..BLOCK]);
            scales.push(scale);
        };
        let grouped = rows / ROW_GROUP * ROW_GROUP;
        for group_start in (0..grouped).step_by(ROW_GROUP) {
            for b in 0..nb {
                for row in group_start..group_start + ROW_GROUP {
                    push(row, b);
                }
            }
        }
        for row in grouped..rows {
            for b in 0..nb {
                push(row, b);
            }
        }
        Self {
            rows,
            cols,
            qs,
            scales,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held: the quantized weights and their f32 scales.
    pub fn bytes(&self) -> usize {
        self.qs.len() + 4 * self.scales.len()
    }

    /// Writes row `row` as floats into `out` (`cols` long), as candle's Q8_0 `to_float` does.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        for (b, dst) in out.chunks_exact_mut(BLOCK).enumerate() {
            let (offset, scale) = block_position(self.rows, self.cols, row, b);
            let d = self.scales[scale];
            for (y, &q) in dst.iter_mut().zip(&self.qs[offset..offset + BLOCK]) {
                *y = q as f32 * d;
            }
        }
    }

    /// Rows `range` as an F32 tensor of shape `(range.len(), cols)`.
    pub fn dequantize_rows(&self, range: std::ops::Range<usize>) -> Result<Tensor> {
        let mut out = vec![0f32; range.len() * self.cols];
        for (i, row) in range.clone().enumerate() {
            self.dequantize_row(row, &mut out[i * self.cols..(i + 1) * self.cols]);
        }
        Ok(Tensor::from_vec(
            out,
            (range.len(), self.cols),
            &Device::Cpu,
        )?)
    }

    /// Computes `out[r * rows + j] = dot(input row r, weight row j)` for every input row `r`.
    /// `out` has `input.rows * self.rows` elements.
    ///
    /// Input rows are taken in tiles of `INPUT_TILE`. Within a tile, each group of four weight
    /// rows is read once and used for every input row, so a long prompt reads the weights
    /// `rows / INPUT_TILE` times instead of once per row.
    pub fn matmul(&self, input: &Q8Input, out: &mut [f32]) {
        assert_eq!(input.qs.len(), input.rows * self.cols, "input width");
        assert_eq!(out.len(), input.rows * self.rows, "output size");
        let n = self.rows;
        let dst = SharedOut(out.as_mut_ptr());
        let min_rows = PARALLEL_MIN_MACS.div_ceil(self.cols.max(1) * input.rows.max(1));
        parallel::for_each_range(n, ROW_GROUP, min_rows, |range| {
            for tile_start in (0..input.rows).step_by(INPUT_TILE) {
                let tile = tile_start..(tile_start + INPUT_TILE).min(input.rows);
                for group_start in range.clone().step_by(ROW_GROUP) {
                    let group = group_start..(group_start + ROW_GROUP).min(range.end);
                    for r in tile.clone() {
                        // SAFETY: the ranges are disjoint, so each output element has one
                        // writer, and `out` outlives `for_each_range`, which returns after
                        // every range is done.
                        let row_out = unsafe { dst.slice(r * n + group.start, group.len()) };
                        self.dot_rows(input, r, group.clone(), row_out);
                    }
                }
            }
        });
    }

    /// Dot products of input row `r` with weight rows `range`, into `out` (`range.len()`).
    /// `range.start` is a multiple of 4.
    fn dot_rows(&self, input: &Q8Input, r: usize, range: std::ops::Range<usize>, out: &mut [f32]) {
        let k = self.cols;
        let nb = k / BLOCK;
        let xq = &input.qs[r * k..(r + 1) * k];
        let xd = &input.scales[r * nb..(r + 1) * nb];
        let grouped = self.rows / ROW_GROUP * ROW_GROUP;
        let mut j = range.start;
        while j + ROW_GROUP <= range.end.min(grouped) {
            let g = j / ROW_GROUP;
            let sums = dot4(
                xq,
                xd,
                &self.qs[g * ROW_GROUP * k..(g + 1) * ROW_GROUP * k],
                &self.scales[g * ROW_GROUP * nb..(g + 1) * ROW_GROUP * nb],
            );
            out[j - range.start..j - range.start + ROW_GROUP].copy_from_slice(&sums);
            j += ROW_GROUP;
        }
        while j < range.end {
            let t = j - grouped;
            let wq = &self.qs[grouped * k + t * k..grouped * k + (t + 1) * k];
            let wd = &self.scales[grouped * nb + t * nb..grouped * nb + (t + 1) * nb];
            out[j - range.start] = dot1(xq, xd, wq, wd);
            j += 1;
        }
    }

    /// Gathers rows `ids` as floats, shape `(ids.len(), cols)`: an embedding lookup.
    pub fn embedding(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut out = vec![0f32; ids.len() * self.cols];
        for (i, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id >= self.rows {
                return Err(Error::invalid_argument(
                    "token id",
                    format!(
                        "{id} is outside the embedding table of {} rows; the tokenizer does not match the model",
                        self.rows
                    ),
                ));
            }
            self.dequantize_row(id, &mut out[i * self.cols..(i + 1) * self.cols]);
        }
        Ok(out)
    }
}

impl Q8Input {
    /// Quantizes `rows` rows of `cols` floats each to Q8_0, exactly as candle's
    /// `BlockQ8_0::from_float` does: scale `amax / 127` stored as f16, values rounded with the
    /// unrounded scale.
    pub fn quantize(x: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(x.len(), rows * cols, "input size");
        assert_eq!(cols % BLOCK, 0, "input width");
        let mut qs = vec![0i8; rows * cols];
        let mut scales = Vec::with_capacity(rows * cols / BLOCK);
        for (src, dst) in x.chunks_exact(BLOCK).zip(qs.chunks_exact_mut(BLOCK)) {
            // Equal to folding with `f32::max`, NaN inputs included (they never win a
            // comparison), without the library call `max` becomes in wasm.
            let amax = src
                .iter()
                .fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            scales.push(f16::from_f32(d).to_f32());
            for (q, &v) in dst.iter_mut().zip(src) {
                *q = round_half_away(v * id) as i8;
            }
        }
        Self { rows, qs, scales }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Returns `f32::round(t)` (halves away from zero), built from `trunc`, which wasm has as an
/// instruction, where `round` is a library call. `t - trunc(t)` is exact for every float.
#[inline(always)]
fn round_half_away(t: f32) -> f32 {
    let r = t.trunc();
    if (t - r).abs() >= 0.5 {
        r + t.signum()
    } else {
        r
    }
}

/// Returns where block `b` of row `row` starts in `Q8Matrix::qs`, and the index of its scale.
fn block_position(rows: usize, cols: usize, row: usize, b: usize) -> (usize, usize) {
    let nb = cols / BLOCK;
    let grouped = rows / ROW_GROUP * ROW_GROUP;
    let block = if row < grouped {
        ((row / ROW_GROUP) * nb + b) * ROW_GROUP + row % ROW_GROUP
    } else {
        grouped * nb + (row - grouped) * nb + b
    };
    (block * BLOCK, block)
}

/// A raw output pointer that threads write disjoint parts of.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// SAFETY: the caller guarantees that `start..start + len` is in bounds and that no other
    /// thread accesses it meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// Sums the four i32 lanes left to right, as candle's wasm kernel does.
#[inline(always)]
fn lane_sum(acc: [f32; 4]) -> f32 {
    acc[0] + acc[1] + acc[2] + acc[3]
}

#[cfg(target_feature = "simd128")]
mod kernel {
    use core::arch::wasm32::*;

    use super::{lane_sum, BLOCK};

    /// The four i32 lanes of one block's integer dot product: lane `l` sums the products at
    /// positions `8c + 2l` and `8c + 2l + 1` for `c` in 0..4, as `i32x4_dot_i16x8` pairs them.
    #[inline(always)]
    unsafe fn block_lanes(w: *const i8, y0: v128, y1: v128, y2: v128, y3: v128) -> v128 {
        unsafe {
            let s = i32x4_dot_i16x8(i16x8_load_extend_i8x8(w), y0);
            let s = i32x4_add(s, i32x4_dot_i16x8(i16x8_load_extend_i8x8(w.add(8)), y1));
            let s = i32x4_add(s, i32x4_dot_i16x8(i16x8_load_extend_i8x8(w.add(16)), y2));
            i32x4_add(s, i32x4_dot_i16x8(i16x8_load_extend_i8x8(w.add(24)), y3))
        }
    }

    /// Adds one block's lanes, scaled by `w_scale * x_scale`, to `acc`.
    #[inline(always)]
    fn accumulate(acc: v128, lanes: v128, w_scale: f32, x_scale: f32) -> v128 {
        f32x4_add(
            acc,
            f32x4_mul(f32x4_convert_i32x4(lanes), f32x4_splat(w_scale * x_scale)),
        )
    }

    #[inline(always)]
    fn lanes(v: v128) -> [f32; 4] {
        [
            f32x4_extract_lane::<0>(v),
            f32x4_extract_lane::<1>(v),
            f32x4_extract_lane::<2>(v),
            f32x4_extract_lane::<3>(v),
        ]
    }

    /// Dot products of one input row with a group of four interleaved weight rows.
    pub fn dot4(xq: &[i8], xd: &[f32], wq: &[i8], wd: &[f32]) -> [f32; 4] {
        let nb = xd.len();
        assert!(xq.len() >= nb * BLOCK);
        assert!(wq.len() >= nb * 4 * BLOCK);
        assert!(wd.len() >= nb * 4);
        let (mut a0, mut a1, mut a2, mut a3) = (
            f32x4_splat(0.0),
            f32x4_splat(0.0),
            f32x4_splat(0.0),
            f32x4_splat(0.0),
        );
        for b in 0..nb {
            // SAFETY: the assert above keeps every 32-byte block load and scale read in bounds.
            unsafe {
                let x = xq.as_ptr().add(b * BLOCK);
                let y0 = i16x8_load_extend_i8x8(x);
                let y1 = i16x8_load_extend_i8x8(x.add(8));
                let y2 = i16x8_load_extend_i8x8(x.add(16));
                let y3 = i16x8_load_extend_i8x8(x.add(24));
                let xs = *xd.get_unchecked(b);
                let w = wq.as_ptr().add(b * 4 * BLOCK);
                let d = wd.as_ptr().add(b * 4);
                let s0 = block_lanes(w, y0, y1, y2, y3);
                let s1 = block_lanes(w.add(BLOCK), y0, y1, y2, y3);
                let s2 = block_lanes(w.add(2 * BLOCK), y0, y1, y2, y3);
                let s3 = block_lanes(w.add(3 * BLOCK), y0, y1, y2, y3);
                a0 = accumulate(a0, s0, *d, xs);
                a1 = accumulate(a1, s1, *d.add(1), xs);
                a2 = accumulate(a2, s2, *d.add(2), xs);
                a3 = accumulate(a3, s3, *d.add(3), xs);
            }
        }
        [
            lane_sum(lanes(a0)),
            lane_sum(lanes(a1)),
            lane_sum(lanes(a2)),
            lane_sum(lanes(a3)),
        ]
    }

    pub fn dot1(xq: &[i8], xd: &[f32], wq: &[i8], wd: &[f32]) -> f32 {
        let nb = xd.len();
        assert!(xq.len() >= nb * BLOCK);
        assert!(wq.len() >= nb * BLOCK);
        assert!(wd.len() >= nb);
        let mut acc = f32x4_splat(0.0);
        for b in 0..nb {
            let o = b * BLOCK;
            // SAFETY: the assert above keeps every 32-byte block load in bounds.
            unsafe {
                let x = xq.as_ptr().add(o);
                let s = block_lanes(
                    wq.as_ptr().add(o),
                    i16x8_load_extend_i8x8(x),
                    i16x8_load_extend_i8x8(x.add(8)),
                    i16x8_load_extend_i8x8(x.add(16)),
                    i16x8_load_extend_i8x8(x.add(24)),
                );
                acc = accumulate(acc, s, wd[b], xd[b]);
            }
        }
        lane_sum(lanes(acc))
    }
}

#[cfg(not(target_feature = "simd128"))]
mod kernel {
    use super::{lane_sum, BLOCK};

    /// Computes what the SIMD kernel computes, with the same four lanes and order of operations.
    pub fn dot1(xq: &[i8], xd: &[f32], wq: &[i8], wd: &[f32]) -> f32 {
        let mut acc = [0f32; 4];
        for (b, (&x_scale, &w_scale)) in xd.iter().zip(wd).enumerate() {
            let x = &xq[b * BLOCK..(b + 1) * BLOCK];
            let w = &wq[b * BLOCK..(b + 1) * BLOCK];
            let scale = w_scale * x_scale;
            for (l, a) in acc.iter_mut().enumerate() {
                let mut s = 0i32;
                for c in 0..4 {
                    let i = 8 * c + 2 * l;
                    s += x[i] as i32 * w[i] as i32 + x[i + 1] as i32 * w[i + 1] as i32;
                }
                *a += s as f32 * scale;
            }
        }
        lane_sum(acc)
    }

    /// Dot products of one input row with a group of four interleaved weight rows.
    pub fn dot4(xq: &[i8], xd: &[f32], wq: &[i8], wd: &[f32]) -> [f32; 4] {
        let nb = xd.len();
        let mut out = [0f32; 4];
        for (r, o) in out.iter_mut().enumerate() {
            let mut q = Vec::with_capacity(nb * BLOCK);
            let mut d = Vec::with_capacity(nb);
            for b in 0..nb {
                let block = b * 4 + r;
                q.extend_from_slice(&wq[block * BLOCK..(block + 1) * BLOCK]);
                d.push(wd[block]);
            }
            *o = dot1(xq, xd, &q, &d);
        }
        out
    }
}

use kernel::{dot1, dot4};

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QMatMul;
    use candle_core::Module;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn qtensor(rows: usize, cols: usize, seed: u64) -> QTensor {
        let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
        QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()
    }

    /// Naive reference: dequantize both sides and sum in f64.
    fn naive(m: &Q8Matrix, input: &Q8Input) -> Vec<f32> {
        let k = m.cols;
        let mut out = Vec::new();
        let mut w = vec![0f32; k];
        for r in 0..input.rows {
            for j in 0..m.rows {
                m.dequantize_row(j, &mut w);
                let mut s = 0f64;
                for (i, &wi) in w.iter().enumerate() {
                    let x = input.qs[r * k + i] as f64 * input.scales[(r * k + i) / BLOCK] as f64;
                    s += wi as f64 * x;
                }
                out.push(s as f32);
            }
        }
        out
    }

    #[test]
    fn matmul_matches_a_naive_reference() {
        // 23 output rows: five groups of four and three single rows.
        for (rows, cols, m) in [(23, 64, 1), (23, 576, 3), (8, 32, 2)] {
            let mat = Q8Matrix::from_qtensor(&qtensor(rows, cols, 1))
                .unwrap()
                .unwrap();
            let input = Q8Input::quantize(&random(m * cols, 2), m, cols);
            let mut out = vec![0f32; m * rows];
            mat.matmul(&input, &mut out);
            for (a, b) in out.iter().zip(naive(&mat, &input)) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn matmul_matches_candle_qmatmul() {
        // candle's native kernel sums the blocks differently, so this bound is loose; in the
        // browser the wasm test requires bit equality.
        let (rows, cols, m) = (37, 576, 2);
        let q = qtensor(rows, cols, 3);
        let mat = Q8Matrix::from_qtensor(&q).unwrap().unwrap();
        let x = random(m * cols, 4);
        let mut out = vec![0f32; m * rows];
        mat.matmul(&Q8Input::quantize(&x, m, cols), &mut out);
        let xt = Tensor::from_vec(x, (m, cols), &Device::Cpu).unwrap();
        let expected = QMatMul::from_qtensor(q).unwrap().forward(&xt).unwrap();
        let expected = expected.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in out.iter().zip(&expected) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn dequantize_and_embedding_match_candle() {
        let q = qtensor(10, 64, 5);
        let mat = Q8Matrix::from_qtensor(&q).unwrap().unwrap();
        let expected = q.dequantize(&Device::Cpu).unwrap();
        let got = mat.dequantize_rows(0..10).unwrap();
        let diff = (expected - &got).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        let ids = Tensor::new(&[3u32, 0, 9], &Device::Cpu).unwrap();
        let rows = q.embedding(&ids).unwrap().flatten_all().unwrap();
        assert_eq!(
            rows.to_vec1::<f32>().unwrap(),
            mat.embedding(&[3, 0, 9]).unwrap()
        );
        assert!(mat.embedding(&[10]).is_err());
    }

    #[test]
    fn quantize_matches_candle() {
        let x = random(96, 6);
        let t = Tensor::from_vec(x.clone(), (1, 96), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
        let mat = Q8Matrix::from_qtensor(&q).unwrap().unwrap();
        let input = Q8Input::quantize(&x, 1, 96);
        assert_eq!(input.qs, mat.qs);
        assert_eq!(input.scales, mat.scales);
    }

    #[test]
    fn stacked_rows_keep_their_products() {
        // 7 + 4 + 6 rows: tails of 3 and 2 rows in the parts, 17 = 4 groups and 1 row stacked.
        let tensors: Vec<QTensor> = [7, 4, 6]
            .iter()
            .enumerate()
            .map(|(i, &rows)| qtensor(rows, 64, 10 + i as u64))
            .collect();
        let refs: Vec<&QTensor> = tensors.iter().collect();
        let stacked = Q8Matrix::from_qtensors(&refs).unwrap().unwrap();
        assert_eq!(stacked.rows(), 17);

        let input = Q8Input::quantize(&random(2 * 64, 11), 2, 64);
        let mut got = vec![0f32; 2 * 17];
        stacked.matmul(&input, &mut got);
        let mut offset = 0;
        for t in &tensors {
            let part = Q8Matrix::from_qtensor(t).unwrap().unwrap();
            let mut out = vec![0f32; 2 * part.rows()];
            part.matmul(&input, &mut out);
            for r in 0..2 {
                for j in 0..part.rows() {
                    assert_eq!(
                        got[r * 17 + offset + j].to_bits(),
                        out[r * part.rows() + j].to_bits()
                    );
                }
            }
            offset += part.rows();
        }

        let narrow = qtensor(4, 32, 12);
        assert!(Q8Matrix::from_qtensors(&[&tensors[0], &narrow]).is_err());
    }

    #[test]
    fn round_half_away_equals_round() {
        let mut values = vec![
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -2.5,
            0.49999997,
            -0.49999997,
            126.5,
            -127.49999,
            8388607.5,
            1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
        ];
        values.extend(random(10_000, 8).iter().map(|v| v * 130.0));
        for v in values {
            assert_eq!(round_half_away(v).to_bits(), v.round().to_bits(), "{v}");
        }
        assert!(round_half_away(f32::NAN).is_nan());
    }

    #[test]
    fn other_types_are_not_repacked() {
        let w = Tensor::from_vec(random(64, 7), (2, 32), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        assert!(Q8Matrix::from_qtensor(&q).unwrap().is_none());
    }
}
