//! GGUF reading and writing.
//!
//! This module handles the container format only: metadata key/value pairs and named tensors.
//! It never imports the model; `model::Config` is built from the metadata it returns.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

use candle_core::quantized::ggml_file;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::error::{candle_message, is_unexpected_eof, Error, Result};

/// A GGUF file held in memory: its metadata and all of its tensors.
pub struct Gguf {
    pub metadata: HashMap<String, Value>,
    /// Tensors in file order.
    pub tensors: Vec<(String, QTensor)>,
    /// Size of the file the model was read from, in bytes (0 for a model built in memory).
    pub file_bytes: u64,
}

impl Gguf {
    /// Reads a GGUF file from disk.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::read(&bytes).map_err(|e| match e {
            Error::InvalidGguf(message) => {
                Error::InvalidGguf(format!("{}: {message}", path.display()))
            }
            other => other,
        })
    }

    /// Parses a whole GGUF file held in memory.
    pub fn read(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 4 || &bytes[..4] != b"GGUF" {
            let start: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
            return Err(Error::InvalidGguf(format!(
                "the file does not start with the GGUF magic bytes 47 47 55 46 (\"GGUF\"), it starts with [{}]; pick a .gguf model file",
                start.join(" ")
            )));
        }
        check_alignment(bytes)?;
        let mut reader = Cursor::new(bytes);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| {
            Error::InvalidGguf(if is_unexpected_eof(&e) {
                format!(
                    "the file ends inside its header, after {} bytes; it is truncated or was not fully downloaded, so download it again",
                    bytes.len()
                )
            } else {
                format!("invalid header: {}", candle_message(&e))
            })
        })?;

        if !content.tensor_infos.is_empty() && content.tensor_data_offset > bytes.len() as u64 {
            let alignment = content.metadata.get("general.alignment").map_or_else(
                || "not set, so 32".to_string(),
                |v| {
                    value_to_i64("general.alignment", v)
                        .map_or_else(|_| describe(v), |x| x.to_string())
                },
            );
            return Err(Error::InvalidGguf(format!(
                "the tensor data would start at byte {}, past the end of the {}-byte file; \
                 general.alignment ({alignment}) is too large, or the file is truncated",
                content.tensor_data_offset,
                bytes.len()
            )));
        }
        let mut infos: Vec<(&String, &gguf_file::TensorInfo)> =
            content.tensor_infos.iter().collect();
        infos.sort_by_key(|(name, info)| (info.offset, (*name).clone()));
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, info) in infos {
            let range =
                validate_tensor_info(name, info, bytes.len() as u64, content.tensor_data_offset)?;
            let raw = &bytes[range];
            // Data aligned to 8 bytes (enough for every GGML block type) is read in place, so the
            // whole file is not copied once more. Otherwise candle copies it to a new buffer.
            let tensor = if raw.as_ptr() as usize % 8 == 0 {
                ggml_file::qtensor_from_ggml(
                    info.ggml_dtype,
                    raw,
                    info.shape.dims().to_vec(),
                    &Device::Cpu,
                )
            } else {
                info.read(&mut reader, content.tensor_data_offset, &Device::Cpu)
            }
            .map_err(|e| Error::tensor(name, candle_message(&e)))?;
            tensors.push((name.clone(), tensor));
        }
        Ok(Self {
            metadata: content.metadata,
            tensors,
            file_bytes: bytes.len() as u64,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&QTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Removes and returns the tensor called `name`.
    pub fn take_tensor(&mut self, name: &str) -> Option<QTensor> {
        let index = self.tensors.iter().position(|(n, _)| n == name)?;
        Some(self.tensors.remove(index).1)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn get_string(&self, key: &str) -> Result<Option<String>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong_type(key, "a string", other)),
        }
    }

    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.metadata
            .get(key)
            .map(|v| value_to_u64(key, v))
            .transpose()
    }

    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::F32(v)) => Ok(Some(*v)),
            Some(Value::F64(v)) => Ok(Some(*v as f32)),
            Some(other) => value_to_u64(key, other).map(|v| Some(v as f32)),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(key, "a bool", other)),
        }
    }

    /// Reads a key that is either one integer for every layer or an array with one integer
    /// per layer, the two forms llama.cpp accepts for head counts and FFN widths.
    pub fn get_per_layer(&self, key: &str, n_layers: usize) -> Result<Option<Vec<usize>>> {
        let Some(value) = self.metadata.get(key) else {
            return Ok(None);
        };
        match value {
            Value::Array(items) => {
                if items.len() != n_layers {
                    return Err(Error::InvalidKey {
                        key: key.to_string(),
                        message: format!(
                            "array has {} entries, expected one per layer ({n_layers})",
                            items.len()
                        ),
                    });
                }
                let values = items
                    .iter()
                    .map(|v| value_to_u64(key, v).and_then(|v| to_usize(key, v)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Some(values))
            }
            other => {
                let v = to_usize(key, value_to_u64(key, other)?)?;
                Ok(Some(vec![v; n_layers]))
            }
        }
    }

    pub fn get_string_array(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(Error::InvalidKey {
                        key: key.to_string(),
                        message: format!("entry {i} is {}, expected a string", describe(other)),
                    }),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(wrong_type(key, "an array of strings", other)),
        }
    }

    pub fn get_int_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| value_to_i64(key, v))
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(wrong_type(key, "an array of integers", other)),
        }
    }

    /// Serialises the file to bytes: metadata sorted by key with `general.*` first, tensors
    /// in their current order, tensor data aligned to 32 bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut keys: Vec<&String> = self
            .metadata
            .keys()
            .filter(|k| k.as_str() != "general.alignment")
            .collect();
        keys.sort_by_key(|k| (!k.starts_with("general."), (*k).clone()));
        let metadata: Vec<(&str, &Value)> = keys
            .iter()
            .map(|k| (k.as_str(), &self.metadata[*k]))
            .collect();
        let tensors: Vec<(&str, &QTensor)> =
            self.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();

        let mut out = Cursor::new(Vec::new());
        gguf_file::write(&mut out, &metadata, &tensors)?;
        Ok(out.into_inner())
    }

    /// Writes the file to `path` through a temporary file in the same directory that is
    /// renamed into place, so an error never leaves a partial file at `path`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn write(&self, path: impl AsRef<Path>) -> Result<u64> {
        let bytes = self.to_bytes()?;
        crate::fsutil::write_atomically(path.as_ref(), &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Counts the tensors of each GGML type, e.g. `{"Q8_0": 211, "F32": 61}`.
    pub fn tensor_type_counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for (_, t) in &self.tensors {
            let name = dtype_name(t.dtype()).to_string();
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name, 1)),
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts
    }
}

/// Rejects a `general.alignment` of 0 or one that is not a power of two, as llama.cpp does,
/// because candle's reader divides by it. Walks the metadata section only, and reads keys as
/// candle 0.11.1 does: a repeated key replaces the earlier one, trailing NUL bytes of a key are
/// dropped, and arrays nest up to candle's depth limit. A header that ends early or contains an
/// unknown value type is left for candle's reader to report.
fn check_alignment(bytes: &[u8]) -> Result<()> {
    let mut walker = HeaderWalker {
        bytes,
        at: 4,
        wide: true,
    };
    let Some(alignment) = walker.find_alignment() else {
        return Ok(());
    };
    if alignment > 0 && (alignment as u64).is_power_of_two() {
        return Ok(());
    }
    Err(Error::InvalidKey {
        key: "general.alignment".into(),
        message: format!(
            "{alignment} is not a power of two; the tensor data cannot be aligned to it. \
             Remove the key (the default is 32) or set it to a power of two"
        ),
    })
}

/// Deepest array nesting that candle 0.11.1 reads (`GGUF_MAX_VALUE_DEPTH` in its gguf_file.rs).
const CANDLE_MAX_VALUE_DEPTH: u32 = 64;

/// Reads the GGUF header from the start; every read returns `None` past the end.
struct HeaderWalker<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Counts and string lengths are 64-bit from version 2 on, 32-bit in version 1.
    wide: bool,
}

impl HeaderWalker<'_> {
    fn take(&mut self, n: u64) -> Option<&[u8]> {
        let end = self.at.checked_add(usize::try_from(n).ok()?)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn uint(&mut self, n: u64) -> Option<u64> {
        let mut le = [0u8; 8];
        le[..n as usize].copy_from_slice(self.take(n)?);
        Some(u64::from_le_bytes(le))
    }

    fn count(&mut self) -> Option<u64> {
        self.uint(if self.wide { 8 } else { 4 })
    }

    /// Returns the value of the last `general.alignment` key as an integer, if it has an
    /// integer type candle reads it from (signed values below zero are ignored there too).
    /// Candle keeps the last of repeated keys, so every key is read.
    fn find_alignment(&mut self) -> Option<i64> {
        let version = self.uint(4)?;
        // Candle rejects other versions with its own message.
        if !(1..=3).contains(&version) {
            return None;
        }
        self.wide = version >= 2;
        let _tensor_count = self.count()?;
        let kv_count = self.count()?;
        let mut alignment = None;
        for _ in 0..kv_count {
            let key_len = self.count()?;
            let mut key = self.take(key_len)?;
            // Candle drops trailing NUL bytes from every string, keys included.
            while let [rest @ .., 0] = key {
                key = rest;
            }
            let is_alignment = key == b"general.alignment";
            let value_type = self.uint(4)?;
            if !is_alignment {
                self.skip_value(value_type, 0)?;
                continue;
            }
            let value = match value_type {
                0 => self.uint(1)? as i64,
                1 => self.uint(1)? as u8 as i8 as i64,
                2 => self.uint(2)? as i64,
                3 => self.uint(2)? as u16 as i16 as i64,
                4 => self.uint(4)? as i64,
                5 => self.uint(4)? as u32 as i32 as i64,
                _ => {
                    // Another type: candle uses its default for it, unless a later key
                    // replaces it.
                    self.skip_value(value_type, 0)?;
                    alignment = None;
                    continue;
                }
            };
            alignment = (value >= 0).then_some(value);
        }
        alignment
    }

    /// Skips one value of GGUF type `value_type` at nesting `depth`. Returns `None` where
    /// candle's reader fails too.
    fn skip_value(&mut self, value_type: u64, depth: u32) -> Option<()> {
        if depth > CANDLE_MAX_VALUE_DEPTH {
            return None;
        }
        let fixed = match value_type {
            // Candle rejects a bool other than 0 or 1 with its own message.
            7 => return (self.uint(1)? <= 1).then_some(()),
            0 | 1 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => {
                let len = self.count()?;
                return self.take(len).map(|_| ());
            }
            9 => {
                let item_type = self.uint(4)?;
                let n = self.count()?;
                for _ in 0..n {
                    self.skip_value(item_type, depth + 1)?;
                }
                return Some(());
            }
            _ => return None,
        };
        self.take(fixed).map(|_| ())
    }
}

/// Checks what candle's reader does not: that the tensor's data lies inside the file. Returns
/// where it lies.
fn validate_tensor_info(
    name: &str,
    info: &gguf_file::TensorInfo,
    file_bytes: u64,
    data_offset: u64,
) -> Result<std::ops::Range<usize>> {
    let dims = info.shape.dims();
    let mut n_elements: u64 = 1;
    for &d in dims {
        n_elements = n_elements.checked_mul(d as u64).ok_or_else(|| {
            Error::tensor(
                name,
                format!("shape {dims:?} overflows when its dimensions are multiplied"),
            )
        })?;
    }
    if n_elements == 0 {
        return Err(Error::tensor(
            name,
            format!("shape {dims:?} has no elements"),
        ));
    }
    let block = info.ggml_dtype.block_size() as u64;
    if n_elements % block != 0 {
        return Err(Error::tensor(
            name,
            format!(
                "{n_elements} elements is not a multiple of the {:?} block size {block}",
                info.ggml_dtype
            ),
        ));
    }
    let n_bytes = (n_elements / block)
        .checked_mul(info.ggml_dtype.type_size() as u64)
        .ok_or_else(|| {
            Error::tensor(
                name,
                format!(
                    "shape {dims:?} of type {:?} needs more than 2^64 bytes",
                    info.ggml_dtype
                ),
            )
        })?;
    let start = data_offset.checked_add(info.offset);
    let end = start.and_then(|s| s.checked_add(n_bytes));
    match (start, end) {
        // Both fit in usize: the file is in memory and `end` does not pass its length.
        (Some(start), Some(end)) if end <= file_bytes => Ok(start as usize..end as usize),
        _ => Err(Error::tensor(
            name,
            format!(
                "data at offset {} + {} bytes lies outside the {file_bytes}-byte file (is the file truncated?)",
                info.offset, n_bytes
            ),
        )),
    }
}

pub fn dtype_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() > 40 => format!("a string ({} bytes)", s.len()),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(items) => format!("an array of {} entries", items.len()),
        other => format!("{other:?}"),
    }
}

fn wrong_type(key: &str, expected: &str, found: &Value) -> Error {
    Error::InvalidKey {
        key: key.to_string(),
        message: format!("expected {expected}, found {}", describe(found)),
    }
}

fn value_to_i64(key: &str, v: &Value) -> Result<i64> {
    Ok(match v {
        Value::U8(x) => *x as i64,
        Value::I8(x) => *x as i64,
        Value::U16(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::U32(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::I64(x) => *x,
        Value::U64(x) => i64::try_from(*x).map_err(|_| Error::InvalidKey {
            key: key.to_string(),
            message: format!("{x} does not fit in a signed 64-bit integer"),
        })?,
        other => return Err(wrong_type(key, "an integer", other)),
    })
}

fn value_to_u64(key: &str, v: &Value) -> Result<u64> {
    let x = value_to_i64(key, v)?;
    u64::try_from(x).map_err(|_| Error::InvalidKey {
        key: key.to_string(),
        message: format!("{x} is negative"),
    })
}

fn to_usize(key: &str, v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::InvalidKey {
        key: key.to_string(),
        message: format!("{v} does not fit in this platform's usize"),
    })
}

/// Metadata helpers for building a file in memory.
pub fn set_u32(metadata: &mut HashMap<String, Value>, key: &str, v: u32) {
    metadata.insert(key.to_string(), Value::U32(v));
}

pub fn set_string(metadata: &mut HashMap<String, Value>, key: &str, v: &str) {
    metadata.insert(key.to_string(), Value::String(v.to_string()));
}

pub fn set_f32(metadata: &mut HashMap<String, Value>, key: &str, v: f32) {
    metadata.insert(key.to_string(), Value::F32(v));
}

pub use candle_core::quantized::gguf_file::Value as MetadataValue;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{tiny_llama, TinySpec};

    /// Builds a GGUF header with no tensors from (key, value type, value bytes) entries.
    /// Version 1 has 32-bit counts and lengths.
    fn header(version: u32, entries: &[(&[u8], u32, Vec<u8>)]) -> Vec<u8> {
        let len = |n: usize| -> Vec<u8> {
            if version == 1 {
                (n as u32).to_le_bytes().to_vec()
            } else {
                (n as u64).to_le_bytes().to_vec()
            }
        };
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(version.to_le_bytes());
        bytes.extend(len(0));
        bytes.extend(len(entries.len()));
        for (key, value_type, value) in entries {
            bytes.extend(len(key.len()));
            bytes.extend(*key);
            bytes.extend(value_type.to_le_bytes());
            bytes.extend(value);
        }
        bytes
    }

    fn alignment_error(bytes: &[u8]) -> String {
        match Gguf::read(bytes) {
            Err(e @ Error::InvalidKey { .. }) => e.to_string(),
            Err(e) => panic!("expected an invalid-key error, got: {e}"),
            Ok(_) => panic!("the header was accepted"),
        }
    }

    /// Candle keeps the last of repeated keys, drops trailing NUL bytes of keys and reads arrays
    /// nested 64 deep. In each case, the alignment of 0 that it would divide by must be found.
    #[test]
    fn alignment_zero_found_where_candle_reads_it() {
        const KEY: &[u8] = b"general.alignment";
        const U32: u32 = 4;
        let zero = || 0u32.to_le_bytes().to_vec();

        // An array of one array of ... one u8, `depth` arrays deep.
        let nested = |depth: usize| {
            let mut value = [
                0u32.to_le_bytes().to_vec(),
                1u64.to_le_bytes().to_vec(),
                vec![7],
            ]
            .concat();
            for _ in 1..depth {
                value = [
                    9u32.to_le_bytes().to_vec(),
                    1u64.to_le_bytes().to_vec(),
                    value,
                ]
                .concat();
            }
            value
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "repeated",
                header(
                    3,
                    &[(KEY, U32, 32u32.to_le_bytes().to_vec()), (KEY, U32, zero())],
                ),
            ),
            (
                "repeated, first u64",
                header(
                    3,
                    &[(KEY, 10, 32u64.to_le_bytes().to_vec()), (KEY, U32, zero())],
                ),
            ),
            (
                "repeated, version 1",
                header(
                    1,
                    &[(KEY, U32, 64u32.to_le_bytes().to_vec()), (KEY, U32, zero())],
                ),
            ),
            (
                "trailing NUL",
                header(3, &[(b"general.alignment\0", U32, zero())]),
            ),
            (
                "after arrays 9 deep",
                header(3, &[(b"x", 9, nested(9)), (KEY, U32, zero())]),
            ),
            (
                "after arrays 64 deep",
                header(3, &[(b"x", 9, nested(64)), (KEY, U32, zero())]),
            ),
        ];

        for (case, bytes) in cases {
            let err = alignment_error(&bytes);
            assert!(
                err.contains("general.alignment") && err.contains("power of two"),
                "{case}: {err}"
            );
        }

        // Headers that candle rejects itself get candle's message: a version it does not read,
        // and a bool of 2 before the key.
        let err = Gguf::read(&header(4, &[(KEY, U32, zero())])).err().unwrap();
        assert!(err.to_string().contains("version"), "{err}");
        let bad_bool = header(3, &[(b"flag", 7, vec![2]), (KEY, U32, zero())]);
        let err = Gguf::read(&bad_bool).err().unwrap();
        assert!(!err.to_string().contains("general.alignment"), "{err}");

        // An alignment past the end of the file is named, not taken for a truncated file.
        let mut gguf = tiny_llama(&TinySpec::default()).unwrap();
        set_u32(&mut gguf.metadata, "general.alignmenX", 1 << 30);
        let mut bytes = gguf.to_bytes().unwrap();
        let at = bytes
            .windows(17)
            .position(|w| w == b"general.alignmenX")
            .unwrap();
        bytes[at..at + 17].copy_from_slice(KEY);
        let err = Gguf::read(&bytes).err().unwrap().to_string();
        assert!(err.contains("general.alignment (1073741824)"), "{err}");

        // The last key wins both ways: an explicit 32 after a 0 is what candle uses.
        let bytes = header(
            3,
            &[(KEY, U32, zero()), (KEY, U32, 32u32.to_le_bytes().to_vec())],
        );
        assert!(check_alignment(&bytes).is_ok());
    }

    /// A file that starts at an odd address takes candle's copying path; the tensors must be
    /// the same as those read in place.
    #[test]
    fn misaligned_bytes_read_the_same_tensors() {
        let spec = TinySpec {
            dtype: GgmlDType::Q8_0,
            ..TinySpec::default()
        };
        let bytes = tiny_llama(&spec).unwrap().to_bytes().unwrap();
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        let in_place = Gguf::read(&bytes).unwrap();
        let copied = Gguf::read(&shifted[1..]).unwrap();
        assert_eq!(in_place.tensors.len(), copied.tensors.len());
        for ((name_a, a), (name_b, b)) in in_place.tensors.iter().zip(&copied.tensors) {
            assert_eq!(name_a, name_b);
            assert_eq!(a.dtype(), b.dtype(), "{name_a}");
            assert_eq!(a.shape(), b.shape(), "{name_a}");
            assert_eq!(a.data().unwrap(), b.data().unwrap(), "{name_a}");
        }
    }
}
