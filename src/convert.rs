//! Conversion of a GGUF file's weights to another GGML type (for example Q4_1 to Q8_0).

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::error::{Error, Result};
use crate::gguf::{dtype_name, Gguf, MetadataValue};

/// Target types `convert` accepts, by their command-line names.
pub const TARGETS: &[(&str, GgmlDType)] = &[
    ("f32", GgmlDType::F32),
    ("f16", GgmlDType::F16),
    ("bf16", GgmlDType::BF16),
    ("q8_0", GgmlDType::Q8_0),
    ("q5_0", GgmlDType::Q5_0),
    ("q5_1", GgmlDType::Q5_1),
    ("q4_0", GgmlDType::Q4_0),
    ("q4_1", GgmlDType::Q4_1),
    ("q6_k", GgmlDType::Q6K),
    ("q5_k", GgmlDType::Q5K),
    ("q4_k", GgmlDType::Q4K),
    ("q3_k", GgmlDType::Q3K),
    ("q2_k", GgmlDType::Q2K),
];

pub fn parse_target(name: &str) -> Result<GgmlDType> {
    let lower = name.to_ascii_lowercase();
    TARGETS
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            Error::invalid_argument(
                "target type",
                format!("\"{name}\" is not one of: {}", names.join(", ")),
            )
        })
}

/// llama.cpp's `general.file_type` code for a file whose matrices are all of type `dtype`.
pub fn file_type_code(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q8_0 => 7,
        GgmlDType::Q5_0 => 8,
        GgmlDType::Q5_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 14,
        GgmlDType::Q5K => 16,
        GgmlDType::Q6K => 18,
        GgmlDType::BF16 => 32,
        // Q8_1 and Q8_K are only used for activations inside llama.cpp.
        GgmlDType::Q8_1 | GgmlDType::Q8K => 7,
    }
}

/// Source and target type of one converted tensor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TensorConversion {
    pub name: String,
    pub from: &'static str,
    pub to: &'static str,
}

/// Converts every matrix of `gguf` to `target`. One-dimensional tensors (norm weights) stay
/// F32, as llama.cpp keeps them. A matrix whose row length is not a multiple of the target's
/// block size is stored as F16 instead. `progress(done, total, name)` is called per tensor.
pub fn convert(
    gguf: Gguf,
    target: GgmlDType,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<(Gguf, Vec<TensorConversion>)> {
    if matches!(target, GgmlDType::Q8_1 | GgmlDType::Q8K) {
        return Err(Error::invalid_argument(
            "target type",
            format!("{} is not a storage type", dtype_name(target)),
        ));
    }
    let Gguf {
        mut metadata,
        tensors,
        file_bytes: _,
    } = gguf;
    let total = tensors.len();
    let mut converted = Vec::with_capacity(total);
    let mut report = Vec::with_capacity(total);
    for (i, (name, tensor)) in tensors.into_iter().enumerate() {
        progress(i, total, &name);
        let dims = tensor.shape().dims().to_vec();
        let target_type = match dims.as_slice() {
            [_] => GgmlDType::F32,
            [.., cols] if cols % target.block_size() == 0 => target,
            _ => GgmlDType::F16,
        };
        let from = dtype_name(tensor.dtype());
        let out = if tensor.dtype() == target_type {
            tensor
        } else {
            let values = tensor.dequantize(&Device::Cpu)?;
            QTensor::quantize(&values, target_type).map_err(|e| {
                Error::tensor(
                    &name,
                    format!("quantizing to {} failed: {e}", dtype_name(target_type)),
                )
            })?
        };
        report.push(TensorConversion {
            name: name.clone(),
            from,
            to: dtype_name(target_type),
        });
        converted.push((name, out));
    }
    progress(total, total, "");
    metadata.insert(
        "general.file_type".into(),
        MetadataValue::U32(file_type_code(target)),
    );
    metadata.insert("general.quantization_version".into(), MetadataValue::U32(2));
    Ok((
        Gguf {
            metadata,
            tensors: converted,
            file_bytes: 0,
        },
        report,
    ))
}
