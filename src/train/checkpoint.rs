//! Training checkpoints as safetensors files.
//!
//! A checkpoint contains what a run needs to continue exactly as if it had not stopped:
//! - `param.<name>`: every trained weight (all weights in full fine-tuning, the adapters with
//!   LoRA), F32;
//! - `adamw.m.<name>`, `adamw.v.<name>`: the optimizer moments, F32, flattened;
//! - `mask.<name>`: the weight masks, U8 (1 = kept);
//! - metadata: the format version, the number of completed steps, the optimizer's update
//!   count, the sampler state (seed, epoch, cursor), the training configuration as JSON, and
//!   fingerprints of the base weights and of the training data.
//!
//! With LoRA, the frozen base weights are not stored; the run must load the same model file,
//! which the base fingerprint checks.

use std::borrow::Cow;
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, TensorView, View};

use crate::error::{Error, Result};

pub const FORMAT: &str = "prunechat-checkpoint-1";

/// One tensor ready for serialization.
pub(crate) struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Entry {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

pub(crate) fn f32_entry(values: &[f32], shape: &[usize]) -> Entry {
    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Entry {
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        bytes,
    }
}

pub(crate) fn tensor_entry(t: &Tensor) -> Result<Entry> {
    let values: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    Ok(f32_entry(&values, t.dims()))
}

/// Converts a 0/1 mask to a U8 entry.
pub(crate) fn u8_entry(mask: &Tensor) -> Result<Entry> {
    let values: Vec<f32> = mask.flatten_all()?.to_vec1()?;
    let bytes = values.iter().map(|&v| (v != 0.0) as u8).collect();
    Ok(Entry {
        dtype: Dtype::U8,
        shape: mask.dims().to_vec(),
        bytes,
    })
}

pub(crate) fn serialize(
    entries: Vec<(String, Entry)>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let views: Vec<(String, &Entry)> = entries.iter().map(|(n, e)| (n.clone(), e)).collect();
    let metadata = if metadata.is_empty() {
        None
    } else {
        Some(metadata)
    };
    safetensors::serialize(views, metadata)
        .map_err(|e| Error::Checkpoint(format!("serializing failed: {e}")))
}

/// Converts a safetensors view to an F32 tensor (U8, F16, BF16 and F32 are accepted).
pub(crate) fn tensor_from_view(name: &str, view: &TensorView) -> Result<Tensor> {
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::U8 => data.iter().map(|&b| b as f32).collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half_to_f32(u16::from_le_bytes([c[0], c[1]]), false))
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half_to_f32(u16::from_le_bytes([c[0], c[1]]), true))
            .collect(),
        other => {
            return Err(Error::tensor(
                name,
                format!("type {other:?} is not supported; use F32, F16, BF16 or U8"),
            ))
        }
    };
    Ok(Tensor::from_vec(values, view.shape(), &Device::Cpu)?)
}

fn half_to_f32(bits: u16, bfloat: bool) -> f32 {
    if bfloat {
        f32::from_bits((bits as u32) << 16)
    } else {
        let sign = ((bits >> 15) & 1) as u32;
        let exp = ((bits >> 10) & 0x1f) as i32;
        let frac = (bits & 0x3ff) as f32;
        let magnitude = match exp {
            0 => frac * 2f32.powi(-24),
            31 => {
                if frac == 0.0 {
                    f32::INFINITY
                } else {
                    f32::NAN
                }
            }
            e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
        };
        if sign == 1 {
            -magnitude
        } else {
            magnitude
        }
    }
}

/// A parsed checkpoint: its tensors as F32 and its metadata.
pub struct Checkpoint {
    pub tensors: HashMap<String, Tensor>,
    pub metadata: HashMap<String, String>,
}

impl Checkpoint {
    pub fn read(bytes: &[u8]) -> Result<Self> {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| {
            Error::Checkpoint(format!(
                "not a valid safetensors file ({e}); is it truncated?"
            ))
        })?;
        let metadata = header.metadata().clone().unwrap_or_default();
        match metadata.get("format") {
            Some(f) if f == FORMAT => {}
            Some(f) => {
                return Err(Error::Checkpoint(format!(
                    "format is \"{f}\", expected \"{FORMAT}\""
                )))
            }
            None => {
                return Err(Error::Checkpoint(format!(
                    "the file has no \"format\" metadata; it is not a {FORMAT} checkpoint"
                )))
            }
        }
        let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
            Error::Checkpoint(format!(
                "not a valid safetensors file ({e}); is it truncated?"
            ))
        })?;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            let t = tensor_from_view(&name, &view)?;
            tensors.insert(name, t);
        }
        Ok(Self { tensors, metadata })
    }

    pub fn meta(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(|s| s.as_str())
            .ok_or_else(|| Error::Checkpoint(format!("metadata key \"{key}\" is missing")))
    }

    pub fn meta_parse<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let text = self.meta(key)?;
        text.parse().map_err(|_| {
            Error::Checkpoint(format!(
                "metadata key \"{key}\" is invalid: \"{text}\" does not parse"
            ))
        })
    }

    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Checkpoint(format!("tensor \"{name}\" is missing")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_decoding() {
        assert_eq!(half_to_f32(0x3c00, false), 1.0);
        assert_eq!(half_to_f32(0xc000, false), -2.0);
        assert_eq!(half_to_f32(0x0000, false), 0.0);
        assert_eq!(half_to_f32(0x3f80, true), 1.0);
    }
}

impl super::Trainer {
    /// Serializes the run's state as a safetensors checkpoint (see the module documentation).
    pub fn checkpoint_bytes(&self) -> Result<Vec<u8>> {
        let mut entries = Vec::new();
        for ((name, var), moments) in self.params.iter().zip(&self.optimizer.moments) {
            entries.push((format!("param.{name}"), tensor_entry(var.as_tensor())?));
            entries.push((
                format!("adamw.m.{name}"),
                f32_entry(&moments.m, &[moments.m.len()]),
            ));
            entries.push((
                format!("adamw.v.{name}"),
                f32_entry(&moments.v, &[moments.v.len()]),
            ));
        }
        for (name, mask) in self.masks.iter() {
            entries.push((format!("mask.{name}"), u8_entry(mask)?));
        }
        let metadata: HashMap<String, String> = [
            ("format".to_string(), FORMAT.to_string()),
            ("step".to_string(), self.step.to_string()),
            (
                "optimizer_updates".to_string(),
                self.optimizer.n_updates.to_string(),
            ),
            ("sampler".to_string(), json(&self.sampler)?),
            ("config".to_string(), json(&self.config)?),
            (
                "base_fingerprint".to_string(),
                format!("{:016x}", self.base_fingerprint),
            ),
            (
                "data_fingerprint".to_string(),
                format!("{:016x}", self.train.fingerprint()),
            ),
        ]
        .into_iter()
        .collect();
        serialize(entries, metadata)
    }

    /// Continues a run from a checkpoint. `model` must be loaded from the same file as in the
    /// original run, and `config` and `train` must equal the original ones. Any difference is
    /// an error that names it. Masks come from the checkpoint.
    pub fn resume(
        model: crate::model::dense::DenseModel,
        config: super::TrainConfig,
        train: super::TrainData,
        eval: Option<super::TrainData>,
        bytes: &[u8],
    ) -> Result<Self> {
        let checkpoint = Checkpoint::read(bytes)?;

        let saved: super::TrainConfig =
            serde_json::from_str(checkpoint.meta("config")?).map_err(|e| {
                Error::Checkpoint(format!(
                    "the stored training configuration does not parse: {e}"
                ))
            })?;
        if saved != config {
            return Err(Error::Checkpoint(format!(
                "it was written with different training settings; pass the same options to resume. Differences (checkpoint vs this run): {}",
                config_differences(&saved, &config)
            )));
        }
        let data_fingerprint = format!("{:016x}", train.fingerprint());
        if checkpoint.meta("data_fingerprint")? != data_fingerprint {
            return Err(Error::Checkpoint(
                "it was written for different training data (the token fingerprint differs); resume with the same data file and split".into(),
            ));
        }

        let mut masks = super::masks::MaskSet::new();
        for (name, tensor) in &checkpoint.tensors {
            if let Some(weight) = name.strip_prefix("mask.") {
                masks.insert(&model, weight, tensor.clone())?;
            }
        }
        let mut trainer = Self::new(model, config, masks, train, eval)?;
        let stored_base = checkpoint.meta("base_fingerprint")?;
        if stored_base != format!("{:016x}", trainer.base_fingerprint) {
            return Err(Error::Checkpoint(
                "it was written for a different model: the weights loaded now differ from those the run started from".into(),
            ));
        }

        for ((name, var), moments) in trainer
            .params
            .iter()
            .zip(trainer.optimizer.moments.iter_mut())
        {
            let value = checkpoint.tensor(&format!("param.{name}"))?;
            if value.dims() != var.dims() {
                return Err(Error::Checkpoint(format!(
                    "param.{name} has shape {:?}, the model has {:?}",
                    value.dims(),
                    var.dims()
                )));
            }
            var.set(value)?;
            for (key, target) in [("m", &mut moments.m), ("v", &mut moments.v)] {
                let stored: Vec<f32> = checkpoint
                    .tensor(&format!("adamw.{key}.{name}"))?
                    .flatten_all()?
                    .to_vec1()?;
                if stored.len() != target.len() {
                    return Err(Error::Checkpoint(format!(
                        "adamw.{key}.{name} has {} values, expected {}",
                        stored.len(),
                        target.len()
                    )));
                }
                *target = stored;
            }
        }
        trainer.optimizer.n_updates = checkpoint.meta_parse("optimizer_updates")?;
        trainer.step = checkpoint.meta_parse("step")?;
        // Each step applies one optimizer update, so a larger count is corrupt. The count
        // sets the bias correction of the next update.
        if trainer.optimizer.n_updates > trainer.step as u64 {
            return Err(Error::Checkpoint(format!(
                "metadata key \"optimizer_updates\" is invalid: {} updates exceed the step count {}",
                trainer.optimizer.n_updates, trainer.step
            )));
        }
        trainer.sampler = serde_json::from_str(checkpoint.meta("sampler")?).map_err(|e| {
            Error::Checkpoint(format!("the stored sampler state does not parse: {e}"))
        })?;
        // The cursor indexes the epoch's order of the training samples. It equals their
        // count when the epoch is finished, and the next step starts a new epoch.
        if trainer.sampler.cursor > trainer.train.len() {
            return Err(Error::Checkpoint(format!(
                "metadata key \"sampler\" is invalid: cursor {} is past the {} training samples",
                trainer.sampler.cursor,
                trainer.train.len()
            )));
        }
        Ok(trainer)
    }
}

/// Lists the top-level fields where two configurations differ, as `field: a vs b`.
fn config_differences(a: &super::TrainConfig, b: &super::TrainConfig) -> String {
    let (a, b) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return String::new();
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {v} vs {}", b.get(k).cloned().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Checkpoint(format!("serializing metadata failed: {e}")))
}

/// A directory of checkpoints named `step-NNNNNNNN.safetensors`, written atomically, of which
/// the newest `keep` are kept.
#[cfg(not(target_arch = "wasm32"))]
pub struct CheckpointDir {
    pub dir: std::path::PathBuf,
    pub keep: usize,
}

#[cfg(not(target_arch = "wasm32"))]
impl CheckpointDir {
    pub fn new(dir: impl Into<std::path::PathBuf>, keep: usize) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Self {
            dir,
            keep: keep.max(1),
        })
    }

    /// Writes the trainer's checkpoint and deletes the oldest beyond `keep`. Returns its path.
    pub fn save(&self, trainer: &super::Trainer) -> Result<std::path::PathBuf> {
        let path = self
            .dir
            .join(format!("step-{:08}.safetensors", trainer.step_count()));
        crate::fsutil::write_atomically(&path, &trainer.checkpoint_bytes()?)?;
        let all = self.list()?;
        if all.len() > self.keep {
            for (_, old) in &all[..all.len() - self.keep] {
                std::fs::remove_file(old).map_err(|e| Error::io(old, e))?;
            }
        }
        Ok(path)
    }

    /// Returns the newest checkpoint, if any.
    pub fn latest(&self) -> Result<Option<std::path::PathBuf>> {
        Ok(self.list()?.pop().map(|(_, p)| p))
    }

    /// Checkpoints sorted by step. Temporary files of interrupted writes are not listed.
    fn list(&self) -> Result<Vec<(usize, std::path::PathBuf)>> {
        let mut found = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let step = name
                .strip_prefix("step-")
                .and_then(|s| s.strip_suffix(".safetensors"))
                .and_then(|s| s.parse::<usize>().ok());
            if let Some(step) = step {
                found.push((step, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }
}
