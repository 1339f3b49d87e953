//! The `.psparse` file: a pruned model with each pruned matrix stored as a bitmask plus its
//! kept values, packed. docs/formats.md describes the byte layout.
//!
//! Everything that is not a pruned matrix (metadata with the tokenizer, norms, unpruned
//! matrices) is an embedded GGUF file. Reading returns a `Gguf` whose pruned matrices are
//! dense again, in the file's value type, so the rest of prunechat loads it like any model.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;

use crate::error::{Error, Result};
use crate::gguf::{Gguf, MetadataValue};
use crate::model::dense::DenseModel;
use crate::prune::TensorMask;

/// First 8 bytes of every `.psparse` file.
pub const MAGIC: &[u8; 8] = b"PCSPARSE";
/// Layout version written and read by this code.
pub const VERSION: u32 = 1;

/// Storage type of the kept values of the pruned matrices and of the other matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    F32,
    F16,
}

impl ValueType {
    fn code(self) -> u32 {
        match self {
            ValueType::F32 => 0,
            ValueType::F16 => 1,
        }
    }

    fn from_code(code: u32) -> Result<Self> {
        match code {
            0 => Ok(ValueType::F32),
            1 => Ok(ValueType::F16),
            other => Err(invalid(format!(
                "value type code {other} is neither 0 (F32) nor 1 (F16)"
            ))),
        }
    }

    fn bytes(self) -> usize {
        match self {
            ValueType::F32 => 4,
            ValueType::F16 => 2,
        }
    }

    fn ggml(self) -> GgmlDType {
        match self {
            ValueType::F32 => GgmlDType::F32,
            ValueType::F16 => GgmlDType::F16,
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "f32" => Ok(ValueType::F32),
            "f16" => Ok(ValueType::F16),
            _ => Err(Error::invalid_argument(
                "value type",
                format!("\"{name}\" is neither f32 nor f16"),
            )),
        }
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidSparse(message)
}

/// Serializes `model` with the tensors named in `masks` stored sparsely.
pub fn to_bytes(
    model: &DenseModel,
    masks: &[TensorMask],
    value_type: ValueType,
) -> Result<Vec<u8>> {
    let mut gguf = model.to_gguf(value_type.ggml())?;
    let vars = model.vars();

    let mut sparse = Vec::new();
    sparse.extend_from_slice(&(masks.len() as u32).to_le_bytes());
    for tensor_mask in masks {
        let name = &tensor_mask.name;
        let mask = &tensor_mask.mask;
        if gguf.take_tensor(name).is_none() {
            return Err(Error::tensor(
                name,
                "has a mask but is not a matrix of the model",
            ));
        }
        let var = &vars
            .iter()
            .find(|(n, _)| n == name)
            .expect("to_gguf wrote exactly the tensors of vars()")
            .1;
        let (rows, cols) = var.as_tensor().dims2()?;
        if (rows, cols) != (mask.rows, mask.cols) {
            return Err(Error::tensor(
                name,
                format!(
                    "mask is {} × {}, the matrix {rows} × {cols}",
                    mask.rows, mask.cols
                ),
            ));
        }
        let values = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;

        sparse.extend_from_slice(&(name.len() as u32).to_le_bytes());
        sparse.extend_from_slice(name.as_bytes());
        sparse.extend_from_slice(&(rows as u64).to_le_bytes());
        sparse.extend_from_slice(&(cols as u64).to_le_bytes());
        sparse.extend_from_slice(&(mask.n_kept() as u64).to_le_bytes());
        let mut bits = vec![0u8; mask.kept.len().div_ceil(8)];
        for (k, &keep) in mask.kept.iter().enumerate() {
            if keep {
                bits[k / 8] |= 1 << (k % 8);
            }
        }
        sparse.extend_from_slice(&bits);
        for (&keep, &v) in mask.kept.iter().zip(&values) {
            if keep {
                match value_type {
                    ValueType::F32 => sparse.extend_from_slice(&v.to_le_bytes()),
                    ValueType::F16 => sparse.extend_from_slice(&f16::from_f32(v).to_le_bytes()),
                }
            }
        }
    }

    gguf.metadata.insert(
        "general.file_type".into(),
        MetadataValue::U32(crate::convert::file_type_code(value_type.ggml())),
    );
    let embedded = gguf.to_bytes()?;
    let mut out = Vec::with_capacity(24 + embedded.len() + sparse.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&value_type.code().to_le_bytes());
    out.extend_from_slice(&(embedded.len() as u64).to_le_bytes());
    out.extend_from_slice(&embedded);
    out.extend_from_slice(&sparse);
    Ok(out)
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .position
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                invalid(format!(
                "{what} needs {n} bytes at offset {}, but the file ends at {} (is it truncated?)",
                self.position,
                self.bytes.len()
            ))
            })?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self, what: &str) -> Result<usize> {
        let v = u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes"));
        usize::try_from(v)
            .map_err(|_| invalid(format!("{what} {v} does not fit in this platform's usize")))
    }
}

/// True when `bytes` starts with the `.psparse` magic.
pub fn is_sparse(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Parses a `.psparse` file into a `Gguf` whose pruned matrices are dense again.
pub fn read(bytes: &[u8]) -> Result<Gguf> {
    let mut reader = Reader { bytes, position: 0 };
    if reader.take(8, "magic")? != MAGIC {
        return Err(invalid(
            "it does not start with the magic bytes \"PCSPARSE\"".into(),
        ));
    }
    let version = reader.u32("version")?;
    if version != VERSION {
        return Err(invalid(format!(
            "version {version}; this build reads version {VERSION}"
        )));
    }
    let value_type = ValueType::from_code(reader.u32("value type")?)?;
    let embedded_len = reader.u64("embedded GGUF length")?;
    let mut gguf = Gguf::read(reader.take(embedded_len, "embedded GGUF")?)?;

    let n_sparse = reader.u32("sparse tensor count")? as usize;
    for _ in 0..n_sparse {
        let name_len = reader.u32("tensor name length")? as usize;
        let name = std::str::from_utf8(reader.take(name_len, "tensor name")?)
            .map_err(|_| invalid("a tensor name is not UTF-8".into()))?
            .to_string();
        if gguf.tensor(&name).is_some() {
            return Err(invalid(format!("tensor `{name}` is stored twice")));
        }
        let rows = reader.u64("rows")?;
        let cols = reader.u64("columns")?;
        let n_kept = reader.u64("kept count")?;
        let n = rows
            .checked_mul(cols)
            .filter(|&n| n > 0)
            .ok_or_else(|| invalid(format!("`{name}` has shape {rows} × {cols}")))?;
        let bits = reader.take(n.div_ceil(8), "mask")?;
        let ones: usize = bits.iter().map(|b| b.count_ones() as usize).sum();
        if n % 8 != 0 && bits[bits.len() - 1] >> (n % 8) != 0 {
            return Err(invalid(format!(
                "`{name}`: mask bits past the last weight are set"
            )));
        }
        if ones != n_kept {
            return Err(invalid(format!(
                "`{name}`: the mask keeps {ones} weights, the header says {n_kept}"
            )));
        }
        let packed = reader.take(
            n_kept
                .checked_mul(value_type.bytes())
                .ok_or_else(|| invalid(format!("`{name}`: kept count overflows")))?,
            "values",
        )?;

        let mut values = vec![0f32; n];
        let mut next = packed.chunks_exact(value_type.bytes());
        for (k, v) in values.iter_mut().enumerate() {
            if bits[k / 8] >> (k % 8) & 1 == 1 {
                let chunk = next
                    .next()
                    .expect("the mask's popcount equals the number of packed values");
                *v = match value_type {
                    ValueType::F32 => f32::from_le_bytes(chunk.try_into().expect("4 bytes")),
                    ValueType::F16 => {
                        f16::from_le_bytes(chunk.try_into().expect("2 bytes")).to_f32()
                    }
                };
            }
        }
        let tensor = Tensor::from_vec(values, (rows, cols), &Device::Cpu)?;
        gguf.tensors
            .push((name, QTensor::quantize(&tensor, value_type.ggml())?));
    }
    if reader.position != bytes.len() {
        return Err(invalid(format!(
            "{} bytes follow the last tensor",
            bytes.len() - reader.position
        )));
    }
    gguf.file_bytes = bytes.len() as u64;
    Ok(gguf)
}

/// Writes `model` as a `.psparse` file (through a temporary file that is renamed into place)
/// and returns its size in bytes.
#[cfg(not(target_arch = "wasm32"))]
pub fn write(
    path: impl AsRef<std::path::Path>,
    model: &DenseModel,
    masks: &[TensorMask],
    value_type: ValueType,
) -> Result<u64> {
    let bytes = to_bytes(model, masks, value_type)?;
    crate::fsutil::write_atomically(path.as_ref(), &bytes)?;
    Ok(bytes.len() as u64)
}

/// Opens a model file: GGUF, or `.psparse` (recognized by its magic bytes).
#[cfg(not(target_arch = "wasm32"))]
pub fn open_model(path: impl AsRef<std::path::Path>) -> Result<Gguf> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let parsed = if is_sparse(&bytes) {
        read(&bytes)
    } else {
        Gguf::read(&bytes)
    };
    parsed.map_err(|e| match e {
        Error::InvalidGguf(message) => Error::InvalidGguf(format!("{}: {message}", path.display())),
        Error::InvalidSparse(message) => {
            Error::InvalidSparse(format!("{}: {message}", path.display()))
        }
        other => other,
    })
}
