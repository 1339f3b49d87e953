//! Weight masks: which weights of the seven projection matrices are kept (1) and which are
//! pruned (0). Training multiplies gradients by the mask before the optimizer step and the
//! weights by the mask after it, so a pruned weight stays exactly zero.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::model::dense::{DenseModel, LinearKind};

/// Masks by GGUF weight name (`blk.N.attn_q.weight`), each an F32 tensor of the weight's shape
/// holding 1 (kept) or 0 (pruned). A matrix without an entry is fully kept.
#[derive(Debug, Clone, Default)]
pub struct MaskSet {
    masks: BTreeMap<String, Tensor>,
}

impl MaskSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Masks from the weights themselves: every exact zero in a projection matrix is pruned.
    /// Matrices without zeros get no entry.
    pub fn from_zeros(model: &DenseModel) -> Result<Self> {
        let mut masks = BTreeMap::new();
        for (l, layer) in model.layers.iter().enumerate() {
            for kind in LinearKind::ALL {
                let w = layer.linear(kind).as_tensor();
                let mask = w.ne(0f32)?.to_dtype(DType::F32)?;
                let kept = mask.sum_all()?.to_scalar::<f32>()? as usize;
                if kept < w.elem_count() {
                    masks.insert(kind.tensor_name(l), mask);
                }
            }
        }
        Ok(Self { masks })
    }

    /// Adds or replaces the mask of `name`, checking it against the model: the name must be a
    /// projection matrix, the shape must match, and every value must be 0 or 1.
    pub fn insert(&mut self, model: &DenseModel, name: &str, mask: Tensor) -> Result<()> {
        let shape = projection_shape(model, name)?;
        if mask.dims() != shape.as_slice() {
            return Err(Error::tensor(
                name,
                format!(
                    "mask shape {:?} differs from the weight shape {shape:?}",
                    mask.dims()
                ),
            ));
        }
        let mask = mask.to_dtype(DType::F32)?;
        let values: Vec<f32> = mask.flatten_all()?.to_vec1()?;
        if let Some(i) = values.iter().position(|&v| v != 0.0 && v != 1.0) {
            return Err(Error::tensor(
                name,
                format!(
                    "mask value {} at flat index {i}; masks hold only 0 (pruned) and 1 (kept)",
                    values[i]
                ),
            ));
        }
        self.masks.insert(name.to_string(), mask);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.masks.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.masks.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// Returns the masks as a plain map, the form `DenseModel::add_lora` takes.
    pub fn to_map(&self) -> HashMap<String, Tensor> {
        self.masks
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Number of pruned (masked) weights.
    pub fn n_pruned(&self) -> Result<usize> {
        let mut n = 0;
        for mask in self.masks.values() {
            n += mask.elem_count() - mask.sum_all()?.to_scalar::<f32>()? as usize;
        }
        Ok(n)
    }

    /// Zeroes every pruned weight of `model`.
    pub fn apply_to_model(&self, model: &DenseModel) -> Result<()> {
        for (name, mask) in &self.masks {
            let var = find_projection(model, name)?;
            var.set(&(var.as_tensor() * mask)?)?;
        }
        Ok(())
    }

    /// Reads masks saved by `to_safetensors`, or any safetensors file whose tensors are named
    /// like the weights and hold 0 and 1 (U8, F32, F16 or BF16), and checks them against `model`.
    pub fn from_safetensors(model: &DenseModel, bytes: &[u8]) -> Result<Self> {
        let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
            Error::Checkpoint(format!(
                "the mask file is not a valid safetensors file: {e}"
            ))
        })?;
        let mut set = Self::new();
        for (name, view) in file.tensors() {
            let tensor = super::checkpoint::tensor_from_view(&name, &view)?;
            set.insert(model, &name, tensor)?;
        }
        Ok(set)
    }

    /// Serializes the masks as a safetensors file of U8 tensors named like the weights.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut entries = Vec::new();
        for (name, mask) in &self.masks {
            entries.push((name.clone(), super::checkpoint::u8_entry(mask)?));
        }
        super::checkpoint::serialize(entries, HashMap::new())
    }
}

/// Returns the shape `(out, in)` of the projection matrix `name`.
fn projection_shape(model: &DenseModel, name: &str) -> Result<Vec<usize>> {
    Ok(find_projection(model, name)?.dims().to_vec())
}

fn find_projection<'a>(model: &'a DenseModel, name: &str) -> Result<&'a candle_core::Var> {
    let not_found = || {
        Error::tensor(name, "not a projection matrix of this model; masks apply to blk.N.{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}.weight")
    };
    let rest = name.strip_prefix("blk.").ok_or_else(not_found)?;
    let (layer, rest) = rest.split_once('.').ok_or_else(not_found)?;
    let short = rest.strip_suffix(".weight").ok_or_else(not_found)?;
    let l: usize = layer.parse().map_err(|_| not_found())?;
    let kind = LinearKind::from_gguf_name(short).ok_or_else(not_found)?;
    let layer = model.layers.get(l).ok_or_else(not_found)?;
    Ok(layer.linear(kind))
}
