//! Machine limits measured inside the wasm engine: memory read and copy bandwidth of one thread,
//! the throughput of 128-bit SIMD multiply-add, and the multiply-add rate of the Q8_0 matmul
//! kernel on data that stays in the caches. The browser benchmark divides a model's
//! bytes by the read bandwidth to get the decode floor (the time to stream every weight once
//! per token) and reports each measured decode speed as a fraction of it.
//!
//! The functions only do the work; JavaScript times each call with `performance.now()`, so
//! the figures include the call overhead, which is negligible at these sizes.

use core::arch::wasm32::*;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use wasm_bindgen::prelude::*;

use crate::model::q8::{Q8Input, Q8Matrix};

/// A buffer for the bandwidth loops, filled with non-zero bytes so that the pages are really
/// committed before the first timed pass.
#[wasm_bindgen]
pub struct LimitsBuffer {
    source: Vec<u8>,
    destination: Vec<u8>,
}

#[wasm_bindgen]
impl LimitsBuffer {
    /// Allocates two buffers of `bytes` each (a multiple of 64 is used).
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: usize) -> Result<LimitsBuffer, JsError> {
        let requested = bytes;
        let bytes = bytes / 64 * 64;
        if bytes == 0 {
            return Err(JsError::new(&format!(
                "invalid buffer size {requested}: LimitsBuffer needs at least 64 bytes"
            )));
        }
        let source: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8 + 1).collect();
        let destination = vec![0u8; bytes];
        Ok(LimitsBuffer {
            source,
            destination,
        })
    }

    /// Bytes in each buffer.
    #[wasm_bindgen(getter)]
    pub fn bytes(&self) -> usize {
        self.source.len()
    }

    /// Reads the source buffer once with 128-bit loads into four independent accumulators and
    /// returns a checksum, so the loads cannot be optimized away.
    #[wasm_bindgen(js_name = readOnce)]
    pub fn read_once(&self) -> u32 {
        let mut acc = [i32x4_splat(0); 4];
        for chunk in self.source.chunks_exact(64) {
            let p = chunk.as_ptr() as *const v128;
            // SAFETY: the chunk has 64 bytes, four unaligned 16-byte loads stay inside it.
            unsafe {
                acc[0] = i32x4_add(acc[0], v128_load(p));
                acc[1] = i32x4_add(acc[1], v128_load(p.add(1)));
                acc[2] = i32x4_add(acc[2], v128_load(p.add(2)));
                acc[3] = i32x4_add(acc[3], v128_load(p.add(3)));
            }
        }
        let sum = i32x4_add(i32x4_add(acc[0], acc[1]), i32x4_add(acc[2], acc[3]));
        (i32x4_extract_lane::<0>(sum)
            ^ i32x4_extract_lane::<1>(sum)
            ^ i32x4_extract_lane::<2>(sum)
            ^ i32x4_extract_lane::<3>(sum)) as u32
    }

    /// Copies the source buffer to the destination buffer once with a `memory.copy`. Returns a
    /// byte of the destination.
    #[wasm_bindgen(js_name = copyOnce)]
    pub fn copy_once(&mut self) -> u32 {
        self.destination.copy_from_slice(&self.source);
        u32::from(self.destination[self.destination.len() / 2])
    }
}

/// Runs `iterations` rounds of eight independent f32x4 multiply-adds (`acc = acc * a + b`,
/// 2 flops per lane, so 64 flops per round) and returns a checksum. wasm SIMD has no
/// fused multiply-add outside relaxed SIMD, so this is a multiply and an add, as in the
/// matmul kernels.
#[wasm_bindgen(js_name = simdMultiplyAdd)]
pub fn simd_multiply_add(iterations: u32) -> f32 {
    let a = f32x4_splat(0.999_999);
    let b = f32x4_splat(1e-7);
    let mut acc = [
        f32x4_splat(1.0),
        f32x4_splat(1.1),
        f32x4_splat(1.2),
        f32x4_splat(1.3),
        f32x4_splat(1.4),
        f32x4_splat(1.5),
        f32x4_splat(1.6),
        f32x4_splat(1.7),
    ];
    for _ in 0..iterations {
        for x in acc.iter_mut() {
            *x = f32x4_add(f32x4_mul(*x, a), b);
        }
    }
    let mut sum = f32x4_splat(0.0);
    for x in acc {
        sum = f32x4_add(sum, x);
    }
    f32x4_extract_lane::<0>(sum)
        + f32x4_extract_lane::<1>(sum)
        + f32x4_extract_lane::<2>(sum)
        + f32x4_extract_lane::<3>(sum)
}

/// Flops of one `simdMultiplyAdd` iteration: eight f32x4 multiply-adds.
#[wasm_bindgen(js_name = simdMultiplyAddFlopsPerIteration)]
pub fn simd_multiply_add_flops_per_iteration() -> u32 {
    8 * 4 * 2
}

/// The model's Q8_0 matmul on a weight matrix and input small enough to stay in the caches, so
/// that `run` measures the kernel's arithmetic rate rather than memory bandwidth: a SmolLM2 FFN
/// input width of 576, 128 output rows and 16 input rows.
#[wasm_bindgen]
pub struct KernelProbe {
    matrix: Q8Matrix,
    input: Q8Input,
    out: Vec<f32>,
}

const PROBE_ROWS: usize = 128;
const PROBE_COLS: usize = 576;
const PROBE_INPUT_ROWS: usize = 16;

#[wasm_bindgen]
impl KernelProbe {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Result<KernelProbe, JsError> {
        let values = |n: usize, step: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * step) % 255) as f32 / 127.0 - 1.0)
                .collect()
        };
        let weights = Tensor::from_vec(
            values(PROBE_ROWS * PROBE_COLS, 7),
            (PROBE_ROWS, PROBE_COLS),
            &Device::Cpu,
        )
        .and_then(|w| QTensor::quantize(&w, GgmlDType::Q8_0))
        .map_err(|e| JsError::new(&format!("failed to build the probe matrix: {e}")))?;
        let matrix = Q8Matrix::from_qtensor(&weights)
            .map_err(|e| JsError::new(&e.to_string()))?
            .ok_or_else(|| JsError::new("the probe matrix is not Q8_0"))?;
        let input = Q8Input::quantize(
            &values(PROBE_INPUT_ROWS * PROBE_COLS, 13),
            PROBE_INPUT_ROWS,
            PROBE_COLS,
        );
        Ok(KernelProbe {
            matrix,
            input,
            out: vec![0.0; PROBE_ROWS * PROBE_INPUT_ROWS],
        })
    }

    /// Runs the matmul `iterations` times and returns one output value.
    pub fn run(&mut self, iterations: u32) -> f32 {
        for _ in 0..iterations {
            self.matrix.matmul(&self.input, &mut self.out);
        }
        self.out[self.out.len() / 2]
    }

    /// Multiply-adds of one matmul.
    #[wasm_bindgen(js_name = macsPerRun)]
    pub fn macs_per_run(&self) -> u32 {
        (PROBE_ROWS * PROBE_COLS * PROBE_INPUT_ROWS) as u32
    }
}
