//! The metadata and tensor layout `DenseModel::to_gguf` writes, and the exact size of the file,
//! computed from a `Config` without quantizing or writing anything.

use candle_core::quantized::GgmlDType;
use std::collections::HashMap;

use crate::gguf::MetadataValue;
use crate::model::config::{Config, LayerDims};
use crate::model::dense::LinearKind;

/// Alignment of the tensor data section and of every tensor in it, as candle's GGUF writer
/// pads them.
const ALIGNMENT: u64 = 32;

/// Returns `base` with the sizes of `config` and the file type of `dtype`.
///
/// When every layer has the same sizes, the file is a `llama` model with one integer per size.
/// Otherwise it is a `deci` model with one array entry per layer. llama.cpp's `llama`
/// architecture reads such arrays but builds every layer with layer 0's sizes, so it rejects
/// the other layers' tensors. Its `deci` architecture builds each layer with its own sizes
/// (both checked with llama-cpp-python 0.3.36). The two run the same computation, and all
/// `llama.*` keys are renamed to `deci.*` (or back).
pub fn export_metadata(
    base: &HashMap<String, MetadataValue>,
    config: &Config,
    dtype: GgmlDType,
) -> HashMap<String, MetadataValue> {
    let uniform = config.layers.windows(2).all(|w| w[0] == w[1]);
    let arch = if uniform { "llama" } else { "deci" };
    let source_prefix = format!("{}.", config.architecture);
    let mut metadata: HashMap<String, MetadataValue> = base
        .iter()
        .map(|(key, value)| match key.strip_prefix(&source_prefix) {
            Some(rest) => (format!("{arch}.{rest}"), value.clone()),
            None => (key.clone(), value.clone()),
        })
        .collect();
    metadata.insert(
        "general.architecture".into(),
        MetadataValue::String(arch.into()),
    );
    let per_layer = |f: fn(&LayerDims) -> usize| -> MetadataValue {
        let values: Vec<usize> = config.layers.iter().map(f).collect();
        if uniform {
            MetadataValue::U32(values[0] as u32)
        } else {
            MetadataValue::Array(
                values
                    .into_iter()
                    .map(|v| MetadataValue::U32(v as u32))
                    .collect(),
            )
        }
    };
    metadata.insert(
        format!("{arch}.block_count"),
        MetadataValue::U32(config.layers.len() as u32),
    );
    metadata.insert(
        format!("{arch}.attention.head_count"),
        per_layer(|d| d.n_heads),
    );
    metadata.insert(
        format!("{arch}.attention.head_count_kv"),
        per_layer(|d| d.n_kv_heads),
    );
    metadata.insert(
        format!("{arch}.feed_forward_length"),
        per_layer(|d| d.ffn_dim),
    );
    metadata.insert(
        format!("{arch}.attention.key_length"),
        MetadataValue::U32(config.head_dim as u32),
    );
    metadata.insert(
        format!("{arch}.attention.value_length"),
        MetadataValue::U32(config.head_dim as u32),
    );
    metadata.insert(
        "general.file_type".into(),
        MetadataValue::U32(crate::convert::file_type_code(dtype)),
    );
    metadata
}

/// Returns the type a weight matrix with `cols` input columns is stored in: `dtype`, or F16
/// when a row does not fill whole blocks of `dtype`.
pub fn matrix_dtype(cols: usize, dtype: GgmlDType) -> GgmlDType {
    if cols % dtype.block_size() == 0 {
        dtype
    } else {
        GgmlDType::F16
    }
}

/// Lists every tensor of the exported file in `to_gguf`'s order: name, shape `(rows, cols)` or
/// `(len,)`, and type.
pub fn tensor_layout(config: &Config, dtype: GgmlDType) -> Vec<(String, Vec<usize>, GgmlDType)> {
    let h = config.hidden_size;
    let matrix = |name: String, rows: usize, cols: usize| {
        (name, vec![rows, cols], matrix_dtype(cols, dtype))
    };
    let vector = |name: String| (name, vec![h], GgmlDType::F32);
    let mut tensors = vec![matrix("token_embd.weight".into(), config.vocab_size, h)];
    for (l, dims) in config.layers.iter().enumerate() {
        let q = dims.n_heads * config.head_dim;
        let kv = dims.n_kv_heads * config.head_dim;
        tensors.push(vector(format!("blk.{l}.attn_norm.weight")));
        for kind in LinearKind::ALL {
            let (rows, cols) = match kind {
                LinearKind::AttnQ => (q, h),
                LinearKind::AttnK | LinearKind::AttnV => (kv, h),
                LinearKind::AttnOutput => (h, q),
                LinearKind::FfnGate | LinearKind::FfnUp => (dims.ffn_dim, h),
                LinearKind::FfnDown => (h, dims.ffn_dim),
            };
            tensors.push(matrix(kind.tensor_name(l), rows, cols));
        }
        tensors.push(vector(format!("blk.{l}.ffn_norm.weight")));
    }
    tensors.push(vector("output_norm.weight".into()));
    if !config.tied_embeddings {
        tensors.push(matrix("output.weight".into(), config.vocab_size, h));
    }
    tensors
}

/// Returns the size in bytes of the file `to_gguf(dtype)` writes for a model with `config` and
/// source metadata `base`. It follows the GGUF v2 layout of candle's writer: a 24-byte header,
/// the key/value pairs and the tensor infos, padded to 32 bytes, then each tensor's data
/// padded to 32 bytes.
pub fn gguf_file_bytes(
    base: &HashMap<String, MetadataValue>,
    config: &Config,
    dtype: GgmlDType,
) -> u64 {
    let metadata = export_metadata(base, config, dtype);
    let mut position = 4 + 4 + 8 + 8;
    for (key, value) in metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.alignment")
    {
        position += 8 + key.len() as u64 + 4 + value_bytes(value);
    }
    let mut data = 0u64;
    for (name, shape, tensor_dtype) in tensor_layout(config, dtype) {
        position += 8 + name.len() as u64 + 4 + 8 * shape.len() as u64 + 4 + 8;
        let elements: usize = shape.iter().product();
        let size = (elements / tensor_dtype.block_size() * tensor_dtype.type_size()) as u64;
        data += size.div_ceil(ALIGNMENT) * ALIGNMENT;
    }
    position.div_ceil(ALIGNMENT) * ALIGNMENT + data
}

/// Bytes of one metadata value as written, without its key and type tag.
fn value_bytes(value: &MetadataValue) -> u64 {
    match value {
        MetadataValue::U8(_) | MetadataValue::I8(_) | MetadataValue::Bool(_) => 1,
        MetadataValue::U16(_) | MetadataValue::I16(_) => 2,
        MetadataValue::U32(_) | MetadataValue::I32(_) | MetadataValue::F32(_) => 4,
        MetadataValue::U64(_) | MetadataValue::I64(_) | MetadataValue::F64(_) => 8,
        MetadataValue::String(s) => 8 + s.len() as u64,
        // Element type and length, then the elements.
        MetadataValue::Array(items) => 4 + 8 + items.iter().map(value_bytes).sum::<u64>(),
    }
}
