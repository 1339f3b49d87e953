//! Products with frozen weights that backpropagate to their input only, and the masked LoRA
//! update as one op.
//!
//! candle's matmul backward always forms the gradient of both operands. For a frozen weight
//! `W` `(out, in)`, the weight gradient `xᵀ · dy` is a full-size matrix that costs as much
//! arithmetic as the input gradient and stays in the gradient store until the step ends,
//! although nothing reads it. LoRA training freezes every base matrix and the output head, so
//! these unused gradients were about half of its backward work and several hundred MB.

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};

use crate::error::Result;

/// `x · Wᵀ` with `W` captured, so the backward pass returns `dy · W` and nothing for `W`.
struct FrozenMatmul {
    /// `(out, in)`, F32.
    weight: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        // A custom op receives raw storage, so the input is copied into a tensor to use candle's
        // matmul. The copy has the size of one activation, far below the weight.
        let x = tensor_from_storage(storage, layout, "frozen-matmul: the input")?;
        let y = x.matmul(&self.weight.t()?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&self.weight)?))
    }
}

/// Returns `x · Wᵀ` for `x` `(..., in)` and a frozen `weight` `(out, in)`: `(..., out)`.
/// Gradients flow to `x` only; `weight` gets none.
pub fn frozen_matmul(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let in_features = *dims.last().expect("an input has at least one dimension");
    let rows = x.elem_count() / in_features.max(1);
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("checked above") = weight.dim(0)?;
    let op = FrozenMatmul {
        weight: weight.detach(),
    };
    let y = x
        .reshape((rows, in_features))?
        .contiguous()?
        .apply_op1(op)?;
    Ok(y.reshape(out_dims)?)
}

/// `mask ⊙ (scale · B A)` for a LoRA pair `B` `(out, rank)`, `A` `(rank, in)` and a fixed `mask`
/// `(out, in)`. As one op it keeps only its output for the backward pass, where the plain
/// expression keeps three full-size intermediates and also forms a gradient for the mask.
struct MaskedProduct {
    mask: Tensor,
    scale: f64,
}

impl candle_core::CustomOp2 for MaskedProduct {
    fn name(&self) -> &'static str {
        "masked-lora-product"
    }

    fn cpu_fwd(
        &self,
        b_storage: &CpuStorage,
        b_layout: &Layout,
        a_storage: &CpuStorage,
        a_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let b = tensor_from_storage(b_storage, b_layout, "B")?;
        let a = tensor_from_storage(a_storage, a_layout, "A")?;
        let delta = ((b.matmul(&a)? * self.scale)? * &self.mask)?;
        let shape = delta.shape().clone();
        Ok((
            CpuStorage::F32(delta.flatten_all()?.to_vec1::<f32>()?),
            shape,
        ))
    }

    fn bwd(
        &self,
        b: &Tensor,
        a: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = ((grad_res * &self.mask)? * self.scale)?;
        let grad_b = g.matmul(&a.detach().t()?)?;
        let grad_a = b.detach().t()?.matmul(&g)?;
        Ok((Some(grad_b), Some(grad_a)))
    }
}

/// Copies a contiguous F32 custom-op input into a tensor.
fn tensor_from_storage(
    storage: &CpuStorage,
    layout: &Layout,
    operand: &str,
) -> candle_core::Result<Tensor> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{operand} must be F32")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{operand} must be contiguous")
    };
    Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)
}

/// Returns `mask ⊙ (scale · B A)`: `(out, in)` from `b` `(out, rank)` and `a` `(rank, in)`.
/// Gradients flow to `b` and `a`; `mask` is a constant.
pub fn masked_lora_product(b: &Tensor, a: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let op = MaskedProduct {
        mask: mask.detach(),
        scale,
    };
    Ok(b.contiguous()?.apply_op2(&a.contiguous()?, op)?)
}
